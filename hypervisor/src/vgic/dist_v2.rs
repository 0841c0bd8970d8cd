//! The GICv2 distributor, GICD (Arm IHI 0048B, GIC architecture specification v2.0: §4.1.2
//! register map, §4.3 descriptions), of a GIC without the Security Extensions, seen by up to
//! 8 vCPUs.
//!
//! Owns: GICD_CTLR, GICD_TYPER, GICD_IIDR, GICD_ITARGETSRn and SPI routing by CPU targets,
//! GICD_SGIR, GICD_CPENDSGIRn / GICD_SPENDSGIRn, the identification registers; the
//! per-interrupt arrays go through `bank` (`Frame::DistV2`, banked for interrupts 0..31).
//! Never: emulates the CPU interface (the guest's GICC is the hardware GICV frame), and never
//! refuses an access to a reserved offset (RAZ/WI). The frame is 64 KiB as QEMU describes it;
//! everything past the 4 KiB register block is reserved.
//!
//! Choices the architecture leaves open: SGI enable bits are writable (§4.3.5 allows them to
//! be RAO/WI); GICD_IPRIORITYRn keep all 8 bits while GICH_LRn.Priority keeps the top 5
//! (§5.3.8), so the guest's virtual CPU interface sees 32 levels; an SPI whose CPU targets
//! name several vCPUs goes to the lowest-numbered one.

use super::bank::Frame;
use super::irq::{PRIVATE_COUNT, SGI_COUNT, SPI_BASE};
use super::regs::{check32, check32_or_byte};
use super::{Effects, MmioError, Vgic};

/// §4.3.1 GICD_CTLR: without the Security Extensions, EnableGrp0 (bit 0) and EnableGrp1
/// (bit 1); the rest is reserved.
const GICD_CTLR: u64 = 0x000;
/// §4.3.2 GICD_TYPER.
const GICD_TYPER: u64 = 0x004;
/// §4.3.3 GICD_IIDR.
const GICD_IIDR: u64 = 0x008;
/// §4.3.12 GICD_ITARGETSRn: a byte per interrupt, 0x800..0xBFC.
const GICD_ITARGETSR: u64 = 0x800;
const GICD_ITARGETSR_END: u64 = 0xc00;
/// §4.3.15 GICD_SGIR: write-only.
const GICD_SGIR: u64 = 0xf00;
/// §4.3.16 GICD_CPENDSGIRn and §4.3.17 GICD_SPENDSGIRn: a byte per SGI, a bit per source.
const GICD_CPENDSGIR: u64 = 0xf10;
const GICD_SPENDSGIR: u64 = 0xf20;
const GICD_SPENDSGIR_END: u64 = 0xf30;
/// §4.3.18 identification registers: ICPIDR4..7, ICPIDR0..3, ICCIDR0..3 at 0xFD0..0xFFC.
const ID_BASE: u64 = 0xfd0;
const ID_END: u64 = 0x1000;

/// GICD_TYPER fields (§4.3.2): ITLinesNumber (4:0), CPUNumber (7:5); SecurityExtn (10) and
/// LSPI (15:11) are 0 without the Security Extensions.
const TYPER_ITLINES_MASK: u32 = 0x1f;
const TYPER_CPU_NUMBER_SHIFT: u32 = 5;
/// Interrupts per ITLinesNumber step.
const INTIDS_PER_LINE: u32 = 32;

/// GICD_IIDR (§4.3.3): ProductID 0x02 (31:24), Variant 0 (19:16), Revision 1 (15:12),
/// Implementer 0x43B (Arm, 11:0): an r0p1 GIC-400, the part the ID registers name.
const IIDR: u32 = 0x0200_143b;

/// The identification registers (§4.3.18, and the GIC-400's values, which QEMU's GICv2 also
/// presents), one byte each from 0xFD0: ICPIDR4..7, ICPIDR0..3 (part 0x490, ArchRev 2 in
/// ICPIDR2 bits 7:4, JEP106 Arm), ICCIDR0..3 (the CoreSight preamble 0xB105F00D).
const ID_VALUES: [u32; 12] = [
    0x04, 0x00, 0x00, 0x00, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1,
];

