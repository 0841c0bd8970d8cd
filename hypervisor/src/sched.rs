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
    /// Where `current` is in `queue`.
    #[cfg(target_os = "none")]
    current_index: usize,
}

impl CpuSched {
    pub const fn new() -> Self {
        CpuSched {
            #[cfg(target_os = "none")]
            queue: Vec::new(),
            #[cfg(target_os = "none")]
            current: None,
            #[cfg(target_os = "none")]
            current_index: 0,
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
                    crate::arch::context::forget_lazy_state(vcpu);
                    *power = Power::On;
                    true
                }
            }
        }

        /// The next runnable vCPU after the current one in round-robin order, the current one
        /// last, with its place in the queue.
        fn pick(&self) -> Option<(usize, &'static Vcpu)> {
            let n = self.queue.len();
            let mut i = match self.current {
                Some(_) => self.current_index + 1,
                None => 0,
            };
            for _ in 0..n {
                if i >= n {
                    i = 0;
                }
                let v = self.queue[i];
                if Self::runnable(v) {
                    return Some((i, v));
                }
                i += 1;
            }
            None
        }

        fn unload_current(&mut self) {
            if let Some(cur) = self.current.take() {
                // SAFETY: `cur` is pinned to this CPU and loaded in its registers.
                unsafe { crate::arch::unload_vcpu(cur) };
                cur.set_loaded(false);
                cur.vm.loaded.fetch_sub(1, Ordering::AcqRel);
                // `after_unload` only finishes a stop or a reset, and only a loaded vCPU of
                // the VM stops or resets it: that vCPU sees it not running when it unloads in
                // turn (its state change precedes its own `loaded` decrement), so a VM seen
                // running here has nothing to finish.
                if !cur.vm.is_running() {
                    cur.vm.after_unload();
                }
            }
        }

        /// Chooses what runs next on this CPU and returns its registers for `enter_guest`.
        /// Waits (in `wfe`) while nothing can run; powers the machine off once every VM has
        /// stopped.
        pub fn run_next(&mut self) -> *mut GuestRegs {
            loop {
                if let Some((index, next)) = self.pick() {
                    return self.run(index, next);
                }
                self.idle();
            }
        }

        /// Makes `next`, at `index` in the queue, the loaded vCPU (unless it is already) and
        /// returns its registers.
        fn run(&mut self, index: usize, next: &'static Vcpu) -> *mut GuestRegs {
            if !self.current.is_some_and(|cur| same(cur, next)) {
                self.unload_current();
                next.vm.loaded.fetch_add(1, Ordering::AcqRel);
                // SAFETY: `next` is pinned to this CPU and nothing else is loaded.
                unsafe { crate::arch::load_vcpu(next) };
                next.set_loaded(true);
                self.current = Some(next);
                self.current_index = index;
            }
            crate::vm::platform::fill_list_registers(next);
            // SAFETY: `next` is pinned here and is the loaded vCPU.
            unsafe { &mut next.ctx().regs }
        }

        /// Nothing can run: unloads the current vCPU, powers the machine off if every VM has
        /// stopped, and waits for something to change.
        #[cold]
        #[inline(never)]
        fn idle(&mut self) {
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
