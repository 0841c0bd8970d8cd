//! `bench_sched`: what time-sharing one physical CPU between two CPU-bound VMs costs the
//! hypervisor, as a share of all instructions executed, counted with the PMU the hypervisor
//! lets this VM use (`bench_hvc` explains the counters).
//!
//! Run on one physical CPU next to a `spinner` partner, both CPU-bound, at the default period
//! (10 ms) and equal shares: every period the scheduler charges, picks, arms CNTHP and
//! switches (at least twice: at this VM's budget end and at the refill). The PMU counters are
//! not switched with the vCPU, so between two readings of this VM they count everything the
//! physical CPU executed: this VM's loop, the partner's, and the hypervisor's EL2 code.
//!
//!   sched_overhead_pct = 100 × EL2 instructions / instructions of all levels
//!
//! over `measure_ms` of virtual time (500 ms: 50 periods, 5·10⁸ instructions under
//! `-icount shift=0`, within the counters' 32 bits). The loop makes no hypercall and takes no
//! interrupt of its own, so every EL2 instruction counted is the scheduler's (timer exits,
//! accounting, switches) or the partner's exits (it makes none either).
//!
//! The test fails unless the partner really shared the CPU: this VM's own loop accounts for
//! between 40 and 60 % of the instructions of all levels (each iteration is a known number of
//! instructions, `guests::spin::INSNS_PER_ROUND`).
//!
//! Reports `#HT metric sched_overhead_pct=<4 decimals>`, `sched_overhead_el2_insns` and
//! `sched_overhead_all_insns`. Bootargs: `measure_ms=<n>` (default 500, at most 4000).
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::fmt;

use guest_rt::{check, metric, test, time};
use guests::{pmu, spin};

guest_rt::test_main!();

const DEFAULT_MEASURE_MS: u64 = 500;
/// Under `-icount shift=0` one instruction is one nanosecond: 4 s stays under 2^32.
const MAX_MEASURE_MS: u64 = 4000;

/// `numerator / denominator × 100` with four decimals, for the metric line.
struct Percent4(u64);

impl Percent4 {
    fn of(numerator: u64, denominator: u64) -> Self {
        let d = denominator.max(1) as u128;
        Percent4(((numerator as u128 * 1_000_000 + d / 2) / d) as u64)
    }
}

impl fmt::Display for Percent4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

test!(
    fn scheduling_overhead() {
        let available = pmu::counters_available();
        check!(
            available >= pmu::COUNTERS_NEEDED,
            "PMCR_EL0.N = {available}: the VM needs {} event counters",
            pmu::COUNTERS_NEEDED
        );
        let ms = guest_rt::cmdline()
            .param_u64_or("measure_ms", DEFAULT_MEASURE_MS)
            .clamp(1, MAX_MEASURE_MS);
        pmu::start();
        // Start at a fresh point of the counter, well inside the shared run.
        spin::ms(20);
        let deadline = time::now() + time::ms_to_ticks(ms, time::frequency());
        let a = pmu::read();
        let rounds = spin::until(deadline);
        let b = pmu::read();
        let d = b.since(&a);
        let own = rounds * spin::INSNS_PER_ROUND;
        guest_rt::println!(
            "sched: {ms} ms, {} instructions, {} at EL2, this VM's loop {} ({}%)",
            d.all_els,
            d.el2,
            own,
            Percent4::of(own, d.all_els)
        );
        check!(
            d.el2 > 0,
            "no EL2 instruction counted: is EL2 counting allowed?"
        );
        check!(
            own * 100 >= d.all_els * 40 && own * 100 <= d.all_els * 60,
            "this VM's loop was {own} of {} instructions: the partner did not share the CPU",
            d.all_els
        );
        metric("sched_overhead_pct", Percent4::of(d.el2, d.all_els));
        metric("sched_overhead_el2_insns", d.el2);
        metric("sched_overhead_all_insns", d.all_els);
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
