//! The list-register view of a virtual interrupt and its encodings: GICv3 ICH_LR<n>_EL2 (Arm IHI
//! 0069H.b §12.4.6, ICH_LR<n>_EL2) and GICv2 GICH_LRn (Arm IHI 0048B §5.3.8, GICH_LRn).
//!
//! Owns: the `LrEntry` value type and the bit layouts of ICH_LR<n>_EL2 and GICH_LRn.
//! Never: reads or writes the list registers themselves (the arch glue does, with the values
//! produced here), and never decides which interrupt goes into which list register.

/// ICH_LR<n>_EL2.vINTID, bits 31:0: the virtual INTID the guest acknowledges.
const VINTID_MASK: u64 = 0xffff_ffff;
/// ICH_LR<n>_EL2.pINTID, bits 44:32: the physical INTID deactivated with the virtual one
/// (meaningful only when HW = 1).
const PINTID_SHIFT: u32 = 32;
const PINTID_MASK: u64 = 0x1fff;
/// ICH_LR<n>_EL2.EOI, bit 41 when HW = 0: request a maintenance interrupt when the guest
/// deactivates the interrupt (ICH_MISR_EL2.EOI).
const EOI: u64 = 1 << 41;
/// ICH_LR<n>_EL2.Priority, bits 55:48.
const PRIORITY_SHIFT: u32 = 48;
const PRIORITY_MASK: u64 = 0xff;
/// ICH_LR<n>_EL2.Group, bit 60: 1 = Group 1.
const GROUP: u64 = 1 << 60;
/// ICH_LR<n>_EL2.HW, bit 61: the virtual interrupt is linked to physical interrupt pINTID.
const HW: u64 = 1 << 61;
/// ICH_LR<n>_EL2.State, bits 63:62.
const STATE_SHIFT: u32 = 62;
const STATE_MASK: u64 = 0b11;
const STATE_INVALID: u64 = 0b00;
const STATE_PENDING: u64 = 0b01;
const STATE_ACTIVE: u64 = 0b10;
const STATE_PENDING_ACTIVE: u64 = 0b11;

/// The state of an interrupt in a list register (ICH_LR<n>_EL2.State).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrState {
    /// Empty, or the guest has acknowledged and deactivated the interrupt.
    Invalid,
    Pending,
    Active,
    PendingActive,
}

impl LrState {
    pub fn is_pending(self) -> bool {
        matches!(self, LrState::Pending | LrState::PendingActive)
    }

    pub fn is_active(self) -> bool {
        matches!(self, LrState::Active | LrState::PendingActive)
    }

    pub(super) fn from_bits(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => LrState::Invalid,
            (true, false) => LrState::Pending,
            (false, true) => LrState::Active,
            (true, true) => LrState::PendingActive,
        }
    }
}

/// One list register's worth of virtual interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LrEntry {
    pub intid: u32,
    pub priority: u8,
    pub group1: bool,
    pub state: LrState,
    /// For a hardware-linked interrupt (HW = 1, e.g. the virtual timer): the physical INTID
    /// that the guest's deactivation also deactivates.
    pub hw_intid: Option<u32>,
    /// Ask for a maintenance interrupt when the guest deactivates it (ICH_LR<n>_EL2.EOI; only
    /// without `hw_intid`). `fill_list_registers` sets it for level-triggered interrupts so
    /// that the line can be sampled again at once; the glue may clear it.
    pub eoi_maintenance: bool,
    /// GICv2 SGIs: the vCPU that sent it (GICH_LRn.CPUID, what the guest reads in
    /// GICC_IAR.CPUID). `None` for everything else; ICH_LR<n>_EL2 ignores it.
    pub source: Option<u8>,
}

/// `e` in the ICH_LR<n>_EL2 layout. pINTID is truncated to its 13 bits; `source` is not
/// encoded (a GICv3 guest's SGIs carry no source).
pub fn lr_to_ich(e: &LrEntry) -> u64 {
    let state = u64::from(state_bits(e.state));
    let mut v = (u64::from(e.intid) & VINTID_MASK)
        | (u64::from(e.priority) << PRIORITY_SHIFT)
        | (state << STATE_SHIFT);
    if e.group1 {
        v |= GROUP;
    }
    match e.hw_intid {
        Some(p) => v |= HW | ((u64::from(p) & PINTID_MASK) << PINTID_SHIFT),
        None if e.eoi_maintenance => v |= EOI,
        None => {}
    }
    v
}

