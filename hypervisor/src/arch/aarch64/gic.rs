//! The physical interrupt controller, as far as the hypervisor's own interrupts need it:
//! enabling a private peripheral interrupt (the EL2 timer), acknowledging and ending
//! interrupts. GICv3 (system-register CPU interface, redistributors) and GICv2 (memory-mapped
//! CPU interface) are both supported; which one is used comes from the device tree.
//!
//! Owns: GICD, this CPU's GICR or GICC, and the ICC_* registers. Never touches the virtual
//! CPU interface (ICH_*/GICH): that belongs to the vGIC (Linux guest issue).

use super::percpu;
use crate::dt::hwinfo::{GicInfo, GicVersion};
use aarch64_cpu::asm::barrier;
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, Ordering};

/// INTIDs 1020..1023 are special (spurious); anything at or above is not an interrupt
/// (GICv3 architecture specification, IHI 0069, §2.2.1).
pub const SPURIOUS: u32 = 1020;

static GIC: spin::Once<GicInfo> = spin::Once::new();

/// How this CPU reaches its CPU interface: `CPU_IF_NONE` before `init`, `CPU_IF_SYSREGS` on a
/// GICv3, else the GICv2 GICC frame's address. A plain atomic rather than `GIC`'s `Once`: every
/// guest interrupt reads it (acknowledge, priority drop), on the hot paths of
/// docs/benchmarks.md.
static CPU_IF: AtomicU64 = AtomicU64::new(CPU_IF_NONE);
const CPU_IF_NONE: u64 = 0;
const CPU_IF_SYSREGS: u64 = 1;

fn mmio_read(addr: u64) -> u32 {
    // SAFETY: `addr` is a GIC register inside a region of the device tree's GIC node, mapped
    // as device memory in the EL2 map.
    unsafe { read_volatile(addr as *const u32) }
}

fn mmio_write(addr: u64, value: u32) {
    // SAFETY: as for `mmio_read`.
    unsafe { write_volatile(addr as *mut u32, value) }
}

// Distributor registers (IHI 0069 §12.9, IHI 0048 §4.3).
const GICD_CTLR: u64 = 0x0;
/// GICv2: enable groups 0 and 1 (without the security extensions both are signalled as IRQ
/// while GICC_CTLR.FIQEn is 0).
const GICD_CTLR_V2_ENABLE: u32 = 0b11;
const GICD_CTLR_V3_ENABLE_G1: u32 = 1 << 1;
const GICD_CTLR_V3_ARE: u32 = 1 << 4;
const GICD_IGROUPR: u64 = 0x80;
const GICD_ISENABLER: u64 = 0x100;
const GICD_ISACTIVER: u64 = 0x300;
const GICD_ICACTIVER: u64 = 0x380;
const GICD_IPRIORITYR: u64 = 0x400;

// Redistributor registers (IHI 0069 §12.10, §12.11). Each redistributor is two 64 KiB frames.
const GICR_STRIDE: u64 = 0x20000;
const GICR_TYPER: u64 = 0x8;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: u64 = 0x14;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_SGI_BASE: u64 = 0x10000;

// GICv2 CPU interface (IHI 0048 §4.4).
const GICC_CTLR: u64 = 0x0;
const GICC_CTLR_ENABLE_GRP0_GRP1: u32 = 0b11;
const GICC_PMR: u64 = 0x4;
const GICC_IAR: u64 = 0xc;
const GICC_EOIR: u64 = 0x10;
const GICC_DIR: u64 = 0x1000;
/// GICC_CTLR.EOImodeNS: EOIR only drops the priority; deactivation is a separate write.
const GICC_CTLR_EOIMODE: u32 = 1 << 9;
/// ICC_CTLR_EL1.EOImode (IHI 0069 §12.2.6), likewise.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;

/// The priority given to the hypervisor's interrupts: mid-range, so that a later vGIC can
/// order guest interrupts around it.
const HYP_PRIORITY: u8 = 0x80;
/// Unmask every priority.
const PRIORITY_MASK_ALL: u32 = 0xff;

