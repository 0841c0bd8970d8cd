//! Host tests of the GICv2 flavour of the vGIC model, driven the way Linux's GICv2 driver
//! (drivers/irqchip/irq-gic.c, irq-gic-common.c) and the glue drive it.

use super::tests_delivery::{fill, sync};
use super::*;

// Distributor offsets (IHI 0048B §4.1.2, Table 4-1).
const CTLR: u64 = 0x000;
const TYPER: u64 = 0x004;
const IIDR: u64 = 0x008;
const IGROUPR: u64 = 0x080;
const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICPENDR: u64 = 0x280;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITYR: u64 = 0x400;
const ITARGETSR: u64 = 0x800;
const ICFGR: u64 = 0xc00;
const SGIR: u64 = 0xf00;
const CPENDSGIR: u64 = 0xf10;
const SPENDSGIR: u64 = 0xf20;
const ICPIDR2: u64 = 0xfe8;

// Linux's values (irq-gic.c / arm-gic.h).
const GICD_ENABLE: u64 = 1;
const GICD_INT_DEF_PRI_X4: u64 = 0xa0a0_a0a0;
const GICD_INT_EN_SET_SGI: u64 = 0x0000_ffff;
const DEF_PRI: u8 = 0xa0;

fn gicd(off: u64) -> u64 {
    GICD_BASE + off
}

fn vgic2(vcpus: usize, spis: u32) -> Vgic {
    Vgic::new(VgicConfig::v2(vcpus, spis))
}

fn w32(g: &mut Vgic, vcpu: usize, off: u64, value: u64) -> Effects {
    g.mmio_write(vcpu, gicd(off), 4, value).unwrap()
}

fn r32(g: &mut Vgic, vcpu: usize, off: u64) -> u64 {
    g.mmio_read(vcpu, gicd(off), 4).unwrap()
}

fn w8(g: &mut Vgic, vcpu: usize, off: u64, value: u64) -> Effects {
    g.mmio_write(vcpu, gicd(off), 1, value).unwrap()
}

fn r8(g: &mut Vgic, vcpu: usize, off: u64) -> u64 {
    g.mmio_read(vcpu, gicd(off), 1).unwrap()
}

/// The register of a one-bit-per-INTID array holding `intid`, and its bit.
fn bit_reg(base: u64, intid: u32) -> (u64, u64) {
    (base + u64::from(intid / 32) * 4, 1 << (intid % 32))
}

/// GICD_SGIR: TargetListFilter, CPUTargetList, SGI INTID.
fn sgir(filter: u64, list: u64, intid: u64) -> u64 {
    (filter << 24) | (list << 16) | intid
}

/// Linux's gic_get_cpumask: the first non-zero ITARGETSR0..7, folded to a byte.
fn linux_cpumask(g: &mut Vgic, vcpu: usize) -> u64 {
    for i in (0..32).step_by(4) {
        let mut mask = r32(g, vcpu, ITARGETSR + i);
        mask |= mask >> 16;
        mask |= mask >> 8;
        if mask & 0xff != 0 {
            return mask & 0xff;
        }
    }
    0
}

