//! The per-interrupt register arrays, which the distributor (for SPIs, §12.9) and each
//! redistributor's SGI_base frame (for SGIs and PPIs, §12.11) lay out identically (Arm IHI
//! 0069H.b §12.8 and §12.10, register maps): IGROUPR, ISENABLER/ICENABLER, ISPENDR/ICPENDR,
//! ISACTIVER/ICACTIVER, IPRIORITYR, ICFGR, IGRPMODR and NSACR.
//!
//! The GICv2 distributor has the same arrays at the same offsets (Arm IHI 0048B §4.1.2, Table
//! 4-1), with interrupts 0..31 banked per CPU interface in it (§4.3.4..§4.3.13); 0xD00 is
//! IMPLEMENTATION DEFINED there and GICD_NSACRn exist only with the Security Extensions, so
//! both are RAZ/WI as in the GICv3 DS = 1 case.
//!
//! Owns: decoding an offset into (register, first INTID) and applying the access field by
//! field, including the fan-out of a GICv2 SGI's bits to its per-source states. Bits whose
//! INTID the frame does not hold (SGIs/PPIs in the GICv3 distributor, which are RAZ/WI with
//! affinity routing; unimplemented SPIs) are RAZ/WI.
//! Never: decides what an interrupt state change means for delivery (`Vgic::change` does).

use super::irq::{Irq, PRIVATE_COUNT, SGI_COUNT};
use super::regs::{check32, check32_or_byte};
use super::{Effects, Loc, MmioError, Vgic};

/// A frame holding a bank of per-interrupt registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// GICv3 GICD: SPIs.
    Dist,
    /// SGI_base of vCPU `n`'s redistributor: its SGIs and PPIs.
    Redist(usize),
    /// GICv2 GICD as accessed by vCPU `n`: its SGIs and PPIs (banked), and the SPIs.
    DistV2(usize),
}

/// The registers of the bank, each described under its GICD_ name in §12.9 and its GICR_ name
/// in §12.11.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// §12.9 GICD_IGROUPR<n>, §12.11 GICR_IGROUPR0.
    Group,
    /// GICD_ISENABLER<n> / GICR_ISENABLER0.
    SetEnable,
    /// GICD_ICENABLER<n> / GICR_ICENABLER0.
    ClearEnable,
    /// GICD_ISPENDR<n> / GICR_ISPENDR0.
    SetPending,
    /// GICD_ICPENDR<n> / GICR_ICPENDR0.
    ClearPending,
    /// GICD_ISACTIVER<n> / GICR_ISACTIVER0.
    SetActive,
    /// GICD_ICACTIVER<n> / GICR_ICACTIVER0.
    ClearActive,
    /// GICD_IPRIORITYR<n> / GICR_IPRIORITYR<n>: byte-accessible.
    Priority,
    /// GICD_ICFGR<n> / GICR_ICFGR0 (SGIs: read-only, edge) and GICR_ICFGR1.
    Config,
    /// GICD_IGRPMODR<n> / GICR_IGRPMODR0: RAZ/WI when GICD_CTLR.DS = 1.
    GroupModifier,
    /// GICD_NSACR<n> / GICR_NSACR: RAZ/WI when GICD_CTLR.DS = 1.
    NsAccess,
}

struct Array {
    kind: Kind,
    base: u64,
    /// Bits per interrupt.
    width: u32,
    /// Bytes in the distributor (1024 INTIDs) and in SGI_base (32 INTIDs; NSACR: 16 SGIs).
    dist_len: u64,
    redist_len: u64,
}

const BIT: u32 = 1;
const BYTE: u32 = 8;
const PAIR: u32 = 2;

const fn array(kind: Kind, base: u64, width: u32, redist_ints: u64) -> Array {
    Array {
        kind,
        base,
        width,
        dist_len: 1024 * width as u64 / 8,
        redist_len: redist_ints * width as u64 / 8,
    }
}

const PRIVATE_INTS: u64 = 32;
const SGI_INTS: u64 = 16;

