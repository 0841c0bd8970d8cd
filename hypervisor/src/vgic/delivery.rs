//! Delivery: which of a vCPU's interrupts are in its list registers, and which wait for one.
//!
//! Owns, per vCPU (`Lists`):
//! - the *candidates*: interrupts that target the vCPU, are in none of its list registers,
//!   and are active or deliverable (pending, enabled, their group enabled). They are kept as
//!   bitmaps (private interrupts, GICv2 SGIs by source, SPIs routed here) that every state
//!   change updates (`Vgic::refresh`), so that finding what to deliver costs in proportion to
//!   the candidates (usually none or one), never to the interrupts that exist;
//! - the record of each list register the model filled: which interrupt, and the entry as
//!   written (then as last synced). An interrupt stays in its list register across exits for
//!   as long as neither the guest nor the model changes it, so an exit with nothing in flight
//!   and nothing new reads and writes no list register at all.
//!
//! Never: decides an interrupt's state (mod.rs and bank.rs do, through `Vgic::change`),
//! touches hardware, or allocates.
//!
//! The rule the bookkeeping implements is the one of a model that took every interrupt back
//! from the list registers at each exit and refilled them from scratch: the list registers
//! hold the best (active first, then by priority, INTID and source) up to `lrs` of the
//! interrupts in flight or deliverable. Keeping an unchanged entry in place gives the same
//! result, since refilling it would write the same entry, provided that an entry is taken back
//! and chosen again whenever that could differ:
//! - the model changed its interrupt (`change` marks the list register *stale*), or the group
//!   enables changed (every list register is marked stale);
//! - the guest moved it on: deactivated (Invalid: taken back at once), or acknowledged it while
//!   the model holds a new pending state (an asserted level line: it must become pending and
//!   active);
//! - more candidates wait than list registers are free: everything is taken back and the best
//!   are chosen among all.
//!
//! Two shortcuts make the commonest exits a few checks (docs/benchmarks.md), and the tests hold
//! both to that rule (`tests_delivery`): `Lists::attention` says whether a fill has anything to
//! do at all, and `Lists::refire` arms the virtual timer's O(1) path (`Vgic::refire_hw`): when
//! its interrupt is alone in flight, the physical interrupt firing again only rewrites its
//! list register.

use super::irq::{InLr, Irq, PRIVATE_COUNT, SGI_COUNT, SPI_BASE};
use super::lr::{LrEntry, LrState};
use super::{Effects, Loc, Vgic, MAX_LRS, MAX_SPIS};

/// Bits per bitmap word.
const WORD_BITS: usize = u64::BITS as usize;
/// Words of an SPI bitmap: one bit per possible SPI.
const SPI_WORDS: usize = (MAX_SPIS as usize).div_ceil(WORD_BITS);
const _: () = assert!(
    SPI_WORDS <= u16::BITS as usize,
    "`spi_words` has a bit per word"
);
const _: () = assert!(MAX_LRS <= u16::BITS as usize, "list register masks are u16");

/// A candidate's rank, lower first (see `Vgic::key`): bit 48 = not active, 47:40 priority,
/// 17:8 INTID, 7:0 source (GICv2 SGIs). It also names the interrupt, given its vCPU.
const KEY_NOT_ACTIVE: u64 = 1 << 48;
const KEY_PRIORITY_SHIFT: u32 = 40;
const KEY_INTID_SHIFT: u32 = 8;
const KEY_INTID_MASK: u64 = 0x3ff;
const KEY_SOURCE_MASK: u64 = 0xff;

/// A list register the model filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listed {
    loc: Loc,
    /// As written; its state as last synced.
    entry: LrEntry,
}