/// Linux's gic_dist_init (with gic_dist_config) on vCPU 0, then gic_cpu_init (with
/// gic_cpu_config) on every vCPU.
fn linux_init(g: &mut Vgic) {
    let typer = r32(g, 0, TYPER);
    let gic_irqs = (((typer & 0x1f) + 1) * 32).min(1020);
    w32(g, 0, CTLR, 0);
    let mut cpumask = linux_cpumask(g, 0);
    cpumask |= cpumask << 8;
    cpumask |= cpumask << 16;
    for i in (32..gic_irqs).step_by(4) {
        w32(g, 0, ITARGETSR + i, cpumask);
    }
    for i in (32..gic_irqs).step_by(16) {
        w32(g, 0, ICFGR + i / 4, 0); // level, active low
    }
    for i in (32..gic_irqs).step_by(4) {
        w32(g, 0, IPRIORITYR + i, GICD_INT_DEF_PRI_X4);
    }
    for i in (32..gic_irqs).step_by(32) {
        w32(g, 0, ICACTIVER + i / 8, 0xffff_ffff);
        w32(g, 0, ICENABLER + i / 8, 0xffff_ffff);
    }
    w32(g, 0, CTLR, GICD_ENABLE);
    for v in 0..g.vcpus() {
        if g.vcpus() > 1 {
            assert_eq!(linux_cpumask(g, v), 1 << v, "vCPU {v}'s CPU interface mask");
        }
        w32(g, v, ICACTIVER, 0xffff_ffff);
        w32(g, v, ICENABLER, 0xffff_ffff);
        for i in (0..32).step_by(4) {
            w32(g, v, IPRIORITYR + i, GICD_INT_DEF_PRI_X4);
        }
        w32(g, v, ISENABLER, GICD_INT_EN_SET_SGI);
    }
}

fn enable(g: &mut Vgic, vcpu: usize, intid: u32) -> Effects {
    let (reg, bit) = bit_reg(ISENABLER, intid);
    w32(g, vcpu, reg, bit)
}

fn lr(intid: u32, state: LrState, source: Option<u8>) -> LrEntry {
    LrEntry {
        intid,
        priority: DEF_PRI,
        group1: false,
        state,
        hw_intid: None,
        eoi_maintenance: false,
        source,
    }
}

/// (INTID, source) of each entry.
fn ids(lrs: &[LrEntry]) -> Vec<(u32, Option<u8>)> {
    lrs.iter().map(|e| (e.intid, e.source)).collect()
}

#[test]
fn linux_init_and_spi_routed_to_vcpu1() {
    let mut g = vgic2(2, 64);
    // ITLinesNumber 2 (96 interrupts), CPUNumber 1, SecurityExtn 0.
    assert_eq!(r32(&mut g, 0, TYPER), 2 | (1 << 5));
    linux_init(&mut g);
    assert_eq!(r32(&mut g, 0, CTLR), 1);
    // Every SPI targets vCPU 0 after init.
    assert_eq!(r32(&mut g, 0, ITARGETSR + 32), 0x0101_0101);
    assert_eq!(
        r32(&mut g, 1, ITARGETSR + 92),
        0x0101_0101,
        "SPI targets are not banked"
    );
    assert_eq!(r32(&mut g, 0, IPRIORITYR + 64), GICD_INT_DEF_PRI_X4);
    assert_eq!(r32(&mut g, 0, ICFGR + 8), 0);

    // gic_set_affinity: a byte write of the new CPU's mask.
    assert_eq!(w8(&mut g, 0, ITARGETSR + 33, 0b10), Effects::default());
    assert_eq!(r8(&mut g, 0, ITARGETSR + 33), 0b10);
    assert_eq!(r32(&mut g, 0, ITARGETSR + 32), 0x0101_0201);
    assert_eq!(enable(&mut g, 0, 33), Effects::default());
    assert_eq!(g.set_level(0, 33, true), Effects { kick: 0b10 });
    assert!(g.has_pending(1) && !g.has_pending(0));
    assert!(fill(&mut g, 0, 4).is_empty());
    let lrs = fill(&mut g, 1, 4);
    assert_eq!(
        lrs.as_slice(),
        &[LrEntry {
            intid: 33,
            priority: DEF_PRI,
            group1: false,
            state: LrState::Pending,
            hw_intid: None,
            eoi_maintenance: true,
            source: None,
        }]
    );
    // Pending (1 << 28), Group 0, priority 0xa0 >> 3 in 27:23, EOI (19), VirtualID 33.
    assert_eq!(
        lr_to_gich(&lrs[0]),
        (1 << 28) | (0x14 << 23) | (1 << 19) | 33
    );
    // The guest took it; the line dropped: done.
    g.set_level(0, 33, false);
    sync(&mut g, 1, &[lr_from_gich(0)]);
    assert!(!g.has_pending(1));

    // Linux's IPIs: SGIs 0..7 enabled per CPU.
    assert_eq!(r32(&mut g, 1, ISENABLER), 0x0000_ffff);
}

