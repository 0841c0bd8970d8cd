//! Host tests of the vGIC model, driven the way Linux's GICv3 driver and the glue drive it.

use super::tests_delivery::{fill, sync};
use super::*;

// Register offsets as a guest uses them (IHI 0069H.b §12.8, §12.10).
const CTLR: u64 = 0x0;
const TYPER: u64 = 0x4;
const IIDR: u64 = 0x8;
const IGROUPR: u64 = 0x80;
const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICPENDR: u64 = 0x280;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITYR: u64 = 0x400;
const ICFGR: u64 = 0xc00;
const IGRPMODR: u64 = 0xd00;
const NSACR: u64 = 0xe00;
const IROUTER: u64 = 0x6000;
const PIDR2: u64 = 0xffe8;
const CIDR0: u64 = 0xfff0;
const GICR_TYPER: u64 = 0x8;
const GICR_WAKER: u64 = 0x14;
const GICR_PROPBASER: u64 = 0x70;

// What Linux writes to GICD_CTLR (ARE_NS | EnableGrp1A | EnableGrp1 in its names; with DS = 1
// bits 4, 1 and 0 are ARE, EnableGrp1 and EnableGrp0).
const LINUX_CTLR: u64 = (1 << 4) | (1 << 1) | 1;
const ARE: u64 = 1 << 4;
const DS: u64 = 1 << 6;
const GRP1: u64 = 1 << 1;
const PROCESSOR_SLEEP: u64 = 1 << 1;
const CHILDREN_ASLEEP: u64 = 1 << 2;
const LINUX_PRIO: u64 = 0xa0a0_a0a0;

fn gicd(off: u64) -> u64 {
    GICD_BASE + off
}

fn rd(vcpu: usize, off: u64) -> u64 {
    GICR_BASE + vcpu as u64 * GICR_STRIDE + off
}

fn sgi(vcpu: usize, off: u64) -> u64 {
    rd(vcpu, GICR_SGI_BASE + off)
}

fn vgic(vcpus: usize, spis: u32) -> Vgic {
    Vgic::new(VgicConfig {
        vcpus,
        spis,
        version: VgicVersion::V3,
    })
}

fn w32(g: &mut Vgic, ipa: u64, value: u64) -> Effects {
    g.mmio_write(0, ipa, 4, value).unwrap()
}

fn r32(g: &mut Vgic, ipa: u64) -> u64 {
    g.mmio_read(0, ipa, 4).unwrap()
}

/// The register of a one-bit-per-INTID array holding `intid`, and its bit.
fn bit_reg(base: u64, intid: u32) -> (u64, u64) {
    (base + u64::from(intid / 32) * 4, 1 << (intid % 32))
}

/// Linux's gic_dist_init and gic_cpu_init (drivers/irqchip/irq-gic-v3.c), abridged.
fn linux_init(g: &mut Vgic) {
    let spis = g.spis();
    w32(g, gicd(CTLR), 0);
    for first in (32..32 + spis).step_by(32) {
        let n = u64::from(first / 32) * 4;
        w32(g, gicd(IGROUPR + n), 0xffff_ffff);
        w32(g, gicd(ICACTIVER + n), 0xffff_ffff);
        w32(g, gicd(ICENABLER + n), 0xffff_ffff);
    }
    for first in (32..32 + spis).step_by(4) {
        w32(g, gicd(IPRIORITYR + u64::from(first)), LINUX_PRIO);
    }
    for first in (32..32 + spis).step_by(16) {
        w32(g, gicd(ICFGR + u64::from(first / 16) * 4), 0); // level
    }
    w32(g, gicd(CTLR), LINUX_CTLR);
    for intid in 32..32 + spis {
        g.mmio_write(0, gicd(IROUTER + u64::from(intid) * 8), 8, 0)
            .unwrap();
    }
    for v in 0..g.vcpus() {
        let waker = r32(g, rd(v, GICR_WAKER));
        w32(g, rd(v, GICR_WAKER), waker & !PROCESSOR_SLEEP);
        assert_eq!(r32(g, rd(v, GICR_WAKER)) & CHILDREN_ASLEEP, 0);
        w32(g, sgi(v, IGROUPR), 0xffff_ffff);
        w32(g, sgi(v, ICACTIVER), 0xffff_ffff);
        w32(g, sgi(v, ICENABLER), 0xffff_0000);
        w32(g, sgi(v, ISENABLER), 0x0000_ffff);
        for i in 0..8 {
            w32(g, sgi(v, IPRIORITYR + i * 4), LINUX_PRIO);
        }
    }
}