/// One vCPU's candidates and list registers (see the module comment).
#[derive(Debug, Clone)]
pub(super) struct Lists {
    /// Private interrupts, bit = INTID (GICv2: PPIs only; its SGIs are in `sgi`).
    private: u32,
    /// GICv2 SGIs, bit = INTID × vCPUs + source (at most 16 × 8).
    sgi: u128,
    /// SPIs routed to this vCPU: bit b of word w = INTID 32 + 64w + b.
    spi: [u64; SPI_WORDS],
    /// Bit w: `spi[w]` is not zero.
    spi_words: u16,
    lr: [Option<Listed>; MAX_LRS],
    /// Bit n: `lr[n]` holds an interrupt.
    used: u16,
    /// List registers whose interrupt the model changed since: taken back at the next sync
    /// or fill.
    stale: u16,
    /// List registers the next fill must write (emptied, or given a new entry).
    dirty: u16,
    /// The list register whose hardware-linked interrupt may take `Vgic::refire_hw`'s
    /// shortest path (see `Vgic::refire_ready`), if any. Every change to these lists or to a
    /// listed interrupt disarms it; fills and the short path arm it.
    refire: Option<u8>,
    /// While `refire` is armed: its entry in the hardware's encoding (`lr_encode`), so that the
    /// short path only copies it.
    refire_raw: u64,
    /// The next fill has work: a candidate waits, or a list register is stale or dirty.
    /// Whatever makes one of these true sets it (`touch`); a fill that leaves none clears it.
    /// Without it the fill changes nothing, and its quick check is this one flag.
    attention: bool,
}

impl Lists {
    pub(super) const fn new() -> Self {
        Lists {
            private: 0,
            sgi: 0,
            spi: [0; SPI_WORDS],
            spi_words: 0,
            lr: [None; MAX_LRS],
            used: 0,
            stale: 0,
            dirty: 0,
            refire: None,
            refire_raw: 0,
            attention: false,
        }
    }

    /// These lists changed in a way the next fill must look at (see `attention`), and no
    /// longer fit the short path (see `refire`).
    fn touch(&mut self) {
        self.attention = true;
        self.refire = None;
    }

    /// How many candidates there are.
    fn count(&self) -> usize {
        let spis: u32 = bits(self.spi_words).map(|w| self.spi[w].count_ones()).sum();
        (self.private.count_ones() + self.sgi.count_ones() + spis) as usize
    }

    fn set_spi(&mut self, index: usize, on: bool) {
        let (w, bit) = (index / WORD_BITS, 1u64 << (index % WORD_BITS));
        if on {
            self.touch();
            self.spi[w] |= bit;
        } else {
            self.spi[w] &= !bit;
        }
        if self.spi[w] == 0 {
            self.spi_words &= !(1 << w);
        } else {
            self.spi_words |= 1 << w;
        }
    }

    fn clear_candidates(&mut self) {
        self.refire = None;
        self.private = 0;
        self.sgi = 0;
        self.spi = [0; SPI_WORDS];
        self.spi_words = 0;
    }
}

/// What a fill leaves for the glue to do besides writing list registers. When `changed` is
/// false, nothing was to be done: the list registers and the maintenance request of the last
/// fill (or short path) stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    /// Deliverable interrupts still wait for a list register (more than fit): ask for a
    /// maintenance interrupt when one frees up (ICH_HCR_EL2.NPIE / GICH_HCR.NPIE).
    pub more: bool,
    /// Other vCPUs to kick: an SPI routed elsewhere since it was listed here has been given
    /// back and its new target can take it.
    pub kick: Effects,
    /// Something was to be done: `more` is to be requested anew, and `lrs_in_use` may have
    /// changed.
    pub changed: bool,
}

/// The set bits of `mask`, lowest first.
fn bits(mask: u16) -> impl Iterator<Item = usize> {
    let mut m = mask;
    core::iter::from_fn(move || {
        (m != 0).then(|| {
            let n = m.trailing_zeros() as usize;
            m &= m - 1;
            n
        })
    })
}

/// Bit `n` of a mask as wide as the list registers.
fn lr_bit(n: usize) -> u16 {
    1 << n
}

/// The masks of the first `n` list registers.
fn first_lrs(n: usize) -> u16 {
    (((1u32) << n) - 1) as u16
}

impl Vgic {
    /// Whether `irq` wants a list register (see the module comment).
    pub(super) fn is_candidate(&self, irq: &Irq) -> bool {
        irq.lr.is_none() && (irq.active || self.deliverable(irq))
    }

    /// Brings the candidate bit of `loc` in step with its state. Every change to an
    /// interrupt's state, routing or group enable calls it.
    pub(super) fn refresh(&mut self, loc: Loc) {
        let on = self.is_candidate(self.irq(loc));
        match loc {
            Loc::Private { vcpu, intid } => {
                // A GICv2 SGI's pending and active states are per source (`Loc::Sgi`).
                if self.is_v2() && intid < SGI_COUNT {
                    return;
                }
                let lists = &mut self.cpus[vcpu].lists;
                lists.private = (lists.private & !(1 << intid)) | (u32::from(on) << intid);
                if on {
                    lists.touch();
                }
            }
            Loc::Sgi {
                vcpu,
                intid,
                source,
            } => {
                let i = intid as usize * self.vcpus + source as usize;
                let lists = &mut self.cpus[vcpu].lists;
                lists.sgi = (lists.sgi & !(1 << i)) | (u128::from(on) << i);
                if on {
                    lists.touch();
                }
            }
            Loc::Spi(intid) => {
                let i = (intid - SPI_BASE) as usize;
                if let Some(t) = self.target[i] {
                    self.cpus[t].lists.set_spi(i, on);
                }
            }
        }
    }

