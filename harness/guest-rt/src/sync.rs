//! Sharing values between vCPUs without atomics.
//!
//! Guests run with the MMU off, so every data access is to Device-nGnRnE memory, where exclusive
//! loads and stores (and so compare-and-swap, spin locks) are not guaranteed to work. Cross-vCPU
//! communication therefore uses cells that one vCPU writes and others read, with volatile
//! accesses (the compiler neither caches nor elides them) and a barrier after each write.
//!
//! Rules: one writer per cell at a time; a multi-word value may be read torn while it is being
//! written, so use word-sized values for handshakes.

use core::cell::UnsafeCell;

use crate::arch::{self, MAX_VCPUS};

/// A value read and written with volatile accesses; see the module rules.
pub struct Shared<T: Copy> {
    value: UnsafeCell<T>,
}

// SAFETY: every access is a volatile read or write of a `Copy` value through the cell, never a
// reference into it; the module rules (a single writer) are what the users of a cell follow.
unsafe impl<T: Copy + Send> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    pub const fn new(value: T) -> Self {
        Self {
            value: UnsafeCell::new(value),
        }
    }

    pub fn get(&self) -> T {
        // SAFETY: the pointer comes from the cell, so it is valid and aligned for `T`.
        unsafe { self.value.get().read_volatile() }
    }

    /// Stores `value` and makes it visible to the other vCPUs before returning.
    pub fn set(&self, value: T) {
        // SAFETY: as for `get`.
        unsafe { self.value.get().write_volatile(value) };
        arch::publish();
    }
}

/// One `T` per vCPU, each only ever touched by its own vCPU, so no sharing happens.
pub struct PerVcpu<T> {
    slots: [UnsafeCell<T>; MAX_VCPUS],
}

// SAFETY: a vCPU only reaches its own slot (`with_mine`), so no slot is shared.
unsafe impl<T: Send> Sync for PerVcpu<T> {}

impl<T> PerVcpu<T> {
    pub const fn new(slots: [UnsafeCell<T>; MAX_VCPUS]) -> Self {
        Self { slots }
    }

    /// Runs `f` on this vCPU's slot.
    ///
    /// # Safety
    /// `f` must not, directly or through an exception or panic handler, call `with_mine` on the
    /// same `PerVcpu` (that would create a second `&mut` to the slot).
    pub unsafe fn with_mine<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: only this vCPU uses this slot, and the caller rules out re-entry.
        f(unsafe { &mut *self.slots[arch::vcpu_index()].get() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_reads_what_was_written() {
        let flag = Shared::new(0u64);
        flag.set(7);
        assert_eq!(flag.get(), 7);
    }

    #[test]
    fn per_vcpu_gives_this_vcpu_its_slot() {
        let slots = PerVcpu::new([const { UnsafeCell::new(0u32) }; MAX_VCPUS]);
        // SAFETY: no re-entry.
        unsafe { slots.with_mine(|n| *n += 1) };
        assert_eq!(unsafe { slots.with_mine(|n| *n) }, 1);
    }
}