fn enable_spi(g: &mut Vgic, intid: u32) -> Effects {
    let (reg, bit) = bit_reg(ISENABLER, intid);
    w32(g, gicd(reg), bit)
}

fn set_priority(g: &mut Vgic, ipa_of_array: u64, intid: u32, prio: u8) {
    g.mmio_write(
        0,
        ipa_of_array + IPRIORITYR + u64::from(intid),
        1,
        prio.into(),
    )
    .unwrap();
}

fn route(g: &mut Vgic, intid: u32, aff: u64) -> Effects {
    g.mmio_write(0, gicd(IROUTER + u64::from(intid) * 8), 8, aff)
        .unwrap()
}

fn lr(intid: u32, state: LrState) -> LrEntry {
    LrEntry {
        intid,
        priority: 0,
        group1: true,
        state,
        hw_intid: None,
        eoi_maintenance: false,
        source: None,
    }
}

fn intids(lrs: &[LrEntry]) -> Vec<u32> {
    lrs.iter().map(|e| e.intid).collect()
}

#[test]
fn linux_spi_routed_to_vcpu1() {
    let mut g = vgic(2, 64);
    linux_init(&mut g);
    assert_eq!(route(&mut g, 33, 1), Effects::default());
    set_priority(&mut g, GICD_BASE, 33, 0x80);
    assert_eq!(enable_spi(&mut g, 33), Effects::default());

    assert_eq!(g.set_level(0, 33, true), Effects { kick: 0b10 });
    assert!(g.has_pending(1));
    assert!(!g.has_pending(0));
    assert!(fill(&mut g, 0, 4).is_empty());
    let lrs = fill(&mut g, 1, 4);
    assert_eq!(
        lrs.as_slice(),
        &[LrEntry {
            intid: 33,
            priority: 0x80,
            group1: true,
            state: LrState::Pending,
            hw_intid: None,
            eoi_maintenance: true,
            source: None,
        }]
    );
    assert!(!g.has_pending(1), "in a list register, not queued twice");
    assert_eq!(intids(&fill(&mut g, 1, 4)), [33], "still listed once");

    // The guest handled it but the (level) line is still asserted: pending again.
    sync(&mut g, 1, &[lr(33, LrState::Invalid)]);
    assert!(g.has_pending(1));
    assert_eq!(intids(&fill(&mut g, 1, 4)), [33]);

    // The device deasserted; the guest handled it: done.
    g.set_level(0, 33, false);
    sync(&mut g, 1, &[lr(33, LrState::Invalid)]);
    assert!(!g.has_pending(1));
    let (reg, bit) = bit_reg(ISPENDR, 33);
    assert_eq!(r32(&mut g, gicd(reg)) & bit, 0);
}

#[test]
fn edge_spi_is_done_after_invalid() {
    let mut g = vgic(1, 32);
    linux_init(&mut g);
    w32(&mut g, gicd(ICFGR + 8), 0b10 << 2); // INTID 33 edge
    assert_eq!(r32(&mut g, gicd(ICFGR + 8)), 0b10 << 2);
    enable_spi(&mut g, 33);
    assert_eq!(g.set_level(0, 33, true), Effects { kick: 1 });
    let lrs = fill(&mut g, 0, 4);
    assert_eq!(intids(&lrs), [33]);
    assert!(!lrs[0].eoi_maintenance);
    sync(&mut g, 0, &[lr(33, LrState::Invalid)]);
    assert!(
        !g.has_pending(0),
        "the line stays asserted, but an edge is one event"
    );
    // Another edge while the first is active in the list register: pending and active.
    g.set_level(0, 33, true);
    let _ = fill(&mut g, 0, 4);
    assert_eq!(
        g.set_level(0, 33, true),
        Effects { kick: 1 },
        "refresh the list register"
    );
    sync(&mut g, 0, &[lr(33, LrState::Active)]);
    assert_eq!(fill(&mut g, 0, 4)[0].state, LrState::PendingActive);
}