    /// SPI `intid` leaves the candidates of `vcpu` (it is being routed elsewhere).
    pub(super) fn drop_spi_candidate(&mut self, vcpu: usize, intid: u32) {
        self.cpus[vcpu]
            .lists
            .set_spi((intid - SPI_BASE) as usize, false);
    }

    /// Recomputes every candidate bitmap from scratch: after the group enables changed, which
    /// changes what is deliverable everywhere.
    pub(super) fn rebuild_candidates(&mut self) {
        for cpu in &mut self.cpus {
            cpu.lists.clear_candidates();
        }
        let sources = if self.is_v2() { self.vcpus as u8 } else { 0 };
        for vcpu in 0..self.vcpus {
            for intid in 0..PRIVATE_COUNT {
                self.refresh(Loc::Private { vcpu, intid });
            }
            for intid in 0..SGI_COUNT {
                for source in 0..sources {
                    self.refresh(Loc::Sgi {
                        vcpu,
                        intid,
                        source,
                    });
                }
            }
        }
        for intid in SPI_BASE..SPI_BASE + self.spis {
            self.refresh(Loc::Spi(intid));
        }
    }

    /// The interrupt in the list register that `l` names changed in the model: that list
    /// register must be chosen again.
    pub(super) fn mark_stale(&mut self, l: InLr) {
        let lists = &mut self.cpus[l.vcpu].lists;
        lists.stale |= lr_bit(l.slot.into());
        lists.touch();
    }

    /// Every list register of every vCPU must be chosen again.
    pub(super) fn mark_all_stale(&mut self) {
        for cpu in &mut self.cpus {
            if cpu.lists.used != 0 {
                cpu.lists.stale = cpu.lists.used;
                cpu.lists.touch();
            }
        }
    }

    /// Calls `f` on each candidate of `vcpu` until it returns true; says whether one did.
    fn find_candidate(&self, vcpu: usize, mut f: impl FnMut(Loc) -> bool) -> bool {
        let l = &self.cpus[vcpu].lists;
        let mut private = l.private;
        while private != 0 {
            let intid = private.trailing_zeros();
            private &= private - 1;
            if f(Loc::Private { vcpu, intid }) {
                return true;
            }
        }
        let mut sgi = l.sgi;
        while sgi != 0 {
            let i = sgi.trailing_zeros() as usize;
            sgi &= sgi - 1;
            let loc = Loc::Sgi {
                vcpu,
                intid: (i / self.vcpus) as u32,
                source: (i % self.vcpus) as u8,
            };
            if f(loc) {
                return true;
            }
        }
        for w in bits(l.spi_words) {
            let mut word = l.spi[w];
            while word != 0 {
                let b = word.trailing_zeros() as usize;
                word &= word - 1;
                if f(Loc::Spi(SPI_BASE + (w * WORD_BITS + b) as u32)) {
                    return true;
                }
            }
        }
        false
    }

    /// Whether `vcpu` has an interrupt it could take that is not in a list register: pending,
    /// enabled, its group enabled. Meaningful after `sync_list_registers` (to wake a vCPU in
    /// WFI) or after `fill_list_registers` (more candidates than list registers).
    pub fn has_pending(&self, vcpu: usize) -> bool {
        vcpu < self.vcpus && self.find_candidate(vcpu, |loc| self.deliverable(self.irq(loc)))
    }

    /// The list registers of `vcpu` that hold an interrupt the model gave it, as a mask: the
    /// only ones `sync_list_registers` reads.
    pub fn lrs_in_use(&self, vcpu: usize) -> u16 {
        self.cpus.get(vcpu).map_or(0, |c| c.lists.used)
    }

    /// What the model believes `vcpu`'s list register `n` holds: the entry written, with its
    /// state as last synced.
    pub fn list_register(&self, vcpu: usize, n: usize) -> Option<&LrEntry> {
        let listed = self.cpus.get(vcpu)?.lists.lr.get(n)?.as_ref()?;
        Some(&listed.entry)
    }

