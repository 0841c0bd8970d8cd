//! `bench_switch`: what one vCPU switch between two VMs on one physical CPU costs the
//! hypervisor, in EL2 instructions, counted with the PMU the hypervisor lets this VM use
//! (`bench_hvc` explains the counters).
//!
//! Run on one physical CPU with a partner VM (`yielder`) that does `partner_work` loop
//! iterations, then `HV_YIELD`, over and over. Each `HV_YIELD` of this VM then makes one round
//! trip: this VM's `hvc` traps, the hypervisor saves this vCPU and loads the partner's (switch
//! 1), the partner runs its loop and yields, the hypervisor switches back (switch 2), and this
//! VM resumes after its `hvc`. The EL2-only counter runs throughout (the PMU is not switched),
//! so one sample, the counter after the call − before it, is the EL2 instructions of both
//! switches, and
//!
//!   vcpu_switch_el2_insns = median(round trip) / 2
//!
//! = EL2 instructions from one guest's `hvc HV_YIELD` to the other guest's first instruction:
//! the hypercall exit and entry paths included, the partner's EL1 instructions excluded. A
//! preemption tick landing inside a sample inflates it; the median ignores it.
//!
//! The partner really ran in every round trip: the instructions of all other levels (EL1 of
//! both VMs) in the median round trip, minus the same reading without a yield, must be at
//! least `partner_work`. Otherwise (the partner had stopped) the test fails.
//!
//! Reports `#HT metric vcpu_switch_el2_insns=<median / 2>`, `vcpu_switch_el2_insns_min`
//! (min / 2) and `vcpu_switch_roundtrip_el2_insns` (the median round trip).
//! Bootargs: `rounds=<n>` (default 2000, at most [`MAX_SAMPLES`]), `partner_work=<n>`
//! (default 256; the partner's loop count, for the check).
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::Status;
use guest_rt::framing::Tenths;
use guest_rt::{check, check_eq, hv, metric, test};
use guests::{pmu, stats};

guest_rt::test_main!();

const DEFAULT_ROUNDS: u64 = 2000;
const MAX_SAMPLES: usize = 4096;
const DEFAULT_PARTNER_WORK: u64 = 256;
/// Round trips before the measured ones: the partner starts (and prints its framing) during
/// the first.
const WARM_UP: u64 = 50;

static mut EL2: [u64; MAX_SAMPLES] = [0; MAX_SAMPLES];
static mut OTHER: [u64; MAX_SAMPLES] = [0; MAX_SAMPLES];

test!(
    fn vcpu_switch_cost() {
        let available = pmu::counters_available();
        check!(
            available >= pmu::COUNTERS_NEEDED,
            "PMCR_EL0.N = {available}: the VM needs {} event counters",
            pmu::COUNTERS_NEEDED
        );
        let rounds = (guest_rt::cmdline().param_u64_or("rounds", DEFAULT_ROUNDS) as usize)
            .clamp(1, MAX_SAMPLES);
        let partner_work = guest_rt::cmdline().param_u64_or("partner_work", DEFAULT_PARTNER_WORK);
        pmu::start();

        // The instructions between two readings with nothing in between.
        let a = pmu::read();
        let b = pmu::read();
        let d = b.since(&a);
        let baseline_other = d.all_els - d.el2;

        let mut failures = 0u64;
        for _ in 0..WARM_UP {
            failures += (hv::yield_now() != Status::Success.to_reg()) as u64;
        }
        // SAFETY: only this function, on the only vCPU, uses the sample arrays.
        let (el2, other) = unsafe {
            (
                &mut *core::ptr::addr_of_mut!(EL2),
                &mut *core::ptr::addr_of_mut!(OTHER),
            )
        };
        for i in 0..rounds {
            let a = pmu::read();
            let status = hv::yield_now();
            let b = pmu::read();
            failures += (status != Status::Success.to_reg()) as u64;
            let d = b.since(&a);
            el2[i] = d.el2;
            other[i] = d.all_els - d.el2;
        }
        check_eq!(failures, 0, "HV_YIELD calls that did not return SUCCESS");

        let (min, median) = stats::min_median(&mut el2[..rounds]).unwrap();
        let (_, other_median) = stats::min_median(&mut other[..rounds]).unwrap();
        let partner = other_median.saturating_sub(baseline_other);
        metric("vcpu_switch_el2_insns", Tenths::ratio(median, 2).unwrap());
        metric("vcpu_switch_el2_insns_min", Tenths::ratio(min, 2).unwrap());
        metric("vcpu_switch_roundtrip_el2_insns", median);
        guest_rt::println!(
            "switch: {rounds} round trips, EL2 min {min}, median {median}, max {}, {} not equal to the median; other levels {partner} per round trip beyond the baseline",
            el2[rounds - 1],
            stats::count_other_than(&el2[..rounds], median)
        );
        check!(
            min > 0,
            "no EL2 instruction counted: is EL2 counting allowed (MDCR_EL2.HPMD)?"
        );
        check!(
            partner >= partner_work,
            "the partner VM did not run in the round trips: {partner} instructions of other \
             levels per round trip, expected at least {partner_work}"
        );
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