#[test]
fn not_listed_means_invalid() {
    let mut g = vgic(1, 32);
    linux_init(&mut g);
    enable_spi(&mut g, 40);
    w32(&mut g, gicd(ISPENDR + 4), 1 << 8);
    assert_eq!(intids(&fill(&mut g, 0, 4)), [40]);
    // A stale Invalid copy and entries never given to this vCPU are ignored.
    sync(
        &mut g,
        0,
        &[lr(41, LrState::Pending), lr(40, LrState::Invalid)],
    );
    assert!(!g.has_pending(0));
    assert!(fill(&mut g, 0, 4).is_empty());
}

#[test]
fn priority_order_and_max() {
    let mut g = vgic(1, 64);
    linux_init(&mut g);
    for (intid, prio) in [(40, 0x80), (41, 0x40), (42, 0x40), (43, 0xc0), (44, 0x20)] {
        set_priority(&mut g, GICD_BASE, intid, prio);
        enable_spi(&mut g, intid);
        w32(&mut g, gicd(ISPENDR + 4), 1 << (intid - 32));
    }
    let lrs = fill(&mut g, 0, 3);
    assert_eq!(
        intids(&lrs),
        [44, 41, 42],
        "lowest value first, ties by INTID"
    );
    assert_eq!(lrs[0].priority, 0x20);
    assert!(g.has_pending(0), "more candidates than list registers");
    // The guest took none: all go back.
    let back: Vec<LrEntry> = lrs.iter().map(|e| lr(e.intid, e.state)).collect();
    sync(&mut g, 0, &back);
    assert_eq!(intids(&fill(&mut g, 0, 16)), [44, 41, 42, 40, 43]);
    assert!(!g.has_pending(0));
    assert_eq!(fill(&mut g, 0, 0).len(), 0);
}

#[test]
fn active_interrupts_come_first() {
    let mut g = vgic(1, 32);
    linux_init(&mut g);
    set_priority(&mut g, GICD_BASE, 35, 0xf0);
    enable_spi(&mut g, 35);
    enable_spi(&mut g, 36);
    w32(&mut g, gicd(ISPENDR + 4), 1 << 3);
    let _ = fill(&mut g, 0, 1);
    sync(&mut g, 0, &[lr(35, LrState::Active)]);
    w32(&mut g, gicd(ISPENDR + 4), 1 << 4); // 36, priority 0xa0: higher than 35's
    let lrs = fill(&mut g, 0, 1);
    assert_eq!((lrs[0].intid, lrs[0].state), (35, LrState::Active));
    assert!(g.has_pending(0));
    // An active interrupt is listed even when disabled, so it can be deactivated.
    w32(&mut g, gicd(ICENABLER + 4), 1 << 3);
    sync(&mut g, 0, &[lr(35, LrState::Active)]);
    assert_eq!(intids(&fill(&mut g, 0, 2)), [35, 36]);
    // Active state reads back, including while in a list register.
    assert_eq!(r32(&mut g, gicd(ISACTIVER + 4)) & (1 << 3), 1 << 3);
}

