//! A minimal GICv3 driver for test guests of `PLATFORM` VMs, which the hypervisor gives an
//! emulated GICv3 at the QEMU `virt` addresses (`hypervisor/src/vgic`): distributor at IPA
//! `0x0800_0000`, one redistributor per vCPU from `0x080A_0000` (128 KiB each: RD_base, then
//! SGI_base). The guest sets it up the way Linux's `irq-gic-v3.c` does, in the same order:
//! distributor, this vCPU's redistributor (wake it, group, priority, enable), then the CPU
//! interface system registers `ICC_*_EL1`, which reach the virtual CPU interface directly.
//!
//! Register layouts: Arm IHI 0069H.b, GICv3 architecture specification: §12.9 (GICD_CTLR),
//! §12.11 (GICR_WAKER, GICR_IGROUPR0, GICR_ISENABLER0, GICR_IPRIORITYR), §12.2 (ICC_*_EL1).
//! Every MMIO access is a plain 32-bit or 8-bit `ldr`/`str` with no writeback, so the stage-2
//! abort carries a full syndrome (ESR_EL2.ISV) and the hypervisor can emulate it.

/// The distributor (QEMU `virt` VIRT_GIC_DIST).
pub const GICD_BASE: u64 = 0x0800_0000;
/// Redistributor of vCPU 0 (QEMU `virt` VIRT_GIC_REDIST); vCPU i's at `+ i × GICR_STRIDE`.
pub const GICR_BASE: u64 = 0x080A_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;
/// The SGI_base frame inside a redistributor.
pub const GICR_SGI_BASE: u64 = 0x1_0000;

/// §12.9 GICD_CTLR and its bits with one security state (DS = 1).
pub const GICD_CTLR: u64 = 0x0000;
pub const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
pub const GICD_CTLR_ARE: u32 = 1 << 4;
/// GICD_CTLR.RWP, bit 31: a register write is still taking effect.
pub const GICD_CTLR_RWP: u32 = 1 << 31;

/// §12.11 GICR_WAKER (RD_base): ProcessorSleep (bit 1) and ChildrenAsleep (bit 2).
pub const GICR_WAKER: u64 = 0x0014;
pub const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
pub const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// SGI_base registers: §12.11 GICR_IGROUPR0, GICR_ISENABLER0, GICR_IPRIORITYR<n> (one byte
/// per INTID).
pub const GICR_IGROUPR0: u64 = 0x0080;
pub const GICR_ISENABLER0: u64 = 0x0100;
pub const GICR_ICENABLER0: u64 = 0x0180;
pub const GICR_IPRIORITYR: u64 = 0x0400;

/// The virtual timer's PPI (INTID 27), as the guest device tree's timer node says.
pub const VTIMER_INTID: u32 = 27;
/// INTIDs 1020..1023 are special: 1023 is "no pending interrupt" (spurious).
pub const SPURIOUS_INTID: u32 = 1023;
/// The priority Linux gives its interrupts (GICD_INT_DEF_PRI).
pub const DEFAULT_PRIORITY: u8 = 0xa0;
/// ICC_PMR_EL1 value that lets every priority through (Linux's DEFAULT_PMR_VALUE is 0xf0; the
/// brief is 0xff: the lowest mask, the same effect for priority 0xa0).
pub const PMR_ALLOW_ALL: u64 = 0xff;
/// ICC_SRE_EL1.SRE, bit 0: the system-register interface is in use.
pub const ICC_SRE_SRE: u64 = 1;

/// How many times a poll (RWP, ChildrenAsleep) is retried before giving up. The emulated GIC
/// answers at once; the bound only keeps a broken one from hanging the guest.
const POLL_LIMIT: u32 = 1000;

/// What went wrong while setting the GIC up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// GICD_CTLR.RWP never cleared.
    DistributorBusy,
    /// GICR_WAKER.ChildrenAsleep never cleared.
    RedistributorAsleep,
    /// ICC_SRE_EL1.SRE reads 0: no system-register interface.
    NoSystemRegisterInterface,
}

