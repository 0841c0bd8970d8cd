//! Per-physical-CPU data, found through TPIDR_EL2.
//!
//! Owns: each CPU's stack top (read by the exception entry assembly, so it must stay the first
//! field) and its scheduler state. A CPU only ever touches its own entry, except at boot when
//! the primary CPU fills in every CPU's run queue before starting the secondaries.

use crate::sched::CpuSched;
use aarch64_cpu::registers::{Readable, Writeable, TPIDR_EL2};
use core::cell::UnsafeCell;

pub const MAX_CPUS: usize = 8;

#[repr(C)]
pub struct PerCpu {
    /// Top of this CPU's hypervisor stack; the guest exit path loads SP from here.
    pub stack_top: UnsafeCell<u64>,
    pub index: UnsafeCell<usize>,
    pub mpidr: UnsafeCell<u64>,
    pub sched: UnsafeCell<CpuSched>,
}

// SAFETY: each entry is only accessed by its own CPU (through TPIDR_EL2), except during boot
// when the primary CPU initialises all entries before any secondary CPU runs.
unsafe impl Sync for PerCpu {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: PerCpu = PerCpu {
    stack_top: UnsafeCell::new(0),
    index: UnsafeCell::new(0),
    mpidr: UnsafeCell::new(0),
    sched: UnsafeCell::new(CpuSched::new()),
};

static PERCPU: [PerCpu; MAX_CPUS] = [EMPTY; MAX_CPUS];

/// The entry of CPU `index`, for boot-time initialisation.
pub fn get(index: usize) -> &'static PerCpu {
    &PERCPU[index]
}

/// Makes `index` the current CPU's identity. Called once per CPU at boot, on that CPU.
pub fn install(index: usize, mpidr: u64, stack_top: u64) {
    let cpu = &PERCPU[index];
    // SAFETY: this CPU is the only one that will ever use this entry from now on.
    unsafe {
        *cpu.stack_top.get() = stack_top;
        *cpu.index.get() = index;
        *cpu.mpidr.get() = mpidr;
    }
    TPIDR_EL2.set(cpu as *const PerCpu as u64);
}

/// This CPU's entry.
pub fn current() -> &'static PerCpu {
    // SAFETY: TPIDR_EL2 was set by `install` on this CPU to one of the static entries.
    unsafe { &*(TPIDR_EL2.get() as *const PerCpu) }
}

impl PerCpu {
    pub fn mpidr(&self) -> u64 {
        // SAFETY: written once by `install` before any reader runs.
        unsafe { *self.mpidr.get() }
    }

    pub fn index(&self) -> usize {
        // SAFETY: written once by `install` before any reader runs.
        unsafe { *self.index.get() }
    }

    /// This CPU's scheduler state.
    ///
    /// # Safety
    /// Only the CPU that owns this entry may call this, and not re-entrantly.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn sched(&self) -> &mut CpuSched {
        unsafe { &mut *self.sched.get() }
    }
}
