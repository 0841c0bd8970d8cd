//! Guest-side wrappers: issue a call and return `x0..x3`.

use core::arch::asm;

/// Issues `hvc #0` with `function` in `w0` and `args` in `x1..x3`; returns `x0..x3`.
/// SMCCC 1.1 preserves `x4..x17`, and this hypervisor preserves every register it does not
/// return in, so only `x0..x3` are declared clobbered.
#[inline(always)]
pub fn hvc(function: u32, args: [u64; 3]) -> [u64; 4] {
    let (r0, r1, r2, r3);
    // SAFETY: an HVC only transfers control to the hypervisor, which returns here with the
    // registers of the calling convention updated; no memory of ours is touched by the call
    // itself.
    unsafe {
        asm!(
            "hvc #0",
            inout("x0") function as u64 => r0,
            inout("x1") args[0] => r1,
            inout("x2") args[1] => r2,
            inout("x3") args[2] => r3,
            options(nostack)
        );
    }
    [r0, r1, r2, r3]
}

/// The same through `smc #0`, which the hypervisor traps and emulates (PSCI, SMCCC queries).
#[inline(always)]
pub fn smc(function: u32, args: [u64; 3]) -> [u64; 4] {
    let (r0, r1, r2, r3);
    // SAFETY: as for `hvc`: the hypervisor traps the SMC and returns here.
    unsafe {
        asm!(
            "smc #0",
            inout("x0") function as u64 => r0,
            inout("x1") args[0] => r1,
            inout("x2") args[1] => r2,
            inout("x3") args[2] => r3,
            options(nostack)
        );
    }
    [r0, r1, r2, r3]
}
