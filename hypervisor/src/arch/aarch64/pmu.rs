//! Counting the hypervisor's own instructions for the management benchmarks
//! (docs/benchmarks.md, `vm_create_el2_insns`...): event counter 0 of the PMU, when the
//! management VM was given the PMU and programmed it to count instructions retired at EL2 only
//! (the agent does so at boot when it can).
//!
//! Owns: the meter of one management call (on the calling CPU) and the instructions it
//! excludes (disk I/O and work proportional to a VM's RAM, reported apart).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// PMEVTYPER0_EL0 for "instructions retired at EL2 only": P (bit 31) and U (bit 30) set (not
/// EL1, not EL0), NSH (bit 27) set (EL2), event 0x08 INST_RETIRED.
const EL2_ONLY_INST_RETIRED: u64 = (1 << 31) | (1 << 30) | (1 << 27) | 0x08;
const PMCR_E: u64 = 1;

fn read_counter0() -> Option<u32> {
    let (pmcr, enabled, evtype, count): (u64, u64, u64, u64);
    // SAFETY: reads of PMU registers at EL2 have no side effect (MDCR_EL2 does not trap EL2).
    unsafe {
        core::arch::asm!(
            "mrs {p}, pmcr_el0",
            "mrs {e}, pmcntenset_el0",
            "mrs {t}, pmevtyper0_el0",
            "isb",
            "mrs {c}, pmevcntr0_el0",
            p = out(reg) pmcr,
            e = out(reg) enabled,
            t = out(reg) evtype,
            c = out(reg) count,
            options(nomem, nostack)
        )
    };
    let programmed =
        pmcr & PMCR_E != 0 && enabled & 1 != 0 && evtype & 0xffff_ffff == EL2_ONLY_INST_RETIRED;
    programmed.then_some(count as u32)
}

const NONE: usize = usize::MAX;
/// The CPU whose meter is running (one at a time: management calls hold the life-cycle lock).
static METER_CPU: AtomicUsize = AtomicUsize::new(NONE);
static EXCLUDED: AtomicU64 = AtomicU64::new(0);

/// A running count of this CPU's EL2 instructions.
pub struct Meter {
    start: u32,
    /// `exclude` leaves instructions out of it (one such meter at a time).
    excluding: bool,
}

impl Meter {
    /// Starts counting, if counter 0 counts EL2 instructions.
    pub fn start() -> Option<Meter> {
        let start = read_counter0()?;
        EXCLUDED.store(0, Ordering::Relaxed);
        METER_CPU.store(super::percpu::current().index(), Ordering::Release);
        Some(Meter {
            start,
            excluding: true,
        })
    }

    /// Starts counting everything (no exclusions), if counter 0 counts EL2 instructions.
    pub fn start_plain() -> Option<Meter> {
        Some(Meter {
            start: read_counter0()?,
            excluding: false,
        })
    }

    /// (instructions since `start` less the excluded ones, the excluded ones); the meter
    /// stops.
    pub fn finish(self) -> (u64, u64) {
        self.peek()
    }

    /// What `finish` would say now.
    pub fn peek(&self) -> (u64, u64) {
        let end = read_counter0().unwrap_or(self.start);
        let total = end.wrapping_sub(self.start) as u64;
        if !self.excluding {
            return (total, 0);
        }
        let excluded = EXCLUDED.load(Ordering::Relaxed).min(total);
        (total - excluded, excluded)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if !self.excluding {
            return;
        }
        let me = super::percpu::current().index();
        let _ = METER_CPU.compare_exchange(me, NONE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Runs `f`, and if a meter runs on this CPU, leaves its instructions out of it (disk I/O,
/// work proportional to RAM).
pub fn exclude<R>(f: impl FnOnce() -> R) -> R {
    if METER_CPU.load(Ordering::Acquire) != super::percpu::current().index() {
        return f();
    }
    let a = read_counter0();
    let r = f();
    if let (Some(a), Some(b)) = (a, read_counter0()) {
        EXCLUDED.fetch_add(b.wrapping_sub(a) as u64, Ordering::Relaxed);
    }
    r
}
