//! The management calls (`abi::mgmt`, docs/hypercalls.md "Management calls").
//!
//! Owns: refusing them to every VM but the management VM, validating their arguments (the
//! record page, every field), and turning them into operations on VMs and the scheduler. A
//! call that changes something either changes all of it or nothing.

use super::lifecycle;
use super::Action;
use crate::quota::{QuotaError, QuotaSet};
use crate::vm::{guest_page, Vcpu, Vm, VmState as HvState};
use abi::mgmt::*;
use abi::Status;

/// Serves management call `function` for `vcpu`.
pub fn handle(vcpu: &Vcpu, x: &mut [u64; 31], function: u32, args: [u64; 3]) -> Action {
    let result = if vcpu.vm.management {
        serve(vcpu.vm, x, function, args)
    } else {
        Err(Status::Denied)
    };
    x[0] = match result {
        Ok(()) => Status::Success.to_reg(),
        Err(status) => status.to_reg(),
    };
    Action::Resume
}

fn serve(caller: &Vm, x: &mut [u64; 31], function: u32, args: [u64; 3]) -> Result<(), Status> {
    match function {
        HV_MGMT_DEVICE_INFO => {
            let page = page(caller, args[0])?;
            device_info().encode(page);
        }
        HV_MGMT_VM_LIST => {
            let page = page(caller, args[0])?;
            let vms = managed_vms();
            for (i, vm) in vms.iter().enumerate().take(PAGE_SIZE / 4) {
                page[i * 4..i * 4 + 4].copy_from_slice(&(vm.id as u32).to_le_bytes());
            }
            x[1] = vms.len().min(PAGE_SIZE / 4) as u64;
        }
        HV_MGMT_VM_QUERY => {
            let vm = managed_vm(args[0])?;
            let page = page(caller, args[1])?;
            vm_info(vm).encode(page);
        }
        HV_MGMT_VM_STATS => {
            let id = if args[0] == 0 {
                caller.id
            } else {
                managed_vm(args[0])?.id
            };
            let s = crate::sched::stats(id).ok_or(Status::NotFound)?;
            let ns = ticks_to_ns;
            x[1] = ns(s.consumed);
            x[2] = ns(s.throttled);
            x[3] = s.throttled_periods;
        }
        HV_MGMT_APPLY => {
            let page = page(caller, args[0])?;
            match apply(page) {
                Ok(()) => x[1] = 0,
                Err((status, at)) => {
                    x[1] = at.map_or(u64::MAX, |i| i as u64);
                    return Err(status);
                }
            }
        }
        HV_MGMT_VM_CREATE => {
            let page = page(caller, args[0])?;
            let req = VmCreate::decode(page)?;
            x[1] = lifecycle::create(&req)? as u64;
        }
        HV_MGMT_VM_DELETE => lifecycle::delete(managed_vm(args[0])?)?,
        HV_MGMT_VM_POWER_ON => lifecycle::power_on(managed_vm(args[0])?)?,
        HV_MGMT_VM_POWER_OFF => lifecycle::power_off(managed_vm(args[0])?)?,
        HV_MGMT_VM_SUSPEND => lifecycle::suspend(managed_vm(args[0])?)?,
        HV_MGMT_VM_RESUME => lifecycle::resume(managed_vm(args[0])?)?,
        HV_MGMT_IMAGE_LIST => {
            let page = page(caller, args[0])?;
            x[1] = lifecycle::image_list(page)? as u64;
        }
        HV_MGMT_IMAGE_REMOVE => {
            let id = u32::try_from(args[0]).map_err(|_| Status::NotFound)?;
            lifecycle::image_remove(id)?;
        }
        HV_MGMT_STORE_READ | HV_MGMT_STORE_WRITE => {
            let page = page(caller, args[1])?;
            lifecycle::store_io(function == HV_MGMT_STORE_WRITE, args[0], page, args[2])?;
        }
        HV_MGMT_FAULT_INJECT => lifecycle::fault_inject(args[0], args[1])?,
        _ => return Err(Status::NotSupported),
    }
    Ok(())
}

fn ticks_to_ns(t: u64) -> u64 {
    let freq = crate::arch::counter_frequency().max(1);
    (t as u128 * 1_000_000_000 / freq as u128) as u64
}

/// The record page at `ipa` of the caller's RAM.
fn page(caller: &Vm, ipa: u64) -> Result<&'static mut [u8], Status> {
    guest_page(caller, ipa).ok_or(Status::InvalidParameter)
}

