//! `bench_hvc`: measures what a null hypercall (`HV_ABI_VERSION`) costs, in instructions
//! retired, with the PMU the hypervisor lets this VM use. Counter 0 counts EL2 only (the
//! hypervisor's share); counter 1 counts every EL, and the same loop without `hvc` gives the
//! baseline to subtract, leaving the whole round trip.
//!
//! Reports `#HT metric hvc_null_el2_insns=<per call>` and `hvc_null_roundtrip_insns=<per call>`;
//! the test passes if EL2 instructions were counted at all.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::framing::Tenths;
use guest_rt::{check, check_eq, metric, test};
use guests::{bench, pmu};

guest_rt::test_main!();

/// Enough calls that the per-call figure is stable to one decimal, few enough that no counter
/// comes near 2^32 events (see `pmu::Reading::since`).
const CALLS: u64 = 10_000;

test!(
    fn null_hypercall_cost() {
        let available = pmu::counters_available();
        check!(
            available >= pmu::COUNTERS_NEEDED,
            "PMCR_EL0.N = {available}: the VM needs {} event counters",
            pmu::COUNTERS_NEEDED
        );
        pmu::start();

        let before = pmu::read();
        let succeeded = bench::null_hypercalls(CALLS);
        let calls = pmu::read().since(&before);

        let before = pmu::read();
        bench::baseline(CALLS);
        let baseline = pmu::read().since(&before);

        check_eq!(succeeded, CALLS, "calls that returned SUCCESS");
        let round_trip = calls.all_els.saturating_sub(baseline.all_els);
        // CALLS is not 0, and a 32-bit count times 10 cannot overflow.
        metric(
            "hvc_null_el2_insns",
            Tenths::ratio(calls.el2, CALLS).unwrap(),
        );
        metric(
            "hvc_null_roundtrip_insns",
            Tenths::ratio(round_trip, CALLS).unwrap(),
        );
        check!(
            calls.el2 > 0,
            "no EL2 instruction counted: is EL2 counting allowed (MDCR_EL2.HPMD)?"
        );
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
