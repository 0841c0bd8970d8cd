//! The parts of a vCPU's state that live in system registers while it runs: the EL1 system
//! registers, FP/SIMD, and the exception return state.
//!
//! Owns: moving that state between the registers and memory on a vCPU switch. The hypervisor
//! itself is built soft-float and never touches FP/SIMD, so guest FP state stays live in the
//! registers across traps and is only switched here.

use core::arch::asm;

/// EL1 system registers of a vCPU (Arm ARM D13.2, the AArch64 system register descriptions).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct El1SysRegs {
    pub sctlr_el1: u64,
    pub ttbr0_el1: u64,
    pub ttbr1_el1: u64,
    pub tcr_el1: u64,
    pub mair_el1: u64,
    pub amair_el1: u64,
    pub vbar_el1: u64,
    pub contextidr_el1: u64,
    pub tpidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub sp_el1: u64,
    pub sp_el0: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: u64,
    pub afsr0_el1: u64,
    pub afsr1_el1: u64,
    pub par_el1: u64,
    pub cpacr_el1: u64,
    pub csselr_el1: u64,
    pub cntkctl_el1: u64,
    pub cntv_ctl_el0: u64,
    pub cntv_cval_el0: u64,
    pub mdscr_el1: u64,
    pub pauth: PauthKeys,
}

/// SCTLR_EL1 at reset for a guest: MMU, caches and alignment checks off; the RES1 bits of
/// Armv8.0 (bits 29, 28, 23, 22, 20, 11) set, as the architecture requires.
pub const SCTLR_EL1_RESET: u64 =
    (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);

impl El1SysRegs {
    /// The state of a vCPU that has just been powered on.
    pub fn reset() -> Self {
        El1SysRegs {
            sctlr_el1: SCTLR_EL1_RESET,
            ..Default::default()
        }
    }
}

macro_rules! save_regs {
    ($s:ident, $($field:ident),*) => {
        $(
            // SAFETY: reading an EL1 system register at EL2 has no side effect.
            unsafe { asm!(concat!("mrs {}, ", stringify!($field)), out(reg) $s.$field, options(nomem, nostack, preserves_flags)) };
        )*
    };
}

macro_rules! load_regs {
    ($s:ident, $($field:ident),*) => {
        $(
            // SAFETY: EL1 system registers only affect EL1/EL0 execution, i.e. the guest about
            // to run, whose own saved values these are.
            unsafe { asm!(concat!("msr ", stringify!($field), ", {}"), in(reg) $s.$field, options(nomem, nostack, preserves_flags)) };
        )*
    };
}

macro_rules! for_each_sysreg {
    ($m:ident, $s:ident) => {
        $m!(
            $s,
            sctlr_el1,
            ttbr0_el1,
            ttbr1_el1,
            tcr_el1,
            mair_el1,
            amair_el1,
            vbar_el1,
            contextidr_el1,
            tpidr_el1,
            tpidr_el0,
            tpidrro_el0,
            sp_el1,
            sp_el0,
            elr_el1,
            spsr_el1,
            esr_el1,
            far_el1,
            afsr0_el1,
            afsr1_el1,
            par_el1,
            cpacr_el1,
            csselr_el1,
            cntkctl_el1,
            cntv_ctl_el0,
            cntv_cval_el0,
            mdscr_el1
        )
    };
}

impl El1SysRegs {
    pub fn save(&mut self) {
        for_each_sysreg!(save_regs, self);
        if has_pointer_auth() {
            self.pauth.save();
        }
    }

    pub fn load(&self) {
        for_each_sysreg!(load_regs, self);
        if has_pointer_auth() {
            self.pauth.load();
        }
    }
}

/// The pointer authentication keys (Arm ARM D19.2: APIAKeyLo_EL1 ... APGAKeyHi_EL1), written
/// by their encodings so that no assembler feature flag is needed.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PauthKeys {
    keys: [u64; 10],
}

macro_rules! pauth_keys {
    ($($i:literal => $enc:literal),*) => {
        impl PauthKeys {
            fn save(&mut self) {
                $(
                    // SAFETY: reading a key register at EL2 has no side effect.
                    unsafe { asm!(concat!("mrs {}, ", $enc), out(reg) self.keys[$i], options(nomem, nostack, preserves_flags)) };
                )*
            }

            fn load(&self) {
                $(
                    // SAFETY: the keys only affect EL1/EL0 pointer authentication, i.e. the
                    // guest about to run, whose keys these are.
                    unsafe { asm!(concat!("msr ", $enc, ", {}"), in(reg) self.keys[$i], options(nomem, nostack, preserves_flags)) };
                )*
            }
        }
    };
}

