//! Host tests of `delivery`: the glue's side of the list-register protocol as the other tests
//! drive it (`fill`, `sync`), what an exit costs in list-register accesses, the virtual
//! timer's short path, and a property test that runs random operation sequences (a tiny
//! deterministic PRNG) against brute-force recomputations: after every step the candidate
//! bitmaps and list-register records must equal a recomputation from the interrupts' states,
//! every entry a fill keeps must be what a full refill would write, and every short path must
//! end where the general path does.

use super::*;

/// The glue's fill, for tests: what `vcpu`'s first `max` list registers hold afterwards, best
/// first (active, then by priority, INTID and source), whatever list registers they are in.
pub fn fill(g: &mut Vgic, vcpu: usize, max: usize) -> Vec<LrEntry> {
    let _ = g.fill_list_registers(vcpu, max, |_, _| {});
    let mut out: Vec<LrEntry> = (0..max.min(MAX_LRS))
        .filter_map(|n| g.list_register(vcpu, n).copied())
        .collect();
    out.sort_by_key(|e| (!e.state.is_active(), e.priority, e.intid, e.source));
    out
}

/// The glue's sync, for tests: `lrs` says what the list registers hold, in any order. A
/// listed interrupt that `lrs` does not mention (by INTID and source) or mentions as Invalid
/// reads Invalid.
pub fn sync(g: &mut Vgic, vcpu: usize, lrs: &[LrEntry]) {
    let listed: Vec<Option<LrEntry>> = (0..MAX_LRS)
        .map(|n| g.list_register(vcpu, n).copied())
        .collect();
    let _ = g.sync_list_registers(vcpu, |n| {
        let want = listed[n]?;
        lrs.iter()
            .find(|e| {
                e.intid == want.intid && e.source == want.source && e.state != LrState::Invalid
            })
            .copied()
    });
}

// GICv3 register offsets (IHI 0069H.b §12.9, §12.11), GICv2 ones (IHI 0048B §4.1.2).
const CTLR: u64 = 0x0;
const IGROUPR: u64 = 0x80;
const ISENABLER: u64 = 0x100;
const ICENABLER: u64 = 0x180;
const ISPENDR: u64 = 0x200;
const ICPENDR: u64 = 0x280;
const ISACTIVER: u64 = 0x300;
const ICACTIVER: u64 = 0x380;
const IPRIORITYR: u64 = 0x400;
const ICFGR: u64 = 0xc00;
const IROUTER: u64 = 0x6000;
const ITARGETSR: u64 = 0x800;
const SGIR: u64 = 0xf00;
const CPENDSGIR: u64 = 0xf10;
const SPENDSGIR: u64 = 0xf20;
const GRP0_GRP1: u64 = 0b11;

/// One vCPU's list registers as the hardware holds them, and the glue's accesses to them.
#[derive(Default)]
struct Hw {
    lr: [Option<LrEntry>; MAX_LRS],
    reads: usize,
    writes: usize,
}

impl Hw {
    /// `sync_list_registers` as the glue calls it: an Invalid list register reads as empty
    /// (ICH_ELRSR_EL2).
    fn sync(&mut self, g: &mut Vgic, vcpu: usize) -> Effects {
        g.sync_list_registers(vcpu, |n| {
            self.reads += 1;
            self.lr[n].filter(|e| e.state != LrState::Invalid)
        })
    }

    fn fill(&mut self, g: &mut Vgic, vcpu: usize, lrs: usize) -> Filled {
        g.fill_list_registers(vcpu, lrs, |n, e| {
            self.writes += 1;
            self.lr[n] = e.copied();
        })
    }

    /// An exit of `vcpu` that changes nothing.
    fn exit(&mut self, g: &mut Vgic, vcpu: usize, lrs: usize) -> Filled {
        self.sync(g, vcpu);
        self.fill(g, vcpu, lrs)
    }

    /// The guest acknowledges the interrupt in list register `n`.
    fn ack(&mut self, n: usize) {
        if let Some(e) = &mut self.lr[n] {
            if e.state.is_pending() {
                e.state = LrState::Active;
            }
        }
    }

