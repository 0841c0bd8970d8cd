//! AArch64 EL1 with the MMU off: entry points, exception vectors, system registers, hypercalls.
//!
//! Entry contract (docs/architecture.md, "Guests"): every vCPU starts at EL1h with DAIF masked
//! and the MMU and caches off; the boot vCPU enters at `_start` with `x0` = IPA of the device
//! tree, secondary vCPUs enter where PSCI `CPU_ON` said with `x0` = its context id.
//!
//! With the MMU off every data access is Device-nGnRnE: unaligned accesses fault (the target is
//! built with `+strict-align`) and exclusives are not guaranteed to work (see [`crate::sync`]).

use core::arch::global_asm;

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0, MPIDR_EL1};

use super::{MAX_VCPUS, STACK_SIZE};

pub use abi::guest::{hvc, smc};

/// CPACR_EL1.FPEN, bits \[21:20\] = 0b11: FP/SIMD instructions at EL1 and EL0 are not trapped
/// (Arm ARM, CPACR_EL1). Its reset value is UNKNOWN, and compiled Rust uses SIMD registers (for
/// `memcpy`, for example), so it is set before any Rust code runs.
const CPACR_EL1_FPEN_NO_TRAP: u64 = 0b11 << 20;

/// MPIDR_EL1.Aff0, bits \[7:0\]: the hypervisor numbers vCPUs 0..n in Aff0, the same number PSCI
/// `CPU_ON` takes as target.
const MPIDR_AFF0_MASK: u64 = 0xff;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// One stack per vCPU, vCPU `i` using `STACKS[i]` (growing down from its end). The section
/// name makes it NOBITS, and guest.ld places it before (so outside) the `.bss` that `_start`
/// zeroes: a secondary vCPU must never find its stack being cleared, and no clearing is needed.
#[link_section = ".bss.ht_stacks"]
static mut STACKS: [Stack; MAX_VCPUS] = [const { Stack([0; STACK_SIZE]) }; MAX_VCPUS];

global_asm!(
    r#"
    .pushsection .text.boot, "ax"

    // Boot vCPU. x0 = IPA of the device tree, kept in x19 (callee-saved, nothing here uses it).
    .global _start
    .type _start, %function
_start:
    mov     x19, x0
    bl      __ht_cpu_init
    // Zero .bss (8-byte aligned at both ends, guest.ld). No stack is in use yet.
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
2:  cmp     x9, x10
    b.hs    3f
    str     xzr, [x9], #8
    b       2b
3:  bl      __ht_set_stack
    mov     x0, x19
    bl      {boot_vcpu}
    b       __ht_park
    .size _start, . - _start

    // Secondary vCPUs, started by PSCI CPU_ON. x0 = context id, kept in x19.
    .global __ht_secondary_entry
    .type __ht_secondary_entry, %function
__ht_secondary_entry:
    mov     x19, x0
    bl      __ht_cpu_init
    bl      __ht_set_stack
    mov     x0, x19
    bl      {secondary_vcpu}
    b       __ht_park
    .size __ht_secondary_entry, . - __ht_secondary_entry

    // Per-vCPU system registers, before any Rust code runs. Leaf; clobbers x9.
__ht_cpu_init:
    mov     x9, #{cpacr}
    msr     cpacr_el1, x9
    adrp    x9, __ht_vectors
    add     x9, x9, :lo12:__ht_vectors
    msr     vbar_el1, x9
    isb
    ret

    // SP = top of this vCPU's stack; a vCPU without a stack is parked. Leaf; clobbers x9-x11.
__ht_set_stack:
    mrs     x9, mpidr_el1
    and     x9, x9, #{aff0_mask}
    cmp     x9, #{max_vcpus}
    b.hs    __ht_park
    add     x9, x9, #1
    mov     x10, #{stack_size}
    adrp    x11, {stacks}
    add     x11, x11, :lo12:{stacks}
    madd    x11, x9, x10, x11
    mov     sp, x11
    ret

    // Last resort when even reporting is impossible. DAIF is masked, so only events wake it.
__ht_park:
    wfe
    b       __ht_park

    .popsection

    // VBAR_EL1 table (Arm ARM D1.10.2): 16 entries of 0x80 bytes, 2 KiB aligned. Guests run
    // with every interrupt masked, so any entry means something went wrong: each passes its
    // index to the reporter.
    .pushsection .text.vectors, "ax"
    .balign 0x800
__ht_vectors:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    mov     x0, #\vector
    b       __ht_exception
    .endr

    // A fresh stack: the interrupted one may be what failed. We never return.
__ht_exception:
    mov     x19, x0
    bl      __ht_set_stack
    mov     x0, x19
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    bl      {exception}
    b       __ht_park

    .popsection
    "#,
    boot_vcpu = sym boot_vcpu,
    secondary_vcpu = sym secondary_vcpu,
    exception = sym exception,
    stacks = sym STACKS,
    cpacr = const CPACR_EL1_FPEN_NO_TRAP,
    aff0_mask = const MPIDR_AFF0_MASK,
    max_vcpus = const MAX_VCPUS,
    stack_size = const STACK_SIZE,
);

extern "C" {
    /// The secondary entry point above; only its address is used.
    fn __ht_secondary_entry();
}

extern "C" fn boot_vcpu(dtb_ipa: u64) -> ! {
    crate::boot::boot_vcpu_main(dtb_ipa)
}

extern "C" fn secondary_vcpu(context: u64) -> ! {
    crate::psci::secondary_vcpu_main(context)
}

/// Names of the 16 vector table entries: 4 origins × 4 kinds (Arm ARM D1.10.2).
const VECTOR_ORIGINS: [&str; 4] = ["el1t", "el1h", "el0-aarch64", "el0-aarch32"];
const VECTOR_KINDS: [&str; 4] = ["sync", "irq", "fiq", "serror"];

extern "C" fn exception(vector: u64, esr: u64, elr: u64, far: u64) -> ! {
    let vector = vector as usize;
    crate::harness::abort(format_args!(
        "unexpected exception ESR={esr:#x} ELR={elr:#x} FAR={far:#x} vector={}-{}",
        VECTOR_ORIGINS[vector / 4],
        VECTOR_KINDS[vector % 4],
    ))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(at) => crate::harness::abort(format_args!(
            "panic: {} at {}:{}",
            info.message(),
            at.file(),
            at.line()
        )),
        None => crate::harness::abort(format_args!("panic: {}", info.message())),
    }
}

/// The virtual counter (CNTVCT_EL0, not trapped by the hypervisor).
pub fn counter() -> u64 {
    // SAFETY: `isb` has no memory effect; it only keeps the counter read from being executed
    // before the instructions that precede it, so time measurements bracket what they measure.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
    CNTVCT_EL0.get()
}

/// Counter ticks per second (CNTFRQ_EL0).
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// This vCPU's index (MPIDR_EL1.Aff0). Always `< MAX_VCPUS`: the entry code parks others.
pub fn vcpu_index() -> usize {
    (MPIDR_EL1.get() & MPIDR_AFF0_MASK) as usize
}

/// Makes this vCPU's earlier stores visible to the other vCPUs before anything that follows
/// (another store, or a hypercall that wakes a vCPU).
pub fn publish() {
    // SAFETY: a full-system data synchronization barrier only orders and completes memory
    // accesses; it changes no state.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Stops this vCPU for good, without a hypercall.
pub fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// The IPA of the entry point for vCPUs started with [`crate::psci::start_vcpu`].
pub fn secondary_entry_ipa() -> u64 {
    // With the MMU off an address is its IPA.
    __ht_secondary_entry as *const () as u64
}
