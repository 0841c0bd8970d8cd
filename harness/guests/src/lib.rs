//! Helpers shared by the guest programs in `src/bin/` that do not belong in the runtime: the
//! PMU programming and the call loops of the `bench_hvc` measurement, the GICv3 driver and
//! the interrupt vector of `bench_virq` (and `idler`), the sample statistics of the
//! benchmarks, the second-vCPU handshake of `basics` and `bootcheck`, and the management calls
//! of `quota_ctl` (and the refusal `basics` checks), and a busy-wait that is fast under
//! `-icount` for the CPU-bound VMs of the scheduler suites.
#![cfg_attr(not(test), no_std)]

pub mod bench;
pub mod gicv3;
pub mod irq;
pub mod mgmt;
pub mod pmu;
pub mod secondary;
pub mod spin;
pub mod stats;
