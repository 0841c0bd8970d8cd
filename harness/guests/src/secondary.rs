//! The handshake with a second vCPU that a test starts with PSCI `CPU_ON`: the secondary
//! announces that it runs and stays on until the boot vCPU releases it, so that the boot vCPU
//! can watch `AFFINITY_INFO` go from on to off deterministically.

use guest_rt::sync::Shared;
use guest_rt::time;

/// The vCPU the tests start (programs using this run with 2 vCPUs).
pub const SECONDARY: u64 = 1;
/// Generous: the other vCPU may share a physical CPU with us and need our yields to run.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2000;

// Each flag has one writer: RUNNING the secondary, RELEASED the boot vCPU.
static RUNNING: Shared<bool> = Shared::new(false);
static RELEASED: Shared<bool> = Shared::new(false);

/// Runs on the secondary: announce, stay on until released, return (the runtime then calls
/// CPU_OFF).
pub fn secondary_main() {
    RUNNING.set(true);
    time::wait_until(HANDSHAKE_TIMEOUT_MS, || RELEASED.get());
}

/// On the boot vCPU: whether the secondary announced itself within the timeout.
pub fn wait_running() -> bool {
    time::wait_until(HANDSHAKE_TIMEOUT_MS, || RUNNING.get())
}

/// On the boot vCPU: lets the secondary return and power itself off.
pub fn release() {
    RELEASED.set(true);
}