    /// The guest deactivates the interrupt in list register `n`.
    fn deactivate(&mut self, n: usize) {
        if let Some(e) = &mut self.lr[n] {
            e.state = LrState::from_bits(e.state.is_pending(), false);
        }
    }
}

fn linux_like_v3(vcpus: usize, spis: u32) -> Vgic {
    let mut g = Vgic::new(VgicConfig::v3(vcpus, spis));
    g.mmio_write(0, GICD_BASE + CTLR, 4, GRP0_GRP1).unwrap();
    for v in 0..vcpus {
        let sgi = GICR_BASE + v as u64 * GICR_STRIDE + GICR_SGI_BASE;
        g.mmio_write(v, sgi + IGROUPR, 4, 0xffff_ffff).unwrap();
        g.mmio_write(v, sgi + ISENABLER, 4, 0xffff_ffff).unwrap();
    }
    g
}

#[test]
fn an_exit_with_nothing_in_flight_touches_no_list_register() {
    let mut g = linux_like_v3(1, 32);
    let mut hw = Hw::default();
    for _ in 0..3 {
        assert_eq!(hw.exit(&mut g, 0, 4), Filled::default());
    }
    assert_eq!((hw.reads, hw.writes), (0, 0));
}

#[test]
fn needs_fill_says_whether_a_fill_has_work() {
    let mut g = linux_like_v3(2, 32);
    let mut hw = Hw::default();
    // A fresh model: the first fill looks; once it has, nothing until something changes.
    hw.exit(&mut g, 0, 4);
    assert!(!g.needs_fill(0, 4));
    g.inject_hw(0, 27, 27);
    assert!(g.needs_fill(0, 4));
    assert!(!g.needs_fill(1, 4), "another vCPU's interrupt");
    hw.fill(&mut g, 0, 4);
    assert!(!g.needs_fill(0, 4));
    // More candidates than list registers: the fill leaves some waiting, and says so.
    for intid in 40u32..46 {
        let bit = 1 << (intid - 32);
        g.mmio_write(0, GICD_BASE + ISENABLER + 4, 4, bit).unwrap();
        g.mmio_write(0, GICD_BASE + ISPENDR + 4, 4, bit).unwrap();
    }
    hw.fill(&mut g, 0, 4);
    assert!(g.needs_fill(0, 4));
    // Fewer list registers than the model used: a fill must take the others back.
    assert!(g.needs_fill(0, 2));
}

#[test]
fn an_unchanged_list_register_is_neither_rewritten_nor_given_back() {
    let mut g = linux_like_v3(1, 32);
    let mut hw = Hw::default();
    g.inject_hw(0, 27, 27);
    hw.exit(&mut g, 0, 4);
    assert_eq!(hw.writes, 1);
    assert_eq!(g.lrs_in_use(0), 1);
    // The guest acknowledges it and traps for something else, twice: the entry stays.
    hw.ack(0);
    hw.exit(&mut g, 0, 4);
    hw.exit(&mut g, 0, 4);
    assert_eq!(hw.writes, 1, "nothing to rewrite");
    assert_eq!(g.list_register(0, 0).unwrap().state, LrState::Active);
    // It deactivates it and the timer fires again: the list register is reused.
    hw.deactivate(0);
    hw.sync(&mut g, 0);
    assert_eq!(g.lrs_in_use(0), 0);
    g.inject_hw(0, 27, 27);
    hw.fill(&mut g, 0, 4);
    assert_eq!(hw.writes, 2);
    assert_eq!(hw.lr[0].unwrap().state, LrState::Pending);
}

#[test]
fn an_acknowledged_level_interrupt_still_asserted_becomes_pending_and_active() {
    let mut g = linux_like_v3(1, 32);
    g.mmio_write(0, GICD_BASE + ISENABLER + 4, 4, 1 << 1)
        .unwrap();
    g.set_level(0, 33, true);
    let mut hw = Hw::default();
    hw.exit(&mut g, 0, 4);
    assert_eq!(hw.lr[0].unwrap().state, LrState::Pending);
    hw.ack(0);
    hw.exit(&mut g, 0, 4);
    let e = hw.lr[0].unwrap();
    assert_eq!((e.intid, e.state), (33, LrState::PendingActive));
    assert!(e.eoi_maintenance);
    // The device deasserts (the guest's handler cleared it): active only.
    g.set_level(0, 33, false);
    hw.fill(&mut g, 0, 4);
    assert_eq!(hw.lr[0].unwrap().state, LrState::Active);
    // Deactivated: the list register is emptied (its EOI bit would keep the maintenance
    // interrupt asserted otherwise).
    hw.deactivate(0);
    hw.exit(&mut g, 0, 4);
    assert_eq!(hw.lr[0], None);
    assert_eq!(g.lrs_in_use(0), 0);
}

