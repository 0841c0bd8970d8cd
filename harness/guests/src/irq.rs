//! An EL1 exception vector table that takes interrupts, for the `bench_virq` measurement, and
//! the virtual timer it is driven by.
//!
//! guest-rt's own table treats every exception as fatal (its guests run with interrupts
//! masked). [`install`] replaces it with one whose IRQ entry (current EL with SP_ELx, offset
//! 0x280, Arm ARM D1.10.2) handles the interrupt completely in a few instructions of assembly,
//! so that nothing the compiler generated can be disturbed (it saves and restores the four
//! registers it uses, and touches no FP/SIMD register):
//!
//! 1. reads PMU event counter 0 first thing (for `bench_virq`: the EL2-only instruction count,
//!    see `pmu`) into [`IrqRecord::el2_at_entry`];
//! 2. acknowledges the interrupt (ICC_IAR1_EL1) and records its INTID;
//! 3. if it is the virtual timer's PPI 27, disables the timer (CNTV_CTL_EL0 = 0), so that its
//!    output drops before the interrupt is deactivated;
//! 4. ends it (ICC_EOIR1_EL1; with EOImode 0 this also deactivates it, which for the
//!    hardware-linked virtual timer deactivates the physical interrupt too), unless it is a
//!    special INTID (1020..1023, nothing to end);
//! 5. increments [`IrqRecord::count`] last, which is what the interrupted code waits for.
//!
//! Every other entry reports an unexpected exception through a panic (which guest-rt turns
//! into a failed test).

/// What the IRQ handler leaves behind, read with [`record`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqRecord {
    /// Interrupts taken since boot.
    pub count: u64,
    /// PMEVCNTR0_EL0 at the entry of the last one.
    pub el2_at_entry: u64,
    /// What ICC_IAR1_EL1 returned for the last one.
    pub intid: u64,
}

/// CNTV_CTL_EL0.ENABLE (bit 0); IMASK (bit 1) left 0: the timer asserts its interrupt when
/// CNTVCT_EL0 ≥ CNTV_CVAL_EL0.
pub const CNTV_CTL_ENABLE: u64 = 1;

#[cfg(target_os = "none")]
mod imp {
    use super::IrqRecord;
    use core::arch::{asm, global_asm};
    use core::ptr::{addr_of, read_volatile};

    // Written by the IRQ entry only (8-byte aligned for its `str`), read by the interrupted
    // code with volatile loads. With the MMU off every access is Device-nGnRnE, so ordering
    // between the entry's stores and the program's loads is program order on this vCPU.
    #[no_mangle]
    static mut BENCH_IRQ_COUNT: u64 = 0;
    #[no_mangle]
    static mut BENCH_IRQ_EL2: u64 = 0;
    #[no_mangle]
    static mut BENCH_IRQ_INTID: u64 = 0;

