//! The console: answers go out through `HV_CONSOLE_WRITE` (the hypervisor prints each line as
//! `<vm name>| <line>`), keystrokes come in through the emulated PL011 at IPA 0x0900_0000
//! (hypervisor/src/devices/pl011.rs), polled.
//!
//! Why not write through the PL011 too: its output is held to the console budget by
//! back-pressure (a full FIFO the guest would have to wait on), while the hypercall takes a
//! whole line at once; both end up in the same per-VM line buffer.

use abi::ids::HV_CONSOLE_WRITE;
use abi::{Status, CONSOLE_WRITE_MAX};
use core::fmt;

/// The emulated PL011 of every VM with the platform devices (docs/architecture.md, "Guests").
const PL011_BASE: usize = 0x0900_0000;
/// UARTDR and UARTFR offsets, and UARTFR.RXFE: receive FIFO empty (PL011 TRM §3.3.1, §3.3.3).
const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const UARTFR_RXFE: u32 = 1 << 4;

/// The next byte typed on this VM's console, if any.
pub fn read_byte() -> Option<u8> {
    // SAFETY: the PL011 registers are 32-bit MMIO at a fixed IPA that the hypervisor emulates
    // for this VM; volatile 32-bit reads of FR and DR are accesses it accepts (16- and 32-bit
    // everywhere), and reading DR only pops the receive FIFO.
    unsafe {
        let fr = ((PL011_BASE + UARTFR) as *const u32).read_volatile();
        if fr & UARTFR_RXFE != 0 {
            return None;
        }
        Some(((PL011_BASE + UARTDR) as *const u32).read_volatile() as u8)
    }
}

/// Writes `bytes` through the console hypercall, in as many calls as the size limit needs.
/// Gives up silently on an error: the console is the only place it could be reported.
fn write_all(bytes: &[u8]) {
    for chunk in bytes.chunks(CONSOLE_WRITE_MAX as usize) {
        let mut rest = chunk;
        while !rest.is_empty() {
            // With the MMU off a pointer's value is its IPA, and `rest` is in our RAM (stack,
            // heap or image).
            let [status, written, ..] = abi::guest::hvc(
                HV_CONSOLE_WRITE,
                [rest.as_ptr() as u64, rest.len() as u64, 0],
            );
            if status != Status::Success.to_reg() || written == 0 {
                return;
            }
            rest = &rest[(written as usize).min(rest.len())..];
        }
    }
}

/// Writes `text` and a newline: one console line (the caller keeps `text` free of newlines and
/// short enough, see `shell::fit`).
pub fn line(text: &str) {
    raw_line(text.as_bytes());
}

pub fn raw_line(bytes: &[u8]) {
    write_all(bytes);
    write_all(b"\n");
}

/// A line formatted without the heap, for the panic and exception paths.
pub struct FixedLine {
    buf: [u8; 256],
    len: usize,
}

impl FixedLine {
    pub const fn new() -> Self {
        FixedLine {
            buf: [0; 256],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for FixedLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                return Err(fmt::Error);
            }
            // Keep it one line.
            self.buf[self.len] = if b == b'\n' { b' ' } else { b };
            self.len += 1;
        }
        Ok(())
    }
}