    /// After an exit: what became of the interrupts in `vcpu`'s list registers. `read(n)` is
    /// list register `n` as the hardware holds it, `None` if it is empty (for instance
    /// ICH_ELRSR_EL2 says so); it is called only for the list registers in `lrs_in_use`. An
    /// entry that no longer names the interrupt the model put there counts as Invalid.
    ///
    /// Invalid = the guest acknowledged and deactivated it: it returns to the model (a
    /// level-sensitive interrupt whose line is still asserted is pending again; a
    /// hardware-linked one's line is taken as deasserted, since the guest's deactivation
    /// deactivated the physical interrupt, which signals again if its source still is).
    /// Pending or active: it stays, in its new state. Returns the vCPUs to kick (see
    /// `Filled::kick`).
    pub fn sync_list_registers(
        &mut self,
        vcpu: usize,
        mut read: impl FnMut(usize) -> Option<LrEntry>,
    ) -> Effects {
        let mut fx = Effects::default();
        let Some(cpu) = self.cpus.get(vcpu) else {
            return fx;
        };
        for n in bits(cpu.lists.used) {
            let Some(listed) = self.cpus[vcpu].lists.lr[n] else {
                continue;
            };
            let state = match read(n) {
                Some(e)
                    if e.intid == listed.entry.intid
                        && (listed.entry.source.is_none() || e.source == listed.entry.source) =>
                {
                    e.state
                }
                _ => LrState::Invalid,
            };
            if state != listed.entry.state {
                self.guest_moved(vcpu, n, listed.loc, state);
            }
            if self.cpus[vcpu].lists.stale & lr_bit(n) != 0 {
                fx |= self.take_back(vcpu, n);
            }
        }
        fx
    }

    /// The guest took list register `n` of `vcpu` (holding `loc`) to `state`.
    fn guest_moved(&mut self, vcpu: usize, n: usize, loc: Loc, state: LrState) {
        let lists = &mut self.cpus[vcpu].lists;
        lists.refire = None;
        if let Some(listed) = &mut lists.lr[n] {
            listed.entry.state = state;
        }
        let irq = self.irq_mut(loc);
        if let Some(l) = &mut irq.lr {
            l.pending = state.is_pending();
            l.active = state.is_active();
        }
        // Deactivated: done with it. Acknowledged while the model holds a new pending state
        // (an asserted level line): the list register must become pending and active.
        // (A hardware-linked interrupt is never listed pending and active: it is listed
        // again only once deactivated.)
        let again =
            state == LrState::Invalid || (!state.is_pending() && irq.pending() && irq.hw.is_none());
        if again {
            let lists = &mut self.cpus[vcpu].lists;
            lists.stale |= lr_bit(n);
            lists.touch();
        }
    }

    /// List register `n` of `vcpu` gives its interrupt back to the model, in the state it was
    /// last known to hold, less what the guest cleared since (ICPENDR, ICACTIVER). The list
    /// register is rewritten at the next fill. Returns the interrupt's new target to kick if
    /// it is another vCPU (an SPI routed away meanwhile).
    fn take_back(&mut self, vcpu: usize, n: usize) -> Effects {
        let lists = &mut self.cpus[vcpu].lists;
        let Some(listed) = lists.lr[n].take() else {
            return Effects::default();
        };
        lists.used &= !lr_bit(n);
        lists.stale &= !lr_bit(n);
        lists.dirty |= lr_bit(n);
        lists.touch();
        let irq = self.irq_mut(listed.loc);
        if let Some(l) = irq.lr.take() {
            let pending = l.pending && !l.pending_cleared;
            let active = l.active && !l.active_cleared;
            if active {
                irq.active = true;
            }
            if pending && l.latched {
                irq.latch = true;
            }
            if irq.hw.is_some() && !pending && !active {
                irq.line = false;
            }
        }
        self.refresh(listed.loc);
        let mut fx = Effects::default();
        match self.target(listed.loc) {
            Some(t) if t != vcpu && self.is_candidate(self.irq(listed.loc)) => fx.add(t),
            _ => {}
        }
        fx
    }

