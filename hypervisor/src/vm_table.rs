//! The set of VMs this hypervisor runs, and what happens between them when one stops: VMs
//! waiting for it (`start_after`) are started, and when none is left the machine powers off.
//!
//! Owns: the global VM list.

use crate::vm::{Vm, VmState};
use alloc::vec::Vec;
use spin::Mutex;

static VMS: Mutex<Vec<&'static Vm>> = Mutex::new(Vec::new());

pub fn add(vm: &'static Vm) {
    VMS.lock().push(vm);
}

/// The VM with this id.
pub fn get(id: usize) -> Option<&'static Vm> {
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
