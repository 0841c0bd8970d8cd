//! The GICv3 virtual CPU interface (ICH_*_EL2, IHI 0069 §12.4): list registers and the
//! virtual interface state of the loaded vCPU.
//!
//! Owns: moving a vCPU's list registers, ICH_VMCR_EL2 and active-priority registers between
//! the hardware and memory on a vCPU switch, and writing list registers on injection. The
//! guest talks to this interface directly (ICC_* at EL1 reach ICV_* since HCR_EL2.IMO = 1), so
//! acknowledging and ending virtual interrupts costs it no trap.

use aarch64_cpu::registers::*;
use core::arch::asm;

/// The architecture allows up to 16 list registers.
pub const MAX_LRS: usize = 16;

/// A vCPU's virtual CPU interface state while it is not loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuIfState {
    pub lrs: [u64; MAX_LRS],
    pub vmcr: u64,
    pub ap1r0: u64,
    pub ap0r0: u64,
    pub hcr: u64,
}

/// ICH_HCR_EL2.En: the virtual CPU interface is enabled.
pub const ICH_HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.NPIE: maintenance interrupt while no list register holds a pending
/// interrupt, so that interrupts waiting for a free list register get one.
pub const ICH_HCR_NPIE: u64 = 1 << 3;

static LR_COUNT: spin::Once<usize> = spin::Once::new();

/// How many list registers this CPU has (ICH_VTR_EL2.ListRegs + 1).
pub fn lr_count() -> usize {
    *LR_COUNT.call_once(|| (ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1).min(MAX_LRS))
}

macro_rules! lr_access {
    ($($n:literal => $reg:ident),*) => {
        /// Reads list register `n`.
        pub fn read_lr(n: usize) -> u64 {
            match n {
                $($n => $reg.get(),)*
                _ => 0,
            }
        }

        /// Writes list register `n`.
        pub fn write_lr(n: usize, value: u64) {
            match n {
                $($n => $reg.set(value),)*
                _ => {}
            }
        }
    };
}

lr_access!(0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
    4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
    8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
    12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2);

pub fn set_hcr(value: u64) {
    ICH_HCR_EL2.set(value);
}

pub fn hcr() -> u64 {
    ICH_HCR_EL2.get()
}

impl VcpuIfState {
    /// The state of a vCPU that has never run: nothing pending; the interface enabled if the
    /// VM has a vGIC (the guest enables its groups itself through ICC_IGRPEN1_EL1, i.e.
    /// ICH_VMCR_EL2.VENG1), disabled otherwise.
    pub fn reset(enabled: bool) -> Self {
        VcpuIfState {
            hcr: if enabled { ICH_HCR_EN } else { 0 },
            ..Default::default()
        }
    }

    pub fn save(&mut self) {
        let n = lr_count();
        for (i, lr) in self.lrs.iter_mut().enumerate().take(n) {
            *lr = read_lr(i);
        }
        self.vmcr = ICH_VMCR_EL2.get();
        self.ap1r0 = ICH_AP1R0_EL2.get();
        self.ap0r0 = ICH_AP0R0_EL2.get();
        self.hcr = ICH_HCR_EL2.get();
        // Leave nothing behind for the next vCPU of this CPU.
        ICH_HCR_EL2.set(0);
    }

    pub fn load(&self) {
        let n = lr_count();
        for (i, &lr) in self.lrs.iter().enumerate().take(n) {
            write_lr(i, lr);
        }
        ICH_VMCR_EL2.set(self.vmcr);
        ICH_AP1R0_EL2.set(self.ap1r0);
        ICH_AP0R0_EL2.set(self.ap0r0);
        ICH_HCR_EL2.set(self.hcr);
        // SAFETY: a context synchronisation event so the interface state is in effect before
        // the guest runs.
        unsafe { asm!("isb", options(nomem, nostack)) };
    }
}