#[test]
fn sgi_targets() {
    const IRM: u64 = 1 << 40;
    let sgi1r = |intid: u64, list: u64| (intid << 24) | list;
    let mut g = vgic(4, 0);
    linux_init(&mut g);
    assert_eq!(g.send_sgi(0, sgi1r(3, 0b1010)), Effects { kick: 0b1010 });
    assert!(g.has_pending(1) && g.has_pending(3) && !g.has_pending(0) && !g.has_pending(2));
    let lrs = fill(&mut g, 3, 4);
    assert_eq!((lrs[0].intid, lrs[0].state), (3, LrState::Pending));
    // IRM: everyone but the sender. vCPU 1 already has SGI 3 pending, so is not kicked.
    assert_eq!(
        g.send_sgi(2, IRM | sgi1r(3, 0)),
        Effects {
            kick: 0b0001 | 0b1000
        }
    );
    assert!(!g.has_pending(2));
    // Aff1 != 0 names no vCPU; TargetList bits past the last vCPU are ignored.
    assert_eq!(g.send_sgi(0, sgi1r(5, 1) | (1 << 16)), Effects::default());
    assert_eq!(g.send_sgi(0, sgi1r(5, 0xfff0)), Effects::default());

    // RS selects Aff0 = RS * 16 + bit.
    let mut g = vgic(20, 0);
    linux_init(&mut g);
    assert_eq!(
        g.send_sgi(0, (1 << 44) | sgi1r(7, 0b100)),
        Effects { kick: 1 << 18 }
    );
    assert_eq!(intids(&fill(&mut g, 18, 4)), [7]);
    // Range 1, bits 4.. name Aff0 20.. which do not exist.
    assert_eq!(
        g.send_sgi(0, (1 << 44) | sgi1r(7, 0xfff0)),
        Effects::default()
    );
}

#[test]
fn disabled_group_delivers_nothing() {
    let mut g = vgic(1, 32);
    linux_init(&mut g);
    w32(&mut g, gicd(CTLR), ARE); // groups off
    enable_spi(&mut g, 32);
    assert_eq!(g.set_level(0, 32, true), Effects::default());
    assert!(!g.has_pending(0));
    assert!(fill(&mut g, 0, 4).is_empty());
    // Enabling Group 1 kicks the vCPU that now has something to take.
    assert_eq!(w32(&mut g, gicd(CTLR), GRP1), Effects { kick: 1 });
    assert_eq!(r32(&mut g, gicd(CTLR)), GRP1 | ARE | DS);
    // A Group 0 interrupt needs EnableGrp0.
    w32(&mut g, gicd(IGROUPR + 4), 0xffff_fffe);
    assert!(!g.has_pending(0));
    assert_eq!(w32(&mut g, gicd(CTLR), 1), Effects { kick: 1 });
    let lrs = fill(&mut g, 0, 4);
    assert!(!lrs[0].group1);
}

#[test]
fn set_and_clear_pending_through_mmio() {
    let mut g = vgic(2, 32);
    linux_init(&mut g);
    route(&mut g, 34, 1);
    enable_spi(&mut g, 34);
    assert_eq!(
        w32(&mut g, gicd(ISPENDR + 4), 1 << 2),
        Effects { kick: 0b10 }
    );
    assert_eq!(r32(&mut g, gicd(ISPENDR + 4)), 1 << 2);
    assert_eq!(r32(&mut g, gicd(ICPENDR + 4)), 1 << 2);
    w32(&mut g, gicd(ICPENDR + 4), 1 << 2);
    assert_eq!(r32(&mut g, gicd(ISPENDR + 4)), 0);
    assert!(!g.has_pending(1));

    // ICPENDR does not clear an asserted level line.
    g.set_level(0, 34, true);
    w32(&mut g, gicd(ICPENDR + 4), 1 << 2);
    assert!(g.has_pending(1));
    g.set_level(0, 34, false);

    // Cleared while in vCPU 1's list register: vCPU 1 is kicked, and what its list register
    // still says is not believed.
    w32(&mut g, gicd(ISPENDR + 4), 1 << 2);
    assert_eq!(intids(&fill(&mut g, 1, 4)), [34]);
    assert_eq!(
        r32(&mut g, gicd(ISPENDR + 4)),
        1 << 2,
        "pending in the list register"
    );
    assert_eq!(
        w32(&mut g, gicd(ICPENDR + 4), 1 << 2),
        Effects { kick: 0b10 }
    );
    assert_eq!(r32(&mut g, gicd(ISPENDR + 4)), 0);
    sync(&mut g, 1, &[lr(34, LrState::Pending)]);
    assert!(!g.has_pending(1));

    // SGIs and PPIs through the redistributor.
    assert_eq!(w32(&mut g, sgi(1, ISPENDR), 1 << 2), Effects { kick: 0b10 });
    assert_eq!(r32(&mut g, sgi(1, ISPENDR)), 1 << 2);
    assert_eq!(r32(&mut g, sgi(0, ISPENDR)), 0);
    w32(&mut g, sgi(1, ICPENDR), 1 << 2);
    assert!(!g.has_pending(1));
}

