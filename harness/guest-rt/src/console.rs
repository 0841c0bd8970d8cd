//! Console output: [`print!`](crate::print) / [`println!`](crate::println) through the
//! `HV_CONSOLE_WRITE` hypercall.
//!
//! Each vCPU has its own line buffer (there are no locks without atomics, see [`crate::sync`]),
//! and a line goes out in one hypercall when its `\n` arrives, so lines of different vCPUs never
//! mix. The hypervisor adds the `<vmname>| ` prefix.

use core::fmt::{self, Write};

use crate::line::LineBuffer;

/// Formats `args` into this vCPU's line buffer. Used by [`print!`](crate::print).
pub fn print(args: fmt::Arguments) {
    with_line_buffer(|line| {
        // Writing into a `LineBuffer` cannot fail.
        let _ = line.writer(&mut sink).write_fmt(args);
    });
}

/// Writes `args` as one line of its own: any line this vCPU has started is ended first, so the
/// new line (a framing record) is never glued to the end of unrelated text.
pub fn print_line(args: fmt::Arguments) {
    with_line_buffer(|line| {
        line.finish_line(&mut sink);
        let _ = writeln!(line.writer(&mut sink), "{args}");
    });
}

/// Like [`print_line`], but without touching this vCPU's line buffer, for the abort path,
/// which may have interrupted a `print!` on this very vCPU.
pub fn print_line_unbuffered(args: fmt::Arguments) {
    let mut line = LineBuffer::new();
    let _ = writeln!(line.writer(&mut sink), "{args}");
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!($($arg)*))
    };
}

#[macro_export]
macro_rules! println {
    () => {
        $crate::console::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(not(test))]
fn with_line_buffer<R>(f: impl FnOnce(&mut LineBuffer) -> R) -> R {
    use core::cell::UnsafeCell;

    use crate::arch::MAX_VCPUS;
    use crate::sync::PerVcpu;

    static LINES: PerVcpu<LineBuffer> =
        PerVcpu::new([const { UnsafeCell::new(LineBuffer::new()) }; MAX_VCPUS]);
    // SAFETY: nothing reached from here calls `with_line_buffer` again: formatting user types
    // may panic or fault, but the panic and exception paths use `print_line_unbuffered`.
    unsafe { LINES.with_mine(f) }
}

/// Where finished lines go: the hypervisor console.
#[cfg(not(test))]
fn sink(bytes: &[u8]) {
    crate::hv::console_write_all(bytes);
}

// Host unit tests: each test thread has its own line buffer, and finished lines are captured.
#[cfg(test)]
use std::cell::RefCell;

#[cfg(test)]
std::thread_local! {
    static LINE: RefCell<LineBuffer> = const { RefCell::new(LineBuffer::new()) };
    static CAPTURED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn with_line_buffer<R>(f: impl FnOnce(&mut LineBuffer) -> R) -> R {
    LINE.with(|line| f(&mut line.borrow_mut()))
}

#[cfg(test)]
fn sink(bytes: &[u8]) {
    CAPTURED.with(|c| {
        c.borrow_mut()
            .push(String::from_utf8(bytes.to_vec()).unwrap())
    });
}

/// The lines this test thread has written so far, without their newlines.
#[cfg(test)]
pub(crate) fn take_captured() -> Vec<String> {
    CAPTURED
        .with(|c| c.take())
        .into_iter()
        .map(|l| l.trim_end_matches('\n').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn println_writes_one_line() {
        crate::println!("tick {}", 3);
        crate::print!("a");
        crate::print!("b\n");
        assert_eq!(take_captured(), ["tick 3", "ab"]);
    }

    #[test]
    fn print_line_ends_a_started_line_first() {
        crate::print!("partial");
        print_line(format_args!("#HT pass x"));
        assert_eq!(take_captured(), ["partial", "#HT pass x"]);
    }

    #[test]
    fn unbuffered_lines_leave_the_buffer_alone() {
        crate::print!("started ");
        print_line_unbuffered(format_args!("#HT fail - panic"));
        crate::println!("finished");
        assert_eq!(take_captured(), ["#HT fail - panic", "started finished"]);
    }
}
