//! The emulated GICv3 of one VM (Arm IHI 0069H.b, GIC architecture specification GICv3/v4), as
//! the pure model the arch glue drives: a distributor and one redistributor per vCPU at the
//! QEMU `virt` addresses, so an unmodified Linux finds the GIC its device tree describes.
//!
//! Owns: all virtual interrupt state of a VM (distributor, redistributors, per-interrupt
//! enable/group/priority/trigger/pending/active, SPI routing) and the choice of which
//! interrupts go into a vCPU's list registers.
//! Never: touches hardware (no ICH_*/ICC_* registers, no physical GIC, no asm), sends IPIs,
//! takes locks (the owner wraps a `Vgic` in one), logs per access, or allocates after `new`.
//!
//! The emulated GIC:
//! - one security state (GICD_CTLR.DS = 1, §12.9 GICD_CTLR), affinity routing always on
//!   (ARE is RAO/WI); Group 0 and Group 1 both exist (EnableGrp0/EnableGrp1), Linux uses 1;
//! - `spis` SPIs (INTID 32..32+spis), no LPIs/ITS, no extended SPI/PPI ranges, 10 INTID bits;
//! - GICD_IROUTER<n>: 1-of-N is not supported (GICD_TYPER.No1N = 1, IRM is RAZ/WI) and
//!   Aff3 is RAZ/WI (A3V = 0). An affinity that names no vCPU (vCPU i has Aff0 = i, upper
//!   levels 0) routes to vCPU 0 rather than to nobody;
//! - GICR_WAKER.ProcessorSleep is kept for the handshake but does not gate delivery.
//!
//! Protocol with the glue: on every exit, `sync_list_registers` with what the list registers
//! hold; then handle the exit (MMIO, SGI, device lines); on entry, `fill_list_registers` and
//! write the result (if `has_pending` is still true, more interrupts wait than fit: request an
//! underflow / no-pending maintenance interrupt). `Effects::kick` names vCPUs whose list
//! registers should be refreshed: they gained a deliverable interrupt, or hold in a list
//! register an interrupt that just changed. It may name the calling vCPU; the glue kicks only
//! vCPUs running on other physical CPUs.

mod bank;
mod dist;
mod irq;
mod lr;
mod redist;
mod regs;
#[cfg(test)]
mod tests;

pub use lr::{lr_from_ich, lr_to_ich, LrEntry, LrState};

use alloc::vec;
use alloc::vec::Vec;
use irq::{InLr, Irq, PRIVATE_COUNT, SGI_COUNT, SPECIAL_BASE, SPI_BASE};

/// The distributor's 64 KiB frame (QEMU `virt` VIRT_GIC_DIST).
pub const GICD_BASE: u64 = 0x0800_0000;
pub const GICD_SIZE: u64 = 0x1_0000;
/// Redistributors (QEMU `virt` VIRT_GIC_REDIST): vCPU i's at GICR_BASE + i × GICR_STRIDE, an
/// RD_base frame then an SGI_base frame (§12.10).
pub const GICR_BASE: u64 = 0x080A_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Offset of the SGI_base frame inside a redistributor.
pub const GICR_SGI_BASE: u64 = 0x1_0000;
/// Most vCPUs a `Vgic` serves: one bit each in `Effects::kick`.
pub const MAX_VCPUS: usize = 64;
/// Most SPIs: INTIDs 32..1019 (§2.2.1).
pub const MAX_SPIS: u32 = SPECIAL_BASE - SPI_BASE;
/// Most list registers (ICH_VTR_EL2.ListRegs is 4 bits: up to 16, §12.4 ICH_VTR_EL2).
pub const MAX_LRS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgicConfig {
    /// 1..=MAX_VCPUS.
    pub vcpus: usize,
    /// 0..=MAX_SPIS.
    pub spis: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// Neither in GICD nor in the redistributor of an existing vCPU.
    Unmapped,
    /// A size or alignment the register does not accept.
    BadAccessSize,
}

/// Which vCPUs should have their list registers refreshed (see the module comment), a bit
/// per vCPU index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    pub kick: u64,
}

impl Effects {
    fn add(&mut self, vcpu: usize) {
        self.kick |= 1 << vcpu;
    }
}

