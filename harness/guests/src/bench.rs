//! The loops `bench_hvc` measures: back-to-back null hypercalls, and the same loop without the
//! `hvc` instruction, whose instruction count is subtracted to leave the cost of the call.

use abi::ids::HV_ABI_VERSION;

/// Makes `calls` `HV_ABI_VERSION` calls back to back; returns how many returned SUCCESS.
#[inline(never)]
pub fn null_hypercalls(calls: u64) -> u64 {
    call_loop::<true>(calls)
}

/// [`null_hypercalls`] with the `hvc` instruction left out: the same code otherwise.
#[inline(never)]
pub fn baseline(calls: u64) -> u64 {
    call_loop::<false>(calls)
}

#[inline(always)]
fn call_loop<const TRAP: bool>(calls: u64) -> u64 {
    let mut succeeded = 0;
    for _ in 0..calls {
        succeeded += (call::<TRAP>(HV_ABI_VERSION) == 0) as u64;
    }
    succeeded
}

/// `hvc #0` with the register use of `abi::guest::hvc`, or, for the baseline, no instruction
/// with the same register use (so the compiler generates the same code around it).
#[cfg(target_os = "none")]
#[inline(always)]
fn call<const TRAP: bool>(function: u32) -> u64 {
    let status: u64;
    // SAFETY: as `abi::guest::hvc`: the hypervisor returns here with x0..x3 updated and touches
    // no memory of ours. The baseline template contains no instruction at all.
    unsafe {
        if TRAP {
            core::arch::asm!(
                "hvc #0",
                inout("x0") function as u64 => status,
                inout("x1") 0u64 => _, inout("x2") 0u64 => _, inout("x3") 0u64 => _,
                options(nostack)
            );
        } else {
            core::arch::asm!(
                "// baseline: no hvc",
                inout("x0") function as u64 => status,
                inout("x1") 0u64 => _, inout("x2") 0u64 => _, inout("x3") 0u64 => _,
                options(nostack)
            );
        }
    }
    status
}

/// Host builds: never run (guests only execute in a VM).
#[cfg(not(target_os = "none"))]
fn call<const TRAP: bool>(_function: u32) -> u64 {
    unreachable!()
}
