//! The parts of a vCPU's state that live in system registers while it runs: the EL1 system
//! registers, FP/SIMD, and the exception return state.
//!
//! Owns: moving that state between the registers and memory on a vCPU switch. The hypervisor
//! itself is built soft-float and never touches FP/SIMD, so guest FP state stays live in the
//! registers across traps, and across vCPU switches too: it is switched lazily (`switch_fp`).
//! A vCPU is entered with FP/SIMD trapped (CPTR_EL2.TFP) unless the registers hold its own
//! state; its first FP/SIMD instruction then traps, the registers go to their owner's context
//! and this vCPU's come in. A vCPU that never touches FP/SIMD (many guests between two
//! switches) costs nothing, and one alone on its CPU never traps. The pointer authentication
//! keys are switched the same way (`switch_pauth`), trapped by HCR_EL2.API (the PAC
//! instructions) and HCR_EL2.APK (the key registers): every use of a key traps until the
//! registers hold this vCPU's, so no guest ever runs with another's keys, whatever it enabled.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Declares `El1SysRegs` with the registers given in pairs, then one more, in this order, and
/// its `save` and `load`, which move them with one `mrs`/`msr` each and one `stp`/`ldp` per
/// pair (the field order is the order in memory: `repr(C)`).
macro_rules! el1_sysregs {
    ($($a:ident $b:ident),* ; $last:ident) => {
        /// EL1 system registers of a vCPU (Arm ARM D13.2, the AArch64 system register
        /// descriptions).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct El1SysRegs {
            $(pub $a: u64, pub $b: u64,)*
            pub $last: u64,
            /// Not switched: MDCR_EL2.TDA traps the guest's accesses to it (debug registers
            /// read as zero, writes are ignored: exceptions.rs), so no guest can change it.
            /// Kept in the layout, which suspended VMs' state on disk follows.
            pub mdscr_el1: u64,
            /// Switched lazily (`switch_pauth`), not by `save` and `load`.
            pub pauth: PauthKeys,
        }

        impl El1SysRegs {
            pub fn save(&mut self) {
                // SAFETY: reading EL1 system registers at EL2 has no side effect; the stores
                // stay inside `self` (one pair per field pair, in field order).
                unsafe {
                    asm!(
                        $(
                            concat!("mrs {t0}, ", stringify!($a)),
                            concat!("mrs {t1}, ", stringify!($b)),
                            "stp {t0}, {t1}, [{p}], #16",
                        )*
                        concat!("mrs {t0}, ", stringify!($last)),
                        "str {t0}, [{p}]",
                        p = inout(reg) self as *mut Self => _,
                        t0 = out(reg) _,
                        t1 = out(reg) _,
                        options(nostack, preserves_flags)
                    );
                }
            }

            pub fn load(&self) {
                // SAFETY: EL1 system registers only affect EL1/EL0 execution, i.e. the guest
                // about to run, whose own saved values these are.
                unsafe {
                    asm!(
                        $(
                            "ldp {t0}, {t1}, [{p}], #16",
                            concat!("msr ", stringify!($a), ", {t0}"),
                            concat!("msr ", stringify!($b), ", {t1}"),
                        )*
                        "ldr {t0}, [{p}]",
                        concat!("msr ", stringify!($last), ", {t0}"),
                        p = inout(reg) self as *const Self => _,
                        t0 = out(reg) _,
                        t1 = out(reg) _,
                        options(nostack, preserves_flags, readonly)
                    );
                }
            }
        }
    };
}

el1_sysregs!(
    sctlr_el1 ttbr0_el1,
    ttbr1_el1 tcr_el1,
    mair_el1 amair_el1,
    vbar_el1 contextidr_el1,
    tpidr_el1 tpidr_el0,
    tpidrro_el0 sp_el1,
    sp_el0 elr_el1,
    spsr_el1 esr_el1,
    far_el1 afsr0_el1,
    afsr1_el1 par_el1,
    cpacr_el1 csselr_el1,
    cntkctl_el1 cntv_ctl_el0;
    cntv_cval_el0
);

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

/// The pointer authentication keys (Arm ARM D19.2: APIAKeyLo_EL1 ... APGAKeyHi_EL1), written
/// by their encodings so that no assembler feature flag is needed.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PauthKeys {
    keys: [u64; 10],
}