/// Global set-up: the distributor. Boot CPU, once.
pub fn init(info: GicInfo) {
    let gic = *GIC.call_once(|| info);
    let cpu_if = match (gic.version, gic.cpu_interface) {
        (GicVersion::V3, _) => CPU_IF_SYSREGS,
        (GicVersion::V2, Some(c)) => c.base,
        (GicVersion::V2, None) => CPU_IF_NONE,
    };
    CPU_IF.store(cpu_if, Ordering::Relaxed);
    let d = gic.distributor.base;
    match gic.version {
        GicVersion::V3 => {
            // Affinity routing first, then group 1 on (non-secure view; with the security
            // extensions disabled, bit 1 is the group 1 enable as well).
            mmio_write(d + GICD_CTLR, GICD_CTLR_V3_ARE);
            mmio_write(d + GICD_CTLR, GICD_CTLR_V3_ARE | GICD_CTLR_V3_ENABLE_G1);
        }
        GicVersion::V2 => mmio_write(d + GICD_CTLR, GICD_CTLR_V2_ENABLE),
    }
}

/// Per-CPU set-up: this CPU's redistributor or CPU interface. Each CPU, after `init`.
pub fn init_cpu(mpidr: u64) {
    let Some(gic) = GIC.get() else { return };
    // Found once here rather than by walking the redistributors on every vCPU switch.
    let bank = find_private_bank(gic, mpidr).unwrap_or(0);
    percpu::current().set_private_bank(bank);
    match gic.version {
        GicVersion::V3 => {
            if let Some(rd) = redistributor_of(gic, mpidr) {
                let waker = mmio_read(rd + GICR_WAKER);
                mmio_write(rd + GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
                while mmio_read(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP != 0 {
                    core::hint::spin_loop();
                }
            }
            // ICC_SRE_EL2: SRE (bit 0) system-register interface at EL2; Enable (bit 3) lets
            // EL1 use it too (it then reaches the virtual interface, since HCR_EL2.IMO = 1).
            // SAFETY: configures this CPU's own GIC CPU interface.
            unsafe {
                asm!("msr icc_sre_el2, {}", "isb", in(reg) 0b1001u64, options(nostack));
                asm!("msr icc_pmr_el1, {}", in(reg) PRIORITY_MASK_ALL as u64, options(nostack));
                asm!("msr icc_bpr1_el1, {}", in(reg) 0u64, options(nostack));
                // Split priority drop and deactivation, so that an interrupt handed to a guest
                // (the virtual timer) stays active until the guest deactivates it.
                asm!("msr icc_ctlr_el1, {}", in(reg) ICC_CTLR_EOIMODE, options(nostack));
                asm!("msr icc_igrpen1_el1, {}", "isb", in(reg) 1u64, options(nostack));
            }
        }
        GicVersion::V2 => {
            if let Some(c) = gic.cpu_interface {
                mmio_write(c.base + GICC_PMR, PRIORITY_MASK_ALL);
                mmio_write(
                    c.base + GICC_CTLR,
                    GICC_CTLR_ENABLE_GRP0_GRP1 | GICC_CTLR_EOIMODE,
                );
            }
        }
    }
}

/// The redistributor whose GICR_TYPER affinity matches `mpidr` (Aff3.Aff2.Aff1.Aff0).
fn redistributor_of(gic: &GicInfo, mpidr: u64) -> Option<u64> {
    let region = gic.redistributors?;
    let want = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
    let mut rd = region.base;
    while rd < region.base + region.size {
        let typer =
            mmio_read(rd + GICR_TYPER) as u64 | (mmio_read(rd + GICR_TYPER + 4) as u64) << 32;
        if typer >> 32 == want {
            return Some(rd);
        }
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
        rd += GICR_STRIDE;
    }
    None
}

/// Enables private interrupt `intid` (16..31) on this CPU, as group 1 at the hypervisor's
/// priority.
pub fn enable_ppi(intid: u32, mpidr: u64) {
    let Some(gic) = GIC.get() else { return };
    let bit = 1u32 << intid;
    let base = match gic.version {
        GicVersion::V3 => match redistributor_of(gic, mpidr) {
            Some(rd) => rd + GICR_SGI_BASE,
            None => return,
        },
        // GICv2 banks the private interrupts' registers per CPU in the distributor.
        GicVersion::V2 => gic.distributor.base,
    };
    // GICR_IGROUPR0/GICD_IGROUPR0, ISENABLER0 and IPRIORITYR share offsets in both layouts.
    set_group(gic.version, base + GICD_IGROUPR, bit);
    let prio = base + GICD_IPRIORITYR + (intid as u64 & !3);
    let shift = (intid % 4) * 8;
    let v = mmio_read(prio) & !(0xff << shift) | (HYP_PRIORITY as u32) << shift;
    mmio_write(prio, v);
    mmio_write(base + GICD_ISENABLER, bit);
    barrier::dsb(barrier::SY);
}

/// Enables shared peripheral interrupt `intid` (32..), routed to the CPU `mpidr`, as group 1
/// at the hypervisor's priority (a device the hypervisor itself drives: the console UART).
pub fn enable_spi(intid: u32, mpidr: u64) {
    let Some(gic) = GIC.get() else { return };
    let d = gic.distributor.base;
    let word = 4 * (intid as u64 / 32);
    let bit = 1u32 << (intid % 32);
    set_group(gic.version, d + GICD_IGROUPR + word, bit);
    let prio = d + GICD_IPRIORITYR + (intid as u64 & !3);
    let shift = (intid % 4) * 8;
    mmio_write(
        prio,
        mmio_read(prio) & !(0xff << shift) | (HYP_PRIORITY as u32) << shift,
    );
    match gic.version {
        GicVersion::V3 => {
            // GICD_IROUTER<n> (IHI 0069 §12.9.22): Aff3 39:32, Aff2.Aff1.Aff0 23:0.
            const GICD_IROUTER: u64 = 0x6000;
            let route = ((mpidr >> 32) & 0xff) << 32 | (mpidr & 0xff_ffff);
            let reg = d + GICD_IROUTER + 8 * intid as u64;
            mmio_write(reg, route as u32);
            mmio_write(reg + 4, (route >> 32) as u32);
        }
        GicVersion::V2 => {
            // GICD_ITARGETSR (IHI 0048 §4.3.12): one byte per interrupt, a CPU interface mask.
            const GICD_ITARGETSR: u64 = 0x800;
            let reg = d + GICD_ITARGETSR + (intid as u64 & !3);
            let v = mmio_read(reg) & !(0xff << shift) | (1 << (mpidr & 7)) << shift;
            mmio_write(reg, v);
        }
    }
    mmio_write(d + GICD_ISENABLER + word, bit);
    barrier::dsb(barrier::SY);
}

/// Puts the interrupts of `bit` in the group the hypervisor acknowledges: group 1 on a GICv3
/// (ICC_IAR1_EL1); group 0 on a GICv2 without security extensions, where GICC_IAR returns the
/// special INTID 1022 for group 1 interrupts unless GICC_CTLR.AckCtl is set (IHI 0048B
/// §4.4.4).
fn set_group(version: GicVersion, igroupr: u64, bit: u32) {
    let groups = mmio_read(igroupr);
    let groups = match version {
        GicVersion::V3 => groups | bit,
        GicVersion::V2 => groups & !bit,
    };
    mmio_write(igroupr, groups);
}

/// Acknowledges the highest-priority pending interrupt; `SPURIOUS` or above if none.
pub fn acknowledge() -> u32 {
    match CPU_IF.load(Ordering::Relaxed) {
        CPU_IF_SYSREGS => {
            let intid: u64;
            // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt of this CPU's interface.
            unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) intid, options(nostack)) };
            intid as u32
        }
        CPU_IF_NONE => SPURIOUS,
        gicc => mmio_read(gicc + GICC_IAR) & 0x3ff,
    }
}

