//! Boot-time set-up that is not architecture specific: physical memory accounting and the
//! creation of the VMs of the boot bundle.

use crate::arch::head::ImageLayout;
use crate::dt::hwinfo::HwInfo;
use crate::memory::FRAMES;
use crate::vm::Vm;
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
}

/// Creates every VM of the boot bundle (the initrd) and queues its vCPUs on physical CPUs,
/// spreading vCPUs round robin over the CPUs in creation order.
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
    let mut next_cpu = 0;
    for (i, spec) in bundle.vms().iter().enumerate() {
        match Vm::create(i + 1, *spec, next_cpu, cpus) {
            Ok(vm) => {
                for vcpu in &vm.vcpus {
                    // SAFETY: secondary CPUs are not started yet; the boot CPU is the only
                    // user of every scheduler.
                    unsafe { crate::arch::percpu::get(vcpu.pcpu).sched() }.add(vcpu);
                }
                crate::hv_record!(
                    "vm-start id={} name={} vcpus={} ram={} pa={:#x} pcpu={} cntvoff={:#x}",
                    vm.id,
                    vm.name,
                    vm.vcpus.len(),
                    vm.ram.size,
                    vm.ram.pa,
                    next_cpu,
                    vm.cntvoff
                );
                next_cpu = (next_cpu + vm.vcpus.len()) % cpus;
                crate::vm_table::add(vm);
            }
            Err(e) => log::error!("VM {} ({}) not created: {e}", i + 1, spec.name),
        }
    }
}