#[test]
fn a_better_candidate_displaces_the_worst_when_all_list_registers_are_busy() {
    let mut g = linux_like_v3(1, 32);
    let mut hw = Hw::default();
    for intid in 40u32..43 {
        g.mmio_write(0, GICD_BASE + IPRIORITYR + u64::from(intid), 1, 0x80)
            .unwrap();
        g.mmio_write(0, GICD_BASE + ISENABLER + 4, 4, 1 << (intid - 32))
            .unwrap();
        g.mmio_write(0, GICD_BASE + ISPENDR + 4, 4, 1 << (intid - 32))
            .unwrap();
    }
    assert!(
        hw.exit(&mut g, 0, 2).more,
        "three pending, two list registers"
    );
    let held = |hw: &Hw| {
        let mut v: Vec<u32> = hw.lr.iter().flatten().map(|e| e.intid).collect();
        v.sort();
        v
    };
    assert_eq!(held(&hw), [40, 41]);
    // A higher-priority one arrives.
    g.mmio_write(0, GICD_BASE + IPRIORITYR + 43, 1, 0x10)
        .unwrap();
    g.mmio_write(0, GICD_BASE + ISENABLER + 4, 4, 1 << 11)
        .unwrap();
    g.mmio_write(0, GICD_BASE + ISPENDR + 4, 4, 1 << 11)
        .unwrap();
    assert!(hw.exit(&mut g, 0, 2).more);
    assert_eq!(held(&hw), [40, 43]);
    // The guest takes them both; the other two follow.
    for n in 0..2 {
        hw.ack(n);
        hw.deactivate(n);
    }
    assert!(!hw.exit(&mut g, 0, 2).more);
    assert_eq!(held(&hw), [41, 42]);
}

#[test]
fn an_spi_given_back_by_its_old_target_kicks_the_new_one() {
    let mut g = linux_like_v3(2, 32);
    g.mmio_write(0, GICD_BASE + ISENABLER + 4, 4, 1 << 8)
        .unwrap();
    g.mmio_write(0, GICD_BASE + ISPENDR + 4, 4, 1 << 8).unwrap();
    let mut hw = Hw::default();
    hw.exit(&mut g, 0, 4);
    assert_eq!(hw.lr[0].unwrap().intid, 40);
    let route = GICD_BASE + IROUTER + 40 * 8;
    assert_eq!(
        g.mmio_write(0, route, 8, 1),
        Ok(Effects { kick: 0b01 }),
        "its holder gives it back"
    );
    assert_eq!(hw.sync(&mut g, 0), Effects { kick: 0b10 });
    assert!(g.has_pending(1));
    hw.fill(&mut g, 0, 4);
    assert_eq!(hw.lr[0], None);
}

/// A tiny deterministic PRNG (xorshift64*), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A register value with a few bits set.
    fn sparse(&mut self) -> u64 {
        let mut v = 0;
        for _ in 0..1 + self.below(3) {
            v |= 1 << self.below(32);
        }
        v
    }
}

/// How often the random sequences reached the cases worth reaching.
#[derive(Default, Debug)]
struct Reached {
    /// Fills after which something was listed.
    listed: usize,
    /// Fills after which candidates still waited.
    waiting: usize,
    /// Fills after which an entry was pending and active, or hardware-linked.
    pending_active: usize,
    hw: usize,
    /// Fills that kept an entry listed that the guest had acknowledged.
    kept_active: usize,
    /// Timer exits that took the short path.
    short: usize,
}

/// What a random sequence mostly does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// Anything: usually more candidates than list registers.
    Busy,
    /// Mostly exits and guest moves: few candidates wait, entries stay listed across exits.
    Quiet,
    /// Mostly the virtual timer firing and the guest taking it.
    Timer,
}