/// GICD_SGIR fields (§4.3.15).
const SGIR_FILTER_SHIFT: u32 = 24;
const SGIR_FILTER_MASK: u32 = 0b11;
/// TargetListFilter: forward to CPUTargetList; to all but the requester; to the requester.
const FILTER_LIST: u32 = 0b00;
const FILTER_OTHERS: u32 = 0b01;
const FILTER_SELF: u32 = 0b10;
const SGIR_TARGETS_SHIFT: u32 = 16;
const SGIR_TARGETS_MASK: u32 = 0xff;
const SGIR_INTID_MASK: u32 = 0xf;

const BYTE_BITS: u32 = 8;
const WORD: u64 = 4;

impl Vgic {
    /// GICD_TYPER: ITLinesNumber = ceil((32 + SPIs) / 32) - 1, CPUNumber = vCPUs - 1.
    fn gicd_typer_v2(&self) -> u32 {
        let lines = (SPI_BASE + self.spis).div_ceil(INTIDS_PER_LINE) - 1;
        (lines & TYPER_ITLINES_MASK) | ((self.vcpus as u32 - 1) << TYPER_CPU_NUMBER_SHIFT)
    }

    /// The CPU targets byte of `intid` as `vcpu` reads it (§4.3.12): for interrupts 0..31 the
    /// reading CPU's own bit; for SPIs the stored mask; 0 for unimplemented interrupts. In a
    /// uniprocessor GIC the registers are RAZ/WI and everything targets the one CPU.
    fn itargets_read(&self, vcpu: usize, intid: u32) -> u8 {
        if self.vcpus == 1 {
            0
        } else if intid < PRIVATE_COUNT {
            1 << vcpu
        } else if self.spi_loc(intid).is_some() {
            self.itargets[(intid - SPI_BASE) as usize]
        } else {
            0
        }
    }

    /// A CPU targets byte written for `intid`: read-only for 0..31 and in a uniprocessor GIC,
    /// bits for vCPUs that do not exist are RAZ/WI. The SPI goes to the lowest-numbered vCPU
    /// of the mask (a 1-of-N choice the architecture leaves to the implementation), or to
    /// nobody if the mask is empty: it then stays pending until it gets a target.
    fn itargets_write(&mut self, intid: u32, mask: u8) -> Effects {
        if self.vcpus == 1 || intid < PRIVATE_COUNT || self.spi_loc(intid).is_none() {
            return Effects::default();
        }
        let mask = mask & self.all_vcpus() as u8;
        self.itargets[(intid - SPI_BASE) as usize] = mask;
        let target = (mask != 0).then_some(mask.trailing_zeros() as usize);
        self.retarget(intid, target)
    }

    /// GICD_SGIR written by `vcpu` (§4.3.15): SGI INTID (3:0) becomes pending, from `vcpu`, on
    /// the CPUs TargetListFilter (25:24) selects: CPUTargetList (23:16), all but `vcpu`, or
    /// `vcpu` itself. Filter 0b11 is reserved: nothing is sent. NSATT (15) means nothing
    /// without the Security Extensions.
    fn write_sgir(&mut self, vcpu: usize, value: u32) -> Effects {
        let intid = value & SGIR_INTID_MASK;
        let targets = match (value >> SGIR_FILTER_SHIFT) & SGIR_FILTER_MASK {
            FILTER_LIST => u64::from((value >> SGIR_TARGETS_SHIFT) & SGIR_TARGETS_MASK),
            FILTER_OTHERS => !(1u64 << vcpu),
            FILTER_SELF => 1 << vcpu,
            _ => 0,
        };
        self.raise_sgi(vcpu, targets & self.all_vcpus(), intid)
    }

