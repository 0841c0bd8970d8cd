//! Helpers shared by the guest programs in `src/bin/` that do not belong in the runtime: the
//! PMU programming and the call loops of the `bench_hvc` measurement.
#![cfg_attr(not(test), no_std)]

pub mod bench;
pub mod pmu;