    /// Before entering `vcpu`, which has `lrs` list registers (at most `MAX_LRS` are used):
    /// brings them up to date with the model. `write(n, entry)` must set list register `n` to
    /// `entry` (`None`: empty); it is called only for the list registers that change. Active
    /// interrupts come first (the guest can only deactivate an interrupt that is in a list
    /// register), then by priority (lower value first), then lower INTID, then, for GICv2
    /// SGIs, lower source: each source of an SGI is an entry of its own, with `source` set. A
    /// hardware-linked interrupt is never written pending and active (its pending state stays
    /// in the physical GIC). Call it after `sync_list_registers` in the same exit, or after
    /// loading the vCPU's list registers as they were at its last sync.
    #[inline]
    pub fn fill_list_registers(
        &mut self,
        vcpu: usize,
        lrs: usize,
        write: impl FnMut(usize, Option<&LrEntry>),
    ) -> Filled {
        if !self.needs_fill(vcpu, lrs) {
            // Nothing changed since the list registers were last written, and nothing waits.
            return Filled::default();
        }
        self.fill_changes(vcpu, lrs, write)
    }

    /// Whether `fill_list_registers(vcpu, lrs, ..)` would have anything to do: a candidate
    /// waits, a list register is stale or dirty (`attention`), or one beyond the `lrs` the
    /// hardware has is in use. False right after a fill that placed every candidate, until
    /// the model changes.
    pub fn needs_fill(&self, vcpu: usize, lrs: usize) -> bool {
        self.cpus.get(vcpu).is_some_and(|cpu| {
            let l = &cpu.lists;
            l.attention || u32::from(l.used) >> lrs.min(MAX_LRS) != 0
        })
    }

    /// `fill_list_registers` when something is to be done; apart so that the common case
    /// (nothing) stays a few instructions.
    #[inline(never)]
    fn fill_changes(
        &mut self,
        vcpu: usize,
        lrs: usize,
        mut write: impl FnMut(usize, Option<&LrEntry>),
    ) -> Filled {
        let mut out = Filled::default();
        let lrs = lrs.min(MAX_LRS);
        let usable = first_lrs(lrs);
        let l = &self.cpus[vcpu].lists;
        for n in bits(l.stale | (l.used & !usable)) {
            out.kick |= self.take_back(vcpu, n);
        }
        let mut count = self.cpus[vcpu].lists.count();
        if count > 0 {
            let mut free = lrs - self.cpus[vcpu].lists.used.count_ones() as usize;
            if count > free {
                // More want a list register than are free: choose among everything.
                for n in bits(self.cpus[vcpu].lists.used) {
                    out.kick |= self.take_back(vcpu, n);
                }
                count = self.cpus[vcpu].lists.count();
                free = lrs;
            }
            let placed = self.place_best(vcpu, count.min(free));
            count -= placed;
        }
        let lists = &mut self.cpus[vcpu].lists;
        for n in bits(core::mem::take(&mut lists.dirty) & usable) {
            write(n, lists.lr[n].as_ref().map(|x| &x.entry));
        }
        out.changed = true;
        out.more = count > 0 && self.has_pending(vcpu);
        // Candidates still waiting keep the next fill looking (the maintenance interrupt
        // requested for them included).
        self.cpus[vcpu].lists.attention = count > 0;
        self.arm_refire(vcpu);
        out
    }

    /// Arms `refire` if `refire_ready`.
    fn arm_refire(&mut self, vcpu: usize) {
        let ready = self.refire_ready(vcpu);
        let raw = match ready.and_then(|n| self.cpus[vcpu].lists.lr[usize::from(n)]) {
            Some(listed) => super::lr::lr_encode(self.version, &listed.entry),
            None => 0,
        };
        let lists = &mut self.cpus[vcpu].lists;
        lists.refire = ready;
        lists.refire_raw = raw;
    }

    /// The list register of `vcpu` that `refire_hw` may rewrite as it is when its physical
    /// interrupt fires again: the only list register in use; it holds a hardware-linked PPI,
    /// level-sensitive, listed pending with its line asserted (from the line, not a latch)
    /// and unchanged since; nothing else waits. Then giving it back Invalid (its line taken as
    /// deasserted), asserting the line and listing it again, as the general path would,
    /// leaves the model as it is.
    fn refire_ready(&self, vcpu: usize) -> Option<u8> {
        let l = &self.cpus[vcpu].lists;
        let idle = (l.stale | l.dirty | l.spi_words) == 0 && l.private == 0 && l.sgi == 0;
        if !idle || !l.used.is_power_of_two() {
            return None;
        }
        let n = l.used.trailing_zeros() as u8;
        let listed = l.lr[usize::from(n)]?;
        let Loc::Private { intid, .. } = listed.loc else {
            return None;
        };
        let irq = &self.cpus[vcpu].private[intid as usize];
        let as_listed = InLr {
            vcpu,
            slot: n,
            pending: true,
            active: false,
            latched: false,
            pending_cleared: false,
            active_cleared: false,
        };
        let quiet = irq.line && !irq.edge && !irq.latch && !irq.active;
        let pending = listed.entry.state == LrState::Pending;
        (irq.hw.is_some() && quiet && pending && irq.lr == Some(as_listed)).then_some(n)
    }

