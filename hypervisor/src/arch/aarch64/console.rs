//! The physical console: one PL011 shared by the hypervisor's log, its `#HV` records and the
//! VMs' lines (see docs/architecture.md, "Console framing").
//!
//! Owns: the UART lock. Every line goes out whole under the lock, so lines of different CPUs
//! and VMs never mix. Never blocks for anything but the UART FIFO.

use super::pl011::Pl011;
use crate::devices::console_input::{InputEvent, InputSwitch, HELP};
use core::fmt::{self, Write};
use spin::Mutex;

static UART: Mutex<Option<Pl011>> = Mutex::new(None);

/// Starts the console on the PL011 at `base` (identity mapped as device memory).
pub fn init(base: u64) {
    // SAFETY: `base` comes from the device tree's PL011 node (or the board fallback) and the
    // EL2 stage-1 map covers it as device memory; the UART lock serialises every access.
    *UART.lock() = Some(unsafe { Pl011::new(base as usize) });
    BASE.call_once(|| base);
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Prints one line (a newline is added) built by `f`, atomically with respect to other lines.
pub fn line(f: impl FnOnce(&mut dyn Write) -> fmt::Result) {
    let mut uart = UART.lock();
    if let Some(uart) = uart.as_mut() {
        let _ = f(uart);
        uart.write_bytes(b"\n");
    }
}

/// Prints a line of a VM's console output with the VM's name as prefix.
pub fn vm_line(name: &str, text: &[u8]) {
    line(|w| {
        w.write_str(name)?;
        w.write_str("| ")?;
        // Bytes that are not UTF-8 are shown as '?' rather than dropped, so a line keeps its
        // length and shape.
        for chunk in text.utf8_chunks() {
            w.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                w.write_char('?')?;
            }
        }
        Ok(())
    });
}

/// Prints without taking the lock, for the crash path (the lock may be held by the CPU that
/// crashed) and for errors before the console is up: then the board's fallback UART is used.
pub fn emergency(args: fmt::Arguments) {
    let base = *BASE.get().unwrap_or(&boards::BOARD.fallback_uart);
    // SAFETY: the UART is mapped as device memory (or the MMU is off); a crash report may
    // interleave with another CPU's line, which is acceptable when the hypervisor goes down.
    let mut uart = unsafe { Pl011::new(base as usize) };
    let _ = uart.write_fmt(args);
}

static BASE: spin::Once<u64> = spin::Once::new();

/// Enables the console's receive interrupt (`intid`, delivered to CPU `mpidr`).
pub fn enable_input(intid: u32, mpidr: u64) {
    if let Some(uart) = UART.lock().as_ref() {
        uart.enable_rx_interrupt();
    }
    super::gic::enable_spi(intid, mpidr);
}

static INPUT: Mutex<Option<InputSwitch>> = Mutex::new(None);

/// The console received data: route every byte to the VM that has input (see
/// `devices::console_input` for the escape sequence).
pub fn handle_input() {
    // Read in chunks (without the UART lock while routing, which may log), until the UART's
    // FIFO is empty: no byte is read and then dropped.
    loop {
        let mut bytes: heapless::Vec<u8, 64> = heapless::Vec::new();
        if let Some(uart) = UART.lock().as_ref() {
            while !bytes.is_full() {
                match uart.read_byte() {
                    Some(b) => {
                        let _ = bytes.push(b);
                    }
                    None => break,
                }
            }
        }
        if bytes.is_empty() {
            return;
        }
        route_input(&bytes);
    }
}

/// Routes console bytes: to the VM that has input, or to the escape sequence.
fn route_input(bytes: &[u8]) {
    let vms = crate::vm_table::all();
    let mut input = INPUT.lock();
    let switch = input.get_or_insert_with(|| InputSwitch::new(vms.len()));
    // VMs come and go (the management VM creates and deletes them).
    switch.set_vm_count(vms.len());
    for &b in bytes {
        match switch.feed(b) {
            Some(InputEvent::ToVm { vm, byte }) => {
                if let Some(vm) = vms.get(vm) {
                    crate::vm::platform::console_input(vm, byte);
                }
            }
            Some(InputEvent::Switched { vm }) => {
                log::info!(
                    "console input goes to VM {}",
                    vms.get(vm).map_or("?", |v| v.name.as_str())
                )
            }
            Some(InputEvent::ShowHelp) => {
                log::info!("{HELP}");
                for (i, vm) in vms.iter().enumerate() {
                    let mark = if i == switch.current() { '*' } else { ' ' };
                    log::info!("{mark} {}: {}", i + 1, vm.name);
                }
            }
            Some(InputEvent::ShowStats) => crate::sched::print_stats(),
            Some(InputEvent::Invalid { byte }) => {
                log::info!("console: no action for Ctrl-] {byte:#04x}")
            }
            None => {}
        }
    }
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        line(|w| write!(w, "[{:>5}] {}", record.level(), record.args()));
    }

    fn flush(&self) {}
}

/// Prints a machine-readable `#HV` record line.
#[macro_export]
macro_rules! hv_record {
    ($($arg:tt)*) => {
        $crate::arch::console::line(|w| {
            w.write_str("#HV ")?;
            w.write_fmt(format_args!($($arg)*))
        })
    };
}
