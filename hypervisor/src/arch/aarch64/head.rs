//! The first instructions: the arm64 Image header, the primary and secondary CPU entry points.
//!
//! Owns: the state of a CPU from reset until Rust runs on its own stack. It must never touch
//! memory other than its own stack and .bss before the MMU is on.

use core::arch::global_asm;

// Linux arm64 boot protocol (Documentation/arch/arm64/booting.rst): a 64-byte header whose
// first word branches to the code, then text_offset, image_size, flags and the "ARM\x64" magic.
// flags = 0b0010: little-endian (bit 0 = 0), 4 KiB pages (bits 1-2 = 1), placed near the start
// of DRAM (bit 3 = 0: the image is linked at a fixed address, it is not relocatable).
global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       primary_entry
    .word   0
    .quad   0                       // text_offset: load at a 2 MiB aligned base
    .quad   __hv_image_size         // image_size, including .bss and stacks
    .quad   0b0010                  // flags
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .word   0                       // res5 (no PE/COFF header)

primary_entry:
    mov     x19, x0                 // device tree address (boot protocol)
    msr     spsel, #1
    // The primary CPU uses stack 0.
    mov     x0, #0
    bl      cpu_stack_top
    mov     sp, x0

    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2
    cmp     x20, #2
    b.eq    1f
    // Wrong exception level: report it on the fallback console and halt.
    mov     x0, x20
    mov     x1, x19
    bl      wrong_exception_level
1:
    // Zero .bss (the stacks are outside it, in their own NOLOAD section).
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
2:  cmp     x0, x1
    b.hs    3f
    stp     xzr, xzr, [x0], #16
    b       2b
3:
    adrp    x0, exception_vectors
    add     x0, x0, :lo12:exception_vectors
    msr     vbar_el2, x0
    isb
    mov     x0, x19
    bl      primary_main
    b       .

    // Entered through PSCI CPU_ON with x0 = our CPU index (the context id we passed).
    .global secondary_entry
secondary_entry:
    mov     x19, x0
    msr     spsel, #1
    bl      cpu_stack_top
    mov     sp, x0
    adrp    x0, exception_vectors
    add     x0, x0, :lo12:exception_vectors
    msr     vbar_el2, x0
    isb
    mov     x0, x19
    bl      secondary_main
    b       .

    // x0 = CPU index -> x0 = top of that CPU's stack. Clobbers x1, x2 only (no stack yet).
cpu_stack_top:
    adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    mov     x2, #0x1100             // (STACK_GUARD_SIZE + CPU_STACK_SIZE) >> 4, see
    lsl     x2, x2, #4              // linker/hypervisor.ld
    add     x0, x0, #1
    madd    x0, x0, x2, x1
    ret
"#
);

/// Stack geometry, mirrored from `linker/hypervisor.ld`.
pub const CPU_STACK_SIZE: u64 = 0x10000;
pub const STACK_GUARD_SIZE: u64 = 0x1000;

extern "C" {
    static __hv_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __bss_end: u8;
    static __stacks_start: u8;
    static __stacks_end: u8;
    static __hv_end: u8;
    pub fn secondary_entry();
}

/// Addresses of the image's sections, from the linker script.
#[derive(Debug, Clone, Copy)]
pub struct ImageLayout {
    pub start: u64,
    pub text_end: u64,
    pub rodata_end: u64,
    pub data_start: u64,
    pub bss_end: u64,
    pub stacks_start: u64,
    pub stacks_end: u64,
    pub end: u64,
}

pub fn image_layout() -> ImageLayout {
    // SAFETY: only the addresses of linker-defined symbols are taken, never their contents.
    unsafe {
        ImageLayout {
            start: &__hv_start as *const u8 as u64,
            text_end: &__text_end as *const u8 as u64,
            rodata_end: &__rodata_end as *const u8 as u64,
            data_start: &__data_start as *const u8 as u64,
            bss_end: &__bss_end as *const u8 as u64,
            stacks_start: &__stacks_start as *const u8 as u64,
            stacks_end: &__stacks_end as *const u8 as u64,
            end: &__hv_end as *const u8 as u64,
        }
    }
}
