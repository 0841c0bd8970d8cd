//! Boot-time set-up that is not architecture specific: physical memory accounting and the
//! creation of the VMs of the boot bundle.

use crate::arch::head::ImageLayout;
use crate::dt::hwinfo::HwInfo;
use crate::memory::FRAMES;
use crate::vm::Vm;
use alloc::vec::Vec;
use bootbundle::Bundle;

/// Hands all RAM to the frame allocator except the hypervisor image, the device tree, the
/// boot bundle and firmware reservations.
pub fn init_memory(hw: &HwInfo, dtb: u64, dtb_size: u64, img: ImageLayout) {
    let mut frames = FRAMES.lock();
    for mem in hw.memory.iter() {
        if let Err(e) = frames.add_region(mem.base, mem.base + mem.size) {
            log::warn!("ignoring RAM {:#x}+{:#x}: {e:?}", mem.base, mem.size);
        }
    }
    frames.reserve(img.start, img.end);
    frames.reserve(dtb, dtb + dtb_size);
    if let Some(initrd) = hw.initrd {
        frames.reserve(initrd.base, initrd.base + initrd.size);
    }
    for r in hw.reserved.iter() {
        frames.reserve(r.base, r.base + r.size);
    }
    crate::hv_record!(
        "boot cpus={} gic={} ram={} free={}",
        hw.cpus.len(),
        match hw.gic.map(|g| g.version) {
            Some(crate::dt::hwinfo::GicVersion::V2) => "v2",
            Some(crate::dt::hwinfo::GicVersion::V3) => "v3",
            None => "none",
        },
        frames.total_bytes(),
        frames.free_bytes()
    );
    drop(frames);
    crate::storage::init(hw); // the disk's DMA memory comes from the frames just set up
}

/// Creates every VM of the boot bundle (the initrd), registers them with the quota scheduler
/// (docs/scheduler.md) and starts its first period.
pub fn create_vms(hw: &HwInfo, cpus: usize) {
    let Some(initrd) = hw.initrd else {
        log::error!("no boot bundle (initrd) was passed: no VM to run");
        return;
    };
    // SAFETY: the bootloader placed the initrd there and it is reserved from the frame
    // allocator, so it stays intact for the hypervisor's lifetime (SYSTEM_RESET reloads from
    // it).
    let data: &'static [u8] =
        unsafe { core::slice::from_raw_parts(initrd.base as *const u8, initrd.size as usize) };
    let bundle = match Bundle::parse(data) {
        Ok(b) => b,
        Err(e) => {
            log::error!("boot bundle refused: {e}");
            return;
        }
    };
    let specs = bundle.vms();
    // The embedded agent, if the bundle asks for the management VM and the image has one.
    let agent = if bundle.flags().management_vm() {
        let spec = crate::vm::management::spec(bundle.flags().management_pmu());
        if spec.is_none() {
            log::error!("the bundle asks for the management VM, but no agent is embedded");
        }
        spec
    } else {
        None
    };
    let management = match agent {
        Some(_) => Some(crate::vm::management::ID),
        None => specs
            .iter()
            .position(|s| s.flags.management())
            .map(|i| i + 1),
    };
    let period = crate::arch::timer::period_ticks().max(crate::quota::MIN_PERIOD);
    let mut cfg = crate::quota::Config::new(cpus, period);
    if let Some(m) = management {
        cfg = cfg.with_management(m as u16, boards::BOARD.mgmt_cpu_pct);
    }
    let trace = bundle.sched_trace_us() as u64 * crate::arch::counter_frequency() / 1_000_000;
    crate::sched::init(cfg, trace);
    let explicit: Vec<Option<u8>> = specs.iter().map(|s| s.cpu_pct).collect();
    let is_mgmt: Vec<bool> = specs.iter().map(|s| s.flags.management()).collect();
    let pcts = crate::sched::boot_percentages(&explicit, &is_mgmt);
    crate::hypercall::init_lifecycle(specs.len() + 1, bundle.flags().fault_injection());
    let agent = agent.map(|spec| (crate::vm::management::ID, spec, None));
    let bundle_vms = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| (i + 1, *spec, pcts[i]));
    for (id, spec, pct) in agent.into_iter().chain(bundle_vms) {
        let vm = match Vm::create(id, spec) {
            Ok(vm) => vm,
            Err(e) => {
                log::error!("VM {id} ({}) not created: {e}", spec.name);
                continue;
            }
        };
        let pct = match schedule(vm, pct, spec.cpu_pct.is_none() && !spec.flags.management()) {
            Ok(pct) => pct,
            Err(e) => {
                log::error!("VM {id} ({}) not scheduled: {e}", spec.name);
                vm.stop(crate::vm::StopReason::Error);
                vm.after_unload();
                continue;
            }
        };
        crate::hv_record!(
            "vm-start id={} name={} vcpus={} ram={} pa={:#x} cpu={} cntvoff={:#x}",
            vm.id,
            vm.name,
            vm.vcpus.len(),
            vm.ram().size,
            vm.ram().pa,
            pct.map_or(boards::BOARD.mgmt_cpu_pct, |p| p),
            vm.cntvoff()
        );
        crate::vm_table::add(vm);
        if vm.start_after.is_none() {
            vm.power_on_boot_vcpu();
        }
    }
    crate::hypercall::restore_from_disk();
    crate::sched::start();
}

/// Registers a boot VM with the quota scheduler at `pct`. A VM that was given no percentage
/// (`defaulted`) and whose equal part cannot be placed on the CPUs (a 1-vCPU VM cannot use
/// more than one CPU, and the management VM's share must fit beside it) gets the largest
/// percentage below it that can, with a warning. Returns the percentage in force.
fn schedule(
    vm: &Vm,
    pct: Option<u8>,
    defaulted: bool,
) -> Result<Option<u8>, crate::quota::QuotaError> {
    match pct {
        Some(wanted) if defaulted => {
            let got = crate::sched::add_vm_fitting(vm, wanted)?;
            if got != wanted {
                log::warn!(
                    "VM {}: an equal part ({wanted}%) of the CPU cannot be placed beside the \
                     other VMs; it gets {got}% (give it cpu= to choose)",
                    vm.name
                );
            }
            Ok(Some(got))
        }
        _ => crate::sched::add_vm(vm, pct).map(|()| pct),
    }
}
