//! The management VM's operations on a VM's life (spec 7.1): power off, power on, suspend,
//! resume. Each is atomic: it completes, or it fails with the VM exactly as it was.
//!
//! Owns: the life-cycle lock (one operation at a time, device-wide), taking a VM's vCPUs off
//! the physical CPUs and waiting for them, and replacing a VM's RAM (power on, resume). The
//! disk is the caller's: suspend and resume take the functions that move the RAM.
//!
//! A suspended VM keeps its vCPU and device state in the hypervisor's memory; its RAM is on
//! disk and its physical frames are back in the free pool, zeroed. Resume may place it in other
//! frames: its stage-2 tables are rebuilt, its vCPUs continue where they stopped, and its
//! virtual counter continues from the value it had (no jump: its timers keep their meaning).

use super::machine::{allocate_memory, ram_bytes, CreateError, Memory, Stage2, StopReason};
use super::ram::GuestRam;
use super::{Power, Vm, VmState};
use crate::memory::pagetable::PageTable;
use crate::memory::FrameTables;
use abi::mgmt::FaultPoint;
use abi::Status;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::{Mutex, MutexGuard};

/// One life-cycle operation at a time, device-wide.
static LOCK: Mutex<()> = Mutex::new(());

/// The buffer suspends encode a VM's state into (`snapshot`), reserved at boot.
static SNAPSHOT: Mutex<alloc::vec::Vec<u8>> = Mutex::new(alloc::vec::Vec::new());

/// Boot: reserves the snapshot buffer (the size of a suspend header), so that a suspend does
/// not allocate.
pub fn init() {
    SNAPSHOT
        .lock()
        .reserve(diskfmt::SUSPEND_HEADER_BYTES as usize);
}

/// Takes the life-cycle lock.
pub fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock()
}

/// Fault injection (`HV_MGMT_FAULT_INJECT`, test builds): per fault point, the number of passes
/// left before one fails (0: disarmed).
static FAULTS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];

/// Makes the `countdown`-th next pass through `point` fail.
pub fn arm_fault(point: FaultPoint, countdown: u32) {
    FAULTS[point as usize].store(countdown, Ordering::Release);
}

/// Whether this pass through `point` must fail (an armed countdown reached 1).
pub fn fault_hit(point: FaultPoint) -> bool {
    let slot = &FAULTS[point as usize];
    let mut n = slot.load(Ordering::Acquire);
    while n != 0 {
        match slot.compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return n == 1,
            Err(seen) => n = seen,
        }
    }
    false
}

impl Vm {
    /// Makes every loaded vCPU of this VM leave its physical CPU now and waits until none is
    /// loaded and no CPU holds any of their lazily switched state. The VM must not be running
    /// (its vCPUs are then not picked again).
    fn evict_vcpus(&self) {
        loop {
            crate::arch::serve_flush_request();
            let mut any = false;
            for v in &self.vcpus {
                if v.is_loaded() {
                    any = true;
                    crate::sched::kick_vcpu(v);
                }
            }
            if !any && !self.any_vcpu_loaded() {
                break;
            }
            core::hint::spin_loop();
        }
        for v in &self.vcpus {
            crate::arch::reclaim_lazy_state(v);
        }
    }

    /// Powers the VM off (from any state but powered off) and waits until its RAM is zeroed
    /// and free. A suspended VM has no RAM: it is powered off at once.
    /// The RAM is zeroed here, on the caller's CPU, not on the CPU its last vCPU leaves.
    pub fn power_off(&self, reason: StopReason) {
        self.release_by_caller.store(true, Ordering::Release);
        self.stop(reason);
        if !self.any_vcpu_loaded() {
            self.after_unload();
        }
        loop {
            match self.state() {
                VmState::Released(_) => break,
                VmState::ReleasePending(reason) => {
                    {
                        let mut state = self.state.lock();
                        self.set_state(&mut state, VmState::Releasing(reason));
                    }
                    self.release();
                    let mut state = self.state.lock();
                    self.set_state(&mut state, VmState::Released(reason));
                    break;
                }
                // Another CPU releases it (it stopped itself first): wait.
                VmState::Releasing(_) => {}
                _ => {
                    self.evict_vcpus();
                    self.after_unload();
                }
            }
            core::hint::spin_loop();
        }
        self.release_by_caller.store(false, Ordering::Release);
    }

    /// RAM of the VM's size, anywhere free, and stage-2 tables mapping it (power on, resume).
    fn new_memory(&self) -> Result<(GuestRam, PageTable<FrameTables>), CreateError> {
        let spec = self.spec;
        allocate_memory(
            spec.ipa_base,
            spec.ram_size,
            spec.fixed_pa,
            self.platform.is_some(),
        )
    }

    /// Makes `ram` and `stage2` the VM's.
    ///
    /// # Safety
    /// As for `set_memory`: no vCPU of the VM loaded or runnable, the life-cycle lock held.
    unsafe fn install_memory(&self, ram: GuestRam, stage2: PageTable<FrameTables>) {
        let root = stage2.root_address();
        *self.stage2.lock() = Some(Stage2(stage2));
        unsafe {
            self.set_memory(Memory {
                ram,
                stage2_root: root,
            })
        };
    }