/// `PauthKeys::save` and `load` for the key registers given in pairs, in memory order.
macro_rules! pauth_keys {
    ($($a:literal $b:literal),* $(,)?) => {
        impl PauthKeys {
            fn save(&mut self) {
                // SAFETY: reading a key register at EL2 has no side effect; the stores stay
                // inside `self.keys`, one pair per register pair.
                unsafe {
                    asm!(
                        $(
                            concat!("mrs {t0}, ", $a),
                            concat!("mrs {t1}, ", $b),
                            "stp {t0}, {t1}, [{p}], #16",
                        )*
                        p = inout(reg) self.keys.as_mut_ptr() => _,
                        t0 = out(reg) _,
                        t1 = out(reg) _,
                        options(nostack, preserves_flags)
                    );
                }
            }

            fn load(&self) {
                // SAFETY: the keys only affect EL1/EL0 pointer authentication, i.e. the guest
                // about to run, whose keys these are.
                unsafe {
                    asm!(
                        $(
                            "ldp {t0}, {t1}, [{p}], #16",
                            concat!("msr ", $a, ", {t0}"),
                            concat!("msr ", $b, ", {t1}"),
                        )*
                        p = inout(reg) self.keys.as_ptr() => _,
                        t0 = out(reg) _,
                        t1 = out(reg) _,
                        options(nostack, preserves_flags, readonly)
                    );
                }
            }
        }
    };
}

// APIAKeyLo/Hi, APIBKeyLo/Hi, APDAKeyLo/Hi, APDBKeyLo/Hi, APGAKeyLo/Hi.
pauth_keys!(
    "S3_0_C2_C1_0" "S3_0_C2_C1_1",
    "S3_0_C2_C1_2" "S3_0_C2_C1_3",
    "S3_0_C2_C2_0" "S3_0_C2_C2_1",
    "S3_0_C2_C2_2" "S3_0_C2_C2_3",
    "S3_0_C2_C3_0" "S3_0_C2_C3_1",
);
const _: () = assert!(core::mem::size_of::<PauthKeys>() == 10 * 8);

/// Whether the CPU implements pointer authentication: ID_AA64ISAR1_EL1.{APA, API, GPA, GPI}
/// (bits 7:4, 11:8, 27:24, 31:28) or ID_AA64ISAR2_EL1.{GPA3, APA3} (11:8, 15:12).
/// Read on every vCPU switch: a plain atomic set by `init`, rather than a `Once`.
pub fn has_pointer_auth() -> bool {
    POINTER_AUTH.load(Ordering::Relaxed)
}

static POINTER_AUTH: AtomicBool = AtomicBool::new(false);

/// Finds out what the CPU implements. Boot CPU, before any vCPU is loaded (the CPUs are taken
/// to be alike).
pub fn init() {
    let (isar1, isar2): (u64, u64);
    // SAFETY: reading ID registers has no side effect.
    unsafe {
        asm!("mrs {}, S3_0_C0_C6_1", out(reg) isar1, options(nomem, nostack));
        asm!("mrs {}, S3_0_C0_C6_2", out(reg) isar2, options(nomem, nostack));
    }
    let present = isar1 & 0xff00_0ff0 != 0 || isar2 & 0xff00 != 0;
    POINTER_AUTH.store(present, Ordering::Relaxed);
}

/// The loaded `vcpu` executed an FP/SIMD instruction that trapped (the registers hold another
/// vCPU's state, or none): saves them into their owner's context, loads `vcpu`'s, and lets it
/// use them until another vCPU takes them. The instruction is then retried.
///
/// # Safety
/// `vcpu` must be loaded on this CPU. The owner, if any, is not loaded and its `lazy_home` is
/// this CPU, so no other CPU touches its context (`sched` waits for the flush first).
pub unsafe fn switch_fp(vcpu: &crate::vm::Vcpu) {
    let cpu = super::percpu::current();
    super::traps::set_fp_trap(false);
    // SAFETY: a context synchronisation event: the FP/SIMD accesses below must not trap.
    unsafe { asm!("isb", options(nomem, nostack)) };
    let owner = cpu.fp_owner();
    if !owner.is_null() {
        // SAFETY: the owner is a vCPU (never freed) whose lazy state is this CPU's.
        unsafe { (*owner).ctx().fp.save() };
        cpu.set_fp_owner(core::ptr::null());
        // SAFETY: as above.
        release_home(cpu, unsafe { &*owner });
    }
    // SAFETY: `vcpu` is loaded on this CPU.
    unsafe { vcpu.ctx().fp.load() };
    cpu.set_fp_owner(vcpu);
    vcpu.lazy_home.store(cpu.index(), Ordering::Release);
}

