//! Register-access rules shared by the distributor and the redistributors: permitted access
//! sizes (Arm IHI 0069H.b §12.1, "GIC memory-mapped register access": 32-bit registers take
//! word accesses, 64-bit registers take doubleword or word accesses to either half, and only
//! the priority registers also take byte accesses; all naturally aligned) and the
//! identification registers (§12.1, "Identification registers"; §12.9 GICD_PIDR2, §12.11
//! GICR_PIDR2).
//!
//! Owns: access-size validation and the ID register values.
//! Never: interrupt state.

use super::MmioError;

/// Which part of a 64-bit register an access touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    Low,
    High,
}

const WORD: u8 = 4;
const DOUBLEWORD: u8 = 8;
const BYTE: u8 = 1;
const WORD_BITS: u32 = 32;
const WORD_MASK: u64 = 0xffff_ffff;

/// A 32-bit register at `offset`, register base `base`.
pub fn check32(offset: u64, base: u64, size: u8) -> Result<(), MmioError> {
    if size == WORD && offset == base {
        Ok(())
    } else {
        Err(MmioError::BadAccessSize)
    }
}

/// A byte-accessible 32-bit register (IPRIORITYR).
pub fn check32_or_byte(offset: u64, base: u64, size: u8) -> Result<(), MmioError> {
    if size == BYTE || (size == WORD && offset == base) {
        Ok(())
    } else {
        Err(MmioError::BadAccessSize)
    }
}

/// A 64-bit register at `base`.
pub fn check64(offset: u64, base: u64, size: u8) -> Result<Part, MmioError> {
    match (size, offset - base) {
        (DOUBLEWORD, 0) => Ok(Part::Whole),
        (WORD, 0) => Ok(Part::Low),
        (WORD, 4) => Ok(Part::High),
        _ => Err(MmioError::BadAccessSize),
    }
}

/// What a read of `part` of a 64-bit register holding `reg` returns.
pub fn read64(reg: u64, part: Part) -> u64 {
    match part {
        Part::Whole => reg,
        Part::Low => reg & WORD_MASK,
        Part::High => reg >> WORD_BITS,
    }
}

/// `reg` after a write of `value` to `part`.
pub fn write64(reg: u64, part: Part, value: u64) -> u64 {
    match part {
        Part::Whole => value,
        Part::Low => (reg & !WORD_MASK) | (value & WORD_MASK),
        Part::High => (reg & WORD_MASK) | ((value & WORD_MASK) << WORD_BITS),
    }
}

/// `value` cut to an access of `size` bytes.
pub fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1..=7 => value & ((1u64 << (u32::from(size) * 8)) - 1),
        _ => value,
    }
}

/// IIDR (§12.9 GICD_IIDR, §12.11 GICR_IIDR): Implementer 0x43B (Arm's JEP106 code: bank 5,
/// so continuation count 4 in bits 11:8, identity 0x3B in bits 6:0), Revision 0, Variant 0,
/// ProductID 0. That is the value QEMU's emulated GICv3 presents (an r0p0 GIC-500), so Linux
/// sees the GIC it already runs on under QEMU and applies no implementation quirk.
pub const IIDR: u32 = 0x0000_043b;

/// Identification register block at 0xFFD0..0x10000 of GICD and of each RD_base frame.
pub const ID_BASE: u64 = 0xffd0;
pub const ID_END: u64 = 0x1_0000;
const PIDR4: u64 = 0xffd0;
const PIDR0: u64 = 0xffe0;
const PIDR1: u64 = 0xffe4;
const PIDR2: u64 = 0xffe8;
const PIDR3: u64 = 0xffec;
const CIDR0: u64 = 0xfff0;
const CIDR1: u64 = 0xfff4;
const CIDR2: u64 = 0xfff8;
const CIDR3: u64 = 0xfffc;
/// PIDR2.ArchRev, bits 7:4: 0x3 = GICv3.
const PIDR2_ARCHREV_GICV3: u32 = 0x3 << 4;
/// PIDR2.JEDEC (bit 3) and DES_1 (bits 2:0, JEP106 identity bits 6:4 of 0x3B).
const PIDR2_JEDEC_DES1: u32 = 0b1011;
/// PIDR1: DES_0 (JEP106 identity bits 3:0, bits 7:4) and PART_1 (part number bits 11:8).
const PIDR1_VALUE: u32 = 0xb4;
/// PIDR4: SIZE (bits 7:4, 64 KiB frames) and DES_2 (JEP106 continuation count 4).
const PIDR4_VALUE: u32 = 0x44;
/// PIDR0 = part number bits 7:0: 0x92 distributor, 0x93 redistributor (GIC-500 style, as QEMU).
pub const PART_DIST: u32 = 0x92;
pub const PART_REDIST: u32 = 0x93;
/// CIDR0..3: the CoreSight component preamble 0xB105_F00D, one byte per register.
const CIDR: [u32; 4] = [0x0d, 0xf0, 0x05, 0xb1];

/// The identification register at `offset` (in `ID_BASE..ID_END`) of a frame whose PIDR0 is
/// `part`. PIDR5..7 and anything unaligned inside the block read as zero.
pub fn id_register(offset: u64, part: u32) -> u32 {
    match offset {
        PIDR4 => PIDR4_VALUE,
        PIDR0 => part,
        PIDR1 => PIDR1_VALUE,
        PIDR2 => PIDR2_ARCHREV_GICV3 | PIDR2_JEDEC_DES1,
        PIDR3 => 0,
        CIDR0 => CIDR[0],
        CIDR1 => CIDR[1],
        CIDR2 => CIDR[2],
        CIDR3 => CIDR[3],
        _ => 0,
    }
}