/// Drops the running priority of an interrupt returned by `acknowledge`, leaving it active
/// (EOImode 1): enough when a guest will deactivate it through a hardware-linked list register.
pub fn priority_drop(intid: u32) {
    match CPU_IF.load(Ordering::Relaxed) {
        CPU_IF_SYSREGS => {
            // SAFETY: priority drop of an interrupt this CPU acknowledged.
            unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) intid as u64, options(nostack)) }
        }
        CPU_IF_NONE => {}
        gicc => mmio_write(gicc + GICC_EOIR, intid),
    }
}

/// Ends an interrupt the hypervisor handled itself: priority drop, then deactivation.
pub fn end_of_interrupt(intid: u32) {
    priority_drop(intid);
    deactivate(intid);
}

/// Deactivates an interrupt whose priority was dropped.
pub fn deactivate(intid: u32) {
    match CPU_IF.load(Ordering::Relaxed) {
        CPU_IF_SYSREGS => {
            // SAFETY: deactivates an interrupt this CPU acknowledged.
            unsafe { asm!("msr icc_dir_el1, {}", "isb", in(reg) intid as u64, options(nostack)) }
        }
        CPU_IF_NONE => {}
        gicc => mmio_write(gicc + GICC_DIR, intid),
    }
}

/// The private-interrupt register bank of the CPU `mpidr`: its redistributor's SGI frame (v3)
/// or the distributor's banked registers (v2).
fn find_private_bank(gic: &GicInfo, mpidr: u64) -> Option<u64> {
    match gic.version {
        GicVersion::V3 => redistributor_of(gic, mpidr).map(|rd| rd + GICR_SGI_BASE),
        GicVersion::V2 => Some(gic.distributor.base),
    }
}

