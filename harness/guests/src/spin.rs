//! Busy-waiting that QEMU runs fast under `-icount`: the CPU-bound VMs of the scheduler suites
//! (`spinner`, `bench_sched`) spin for a second or so of guest time, about 10⁹ instructions.
//!
//! Reading the counter ends QEMU's translated block (and guest-rt's `time::spin_ms` adds an
//! `isb`), so a loop that reads it on every iteration runs about ten times slower than plain
//! arithmetic. [`until`] reads it once per [`INNER`] iterations of a two-instruction loop
//! (2 µs under `-icount shift=0`: the overshoot past the deadline), with no hypercall and no
//! memory access: the vCPU never gives the physical CPU up by itself.

/// Iterations of the inner loop between two reads of the counter.
pub const INNER: u64 = 1000;
/// Instructions per outer iteration of [`until`]'s loop: `mov`, the inner loop (`subs`,
/// `b.ne`), then `add`, `mrs`, `cmp`, `b.lo`.
pub const INSNS_PER_ROUND: u64 = 2 * INNER + 5;

/// Spins until the virtual counter (CNTVCT_EL0) reaches `deadline`; returns how many outer
/// iterations ran (each [`INSNS_PER_ROUND`] instructions).
#[cfg(target_os = "none")]
pub fn until(deadline: u64) -> u64 {
    let rounds: u64;
    // SAFETY: reads the virtual counter (not trapped) and does register arithmetic only.
    unsafe {
        core::arch::asm!(
            "mov {n}, #0",
            "1: mov {i}, #{inner}",
            "2: subs {i}, {i}, #1",
            "b.ne 2b",
            "add {n}, {n}, #1",
            "mrs {now}, cntvct_el0",
            "cmp {now}, {deadline}",
            "b.lo 1b",
            n = out(reg) rounds,
            i = out(reg) _,
            now = out(reg) _,
            deadline = in(reg) deadline,
            inner = const INNER,
            options(nomem, nostack)
        )
    };
    rounds
}

/// Host builds: never run (guests only execute in a VM).
#[cfg(not(target_os = "none"))]
pub fn until(_deadline: u64) -> u64 {
    unreachable!("guest code only runs inside a VM")
}

/// [`until`], keeping the vCPU's virtual timer armed, masked, at most `pace` ticks ahead
/// (re-armed every `pace / 2`). The timer never interrupts (IMASK) and the vCPU still never
/// gives the physical CPU up; what it changes is QEMU: under `-icount` its round robin runs
/// each CPU up to the next timer deadline before the next CPU's turn, so a CPU-bound vCPU with
/// no deadline of its own lets its CPU run for milliseconds while the other CPU's interrupts
/// wait (docs/scheduler.md, "Known limits"). With a deadline always near, QEMU interleaves
/// the CPUs every `pace / 2` or so, as real CPUs run at once.
#[cfg(target_os = "none")]
pub fn until_paced(deadline: u64, pace: u64) -> u64 {
    const ENABLE_MASKED: u64 = 0b11;
    let rounds: u64;
    let half = (pace / 2).max(1);
    // SAFETY: reads the virtual counter and writes the vCPU's own virtual timer (masked: it
    // cannot interrupt); register arithmetic only.
    unsafe {
        core::arch::asm!(
            "msr cntv_ctl_el0, {ctl}",
            "mov {n}, #0",
            "mov {next}, #0",
            "1: mov {i}, #{inner}",
            "2: subs {i}, {i}, #1",
            "b.ne 2b",
            "add {n}, {n}, #1",
            "mrs {now}, cntvct_el0",
            "cmp {now}, {next}",
            "b.lo 3f",
            "add {next}, {now}, {pace}",
            "msr cntv_cval_el0, {next}",
            "sub {next}, {next}, {half}",
            "3: cmp {now}, {deadline}",
            "b.lo 1b",
            "msr cntv_ctl_el0, xzr",
            n = out(reg) rounds,
            i = out(reg) _,
            now = out(reg) _,
            next = out(reg) _,
            ctl = in(reg) ENABLE_MASKED,
            pace = in(reg) pace,
            half = in(reg) half,
            deadline = in(reg) deadline,
            inner = const INNER,
            options(nomem, nostack)
        )
    };
    rounds
}

/// Host builds: never run (guests only execute in a VM).
#[cfg(not(target_os = "none"))]
pub fn until_paced(_deadline: u64, _pace: u64) -> u64 {
    unreachable!("guest code only runs inside a VM")
}

/// Spins for `ms` milliseconds of the virtual counter.
pub fn ms(ms: u64) -> u64 {
    let now = guest_rt::time::now();
    until(now.saturating_add(guest_rt::time::ms_to_ticks(ms, guest_rt::time::frequency())))
}