#[test]
fn spi_target_masks() {
    let mut g = vgic2(3, 32);
    linux_init(&mut g);
    enable(&mut g, 0, 40);
    // No target: pending, delivered to nobody.
    w8(&mut g, 0, ITARGETSR + 40, 0);
    assert_eq!(g.set_level(0, 40, true), Effects::default());
    assert!((0..3).all(|v| !g.has_pending(v)));
    let (reg, bit) = bit_reg(ISPENDR, 40);
    assert_eq!(r32(&mut g, 0, reg) & bit, bit, "still pending");
    // Given a target, it is delivered: the lowest vCPU of the mask.
    assert_eq!(
        w8(&mut g, 2, ITARGETSR + 40, 0b110),
        Effects { kick: 0b010 }
    );
    assert!(g.has_pending(1) && !g.has_pending(2));
    assert_eq!(ids(&fill(&mut g, 1, 4)), [(40, None)]);
    // Retargeting while in vCPU 1's list register kicks vCPU 1; it comes back pending (the
    // level line is still asserted) and goes to vCPU 2 next.
    assert_eq!(
        w8(&mut g, 0, ITARGETSR + 40, 0b100),
        Effects { kick: 0b010 }
    );
    sync(&mut g, 1, &[lr(40, LrState::Pending, None)]);
    assert!(!g.has_pending(1) && g.has_pending(2));
    // Bits of CPU interfaces that do not exist are RAZ/WI.
    w8(&mut g, 0, ITARGETSR + 41, 0xff);
    assert_eq!(r8(&mut g, 0, ITARGETSR + 41), 0b111);
    w8(&mut g, 0, ITARGETSR + 42, 0xf8);
    assert_eq!(r8(&mut g, 0, ITARGETSR + 42), 0);
    // Unimplemented SPIs are RAZ/WI.
    w32(&mut g, 0, ITARGETSR + 64, 0x0101_0101);
    assert_eq!(r32(&mut g, 0, ITARGETSR + 64), 0);
}

#[test]
fn banked_itargetsr_reads_own_mask() {
    let mut g = vgic2(4, 32);
    for v in 0..4 {
        let mask = 1u64 << v;
        for i in (0..32).step_by(4) {
            assert_eq!(r32(&mut g, v, ITARGETSR + i), mask * 0x0101_0101);
        }
        assert_eq!(r8(&mut g, v, ITARGETSR + 27), mask);
    }
    // Read-only.
    assert_eq!(w32(&mut g, 2, ITARGETSR + 16, 0), Effects::default());
    w8(&mut g, 2, ITARGETSR + 27, 0x0f);
    assert_eq!(r32(&mut g, 2, ITARGETSR + 24), 0x0404_0404);
    // A vCPU that does not exist cannot access the banked distributor.
    assert_eq!(g.mmio_read(4, gicd(ITARGETSR), 4), Err(MmioError::Unmapped));

    // A uniprocessor GIC: ITARGETSRs RAZ/WI, everything goes to the one CPU (§4.3.12).
    let mut g = vgic2(1, 32);
    linux_init(&mut g);
    assert_eq!(r32(&mut g, 0, ITARGETSR), 0);
    assert_eq!(r32(&mut g, 0, ITARGETSR + 32), 0);
    enable(&mut g, 0, 35);
    assert_eq!(g.set_level(0, 35, true), Effects { kick: 1 });
}