impl core::ops::BitOr for Effects {
    type Output = Effects;
    fn bitor(self, rhs: Effects) -> Effects {
        Effects {
            kick: self.kick | rhs.kick,
        }
    }
}

impl core::ops::BitOrAssign for Effects {
    fn bitor_assign(&mut self, rhs: Effects) {
        self.kick |= rhs.kick;
    }
}

/// Where an interrupt's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// An SGI or PPI of one vCPU.
    Private { vcpu: usize, intid: u32 },
    /// An SPI, by INTID.
    Spi(u32),
}

/// GICD_CTLR.EnableGrp0 and EnableGrp1 with DS = 1 (§12.9 GICD_CTLR).
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;

/// One vCPU's redistributor and list-register bookkeeping.
struct Cpu {
    private: [Irq; PRIVATE_COUNT as usize],
    /// GICR_WAKER.ProcessorSleep.
    asleep: bool,
    /// INTIDs handed to this vCPU's list registers and not yet synced back.
    in_lr: heapless::Vec<u32, MAX_LRS>,
}

impl Cpu {
    fn new() -> Self {
        let mut private = [Irq::default(); PRIVATE_COUNT as usize];
        for sgi in &mut private[..SGI_COUNT as usize] {
            *sgi = Irq::sgi();
        }
        Cpu {
            private,
            asleep: true,
            in_lr: heapless::Vec::new(),
        }
    }
}

/// An access decoded to a frame.
enum Region {
    Dist(u64),
    RdBase(usize, u64),
    SgiBase(usize, u64),
}

pub struct Vgic {
    vcpus: usize,
    spis: u32,
    /// GICD_CTLR's writable bits (the group enables).
    ctlr: u32,
    /// SPI state, index INTID - 32.
    spi: Vec<Irq>,
    /// GICD_IROUTER<n> as read back, and the vCPU it resolves to, index INTID - 32.
    irouter: Vec<u64>,
    target: Vec<usize>,
    cpus: Vec<Cpu>,
}

impl Vgic {
    /// # Panics
    /// If `cfg.vcpus` is not in 1..=MAX_VCPUS or `cfg.spis` exceeds MAX_SPIS.
    pub fn new(cfg: VgicConfig) -> Self {
        assert!(
            (1..=MAX_VCPUS).contains(&cfg.vcpus),
            "vGIC: {} vCPUs",
            cfg.vcpus
        );
        assert!(cfg.spis <= MAX_SPIS, "vGIC: {} SPIs", cfg.spis);
        let spis = cfg.spis as usize;
        Vgic {
            vcpus: cfg.vcpus,
            spis: cfg.spis,
            ctlr: 0,
            spi: vec![Irq::default(); spis],
            irouter: vec![0; spis],
            target: vec![0; spis],
            cpus: (0..cfg.vcpus).map(|_| Cpu::new()).collect(),
        }
    }

    pub fn vcpus(&self) -> usize {
        self.vcpus
    }

    pub fn spis(&self) -> u32 {
        self.spis
    }

    /// Whether `ipa` is in the distributor or in the redistributor of one of `vcpus` vCPUs.
    pub fn contains(ipa: u64, vcpus: usize) -> bool {
        region(ipa, vcpus).is_some()
    }

    /// An MMIO read by vCPU `_vcpu` at `ipa` of `size` bytes, zero-extended. Registers refuse
    /// sizes the architecture does not allow (§12.1); reserved offsets read as zero whatever
    /// the size.
    pub fn mmio_read(&mut self, _vcpu: usize, ipa: u64, size: u8) -> Result<u64, MmioError> {
        let value = match region(ipa, self.vcpus).ok_or(MmioError::Unmapped)? {
            Region::Dist(off) => self.dist_read(off, size),
            Region::RdBase(v, off) => self.rd_read(v, off, size),
            Region::SgiBase(v, off) => self.sgi_read(v, off, size),
        }?;
        Ok(regs::truncate(value, size))
    }

