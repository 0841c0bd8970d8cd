//! The emulated GIC of one VM, as the pure model the arch glue drives: either a GICv3 (Arm IHI
//! 0069H.b, GIC architecture specification GICv3/v4) with a distributor and one redistributor
//! per vCPU, or a GICv2 (Arm IHI 0048B, GIC architecture specification v2.0) distributor whose
//! CPU interface is the hardware's GICV frame, both at the QEMU `virt` addresses, so an
//! unmodified Linux finds the GIC its device tree describes.
//!
//! Owns: all virtual interrupt state of a VM (distributor, redistributors, per-interrupt
//! enable/group/priority/trigger/pending/active, SPI routing, GICv2 SGI sources) and the choice
//! of which interrupts go into a vCPU's list registers.
//! Never: touches hardware (no ICH_*/ICC_*/GICH_* registers, no physical GIC, no asm), sends
//! IPIs, takes locks (the owner wraps a `Vgic` in one), logs per access, or allocates after
//! `new`.
//!
//! The emulated GICv3 (`VgicVersion::V3`):
//! - one security state (GICD_CTLR.DS = 1, §12.9 GICD_CTLR), affinity routing always on
//!   (ARE is RAO/WI); Group 0 and Group 1 both exist (EnableGrp0/EnableGrp1), Linux uses 1;
//! - `spis` SPIs (INTID 32..32+spis), no LPIs/ITS, no extended SPI/PPI ranges, 10 INTID bits;
//! - GICD_IROUTER<n>: 1-of-N is not supported (GICD_TYPER.No1N = 1, IRM is RAZ/WI) and
//!   Aff3 is RAZ/WI (A3V = 0). An affinity that names no vCPU (vCPU i has Aff0 = i, upper
//!   levels 0) routes to vCPU 0 rather than to nobody;
//! - GICR_WAKER.ProcessorSleep is kept for the handshake but does not gate delivery;
//! - SGIs come from trapped ICC_SGI1R_EL1 writes (`send_sgi`).
//!
//! The emulated GICv2 (`VgicVersion::V2`, see `dist_v2`): a GICv2 distributor without the
//! Security Extensions, up to 8 vCPUs, no redistributors. The registers of interrupts 0..31
//! are "banked for each connected processor" in the distributor itself (IHI 0048B §4.3, e.g.
//! GICD_ISENABLER0, GICD_IPRIORITYR0..7), so an access reaches the accessing vCPU's SGIs and
//! PPIs; SPIs are routed by GICD_ITARGETSR<n>; SGIs come
//! from GICD_SGIR writes (`mmio_write`, §4.3.15 GICD_SGIR) and are pending per (SGI, source
//! vCPU) (§4.3.16 GICD_CPENDSGIRn, §4.3.17 GICD_SPENDSGIRn), each source delivered in its own
//! list register with its CPUID (§5.3.8 GICH_LRn). The CPU interface (GICC, `GICC_BASE`) is
//! the physical GICV frame mapped in stage 2 by the glue, not emulated here.
//!
//! Protocol with the glue: on every exit, `sync_list_registers` with what the list registers
//! in use (`lrs_in_use`) hold; then handle the exit (MMIO, SGI, device lines); on entry,
//! `fill_list_registers`, which says which list registers to write (if `Filled::more`, more
//! interrupts wait than fit: request a no-pending maintenance interrupt). Both cost in
//! proportion to the interrupts in flight and waiting, not to the interrupts that exist
//! (`delivery`). When a hardware-linked interrupt's physical source fires again (the virtual
//! timer), `refire_hw` does what sync, `inject_hw` and fill would, in O(1), if it can.
//! `Effects::kick` names vCPUs whose list registers should be refreshed: they gained a
//! deliverable interrupt, or hold in a list register an interrupt that just changed. It may
//! name the calling vCPU; the glue kicks only vCPUs running on other physical CPUs.