const ARRAYS: [Array; 11] = [
    array(Kind::Group, 0x0080, BIT, PRIVATE_INTS),
    array(Kind::SetEnable, 0x0100, BIT, PRIVATE_INTS),
    array(Kind::ClearEnable, 0x0180, BIT, PRIVATE_INTS),
    array(Kind::SetPending, 0x0200, BIT, PRIVATE_INTS),
    array(Kind::ClearPending, 0x0280, BIT, PRIVATE_INTS),
    array(Kind::SetActive, 0x0300, BIT, PRIVATE_INTS),
    array(Kind::ClearActive, 0x0380, BIT, PRIVATE_INTS),
    array(Kind::Priority, 0x0400, BYTE, PRIVATE_INTS),
    array(Kind::Config, 0x0c00, PAIR, PRIVATE_INTS),
    array(Kind::GroupModifier, 0x0d00, BIT, PRIVATE_INTS),
    array(Kind::NsAccess, 0x0e00, PAIR, SGI_INTS),
];

/// ICFGR Int_config bit 1 (the upper bit of each 2-bit field): 1 = edge-triggered.
const CONFIG_EDGE: u32 = 0b10;
const BITS_PER_BYTE: u32 = 8;
const WORD_BITS: u32 = 32;

/// The array register at `offset` in `frame`, with the INTID of its field 0 and the field width.
fn decode(frame: Frame, offset: u64) -> Option<(&'static Array, u64, u32)> {
    ARRAYS.iter().find_map(|a| {
        let len = match frame {
            Frame::Dist | Frame::DistV2(_) => a.dist_len,
            Frame::Redist(_) => a.redist_len,
        };
        let rel = offset.checked_sub(a.base).filter(|&r| r < len)?;
        let reg = rel & !3;
        let first = (reg * u64::from(BITS_PER_BYTE) / u64::from(a.width)) as u32;
        Some((a, a.base + reg, first))
    })
}

fn check(a: &Array, offset: u64, reg: u64, size: u8) -> Result<(), MmioError> {
    if a.kind == Kind::Priority {
        check32_or_byte(offset, reg, size)
    } else {
        check32(offset, reg, size)
    }
}

impl Vgic {
    /// The interrupt `intid` as seen through `frame`, if that frame holds it.
    fn bank_loc(&self, frame: Frame, intid: u32) -> Option<Loc> {
        match frame {
            Frame::Dist => self.spi_loc(intid),
            Frame::Redist(vcpu) => (intid < PRIVATE_COUNT).then_some(Loc::Private { vcpu, intid }),
            Frame::DistV2(vcpu) if intid < PRIVATE_COUNT => Some(Loc::Private { vcpu, intid }),
            Frame::DistV2(_) => self.spi_loc(intid),
        }
    }

    /// A GICv2 SGI's configuration `loc`, as (vCPU, INTID): its pending and active states are
    /// per source.
    fn v2_sgi(&self, loc: Loc) -> Option<(usize, u32)> {
        match loc {
            Loc::Private { vcpu, intid } if self.is_v2() && intid < SGI_COUNT => {
                Some((vcpu, intid))
            }
            _ => None,
        }
    }

    /// One field as read: a GICv2 SGI is pending / active if it is from any source.
    fn field_of(&self, kind: Kind, loc: Loc) -> u32 {
        let Some((vcpu, intid)) = self.v2_sgi(loc) else {
            return read_field(kind, self.irq(loc), loc);
        };
        let view: fn(&Irq) -> bool = match kind {
            Kind::SetPending | Kind::ClearPending => Irq::pending_view,
            Kind::SetActive | Kind::ClearActive => Irq::active_view,
            _ => return read_field(kind, self.irq(loc), loc),
        };
        u32::from(self.sgi_sources(vcpu, intid).any(|s| view(self.irq(s))))
    }

    /// Applies a field write to one interrupt. For a GICv2 SGI: GICD_ISPENDR0/ICPENDR0 bits
    /// are read-only (IHI 0048B §4.3.7, §4.3.8: GICD_SPENDSGIRn / CPENDSGIRn set and clear
    /// an SGI's pending state, per source); ICACTIVER clears every source's active state and
    /// ISACTIVER sets it as if the accessing vCPU had sent it; the configuration goes to every
    /// source's copy.
    fn apply(&mut self, kind: Kind, loc: Loc, f: impl Fn(&mut Irq) + Copy) -> Effects {
        let Some((vcpu, intid)) = self.v2_sgi(loc) else {
            return self.change(loc, f);
        };
        let mut fx = Effects::default();
        match kind {
            Kind::SetPending | Kind::ClearPending => {}
            Kind::SetActive => {
                let source = vcpu as u8;
                fx |= self.change(
                    Loc::Sgi {
                        vcpu,
                        intid,
                        source,
                    },
                    f,
                );
            }
            Kind::ClearActive => {
                for s in self.sgi_sources(vcpu, intid) {
                    fx |= self.change(s, f);
                }
            }
            _ => {
                fx |= self.change(loc, f);
                for s in self.sgi_sources(vcpu, intid) {
                    fx |= self.change(s, f);
                }
            }
        }
        fx
    }