/// One random step: a guest or device action, an exit, or the guest moving a list register.
fn random_step(
    g: &mut Vgic,
    hw: &mut [Hw],
    lrs: usize,
    mix: Mix,
    r: &mut Rng,
    reached: &mut Reached,
) {
    let vcpus = g.vcpus();
    let v = r.below(vcpus as u64) as usize;
    let v2 = g.version() == VgicVersion::V2;
    let spi_words = (SPI_BASE + g.spis()).div_ceil(32) as u64;
    // A frame holding interrupt state, with the word of a random INTID range.
    let (frame, word) = match (v2, r.chance(50)) {
        (true, _) => (GICD_BASE, r.below(spi_words)),
        (false, true) => (GICD_BASE, 1 + r.below(spi_words.max(2) - 1)),
        (false, false) => (GICR_BASE + v as u64 * GICR_STRIDE + GICR_SGI_BASE, 0),
    };
    let op = match mix {
        Mix::Quiet if r.chance(75) => 13 + r.below(3),
        Mix::Timer if r.chance(90) => [9, 9, 13, 13, 15][r.below(5) as usize],
        _ => r.below(16),
    };
    match op {
        0..=5 => {
            const BIT_ARRAYS: [u64; 7] = [
                ISENABLER, ICENABLER, ISPENDR, ICPENDR, ISACTIVER, ICACTIVER, IGROUPR,
            ];
            let reg = BIT_ARRAYS[r.below(7) as usize] + word * 4;
            let value = if r.chance(10) {
                0xffff_ffff
            } else {
                r.sparse()
            };
            let _ = g.mmio_write(v, frame + reg, 4, value);
        }
        6 => {
            const PRIORITIES: [u64; 4] = [0x00, 0x40, 0xa0, 0xf0];
            let intid = word * 32 + r.below(32);
            let prio = PRIORITIES[r.below(4) as usize];
            let _ = g.mmio_write(v, frame + IPRIORITYR + intid, 1, prio);
        }
        7 => {
            let reg = ICFGR + (word * 2 + r.below(2)) * 4;
            let _ = g.mmio_write(v, frame + reg, 4, r.sparse() & 0xaaaa_aaaa);
        }
        8 => {
            let intid = 16 + r.below(u64::from(g.spis()) + 16) as u32;
            let _ = g.set_level(v, intid, r.chance(60));
        }
        9 => {
            if mix == Mix::Timer || r.chance(50) {
                timer_exit(g, &mut hw[v], v, lrs, reached);
            } else if r.chance(80) {
                let _ = g.inject_hw(v, 27, 27);
            } else {
                g.link_hw(v, 27, None);
            }
        }
        10 => {
            let intid = r.below(16);
            let targets = r.below(1 << vcpus);
            if v2 {
                let _ = g.mmio_write(v, GICD_BASE + SGIR, 4, (targets << 16) | intid);
            } else {
                let _ = g.send_sgi(v, (intid << 24) | targets);
            }
        }
        11 => {
            if g.spis() > 0 {
                let intid = SPI_BASE + r.below(u64::from(g.spis())) as u32;
                let to = r.below(vcpus as u64);
                if v2 {
                    let mask = if r.chance(10) { 0 } else { 1 << to };
                    let _ = g.mmio_write(v, GICD_BASE + ITARGETSR + u64::from(intid), 1, mask);
                } else {
                    let _ = g.mmio_write(v, GICD_BASE + IROUTER + u64::from(intid) * 8, 8, to);
                }
            } else if v2 {
                let reg = if r.chance(50) { SPENDSGIR } else { CPENDSGIR };
                let _ = g.mmio_write(v, GICD_BASE + reg + r.below(16), 1, r.below(256));
            }
        }
        12 => {
            if r.chance(20) {
                let _ = g.mmio_write(v, GICD_BASE + CTLR, 4, r.below(4));
            } else if v2 {
                let reg = if r.chance(50) { SPENDSGIR } else { CPENDSGIR };
                let _ = g.mmio_write(v, GICD_BASE + reg + r.below(16), 1, r.below(256));
            }
        }
        13 | 14 => {
            let n = r.below(lrs as u64) as usize;
            if r.chance(50) {
                hw[v].ack(n);
            } else {
                hw[v].deactivate(n);
            }
        }
        _ => {
            // An exit of vCPU `v`: sync, then fill; check the fill against the references.
            let _ = hw[v].sync(g, v);
            let filled = hw[v].fill(g, v, lrs);
            check_fill(g, &hw[v], v, lrs, filled);
            let kept = hw[v]
                .lr
                .iter()
                .flatten()
                .filter(|e| e.state == LrState::Active);
            reached.kept_active += kept.count();
            let held = hw[v].lr.iter().flatten();
            reached.listed += usize::from(g.lrs_in_use(v) != 0);
            reached.waiting += usize::from(!g.ranks(v).0.is_empty());
            reached.pending_active +=
                usize::from(held.clone().any(|e| e.state == LrState::PendingActive));
            reached.hw += usize::from(held.clone().any(|e| e.hw_intid.is_some()));
        }
    }
    g.check_delivery();
}

