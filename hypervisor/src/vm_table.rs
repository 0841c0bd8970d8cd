//! The set of VMs this hypervisor runs, and what happens between them when one stops: VMs
//! waiting for it (`start_after`) are started, and when none is left the machine powers off.
//!
//! Owns: the global VM list.

use crate::vm::{Vm, VmState};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, Ordering};
use spin::Mutex;

static VMS: Mutex<Vec<&'static Vm>> = Mutex::new(Vec::new());

/// VMs by id, for ids below `FAST_IDS`, without a lock: the scheduler looks a VM up on every
/// switch.
const FAST_IDS: usize = 64;
static BY_ID: [AtomicPtr<Vm>; FAST_IDS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; FAST_IDS];

pub fn add(vm: &'static Vm) {
    let mut vms = VMS.lock();
    vms.retain(|v| v.id != vm.id);
    vms.push(vm);
    if vm.id < FAST_IDS {
        BY_ID[vm.id].store(vm as *const Vm as *mut Vm, Ordering::Release);
    }
}

/// Forgets VM `id` (deleted).
pub fn remove(id: usize) {
    let mut vms = VMS.lock();
    vms.retain(|vm| vm.id != id);
    if id < FAST_IDS {
        BY_ID[id].store(core::ptr::null_mut(), Ordering::Release);
    }
}

/// The VM with this id.
#[inline]
pub fn get(id: usize) -> Option<&'static Vm> {
    if id < FAST_IDS {
        // SAFETY: only `add` stores here, pointers to VMs that live for ever (leaked).
        return unsafe { BY_ID[id].load(Ordering::Acquire).as_ref() };
    }
    VMS.lock().iter().find(|vm| vm.id == id).copied()
}

/// A snapshot of the VM list.
pub fn all() -> Vec<&'static Vm> {
    VMS.lock().clone()
}

/// Starts the VMs that were waiting for VM `id` to stop.
pub fn on_vm_stopped(id: usize) {
    for vm in all() {
        if vm.start_after == Some(id - 1) && vm.release_hold() {
            {
                crate::hv_record!("vm-start id={} name={} after={}", vm.id, vm.name, id);
                vm.power_on_boot_vcpu();
            }
        }
    }
}

/// Whether no VM can ever run again and every VM's RAM has been scrubbed and returned.
pub fn all_stopped() -> bool {
    all()
        .iter()
        .all(|vm| matches!(vm.state(), VmState::Released(_)))
}
