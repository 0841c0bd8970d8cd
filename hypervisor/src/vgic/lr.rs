//! The list-register view of a virtual interrupt and its ICH_LR<n>_EL2 encoding (Arm IHI 0069H.b
//! §12.4.6, ICH_LR<n>_EL2).
//!
//! Owns: the `LrEntry` value type and the bit layout of ICH_LR<n>_EL2.
//! Never: reads or writes the ICH_LR<n>_EL2 registers themselves (the arch glue does, with the
//! values produced here), and never decides which interrupt goes into which list register.

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
}

/// `e` in the ICH_LR<n>_EL2 layout. pINTID is truncated to its 13 bits.
pub fn lr_to_ich(e: &LrEntry) -> u64 {
    let state = match e.state {
        LrState::Invalid => STATE_INVALID,
        LrState::Pending => STATE_PENDING,
        LrState::Active => STATE_ACTIVE,
        LrState::PendingActive => STATE_PENDING_ACTIVE,
    };
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
    let state = match (v >> STATE_SHIFT) & STATE_MASK {
        STATE_INVALID => LrState::Invalid,
        STATE_PENDING => LrState::Pending,
        STATE_ACTIVE => LrState::Active,
        _ => LrState::PendingActive,
    };
    let hw = v & HW != 0;
    LrEntry {
        intid: (v & VINTID_MASK) as u32,
        priority: ((v >> PRIORITY_SHIFT) & PRIORITY_MASK) as u8,
        group1: v & GROUP != 0,
        state,
        hw_intid: hw.then_some(((v >> PINTID_SHIFT) & PINTID_MASK) as u32),
        eoi_maintenance: !hw && v & EOI != 0,
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
                    };
                    assert_eq!(lr_from_ich(lr_to_ich(&e)), e);
                }
            }
        }
        // PendingActive, HW, Group 1, priority 0xa0, pINTID 27, vINTID 33.
        let v = 0xf0a0_001b_0000_0021u64;
        assert_eq!(lr_to_ich(&lr_from_ich(v)), v);
    }
}