pauth_keys!(0 => "S3_0_C2_C1_0", 1 => "S3_0_C2_C1_1", 2 => "S3_0_C2_C1_2", 3 => "S3_0_C2_C1_3",
    4 => "S3_0_C2_C2_0", 5 => "S3_0_C2_C2_1", 6 => "S3_0_C2_C2_2", 7 => "S3_0_C2_C2_3",
    8 => "S3_0_C2_C3_0", 9 => "S3_0_C2_C3_1");

/// Whether the CPU implements pointer authentication: ID_AA64ISAR1_EL1.{APA, API, GPA, GPI}
/// (bits 7:4, 11:8, 27:24, 31:28) or ID_AA64ISAR2_EL1.{GPA3, APA3} (11:8, 15:12).
pub fn has_pointer_auth() -> bool {
    static PRESENT: spin::Once<bool> = spin::Once::new();
    *PRESENT.call_once(|| {
        let (isar1, isar2): (u64, u64);
        // SAFETY: reading ID registers has no side effect.
        unsafe {
            asm!("mrs {}, S3_0_C0_C6_1", out(reg) isar1, options(nomem, nostack));
            asm!("mrs {}, S3_0_C0_C6_2", out(reg) isar2, options(nomem, nostack));
        }
        isar1 & 0xff00_0ff0 != 0 || isar2 & 0xff00 != 0
    })
}

/// FP/SIMD registers: V0..V31, FPCR, FPSR.
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, Default)]
pub struct FpRegs {
    pub v: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

impl FpRegs {
    pub fn save(&mut self) {
        // SAFETY: stores the FP/SIMD registers into `self`, which is 16-byte aligned and large
        // enough (32 × 16 bytes + 2 × 8). CPTR_EL2 does not trap FP at EL2.
        unsafe {
            asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "stp q0, q1, [{p}, #32 * 0]",
                "stp q2, q3, [{p}, #32 * 1]",
                "stp q4, q5, [{p}, #32 * 2]",
                "stp q6, q7, [{p}, #32 * 3]",
                "stp q8, q9, [{p}, #32 * 4]",
                "stp q10, q11, [{p}, #32 * 5]",
                "stp q12, q13, [{p}, #32 * 6]",
                "stp q14, q15, [{p}, #32 * 7]",
                "stp q16, q17, [{p}, #32 * 8]",
                "stp q18, q19, [{p}, #32 * 9]",
                "stp q20, q21, [{p}, #32 * 10]",
                "stp q22, q23, [{p}, #32 * 11]",
                "stp q24, q25, [{p}, #32 * 12]",
                "stp q26, q27, [{p}, #32 * 13]",
                "stp q28, q29, [{p}, #32 * 14]",
                "stp q30, q31, [{p}, #32 * 15]",
                "mrs {t}, fpcr",
                "str {t}, [{p}, #512]",
                "mrs {t}, fpsr",
                "str {t}, [{p}, #520]",
                p = in(reg) self as *mut FpRegs,
                t = out(reg) _,
                options(nostack, preserves_flags)
            );
        }
    }

    pub fn load(&self) {
        // SAFETY: the mirror of `save`; only the guest's own FP state is loaded.
        unsafe {
            asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "ldp q0, q1, [{p}, #32 * 0]",
                "ldp q2, q3, [{p}, #32 * 1]",
                "ldp q4, q5, [{p}, #32 * 2]",
                "ldp q6, q7, [{p}, #32 * 3]",
                "ldp q8, q9, [{p}, #32 * 4]",
                "ldp q10, q11, [{p}, #32 * 5]",
                "ldp q12, q13, [{p}, #32 * 6]",
                "ldp q14, q15, [{p}, #32 * 7]",
                "ldp q16, q17, [{p}, #32 * 8]",
                "ldp q18, q19, [{p}, #32 * 9]",
                "ldp q20, q21, [{p}, #32 * 10]",
                "ldp q22, q23, [{p}, #32 * 11]",
                "ldp q24, q25, [{p}, #32 * 12]",
                "ldp q26, q27, [{p}, #32 * 13]",
                "ldp q28, q29, [{p}, #32 * 14]",
                "ldp q30, q31, [{p}, #32 * 15]",
                "ldr {t}, [{p}, #512]",
                "msr fpcr, {t}",
                "ldr {t}, [{p}, #520]",
                "msr fpsr, {t}",
                p = in(reg) self as *const FpRegs,
                t = out(reg) _,
                options(nostack, preserves_flags)
            );
        }
    }
}
