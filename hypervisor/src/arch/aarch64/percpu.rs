//! Per-physical-CPU data, found through TPIDR_EL2.
//!
//! Owns: each CPU's stack top (read by the exception entry assembly, so it must stay the first
//! field), its scheduler state, and which vCPUs' FP/SIMD state and pointer authentication keys
//! its registers hold. A CPU only ever touches its own entry, except at boot when
//! the primary CPU fills in every CPU's run queue before starting the secondaries.

use crate::sched::CpuSched;
use crate::vm::Vcpu;
use aarch64_cpu::registers::{Readable, Writeable, TPIDR_EL2};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

pub const MAX_CPUS: usize = 8;

#[repr(C)]
pub struct PerCpu {
    /// Top of this CPU's hypervisor stack; the guest exit path loads SP from here.
    pub stack_top: UnsafeCell<u64>,
    pub index: UnsafeCell<usize>,
    pub mpidr: UnsafeCell<u64>,
    pub sched: UnsafeCell<CpuSched>,
    /// The vCPU whose FP/SIMD state is in this CPU's registers (null: none), which may be
    /// another than the loaded one: FP/SIMD is switched lazily (context.rs).
    pub fp_owner: UnsafeCell<*const Vcpu>,
    /// Likewise for the pointer authentication keys.
    pub pauth_owner: UnsafeCell<*const Vcpu>,
    /// The address of this CPU's private-interrupt register bank in the GIC (`gic.rs`), 0 if
    /// none: found once rather than on every vCPU switch.
    pub private_bank: UnsafeCell<u64>,
    /// Set by another CPU (with a kick): pick again now (a vCPU of this CPU was woken or moved
    /// here, or the configuration changed).
    resched: AtomicBool,
    /// Set by another CPU (with a kick): save the FP/SIMD state and keys this CPU's registers
    /// hold for vCPUs into their contexts, because that CPU wants to run one of them.
    flush: AtomicBool,
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
    fp_owner: UnsafeCell::new(core::ptr::null()),
    pauth_owner: UnsafeCell::new(core::ptr::null()),
    private_bank: UnsafeCell::new(0),
    resched: AtomicBool::new(false),
    flush: AtomicBool::new(false),
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

    /// The vCPU whose FP/SIMD state this CPU's registers hold (see `fp_owner`).
    pub fn fp_owner(&self) -> *const Vcpu {
        // SAFETY: only this CPU reads or writes its entry's owner.
        unsafe { *self.fp_owner.get() }
    }

    pub fn set_fp_owner(&self, owner: *const Vcpu) {
        // SAFETY: as for `fp_owner`.
        unsafe { *self.fp_owner.get() = owner }
    }

    /// The vCPU whose pointer authentication keys this CPU's registers hold.
    pub fn pauth_owner(&self) -> *const Vcpu {
        // SAFETY: only this CPU reads or writes its entry's owner.
        unsafe { *self.pauth_owner.get() }
    }

    pub fn set_pauth_owner(&self, owner: *const Vcpu) {
        // SAFETY: as for `pauth_owner`.
        unsafe { *self.pauth_owner.get() = owner }
    }

    /// See `private_bank`.
    pub fn private_bank(&self) -> u64 {
        // SAFETY: only this CPU reads or writes its entry's bank.
        unsafe { *self.private_bank.get() }
    }

    pub fn set_private_bank(&self, bank: u64) {
        // SAFETY: as for `private_bank`.
        unsafe { *self.private_bank.get() = bank }
    }

    /// Asks this CPU to pick again (the caller then kicks it).
    pub fn request_resched(&self) {
        self.resched.store(true, Ordering::Release);
    }

    /// Whether a pick was requested since the last call.
    pub fn take_resched(&self) -> bool {
        self.resched.swap(false, Ordering::AcqRel)
    }

    /// Asks this CPU to flush its lazily switched vCPU state (the caller then kicks it).
    pub fn request_flush(&self) {
        self.flush.store(true, Ordering::Release);
    }

    /// Whether a flush was requested since the last call.
    pub fn take_flush(&self) -> bool {
        self.flush.load(Ordering::Relaxed) && self.flush.swap(false, Ordering::AcqRel)
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
