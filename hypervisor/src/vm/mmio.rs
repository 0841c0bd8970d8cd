//! Decoding a guest's trapped memory access (a stage-2 data abort on an emulated device) from
//! its syndrome, and completing it.
//!
//! Owns: the meaning of the data abort ISS (Arm ARM D19.2.42, ESR_ELx "ISS encoding for an
//! exception from a Data Abort"). Never guesses: an abort without a valid syndrome (ISV = 0,
//! e.g. a load pair or a post-indexed access with writeback) cannot be emulated and is refused.

/// ISS.ISV: the syndrome describes the access.
const ISV: u64 = 1 << 24;
/// ISS.SAS: access size, log2 bytes.
const SAS_SHIFT: u64 = 22;
const SAS_MASK: u64 = 0b11;
/// ISS.SSE: a load that sign-extends.
const SSE: u64 = 1 << 21;
/// ISS.SRT: the transfer register.
const SRT_SHIFT: u64 = 16;
const SRT_MASK: u64 = 0x1f;
/// ISS.SF: the transfer register is 64 bits wide (else 32, zero-extended into X).
const SF: u64 = 1 << 15;
/// ISS.WnR: the access is a write.
const WNR: u64 = 1 << 6;
/// ISS.S1PTW: the fault happened on the guest's own stage-1 table walk.
const S1PTW: u64 = 1 << 7;

/// The register number that reads as zero and ignores writes.
pub const XZR: u8 = 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioAccess {
    pub ipa: u64,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    pub write: bool,
    /// The transfer register, `XZR` for xzr/wzr.
    pub reg: u8,
    sign_extend: bool,
    sixty_four: bool,
}

/// Why an abort cannot be emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioDecodeError {
    /// ISV = 0: the instruction is not described by the syndrome.
    NoSyndrome,
    /// The guest's own page-table walk touched a device: nothing sensible to emulate.
    TableWalk,
}

/// Decodes the ISS of a data abort at `ipa`.
pub fn decode_data_abort(esr: u64, ipa: u64) -> Result<MmioAccess, MmioDecodeError> {
    if esr & S1PTW != 0 {
        return Err(MmioDecodeError::TableWalk);
    }
    if esr & ISV == 0 {
        return Err(MmioDecodeError::NoSyndrome);
    }
    Ok(MmioAccess {
        ipa,
        size: 1 << ((esr >> SAS_SHIFT) & SAS_MASK),
        write: esr & WNR != 0,
        reg: ((esr >> SRT_SHIFT) & SRT_MASK) as u8,
        sign_extend: esr & SSE != 0,
        sixty_four: esr & SF != 0,
    })
}

impl MmioAccess {
    /// The value a write stores: the low `size` bytes of the transfer register.
    pub fn write_value(&self, regs: &[u64; 31]) -> u64 {
        let v = if self.reg == XZR {
            0
        } else {
            regs[self.reg as usize]
        };
        v & self.mask()
    }

    /// Completes a read: the loaded `value` (low `size` bytes significant), extended as the
    /// instruction demands, goes to the transfer register.
    pub fn complete_read(&self, regs: &mut [u64; 31], value: u64) {
        if self.reg == XZR {
            return;
        }
        let bits = self.size as u32 * 8;
        let mut v = value & self.mask();
        if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            v = (((v << shift) as i64) >> shift) as u64;
        }
        if !self.sixty_four {
            v &= 0xffff_ffff;
        }
        regs[self.reg as usize] = v;
    }

    fn mask(&self) -> u64 {
        if self.size >= 8 {
            u64::MAX
        } else {
            (1u64 << (self.size as u32 * 8)) - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ESR for a data abort from a lower EL with the given ISS fields.
    fn esr(size_log2: u64, write: bool, reg: u64, sse: bool, sf: bool) -> u64 {
        (0x24 << 26)
            | ISV
            | (size_log2 << SAS_SHIFT)
            | if sse { SSE } else { 0 }
            | (reg << SRT_SHIFT)
            | if sf { SF } else { 0 }
            | if write { WNR } else { 0 }
    }

    #[test]
    fn decodes_a_32_bit_store() {
        let a = decode_data_abort(esr(2, true, 5, false, false), 0x0900_0000).unwrap();
        assert_eq!((a.size, a.write, a.reg, a.ipa), (4, true, 5, 0x0900_0000));
        let mut regs = [0u64; 31];
        regs[5] = 0xdead_beef_1234_5678;
        assert_eq!(a.write_value(&regs), 0x1234_5678);
    }

    #[test]
    fn stores_of_xzr_write_zero() {
        let a = decode_data_abort(esr(3, true, 31, false, true), 0).unwrap();
        assert_eq!(a.write_value(&[7; 31]), 0);
    }

    #[test]
    fn loads_zero_or_sign_extend_as_the_instruction_says() {
        let mut regs = [u64::MAX; 31];
        // ldrb w3: zero-extended into a 32-bit register
        decode_data_abort(esr(0, false, 3, false, false), 0)
            .unwrap()
            .complete_read(&mut regs, 0x1ff);
        assert_eq!(regs[3], 0xff);
        // ldrsh x4: sign-extended to 64 bits
        decode_data_abort(esr(1, false, 4, true, true), 0)
            .unwrap()
            .complete_read(&mut regs, 0x8001);
        assert_eq!(regs[4], 0xffff_ffff_ffff_8001);
        // ldrsb w6: sign-extended to 32 bits, upper half zero
        decode_data_abort(esr(0, false, 6, true, false), 0)
            .unwrap()
            .complete_read(&mut regs, 0x80);
        assert_eq!(regs[6], 0xffff_ff80);
        // ldr x7
        decode_data_abort(esr(3, false, 7, false, true), 0)
            .unwrap()
            .complete_read(&mut regs, u64::MAX - 1);
        assert_eq!(regs[7], u64::MAX - 1);
    }

    #[test]
    fn loads_into_xzr_are_discarded() {
        let mut regs = [1u64; 31];
        decode_data_abort(esr(2, false, 31, false, false), 0)
            .unwrap()
            .complete_read(&mut regs, 9);
        assert_eq!(regs, [1u64; 31]);
    }

    #[test]
    fn refuses_aborts_without_syndrome_or_on_table_walks() {
        assert_eq!(
            decode_data_abort(esr(2, false, 1, false, false) & !ISV, 0),
            Err(MmioDecodeError::NoSyndrome)
        );
        assert_eq!(
            decode_data_abort(esr(2, false, 1, false, false) | S1PTW, 0),
            Err(MmioDecodeError::TableWalk)
        );
    }
}
