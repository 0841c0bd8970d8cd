//! `spinner`: a vCPU that never makes a hypercall. Run next to other VMs, it proves the
//! hypervisor takes the physical CPU back by itself (the others keep running) and that the
//! spinner still completes. The scheduler suites run it as their CPU-bound VMs
//! (docs/scheduler.md); it spins with `guests::spin`, which QEMU runs fast under `-icount`.
//!
//! Bootargs: `spin_ms=<n>` (default 300), how long to busy-wait.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::test;

guest_rt::test_main!();

const DEFAULT_SPIN_MS: u64 = 300;

test!(
    fn spin() {
        guests::spin::ms(guest_rt::cmdline().param_u64_or("spin_ms", DEFAULT_SPIN_MS));
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