/// This CPU's private-interrupt register bank, if it has one.
fn private_bank() -> Option<u64> {
    match percpu::current().private_bank() {
        0 => None,
        bank => Some(bank),
    }
}

/// Whether private interrupt `intid` is active on this CPU.
pub fn ppi_active(intid: u32) -> bool {
    private_bank().is_some_and(|b| mmio_read(b + GICD_ISACTIVER) & (1 << intid) != 0)
}

/// Sets or clears the active state of private interrupt `intid` on this CPU (a vCPU switch
/// carries the virtual timer's active state with the vCPU).
pub fn set_ppi_active(intid: u32, active: bool) {
    if let Some(b) = private_bank() {
        let reg = if active {
            GICD_ISACTIVER
        } else {
            GICD_ICACTIVER
        };
        mmio_write(b + reg, 1 << intid);
        barrier::dsb(barrier::SY);
    }
}

/// Sends software-generated interrupt `intid` (0..15) to the physical CPU `mpidr`: a kick
/// that makes it exit its guest and look at its vCPUs' pending interrupts.
pub fn send_sgi(intid: u32, mpidr: u64) {
    let Some(gic) = GIC.get() else { return };
    match gic.version {
        GicVersion::V3 => {
            // ICC_SGI1R_EL1 (IHI 0069 §12.2.22): Aff3 55:48, Aff2 39:32, INTID 27:24, Aff1
            // 23:16, TargetList 15:0 (one bit per Aff0 value 0..15).
            let aff0 = mpidr & 0xf;
            let value = (((mpidr >> 32) & 0xff) << 48)
                | (((mpidr >> 16) & 0xff) << 32)
                | ((intid as u64 & 0xf) << 24)
                | (((mpidr >> 8) & 0xff) << 16)
                | (1 << aff0);
            barrier::dsb(barrier::ISH);
            // SAFETY: generates an SGI; it changes no memory.
            unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack)) };
        }
        GicVersion::V2 => {
            // GICD_SGIR (IHI 0048 §4.3.15): CPUTargetList 23:16, INTID 3:0; the CPU interface
            // number is assumed to be Aff0, as on QEMU virt.
            const GICD_SGIR: u64 = 0xf00;
            barrier::dsb(barrier::ISH);
            mmio_write(
                gic.distributor.base + GICD_SGIR,
                (1 << (16 + (mpidr & 7))) | (intid & 0xf),
            );
        }
    }
}
