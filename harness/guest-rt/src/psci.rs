//! PSCI 1.1 calls through `hvc`, and the start of secondary vCPUs.
//!
//! PSCI returns a signed 32-bit value that 64-bit callers read sign-extended from `x0`
//! (`abi::PsciStatus::to_reg`); these wrappers return it as `i64` so that it compares with
//! `abi::PsciStatus::X as i64` and prints readably.

use abi::ids::{PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_64, PSCI_SYSTEM_OFF};
pub use smccc::psci::{AffinityState, LowestAffinityLevel};

use crate::arch::{self, hvc};

/// `CPU_ON(target, entry, context)`: starts vCPU `target` at IPA `entry` with `x0 = context`.
pub fn cpu_on(target: u64, entry_ipa: u64, context: u64) -> i64 {
    hvc(PSCI_CPU_ON_64, [target, entry_ipa, context])[0] as i64
}

/// Starts vCPU `target` running `entry` on its own stack; when `entry` returns, the vCPU turns
/// itself off (`CPU_OFF`). Returns the `CPU_ON` status.
///
/// The function pointer travels as the PSCI context id, which the hypervisor hands back in `x0`
/// at the runtime's secondary entry point.
pub fn start_vcpu(target: u64, entry: fn()) -> i64 {
    cpu_on(target, arch::secondary_entry_ipa(), entry as usize as u64)
}

/// `AFFINITY_INFO(target, level 0)`: compare with `AffinityState::X as i64`.
pub fn affinity_info(target: u64) -> i64 {
    hvc(
        PSCI_AFFINITY_INFO_64,
        [target, LowestAffinityLevel::All.into(), 0],
    )[0] as i64
}

/// `CPU_OFF`: turns this vCPU off. It only returns on an error, which is reported as a failure.
pub fn cpu_off() -> ! {
    let status = hvc(PSCI_CPU_OFF, [0; 3])[0] as i64;
    crate::harness::abort(format_args!("PSCI CPU_OFF returned {status}"))
}

/// `SYSTEM_OFF`: stops the whole VM. Parks the vCPU should the call ever return.
pub fn system_off() -> ! {
    hvc(PSCI_SYSTEM_OFF, [0; 3]);
    arch::park()
}

/// A secondary vCPU's Rust entry: run the function [`start_vcpu`] passed, then turn off.
#[cfg(target_os = "none")]
pub(crate) fn secondary_vcpu_main(context: u64) -> ! {
    if context == 0 {
        crate::harness::abort(format_args!(
            "vCPU {} started at the runtime entry without a function",
            arch::vcpu_index()
        ));
    }
    // SAFETY: the runtime's entry point is only ever passed to CPU_ON by `start_vcpu`, whose
    // context id is a `fn()`.
    let entry = unsafe { core::mem::transmute::<usize, fn()>(context as usize) };
    entry();
    cpu_off()
}