#[test]
fn sgir_filters() {
    let mut g = vgic2(4, 0);
    linux_init(&mut g);
    // 0b00: the target list (bits of missing CPUs ignored).
    assert_eq!(
        w32(&mut g, 0, SGIR, sgir(0, 0b1111_0110, 1)),
        Effects { kick: 0b0110 }
    );
    // 0b01: all but the requester.
    assert_eq!(
        w32(&mut g, 3, SGIR, sgir(1, 0, 2)),
        Effects { kick: 0b0111 }
    );
    // 0b10: the requester only; the list is ignored.
    assert_eq!(
        w32(&mut g, 2, SGIR, sgir(2, 0b1, 3)),
        Effects { kick: 0b0100 }
    );
    // 0b11: reserved, nothing.
    assert_eq!(w32(&mut g, 0, SGIR, sgir(3, 0xff, 4)), Effects::default());
    assert!(!g.has_pending(3), "no SGI for vCPU 3");
    // Each SGI carries its source.
    assert_eq!(ids(&fill(&mut g, 0, 4)), [(2, Some(3))]);
    assert_eq!(ids(&fill(&mut g, 1, 4)), [(1, Some(0)), (2, Some(3))]);
    assert_eq!(
        ids(&fill(&mut g, 2, 4)),
        [(1, Some(0)), (2, Some(3)), (3, Some(2))]
    );
    let sgi = fill(&mut g, 3, 4);
    assert!(sgi.is_empty());
    // GICD_SGIR is write-only (reads 0) and takes word accesses only.
    assert_eq!(r32(&mut g, 0, SGIR), 0);
    assert_eq!(
        g.mmio_write(0, gicd(SGIR), 1, 1),
        Err(MmioError::BadAccessSize)
    );
    // A disabled SGI pends but is not delivered.
    w32(&mut g, 3, ICENABLER, 1 << 5);
    assert_eq!(w32(&mut g, 0, SGIR, sgir(0, 0b1000, 5)), Effects::default());
    assert!(!g.has_pending(3));
    assert_eq!(r32(&mut g, 3, ISPENDR) & (1 << 5), 1 << 5);
    assert_eq!(w32(&mut g, 3, ISENABLER, 1 << 5), Effects { kick: 0b1000 });
}

#[test]
fn sgi_sources_are_delivered_separately() {
    let mut g = vgic2(3, 0);
    linux_init(&mut g);
    assert_eq!(
        w32(&mut g, 0, SGIR, sgir(0, 0b010, 1)),
        Effects { kick: 0b010 }
    );
    // A second source of the same SGI is a new interrupt to take: a kick again.
    assert_eq!(
        w32(&mut g, 2, SGIR, sgir(0, 0b010, 1)),
        Effects { kick: 0b010 }
    );
    // The same source again while pending: nothing new.
    assert_eq!(w32(&mut g, 2, SGIR, sgir(0, 0b010, 1)), Effects::default());
    // GICD_SPENDSGIR0 byte 1 of vCPU 1: sources 0 and 2; nothing for vCPU 0.
    assert_eq!(r32(&mut g, 1, SPENDSGIR), 0b101 << 8);
    assert_eq!(r8(&mut g, 1, CPENDSGIR + 1), 0b101);
    assert_eq!(r32(&mut g, 0, SPENDSGIR), 0);
    // GICD_ISPENDR0 shows SGI 1 pending on vCPU 1.
    assert_eq!(r32(&mut g, 1, ISPENDR), 1 << 1);

    let lrs = fill(&mut g, 1, 4);
    assert_eq!(ids(&lrs), [(1, Some(0)), (1, Some(2))]);
    // Pending, Group 0, priority 0xa0, CPUID in 12:10, VirtualID 1; no EOI (edge).
    assert_eq!(lr_to_gich(&lrs[0]), (1 << 28) | (0x14 << 23) | 1);
    assert_eq!(
        lr_to_gich(&lrs[1]),
        (1 << 28) | (0x14 << 23) | (2 << 10) | 1
    );
    assert!(!g.has_pending(1));

    // The guest acknowledged source 2's (active) and has not taken source 0's yet; vCPU 0
    // sends again meanwhile (its copy is in a list register: refresh vCPU 1).
    assert_eq!(
        w32(&mut g, 0, SGIR, sgir(0, 0b010, 1)),
        Effects { kick: 0b010 }
    );
    let back: Vec<u32> = [
        lr(1, LrState::Pending, Some(0)),
        lr(1, LrState::Active, Some(2)),
    ]
    .iter()
    .map(lr_to_gich)
    .collect();
    let back: Vec<LrEntry> = back.into_iter().map(lr_from_gich).collect();
    sync(&mut g, 1, &back);
    // Active first, then the pending one; source 0's second send merged with its first.
    let lrs = fill(&mut g, 1, 4);
    assert_eq!(
        lrs.iter().map(|e| (e.source, e.state)).collect::<Vec<_>>(),
        [(Some(2), LrState::Active), (Some(0), LrState::Pending)]
    );
    assert_eq!(r32(&mut g, 1, ISACTIVER), 1 << 1);
    // Both done.
    sync(&mut g, 1, &[]);
    assert!(!g.has_pending(1));
    assert_eq!(r32(&mut g, 1, SPENDSGIR), 0);
    assert_eq!(r32(&mut g, 1, ISACTIVER), 0);

    // With one list register, sources go one at a time, lowest source first.
    w32(&mut g, 2, SGIR, sgir(0, 0b001, 7));
    w32(&mut g, 1, SGIR, sgir(0, 0b001, 7));
    assert_eq!(ids(&fill(&mut g, 0, 1)), [(7, Some(1))]);
    assert!(g.has_pending(0));
    sync(&mut g, 0, &[]);
    assert_eq!(ids(&fill(&mut g, 0, 1)), [(7, Some(2))]);
    sync(&mut g, 0, &[]);
    assert!(!g.has_pending(0));
}