/// Panics at the first line where two `Vgic::observable` views differ.
fn same(a: &str, b: &str) {
    for (x, y) in a.lines().zip(b.lines()) {
        assert_eq!(x, y);
    }
    assert_eq!(a.lines().count(), b.lines().count());
}

/// The virtual timer's exit as the glue takes it: the short path if it applies, which must
/// end where the general one (sync, injection, fill) does; else the general one.
fn timer_exit(g: &mut Vgic, hw: &mut Hw, vcpu: usize, lrs: usize, reached: &mut Reached) {
    let mut general = g.clone();
    let mut general_hw = Hw {
        lr: hw.lr,
        ..Hw::default()
    };
    let empty = hw.lr.iter().enumerate().fold(0u16, |m, (n, e)| {
        let invalid = e.is_none_or(|e| e.state == LrState::Invalid);
        m | (u16::from(invalid) << n)
    });
    let _ = general_hw.sync(&mut general, vcpu);
    let _ = general.inject_hw(vcpu, 27, 27);
    let general_filled = general_hw.fill(&mut general, vcpu, lrs);
    let before = g.observable();
    match g.refire_hw(vcpu, 27, 27, || empty) {
        Some((n, raw)) => {
            reached.short += 1;
            hw.lr[n] = Some(lr_decode(g.version(), raw));
            assert!(!general_filled.more);
            same(&g.observable(), &general.observable());
            check_fill(g, hw, vcpu, lrs, Filled::default());
        }
        None => {
            same(&g.observable(), &before);
            let _ = hw.sync(g, vcpu);
            let _ = g.inject_hw(vcpu, 27, 27);
            let filled = hw.fill(g, vcpu, lrs);
            check_fill(g, hw, vcpu, lrs, filled);
        }
    }
}

/// Right after a fill of `vcpu`: the hardware holds what the model says; each entry is what a
/// model refilling every list register at every exit would write; and interrupts still wait
/// only if every list register is busy with better ones.
fn check_fill(g: &Vgic, hw: &Hw, vcpu: usize, lrs: usize, filled: Filled) {
    for n in 0..lrs {
        let model = g.list_register(vcpu, n).copied();
        let held = hw.lr[n].filter(|e| e.state != LrState::Invalid);
        assert_eq!(held, model, "LR {n} of vCPU {vcpu}");
        let Some(e) = model else { continue };
        assert!(!g.is_stale(vcpu, n));
        let mut want = g.relisted(vcpu, n).unwrap();
        if !e.state.is_pending() {
            // Only a pending entry's EOI bit matters; an acknowledged one may keep it.
            want.eoi_maintenance = e.eoi_maintenance;
        }
        assert_eq!(
            e, want,
            "LR {n} of vCPU {vcpu} as a full refill would write it"
        );
    }
    let (waiting, listed) = g.ranks(vcpu);
    assert_eq!(filled.more, g.has_pending(vcpu));
    if let Some(best_waiting) = waiting.iter().min() {
        assert_eq!(
            listed.len(),
            lrs,
            "candidates wait: every list register is busy"
        );
        assert!(
            listed.iter().all(|l| l < best_waiting),
            "the best are listed"
        );
    }
    for l in &listed {
        assert!(!waiting.contains(l), "never listed and waiting at once");
    }
}