    global_asm!(
        r#"
    .pushsection .text.bench_vectors, "ax"
    .balign 0x800
    .global bench_vectors
bench_vectors:
    .irp vector, 0,1,2,3,4
    .balign 0x80
    mov     x0, #\vector
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    b       {unexpected}
    .endr

    // 5: IRQ, current EL with SP_ELx.
    .balign 0x80
    stp     x0, x1, [sp, #-32]!
    mrs     x0, pmevcntr0_el0
    stp     x2, x3, [sp, #16]
    adrp    x1, BENCH_IRQ_EL2
    str     x0, [x1, :lo12:BENCH_IRQ_EL2]
    mrs     x0, icc_iar1_el1
    adrp    x1, BENCH_IRQ_INTID
    str     x0, [x1, :lo12:BENCH_IRQ_INTID]
    and     x2, x0, #0xffffff
    cmp     x2, #1020
    b.hs    2f
    cmp     x2, #{vtimer}
    b.ne    1f
    msr     cntv_ctl_el0, xzr
    isb
1:  msr     icc_eoir1_el1, x0
2:  adrp    x1, BENCH_IRQ_COUNT
    ldr     x3, [x1, :lo12:BENCH_IRQ_COUNT]
    add     x3, x3, #1
    str     x3, [x1, :lo12:BENCH_IRQ_COUNT]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp], #32
    eret

    .irp vector, 6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    mov     x0, #\vector
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    b       {unexpected}
    .endr
    .popsection
    "#,
        unexpected = sym unexpected,
        vtimer = const crate::gicv3::VTIMER_INTID,
    );

    extern "C" {
        static bench_vectors: [u8; 0];
    }

    const ORIGINS: [&str; 4] = ["el1t", "el1h", "el0-aarch64", "el0-aarch32"];
    const KINDS: [&str; 4] = ["sync", "irq", "fiq", "serror"];

    extern "C" fn unexpected(vector: u64, esr: u64, elr: u64) -> ! {
        let v = (vector as usize) % 16;
        panic!(
            "unexpected exception ESR={esr:#x} ELR={elr:#x} vector={}-{} (bench vectors)",
            ORIGINS[v / 4],
            KINDS[v % 4]
        )
    }

    pub fn install() -> u64 {
        let old: u64;
        // SAFETY: `bench_vectors` is a complete, 2 KiB-aligned vector table whose entries
        // either handle an IRQ and return or report; VBAR_EL1 only affects this vCPU.
        unsafe {
            asm!("mrs {}, vbar_el1", out(reg) old, options(nomem, nostack));
            asm!("msr vbar_el1, {}", "isb", in(reg) addr_of!(bench_vectors) as u64, options(nostack));
        }
        old
    }

    pub fn restore(vbar: u64) {
        // SAFETY: puts back the table `install` replaced.
        unsafe { asm!("msr vbar_el1, {}", "isb", in(reg) vbar, options(nostack)) };
    }

    pub fn unmask() {
        // SAFETY: only lets IRQs in; the installed table handles them.
        unsafe { asm!("msr daifclr, #2", "isb", options(nostack)) };
    }

    pub fn mask() {
        // SAFETY: masking IRQs has no other effect.
        unsafe { asm!("msr daifset, #2", "isb", options(nostack)) };
    }

    pub fn record() -> IrqRecord {
        // SAFETY: aligned statics, only written by the IRQ entry; volatile reads see its
        // stores (see above).
        unsafe {
            IrqRecord {
                count: read_volatile(addr_of!(BENCH_IRQ_COUNT)),
                el2_at_entry: read_volatile(addr_of!(BENCH_IRQ_EL2)),
                intid: read_volatile(addr_of!(BENCH_IRQ_INTID)),
            }
        }
    }

    pub fn irq_count() -> u64 {
        // SAFETY: as in `record`.
        unsafe { read_volatile(addr_of!(BENCH_IRQ_COUNT)) }
    }

    pub fn virtual_count() -> u64 {
        let v: u64;
        // SAFETY: reading the virtual counter has no side effect (not trapped).
        unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
        v
    }

    pub fn arm_virtual_timer(cval: u64) {
        // SAFETY: the virtual timer belongs to this vCPU; the `isb` makes it take effect.
        unsafe {
            asm!(
                "msr cntv_cval_el0, {cval}",
                "msr cntv_ctl_el0, {ctl}",
                "isb",
                cval = in(reg) cval,
                ctl = in(reg) super::CNTV_CTL_ENABLE,
                options(nostack)
            )
        };
    }

    pub fn disable_virtual_timer() {
        // SAFETY: as for `arm_virtual_timer`.
        unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nostack)) };
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::IrqRecord;
    const ONLY_IN_A_VM: &str = "guest code only runs inside a VM";
    pub fn install() -> u64 {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn restore(_: u64) {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn unmask() {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn mask() {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn record() -> IrqRecord {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn irq_count() -> u64 {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn virtual_count() -> u64 {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn arm_virtual_timer(_: u64) {
        unreachable!("{ONLY_IN_A_VM}")
    }
    pub fn disable_virtual_timer() {
        unreachable!("{ONLY_IN_A_VM}")
    }
}

/// CNTV_CVAL_EL0 = `cval`, CNTV_CTL_EL0 = ENABLE.
pub use imp::arm_virtual_timer;
/// CNTV_CTL_EL0 = 0.
pub use imp::disable_virtual_timer;
/// Installs the table; returns the previous VBAR_EL1 for [`restore`].
pub use imp::install;
/// [`IrqRecord::count`] alone: what a waiting loop polls.
pub use imp::irq_count;
/// Masks IRQs again.
pub use imp::mask;
/// The handler's record.
pub use imp::record;
/// Puts back a VBAR_EL1 that [`install`] returned.
pub use imp::restore;
/// Unmasks IRQs (PSTATE.I = 0).
pub use imp::unmask;
/// CNTVCT_EL0 after an `isb`.
pub use imp::virtual_count;
