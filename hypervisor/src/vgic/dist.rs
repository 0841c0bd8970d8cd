//! The GICv3 distributor frame, GICD (Arm IHI 0069H.b §12.8 register map, §12.9 descriptions).
//! The GICv2 distributor is `dist_v2`.
//!
//! Owns: GICD_CTLR, GICD_TYPER/TYPER2/IIDR/STATUSR, GICD_SGIR, GICD_IROUTER<n> and SPI
//! routing, the ID registers; the per-interrupt arrays go through `bank`.
//! Never: holds SGI/PPI state (with affinity routing those live in the redistributors; their
//! bits here are RAZ/WI), and never refuses an access to a reserved offset (RAZ/WI).

use super::bank::Frame;
use super::irq::{SPECIAL_BASE, SPI_BASE};
use super::regs::{
    self, check32, check64, read64, write64, Part, ID_BASE, ID_END, IIDR, PART_DIST,
};
use super::{Effects, MmioError, Vgic};

/// §12.9 GICD_CTLR.
const GICD_CTLR: u64 = 0x0000;
/// §12.9 GICD_TYPER.
const GICD_TYPER: u64 = 0x0004;
/// §12.9 GICD_IIDR.
const GICD_IIDR: u64 = 0x0008;
/// §12.9 GICD_TYPER2 (GICv4.1 vPE/vSGI fields): reads 0.
const GICD_TYPER2: u64 = 0x000c;
/// §12.9 GICD_STATUSR: optional error reporting, RAZ/WI here.
const GICD_STATUSR: u64 = 0x0010;
/// §12.9 GICD_SGIR: only without affinity routing, so RAZ/WI (write-only, reads 0).
const GICD_SGIR: u64 = 0x0f00;
/// §12.9 GICD_IROUTER<n>, n = 32..1019, at 0x6000 + 8n (0x6000..0x6100 is reserved).
const GICD_IROUTER: u64 = 0x6000;
const IROUTER_SIZE: u64 = 8;

/// GICD_CTLR with DS = 1: ARE (bit 4) RAO/WI, DS (bit 6) RAO/WI, E1NWF (bit 7) RAZ/WI, RWP
/// (bit 31) reads 0 since every write takes effect at once.
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;

/// GICD_TYPER fields.
const TYPER_ITLINES_MASK: u32 = 0x1f;
/// IDbits (23:19) = 0b1001: 10 INTID bits.
const TYPER_IDBITS: u32 = 0b1001 << 19;
/// No1N (bit 25): 1-of-N SPI distribution not supported.
const TYPER_NO1N: u32 = 1 << 25;
/// RSS (bit 26): targeted SGIs to Aff0 0..255 (ICC_SGI1R_EL1.RS) supported.
const TYPER_RSS: u32 = 1 << 26;
/// Interrupts per ITLinesNumber step.
const INTIDS_PER_LINE: u32 = 32;
// Left 0: CPUNumber (7:5, meaningless with ARE), ESPI (8), NMI (9), SecurityExtn (10, one
// security state), num_LPIs (15:11), MBIS (16), LPIS (17), DVIS (18), A3V (24), ESPI_range.

/// GICD_IROUTER<n> fields: Aff0 (7:0), Aff1 (15:8), Aff2 (23:16) kept; IRM (31) and Aff3
/// (39:32) RAZ/WI (No1N = 1, A3V = 0).
const IROUTER_AFF0_MASK: u64 = 0xff;
const IROUTER_WRITABLE: u64 = 0x00ff_ffff;

impl Vgic {
    fn gicd_ctlr(&self) -> u32 {
        self.ctlr | CTLR_ARE | CTLR_DS
    }

    /// GICD_TYPER: ITLinesNumber = ceil((32 + SPIs) / 32) - 1.
    fn gicd_typer(&self) -> u32 {
        let lines = (SPI_BASE + self.spis).div_ceil(INTIDS_PER_LINE) - 1;
        (lines & TYPER_ITLINES_MASK) | TYPER_IDBITS | TYPER_NO1N | TYPER_RSS
    }

    /// The vCPU an IROUTER value names: Aff0 = vCPU index with Aff1 = Aff2 = 0; vCPU 0 if it
    /// names none.
    pub(super) fn route(&self, irouter: u64) -> usize {
        let aff0 = (irouter & IROUTER_AFF0_MASK) as usize;
        if irouter & IROUTER_WRITABLE & !IROUTER_AFF0_MASK == 0 && aff0 < self.vcpus {
            aff0
        } else {
            0
        }
    }

    /// The SPI whose IROUTER register holds `offset`, with the register's offset, if implemented.
    fn irouter_spi(&self, offset: u64) -> Option<(u32, u64)> {
        let reg = offset & !(IROUTER_SIZE - 1);
        let intid = u32::try_from((reg - GICD_IROUTER) / IROUTER_SIZE).ok()?;
        self.spi_loc(intid).map(|_| (intid, reg))
    }

    fn is_irouter(offset: u64) -> bool {
        let first = GICD_IROUTER + u64::from(SPI_BASE) * IROUTER_SIZE;
        let end = GICD_IROUTER + u64::from(SPECIAL_BASE) * IROUTER_SIZE;
        (first..end).contains(&offset)
    }

    pub(super) fn dist_read(&self, offset: u64, size: u8) -> Result<u64, MmioError> {
        if let Some(r) = self.bank_read(Frame::Dist, offset, size) {
            return r;
        }
        if Self::is_irouter(offset) {
            let Some((intid, reg)) = self.irouter_spi(offset) else {
                check64(offset, offset & !(IROUTER_SIZE - 1), size)?;
                return Ok(0);
            };
            let part = check64(offset, reg, size)?;
            return Ok(read64(self.irouter[(intid - SPI_BASE) as usize], part));
        }
        let reg = offset & !3;
        let value = match reg {
            GICD_CTLR => self.gicd_ctlr(),
            GICD_TYPER => self.gicd_typer(),
            GICD_IIDR => IIDR,
            GICD_TYPER2 | GICD_STATUSR | GICD_SGIR => 0,
            ID_BASE..ID_END => regs::id_register(reg, PART_DIST),
            _ => return Ok(0),
        };
        check32(offset, reg, size)?;
        Ok(u64::from(value))
    }

    pub(super) fn dist_write(
        &mut self,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, MmioError> {
        if let Some(r) = self.bank_write(Frame::Dist, offset, size, value) {
            return r;
        }
        if Self::is_irouter(offset) {
            let Some((intid, reg)) = self.irouter_spi(offset) else {
                check64(offset, offset & !(IROUTER_SIZE - 1), size)?;
                return Ok(Effects::default());
            };
            let part = check64(offset, reg, size)?;
            return Ok(self.set_irouter(intid, part, value));
        }
        let reg = offset & !3;
        match reg {
            GICD_CTLR => {
                check32(offset, reg, size)?;
                Ok(self.set_ctlr(value as u32))
            }
            GICD_TYPER | GICD_IIDR | GICD_TYPER2 | GICD_STATUSR | GICD_SGIR | ID_BASE..ID_END => {
                check32(offset, reg, size)?;
                Ok(Effects::default())
            }
            _ => Ok(Effects::default()),
        }
    }

    /// GICD_IROUTER<intid> write (or half of it).
    fn set_irouter(&mut self, intid: u32, part: Part, value: u64) -> Effects {
        let i = (intid - SPI_BASE) as usize;
        self.irouter[i] = write64(self.irouter[i], part, value) & IROUTER_WRITABLE;
        let target = self.route(self.irouter[i]);
        self.retarget(intid, Some(target))
    }
}