#[test]
fn sgi_pending_registers() {
    let mut g = vgic2(2, 0);
    linux_init(&mut g);
    // GICD_ISPENDR0/ICPENDR0 SGI bits are read-only (§4.3.7, §4.3.8).
    assert_eq!(w32(&mut g, 0, ISPENDR, 0xffff), Effects::default());
    assert_eq!(r32(&mut g, 0, ISPENDR), 0);
    // GICD_SPENDSGIRn: SGI 6 on vCPU 0 from sources 0 and 1 (byte access); bits of missing
    // CPUs are ignored.
    assert_eq!(w8(&mut g, 0, SPENDSGIR + 6, 0xff), Effects { kick: 0b01 });
    assert_eq!(r32(&mut g, 0, SPENDSGIR + 4), 0b11 << 16);
    assert_eq!(r32(&mut g, 1, SPENDSGIR + 4), 0, "banked");
    w32(&mut g, 0, ICPENDR, 1 << 6);
    assert_eq!(r32(&mut g, 0, ISPENDR), 1 << 6, "ICPENDR0 ignores SGIs too");
    // GICD_CPENDSGIRn clears one source.
    w8(&mut g, 0, CPENDSGIR + 6, 0b01);
    assert_eq!(r8(&mut g, 0, SPENDSGIR + 6), 0b10);
    assert_eq!(ids(&fill(&mut g, 0, 4)), [(6, Some(1))]);
    // Cleared while in a list register: the stale list register is not believed.
    assert_eq!(
        w32(&mut g, 0, CPENDSGIR + 4, 0xff << 16),
        Effects { kick: 0b01 }
    );
    sync(&mut g, 0, &[lr(6, LrState::Pending, Some(1))]);
    assert!(!g.has_pending(0));
    // Active state: ISACTIVER sets it as from the accessor, ICACTIVER clears all sources.
    w32(&mut g, 1, ISACTIVER, 1 << 9);
    assert_eq!(r32(&mut g, 1, ISACTIVER), 1 << 9);
    let lrs = fill(&mut g, 1, 4);
    assert_eq!(
        (lrs[0].intid, lrs[0].source, lrs[0].state),
        (9, Some(1), LrState::Active)
    );
    sync(&mut g, 1, &lrs);
    w32(&mut g, 1, ICACTIVER, 1 << 9);
    assert_eq!(r32(&mut g, 1, ISACTIVER), 0);
    assert!(fill(&mut g, 1, 4).is_empty());
}

