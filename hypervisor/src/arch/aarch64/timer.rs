//! The EL2 physical timer (CNTHP), the hypervisor's own: it preempts guests so that vCPUs
//! sharing a physical CPU are time-sliced and a vCPU that never traps cannot keep its CPU.
//! Guests cannot touch it (its registers are EL2 only).

use aarch64_cpu::registers::*;

static TICKS_PER_SLICE: spin::Once<u64> = spin::Once::new();

/// Sets the time slice from the board's scheduler period. Boot CPU, once.
pub fn init(period_us: u32) {
    let freq = CNTFRQ_EL0.get();
    TICKS_PER_SLICE.call_once(|| (freq * period_us as u64 / 1_000_000).max(1));
}

/// Arms this CPU's timer to fire one slice from now.
pub fn arm_slice() {
    let ticks = *TICKS_PER_SLICE.get().unwrap_or(&0);
    if ticks == 0 {
        return;
    }
    // SAFETY: programs this CPU's EL2 physical timer, which only the hypervisor uses.
    unsafe { core::arch::asm!("msr cnthp_tval_el2, {}", in(reg) ticks, options(nomem, nostack)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}