    /// The physical interrupt `pintid` linked to PPI `intid` of `vcpu` fired again (the
    /// virtual timer), in the common cases and in O(1). Either the interrupt is in the list
    /// register `refire_ready` armed, which is empty now (`empty()`: the hardware's mask of
    /// empty list registers): the guest deactivated it, which deactivated the physical
    /// interrupt and let it fire again; or it is in no list register, none is in use, nothing
    /// waits, and it is linked, enabled, level-sensitive and in an enabled group. Then it
    /// does what `sync_list_registers`, `inject_hw` and `fill_list_registers` would, and
    /// returns the one list register to write, with its value in the hardware's encoding
    /// (`lr_encode`): no other changes, and nothing else waits, so no maintenance interrupt is
    /// needed. Otherwise it changes nothing and returns `None`: the caller takes that general
    /// path.
    pub fn refire_hw(
        &mut self,
        vcpu: usize,
        intid: u32,
        pintid: u32,
        empty: impl FnOnce() -> u16,
    ) -> Option<(usize, u64)> {
        let version = self.version;
        let ctlr = self.ctlr;
        let cpu = self.cpus.get_mut(vcpu)?;
        let l = &mut cpu.lists;
        if let Some(n) = l.refire {
            // The general path would give it back and list it again as it is (see
            // `refire_ready`): only the list register needs writing again.
            let n = usize::from(n) % MAX_LRS;
            let entry = l.lr[n]?.entry;
            let same = entry.intid == intid && entry.hw_intid == Some(pintid);
            return (same && empty() & lr_bit(n) != 0).then_some((n, l.refire_raw));
        }
        let idle = (l.used | l.stale | l.dirty | l.spi_words) == 0 && l.private == 0 && l.sgi == 0;
        if !idle || !(SGI_COUNT..PRIVATE_COUNT).contains(&intid) {
            return None;
        }
        let irq = &mut cpu.private[intid as usize];
        let group = if irq.group1 {
            super::CTLR_ENABLE_GRP1
        } else {
            super::CTLR_ENABLE_GRP0
        };
        let quiet = !irq.edge && !irq.latch && !irq.active && irq.lr.is_none();
        if irq.hw != Some(pintid) || !quiet || !irq.enabled || ctlr & group == 0 {
            return None;
        }
        // Listed afresh, as `inject_hw` and `fill_list_registers` would.
        let n = 0;
        irq.line = true;
        irq.lr = Some(InLr {
            vcpu,
            slot: n as u8,
            pending: true,
            active: false,
            latched: false,
            pending_cleared: false,
            active_cleared: false,
        });
        let entry = LrEntry {
            intid,
            priority: irq.priority,
            group1: irq.group1,
            state: LrState::Pending,
            hw_intid: Some(pintid),
            eoi_maintenance: false,
            source: None,
        };
        l.lr[n] = Some(Listed {
            loc: Loc::Private { vcpu, intid },
            entry,
        });
        l.used = lr_bit(n);
        let raw = super::lr::lr_encode(version, &entry);
        l.refire = Some(n as u8);
        l.refire_raw = raw;
        Some((n, raw))
    }

    /// `loc`'s rank among candidates (see `KEY_NOT_ACTIVE`).
    fn key(&self, loc: Loc) -> u64 {
        let irq = self.irq(loc);
        let not_active = if irq.active { 0 } else { KEY_NOT_ACTIVE };
        let source = super::source_of(loc).unwrap_or(0);
        not_active
            | (u64::from(irq.priority) << KEY_PRIORITY_SHIFT)
            | (u64::from(super::intid_of(loc)) << KEY_INTID_SHIFT)
            | u64::from(source)
    }