#[test]
fn banked_registers_per_vcpu() {
    let mut g = vgic2(2, 32);
    // Enables.
    w32(&mut g, 1, ISENABLER, (1 << 27) | (1 << 3));
    assert_eq!(r32(&mut g, 1, ISENABLER), (1 << 27) | (1 << 3));
    assert_eq!(r32(&mut g, 0, ISENABLER), 0);
    // Priorities, byte access.
    w8(&mut g, 0, IPRIORITYR + 27, 0x30);
    w8(&mut g, 1, IPRIORITYR + 27, 0x50);
    w8(&mut g, 1, IPRIORITYR + 3, 0x60);
    assert_eq!(r32(&mut g, 0, IPRIORITYR + 24), 0x3000_0000);
    assert_eq!(r32(&mut g, 1, IPRIORITYR + 24), 0x5000_0000);
    assert_eq!(r32(&mut g, 1, IPRIORITYR), 0x6000_0000);
    assert_eq!(r32(&mut g, 0, IPRIORITYR), 0);
    // Groups.
    w32(&mut g, 0, IGROUPR, 0xffff_ffff);
    assert_eq!(r32(&mut g, 0, IGROUPR), 0xffff_ffff);
    assert_eq!(r32(&mut g, 1, IGROUPR), 0);
    // ICFGR0 (SGIs) read-only edge; ICFGR1 (PPIs) per vCPU.
    assert_eq!(r32(&mut g, 0, ICFGR), 0xaaaa_aaaa);
    w32(&mut g, 0, ICFGR, 0);
    assert_eq!(r32(&mut g, 0, ICFGR), 0xaaaa_aaaa);
    w32(&mut g, 1, ICFGR + 4, 0b10 << 22); // PPI 27 edge on vCPU 1
    assert_eq!(r32(&mut g, 1, ICFGR + 4), 0b10 << 22);
    assert_eq!(r32(&mut g, 0, ICFGR + 4), 0);
    // SPI registers are shared.
    w32(&mut g, 1, ISENABLER + 4, 1);
    assert_eq!(r32(&mut g, 0, ISENABLER + 4), 1);

    // Delivery follows each vCPU's bank: PPI 27 (enabled on vCPU 1 only).
    w32(&mut g, 0, CTLR, 1);
    assert_eq!(g.set_level(0, 27, true), Effects::default());
    assert_eq!(g.set_level(1, 27, true), Effects { kick: 0b10 });
    let lrs = fill(&mut g, 1, 4);
    assert_eq!(
        (lrs[0].intid, lrs[0].priority, lrs[0].source),
        (27, 0x50, None)
    );
    // SGI 3 enabled on vCPU 1 only, with vCPU 1's priority.
    assert_eq!(
        w32(&mut g, 0, SGIR, sgir(0, 0b11, 3)),
        Effects { kick: 0b10 }
    );
    let lrs = fill(&mut g, 1, 4);
    let sgi3 = lrs.iter().find(|e| e.intid == 3).unwrap();
    assert_eq!((sgi3.priority, sgi3.source), (0x60, Some(0)));
    assert!(!g.has_pending(0));
    // Group 0 SGI on vCPU 1 needs EnableGrp0; Group 1 on vCPU 0 needs EnableGrp1.
    w32(&mut g, 0, ISENABLER, 1 << 3);
    assert!(
        !g.has_pending(0),
        "vCPU 0's SGI 3 is Group 1, EnableGrp1 is off"
    );
    assert_eq!(w32(&mut g, 0, CTLR, 0b11), Effects { kick: 0b01 });
    assert!(fill(&mut g, 0, 4)[0].group1);
    assert_eq!(r32(&mut g, 0, CTLR), 0b11);
    w32(&mut g, 0, CTLR, 0xffff_fffc);
    assert_eq!(r32(&mut g, 0, CTLR), 0, "only the two enables exist");
}

