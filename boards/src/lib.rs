//! Board descriptions (Bao-style): only what the device tree cannot say, plus the documented
//! fallbacks used when the device tree is missing or unreadable. Everything else (memory, CPUs,
//! GIC, UART, timer) is discovered from the device tree at boot.
//!
//! One board is selected at build time by a cargo feature; `qemu-virt` is the default.
#![no_std]

/// What the hypervisor needs to know about a board beyond its device tree.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    pub name: &'static str,
    /// Physical address of a PL011 used for error messages when the device tree cannot be read
    /// (for example when the hypervisor is entered at the wrong exception level).
    pub fallback_uart: u64,
    /// Physical address the hypervisor image is linked at (see `linker/hypervisor.ld`).
    pub load_address: u64,
    /// Scheduler period in microseconds: CPU budgets are refilled once per period
    /// (docs/scheduler.md).
    pub sched_period_us: u32,
    /// The management VM's share of the whole device, in percent. The VirMO CPU percentages
    /// share what remains (docs/scheduler.md).
    pub mgmt_cpu_pct: u8,
}

/// QEMU's `virt` machine: RAM from 0x4000_0000; the PL011 at 0x0900_0000 (hw/arm/virt.c
/// `base_memmap`).
pub const QEMU_VIRT: Board = Board {
    name: "qemu-virt",
    fallback_uart: 0x0900_0000,
    load_address: 0x4020_0000,
    sched_period_us: 10_000,
    mgmt_cpu_pct: 10,
};

/// The board this image is built for.
pub const BOARD: Board = QEMU_VIRT;