mod bank;
mod delivery;
mod dist;
mod dist_v2;
mod irq;
mod lr;
mod redist;
mod regs;
mod snapshot;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_delivery;
#[cfg(test)]
mod tests_v2;

pub use delivery::Filled;
pub use lr::{
    lr_decode, lr_encode, lr_from_gich, lr_from_ich, lr_to_gich, lr_to_ich, LrEntry, LrState,
};
pub use snapshot::{check_word, Reader, SnapshotError, Writer};

use alloc::vec;
use alloc::vec::Vec;
use delivery::Lists;
use irq::{Irq, PRIVATE_COUNT, SGI_COUNT, SPECIAL_BASE, SPI_BASE};

/// The distributor's 64 KiB frame (QEMU `virt` VIRT_GIC_DIST), for both versions.
pub const GICD_BASE: u64 = 0x0800_0000;
pub const GICD_SIZE: u64 = 0x1_0000;
/// Redistributors (QEMU `virt` VIRT_GIC_REDIST): vCPU i's at GICR_BASE + i × GICR_STRIDE, an
/// RD_base frame then an SGI_base frame (§12.10). GICv3 only.
pub const GICR_BASE: u64 = 0x080A_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Offset of the SGI_base frame inside a redistributor.
pub const GICR_SGI_BASE: u64 = 0x1_0000;
/// GICv2 only: where the guest finds its CPU interface (QEMU `virt` VIRT_GIC_CPU), and its
/// size: 8 KiB, GICC_DIR being at offset 0x1000 (IHI 0048B §4.1.3, Table 4-2). The glue maps the
/// physical GICV frame there; the model never sees these accesses.
pub const GICC_BASE: u64 = 0x0801_0000;
pub const GICC_SIZE: u64 = 0x2000;
/// Most vCPUs a `Vgic` serves: one bit each in `Effects::kick`.
pub const MAX_VCPUS: usize = 64;
/// Most vCPUs of a GICv2: CPU interfaces 0..7 (GICD_TYPER.CPUNumber is 3 bits, CPU targets
/// and SGI source fields are 8 bits wide, IHI 0048B §4.3.2).
pub const MAX_VCPUS_V2: usize = 8;
/// Most SPIs: INTIDs 32..1019 (§2.2.1).
pub const MAX_SPIS: u32 = SPECIAL_BASE - SPI_BASE;
/// Most list registers the model fills (ICH_VTR_EL2.ListRegs is 4 bits: up to 16, §12.4
/// ICH_VTR_EL2; a GICv2 may have up to 64, GICH_VTR.ListRegs, IHI 0048B §5.3.2: the model
/// fills at most 16 of them).
pub const MAX_LRS: usize = 16;

/// Which GIC architecture the VM sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VgicVersion {
    /// GICv2 distributor; the CPU interface is the hardware's GICV frame (GIC-400 hosts).
    V2,
    /// GICv3 distributor and redistributors; the CPU interface is the ICC system registers.
    #[default]
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgicConfig {
    /// 1..=MAX_VCPUS (1..=MAX_VCPUS_V2 for V2).
    pub vcpus: usize,
    /// 0..=MAX_SPIS.
    pub spis: u32,
    pub version: VgicVersion,
}

impl VgicConfig {
    /// A GICv3 with `vcpus` vCPUs and `spis` SPIs.
    pub fn v3(vcpus: usize, spis: u32) -> Self {
        VgicConfig {
            vcpus,
            spis,
            version: VgicVersion::V3,
        }
    }

