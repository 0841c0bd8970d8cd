//! The hypervisor's own address space: the EL2 stage-1 identity map, W^X.
//!
//! Owns: building the EL2 tables and turning the MMU on, on every CPU. The tables are built
//! once, before the MMU and the heap exist, from a fixed pool in .bss (no locks: exclusive
//! accesses are not reliable with the MMU off). Text is read+execute, rodata read-only,
//! data/bss/stacks and the rest of RAM read+write and never executable; each CPU stack sits
//! above an unmapped guard page. SCTLR_EL2.WXN backs this up in hardware.

use super::head::{image_layout, CPU_STACK_SIZE, STACK_GUARD_SIZE};
use crate::dt::hwinfo::{HwInfo, Region};
use crate::memory::pagetable::{
    el2_tcr_value, Attributes, MapError, MemoryType, PageTable, Stage, TableAllocator,
    MAIR_EL2_VALUE,
};
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use core::ptr::NonNull;

/// Tables for the EL2 map: a root, a level-2 table per GiB touched and level-3 tables where
/// sections are not 2 MiB aligned. 64 pages are ample for several GiB of RAM and devices.
const EL2_TABLE_POOL: usize = 64;

#[repr(C, align(4096))]
struct TablePool([[u64; 512]; EL2_TABLE_POOL]);

static mut EL2_TABLES: TablePool = TablePool([[0; 512]; EL2_TABLE_POOL]);

/// Bump allocator over `EL2_TABLES`; tables are never freed (the map is built once).
struct BootTables {
    next: usize,
}

impl TableAllocator for BootTables {
    fn alloc_table(&mut self) -> Option<NonNull<[u64; 512]>> {
        if self.next == EL2_TABLE_POOL {
            return None;
        }
        // SAFETY: only the primary CPU runs this, once, at boot; each index is handed out once.
        let table = unsafe { &mut (*core::ptr::addr_of_mut!(EL2_TABLES)).0[self.next] };
        self.next += 1;
        Some(NonNull::from(table))
    }

    fn free_table(&mut self, _table: NonNull<[u64; 512]>) {}
}

static EL2_ROOT: spin::Once<u64> = spin::Once::new();

/// The physical address size, from ID_AA64MMFR0_EL1.PARange (Arm ARM D19.2.64).
pub fn pa_range_bits() -> u32 {
    match ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

const RX: Attributes = Attributes {
    memory: MemoryType::Normal,
    read: true,
    write: false,
    execute: true,
};
const RO: Attributes = Attributes {
    memory: MemoryType::Normal,
    read: true,
    write: false,
    execute: false,
};
const RW: Attributes = Attributes {
    memory: MemoryType::Normal,
    read: true,
    write: true,
    execute: false,
};
const DEVICE: Attributes = Attributes {
    memory: MemoryType::Device,
    read: true,
    write: true,
    execute: false,
};

fn page_round(region: Region) -> (u64, u64) {
    let start = region.base & !0xfff;
    let end = (region.base + region.size + 0xfff) & !0xfff;
    (start, end - start)
}

/// Builds the EL2 identity map for this machine. Primary CPU, MMU off, once.
pub fn build_el2_map(hw: &HwInfo, cpus: usize) -> Result<(), MapError> {
    let img = image_layout();
    let mut pt = PageTable::new(Stage::El2, BootTables { next: 0 })?;
    pt.map(img.start, img.start, img.text_end - img.start, RX)?;
    pt.map(
        img.text_end,
        img.text_end,
        img.rodata_end - img.text_end,
        RO,
    )?;
    pt.map(
        img.data_start,
        img.data_start,
        img.bss_end - img.data_start,
        RW,
    )?;
    for cpu in 0..cpus as u64 {
        let slot = img.stacks_start + cpu * (STACK_GUARD_SIZE + CPU_STACK_SIZE);
        pt.map(
            slot + STACK_GUARD_SIZE,
            slot + STACK_GUARD_SIZE,
            CPU_STACK_SIZE,
            RW,
        )?;
    }
    // All other RAM: the VMs' memory, the heap's backing, the device tree and the boot bundle.
    for mem in hw.memory.iter() {
        let (start, end) = (mem.base, mem.base + mem.size);
        if start < img.start {
            pt.map(start, start, img.start.min(end) - start, RW)?;
        }
        if end > img.end {
            let from = img.end.max(start);
            pt.map(from, from, end - from, RW)?;
        }
    }
    let mut devices: heapless::Vec<Region, 8> = heapless::Vec::new();
    if let Some(uart) = hw.uart {
        let _ = devices.push(uart.base);
    }
    if let Some(gic) = hw.gic {
        let _ = devices.push(gic.distributor);
        for r in [gic.redistributors, gic.cpu_interface, gic.hyp_interface]
            .into_iter()
            .flatten()
        {
            let _ = devices.push(r);
        }
    }
    for d in devices {
        let (start, size) = page_round(d);
        pt.map(start, start, size, DEVICE)?;
    }
    // The virtio-mmio transports (the disk, `storage/`): their pages, merged into runs.
    for w in hw.virtio_mmio_windows() {
        pt.map(w.base, w.base, w.size, DEVICE)?;
    }
    EL2_ROOT.call_once(|| pt.root_address());
    Ok(())
}

/// Turns the EL2 MMU on with the map built by `build_el2_map`, on the calling CPU.
pub fn enable() {
    let root = *EL2_ROOT
        .get()
        .expect("EL2 map built before enabling the MMU");
    MAIR_EL2.set(MAIR_EL2_VALUE);
    TCR_EL2.set(el2_tcr_value(pa_range_bits()));
    TTBR0_EL2.set(root);
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    // SAFETY: invalidates this CPU's EL2 TLB entries; no translation is live yet.
    unsafe { core::arch::asm!("tlbi alle2", options(nostack)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    let enable = SCTLR_EL2::M::Enable
        + SCTLR_EL2::C::Cacheable
        + SCTLR_EL2::I::Cacheable
        + SCTLR_EL2::SA::Enable
        + SCTLR_EL2::WXN::Enable;
    SCTLR_EL2.set(SCTLR_EL2_RES1 | enable.value);
    barrier::isb(barrier::SY);
}

/// The RES1 bits of SCTLR_EL2 without VHE (4, 5, 11, 16, 18, 22, 23, 28, 29), which the
/// register definitions do not name.
const SCTLR_EL2_RES1: u64 = (1 << 4)
    | (1 << 5)
    | (1 << 11)
    | (1 << 16)
    | (1 << 18)
    | (1 << 22)
    | (1 << 23)
    | (1 << 28)
    | (1 << 29);
