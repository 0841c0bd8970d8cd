//! The state of one virtual interrupt (Arm IHI 0069H.b §4.1, "Interrupt lifecycle").
//!
//! Owns: the per-INTID facts (enable, group, priority, trigger, pending latch, input line,
//! active, hardware link) and the record of an interrupt handed to a list register.
//! Never: knows routing, vCPUs' list registers or MMIO layouts; those are `super`'s.

/// SGIs are INTIDs 0..15, PPIs 16..31, SPIs 32..1019 (§2.2.1, "INTIDs").
pub const SGI_COUNT: u32 = 16;
pub const PRIVATE_COUNT: u32 = 32;
pub const SPI_BASE: u32 = PRIVATE_COUNT;
/// INTIDs 1020..1023 are special; no SPI reaches them.
pub const SPECIAL_BASE: u32 = 1020;

/// An interrupt that `fill_list_registers` gave to a list register, until it is given back to
/// the model (`delivery`: the guest finished with it, or the model must choose again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InLr {
    /// The vCPU whose list register holds it.
    pub vcpu: usize,
    /// Which of that vCPU's list registers.
    pub slot: u8,
    /// The states the list register holds: as written, then as the last
    /// `sync_list_registers` found them.
    pub pending: bool,
    pub active: bool,
    /// The pending state written came from the latch (an edge, ISPENDR or an SGI), not only
    /// from an asserted level line; the latch goes back on if the guest leaves it pending.
    pub latched: bool,
    /// The guest wrote ICPENDR / ICACTIVER for it since: what the list register still says is
    /// stale for that state.
    pub pending_cleared: bool,
    pub active_cleared: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Irq {
    pub enabled: bool,
    pub group1: bool,
    pub priority: u8,
    /// Edge-triggered (ICFGR Int_config = 0b10); level-sensitive otherwise.
    pub edge: bool,
    /// The pending latch: set by an edge, ISPENDR or an SGI, cleared by ICPENDR or when the
    /// pending state moves into a list register.
    pub latch: bool,
    /// The input line as last given by `set_level`.
    pub line: bool,
    /// Active outside any list register.
    pub active: bool,
    /// Physical INTID for a hardware-linked interrupt (ICH_LR<n>_EL2.HW = 1).
    pub hw: Option<u32>,
    pub lr: Option<InLr>,
}

impl Irq {
    /// An SGI: edge-triggered, and its ICFGR field is read-only (§12.11, GICR_ICFGR0).
    pub fn sgi() -> Self {
        Irq {
            edge: true,
            ..Irq::default()
        }
    }

    /// Pending outside any list register: the latch, or an asserted line if level-sensitive
    /// (§4.1: a level-sensitive interrupt is pending while its line is asserted).
    pub fn pending(&self) -> bool {
        self.latch || (!self.edge && self.line)
    }

    /// Pending as the guest reads it back (GICD_ISPENDR): including a pending state written to a
    /// list register and not cleared since (the live list register is not visible here).
    pub fn pending_view(&self) -> bool {
        self.pending() || self.lr.is_some_and(|l| l.pending && !l.pending_cleared)
    }

    /// Active as the guest reads it back (GICD_ISACTIVER), likewise.
    pub fn active_view(&self) -> bool {
        self.active || self.lr.is_some_and(|l| l.active && !l.active_cleared)
    }

    /// The line changes. For an edge-triggered interrupt every assertion is an edge (a source
    /// calls `set_level(true)` once per event, with or without deasserting in between).
    pub fn set_line(&mut self, level: bool) {
        self.line = level;
        if level && self.edge {
            self.latch = true;
        }
    }

    /// ICPENDR: the latch clears; an asserted level line keeps it pending (§4.1).
    pub fn clear_pending(&mut self) {
        self.latch = false;
        if let Some(l) = &mut self.lr {
            l.pending_cleared = true;
        }
    }

    /// ICACTIVER.
    pub fn clear_active(&mut self) {
        self.active = false;
        if let Some(l) = &mut self.lr {
            l.active_cleared = true;
        }
    }
}
