//! The PMUv3 registers `bench_hvc` programs: two event counters counting retired instructions,
//! one at EL2 only, one at every EL.
//!
//! Register layouts: Arm ARM (DDI 0487), chapter D13 "The Performance Monitors Extension" and
//! the PMCR_EL0, `PMEVTYPER<n>_EL0`, `PMEVCNTR<n>_EL0` and PMCNTENSET_EL0 descriptions in D17
//! "AArch64 System Register Descriptions". aarch64-cpu has no definitions for these registers,
//! so they are accessed with `mrs`/`msr`. EL1 access requires the hypervisor not to trap PMU
//! registers (MDCR_EL2.TPM = 0) for this VM.

/// PMCR_EL0.E, bit 0: enables the event counters (with PMCNTENSET_EL0).
pub const PMCR_E: u64 = 1 << 0;
/// PMCR_EL0.P, bit 1: writing 1 resets every event counter to zero.
pub const PMCR_P: u64 = 1 << 1;
/// PMCR_EL0.N, bits \[15:11\]: how many event counters this EL can use.
pub const PMCR_N_SHIFT: u32 = 11;
pub const PMCR_N_MASK: u64 = 0b1_1111;

/// `PMEVTYPER<n>_EL0.P`, bit 31: do not count at EL1.
pub const PMEVTYPER_P: u64 = 1 << 31;
/// `PMEVTYPER<n>_EL0.U`, bit 30: do not count at EL0.
pub const PMEVTYPER_U: u64 = 1 << 30;
/// `PMEVTYPER<n>_EL0.NSH`, bit 27: count at (Non-secure) EL2. Note the opposite sense to P and U.
pub const PMEVTYPER_NSH: u64 = 1 << 27;

/// Common architectural event INST_RETIRED, "instruction architecturally executed" (D13, the
/// common event numbers table), for `PMEVTYPER<n>_EL0.evtCount`.
pub const EVENT_INST_RETIRED: u64 = 0x08;

/// PMCNTENSET_EL0 bit n: enable event counter n.
pub const fn counter_enable(n: u32) -> u64 {
    1 << n
}

/// The counters `bench_hvc` uses.
pub const EL2_COUNTER: u32 = 0;
pub const ALL_ELS_COUNTER: u32 = 1;
/// How many event counters [`start`] needs.
pub const COUNTERS_NEEDED: u64 = 2;

/// Counter 0: instructions retired at EL2 only (not EL1, not EL0).
pub const EL2_ONLY: u64 = PMEVTYPER_P | PMEVTYPER_U | PMEVTYPER_NSH | EVENT_INST_RETIRED;
/// Counter 1: instructions retired at EL0, EL1 and EL2.
pub const ALL_ELS: u64 = PMEVTYPER_NSH | EVENT_INST_RETIRED;

/// A reading of both counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub el2: u64,
    pub all_els: u64,
}

impl Reading {
    /// The counts since `earlier`. Event counters are 32 bits wide unless PMCR_EL0.LP (PMUv3p5)
    /// makes them 64, so only the low 32 bits are trusted, and a wrap is handled; the caller
    /// keeps each measured interval under 2^32 events.
    pub fn since(&self, earlier: &Reading) -> Reading {
        let delta = |now: u64, then: u64| (now as u32).wrapping_sub(then as u32) as u64;
        Reading {
            el2: delta(self.el2, earlier.el2),
            all_els: delta(self.all_els, earlier.all_els),
        }
    }
}

/// How many event counters the hypervisor leaves this VM (PMCR_EL0.N).
pub fn counters_available() -> u64 {
    (regs::read_pmcr() >> PMCR_N_SHIFT) & PMCR_N_MASK
}

/// Programs both counters, resets them to zero and starts them.
pub fn start() {
    regs::write_pmevtyper0(EL2_ONLY);
    regs::write_pmevtyper1(ALL_ELS);
    regs::write_pmcntenset(counter_enable(EL2_COUNTER) | counter_enable(ALL_ELS_COUNTER));
    regs::write_pmcr(PMCR_E | PMCR_P);
}

/// Counter 0 alone (EL2 instructions), after an `isb`: the cheapest reading, for intervals
/// measured one at a time.
pub fn el2_count() -> u64 {
    regs::read_pmevcntr0()
}

/// The EL2 instructions since `earlier` (an [`el2_count`]), over at most 2^32 events (see
/// [`Reading::since`]).
pub fn el2_since(now: u64, earlier: u64) -> u64 {
    (now as u32).wrapping_sub(earlier as u32) as u64
}

pub fn read() -> Reading {
    Reading {
        el2: regs::read_pmevcntr0(),
        all_els: regs::read_pmevcntr1(),
    }
}

#[cfg(target_os = "none")]
mod regs {
    use core::arch::asm;

    /// `pub fn $name() -> u64` reading system register `$reg`.
    macro_rules! sysreg_read {
        ($name:ident, $reg:literal) => {
            pub fn $name() -> u64 {
                let value;
                // SAFETY: reading a PMU register has no side effect. The `isb` first keeps the
                // read from being executed before the code it is meant to follow.
                unsafe { asm!(concat!("isb\nmrs {}, ", $reg), out(reg) value, options(nostack)) };
                value
            }
        };
    }

    /// `pub fn $name(u64)` writing system register `$reg`.
    macro_rules! sysreg_write {
        ($name:ident, $reg:literal) => {
            pub fn $name(value: u64) {
                // SAFETY: PMU configuration only affects counting, never memory or control
                // flow. The `isb` makes it take effect before the next instruction.
                unsafe {
                    asm!(concat!("msr ", $reg, ", {}\nisb"), in(reg) value, options(nostack))
                };
            }
        };
    }

    sysreg_read!(read_pmcr, "pmcr_el0");
    sysreg_write!(write_pmcr, "pmcr_el0");
    sysreg_write!(write_pmevtyper0, "pmevtyper0_el0");
    sysreg_write!(write_pmevtyper1, "pmevtyper1_el0");
    sysreg_read!(read_pmevcntr0, "pmevcntr0_el0");
    sysreg_read!(read_pmevcntr1, "pmevcntr1_el0");
    sysreg_write!(write_pmcntenset, "pmcntenset_el0");
}

/// Host builds: never run (guests only execute in a VM).
#[cfg(not(target_os = "none"))]
mod regs {
    const ONLY_IN_A_VM: &str = "guest code only runs inside a VM";

    pub fn read_pmcr() -> u64 {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn write_pmcr(_: u64) {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn write_pmevtyper0(_: u64) {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn write_pmevtyper1(_: u64) {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn read_pmevcntr0() -> u64 {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn read_pmevcntr1() -> u64 {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn write_pmcntenset(_: u64) {
        unreachable!("{ONLY_IN_A_VM}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_select_the_documented_levels() {
        assert_eq!(EL2_ONLY, 0xC800_0008);
        assert_eq!(ALL_ELS, 0x0800_0008);
    }

    #[test]
    fn deltas_use_the_low_32_bits_and_survive_a_wrap() {
        let before = Reading {
            el2: 0xffff_fff0,
            all_els: 0x1_0000_0005,
        };
        let after = Reading {
            el2: 0x10,
            all_els: 0x1_0000_0105,
        };
        assert_eq!(
            after.since(&before),
            Reading {
                el2: 0x20,
                all_els: 0x100
            }
        );
    }
}