    /// The interrupt of `vcpu` that `key` names.
    fn loc_of_key(&self, vcpu: usize, key: u64) -> Loc {
        let intid = ((key >> KEY_INTID_SHIFT) & KEY_INTID_MASK) as u32;
        let source = (key & KEY_SOURCE_MASK) as u8;
        if intid >= SPI_BASE {
            Loc::Spi(intid)
        } else if self.is_v2() && intid < SGI_COUNT {
            Loc::Sgi {
                vcpu,
                intid,
                source,
            }
        } else {
            Loc::Private { vcpu, intid }
        }
    }

    /// Lists the `k` best candidates of `vcpu` (k no more than its free list registers), best
    /// in the lowest free list register. Returns how many it listed.
    fn place_best(&mut self, vcpu: usize, k: usize) -> usize {
        if k == 0 {
            return 0;
        }
        // Sorted keys of the best so far.
        let mut best = [0u64; MAX_LRS];
        let mut len = 0;
        self.find_candidate(vcpu, |loc| {
            let key = self.key(loc);
            let at = best[..len].partition_point(|&b| b < key);
            if at < k {
                len = (len + 1).min(k);
                best.copy_within(at..len - 1, at + 1);
                best[at] = key;
            }
            false
        });
        for &key in &best[..len] {
            let free = !self.cpus[vcpu].lists.used;
            let n = free.trailing_zeros() as usize;
            let loc = self.loc_of_key(vcpu, key);
            self.list(vcpu, n, loc);
        }
        len
    }

    /// Puts candidate `loc` into list register `n` of `vcpu`: its pending state (unless
    /// hardware-linked and active) and active state move out of the model into the entry.
    fn list(&mut self, vcpu: usize, n: usize, loc: Loc) {
        let irq = *self.irq(loc);
        let deliverable = self.deliverable(&irq);
        let pending = deliverable && !(irq.hw.is_some() && irq.active);
        let entry = LrEntry {
            intid: super::intid_of(loc),
            priority: irq.priority,
            group1: irq.group1,
            state: LrState::from_bits(pending, irq.active),
            hw_intid: irq.hw,
            eoi_maintenance: pending && !irq.edge && irq.hw.is_none(),
            source: super::source_of(loc),
        };
        let irq = self.irq_mut(loc);
        irq.lr = Some(InLr {
            vcpu,
            slot: n as u8,
            pending,
            active: irq.active,
            latched: pending && irq.latch,
            pending_cleared: false,
            active_cleared: false,
        });
        if pending {
            irq.latch = false;
        }
        irq.active = false;
        self.refresh(loc);
        let lists = &mut self.cpus[vcpu].lists;
        lists.lr[n] = Some(Listed { loc, entry });
        lists.used |= lr_bit(n);
        lists.dirty |= lr_bit(n);
        lists.touch();
    }
}

/// Brute-force references for the tests (`tests_delivery`).
#[cfg(test)]
impl Vgic {
    /// Panics unless the bookkeeping agrees with a recomputation from the interrupts' states:
    /// each vCPU's candidates are exactly the interrupts targeting it that `is_candidate`;
    /// each list register the model filled names an interrupt that says it is there, and
    /// each interrupt that says it is in a list register is there.
    pub(super) fn check_delivery(&self) {
        use alloc::vec::Vec;
        for vcpu in 0..self.vcpus {
            let l = &self.cpus[vcpu].lists;
            let mut found = Vec::new();
            self.find_candidate(vcpu, |loc| {
                found.push(loc);
                false
            });
            let want: Vec<Loc> = self
                .locs_of(vcpu)
                .filter(|&loc| self.is_candidate(self.irq(loc)))
                .collect();
            assert_eq!(found, want, "candidates of vCPU {vcpu}");
            for (w, word) in l.spi.iter().enumerate() {
                assert_eq!(l.spi_words & (1 << w) != 0, *word != 0, "SPI word {w}");
            }
            assert_eq!(l.stale & !l.used, 0, "stale list registers are in use");
            let work = (l.stale | l.dirty) != 0 || !found.is_empty();
            assert!(
                l.attention || !work,
                "work for the next fill of vCPU {vcpu} is flagged"
            );
            if let Some(n) = l.refire {
                assert_eq!(l.refire, self.refire_ready(vcpu), "armed only while ready");
                let entry = l.lr[usize::from(n)].unwrap().entry;
                assert_eq!(l.refire_raw, super::lr::lr_encode(self.version, &entry));
            }
            for (n, listed) in l.lr.iter().enumerate() {
                assert_eq!(listed.is_some(), l.used & lr_bit(n) != 0, "LR {n} in use");
                let Some(listed) = listed else { continue };
                let in_lr = self
                    .irq(listed.loc)
                    .lr
                    .expect("a listed interrupt knows it");
                assert_eq!((in_lr.vcpu, usize::from(in_lr.slot)), (vcpu, n));
                let state = LrState::from_bits(in_lr.pending, in_lr.active);
                assert_eq!(state, listed.entry.state, "{:?}", listed.loc);
            }
        }
        let spis = (SPI_BASE..SPI_BASE + self.spis).map(Loc::Spi);
        let all =
            (0..self.vcpus).flat_map(|v| self.locs_of(v).filter(|l| !matches!(l, Loc::Spi(_))));
        for loc in all.chain(spis) {
            if let Some(l) = self.irq(loc).lr {
                let listed = self.cpus[l.vcpu].lists.lr[usize::from(l.slot)];
                assert_eq!(listed.map(|x| x.loc), Some(loc), "where {loc:?} is listed");
            }
        }
    }

