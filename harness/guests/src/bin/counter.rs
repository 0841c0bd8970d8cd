//! `counter`: not a test. A VM for the management suites (harness/runner/src/mgmt_suites.rs)
//! that prints `count=<n>` every 50 ms of its virtual time, n from 1, forever.
//!
//! The n-th line is due at `start + n × period` on the virtual counter (not 50 ms after the
//! previous line), so lateness does not accumulate. The hypervisor stops a VM's virtual counter
//! while it is suspended and continues it at resume (hypervisor/src/vm/lifecycle.rs): the
//! sequence then goes on with the next number, neither skipped nor restarted, which is what
//! `mgmt_suspend_counter` checks. A power-on boots the image again: the count starts at 1.
//!
//! It waits by yielding (`HV_YIELD`): the store's test-guest images have no emulated platform,
//! hence no timer interrupt to wait for in WFI. Bootargs: `period_ms=<n>` (default 50).
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::{hv, println, time};

guest_rt::entry!(counter_main);

/// The time between two lines, in milliseconds of virtual time.
const DEFAULT_PERIOD_MS: u64 = 50;

fn counter_main(_dtb_ipa: u64) {
    let period_ms = guest_rt::cmdline().param_u64_or("period_ms", DEFAULT_PERIOD_MS);
    let period = time::ms_to_ticks(period_ms.max(1), time::frequency());
    let start = time::now();
    let mut n: u64 = 1;
    loop {
        let due = start.saturating_add(n.saturating_mul(period));
        while time::now() < due {
            hv::yield_now();
        }
        println!("count={n}");
        n += 1;
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
