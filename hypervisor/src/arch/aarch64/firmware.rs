//! Calls to the firmware below us (EL3) through PSCI over SMC: starting CPUs and powering the
//! machine off. QEMU's `virt` with `virtualization=on` implements PSCI on the `smc` conduit.

use smccc::psci;
use smccc::Smc;

/// Starts physical CPU `mpidr` at `entry` (a physical address), with `x0 = context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), psci::Error> {
    psci::cpu_on::<Smc>(mpidr, entry, context)
}

/// Powers the machine off. Returns only if the firmware refuses.
pub fn system_off() -> psci::Error {
    match psci::system_off::<Smc>() {
        Ok(()) => psci::Error::Unknown(0),
        Err(e) => e,
    }
}