    /// The source bits of SGI `intid` pending on `vcpu` (a GICD_SPENDSGIRn/CPENDSGIRn byte).
    fn sgi_pending_sources(&self, vcpu: usize, intid: u32) -> u8 {
        self.sgi_sources(vcpu, intid)
            .enumerate()
            .filter(|&(_, s)| self.irq(s).pending_view())
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// A GICD_SPENDSGIRn (`set`) or GICD_CPENDSGIRn byte written by `vcpu` for SGI `intid`:
    /// each bit sets or clears the pending state from that source, on `vcpu` only (§4.3.16,
    /// §4.3.17). Bits of vCPUs that do not exist are ignored.
    fn write_sgi_pending(&mut self, vcpu: usize, intid: u32, sources: u8, set: bool) -> Effects {
        let mut fx = Effects::default();
        for (i, loc) in self.sgi_sources(vcpu, intid).enumerate() {
            if sources & (1 << i) == 0 {
                continue;
            }
            fx |= if set {
                self.change(loc, |irq| irq.latch = true)
            } else {
                self.change(loc, |irq| irq.clear_pending())
            };
        }
        fx
    }

    /// The bytes `offset..offset + size` of a byte-accessible register at `base` (a word
    /// access covers its four bytes), as (byte index from `base`, bit shift in the value).
    fn bytes(base: u64, offset: u64, size: u8) -> impl Iterator<Item = (u32, u32)> {
        let first = (offset - base) as u32;
        (0..u32::from(size)).map(move |i| (first + i, i * BYTE_BITS))
    }

    pub(super) fn dist_v2_read(
        &self,
        vcpu: usize,
        offset: u64,
        size: u8,
    ) -> Result<u64, MmioError> {
        if let Some(r) = self.bank_read(Frame::DistV2(vcpu), offset, size) {
            return r;
        }
        let reg = offset & !(WORD - 1);
        match offset {
            GICD_ITARGETSR..GICD_ITARGETSR_END => {
                check32_or_byte(offset, reg, size)?;
                return Ok(Self::bytes(GICD_ITARGETSR, offset, size)
                    .fold(0, |v, (intid, shift)| {
                        v | u64::from(self.itargets_read(vcpu, intid)) << shift
                    }));
            }
            GICD_CPENDSGIR..GICD_SPENDSGIR_END => {
                check32_or_byte(offset, reg, size)?;
                let base = if offset < GICD_SPENDSGIR {
                    GICD_CPENDSGIR
                } else {
                    GICD_SPENDSGIR
                };
                return Ok(Self::bytes(base, offset, size).fold(0, |v, (sgi, shift)| {
                    v | u64::from(self.sgi_pending_sources(vcpu, sgi)) << shift
                }));
            }
            _ => {}
        }
        let value = match reg {
            GICD_CTLR => self.ctlr,
            GICD_TYPER => self.gicd_typer_v2(),
            GICD_IIDR => IIDR,
            GICD_SGIR => 0,
            ID_BASE..ID_END => ID_VALUES[((reg - ID_BASE) / WORD) as usize],
            _ => return Ok(0),
        };
        check32(offset, reg, size)?;
        Ok(u64::from(value))
    }

    pub(super) fn dist_v2_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, MmioError> {
        if let Some(r) = self.bank_write(Frame::DistV2(vcpu), offset, size, value) {
            return r;
        }
        let reg = offset & !(WORD - 1);
        let byte = |shift: u32| (value >> shift) as u8;
        let mut fx = Effects::default();
        match offset {
            GICD_ITARGETSR..GICD_ITARGETSR_END => {
                check32_or_byte(offset, reg, size)?;
                for (intid, shift) in Self::bytes(GICD_ITARGETSR, offset, size) {
                    fx |= self.itargets_write(intid, byte(shift));
                }
                return Ok(fx);
            }
            GICD_CPENDSGIR..GICD_SPENDSGIR_END => {
                check32_or_byte(offset, reg, size)?;
                let (base, set) = if offset < GICD_SPENDSGIR {
                    (GICD_CPENDSGIR, false)
                } else {
                    (GICD_SPENDSGIR, true)
                };
                for (sgi, shift) in Self::bytes(base, offset, size) {
                    fx |= self.write_sgi_pending(vcpu, sgi, byte(shift), set);
                }
                return Ok(fx);
            }
            _ => {}
        }
        match reg {
            GICD_CTLR => {
                check32(offset, reg, size)?;
                Ok(self.set_ctlr(value as u32))
            }
            GICD_SGIR => {
                check32(offset, reg, size)?;
                Ok(self.write_sgir(vcpu, value as u32))
            }
            GICD_TYPER | GICD_IIDR | ID_BASE..ID_END => {
                check32(offset, reg, size)?;
                Ok(Effects::default())
            }
            _ => Ok(Effects::default()),
        }
    }
}

// A CPENDSGIR/SPENDSGIR byte per SGI: 4 registers × 4 bytes.
const _: () = assert!((GICD_SPENDSGIR_END - GICD_SPENDSGIR) as u32 == SGI_COUNT);