/// Every VM but the management VM.
fn managed_vms() -> alloc::vec::Vec<&'static Vm> {
    crate::vm_table::all()
        .into_iter()
        .filter(|vm| !vm.management)
        .collect()
}

fn managed_vm(handle: u64) -> Result<&'static Vm, Status> {
    let id = usize::try_from(handle).map_err(|_| Status::NotFound)?;
    match crate::vm_table::get(id) {
        Some(vm) if !vm.management => Ok(vm),
        _ => Err(Status::NotFound),
    }
}

fn vm_state(vm: &Vm) -> VmState {
    match vm.state() {
        HvState::Running | HvState::Resetting | HvState::Suspending => VmState::Running,
        HvState::Suspended => VmState::Suspended,
        HvState::Held
        | HvState::Stopped(_)
        | HvState::Releasing(_)
        | HvState::ReleasePending(_)
        | HvState::Released(_) => VmState::PoweredOff,
    }
}

fn resources(vm: &Vm) -> Resources {
    let m = lifecycle::managed(vm.id);
    Resources {
        ram: vm.ram().size,
        storage: m.map_or(0, |m| m.storage),
        cpu_pct: crate::sched::next_quota(vm.id).unwrap_or(0) as u32,
        net_pct: m.map_or(0, |m| m.net_pct),
        vcpus: vm.vcpus.len() as u32,
    }
}

fn vm_info(vm: &Vm) -> VmInfo {
    let cpu = crate::sched::stats(vm.id).map_or(CpuStats::default(), |s| CpuStats {
        consumed_ns: ticks_to_ns(s.consumed),
        throttled_ns: ticks_to_ns(s.throttled),
        throttled_periods: s.throttled_periods,
    });
    VmInfo {
        handle: vm.id as u32,
        state: vm_state(vm),
        image: lifecycle::managed(vm.id).map_or(0, |m| m.image),
        resources: resources(vm),
        cpu,
        name: Name::new(&vm.name).unwrap_or(Name::EMPTY),
    }
}

fn device_info() -> DeviceInfo {
    let frames = crate::memory::FRAMES.lock();
    let (ram_total, ram_free) = (frames.total_bytes(), frames.free_bytes());
    drop(frames);
    let vms = managed_vms();
    let (disk, storage_total, storage_free, images) = lifecycle::storage_totals();
    DeviceInfo {
        pcpus: crate::arch::cpu_count() as u32,
        mgmt_cpu_pct: boards::BOARD.mgmt_cpu_pct as u32,
        cpu_allocated_pct: crate::sched::next_quota_sum(),
        period_us: boards::BOARD.sched_period_us,
        ram_total,
        ram_free,
        storage_total,
        storage_free,
        net_allocated_pct: vms
            .iter()
            .filter_map(|vm| lifecycle::managed(vm.id))
            .map(|m| m.net_pct)
            .sum(),
        vms: vms.len() as u32,
        images,
        disk: disk as u32,
    }
}

/// Applies a batch of resource changes, all or nothing. Only the CPU percentage can change
/// yet; any other field must equal the VM's current value.
fn apply(page: &[u8]) -> Result<(), (Status, Option<usize>)> {
    let n = ApplyBatch::count(page).map_err(|e| (Status::from(e), None))?;
    let mut set = QuotaSet::new();
    for i in 0..n {
        let change = ApplyBatch::get(page, i).map_err(|e| (Status::from(e), Some(i)))?;
        let vm = managed_vm(change.handle as u64).map_err(|s| (s, Some(i)))?;
        let now = resources(vm);
        let wanted = Resources {
            cpu_pct: now.cpu_pct,
            ..change.resources
        };
        if wanted != now {
            return Err((Status::NotSupported, Some(i)));
        }
        set.set(vm.id as u16, change.resources.cpu_pct);
    }
    crate::sched::apply_quotas(&set).map_err(|e| {
        log::warn!("quota change refused: {e}");
        let at = match e {
            QuotaError::OverHundred { vm, .. }
            | QuotaError::UnknownVm(vm)
            | QuotaError::DuplicateVm(vm)
            | QuotaError::ManagementVm(vm)
            | QuotaError::Unplaceable { vm, .. } => set.entries().iter().position(|e| e.0 == vm),
            _ => None,
        };
        let status = match e {
            QuotaError::OverHundred { .. } => Status::InvalidParameter,
            QuotaError::UnknownVm(_) => Status::NotFound,
            _ => Status::Inconsistent,
        };
        (status, at)
    })
}
