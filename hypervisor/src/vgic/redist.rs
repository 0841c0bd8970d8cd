//! The redistributor frames of each vCPU, GICR (Arm IHI 0069H.b §12.10 register map, §12.11
//! descriptions): RD_base (control, identification, power) and SGI_base (the SGI/PPI arrays,
//! through `bank`).
//!
//! Owns: GICR_CTLR, GICR_IIDR, GICR_TYPER, GICR_STATUSR, GICR_WAKER, GICR_PROPBASER,
//! GICR_PENDBASER and the ID registers of each vCPU.
//! Never: implements LPIs (GICD_TYPER.LPIS = 0: EnableLPIs and the LPI tables are RAZ/WI), and
//! never refuses an access to a reserved offset (RAZ/WI).

use super::bank::Frame;
use super::regs::{self, check32, check64, read64, Part, ID_BASE, ID_END, IIDR, PART_REDIST};
use super::{Effects, MmioError, Vgic};

/// §12.11 GICR_CTLR: EnableLPIs (0) stays 0, RWP (3) and UWP (31) read 0, DPG* are RES0
/// (GICR_TYPER.DPGS = 0): RAZ/WI.
const GICR_CTLR: u64 = 0x0000;
/// §12.11 GICR_IIDR.
const GICR_IIDR: u64 = 0x0004;
/// §12.11 GICR_TYPER, 64-bit.
const GICR_TYPER: u64 = 0x0008;
/// §12.11 GICR_STATUSR: optional error reporting, RAZ/WI.
const GICR_STATUSR: u64 = 0x0010;
/// §12.11 GICR_WAKER.
const GICR_WAKER: u64 = 0x0014;
/// §12.11 GICR_PROPBASER and GICR_PENDBASER, 64-bit: RAZ/WI without LPIs.
const GICR_PROPBASER: u64 = 0x0070;
const GICR_PENDBASER: u64 = 0x0078;

/// GICR_TYPER.Processor_Number, bits 23:8.
const TYPER_PROCESSOR_NUMBER_SHIFT: u32 = 8;
/// GICR_TYPER.Last, bit 4: the last redistributor of the region.
const TYPER_LAST: u64 = 1 << 4;
/// GICR_TYPER.Affinity_Value, bits 63:32 (Aff3.Aff2.Aff1.Aff0): Aff0 = vCPU index.
const TYPER_AFFINITY_SHIFT: u32 = 32;
// Left 0: PLPIS (0), VLPIS (1), Dirty (2), DirectLPI (3), DPGS (5), MPAM (6), RVPEID (7),
// CommonLPIAff (25:24), VSGI (26), PPInum (31:27, 16 PPIs).

/// GICR_WAKER.ProcessorSleep (bit 1, RW) and ChildrenAsleep (bit 2, RO). Bits 0 and 31 are
/// IMPLEMENTATION DEFINED: RAZ/WI here. ChildrenAsleep follows ProcessorSleep at once.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

impl Vgic {
    fn gicr_typer(&self, vcpu: usize) -> u64 {
        let last = if vcpu + 1 == self.vcpus {
            TYPER_LAST
        } else {
            0
        };
        ((vcpu as u64) << TYPER_AFFINITY_SHIFT)
            | ((vcpu as u64) << TYPER_PROCESSOR_NUMBER_SHIFT)
            | last
    }

    fn gicr_waker(&self, vcpu: usize) -> u32 {
        if self.cpus[vcpu].asleep {
            WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
        } else {
            0
        }
    }

    /// A 64-bit register of RD_base holding `offset`, with its offset.
    fn rd_reg64(offset: u64) -> Option<u64> {
        let reg = offset & !7;
        matches!(reg, GICR_TYPER | GICR_PROPBASER | GICR_PENDBASER).then_some(reg)
    }

    pub(super) fn rd_read(&self, vcpu: usize, offset: u64, size: u8) -> Result<u64, MmioError> {
        if let Some(reg) = Self::rd_reg64(offset) {
            let part = check64(offset, reg, size)?;
            let value = if reg == GICR_TYPER {
                self.gicr_typer(vcpu)
            } else {
                0
            };
            return Ok(read64(value, part));
        }
        let reg = offset & !3;
        let value = match reg {
            GICR_CTLR | GICR_STATUSR => 0,
            GICR_IIDR => IIDR,
            GICR_WAKER => self.gicr_waker(vcpu),
            ID_BASE..ID_END => regs::id_register(reg, PART_REDIST),
            _ => return Ok(0),
        };
        check32(offset, reg, size)?;
        Ok(u64::from(value))
    }

    pub(super) fn rd_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, MmioError> {
        if let Some(reg) = Self::rd_reg64(offset) {
            check64(offset, reg, size).map(|_: Part| ())?;
            return Ok(Effects::default());
        }
        let reg = offset & !3;
        match reg {
            GICR_WAKER => {
                check32(offset, reg, size)?;
                self.cpus[vcpu].asleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
            }
            GICR_CTLR | GICR_IIDR | GICR_STATUSR | ID_BASE..ID_END => check32(offset, reg, size)?,
            _ => {}
        }
        Ok(Effects::default())
    }

    pub(super) fn sgi_read(&self, vcpu: usize, offset: u64, size: u8) -> Result<u64, MmioError> {
        self.bank_read(Frame::Redist(vcpu), offset, size)
            .unwrap_or(Ok(0))
    }

    pub(super) fn sgi_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, MmioError> {
        self.bank_write(Frame::Redist(vcpu), offset, size, value)
            .unwrap_or(Ok(Effects::default()))
    }
}
