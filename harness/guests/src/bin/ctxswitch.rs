//! `ctxswitch`: proves the hypervisor saves and restores a vCPU's whole register state when it
//! switches the physical CPU to another vCPU: the callee-saved general registers `x19..x28`,
//! all 32 SIMD/FP registers `v0..v31` (both 64-bit halves) and FPCR.
//!
//! One `asm!` block loads every one of them with values derived from the VM id (so two VMs
//! sharing a CPU hold different values), then (1) yields `rounds` times with `HV_YIELD`,
//! checking every register after each call, and (2) busy-waits `spin_ms` without any hypercall,
//! so that only a preemption by the hypervisor's timer tick can switch it out, and checks again.
//! Run two of these on one physical CPU (suite `context_switch_one_cpu`): a register the
//! hypervisor fails to switch then holds the other VM's value.
//!
//! Bootargs: `vm_id=<n>` (appended by the runner); `rounds=<n>` (default 200) yields;
//! `spin_ms=<n>` (default 50) busy-wait.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::fmt;

use guest_rt::{check_eq, fail, println, test, time};

guest_rt::test_main!();

const DEFAULT_ROUNDS: u64 = 200;
const DEFAULT_SPIN_MS: u64 = 50;

/// High bits of every register value, recognisable in a dump.
const REGISTER_MARK: u64 = 0xC7C7_0000_0000_0000;
/// The VM id goes into the register values at this bit, above the small per-register offsets.
const VM_ID_SHIFT: u32 = 32;
/// `v<n>` holds `seed + V_OFFSET + 2n` in its low 64 bits and `seed + V_OFFSET + 2n + 1` in its
/// high 64 bits; `x<n>` holds `seed + n` (n = 19..28, below `V_OFFSET`). Every offset fits the
/// 12-bit immediate of `add`.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // only the `asm!` block uses it
const V_OFFSET: u64 = 0x100;

/// FPCR bits 25:22: DN (25), FZ (24) and RMode (23:22), writable on every AArch64 CPU with FP
/// (Arm ARM, FPCR). The test sets them to a non-zero value derived from the VM id.
const FPCR_FIELD_SHIFT: u32 = 22;
const FPCR_FIELD_VALUES: u64 = 0xF;
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // only the `asm!` block uses it
const FPCR_FIELD_MASK: u64 = FPCR_FIELD_VALUES << FPCR_FIELD_SHIFT;

/// Bits of the mismatch mask the `asm!` block returns: one per register that ever held a wrong
/// value. `x19..x28` at bits 0..9, `v0..v31` at 10..41, FPCR at 42.
const FIRST_X: u32 = 19;
const X_REGISTERS: u32 = 10;
const MASK_BIT_V0: u32 = X_REGISTERS;
const V_REGISTERS: u32 = 32;
const MASK_BIT_FPCR: u32 = MASK_BIT_V0 + V_REGISTERS;

/// What the `asm!` block found.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    /// Register checks that failed, over all rounds (a `v` register counts once per half).
    mismatches: u64,
    /// Which registers failed at least once (see [`MASK_BIT_V0`]).
    mask: u64,
    /// `HV_YIELD` calls that did not return SUCCESS.
    yield_errors: u64,
}

/// The value every `x` register is derived from, for VM `vm_id`.
fn seed(vm_id: u64) -> u64 {
    REGISTER_MARK ^ (vm_id << VM_ID_SHIFT)
}

/// The FPCR DN/FZ/RMode bits for VM `vm_id`: 1..15, never the reset value 0, and different for
/// VMs 1 and 2.
fn fpcr_bits(vm_id: u64) -> u64 {
    (1 + vm_id.saturating_sub(1) % FPCR_FIELD_VALUES) << FPCR_FIELD_SHIFT
}

/// The registers set in a mismatch mask, by name.
struct Registers(u64);

