//! Per-VM console line assembly.
//!
//! Owns: turning a VM's stream of console bytes into whole lines, so that the physical UART
//! never shows two VMs' output interleaved within a line and a guest can never start a line of
//! its own on the physical console (every line it emits gets its name as prefix when printed).
//! It never prints: the caller decides where complete lines go.

/// The longest line kept whole; longer lines are emitted in pieces of this size.
pub const LINE_MAX: usize = 256;

pub struct LineBuffer {
    buf: heapless::Vec<u8, LINE_MAX>,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer {
            buf: heapless::Vec::new(),
        }
    }

    /// Appends `bytes`; calls `emit` with each completed line (without its newline). Carriage
    /// returns and other control characters except tab are dropped so that a guest cannot move
    /// the cursor over another VM's output.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\n' => {
                    emit(&self.buf);
                    self.buf.clear();
                }
                b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                    if self.buf.is_full() {
                        emit(&self.buf);
                        self.buf.clear();
                    }
                    // Cannot fail: the buffer was just emptied if it was full.
                    let _ = self.buf.push(b);
                }
                _ => {}
            }
        }
    }

    /// Emits what is left (a last line without a newline), e.g. when the VM stops.
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            emit(&self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut lb = LineBuffer::new();
        for c in chunks {
            lb.push(c, |l| out.push(l.to_vec()));
        }
        lb.flush(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn assembles_lines_across_writes() {
        assert_eq!(
            lines(&[b"hel", b"lo\nwor", b"ld\n"]),
            vec![b"hello".to_vec(), b"world".to_vec()]
        );
    }

    #[test]
    fn strips_control_characters() {
        assert_eq!(lines(&[b"a\rb\x1b[2Jc\n"]), vec![b"ab[2Jc".to_vec()]);
    }

    #[test]
    fn splits_overlong_lines() {
        let long = [b'x'; LINE_MAX + 10];
        let out = lines(&[&long, b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!(out[1].len(), 10);
    }

    #[test]
    fn flush_emits_the_unterminated_tail() {
        assert_eq!(lines(&[b"tail"]), vec![b"tail".to_vec()]);
        assert!(lines(&[b""]).is_empty());
    }
}
