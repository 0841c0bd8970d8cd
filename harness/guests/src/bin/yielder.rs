//! `yielder`: the partner of `bench_switch` on one physical CPU. It runs `work` iterations of
//! a tight loop (EL1 instructions that `bench_switch` checks for, proving that the partner ran
//! in each of its round trips), then `HV_YIELD`, `yields` times, and passes.
//!
//! It must outlast the measurement: it yields only when it runs, which is once per
//! `bench_switch` yield (plus once per preemption tick), so `yields` must exceed the bench's
//! warm-up + rounds by a margin; what is left over it does alone after the bench VM stopped
//! (its yields then return at once), which costs little.
//!
//! Bootargs: `yields=<n>` (default 10000), `work=<n>` (default 256, at least 1).
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::Status;
use guest_rt::{check_eq, hv, test};

guest_rt::test_main!();

const DEFAULT_YIELDS: u64 = 10_000;
const DEFAULT_WORK: u64 = 256;

/// `n` iterations of a two-instruction loop the compiler cannot remove.
#[cfg(target_os = "none")]
fn work(n: u64) {
    // SAFETY: register arithmetic only.
    unsafe {
        core::arch::asm!(
            "1: subs {n}, {n}, #1",
            "b.ne 1b",
            n = inout(reg) n.max(1) => _,
            options(nomem, nostack)
        )
    };
}

#[cfg(not(target_os = "none"))]
fn work(_: u64) {}

test!(
    fn yield_loop() {
        let yields = guest_rt::cmdline().param_u64_or("yields", DEFAULT_YIELDS);
        let n = guest_rt::cmdline().param_u64_or("work", DEFAULT_WORK);
        let mut failures = 0u64;
        for _ in 0..yields {
            work(n);
            failures += (hv::yield_now() != Status::Success.to_reg()) as u64;
        }
        check_eq!(failures, 0, "HV_YIELD calls that did not return SUCCESS");
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
