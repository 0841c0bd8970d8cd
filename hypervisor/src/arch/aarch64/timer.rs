//! The EL2 physical timer (CNTHP), the hypervisor's own: it preempts guests so that vCPUs
//! sharing a physical CPU are time-sliced and a vCPU that never traps cannot keep its CPU.
//! Guests cannot touch it (its registers are EL2 only).

use aarch64_cpu::registers::*;

static TICKS_PER_SLICE: spin::Once<u64> = spin::Once::new();

/// Sets the period from the board's. Boot CPU, once.
pub fn init(period_us: u32) {
    let freq = CNTFRQ_EL0.get();
    TICKS_PER_SLICE.call_once(|| (freq * period_us as u64 / 1_000_000).max(1));
}

/// The scheduling period in counter ticks (the board's, converted).
pub fn period_ticks() -> u64 {
    *TICKS_PER_SLICE.get().unwrap_or(&0)
}

/// Arms this CPU's timer to fire at counter value `deadline` (at once if it has passed), or
/// disarms it for `quota::NEVER`. The timer is level-triggered: it is re-armed or disarmed on
/// every scheduling decision, so it never stays asserted.
pub fn arm_at(deadline: u64) {
    if deadline == crate::quota::NEVER {
        disarm();
        return;
    }
    // SAFETY: programs this CPU's EL2 physical timer, which only the hypervisor uses
    // (aarch64-cpu has no accessor for CNTHP_CVAL_EL2).
    unsafe {
        core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) deadline, options(nomem, nostack))
    };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// Silences this CPU's timer until the next `arm_at`.
pub fn disarm() {
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::CLEAR + CNTHP_CTL_EL2::IMASK::SET);
}
