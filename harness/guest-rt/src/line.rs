//! Line buffering: text goes out one whole line at a time.
//!
//! The hypervisor collects console output per VM (not per vCPU) up to a newline, so two vCPUs
//! writing parts of lines would interleave them. Writing each line in one hypercall keeps lines
//! whole.

use core::fmt;

/// Longest line written in one piece; longer lines are split. It matches the hypervisor's
/// per-VM console buffer (docs/architecture.md, "Console framing").
pub const LINE_MAX: usize = 256;

pub struct LineBuffer {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl LineBuffer {
    pub const fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Whether a line has been started and not yet written out.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `text`, handing each completed line (with its `\n`) and each full buffer to
    /// `flush`.
    pub fn write(&mut self, mut text: &[u8], flush: &mut dyn FnMut(&[u8])) {
        while !text.is_empty() {
            let room = LINE_MAX - self.len;
            let (take, line_done) = match text.iter().position(|&b| b == b'\n') {
                Some(newline) if newline < room => (newline + 1, true),
                _ => (text.len().min(room), false),
            };
            self.buf[self.len..self.len + take].copy_from_slice(&text[..take]);
            self.len += take;
            text = &text[take..];
            if line_done || self.len == LINE_MAX {
                self.flush(flush);
            }
        }
    }

    /// Ends a started line with `\n` and hands it to `flush`; nothing if no line is started.
    pub fn finish_line(&mut self, flush: &mut dyn FnMut(&[u8])) {
        if !self.is_empty() {
            self.write(b"\n", flush);
        }
    }

    fn flush(&mut self, flush: &mut dyn FnMut(&[u8])) {
        flush(&self.buf[..self.len]);
        self.len = 0;
    }

    /// A [`fmt::Write`] that appends to this buffer.
    pub fn writer<'a>(&'a mut self, flush: &'a mut dyn FnMut(&[u8])) -> LineWriter<'a> {
        LineWriter { line: self, flush }
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

pub struct LineWriter<'a> {
    line: &'a mut LineBuffer,
    flush: &'a mut dyn FnMut(&[u8]),
}

impl fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.line.write(s.as_bytes(), self.flush);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn collect(f: impl FnOnce(&mut LineBuffer, &mut dyn FnMut(&[u8]))) -> Vec<String> {
        let mut out = Vec::new();
        let mut line = LineBuffer::new();
        f(&mut line, &mut |b: &[u8]| {
            out.push(String::from_utf8(b.to_vec()).unwrap())
        });
        out
    }

    #[test]
    fn writes_whole_lines_only() {
        let out = collect(|line, flush| {
            line.write(b"ab", flush);
            line.write(b"c\nde", flush);
            line.write(b"f\n", flush);
        });
        assert_eq!(out, ["abc\n", "def\n"]);
    }

    #[test]
    fn keeps_a_partial_line_until_its_newline() {
        let out = collect(|line, flush| {
            line.write(b"no newline", flush);
            assert!(!line.is_empty());
        });
        assert!(out.is_empty());
    }

    #[test]
    fn several_lines_in_one_write() {
        let out = collect(|line, flush| line.write(b"1\n2\n3\n", flush));
        assert_eq!(out, ["1\n", "2\n", "3\n"]);
    }

    #[test]
    fn splits_lines_longer_than_the_buffer() {
        let long = "x".repeat(LINE_MAX + 10) + "\n";
        let out = collect(|line, flush| line.write(long.as_bytes(), flush));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!(out[1], "x".repeat(10) + "\n");
    }

    #[test]
    fn a_line_that_exactly_fills_the_buffer_is_one_write() {
        let exact = "y".repeat(LINE_MAX - 1) + "\n";
        let out = collect(|line, flush| line.write(exact.as_bytes(), flush));
        assert_eq!(out, [exact]);
    }

    #[test]
    fn finish_line_terminates_only_a_started_line() {
        let out = collect(|line, flush| {
            line.finish_line(flush);
            line.write(b"half", flush);
            line.finish_line(flush);
        });
        assert_eq!(out, ["half\n"]);
    }

    #[test]
    fn formats_through_the_writer() {
        let out = collect(|line, flush| {
            writeln!(line.writer(flush), "n={} hex={:#x}", 42, 255).unwrap();
        });
        assert_eq!(out, ["n=42 hex=0xff\n"]);
    }
}