#[test]
fn random_operations_keep_the_bookkeeping_exact() {
    let mut reached = Reached::default();
    for seed in 1..=120u64 {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let v2 = seed % 4 == 0;
        let vcpus = 1 + r.below(4) as usize;
        // SPIs across the 64-bit word boundary of the bitmaps, sometimes none.
        let spis = [0, 32, 70, 96][r.below(4) as usize];
        let lrs = 1 + r.below(4) as usize;
        let mut g = if v2 {
            Vgic::new(VgicConfig::v2(vcpus, spis))
        } else {
            Vgic::new(VgicConfig::v3(vcpus, spis))
        };
        // Everything enabled and in Group 1, as a booted guest has most of it; the random
        // steps disable some.
        let _ = g.mmio_write(0, GICD_BASE + CTLR, 4, GRP0_GRP1);
        let words = (SPI_BASE + spis).div_ceil(32) as u64;
        for v in 0..vcpus {
            let frame = match v2 {
                true => GICD_BASE,
                false => GICR_BASE + v as u64 * GICR_STRIDE + GICR_SGI_BASE,
            };
            for reg in [ISENABLER, IGROUPR] {
                let _ = g.mmio_write(v, frame + reg, 4, 0xffff_ffff);
                for w in 1..words {
                    let _ = g.mmio_write(v, GICD_BASE + reg + w * 4, 4, 0xffff_ffff);
                }
            }
        }
        let mut hw: Vec<Hw> = (0..vcpus).map(|_| Hw::default()).collect();
        for _ in 0..400 {
            let mix = [Mix::Busy, Mix::Quiet, Mix::Timer][(seed % 3) as usize];
            random_step(&mut g, &mut hw, lrs, mix, &mut r, &mut reached);
        }
        g.reset();
        g.check_delivery();
        assert!((0..vcpus).all(|v| g.lrs_in_use(v) == 0 && !g.has_pending(v)));
    }
    let least = [
        reached.listed,
        reached.waiting,
        reached.pending_active,
        reached.hw,
        reached.kept_active,
        reached.short,
    ];
    assert!(least.iter().all(|&n| n >= 20), "{reached:?}");
}

#[test]
fn the_virtual_timer_takes_the_short_path_and_ends_where_the_general_one_would() {
    let mut g = linux_like_v3(1, 32);
    let mut hw = Hw::default();
    let mut reached = Reached::default();
    // First interrupt: not linked yet, the general path links it.
    timer_exit(&mut g, &mut hw, 0, 4, &mut reached);
    assert_eq!(reached.short, 0);
    assert_eq!(
        hw.lr[0].map(|e| (e.intid, e.state)),
        Some((27, LrState::Pending))
    );
    // The guest takes it; the timer fires again: the same list register, nothing else.
    for round in 1..4 {
        hw.ack(0);
        hw.deactivate(0);
        timer_exit(&mut g, &mut hw, 0, 4, &mut reached);
        assert_eq!(reached.short, round);
        assert_eq!(g.lrs_in_use(0), 1);
    }
    // Not deactivated yet (cannot happen with a real timer): the general path.
    timer_exit(&mut g, &mut hw, 0, 4, &mut reached);
    assert_eq!(reached.short, 3);
    // Another interrupt waits: the general path, which lists both.
    hw.ack(0);
    hw.deactivate(0);
    g.mmio_write(0, GICD_BASE + ISENABLER + 4, 4, 1).unwrap();
    g.set_level(0, 32, true);
    timer_exit(&mut g, &mut hw, 0, 4, &mut reached);
    assert_eq!(reached.short, 3);
    assert_eq!(g.lrs_in_use(0).count_ones(), 2);
    // Both taken: with nothing listed, the short path lists it afresh.
    for n in 0..2 {
        hw.ack(n);
        hw.deactivate(n);
    }
    g.set_level(0, 32, false);
    hw.exit(&mut g, 0, 4);
    assert_eq!(g.lrs_in_use(0), 0);
    timer_exit(&mut g, &mut hw, 0, 4, &mut reached);
    assert_eq!(reached.short, 4);
}
