//! Host stand-ins for `arch::aarch64`: same signatures, never executed (guests only run in a
//! VM). They exist so that the runtime and the guest programs type-check and unit-test on the
//! development machine.

const ONLY_IN_A_VM: &str = "guest code only runs inside a VM";

pub fn hvc(_function: u32, _args: [u64; 3]) -> [u64; 4] {
    unreachable!("{ONLY_IN_A_VM}")
}

pub fn smc(_function: u32, _args: [u64; 3]) -> [u64; 4] {
    unreachable!("{ONLY_IN_A_VM}")
}

pub fn counter() -> u64 {
    unreachable!("{ONLY_IN_A_VM}")
}

pub fn counter_frequency() -> u64 {
    unreachable!("{ONLY_IN_A_VM}")
}

/// Host unit tests behave as vCPU 0.
pub fn vcpu_index() -> usize {
    0
}

pub fn publish() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

pub fn park() -> ! {
    unreachable!("{ONLY_IN_A_VM}")
}

pub fn secondary_entry_ipa() -> u64 {
    unreachable!("{ONLY_IN_A_VM}")
}
