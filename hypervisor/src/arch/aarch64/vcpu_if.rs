//! The GIC virtual CPU interface of the loaded vCPU: list registers, the virtual machine
//! control register, active priorities and the hypervisor control register. GICv3 reaches
//! them as system registers (ICH_*_EL2, IHI 0069 §12.4); GICv2 through the memory-mapped
//! GICH frame (IHI 0048B §5.3).
//!
//! Owns: moving a vCPU's interface state between the hardware and memory on a vCPU switch,
//! and reading and writing list registers. The guest talks to its virtual CPU interface
//! directly (GICv3: ICC_* at EL1 reach ICV_* since HCR_EL2.IMO = 1; GICv2: the GICV frame is
//! mapped at its GICC address), so acknowledging and ending virtual interrupts costs no trap.

use crate::dt::hwinfo::{GicVersion, Region};
use crate::vgic::{lr_from_gich, lr_from_ich, lr_to_gich, lr_to_ich, LrEntry};
use aarch64_cpu::registers::*;
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

/// The architecture allows up to 16 list registers (GICv2: 64, of which we use 16).
pub const MAX_LRS: usize = 16;

/// A vCPU's virtual CPU interface state while it is not loaded, in the hardware's encoding.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuIfState {
    pub lrs: [u64; MAX_LRS],
    pub vmcr: u64,
    pub ap1r0: u64,
    pub ap0r0: u64,
    pub hcr: u64,
}

/// ICH_HCR_EL2.En / GICH_HCR.En: the virtual CPU interface is enabled.
pub const HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.NPIE / GICH_HCR.NPIE: maintenance interrupt while no list register holds a
/// pending interrupt, so that interrupts waiting for a free list register get one.
pub const HCR_NPIE: u64 = 1 << 3;

// GICH registers (IHI 0048B §5.3.1).
const GICH_HCR: u64 = 0x0;
const GICH_VTR: u64 = 0x4;
const GICH_VMCR: u64 = 0x8;
const GICH_APR: u64 = 0xf0;
const GICH_LR0: u64 = 0x100;

enum Interface {
    SysRegs,
    Mmio(u64),
}

static INTERFACE: spin::Once<Interface> = spin::Once::new();
static LR_COUNT: spin::Once<usize> = spin::Once::new();

/// Selects the interface from the host's GIC. Boot CPU, once, before any vCPU is loaded.
pub fn init(version: GicVersion, hyp_interface: Option<Region>) {
    INTERFACE.call_once(|| match (version, hyp_interface) {
        (GicVersion::V2, Some(gich)) => Interface::Mmio(gich.base),
        _ => Interface::SysRegs,
    });
}

fn gich() -> Option<u64> {
    match INTERFACE.get() {
        Some(Interface::Mmio(base)) => Some(*base),
        _ => None,
    }
}

fn mmio_read(addr: u64) -> u32 {
    // SAFETY: a GICH register of the host's GIC, mapped as device memory at EL2.
    unsafe { read_volatile(addr as *const u32) }
}

fn mmio_write(addr: u64, value: u32) {
    // SAFETY: as for `mmio_read`.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// How many list registers this CPU has (ICH_VTR_EL2.ListRegs + 1, GICH_VTR.ListRegs + 1).
pub fn lr_count() -> usize {
    *LR_COUNT.call_once(|| {
        let n = match gich() {
            Some(base) => (mmio_read(base + GICH_VTR) & 0x3f) as usize + 1,
            None => ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1,
        };
        n.min(MAX_LRS)
    })
}

macro_rules! ich_lr_access {
    ($($n:literal => $reg:ident),*) => {
        fn read_ich_lr(n: usize) -> u64 {
            match n {
                $($n => $reg.get(),)*
                _ => 0,
            }
        }

        fn write_ich_lr(n: usize, value: u64) {
            match n {
                $($n => $reg.set(value),)*
                _ => {}
            }
        }
    };
}

ich_lr_access!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
    4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
    8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
    12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2);

/// List register `n` in its hardware encoding.
fn read_lr_raw(n: usize) -> u64 {
    match gich() {
        Some(base) => mmio_read(base + GICH_LR0 + 4 * n as u64) as u64,
        None => read_ich_lr(n),
    }
}

fn write_lr_raw(n: usize, value: u64) {
    match gich() {
        Some(base) => mmio_write(base + GICH_LR0 + 4 * n as u64, value as u32),
        None => write_ich_lr(n, value),
    }
}

/// List register `n`, decoded.
pub fn read_lr(n: usize) -> LrEntry {
    match gich() {
        Some(_) => lr_from_gich(read_lr_raw(n) as u32),
        None => lr_from_ich(read_lr_raw(n)),
    }
}

/// Writes list register `n`; `None` empties it.
pub fn write_lr(n: usize, entry: Option<&LrEntry>) {
    let raw = match (entry, gich()) {
        (None, _) => 0,
        (Some(e), Some(_)) => lr_to_gich(e) as u64,
        (Some(e), None) => lr_to_ich(e),
    };
    write_lr_raw(n, raw);
}

pub fn set_hcr(value: u64) {
    match gich() {
        Some(base) => mmio_write(base + GICH_HCR, value as u32),
        None => ICH_HCR_EL2.set(value),
    }
}

impl VcpuIfState {
    /// The state of a vCPU that has never run: nothing pending; the interface enabled if the
    /// VM has a vGIC (the guest enables its groups itself), disabled otherwise.
    pub fn reset(enabled: bool) -> Self {
        VcpuIfState {
            hcr: if enabled { HCR_EN } else { 0 },
            ..Default::default()
        }
    }

    pub fn save(&mut self) {
        let n = lr_count();
        for (i, lr) in self.lrs.iter_mut().enumerate().take(n) {
            *lr = read_lr_raw(i);
        }
        match gich() {
            Some(base) => {
                self.vmcr = mmio_read(base + GICH_VMCR) as u64;
                self.ap1r0 = mmio_read(base + GICH_APR) as u64;
                self.hcr = mmio_read(base + GICH_HCR) as u64;
            }
            None => {
                self.vmcr = ICH_VMCR_EL2.get();
                self.ap1r0 = ICH_AP1R0_EL2.get();
                self.ap0r0 = ICH_AP0R0_EL2.get();
                self.hcr = ICH_HCR_EL2.get();
            }
        }
        // Leave nothing behind for the next vCPU of this CPU.
        set_hcr(0);
    }

    pub fn load(&self) {
        let n = lr_count();
        for (i, &lr) in self.lrs.iter().enumerate().take(n) {
            write_lr_raw(i, lr);
        }
        match gich() {
            Some(base) => {
                mmio_write(base + GICH_VMCR, self.vmcr as u32);
                mmio_write(base + GICH_APR, self.ap1r0 as u32);
                mmio_write(base + GICH_HCR, self.hcr as u32);
            }
            None => {
                ICH_VMCR_EL2.set(self.vmcr);
                ICH_AP1R0_EL2.set(self.ap1r0);
                ICH_AP0R0_EL2.set(self.ap0r0);
                ICH_HCR_EL2.set(self.hcr);
            }
        }
        // SAFETY: a context synchronisation event so the interface state is in effect before
        // the guest runs.
        unsafe { asm!("isb", options(nomem, nostack)) };
    }
}