/// The `LrEntry` held by an ICH_LR<n>_EL2 value.
pub fn lr_from_ich(v: u64) -> LrEntry {
    let state = state_from_bits(((v >> STATE_SHIFT) & STATE_MASK) as u32);
    let hw = v & HW != 0;
    LrEntry {
        intid: (v & VINTID_MASK) as u32,
        priority: ((v >> PRIORITY_SHIFT) & PRIORITY_MASK) as u8,
        group1: v & GROUP != 0,
        state,
        hw_intid: hw.then_some(((v >> PINTID_SHIFT) & PINTID_MASK) as u32),
        eoi_maintenance: !hw && v & EOI != 0,
        source: None,
    }
}

/// `e` in the list register layout of a `version` GIC: ICH_LR<n>_EL2 (GICv3) or GICH_LRn
/// (GICv2, zero-extended).
pub fn lr_encode(version: super::VgicVersion, e: &LrEntry) -> u64 {
    match version {
        super::VgicVersion::V3 => lr_to_ich(e),
        super::VgicVersion::V2 => u64::from(lr_to_gich(e)),
    }
}

/// The `LrEntry` held by a list register value of a `version` GIC (see `lr_encode`).
pub fn lr_decode(version: super::VgicVersion, raw: u64) -> LrEntry {
    match version {
        super::VgicVersion::V3 => lr_from_ich(raw),
        super::VgicVersion::V2 => lr_from_gich(raw as u32),
    }
}

// GICH_LRn, 32 bits (IHI 0048B §5.3.8).
/// VirtualID, bits 9:0.
const GICH_VIRTUAL_ID_MASK: u32 = 0x3ff;
/// PhysicalID, bits 19:10, when HW = 1.
const GICH_PHYSICAL_ID_SHIFT: u32 = 10;
const GICH_PHYSICAL_ID_MASK: u32 = 0x3ff;
/// When HW = 0: EOI, bit 19 (maintenance interrupt on deactivation), and CPUID, bits 12:10
/// (the source CPU of an SGI; 0 otherwise).
const GICH_EOI: u32 = 1 << 19;
const GICH_CPUID_SHIFT: u32 = 10;
const GICH_CPUID_MASK: u32 = 0x7;
/// SGIs are VirtualIDs 0..15: only they carry a CPUID.
const GICH_SGI_LIMIT: u32 = 16;
/// Priority, bits 27:23: the top five bits of the 8-bit priority.
const GICH_PRIORITY_SHIFT: u32 = 23;
const GICH_PRIORITY_MASK: u32 = 0x1f;
const GICH_PRIORITY_DROPPED_BITS: u32 = 3;
/// State, bits 29:28, with the ICH_LR<n>_EL2 encoding.
const GICH_STATE_SHIFT: u32 = 28;
const GICH_STATE_MASK: u32 = 0b11;
/// Grp1, bit 30.
const GICH_GRP1: u32 = 1 << 30;
/// HW, bit 31.
const GICH_HW: u32 = 1 << 31;

fn state_bits(state: LrState) -> u32 {
    let bits = match state {
        LrState::Invalid => STATE_INVALID,
        LrState::Pending => STATE_PENDING,
        LrState::Active => STATE_ACTIVE,
        LrState::PendingActive => STATE_PENDING_ACTIVE,
    };
    bits as u32
}

fn state_from_bits(bits: u32) -> LrState {
    match u64::from(bits) {
        STATE_INVALID => LrState::Invalid,
        STATE_PENDING => LrState::Pending,
        STATE_ACTIVE => LrState::Active,
        _ => LrState::PendingActive,
    }
}

/// `e` in the GICH_LRn layout. VirtualID and PhysicalID are truncated to 10 bits, the
/// priority keeps its top 5 bits, CPUID (`source`) its low 3. With `hw_intid`, PhysicalID
/// takes the bits of EOI and CPUID: `eoi_maintenance` and `source` are not encoded.
pub fn lr_to_gich(e: &LrEntry) -> u32 {
    let priority = (u32::from(e.priority) >> GICH_PRIORITY_DROPPED_BITS) & GICH_PRIORITY_MASK;
    let mut v = (e.intid & GICH_VIRTUAL_ID_MASK)
        | (priority << GICH_PRIORITY_SHIFT)
        | (state_bits(e.state) << GICH_STATE_SHIFT);
    if e.group1 {
        v |= GICH_GRP1;
    }
    match e.hw_intid {
        Some(p) => v |= GICH_HW | ((p & GICH_PHYSICAL_ID_MASK) << GICH_PHYSICAL_ID_SHIFT),
        None => {
            if e.eoi_maintenance {
                v |= GICH_EOI;
            }
            if let Some(s) = e.source {
                v |= (u32::from(s) & GICH_CPUID_MASK) << GICH_CPUID_SHIFT;
            }
        }
    }
    v
}