    /// Boots a powered-off VM again from its image: new RAM (anywhere free), the image loaded,
    /// the devices reset. On error it stays powered off.
    pub fn power_on(&self) -> Result<(), CreateError> {
        if !matches!(self.state(), VmState::Released(_)) {
            return Err(CreateError::WrongState);
        }
        let (ram, stage2) = self.new_memory()?;
        // SAFETY: powered off: no vCPU of this VM is loaded or can be picked; the caller
        // holds the life-cycle lock.
        unsafe { self.install_memory(ram, stage2) };
        if let Some(p) = &self.platform {
            p.reset();
        }
        self.load_image();
        self.cntvoff
            .store(crate::arch::physical_count(), Ordering::Relaxed);
        let mut state = self.state.lock();
        self.set_state(&mut state, VmState::Running);
        drop(state);
        self.power_on_boot_vcpu();
        Ok(())
    }

    /// Suspends a running VM: its vCPUs leave the CPUs, `save` writes its vCPU and device
    /// state (`snapshot`) and its RAM away, then the RAM is zeroed and freed. If `save` fails
    /// the VM runs on as if nothing happened.
    pub fn suspend(
        &self,
        save: impl FnOnce(&[u8], &[u8]) -> Result<(), Status>,
    ) -> Result<(), Status> {
        {
            let mut state = self.state.lock();
            if *state != VmState::Running {
                return Err(Status::WrongState);
            }
            self.set_state(&mut state, VmState::Suspending);
        }
        self.evict_vcpus();
        // Its virtual counter stops here.
        let vcount = crate::arch::physical_count().wrapping_sub(self.cntvoff());
        // What the list registers hold goes back to the vGIC model: the state is then whole
        // without them (refilled at the first entry after the resume).
        if let Some(p) = &self.platform {
            for v in &self.vcpus {
                // SAFETY: evicted: loaded nowhere, lazy state reclaimed.
                p.unlist_all(v.index, unsafe { &mut v.ctx().vif });
            }
        }
        // One buffer for every suspend (under the life-cycle lock), kept between them.
        let mut header = SNAPSHOT.lock();
        self.snapshot(vcount, &mut header);
        let ram = self.ram();
        let saved = if self.state() == VmState::Suspending {
            save(&header, ram_bytes(ram.pa, ram.size))
        } else {
            // One of its vCPUs stopped it on the way out (SYSTEM_OFF, a fault).
            Err(Status::WrongState)
        };
        let mut state = self.state.lock();
        if *state != VmState::Suspending {
            // Stopped meanwhile: finish that instead.
            drop(state);
            self.after_unload();
            return Err(Status::WrongState);
        }
        if let Err(e) = saved {
            self.set_state(&mut state, VmState::Running);
            drop(state);
            self.wake_vcpus();
            return Err(e);
        }
        self.suspended_vcount.store(vcount, Ordering::Relaxed);
        self.release();
        self.set_state(&mut state, VmState::Suspended);
        Ok(())
    }

    /// Resumes a suspended VM: new RAM (anywhere free), `load` fills it from where `suspend`
    /// wrote it, and the vCPUs continue. On error the VM stays suspended and the RAM is freed.
    pub fn resume(&self, load: impl FnOnce(&mut [u8]) -> Result<(), Status>) -> Result<(), Status> {
        if self.state() != VmState::Suspended {
            return Err(Status::WrongState);
        }
        let (ram, stage2) = self.new_memory().map_err(|_| Status::NoMemory)?;
        let bytes = ram_bytes(ram.pa, ram.size);
        if let Err(e) = load(bytes) {
            crate::arch::zero_range(ram.pa, ram.size);
            stage2.destroy();
            let _ = crate::memory::FRAMES.lock().free(ram.pa, ram.size);
            return Err(e);
        }
        // The vCPUs may run with their caches off: RAM must be visible to them.
        crate::arch::pmu::exclude(|| crate::arch::clean_dcache_range(ram.pa, ram.size));
        // SAFETY: suspended: no vCPU of this VM is loaded or can be picked; the caller holds
        // the life-cycle lock.
        unsafe { self.install_memory(ram, stage2) };
        let vcount = self.suspended_vcount.load(Ordering::Relaxed);
        self.cntvoff.store(
            crate::arch::physical_count().wrapping_sub(vcount),
            Ordering::Relaxed,
        );
        let mut state = self.state.lock();
        self.set_state(&mut state, VmState::Running);
        drop(state);
        self.wake_vcpus();
        Ok(())
    }

    /// A VM created powered off at boot, whose disk record says it was suspended: takes the
    /// saved vCPU and device state and becomes suspended (resumable), or stays powered off.
    pub fn restore_suspended(&self, header: &[u8]) -> Result<(), crate::vgic::SnapshotError> {
        let vcount = self.restore_snapshot(header)?;
        self.suspended_vcount.store(vcount, Ordering::Relaxed);
        let mut state = self.state.lock();
        self.set_state(&mut state, VmState::Suspended);
        Ok(())
    }

    /// Tells the scheduler which vCPUs can run again (those powered on, or with a CPU_ON
    /// pending).
    fn wake_vcpus(&self) {
        for v in &self.vcpus {
            if *v.power.lock() != Power::Off {
                crate::sched::vcpu_powered_on(v);
            }
        }
    }
}