#[test]
fn level_line_dropped_while_in_lr() {
    let mut g = vgic(1, 32);
    linux_init(&mut g);
    enable_spi(&mut g, 32);
    g.set_level(0, 32, true);
    let _ = fill(&mut g, 0, 4);
    assert_eq!(g.set_level(0, 32, false), Effects { kick: 1 });
    sync(&mut g, 0, &[lr(32, LrState::Pending)]);
    assert!(
        !g.has_pending(0),
        "a level interrupt is pending only while asserted"
    );
}

#[test]
fn irouter_read_back_and_routing() {
    let mut g = vgic(4, 64);
    linux_init(&mut g);
    let ipa = gicd(IROUTER + 40 * 8);
    route(&mut g, 40, 2);
    assert_eq!(g.mmio_read(0, ipa, 8), Ok(2));
    // IRM (31) and Aff3 (39:32) are RAZ/WI; Aff2.Aff1.Aff0 are kept.
    route(&mut g, 40, (0x12 << 32) | (1 << 31) | 0x03_0201);
    assert_eq!(g.mmio_read(0, ipa, 8), Ok(0x03_0201));
    // Halves.
    g.mmio_write(0, ipa, 4, 3).unwrap();
    g.mmio_write(0, ipa + 4, 4, 0xff).unwrap();
    assert_eq!(g.mmio_read(0, ipa, 4), Ok(3));
    assert_eq!(g.mmio_read(0, ipa + 4, 4), Ok(0));
    // Aff 3 routes to vCPU 3; 0x03_0201 named nobody and went to vCPU 0.
    enable_spi(&mut g, 40);
    assert_eq!(g.set_level(0, 40, true), Effects { kick: 1 << 3 });
    g.set_level(0, 40, false);
    route(&mut g, 40, 0x0100);
    w32(&mut g, gicd(ISPENDR + 4), 1 << 8);
    assert!(g.has_pending(0));
    // Rerouting a pending interrupt kicks the new target.
    assert_eq!(route(&mut g, 40, 1), Effects { kick: 0b10 });
    assert!(g.has_pending(1) && !g.has_pending(0));
    // Unimplemented SPIs and the reserved IROUTER0..31 are RAZ/WI.
    g.mmio_write(0, gicd(IROUTER + 100 * 8), 8, 1).unwrap();
    assert_eq!(g.mmio_read(0, gicd(IROUTER + 100 * 8), 8), Ok(0));
    assert_eq!(g.mmio_read(0, gicd(IROUTER + 8), 8), Ok(0));
}