impl fmt::Display for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for bit in (0..=MASK_BIT_FPCR).filter(|&bit| self.0 & (1 << bit) != 0) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            match bit {
                _ if bit < MASK_BIT_V0 => write!(f, "x{}", FIRST_X + bit)?,
                _ if bit < MASK_BIT_FPCR => write!(f, "v{}", bit - MASK_BIT_V0)?,
                _ => f.write_str("FPCR")?,
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Loads `x19..x28`, `v0..v31` and FPCR's DN/FZ/RMode from `seed` and `fpcr_bits`, yields
/// `rounds` times then busy-waits `spin_ticks` counter ticks, checking every register after each
/// yield and after the wait. Restores FPCR and `x19` before returning.
#[cfg(target_os = "none")]
fn hold_registers(seed: u64, fpcr_bits: u64, rounds: u64, spin_ticks: u64) -> Outcome {
    use abi::ids::HV_YIELD;
    use abi::Status;
    use core::arch::asm;

    let (mismatches, mask, yield_errors);
    // SAFETY: the block touches no memory and no stack. Every register it writes is an output or
    // declared clobbered, except x19 (LLVM reserves it, so it cannot be an operand) and FPCR,
    // which are saved in x16 and x12 and restored before the end. HV_YIELD returns here with
    // x0..x3 changed and everything else preserved (`abi::guest::hvc`).
    unsafe {
        asm!(
            // x4 = seed, x5 = FPCR bits, x6 = rounds left, x7 = spin ticks, x15 = HV_YIELD;
            // x8 = mismatches, x11 = mismatch mask, x14 = yield errors;
            // x9, x10 scratch; x12 = caller's FPCR; x13 = deadline; x16 = caller's x19.
            "mov x16, x19",
            "mrs x12, fpcr",
            "mov x8, xzr",
            "mov x11, xzr",
            "mov x14, xzr",
            "b 2f",
            // 1: the check, called with `bl`. Adds 1 to x8 per wrong register (half), sets its
            // bit in x11. Clobbers x9, x10, flags.
            "1:",
            r".irp reg, 19,20,21,22,23,24,25,26,27,28",
            r"add x9, x4, #\reg",
            r"cmp x\reg, x9",
            "cset x10, ne",
            "add x8, x8, x10",
            r"orr x11, x11, x10, lsl #(\reg - {first_x})",
            ".endr",
            r".irp reg, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
            r"fmov x9, d\reg",
            r"add x10, x4, #({v_offset} + 2 * \reg)",
            "cmp x9, x10",
            "cset x10, ne",
            "add x8, x8, x10",
            r"orr x11, x11, x10, lsl #({v_bit0} + \reg)",
            r"mov x9, v\reg\().d[1]",
            r"add x10, x4, #({v_offset} + 2 * \reg + 1)",
            "cmp x9, x10",
            "cset x10, ne",
            "add x8, x8, x10",
            r"orr x11, x11, x10, lsl #({v_bit0} + \reg)",
            ".endr",
            "mrs x9, fpcr",
            "and x9, x9, #{fpcr_mask}",
            "cmp x9, x5",
            "cset x10, ne",
            "add x8, x8, x10",
            "orr x11, x11, x10, lsl #{fpcr_bit}",
            "ret",
            // 2: load every register.
            "2:",
            r".irp reg, 19,20,21,22,23,24,25,26,27,28",
            r"add x\reg, x4, #\reg",
            ".endr",
            r".irp reg, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
            r"add x9, x4, #({v_offset} + 2 * \reg)",
            r"fmov d\reg, x9",
            r"add x9, x4, #({v_offset} + 2 * \reg + 1)",
            r"mov v\reg\().d[1], x9",
            ".endr",
            "bic x9, x12, #{fpcr_mask}",
            "orr x9, x9, x5",
            "msr fpcr, x9",
            // 3: phase 1, yield and check, `rounds` times.
            "cbz x6, 4f",
            "3:",
            "mov x0, x15",
            "hvc #0",
            "cmp x0, #{success}",
            "cinc x14, x14, ne",
            "bl 1b",
            "subs x6, x6, #1",
            "b.ne 3b",
            // 4: phase 2, busy-wait without any hypercall, then check.
            "4:",
            "mrs x9, cntvct_el0",
            "add x13, x9, x7",
            "5:",
            "mrs x9, cntvct_el0",
            "cmp x9, x13",
            "b.lo 5b",
            "bl 1b",
            "msr fpcr, x12",
            "mov x19, x16",
            first_x = const FIRST_X,
            v_offset = const V_OFFSET,
            v_bit0 = const MASK_BIT_V0,
            fpcr_mask = const FPCR_FIELD_MASK,
            fpcr_bit = const MASK_BIT_FPCR,
            success = const Status::Success.to_reg(),
            in("x4") seed,
            in("x5") fpcr_bits,
            inout("x6") rounds => _,
            in("x7") spin_ticks,
            out("x8") mismatches,
            out("x11") mask,
            out("x14") yield_errors,
            in("x15") u64::from(HV_YIELD),
            // Clobbered: the call's results, scratch, the saved x19, the link register of `bl`.
            out("x0") _, out("x1") _, out("x2") _, out("x3") _,
            out("x9") _, out("x10") _, out("x12") _, out("x13") _, out("x16") _,
            out("x30") _,
            // Loaded with test values.
            out("x20") _, out("x21") _, out("x22") _, out("x23") _, out("x24") _,
            out("x25") _, out("x26") _, out("x27") _, out("x28") _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack, nomem),
        );
    }
    Outcome {
        mismatches,
        mask,
        yield_errors,
    }
}

/// Host builds: never run (guests only execute in a VM).
#[cfg(not(target_os = "none"))]
fn hold_registers(_seed: u64, _fpcr_bits: u64, _rounds: u64, _spin_ticks: u64) -> Outcome {
    unreachable!()
}

test!(
    fn registers_survive_switches() {
        let Some(vm_id) = guest_rt::param_u64("vm_id") else {
            fail!("bootarg vm_id=<n> missing or not a number");
        };
        let cmdline = guest_rt::cmdline();
        let rounds = cmdline.param_u64_or("rounds", DEFAULT_ROUNDS);
        let spin_ms = cmdline.param_u64_or("spin_ms", DEFAULT_SPIN_MS);
        let spin_ticks = time::ms_to_ticks(spin_ms, time::frequency());

        let outcome = hold_registers(seed(vm_id), fpcr_bits(vm_id), rounds, spin_ticks);
        println!(
            "{rounds} yields and {spin_ms} ms of spinning: {} mismatches ({})",
            outcome.mismatches,
            Registers(outcome.mask)
        );
        check_eq!(
            outcome.yield_errors,
            0,
            "HV_YIELD calls that did not return SUCCESS"
        );
        check_eq!(
            outcome.mismatches,
            0,
            "register checks that failed; registers: {}",
            Registers(outcome.mask)
        );
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
