//! `spinner`: a vCPU that never makes a hypercall. Run next to other VMs, it proves the
//! hypervisor takes the physical CPU back by itself (the others keep running) and that the
//! spinner still completes. The scheduler suites run it as their CPU-bound VMs
//! (docs/scheduler.md); it spins with `guests::spin`, which QEMU runs fast under `-icount`.
//!
//! Bootargs: `spin_ms=<n>` (default 300), how long to busy-wait; `pace_us=<n>` (default 0:
//! off), keep the virtual timer armed, masked, at most that far ahead (`guests::spin::
//! until_paced`: makes QEMU's `-icount` round robin interleave the CPUs finely).
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::test;

guest_rt::test_main!();

const DEFAULT_SPIN_MS: u64 = 300;

test!(
    fn spin() {
        let args = guest_rt::cmdline();
        let ms = args.param_u64_or("spin_ms", DEFAULT_SPIN_MS);
        match args.param_u64_or("pace_us", 0) {
            0 => guests::spin::ms(ms),
            pace_us => {
                let freq = guest_rt::time::frequency();
                let now = guest_rt::time::now();
                let deadline = now.saturating_add(guest_rt::time::ms_to_ticks(ms, freq));
                let pace = (pace_us * freq / 1_000_000).max(1);
                guests::spin::until_paced(deadline, pace)
            }
        };
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