    /// An MMIO write; `value` is cut to `size` bytes. Reserved offsets ignore writes.
    pub fn mmio_write(
        &mut self,
        _vcpu: usize,
        ipa: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, MmioError> {
        let value = regs::truncate(value, size);
        match region(ipa, self.vcpus).ok_or(MmioError::Unmapped)? {
            Region::Dist(off) => self.dist_write(off, size, value),
            Region::RdBase(v, off) => self.rd_write(v, off, size, value),
            Region::SgiBase(v, off) => self.sgi_write(v, off, size, value),
        }
    }

    /// A peripheral drives an interrupt line. `intid` is a PPI (16..31) of vCPU `vcpu` or an SPI
    /// (routed by GICD_IROUTER<n>; `vcpu` ignored). Level-sensitive interrupts are pending
    /// while the line is asserted; for edge-triggered ones every `level = true` is one edge
    /// and latches pending. Anything else (SGIs, unimplemented INTIDs) is ignored.
    pub fn set_level(&mut self, vcpu: usize, intid: u32, level: bool) -> Effects {
        match self.line_loc(vcpu, intid) {
            Some(loc) => self.change(loc, |irq| irq.set_line(level)),
            None => Effects::default(),
        }
    }

    /// Links virtual PPI/SPI `intid` (as for `set_level`) to physical INTID `pintid`, or
    /// unlinks it: its list register entries then carry HW = 1 and pINTID, so the guest's
    /// deactivation deactivates the physical interrupt (the virtual timer). When the guest
    /// has deactivated it (list register Invalid), its line is taken as deasserted: the
    /// physical GIC signals again if the source still is.
    pub fn link_hw(&mut self, vcpu: usize, intid: u32, pintid: Option<u32>) {
        if let Some(loc) = self.line_loc(vcpu, intid) {
            self.irq_mut(loc).hw = pintid;
        }
    }

    /// The physical interrupt `pintid` behind virtual PPI/SPI `intid` fired (the virtual
    /// timer): links them (`link_hw`) and asserts the line. The physical interrupt stays
    /// active, hence silent, until the guest's deactivation of `intid` deactivates it.
    pub fn inject_hw(&mut self, vcpu: usize, intid: u32, pintid: u32) -> Effects {
        self.link_hw(vcpu, intid, Some(pintid));
        self.set_level(vcpu, intid, true)
    }

    /// A write by vCPU `source` to ICC_SGI1R_EL1 (§12.2.20 ICC_SGI1R_EL1): SGI INTID (27:24)
    /// becomes pending on every vCPU named by TargetList (15:0) with Aff0 = RS (47:44) × 16 +
    /// bit, Aff1 (23:16), Aff2 (39:32), Aff3 (55:48); or, with IRM (40), on every vCPU but
    /// `source`. Named vCPUs that do not exist are ignored. With DS = 1 this generates the SGI
    /// in whichever group the target configured (§12.2.20).
    pub fn send_sgi(&mut self, source: usize, sgi1r: u64) -> Effects {
        const TARGET_LIST_MASK: u64 = 0xffff;
        const TARGETS_PER_RANGE: usize = 16;
        const AFF1_SHIFT: u32 = 16;
        const AFF2_SHIFT: u32 = 32;
        const AFF3_SHIFT: u32 = 48;
        const AFF_MASK: u64 = 0xff;
        const INTID_SHIFT: u32 = 24;
        const INTID_MASK: u64 = 0xf;
        const IRM: u64 = 1 << 40;
        const RS_SHIFT: u32 = 44;
        const RS_MASK: u64 = 0xf;

        let intid = ((sgi1r >> INTID_SHIFT) & INTID_MASK) as u32;
        let mut targets: u64 = 0;
        if sgi1r & IRM != 0 {
            for v in (0..self.vcpus).filter(|&v| v != source) {
                targets |= 1 << v;
            }
        } else {
            let upper = [AFF1_SHIFT, AFF2_SHIFT, AFF3_SHIFT]
                .iter()
                .any(|&s| (sgi1r >> s) & AFF_MASK != 0);
            let base = ((sgi1r >> RS_SHIFT) & RS_MASK) as usize * TARGETS_PER_RANGE;
            let list = sgi1r & TARGET_LIST_MASK;
            for bit in (0..TARGETS_PER_RANGE).filter(|&b| !upper && list & (1 << b) != 0) {
                if base + bit < self.vcpus {
                    targets |= 1 << (base + bit);
                }
            }
        }
        let mut fx = Effects::default();
        for vcpu in (0..self.vcpus).filter(|&v| targets & (1 << v) != 0) {
            fx |= self.change(Loc::Private { vcpu, intid }, |irq| irq.latch = true);
        }
        fx
    }

    /// What `vcpu`'s list registers should hold on entry: up to `max` (at most 16) interrupts
    /// targeting it that are active, or pending and enabled with their group enabled in
    /// GICD_CTLR. Active ones come first (the guest can only deactivate an interrupt that is
    /// in a list register), then by priority (lower value first), then by lower INTID. The
    /// states returned move out of the model into the list registers until
    /// `sync_list_registers`; a hardware-linked interrupt is never written pending and active
    /// (its pending state stays in the physical GIC). Call it once per `sync_list_registers`.
    pub fn fill_list_registers(
        &mut self,
        vcpu: usize,
        max: usize,
    ) -> heapless::Vec<LrEntry, MAX_LRS> {
        let mut out = heapless::Vec::new();
        let Some(cpu) = self.cpus.get(vcpu) else {
            return out;
        };
        let max = max.min(MAX_LRS - cpu.in_lr.len());
        // Candidates as (not active, priority, INTID), best first.
        let mut best: heapless::Vec<(bool, u8, u32), MAX_LRS> = heapless::Vec::new();
        for loc in self.locs_of(vcpu) {
            let irq = self.irq(loc);
            if irq.lr.is_some() || !(irq.active || self.deliverable(irq)) {
                continue;
            }
            let key = (!irq.active, irq.priority, intid_of(loc));
            let at = best.iter().position(|k| key < *k).unwrap_or(best.len());
            if at >= max {
                continue;
            }
            if best.len() == max {
                best.pop();
            }
            // Cannot fail: there is room after the pop.
            let _ = best.insert(at, key);
        }
        for &(_, _, intid) in &best {
            let loc = self.loc(vcpu, intid);
            let irq = *self.irq(loc);
            let deliverable = self.deliverable(&irq);
            let pending = deliverable && !(irq.hw.is_some() && irq.active);
            let entry = LrEntry {
                intid,
                priority: irq.priority,
                group1: irq.group1,
                state: LrState::from_bits(pending, irq.active),
                hw_intid: irq.hw,
                eoi_maintenance: pending && !irq.edge && irq.hw.is_none(),
            };
            let irq = self.irq_mut(loc);
            irq.lr = Some(InLr {
                vcpu,
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
            // Cannot fail: `max` left room for each.
            let _ = out.push(entry);
            let _ = self.cpus[vcpu].in_lr.push(intid);
        }
        out
    }

    /// After an exit: the list registers of `vcpu` as the hardware left them. Every interrupt
    /// `fill_list_registers` gave this vCPU comes back into the model: Invalid (or not listed)
    /// = the guest acknowledged and deactivated it; still pending = pending again; active =
    /// active. A level-sensitive interrupt whose line is still asserted is pending again.
    /// Entries for INTIDs not given to this vCPU are ignored.
    pub fn sync_list_registers(&mut self, vcpu: usize, lrs: &[LrEntry]) {
        let Some(cpu) = self.cpus.get_mut(vcpu) else {
            return;
        };
        let given = core::mem::take(&mut cpu.in_lr);
        for intid in given {
            let state = lrs
                .iter()
                .filter(|e| e.intid == intid && e.state != LrState::Invalid)
                .map(|e| e.state)
                .next()
                .unwrap_or(LrState::Invalid);
            let irq = self.irq_mut(self.loc(vcpu, intid));
            let Some(l) = irq.lr.take() else { continue };
            let pending = state.is_pending() && !l.pending_cleared;
            let active = state.is_active() && !l.active_cleared;
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
    }

    /// Whether `vcpu` has an interrupt it could take that is not in a list register: pending,
    /// enabled, its group enabled. Meaningful after `sync_list_registers` (to wake a vCPU in
    /// WFI) or after `fill_list_registers` (more candidates than list registers).
    pub fn has_pending(&self, vcpu: usize) -> bool {
        vcpu < self.vcpus
            && self.locs_of(vcpu).any(|loc| {
                let irq = self.irq(loc);
                irq.lr.is_none() && self.deliverable(irq)
            })
    }

    // ---- internals ----

    /// Every interrupt that targets `vcpu`: its SGIs and PPIs, then the SPIs routed to it.
    fn locs_of(&self, vcpu: usize) -> impl Iterator<Item = Loc> + '_ {
        let private = (0..PRIVATE_COUNT).map(move |intid| Loc::Private { vcpu, intid });
        let spis = self
            .target
            .iter()
            .enumerate()
            .filter(move |(_, &t)| t == vcpu)
            .map(|(i, _)| Loc::Spi(SPI_BASE + i as u32));
        private.chain(spis)
    }

    /// `intid` as seen by `vcpu` (which must exist; `intid` must be implemented).
    fn loc(&self, vcpu: usize, intid: u32) -> Loc {
        if intid < PRIVATE_COUNT {
            Loc::Private { vcpu, intid }
        } else {
            Loc::Spi(intid)
        }
    }

    fn spi_loc(&self, intid: u32) -> Option<Loc> {
        (SPI_BASE..SPI_BASE + self.spis)
            .contains(&intid)
            .then_some(Loc::Spi(intid))
    }

    /// A PPI of an existing `vcpu`, or an SPI.
    fn line_loc(&self, vcpu: usize, intid: u32) -> Option<Loc> {
        if (SGI_COUNT..PRIVATE_COUNT).contains(&intid) {
            (vcpu < self.vcpus).then_some(Loc::Private { vcpu, intid })
        } else {
            self.spi_loc(intid)
        }
    }

    fn irq(&self, loc: Loc) -> &Irq {
        match loc {
            Loc::Private { vcpu, intid } => &self.cpus[vcpu].private[intid as usize],
            Loc::Spi(intid) => &self.spi[(intid - SPI_BASE) as usize],
        }
    }

    fn irq_mut(&mut self, loc: Loc) -> &mut Irq {
        match loc {
            Loc::Private { vcpu, intid } => &mut self.cpus[vcpu].private[intid as usize],
            Loc::Spi(intid) => &mut self.spi[(intid - SPI_BASE) as usize],
        }
    }

    fn target(&self, loc: Loc) -> usize {
        match loc {
            Loc::Private { vcpu, .. } => vcpu,
            Loc::Spi(intid) => self.target[(intid - SPI_BASE) as usize],
        }
    }

    fn group_enabled(&self, group1: bool) -> bool {
        let bit = if group1 {
            CTLR_ENABLE_GRP1
        } else {
            CTLR_ENABLE_GRP0
        };
        self.ctlr & bit != 0
    }

    /// Pending (outside list registers), enabled, and its group enabled.
    fn deliverable(&self, irq: &Irq) -> bool {
        irq.pending() && irq.enabled && self.group_enabled(irq.group1)
    }

    /// Applies `f` to one interrupt and says whom to kick: its target if it became
    /// deliverable, and the vCPU holding it in a list register if anything changed.
    fn change(&mut self, loc: Loc, f: impl FnOnce(&mut Irq)) -> Effects {
        let before = *self.irq(loc);
        f(self.irq_mut(loc));
        let after = *self.irq(loc);
        let mut fx = Effects::default();
        if after == before {
            return fx;
        }
        if self.deliverable(&after) && !self.deliverable(&before) {
            fx.add(self.target(loc));
        }
        if let Some(l) = before.lr {
            fx.add(l.vcpu);
        }
        fx
    }

    /// The vCPUs with `has_pending`, as a mask.
    fn pending_mask(&self) -> u64 {
        (0..self.vcpus)
            .filter(|&v| self.has_pending(v))
            .fold(0, |m, v| m | (1 << v))
    }
}

fn intid_of(loc: Loc) -> u32 {
    match loc {
        Loc::Private { intid, .. } | Loc::Spi(intid) => intid,
    }
}

fn region(ipa: u64, vcpus: usize) -> Option<Region> {
    if (GICD_BASE..GICD_BASE + GICD_SIZE).contains(&ipa) {
        return Some(Region::Dist(ipa - GICD_BASE));
    }
    let rel = ipa.checked_sub(GICR_BASE)?;
    let vcpu = usize::try_from(rel / GICR_STRIDE)
        .ok()
        .filter(|&v| v < vcpus)?;
    let off = rel % GICR_STRIDE;
    Some(if off < GICR_SGI_BASE {
        Region::RdBase(vcpu, off)
    } else {
        Region::SgiBase(vcpu, off - GICR_SGI_BASE)
    })
}
