//! Per-physical-CPU scheduling of pinned vCPUs, round robin.
//!
//! Owns: which vCPU is loaded on this CPU. A vCPU runs until it yields (hypercall or WFI/WFE)
//! or can no longer run (powered off, its VM stopped or resetting); then the next runnable
//! vCPU of this CPU runs, or the CPU waits in `wfe` for one to become runnable. Time-sliced
//! preemption and CPU quotas come with the CPU-quota issue.

#[cfg(target_os = "none")]
use crate::vm::Vcpu;
#[cfg(target_os = "none")]
use alloc::vec::Vec;

/// This CPU's run queue and the vCPU currently loaded in its registers.
pub struct CpuSched {
    #[cfg(target_os = "none")]
    queue: Vec<&'static Vcpu>,
    #[cfg(target_os = "none")]
    current: Option<&'static Vcpu>,
}

impl CpuSched {
    pub const fn new() -> Self {
        CpuSched {
            #[cfg(target_os = "none")]
            queue: Vec::new(),
            #[cfg(target_os = "none")]
            current: None,
        }
    }
}

impl Default for CpuSched {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "none")]
mod target {
    use super::CpuSched;
    use crate::arch::vectors::GuestRegs;
    use crate::vm::{Power, Vcpu};
    use core::sync::atomic::{AtomicBool, Ordering};

    static POWERED_OFF: AtomicBool = AtomicBool::new(false);

    fn same(a: &Vcpu, b: &Vcpu) -> bool {
        core::ptr::eq(a, b)
    }

    impl CpuSched {
        pub fn add(&mut self, vcpu: &'static Vcpu) {
            self.queue.push(vcpu);
        }

        pub fn current(&self) -> Option<&'static Vcpu> {
            self.current
        }

        /// Starts `vcpu` if a CPU_ON is pending for it, and says whether it can run.
        fn runnable(vcpu: &Vcpu) -> bool {
            if !vcpu.vm.is_running() {
                return false;
            }
            let mut power = vcpu.power.lock();
            match *power {
                Power::On => true,
                Power::Off => false,
                Power::Pending { entry, context } => {
                    // SAFETY: `vcpu` is pinned to this CPU (it is in our queue) and is not
                    // loaded (a Pending vCPU was Off, hence unloaded).
                    unsafe { vcpu.reset(entry, context) };
                    *power = Power::On;
                    true
                }
            }
        }

        /// The next runnable vCPU after the current one in round-robin order, the current one
        /// last.
        fn pick(&self) -> Option<&'static Vcpu> {
            let n = self.queue.len();
            let start = match self.current {
                Some(cur) => self
                    .queue
                    .iter()
                    .position(|v| same(v, cur))
                    .map_or(0, |i| i + 1),
                None => 0,
            };
            (0..n)
                .map(|k| self.queue[(start + k) % n])
                .find(|v| Self::runnable(v))
        }

        fn unload_current(&mut self) {
            if let Some(cur) = self.current.take() {
                // SAFETY: `cur` is pinned to this CPU and loaded in its registers.
                unsafe { crate::arch::unload_vcpu(cur) };
                cur.set_loaded(false);
                cur.vm.loaded.fetch_sub(1, Ordering::AcqRel);
                cur.vm.after_unload();
            }
        }

        /// Chooses what runs next on this CPU and returns its registers for `enter_guest`.
        /// Waits (in `wfe`) while nothing can run; powers the machine off once every VM has
        /// stopped.
        pub fn run_next(&mut self) -> *mut GuestRegs {
            loop {
                if let Some(next) = self.pick() {
                    if let Some(cur) = self.current {
                        if same(cur, next) {
                            crate::vm::platform::fill_list_registers(next);
                            // SAFETY: `next` is pinned here and is the loaded vCPU.
                            return unsafe { &mut next.ctx().regs };
                        }
                    }
                    self.unload_current();
                    next.vm.loaded.fetch_add(1, Ordering::AcqRel);
                    // SAFETY: `next` is pinned to this CPU and nothing else is loaded.
                    unsafe { crate::arch::load_vcpu(next) };
                    next.set_loaded(true);
                    self.current = Some(next);
                    crate::vm::platform::fill_list_registers(next);
                    // SAFETY: as above.
                    return unsafe { &mut next.ctx().regs };
                }
                self.unload_current();
                if crate::vm_table::all_stopped() && !POWERED_OFF.swap(true, Ordering::AcqRel) {
                    crate::hv_record!("all-stopped");
                    let err = crate::arch::firmware::system_off();
                    log::error!("PSCI SYSTEM_OFF failed: {err:?}");
                }
                crate::arch::wait_for_event();
            }
        }
    }
}
