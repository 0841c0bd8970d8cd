//! The EL2 exception vector table and the guest entry/exit paths.
//!
//! Owns: the register file of a guest between its exception and the Rust handler. While a guest
//! runs, SP_EL2 points at its vCPU's saved-register area ([`GuestRegs`]), so an exit can store
//! all 31 general-purpose registers without needing a scratch register; the handler then runs
//! on this CPU's stack, found through TPIDR_EL2 (a [`crate::arch::percpu::PerCpu`], whose first
//! field is the stack top). The handler returns the register area of the vCPU to resume, which
//! may be another vCPU's: that is a vCPU switch.
//!
//! Hypercalls (HVC64) and interrupts (IRQ, FIQ), the hot paths, save only what the handler may
//! clobber: the AAPCS64 caller-saved registers x0..x18 and x30. The guest's x19..x29 stay live
//! in the CPU, preserved by the handler as the procedure call standard requires, and are stored
//! only if the exit ends in a vCPU switch (`exit_return`). Every other exit saves all 31
//! registers before any Rust runs.
//!
//! Exceptions taken from EL2 itself are hypervisor bugs: they print a crash report and halt.
//! `ELR_EL2`/`SPSR_EL2` are not saved here: they stay live in their registers unless the
//! handler switches vCPUs, which keeps the hypercall round trip short.

use core::arch::global_asm;

/// The general-purpose registers of a vCPU, as the exit path stores them. Must stay the first
/// field of the vCPU context: the assembly addresses it through SP_EL2.
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestRegs {
    pub x: [u64; 31],
    _pad: u64,
}

/// What the crash path stores on the stack: x0..x30, then ELR, SPSR, ESR, FAR, SP at entry.
#[repr(C)]
pub struct CrashFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
    pub sp: u64,
}