#[test]
fn id_and_type_registers() {
    let mut g = vgic(3, 64);
    // ITLinesNumber 2, IDbits 0b1001, No1N, RSS; LPIS, SecurityExtn, A3V 0.
    assert_eq!(
        r32(&mut g, gicd(TYPER)),
        2 | (0b1001 << 19) | (1 << 25) | (1 << 26)
    );
    assert_eq!(r32(&mut vgic(1, 50), gicd(TYPER)) & 0x1f, 2);
    assert_eq!(r32(&mut vgic(1, 0), gicd(TYPER)) & 0x1f, 0);
    assert_eq!(r32(&mut vgic(1, MAX_SPIS), gicd(TYPER)) & 0x1f, 31);
    assert_eq!(
        r32(&mut g, gicd(CTLR)),
        ARE | DS,
        "RWP 0, ARE and DS read 1"
    );
    assert_eq!(r32(&mut g, gicd(IIDR)), 0x43b);
    assert_eq!(r32(&mut g, gicd(0xc)), 0, "TYPER2");
    assert_eq!((r32(&mut g, gicd(PIDR2)) >> 4) & 0xf, 3);
    assert_eq!((r32(&mut g, rd(2, PIDR2)) >> 4) & 0xf, 3);
    assert_eq!(r32(&mut g, gicd(CIDR0)), 0x0d);
    assert_eq!(r32(&mut g, rd(0, IIDR - 4)), 0x43b, "GICR_IIDR at 0x4");
    for v in 0..3 {
        let typer = g.mmio_read(0, rd(v, GICR_TYPER), 8).unwrap();
        let last = if v == 2 { 1 << 4 } else { 0 };
        assert_eq!(typer, ((v as u64) << 32) | ((v as u64) << 8) | last);
        assert_eq!(g.mmio_read(0, rd(v, GICR_TYPER + 4), 4), Ok(v as u64));
        assert_eq!(
            g.mmio_read(0, rd(v, GICR_TYPER), 4),
            Ok(typer & 0xffff_ffff)
        );
    }
    // Read-only registers ignore writes.
    w32(&mut g, gicd(TYPER), 0);
    assert_ne!(r32(&mut g, gicd(TYPER)), 0);
    // No LPIs: GICR_CTLR, PROPBASER, PENDBASER are RAZ/WI.
    w32(&mut g, rd(0, CTLR), 1);
    assert_eq!(r32(&mut g, rd(0, CTLR)), 0);
    g.mmio_write(0, rd(0, GICR_PROPBASER), 8, 0x1234_5000)
        .unwrap();
    assert_eq!(g.mmio_read(0, rd(0, GICR_PROPBASER), 8), Ok(0));
}

#[test]
fn raz_wi_banks() {
    let mut g = vgic(1, 32);
    linux_init(&mut g);
    // The distributor's SGI/PPI bits are RAZ/WI with affinity routing.
    w32(&mut g, gicd(ISENABLER), 0xffff_ffff);
    assert_eq!(r32(&mut g, gicd(ISENABLER)), 0);
    assert_eq!(r32(&mut g, sgi(0, ISENABLER)), 0x0000_ffff);
    w32(&mut g, gicd(IPRIORITYR), 0x1111_1111);
    assert_eq!(r32(&mut g, gicd(IPRIORITYR)), 0);
    // Unimplemented SPIs (64.. with 32 SPIs).
    w32(&mut g, gicd(ISENABLER + 8), 0xffff_ffff);
    assert_eq!(r32(&mut g, gicd(ISENABLER + 8)), 0);
    // IGRPMODR and NSACR with DS = 1, GICD_SGIR with ARE.
    for ipa in [
        gicd(IGRPMODR + 4),
        gicd(NSACR + 8),
        sgi(0, IGRPMODR),
        sgi(0, NSACR),
        gicd(0xf00),
    ] {
        w32(&mut g, ipa, 0xffff_ffff);
        assert_eq!(r32(&mut g, ipa), 0);
    }
    assert_eq!(w32(&mut g, gicd(0xf00), (1 << 24) | 1), Effects::default());
    assert!(!g.has_pending(0));
}