#[test]
fn id_registers_and_sizes() {
    let mut g = vgic2(8, 988);
    assert_eq!(r32(&mut g, 0, TYPER), 31 | (7 << 5));
    assert_eq!(r32(&mut vgic2(1, 0), 0, TYPER), 0);
    assert_eq!(r32(&mut vgic2(2, 1), 0, TYPER), 1 | (1 << 5));
    assert_eq!(r32(&mut g, 0, IIDR), 0x0200_143b);
    // ArchRev 2 in ICPIDR2 bits 7:4; GIC-400 part number and the CoreSight preamble.
    assert_eq!(r32(&mut g, 0, ICPIDR2), 0x2b);
    assert_eq!((r32(&mut g, 0, ICPIDR2) >> 4) & 0xf, 2);
    assert_eq!(r32(&mut g, 0, 0xfe0), 0x90);
    assert_eq!(r32(&mut g, 0, 0xfd0), 0x04);
    assert_eq!(r32(&mut g, 0, 0xff0), 0x0d);
    assert_eq!(r32(&mut g, 0, 0xffc), 0xb1);
    // Read-only registers ignore writes.
    w32(&mut g, 0, TYPER, 0);
    w32(&mut g, 0, ICPIDR2, 0);
    assert_eq!(r32(&mut g, 0, ICPIDR2), 0x2b);
    // Sizes: byte access only where the spec allows it (IPRIORITYR, ITARGETSR, C/SPENDSGIR).
    let bad = Err(MmioError::BadAccessSize);
    assert_eq!(g.mmio_read(0, gicd(CTLR), 1), bad);
    assert_eq!(g.mmio_read(0, gicd(ISENABLER + 1), 1), bad);
    assert_eq!(g.mmio_read(0, gicd(ICFGR), 1), bad);
    assert_eq!(g.mmio_read(0, gicd(ITARGETSR + 33), 2), bad);
    assert_eq!(g.mmio_read(0, gicd(ITARGETSR + 32), 8), bad);
    assert_eq!(g.mmio_read(0, gicd(SPENDSGIR + 2), 2), bad);
    assert_eq!(g.mmio_read(0, gicd(ICPIDR2), 1), bad);
    assert!(g.mmio_read(0, gicd(ITARGETSR + 33), 1).is_ok());
    assert!(g.mmio_read(0, gicd(CPENDSGIR + 3), 1).is_ok());
    assert!(g.mmio_read(0, gicd(IPRIORITYR + 33), 1).is_ok());
    // Reserved offsets, including the GICv3-only ones and everything past 4 KiB: RAZ/WI.
    for off in [0x00c, 0x6100, 0x1000, 0xf04, 0xf30, 0xfcc, 0xffe8] {
        for size in [1, 2, 4, 8] {
            assert_eq!(g.mmio_read(0, gicd(off), size), Ok(0), "{off:#x}");
            assert_eq!(g.mmio_write(0, gicd(off), size, !0), Ok(Effects::default()));
        }
    }
}

#[test]
fn address_ranges() {
    let mut g = vgic2(2, 32);
    assert!(Vgic::contains_for(VgicVersion::V2, GICD_BASE, 2));
    assert!(Vgic::contains_for(
        VgicVersion::V2,
        GICD_BASE + GICD_SIZE - 4,
        2
    ));
    // No redistributors; the GICC frame is the hardware's, not emulated.
    for ipa in [
        GICC_BASE,
        GICC_BASE + 0x1000,
        GICR_BASE,
        GICR_BASE + GICR_STRIDE,
        GICD_BASE + GICD_SIZE,
    ] {
        assert!(!Vgic::contains_for(VgicVersion::V2, ipa, 2), "{ipa:#x}");
        assert_eq!(g.mmio_read(0, ipa, 4), Err(MmioError::Unmapped));
    }
    assert_eq!(
        GICD_BASE + GICD_SIZE,
        GICC_BASE,
        "QEMU virt: GICC right after GICD"
    );
    assert_eq!(GICC_SIZE, 0x2000);
    // The GICv3 view is unchanged.
    assert!(Vgic::contains(GICR_BASE, 2));
    assert!(Vgic::contains_for(VgicVersion::V3, GICR_BASE, 2));
}