    /// Every interrupt's state, with the list register it is in left out (only which vCPU
    /// holds it counts), and what each vCPU's list registers hold, best first: what two
    /// models that differ only in their choice of list registers agree on.
    pub(super) fn observable(&self) -> alloc::string::String {
        let mut out = alloc::string::String::new();
        let spis = (SPI_BASE..SPI_BASE + self.spis).map(Loc::Spi);
        let all =
            (0..self.vcpus).flat_map(|v| self.locs_of(v).filter(|l| !matches!(l, Loc::Spi(_))));
        for loc in all.chain(spis) {
            let mut irq = *self.irq(loc);
            if let Some(l) = &mut irq.lr {
                l.slot = 0;
            }
            out += &alloc::format!("{loc:?} {irq:?}\n");
        }
        for vcpu in 0..self.vcpus {
            let mut held: alloc::vec::Vec<LrEntry> = self.cpus[vcpu]
                .lists
                .lr
                .iter()
                .flatten()
                .map(|x| x.entry)
                .collect();
            held.sort_by_key(|e| (e.intid, e.source));
            out += &alloc::format!("vCPU {vcpu}: {held:?}\n");
        }
        out
    }

    /// Whether list register `n` of `vcpu` is marked to be chosen again.
    pub(super) fn is_stale(&self, vcpu: usize, n: usize) -> bool {
        self.cpus[vcpu].lists.stale & lr_bit(n) != 0
    }

    /// The entry that giving list register `n` of `vcpu` back to the model and listing it
    /// again would write now: what a model that refilled every list register at every exit
    /// would have there.
    pub(super) fn relisted(&self, vcpu: usize, n: usize) -> Option<LrEntry> {
        let listed = self.cpus[vcpu].lists.lr[n]?;
        let mut irq = *self.irq(listed.loc);
        let l = irq.lr.take()?;
        let pending = l.pending && !l.pending_cleared;
        let active = l.active && !l.active_cleared;
        irq.active |= active;
        irq.latch |= pending && l.latched;
        if irq.hw.is_some() && !pending && !active {
            irq.line = false;
        }
        let pending = self.deliverable(&irq) && !(irq.hw.is_some() && irq.active);
        Some(LrEntry {
            state: LrState::from_bits(pending, irq.active),
            priority: irq.priority,
            group1: irq.group1,
            hw_intid: irq.hw,
            eoi_maintenance: pending && !irq.edge && irq.hw.is_none(),
            ..listed.entry
        })
    }

    /// The ranks (`key`) of `vcpu`'s candidates, and of what its list registers hold (ranked
    /// by the entries' states).
    pub(super) fn ranks(&self, vcpu: usize) -> (alloc::vec::Vec<u64>, alloc::vec::Vec<u64>) {
        let mut waiting = alloc::vec::Vec::new();
        self.find_candidate(vcpu, |loc| {
            waiting.push(self.key(loc));
            false
        });
        let listed = self.cpus[vcpu]
            .lists
            .lr
            .iter()
            .flatten()
            .map(|x| {
                let not_active = if x.entry.state.is_active() {
                    0
                } else {
                    KEY_NOT_ACTIVE
                };
                not_active
                    | (u64::from(x.entry.priority) << KEY_PRIORITY_SHIFT)
                    | (u64::from(x.entry.intid) << KEY_INTID_SHIFT)
                    | u64::from(x.entry.source.unwrap_or(0))
            })
            .collect();
        (waiting, listed)
    }
}