    /// A GICv2 with `vcpus` vCPUs and `spis` SPIs.
    pub fn v2(vcpus: usize, spis: u32) -> Self {
        VgicConfig {
            vcpus,
            spis,
            version: VgicVersion::V2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// Neither in GICD nor (GICv3) in the redistributor of an existing vCPU.
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
    /// An SGI or PPI of one vCPU. For a GICv2 SGI this holds only its configuration (enable,
    /// group, priority); its pending and active states are per source, in `Sgi`.
    Private { vcpu: usize, intid: u32 },
    /// GICv2: SGI `intid` of `vcpu` sent by vCPU `source` (IHI 0048B §4.3.17: "an SGI is
    /// identified by the combination of SGI number and source processor"). Its configuration
    /// is a copy of the `Private` one, kept in step by every write.
    Sgi { vcpu: usize, intid: u32, source: u8 },
    /// An SPI, by INTID.
    Spi(u32),
}

/// GICD_CTLR.EnableGrp0 and EnableGrp1: GICv3 with DS = 1 (§12.9 GICD_CTLR) and GICv2 without
/// the Security Extensions (IHI 0048B §4.3.1) put them at the same bits.
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;

/// One vCPU's redistributor (GICv3) or banked distributor state (GICv2), and its
/// list-register bookkeeping.
#[cfg_attr(test, derive(Clone))]
struct Cpu {
    private: [Irq; PRIVATE_COUNT as usize],
    /// GICv2: the SGIs by source, index INTID × vCPUs + source. Empty for GICv3.
    sgi: Vec<Irq>,
    /// GICR_WAKER.ProcessorSleep.
    asleep: bool,
    /// Its candidates and list registers (`delivery`).
    lists: Lists,
}

impl Cpu {
    fn new(sources: usize) -> Self {
        let mut cpu = Cpu {
            private: [Irq::default(); PRIVATE_COUNT as usize],
            sgi: vec![Irq::sgi(); SGI_COUNT as usize * sources],
            asleep: true,
            lists: Lists::new(),
        };
        cpu.reset();
        cpu
    }

    fn reset(&mut self) {
        self.private = [Irq::default(); PRIVATE_COUNT as usize];
        for sgi in &mut self.private[..SGI_COUNT as usize] {
            *sgi = Irq::sgi();
        }
        self.sgi.fill(Irq::sgi());
        self.asleep = true;
        self.lists = Lists::new();
    }
}

/// An access decoded to a frame.
enum Region {
    Dist(u64),
    RdBase(usize, u64),
    SgiBase(usize, u64),
}

#[cfg_attr(test, derive(Clone))]
pub struct Vgic {
    version: VgicVersion,
    vcpus: usize,
    spis: u32,
    /// GICD_CTLR's writable bits (the group enables).
    ctlr: u32,
    /// SPI state, index INTID - 32.
    spi: Vec<Irq>,
    /// GICv3: GICD_IROUTER<n> as read back, index INTID - 32. Empty for GICv2.
    irouter: Vec<u64>,
    /// GICv2: GICD_ITARGETSR<n>'s CPU targets field as read back, index INTID - 32. Empty for
    /// GICv3.
    itargets: Vec<u8>,
    /// The vCPU each SPI is delivered to (None: a GICv2 SPI with no target), index INTID - 32.
    target: Vec<Option<usize>>,
    cpus: Vec<Cpu>,
}

impl Vgic {
    /// # Panics
    /// If `cfg.vcpus` is not in 1..=MAX_VCPUS (1..=MAX_VCPUS_V2 for a GICv2) or `cfg.spis`
    /// exceeds MAX_SPIS.
    pub fn new(cfg: VgicConfig) -> Self {
        let max_vcpus = match cfg.version {
            VgicVersion::V2 => MAX_VCPUS_V2,
            VgicVersion::V3 => MAX_VCPUS,
        };
        assert!(
            (1..=max_vcpus).contains(&cfg.vcpus),
            "vGIC: {} vCPUs",
            cfg.vcpus
        );
        assert!(cfg.spis <= MAX_SPIS, "vGIC: {} SPIs", cfg.spis);
        let spis = cfg.spis as usize;
        let v2 = cfg.version == VgicVersion::V2;
        let sources = if v2 { cfg.vcpus } else { 0 };
        let mut vgic = Vgic {
            version: cfg.version,
            vcpus: cfg.vcpus,
            spis: cfg.spis,
            ctlr: 0,
            spi: vec![Irq::default(); spis],
            irouter: vec![0; if v2 { 0 } else { spis }],
            itargets: vec![0; if v2 { spis } else { 0 }],
            target: vec![None; spis],
            cpus: (0..cfg.vcpus).map(|_| Cpu::new(sources)).collect(),
        };
        vgic.reset();
        vgic
    }

    /// Back to the state `new` gave, in place (without allocating).
    pub fn reset(&mut self) {
        self.ctlr = 0;
        self.spi.fill(Irq::default());
        self.irouter.fill(0);
        self.itargets.fill(0);
        // GICv3: IROUTER 0 names vCPU 0. GICv2: CPU targets 0 names nobody, except in a
        // uniprocessor GIC where every interrupt targets the one CPU (IHI 0048B §4.3.12).
        let initial = match self.version {
            VgicVersion::V2 if self.vcpus > 1 => None,
            _ => Some(0),
        };
        self.target.fill(initial);
        for cpu in &mut self.cpus {
            cpu.reset();
        }
    }

    pub fn version(&self) -> VgicVersion {
        self.version
    }

    pub fn vcpus(&self) -> usize {
        self.vcpus
    }

    pub fn spis(&self) -> u32 {
        self.spis
    }

    pub fn config(&self) -> VgicConfig {
        VgicConfig {
            vcpus: self.vcpus,
            spis: self.spis,
            version: self.version,
        }
    }

    /// Whether `ipa` is in the distributor or in the redistributor of one of `vcpus` vCPUs of
    /// a GICv3 (see `contains_for`).
    pub fn contains(ipa: u64, vcpus: usize) -> bool {
        Self::contains_for(VgicVersion::V3, ipa, vcpus)
    }

    /// Whether `ipa` is emulated by a `version` vGIC with `vcpus` vCPUs: the distributor, and
    /// for a GICv3 the redistributors. (A GICv2's GICC frame is mapped, not emulated.)
    pub fn contains_for(version: VgicVersion, ipa: u64, vcpus: usize) -> bool {
        region(version, ipa, vcpus).is_some()
    }

    /// An MMIO read by vCPU `vcpu` at `ipa` of `size` bytes, zero-extended. Registers refuse
    /// sizes the architecture does not allow (§12.1; IHI 0048B §4.3 "usage constraints");
    /// reserved offsets read as zero whatever the size. GICv2 banked registers are those of
    /// `vcpu`, which must exist.
    pub fn mmio_read(&mut self, vcpu: usize, ipa: u64, size: u8) -> Result<u64, MmioError> {
        let value = match region(self.version, ipa, self.vcpus).ok_or(MmioError::Unmapped)? {
            Region::Dist(off) => match self.version {
                VgicVersion::V2 => self.dist_v2_read(self.accessor(vcpu)?, off, size),
                VgicVersion::V3 => self.dist_read(off, size),
            },
            Region::RdBase(v, off) => self.rd_read(v, off, size),
            Region::SgiBase(v, off) => self.sgi_read(v, off, size),
        }?;
        Ok(regs::truncate(value, size))
    }

    /// An MMIO write by vCPU `vcpu`; `value` is cut to `size` bytes. Reserved offsets ignore
    /// writes. For a GICv2, GICD_SGIR writes send SGIs from `vcpu`.
    pub fn mmio_write(
        &mut self,
        vcpu: usize,
        ipa: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, MmioError> {
        let value = regs::truncate(value, size);
        match region(self.version, ipa, self.vcpus).ok_or(MmioError::Unmapped)? {
            Region::Dist(off) => match self.version {
                VgicVersion::V2 => self.dist_v2_write(self.accessor(vcpu)?, off, size, value),
                VgicVersion::V3 => self.dist_write(off, size, value),
            },
            Region::RdBase(v, off) => self.rd_write(v, off, size, value),
            Region::SgiBase(v, off) => self.sgi_write(v, off, size, value),
        }
    }

    /// A peripheral drives an interrupt line. `intid` is a PPI (16..31) of vCPU `vcpu` or an SPI
    /// (routed by GICD_IROUTER<n> / GICD_ITARGETSR<n>; `vcpu` ignored). Level-sensitive
    /// interrupts are pending while the line is asserted; for edge-triggered ones every
    /// `level = true` is one edge and latches pending. Anything else (SGIs, unimplemented
    /// INTIDs) is ignored.
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
            // Through `change`: a listed entry must be rewritten with the new link.
            let _ = self.change(loc, |irq| irq.hw = pintid);
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
    /// in whichever group the target configured (§12.2.20). This is the GICv3 path; a GICv2
    /// guest sends SGIs through GICD_SGIR (`mmio_write`), but a call here on a GICv2 model
    /// works too, recording `source`.
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
            targets = self.all_vcpus() & !(1 << source);
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
        self.raise_sgi(source, targets, intid)
    }

    // ---- internals ----

    fn is_v2(&self) -> bool {
        self.version == VgicVersion::V2
    }

    /// `vcpu` as the accessor of a banked register: it must exist.
    fn accessor(&self, vcpu: usize) -> Result<usize, MmioError> {
        if vcpu < self.vcpus {
            Ok(vcpu)
        } else {
            Err(MmioError::Unmapped)
        }
    }

    /// Every vCPU, as a mask.
    fn all_vcpus(&self) -> u64 {
        u64::MAX >> (64 - self.vcpus)
    }

    /// Every interrupt that targets `vcpu`: its SGIs (for GICv2, one per source) and PPIs,
    /// then the SPIs routed to it. (The tests' brute-force reference for `delivery`.)
    #[cfg(test)]
    fn locs_of(&self, vcpu: usize) -> impl Iterator<Item = Loc> + '_ {
        let (first_private, sources) = if self.is_v2() {
            (SGI_COUNT, self.vcpus as u8)
        } else {
            (0, 0)
        };
        let private = (first_private..PRIVATE_COUNT).map(move |intid| Loc::Private { vcpu, intid });
        let sgis = (0..SGI_COUNT).flat_map(move |intid| {
            (0..sources).map(move |source| Loc::Sgi {
                vcpu,
                intid,
                source,
            })
        });
        let spis = self
            .target
            .iter()
            .enumerate()
            .filter(move |(_, &t)| t == Some(vcpu))
            .map(|(i, _)| Loc::Spi(SPI_BASE + i as u32));
        private.chain(sgis).chain(spis)
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

    /// GICv2: the per-source states of SGI `intid` of `vcpu`.
    fn sgi_sources(&self, vcpu: usize, intid: u32) -> impl Iterator<Item = Loc> {
        let sources = if self.is_v2() { self.vcpus as u8 } else { 0 };
        (0..sources).map(move |source| Loc::Sgi {
            vcpu,
            intid,
            source,
        })
    }

    /// SGI `intid` from `source` becomes pending on every vCPU in the mask `targets`.
    fn raise_sgi(&mut self, source: usize, targets: u64, intid: u32) -> Effects {
        let mut fx = Effects::default();
        if source >= self.vcpus || intid >= SGI_COUNT {
            return fx;
        }
        for vcpu in (0..self.vcpus).filter(|&v| targets & (1 << v) != 0) {
            let loc = if self.is_v2() {
                Loc::Sgi {
                    vcpu,
                    intid,
                    source: source as u8,
                }
            } else {
                Loc::Private { vcpu, intid }
            };
            fx |= self.change(loc, |irq| irq.latch = true);
        }
        fx
    }

    fn irq(&self, loc: Loc) -> &Irq {
        match loc {
            Loc::Private { vcpu, intid } => &self.cpus[vcpu].private[intid as usize],
            Loc::Sgi {
                vcpu,
                intid,
                source,
            } => &self.cpus[vcpu].sgi[intid as usize * self.vcpus + source as usize],
            Loc::Spi(intid) => &self.spi[(intid - SPI_BASE) as usize],
        }
    }

    fn irq_mut(&mut self, loc: Loc) -> &mut Irq {
        match loc {
            Loc::Private { vcpu, intid } => &mut self.cpus[vcpu].private[intid as usize],
            Loc::Sgi {
                vcpu,
                intid,
                source,
            } => &mut self.cpus[vcpu].sgi[intid as usize * self.vcpus + source as usize],
            Loc::Spi(intid) => &mut self.spi[(intid - SPI_BASE) as usize],
        }
    }

    fn target(&self, loc: Loc) -> Option<usize> {
        match loc {
            Loc::Private { vcpu, .. } | Loc::Sgi { vcpu, .. } => Some(vcpu),
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

    /// Applies `f` to one interrupt, keeps its candidate bit in step, marks its list
    /// register (if it is in one) for rewriting, and says whom to kick: its target if it
    /// became deliverable, and the vCPU holding it in a list register if anything changed.
    /// Every change to an interrupt's state goes through here (or through `delivery`).
    fn change(&mut self, loc: Loc, f: impl FnOnce(&mut Irq)) -> Effects {
        let before = *self.irq(loc);
        f(self.irq_mut(loc));
        let after = *self.irq(loc);
        let mut fx = Effects::default();
        if after == before {
            return fx;
        }
        self.refresh(loc);
        if self.deliverable(&after) && !self.deliverable(&before) {
            if let Some(t) = self.target(loc) {
                fx.add(t);
            }
        }
        if let Some(l) = before.lr {
            fx.add(l.vcpu);
            self.mark_stale(l);
        }
        fx
    }

    /// SPI `intid` is now delivered to `new`: kicks the new target if it has something to
    /// take, and the vCPU holding it in a list register.
    fn retarget(&mut self, intid: u32, new: Option<usize>) -> Effects {
        let i = (intid - SPI_BASE) as usize;
        let mut fx = Effects::default();
        let old = self.target[i];
        if new == old {
            return fx;
        }
        if let Some(o) = old {
            self.drop_spi_candidate(o, intid);
        }
        self.target[i] = new;
        self.refresh(Loc::Spi(intid));
        let irq = self.spi[i];
        if let Some(t) = new {
            if irq.lr.is_none() && self.deliverable(&irq) {
                fx.add(t);
            }
        }
        if let Some(l) = irq.lr {
            // Listed by its old target, which gives it back at its next sync.
            fx.add(l.vcpu);
            self.mark_stale(l);
        }
        fx
    }

    /// The vCPUs with `has_pending`, as a mask.
    fn pending_mask(&self) -> u64 {
        (0..self.vcpus)
            .filter(|&v| self.has_pending(v))
            .fold(0, |m, v| m | (1 << v))
    }

    /// GICD_CTLR write: the group enables. Kicks vCPUs that now have an interrupt to take.
    fn set_ctlr(&mut self, value: u32) -> Effects {
        let ctlr = value & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1);
        if ctlr == self.ctlr {
            return Effects::default();
        }
        let before = self.pending_mask();
        self.ctlr = ctlr;
        // What is deliverable changed everywhere, in list registers too. Rare (boot).
        self.rebuild_candidates();
        self.mark_all_stale();
        Effects {
            kick: self.pending_mask() & !before,
        }
    }
}

fn intid_of(loc: Loc) -> u32 {
    match loc {
        Loc::Private { intid, .. } | Loc::Sgi { intid, .. } | Loc::Spi(intid) => intid,
    }
}

fn source_of(loc: Loc) -> Option<u8> {
    match loc {
        Loc::Sgi { source, .. } => Some(source),
        _ => None,
    }
}

fn region(version: VgicVersion, ipa: u64, vcpus: usize) -> Option<Region> {
    if (GICD_BASE..GICD_BASE + GICD_SIZE).contains(&ipa) {
        return Some(Region::Dist(ipa - GICD_BASE));
    }
    if version == VgicVersion::V2 {
        return None;
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