#[test]
fn config_registers() {
    let mut g = vgic(1, 32);
    // SGIs: edge, read-only.
    assert_eq!(r32(&mut g, sgi(0, ICFGR)), 0xaaaa_aaaa);
    w32(&mut g, sgi(0, ICFGR), 0);
    assert_eq!(r32(&mut g, sgi(0, ICFGR)), 0xaaaa_aaaa);
    // PPIs configurable; bit 0 of each field is RES0.
    w32(&mut g, sgi(0, ICFGR + 4), 0xffff_ffff);
    assert_eq!(r32(&mut g, sgi(0, ICFGR + 4)), 0xaaaa_aaaa);
    w32(&mut g, sgi(0, ICFGR + 4), 0);
    assert_eq!(r32(&mut g, sgi(0, ICFGR + 4)), 0);
    // Byte-accessible priorities, word and byte.
    w32(&mut g, gicd(IPRIORITYR + 32), 0x4433_2211);
    assert_eq!(g.mmio_read(0, gicd(IPRIORITYR + 34), 1), Ok(0x33));
    g.mmio_write(0, gicd(IPRIORITYR + 35), 1, 0x99).unwrap();
    assert_eq!(r32(&mut g, gicd(IPRIORITYR + 32)), 0x9933_2211);
    g.mmio_write(0, sgi(0, IPRIORITYR + 27), 1, 0x10).unwrap();
    assert_eq!(r32(&mut g, sgi(0, IPRIORITYR + 24)), 0x1000_0000);
}

#[test]
fn access_sizes() {
    let mut g = vgic(2, 32);
    let bad = Err(MmioError::BadAccessSize);
    assert_eq!(g.mmio_read(0, gicd(CTLR), 1), bad);
    assert_eq!(g.mmio_read(0, gicd(CTLR), 8), bad);
    assert_eq!(g.mmio_read(0, gicd(CTLR + 2), 2), bad);
    assert_eq!(
        g.mmio_write(0, gicd(ISENABLER + 4), 8, 0),
        Err(MmioError::BadAccessSize)
    );
    assert_eq!(
        g.mmio_write(0, gicd(ISENABLER + 5), 1, 0),
        Err(MmioError::BadAccessSize)
    );
    assert_eq!(g.mmio_read(0, gicd(IPRIORITYR + 33), 2), bad);
    assert_eq!(g.mmio_read(0, gicd(IPRIORITYR + 32), 8), bad);
    assert!(g.mmio_read(0, gicd(IPRIORITYR + 33), 1).is_ok());
    assert_eq!(g.mmio_read(0, gicd(IROUTER + 32 * 8), 2), bad);
    assert_eq!(g.mmio_read(0, gicd(IROUTER + 32 * 8 + 4), 8), bad);
    assert_eq!(g.mmio_read(0, rd(1, GICR_TYPER + 2), 4), bad);
    assert_eq!(g.mmio_read(0, rd(1, GICR_WAKER), 8), bad);
    assert_eq!(g.mmio_read(0, sgi(1, ISENABLER), 2), bad);
    assert_eq!(g.mmio_read(0, gicd(PIDR2), 1), bad);
    // Reserved offsets accept any size.
    for size in [1, 2, 4, 8] {
        assert_eq!(g.mmio_read(0, gicd(0x14), size), Ok(0));
        assert_eq!(g.mmio_read(0, gicd(0x8000), size), Ok(0));
        assert_eq!(g.mmio_read(0, rd(1, 0x100), size), Ok(0));
        assert_eq!(
            g.mmio_read(0, sgi(1, ISENABLER + 4), size),
            Ok(0),
            "no extended PPIs"
        );
        assert_eq!(
            g.mmio_write(0, sgi(1, 0x8000), size, !0),
            Ok(Effects::default())
        );
    }
}

#[test]
fn kick_bits() {
    let mut g = vgic(3, 32);
    linux_init(&mut g);
    // A PPI of vCPU 2, enabled by vCPU 2.
    w32(&mut g, sgi(2, ISENABLER), 1 << 27);
    assert_eq!(g.set_level(2, 27, true), Effects { kick: 1 << 2 });
    assert_eq!(g.set_level(2, 27, true), Effects::default(), "no change");
    // A disabled SPI kicks when it is enabled, not when it pends.
    route(&mut g, 45, 1);
    assert_eq!(g.set_level(0, 45, true), Effects::default());
    assert_eq!(enable_spi(&mut g, 45), Effects { kick: 1 << 1 });
    // Unknown interrupts and vCPUs do nothing.
    assert_eq!(g.set_level(0, 64, true), Effects::default());
    assert_eq!(g.set_level(7, 20, true), Effects::default());
    assert_eq!(
        g.set_level(0, 3, true),
        Effects::default(),
        "SGIs have no line"
    );
}

