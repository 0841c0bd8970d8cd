//! Entry point, stack, exception vectors and panic handler of the management VM.
//!
//! Entry contract (docs/architecture.md, "Guests"): the boot vCPU starts at `_start` at EL1h,
//! DAIF masked, MMU and caches off, `x0` = the device tree's IPA. linker/guest.ld links us at
//! IPA 0x8000_0000, places `.bss.ht_stacks` (NOBITS, never zeroed) first and brackets the
//! `.bss` that `_start` zeroes with `__bss_start` / `__bss_end`.

use core::arch::global_asm;
use core::fmt::Write;

use super::console::{self, FixedLine};

/// CPACR_EL1.FPEN, bits \[21:20\] = 0b11: FP/SIMD not trapped (Arm ARM, CPACR_EL1). Compiled
/// Rust uses SIMD registers (memcpy), so this is set before any Rust code runs.
const CPACR_EL1_FPEN_NO_TRAP: u64 = 0b11 << 20;

/// The one stack, in 4 KiB pages: the agent recurses little (the tree is a map).
const STACK_PAGES: usize = 16;
/// A separate stack for the exception reporter: the main one may be what failed.
const EXCEPTION_STACK_PAGES: usize = 4;

/// Both stacks, the main one first: at the very bottom of RAM (guest.ld puts
/// `.bss.ht_stacks` at the RAM base), so that an overflow leaves RAM and faults at stage 2
/// (`#HV vm-fault`) instead of overwriting anything.
#[repr(C, align(4096))]
struct Stacks {
    main: [u8; STACK_PAGES * 4096],
    exception: [u8; EXCEPTION_STACK_PAGES * 4096],
}

#[link_section = ".bss.ht_stacks"]
static mut STACKS: Stacks = Stacks {
    main: [0; STACK_PAGES * 4096],
    exception: [0; EXCEPTION_STACK_PAGES * 4096],
};

global_asm!(
    r#"
    .pushsection .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    mov     x19, x0
    mov     x9, #{cpacr}
    msr     cpacr_el1, x9
    adrp    x9, __virmo_vectors
    add     x9, x9, :lo12:__virmo_vectors
    msr     vbar_el1, x9
    isb
    // Zero .bss (8-byte aligned at both ends, guest.ld). No stack is in use yet.
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    str     xzr, [x9], #8
    b       1b
2:  adrp    x9, {stacks}
    add     x9, x9, :lo12:{stacks}
    add     sp, x9, #{main_top_pages}, lsl #12
    mov     x0, x19
    bl      {main}
3:  wfe
    b       3b
    .size _start, . - _start
    .popsection

    // VBAR_EL1 table (Arm ARM D1.10.2): 16 entries of 0x80 bytes, 2 KiB aligned. Interrupts
    // are masked, so any entry is a fault: report it and power off.
    .pushsection .text.vectors, "ax"
    .balign 0x800
__virmo_vectors:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    mov     x0, #\vector
    b       __virmo_exception
    .endr
__virmo_exception:
    adrp    x9, {stacks}
    add     x9, x9, :lo12:{stacks}
    add     sp, x9, #{exception_top_pages}, lsl #12
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    bl      {exception}
4:  wfe
    b       4b
    .popsection
    "#,
    cpacr = const CPACR_EL1_FPEN_NO_TRAP,
    stacks = sym STACKS,
    main_top_pages = const STACK_PAGES,
    exception_top_pages = const STACK_PAGES + EXCEPTION_STACK_PAGES,
    main = sym boot_main,
    exception = sym exception,
);

extern "C" fn boot_main(dtb_ipa: u64) -> ! {
    super::agent_main(dtb_ipa)
}

extern "C" fn exception(vector: u64, esr: u64, elr: u64, far: u64) -> ! {
    let mut line = FixedLine::new();
    let _ = write!(
        line,
        "# virmo-agent: unexpected exception vector={vector} ESR={esr:#x} ELR={elr:#x} FAR={far:#x}"
    );
    console::raw_line(line.as_bytes());
    system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // No allocation here: the heap may be what failed.
    let mut line = FixedLine::new();
    let _ = write!(line, "# virmo-agent panic: {}", info.message());
    if let Some(at) = info.location() {
        let _ = write!(line, " at {}:{}", at.file(), at.line());
    }
    console::raw_line(line.as_bytes());
    system_off()
}

/// PSCI SYSTEM_OFF: the hypervisor stops this VM (`#HV vm-stopped ... reason=system-off`).
fn system_off() -> ! {
    abi::guest::hvc(abi::ids::PSCI_SYSTEM_OFF, [0; 3]);
    loop {
        aarch64_wfe();
    }
}

fn aarch64_wfe() {
    // SAFETY: WFE only waits for an event; it touches no memory.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) };
}