/// `vcpu`'s state left this CPU's registers for one kind of lazy state: if none of its state
/// is left here, any CPU may now load it.
fn release_home(cpu: &super::percpu::PerCpu, vcpu: &crate::vm::Vcpu) {
    let p: *const crate::vm::Vcpu = vcpu;
    if cpu.fp_owner() != p && cpu.pauth_owner() != p {
        vcpu.lazy_home.store(crate::vm::NO_CPU, Ordering::Release);
    }
}

/// Saves every vCPU state this CPU's registers hold lazily (FP/SIMD, keys) to its owner's
/// context, so that another CPU can load that vCPU; the vCPU loaded here, if any, traps at
/// its next use and gets its state back then.
pub fn flush_lazy_state() {
    let cpu = super::percpu::current();
    let fp = cpu.fp_owner();
    if !fp.is_null() {
        super::traps::set_fp_trap(false);
        // SAFETY: a context synchronisation event: the FP/SIMD accesses below must not trap.
        unsafe { asm!("isb", options(nomem, nostack)) };
        // SAFETY: the owner's lazy state is this CPU's; it is not loaded elsewhere (another
        // CPU waits for this flush before loading it).
        unsafe { (*fp).ctx().fp.save() };
        cpu.set_fp_owner(core::ptr::null());
    }
    super::traps::set_fp_trap(true);
    let pa = cpu.pauth_owner();
    if !pa.is_null() {
        // SAFETY: as for the FP/SIMD owner.
        unsafe { (*pa).ctx().sys.pauth.save() };
        cpu.set_pauth_owner(core::ptr::null());
    }
    if has_pointer_auth() {
        super::traps::set_pauth_trap(true);
    }
    for owner in [fp, pa] {
        if !owner.is_null() {
            // SAFETY: vCPUs are never freed.
            release_home(cpu, unsafe { &*owner });
        }
    }
}

/// The loaded `vcpu` used a pointer authentication key or key register, which trapped (the
/// registers hold another vCPU's keys, or none): as `switch_fp`, for the keys. The
/// instruction is then retried.
///
/// # Safety
/// As for `switch_fp`.
pub unsafe fn switch_pauth(vcpu: &crate::vm::Vcpu) {
    let cpu = super::percpu::current();
    let owner = cpu.pauth_owner();
    if !owner.is_null() {
        // SAFETY: the owner is a vCPU (never freed) whose lazy state is this CPU's.
        unsafe { (*owner).ctx().sys.pauth.save() };
        cpu.set_pauth_owner(core::ptr::null());
        // SAFETY: as above.
        release_home(cpu, unsafe { &*owner });
    }
    // SAFETY: `vcpu` is loaded on this CPU.
    unsafe { vcpu.ctx().sys.pauth.load() };
    cpu.set_pauth_owner(vcpu);
    vcpu.lazy_home.store(cpu.index(), Ordering::Release);
    super::traps::set_pauth_trap(false);
}

/// `vcpu`'s FP/SIMD state and keys in its context are the truth again (it was reset): if this
/// CPU's registers hold older ones of it, forget them, so that they are not saved over the new
/// ones and the new ones are loaded at their first use.
pub fn forget_lazy_state(vcpu: &crate::vm::Vcpu) {
    let cpu = super::percpu::current();
    if core::ptr::eq(cpu.fp_owner(), vcpu) {
        cpu.set_fp_owner(core::ptr::null());
    }
    if core::ptr::eq(cpu.pauth_owner(), vcpu) {
        cpu.set_pauth_owner(core::ptr::null());
    }
    release_home(cpu, vcpu);
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
        // enough (32 × 16 bytes + 2 × 8). CPTR_EL2.TFP is clear (`switch_fp`).
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