#[test]
fn hardware_linked_interrupt() {
    let mut g = vgic(1, 0);
    linux_init(&mut g);
    w32(&mut g, sgi(0, ISENABLER), 1 << 27);
    assert_eq!(g.inject_hw(0, 27, 27), Effects { kick: 1 });
    let lrs = fill(&mut g, 0, 4);
    assert_eq!(
        (lrs[0].state, lrs[0].hw_intid, lrs[0].eoi_maintenance),
        (LrState::Pending, Some(27), false)
    );
    // Acknowledged, not deactivated: active only, never pending and active.
    sync(&mut g, 0, &[lr(27, LrState::Active)]);
    assert_eq!(fill(&mut g, 0, 4)[0].state, LrState::Active);
    // Deactivated (which deactivated the physical interrupt): done until it fires again.
    sync(&mut g, 0, &[lr(27, LrState::Invalid)]);
    assert!(!g.has_pending(0));
    assert_eq!(g.inject_hw(0, 27, 27), Effects { kick: 1 });
    // Unlinked, it is an ordinary level interrupt again.
    g.link_hw(0, 27, None);
    assert_eq!(fill(&mut g, 0, 4)[0].hw_intid, None);
}

#[test]
fn waker_handshake() {
    let mut g = vgic(2, 0);
    assert_eq!(
        r32(&mut g, rd(1, GICR_WAKER)),
        PROCESSOR_SLEEP | CHILDREN_ASLEEP
    );
    w32(&mut g, rd(1, GICR_WAKER), 0);
    assert_eq!(r32(&mut g, rd(1, GICR_WAKER)), 0);
    assert_eq!(
        r32(&mut g, rd(0, GICR_WAKER)),
        PROCESSOR_SLEEP | CHILDREN_ASLEEP
    );
    // ChildrenAsleep is read-only; putting the redistributor to sleep sets it.
    w32(&mut g, rd(1, GICR_WAKER), CHILDREN_ASLEEP);
    assert_eq!(r32(&mut g, rd(1, GICR_WAKER)), 0);
    w32(&mut g, rd(1, GICR_WAKER), PROCESSOR_SLEEP);
    assert_eq!(
        r32(&mut g, rd(1, GICR_WAKER)),
        PROCESSOR_SLEEP | CHILDREN_ASLEEP
    );
}

#[test]
fn address_ranges() {
    let mut g = vgic(2, 32);
    for ipa in [
        GICD_BASE - 4,
        GICD_BASE + GICD_SIZE,
        0x0808_0000, // where QEMU puts an ITS: not here
        GICR_BASE - 4,
        GICR_BASE + 2 * GICR_STRIDE,
        u64::MAX,
    ] {
        assert!(!Vgic::contains(ipa, 2), "{ipa:#x}");
        assert_eq!(g.mmio_read(0, ipa, 4), Err(MmioError::Unmapped));
        assert_eq!(g.mmio_write(0, ipa, 4, 0), Err(MmioError::Unmapped));
    }
    for ipa in [
        GICD_BASE,
        GICD_BASE + GICD_SIZE - 4,
        GICR_BASE,
        GICR_BASE + 2 * GICR_STRIDE - 4,
    ] {
        assert!(Vgic::contains(ipa, 2), "{ipa:#x}");
        assert!(g.mmio_read(0, ipa, 4).is_ok());
    }
    assert!(Vgic::contains(GICR_BASE + 2 * GICR_STRIDE, 3));
}

#[test]
#[should_panic]
fn too_many_vcpus() {
    let _ = vgic(MAX_VCPUS + 1, 0);
}
