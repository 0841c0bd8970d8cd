//! Time from the generic timer's virtual counter (CNTVCT_EL0 at CNTFRQ_EL0 ticks per second),
//! which the hypervisor does not trap.

use crate::{arch, hv};

const MS_PER_S: u64 = 1000;

/// `ms` milliseconds in ticks of a `frequency_hz` counter, saturating.
pub fn ms_to_ticks(ms: u64, frequency_hz: u64) -> u64 {
    let ticks = ms as u128 * frequency_hz as u128 / MS_PER_S as u128;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The counter now.
pub fn now() -> u64 {
    arch::counter()
}

/// Counter ticks per second.
///
/// # Panics
/// If CNTFRQ_EL0 is 0 (nobody programmed it): every timeout would expire at once.
pub fn frequency() -> u64 {
    let frequency = arch::counter_frequency();
    assert!(
        frequency != 0,
        "CNTFRQ_EL0 is 0: the counter frequency is unknown"
    );
    frequency
}

/// A point in counter time.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(u64);

impl Deadline {
    pub fn after_ms(ms: u64) -> Self {
        Deadline(now().saturating_add(ms_to_ticks(ms, frequency())))
    }

    pub fn has_passed(&self) -> bool {
        now() >= self.0
    }
}

/// Polls `condition`, yielding the physical CPU between polls, until it holds (`true`) or
/// `timeout_ms` have passed (`false`).
pub fn wait_until(timeout_ms: u64, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Deadline::after_ms(timeout_ms);
    loop {
        if condition() {
            return true;
        }
        if deadline.has_passed() {
            // One last look: the vCPU may have been descheduled past the deadline.
            return condition();
        }
        hv::yield_now();
    }
}

/// Waits `ms` milliseconds, yielding the physical CPU while waiting.
pub fn sleep_ms(ms: u64) {
    let deadline = Deadline::after_ms(ms);
    while !deadline.has_passed() {
        hv::yield_now();
    }
}

/// Busy-waits `ms` milliseconds without any hypercall: the vCPU never gives up its CPU.
pub fn spin_ms(ms: u64) {
    let deadline = Deadline::after_ms(ms);
    while !deadline.has_passed() {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_milliseconds_to_ticks() {
        assert_eq!(ms_to_ticks(500, 62_500_000), 31_250_000);
        assert_eq!(ms_to_ticks(1, 1_000_000_000), 1_000_000);
        assert_eq!(ms_to_ticks(0, 62_500_000), 0);
        assert_eq!(ms_to_ticks(u64::MAX, 1_000_000_000), u64::MAX);
    }
}
