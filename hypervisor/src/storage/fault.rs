//! Fault injection: make the n-th next disk I/O fail, to test that every caller rolls back.
//!
//! Owns: the countdown only. The device asks [`Countdown::hit`] once per I/O request it is
//! given (a read, a write, a flush or a zeroing, however many sectors), before touching the
//! hardware, and fails the request with `DiskError::Injected` when it says so.

use core::sync::atomic::{AtomicU32, Ordering};

/// 0: disarmed; n: the n-th next [`Countdown::hit`] returns true (and disarms).
pub struct Countdown(AtomicU32);

impl Countdown {
    pub const fn new() -> Self {
        Countdown(AtomicU32::new(0))
    }

    /// Arms the countdown: `n` = 1 fails the very next I/O; 0 disarms.
    pub fn arm(&self, n: u32) {
        self.0.store(n, Ordering::Release);
    }

    /// Counts one I/O; true if this is the one that must fail.
    pub fn hit(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok_and(|before| before == 1)
    }
}

impl Default for Countdown {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_exactly_the_nth_io_once() {
        let c = Countdown::new();
        assert!(!c.hit(), "disarmed");
        c.arm(3);
        assert_eq!(
            [c.hit(), c.hit(), c.hit(), c.hit()],
            [false, false, true, false]
        );
        c.arm(1);
        c.arm(0);
        assert!(!c.hit(), "disarmed again");
        c.arm(1);
        assert!(c.hit());
        assert!(!c.hit());
    }
}
