//! Helpers shared by the guest programs in `src/bin/` that do not belong in the runtime: the
//! PMU programming and the call loops of the `bench_hvc` measurement, the GICv3 driver and
//! the interrupt vector of `bench_virq`, the sample statistics of the benchmarks, and the
//! second-vCPU handshake of `basics` and `bootcheck`.
#![cfg_attr(not(test), no_std)]

pub mod bench;
pub mod gicv3;
pub mod irq;
pub mod pmu;
pub mod secondary;
pub mod stats;