/// The redistributor of vCPU `vcpu` (RD_base).
pub const fn redistributor(vcpu: usize) -> u64 {
    GICR_BASE + vcpu as u64 * GICR_STRIDE
}

/// GICD_CTLR = ARE | EnableGrp1 as Linux's `gic_dist_init` leaves it (it first writes 0 and
/// configures the SPIs; the guests here use no SPI), waiting for RWP after each write.
pub fn init_distributor() -> Result<(), GicError> {
    mmio::write32(GICD_BASE + GICD_CTLR, 0);
    wait_rwp()?;
    mmio::write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
    wait_rwp()
}

fn wait_rwp() -> Result<(), GicError> {
    for _ in 0..POLL_LIMIT {
        if mmio::read32(GICD_BASE + GICD_CTLR) & GICD_CTLR_RWP == 0 {
            return Ok(());
        }
    }
    Err(GicError::DistributorBusy)
}

/// Wakes vCPU `vcpu`'s redistributor (Linux's `gic_enable_redist`): clear ProcessorSleep, wait
/// for ChildrenAsleep to clear.
pub fn wake_redistributor(vcpu: usize) -> Result<(), GicError> {
    let waker = redistributor(vcpu) + GICR_WAKER;
    let value = mmio::read32(waker) & !GICR_WAKER_PROCESSOR_SLEEP;
    mmio::write32(waker, value);
    for _ in 0..POLL_LIMIT {
        if mmio::read32(waker) & GICR_WAKER_CHILDREN_ASLEEP == 0 {
            return Ok(());
        }
    }
    Err(GicError::RedistributorAsleep)
}

/// Makes PPI `intid` (16..31) of vCPU `vcpu` a Group 1 interrupt of priority `priority`, and
/// enables it (as Linux's `gic_cpu_init` + `gic_configure_irq` + `gic_unmask_irq` do).
pub fn enable_ppi(vcpu: usize, intid: u32, priority: u8) {
    let sgi_base = redistributor(vcpu) + GICR_SGI_BASE;
    let bit = 1u32 << intid;
    let group = mmio::read32(sgi_base + GICR_IGROUPR0);
    mmio::write32(sgi_base + GICR_IGROUPR0, group | bit);
    mmio::write8(sgi_base + GICR_IPRIORITYR + intid as u64, priority);
    mmio::write32(sgi_base + GICR_ISENABLER0, bit);
}

/// Disables PPI `intid` of vCPU `vcpu`.
pub fn disable_ppi(vcpu: usize, intid: u32) {
    let sgi_base = redistributor(vcpu) + GICR_SGI_BASE;
    mmio::write32(sgi_base + GICR_ICENABLER0, 1 << intid);
}

/// The CPU interface, as Linux's `gic_cpu_sys_reg_init`: system registers on (ICC_SRE_EL1.SRE),
/// priority mask open, binary point 0, EOImode 0 (ICC_CTLR_EL1: EOI also deactivates), Group 1
/// enabled.
pub fn init_cpu_interface() -> Result<(), GicError> {
    let sre = sysregs::read_sre();
    if sre & ICC_SRE_SRE == 0 {
        sysregs::write_sre(sre | ICC_SRE_SRE);
        if sysregs::read_sre() & ICC_SRE_SRE == 0 {
            return Err(GicError::NoSystemRegisterInterface);
        }
    }
    sysregs::write_pmr(PMR_ALLOW_ALL);
    sysregs::write_bpr1(0);
    // ICC_CTLR_EL1.EOImode, bit 1 = 0: a write to ICC_EOIR1_EL1 drops the priority and
    // deactivates. CBPR (bit 0) = 0 too.
    sysregs::write_ctlr(0);
    sysregs::write_igrpen1(1);
    Ok(())
}

/// Everything a guest needs to take PPI `intid` on vCPU `vcpu` (the boot vCPU sets up the
/// distributor too).
pub fn init_for_ppi(vcpu: usize, intid: u32) -> Result<(), GicError> {
    if vcpu == 0 {
        init_distributor()?;
    }
    wake_redistributor(vcpu)?;
    enable_ppi(vcpu, intid, DEFAULT_PRIORITY);
    init_cpu_interface()
}