global_asm!(
    r#"
// x2..x17 into the register area at SP (x0 and x1 are stored first by every path).
.macro SAVE_X2_X17
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
.endm

// x18..x29: with x2..x17 and x30, the full save.
.macro SAVE_X18_X29
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
.endm

// The mirror images, from the register area at SP.
.macro LOAD_X2_X17
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x16, x17, [sp, #16 * 8]
.endm

.macro LOAD_X18_X29
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x28, x29, [sp, #16 * 14]
.endm

// x0 = the register area; SP = this CPU's hypervisor stack (TPIDR_EL2 -> PerCpu.stack_top).
.macro TO_CPU_STACK
    mov     x0, sp
    mrs     x1, tpidr_el2
    ldr     x1, [x1]
    mov     sp, x1
.endm

.macro GUEST_EXIT_PARTIAL handler
    stp     x0, x1, [sp, #16 * 0]
    SAVE_X2_X17
    str     x18, [sp, #16 * 9]
    str     x30, [sp, #16 * 15]
    TO_CPU_STACK
    bl      \handler
    b       exit_return
.endm

.macro GUEST_EXIT handler
    stp     x0, x1, [sp, #16 * 0]
    SAVE_X2_X17
    SAVE_X18_X29
    str     x30, [sp, #16 * 15]
    TO_CPU_STACK
    bl      \handler
    b       enter_guest
.endm

.macro HYP_CRASH kind
    sub     sp, sp, #(8 * 36)
    stp     x0, x1, [sp, #16 * 0]
    SAVE_X2_X17
    SAVE_X18_X29
    mov     x0, #\kind
    b       hyp_crash_common
.endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global exception_vectors
exception_vectors:
    // Current EL with SP_EL0: never used at EL2 (SPSel is 1).
    .balign 0x80
    HYP_CRASH 0
    .balign 0x80
    HYP_CRASH 1
    .balign 0x80
    HYP_CRASH 2
    .balign 0x80
    HYP_CRASH 3
    // Current EL with SP_EL2: a fault in the hypervisor.
    .balign 0x80
    HYP_CRASH 4
    .balign 0x80
    HYP_CRASH 5
    .balign 0x80
    HYP_CRASH 6
    .balign 0x80
    HYP_CRASH 7
    // Lower EL using AArch64: the guests.
    .balign 0x80
    stp     x0, x1, [sp, #16 * 0]
    mrs     x0, esr_el2
    lsr     x0, x0, #26
    cmp     x0, #0x16               // ESR_EL2.EC == HVC64
    b.ne    guest_sync_full
    SAVE_X2_X17
    str     x18, [sp, #16 * 9]
    str     x30, [sp, #16 * 15]
    TO_CPU_STACK
    bl      handle_guest_hvc
    b       exit_return
    .balign 0x80
    GUEST_EXIT_PARTIAL handle_guest_irq
    .balign 0x80
    GUEST_EXIT_PARTIAL handle_guest_fiq
    .balign 0x80
    GUEST_EXIT handle_guest_serror
    // Lower EL using AArch32: EL1 is always AArch64 (HCR_EL2.RW), but a guest's EL0 may not be.
    .balign 0x80
    GUEST_EXIT handle_guest_sync
    .balign 0x80
    GUEST_EXIT_PARTIAL handle_guest_irq
    .balign 0x80
    GUEST_EXIT_PARTIAL handle_guest_fiq
    .balign 0x80
    GUEST_EXIT handle_guest_serror

    // A synchronous exit that is not a hypercall: x0 and x1 are saved, x0 was clobbered.
guest_sync_full:
    SAVE_X2_X17
    SAVE_X18_X29
    str     x30, [sp, #16 * 15]
    TO_CPU_STACK
    bl      handle_guest_sync
    b       enter_guest

    // After a partial exit (hypercall, interrupt): x0 = the registers to resume, or 0 when
    // the exit ended the vCPU's turn, with x1 = its registers.
exit_return:
    cbz     x0, 1f
    mov     sp, x0
    LOAD_X2_X17
    ldr     x18, [sp, #16 * 9]
    ldr     x30, [sp, #16 * 15]
    ldp     x0, x1, [sp, #16 * 0]
    eret
    dsb     nsh
    isb
1:  // The vCPU may leave this CPU: complete its saved registers with x19..x29, still live.
    str     x19, [x1, #8 * 19]
    stp     x20, x21, [x1, #16 * 10]
    stp     x22, x23, [x1, #16 * 11]
    stp     x24, x25, [x1, #16 * 12]
    stp     x26, x27, [x1, #16 * 13]
    stp     x28, x29, [x1, #16 * 14]
    bl      handle_guest_reschedule
    b       enter_guest

    .balign 0x80
hyp_crash_common:
    // x0 = vector kind; x0/x1 are already saved in the frame.
    str     x30, [sp, #16 * 15]
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x1, x2, [sp, #8 * 31]
    mrs     x1, esr_el2
    mrs     x2, far_el2
    stp     x1, x2, [sp, #8 * 33]
    add     x1, sp, #(8 * 36)
    str     x1, [sp, #8 * 35]
    mov     x1, x0
    mov     x0, sp
    bl      hyp_crash
    b       .

    // x0 = the GuestRegs of the vCPU to run. ELR_EL2, SPSR_EL2 and the vCPU's system
    // registers are already loaded. Never returns: the next guest exit re-enters the vectors.
    .global enter_guest
enter_guest:
    mov     sp, x0
    LOAD_X2_X17
    LOAD_X18_X29
    ldr     x30, [sp, #16 * 15]
    ldp     x0, x1, [sp, #16 * 0]
    eret
    // No straight-line speculation past the eret.
    dsb     nsh
    isb
"#
);

/// What the handler of a partial exit (hypercall, interrupt) tells the assembly: resume
/// `resume` (the vCPU that exited) on the short path, or, when `resume` is null, complete its
/// saved registers (`regs`) and reschedule.
#[repr(C)]
pub struct PartialExit {
    pub resume: *mut GuestRegs,
    pub regs: *mut GuestRegs,
}

extern "C" {
    /// Loads the general-purpose registers from `regs` and returns to the guest.
    pub fn enter_guest(regs: *mut GuestRegs) -> !;
}