/// The `LrEntry` held by a GICH_LRn value. `source` is the CPUID of an SGI (VirtualID 0..15,
/// HW = 0), `None` otherwise; the priority's low 3 bits read as 0.
pub fn lr_from_gich(v: u32) -> LrEntry {
    let hw = v & GICH_HW != 0;
    let intid = v & GICH_VIRTUAL_ID_MASK;
    let field = (v >> GICH_PHYSICAL_ID_SHIFT) & GICH_PHYSICAL_ID_MASK;
    LrEntry {
        intid,
        priority: (((v >> GICH_PRIORITY_SHIFT) & GICH_PRIORITY_MASK) << GICH_PRIORITY_DROPPED_BITS)
            as u8,
        group1: v & GICH_GRP1 != 0,
        state: state_from_bits((v >> GICH_STATE_SHIFT) & GICH_STATE_MASK),
        hw_intid: hw.then_some(field),
        eoi_maintenance: !hw && v & GICH_EOI != 0,
        source: (!hw && intid < GICH_SGI_LIMIT)
            .then_some(((v >> GICH_CPUID_SHIFT) & GICH_CPUID_MASK) as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: LrState) -> LrEntry {
        LrEntry {
            intid: 33,
            priority: 0xa0,
            group1: true,
            state,
            hw_intid: None,
            eoi_maintenance: false,
            source: None,
        }
    }

    #[test]
    fn exact_bit_positions() {
        assert_eq!(
            lr_to_ich(&entry(LrState::Pending)),
            (1 << 62) | (1 << 60) | (0xa0 << 48) | 33
        );
        assert_eq!(
            lr_to_ich(&entry(LrState::Active)),
            (2 << 62) | (1 << 60) | (0xa0 << 48) | 33
        );
        assert_eq!(lr_to_ich(&entry(LrState::PendingActive)) >> 62, 3);
        assert_eq!(lr_to_ich(&entry(LrState::Invalid)) >> 62, 0);
        let hw = LrEntry {
            intid: 27,
            priority: 0,
            group1: false,
            state: LrState::Pending,
            hw_intid: Some(27),
            eoi_maintenance: false,
            source: None,
        };
        assert_eq!(lr_to_ich(&hw), (1 << 62) | (1 << 61) | (27 << 32) | 27);
        let eoi = LrEntry {
            eoi_maintenance: true,
            ..entry(LrState::Pending)
        };
        assert_eq!(lr_to_ich(&eoi) & (1 << 41), 1 << 41);
        // pINTID is 13 bits (44:32): the largest fits, more is cut.
        let wide = LrEntry {
            hw_intid: Some(0x1fff),
            ..hw
        };
        assert_eq!((lr_to_ich(&wide) >> 32) & 0x3fff, 0x1fff);
    }

    #[test]
    fn round_trip() {
        for state in [
            LrState::Invalid,
            LrState::Pending,
            LrState::Active,
            LrState::PendingActive,
        ] {
            for hw_intid in [None, Some(27), Some(1019)] {
                for eoi_maintenance in [false, true] {
                    let e = LrEntry {
                        intid: 1019,
                        priority: 0x5a,
                        group1: true,
                        state,
                        hw_intid,
                        eoi_maintenance: eoi_maintenance && hw_intid.is_none(),
                        source: None,
                    };
                    assert_eq!(lr_from_ich(lr_to_ich(&e)), e);
                }
            }
        }
        // PendingActive, HW, Group 1, priority 0xa0, pINTID 27, vINTID 33.
        let v = 0xf0a0_001b_0000_0021u64;
        assert_eq!(lr_to_ich(&lr_from_ich(v)), v);
    }

    #[test]
    fn ich_ignores_source() {
        let sgi = LrEntry {
            intid: 3,
            source: Some(5),
            ..entry(LrState::Pending)
        };
        assert_eq!(
            lr_to_ich(&sgi),
            lr_to_ich(&LrEntry {
                source: None,
                ..sgi
            })
        );
    }

    #[test]
    fn gich_exact_bits() {
        // SPI 33, pending, Group 1, priority 0xa0 (0x14 in bits 27:23), EOI maintenance.
        let spi = LrEntry {
            eoi_maintenance: true,
            ..entry(LrState::Pending)
        };
        assert_eq!(
            lr_to_gich(&spi),
            (1 << 28) | (1 << 30) | (0x14 << 23) | (1 << 19) | 33
        );
        assert_eq!(lr_to_gich(&spi), 0x5a08_0021);
        // State in 29:28.
        assert_eq!(lr_to_gich(&entry(LrState::Active)) >> 28 & 3, 2);
        assert_eq!(lr_to_gich(&entry(LrState::PendingActive)) >> 28 & 3, 3);
        assert_eq!(lr_to_gich(&entry(LrState::Invalid)) >> 28 & 3, 0);
        // SGI 5 from CPU 6, Group 0, priority 0xf8 (0x1f): CPUID in 12:10.
        let sgi = LrEntry {
            intid: 5,
            priority: 0xf8,
            group1: false,
            state: LrState::Pending,
            hw_intid: None,
            eoi_maintenance: false,
            source: Some(6),
        };
        assert_eq!(lr_to_gich(&sgi), (1 << 28) | (0x1f << 23) | (6 << 10) | 5);
        assert_eq!(lr_to_gich(&sgi), 0x1f80_1805);
        // Hardware-linked PPI 27 -> physical 27: HW (31), PhysicalID in 19:10; EOI and
        // CPUID are not encoded.
        let hw = LrEntry {
            intid: 27,
            priority: 0xa0,
            group1: false,
            state: LrState::Pending,
            hw_intid: Some(27),
            eoi_maintenance: true,
            source: Some(3),
        };
        assert_eq!(
            lr_to_gich(&hw),
            (1 << 31) | (1 << 28) | (0x14 << 23) | (27 << 10) | 27
        );
        // Truncation: VirtualID and PhysicalID 10 bits, CPUID 3, low priority bits dropped.
        let wide = LrEntry {
            intid: 0x7ff,
            priority: 0xa7,
            hw_intid: Some(0x7fe),
            ..hw
        };
        let v = lr_to_gich(&wide);
        assert_eq!(
            (v & 0x3ff, (v >> 10) & 0x3ff, (v >> 23) & 0x1f),
            (0x3ff, 0x3fe, 0x14)
        );
        let wide_src = LrEntry {
            source: Some(9),
            ..sgi
        };
        assert_eq!((lr_to_gich(&wide_src) >> 10) & 0x7, 1);
    }

    #[test]
    fn gich_decode_exact_bits() {
        // Pending+active SGI 2 from CPU 7, Group 1, priority 0x10 (field 2), EOI.
        let v: u32 = (3 << 28) | (1 << 30) | (2 << 23) | (1 << 19) | (7 << 10) | 2;
        assert_eq!(
            lr_from_gich(v),
            LrEntry {
                intid: 2,
                priority: 0x10,
                group1: true,
                state: LrState::PendingActive,
                hw_intid: None,
                eoi_maintenance: true,
                source: Some(7),
            }
        );
        // HW: bits 19:10 are the PhysicalID, not EOI/CPUID.
        let v: u32 = (1 << 31) | (2 << 28) | (1 << 19) | (7 << 10) | 27;
        let e = lr_from_gich(v);
        assert_eq!(
            (e.hw_intid, e.eoi_maintenance, e.source, e.state),
            (Some(0x207), false, None, LrState::Active)
        );
        // Not an SGI: no source even if CPUID bits are set.
        assert_eq!(lr_from_gich((1 << 28) | (3 << 10) | 40).source, None);
        assert_eq!(lr_from_gich(0).state, LrState::Invalid);
    }

    #[test]
    fn gich_round_trip() {
        for state in [
            LrState::Invalid,
            LrState::Pending,
            LrState::Active,
            LrState::PendingActive,
        ] {
            for group1 in [false, true] {
                for (intid, hw_intid, eoi, source) in [
                    (33, None, true, None),
                    (1019, None, false, None),
                    (27, Some(27), false, None),
                    (40, Some(1019), false, None),
                    (0, None, false, Some(0)),
                    (15, None, false, Some(7)),
                    (3, None, true, Some(2)),
                ] {
                    let e = LrEntry {
                        intid,
                        priority: 0xa8,
                        group1,
                        state,
                        hw_intid,
                        eoi_maintenance: eoi,
                        source,
                    };
                    assert_eq!(lr_from_gich(lr_to_gich(&e)), e, "{e:?}");
                }
            }
        }
        // Raw values come back with only the bits `LrEntry` does not keep cleared: reserved
        // 22:20, and with HW = 0 the reserved 18:13 and the CPUID of a non-SGI.
        const RESERVED: u32 = 0x7 << 20;
        const RESERVED_SW: u32 = 0x3f << 13;
        const CPUID: u32 = 0x7 << 10;
        for (v, dropped) in [
            (0x5a08_0021u32, RESERVED_SW | CPUID),
            (0x1f80_1805, RESERVED_SW),
            (0x9a00_6c1b, 0),
            (0xffff_ffff, 0),
            (0x7fff_ffff, RESERVED_SW | CPUID),
            (0x7fff_fc0f, RESERVED_SW),
            (0, 0),
        ] {
            assert_eq!(
                lr_to_gich(&lr_from_gich(v)),
                v & !(RESERVED | dropped),
                "{v:#x}"
            );
        }
    }
}