    /// A read of a per-interrupt register, or `None` if `offset` is not one.
    pub(super) fn bank_read(
        &self,
        frame: Frame,
        offset: u64,
        size: u8,
    ) -> Option<Result<u64, MmioError>> {
        let (a, reg, first) = decode(frame, offset)?;
        if let Err(e) = check(a, offset, reg, size) {
            return Some(Err(e));
        }
        // A byte access to IPRIORITYR reads the one field at `offset`.
        let (first, fields) = if size == 1 {
            (first + (offset - reg) as u32, 1)
        } else {
            (first, WORD_BITS / a.width)
        };
        let mut value = 0u64;
        for i in 0..fields {
            let Some(loc) = self.bank_loc(frame, first + i) else {
                continue;
            };
            let field = self.field_of(a.kind, loc);
            value |= u64::from(field) << (i * a.width);
        }
        Some(Ok(value))
    }

    /// A write to a per-interrupt register, or `None` if `offset` is not one.
    pub(super) fn bank_write(
        &mut self,
        frame: Frame,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Option<Result<Effects, MmioError>> {
        let (a, reg, first) = decode(frame, offset)?;
        if let Err(e) = check(a, offset, reg, size) {
            return Some(Err(e));
        }
        let (first, fields) = if size == 1 {
            (first + (offset - reg) as u32, 1)
        } else {
            (first, WORD_BITS / a.width)
        };
        let field_mask = (1u64 << a.width) - 1;
        let mut fx = Effects::default();
        for i in 0..fields {
            let Some(loc) = self.bank_loc(frame, first + i) else {
                continue;
            };
            let field = ((value >> (i * a.width)) & field_mask) as u32;
            if let Some(f) = write_field(a.kind, field, loc) {
                fx |= self.apply(a.kind, loc, f);
            }
        }
        Some(Ok(fx))
    }
}

fn is_sgi(loc: Loc) -> bool {
    matches!(loc, Loc::Private { intid, .. } if intid < SGI_COUNT) || matches!(loc, Loc::Sgi { .. })
}

fn read_field(kind: Kind, irq: &Irq, loc: Loc) -> u32 {
    match kind {
        Kind::Group => u32::from(irq.group1),
        Kind::SetEnable | Kind::ClearEnable => u32::from(irq.enabled),
        Kind::SetPending | Kind::ClearPending => u32::from(irq.pending_view()),
        Kind::SetActive | Kind::ClearActive => u32::from(irq.active_view()),
        Kind::Priority => u32::from(irq.priority),
        Kind::Config if irq.edge || is_sgi(loc) => CONFIG_EDGE,
        Kind::Config | Kind::GroupModifier | Kind::NsAccess => 0,
    }
}

/// The change a write of `field` makes to one interrupt, if any.
fn write_field(kind: Kind, field: u32, loc: Loc) -> Option<impl Fn(&mut Irq) + Copy> {
    let set = field != 0;
    let op: fn(&mut Irq, u32) = match kind {
        Kind::Group => |irq, f| irq.group1 = f != 0,
        Kind::SetEnable if set => |irq, _| irq.enabled = true,
        Kind::ClearEnable if set => |irq, _| irq.enabled = false,
        Kind::SetPending if set => |irq, _| irq.latch = true,
        Kind::ClearPending if set => |irq, _| irq.clear_pending(),
        Kind::SetActive if set => |irq, _| irq.active = true,
        Kind::ClearActive if set => |irq, _| irq.clear_active(),
        Kind::Priority => |irq, f| irq.priority = f as u8,
        Kind::Config if !is_sgi(loc) => |irq, f| irq.edge = f & CONFIG_EDGE != 0,
        _ => return None,
    };
    Some(move |irq: &mut Irq| op(irq, field))
}