/// Acknowledges the highest-priority pending Group 1 interrupt (ICC_IAR1_EL1): its INTID, or
/// [`SPURIOUS_INTID`].
pub fn acknowledge() -> u32 {
    (sysregs::read_iar1() & 0xff_ffff) as u32
}

/// Ends interrupt `intid` (ICC_EOIR1_EL1; with EOImode 0 this also deactivates it).
pub fn end_of_interrupt(intid: u32) {
    sysregs::write_eoir1(intid as u64)
}

#[cfg(target_os = "none")]
mod mmio {
    use core::arch::asm;

    // SAFETY (all): `addr` is a register of the emulated GIC, which is not RAM in this VM:
    // the access traps to the hypervisor, which emulates it and touches none of our memory.
    // Plain `ldr`/`str` with a base register only, so the abort syndrome is complete.

    pub fn read32(addr: u64) -> u32 {
        let value: u32;
        unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) value, options(nostack)) };
        value
    }

    pub fn write32(addr: u64, value: u32) {
        unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) };
    }

    pub fn write8(addr: u64, value: u8) {
        unsafe {
            asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value as u32, options(nostack))
        };
    }
}

#[cfg(target_os = "none")]
mod sysregs {
    use core::arch::asm;

    /// `pub fn $name() -> u64` reading system register `$reg`.
    macro_rules! read {
        ($name:ident, $reg:literal) => {
            pub fn $name() -> u64 {
                let value;
                // SAFETY: a GIC CPU interface register of this vCPU (the virtual interface).
                // Reading ICC_IAR1_EL1 acknowledges an interrupt, which is what its caller
                // wants; the others have no side effect.
                unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) value, options(nostack)) };
                value
            }
        };
    }

    /// `pub fn $name(u64)` writing system register `$reg`, followed by an `isb`.
    macro_rules! write {
        ($name:ident, $reg:literal) => {
            pub fn $name(value: u64) {
                // SAFETY: configures this vCPU's virtual CPU interface; no memory is touched.
                unsafe { asm!(concat!("msr ", $reg, ", {}\nisb"), in(reg) value, options(nostack)) };
            }
        };
    }

    read!(read_sre, "icc_sre_el1");
    write!(write_sre, "icc_sre_el1");
    write!(write_pmr, "icc_pmr_el1");
    write!(write_bpr1, "icc_bpr1_el1");
    write!(write_ctlr, "icc_ctlr_el1");
    write!(write_igrpen1, "icc_igrpen1_el1");
    read!(read_iar1, "icc_iar1_el1");
    write!(write_eoir1, "icc_eoir1_el1");
}

/// Host builds: never run (guests only execute in a VM).
#[cfg(not(target_os = "none"))]
mod mmio {
    pub fn read32(_: u64) -> u32 {
        unreachable!("guest code only runs inside a VM")
    }
    pub fn write32(_: u64, _: u32) {
        unreachable!("guest code only runs inside a VM")
    }
    pub fn write8(_: u64, _: u8) {
        unreachable!("guest code only runs inside a VM")
    }
}

#[cfg(not(target_os = "none"))]
mod sysregs {
    macro_rules! stub {
        ($($read:ident)*; $($write:ident)*) => {
            $(pub fn $read() -> u64 { unreachable!("guest code only runs inside a VM") })*
            $(pub fn $write(_: u64) { unreachable!("guest code only runs inside a VM") })*
        };
    }
    stub!(read_sre read_iar1; write_sre write_pmr write_bpr1 write_ctlr write_igrpen1 write_eoir1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_qemu_virt_layout() {
        assert_eq!(redistributor(0), 0x080A_0000);
        assert_eq!(redistributor(1) + GICR_SGI_BASE, 0x080D_0000);
        assert_eq!(
            redistributor(0) + GICR_SGI_BASE + GICR_ISENABLER0,
            0x080B_0100
        );
        assert_eq!(GICR_IPRIORITYR + VTIMER_INTID as u64, 0x41b);
    }
}