#[test]
fn reset_keeps_the_flavour() {
    let mut g = vgic2(2, 32);
    linux_init(&mut g);
    w8(&mut g, 0, ITARGETSR + 40, 2);
    w32(&mut g, 0, SGIR, sgir(0, 0b10, 1));
    g.reset();
    assert_eq!(g.config(), VgicConfig::v2(2, 32));
    assert_eq!(r32(&mut g, 0, CTLR), 0);
    assert_eq!(r8(&mut g, 0, ITARGETSR + 40), 0);
    assert_eq!(r32(&mut g, 1, SPENDSGIR), 0);
    assert_eq!(r8(&mut g, 1, ITARGETSR), 2);
    let again = Vgic::new(g.config());
    assert_eq!(again.version(), VgicVersion::V2);
}

#[test]
#[should_panic]
fn at_most_eight_vcpus() {
    let _ = vgic2(MAX_VCPUS_V2 + 1, 0);
}

#[test]
fn hardware_linked_timer() {
    let mut g = vgic2(2, 0);
    linux_init(&mut g);
    enable(&mut g, 1, 27);
    assert_eq!(g.inject_hw(1, 27, 27), Effects { kick: 0b10 });
    let lrs = fill(&mut g, 1, 4);
    // HW (31), pending, priority 0xa0, PhysicalID 27 in 19:10, VirtualID 27.
    assert_eq!(
        lr_to_gich(&lrs[0]),
        (1 << 31) | (1 << 28) | (0x14 << 23) | (27 << 10) | 27
    );
    sync(&mut g, 1, &[lr_from_gich(lr_to_gich(&lrs[0]) & !(3 << 28))]);
    assert!(!g.has_pending(1));
}

#[test]
fn v3_unchanged() {
    let mut g = Vgic::new(VgicConfig::v3(2, 32));
    assert_eq!(g.version(), VgicVersion::V3);
    assert_eq!(VgicVersion::default(), VgicVersion::V3);
    // GICv2-only registers are RAZ/WI in the GICv3 distributor.
    for off in [ITARGETSR, ITARGETSR + 32, SPENDSGIR, CPENDSGIR, SGIR] {
        g.mmio_write(0, gicd(off), 4, 0xffff_ffff).unwrap();
        assert_eq!(g.mmio_read(0, gicd(off), 4), Ok(0), "{off:#x}");
    }
    // SGIs keep no source; the distributor's banked bits are RAZ/WI.
    g.mmio_write(0, gicd(CTLR), 4, 0b10).unwrap();
    g.mmio_write(1, GICR_BASE + GICR_STRIDE + GICR_SGI_BASE + IGROUPR, 4, !0)
        .unwrap();
    g.mmio_write(
        1,
        GICR_BASE + GICR_STRIDE + GICR_SGI_BASE + ISENABLER,
        4,
        0xffff,
    )
    .unwrap();
    assert_eq!(g.send_sgi(0, (4 << 24) | 0b10), Effects { kick: 0b10 });
    assert_eq!(
        g.send_sgi(1, (4 << 24) | 0b10),
        Effects::default(),
        "one pending state"
    );
    let lrs = fill(&mut g, 1, 4);
    assert_eq!(ids(&lrs), [(4, None)]);
    assert_eq!(g.mmio_read(1, gicd(ISENABLER), 4), Ok(0));
    // An unknown accessor does not matter to GICv3 registers.
    assert!(g.mmio_read(9, gicd(TYPER), 4).is_ok());
}
