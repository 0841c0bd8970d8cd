//! The CPU features a guest is told about: the ID register group 3 (ID_AA64PFR0_EL1 and the
//! other registers at op0 = 3, op1 = 0, CRn = 0, CRm = 1..7), trapped by HCR_EL2.TID3.
//!
//! Owns: hiding every feature whose state the hypervisor does not switch between VMs, so that
//! no guest starts using it: SVE, SME, MTE, MPAM, AMU, statistical profiling, trace, branch
//! records, and the PMU for VMs that were not given it. Everything else reads as the hardware
//! says. Never hides what the guest already relies on (FP/SIMD, pointer authentication and
//! the rest of the base architecture).

use core::arch::asm;

/// A 4-bit ID field at `shift`.
const fn field(shift: u32) -> u64 {
    0xf << shift
}

/// ID_AA64PFR0_EL1 (Arm ARM D19.2.64): SVE 35:32, MPAM 43:40, AMU 47:44, RME 55:52.
const PFR0_HIDDEN: u64 = field(32) | field(40) | field(44) | field(52);
/// ID_AA64PFR0_EL1.EL1 (7:4): guests' EL1 is AArch64 only (HCR_EL2.RW), whatever the CPU can.
const PFR0_EL1: u64 = field(4);
const PFR0_EL1_AARCH64_ONLY: u64 = 1 << 4;
/// ID_AA64PFR1_EL1 (D19.2.65): MTE 11:8, MPAM_frac 19:16, SME 27:24, MTEX 55:52, GCS 47:44.
const PFR1_HIDDEN: u64 = field(8) | field(16) | field(24) | field(44) | field(52);
/// ID_AA64DFR0_EL1 (D19.2.55): TraceVer 7:4, PMSVer 35:32, TraceFilt 43:40, TraceBuffer
/// 47:44, BRBE 55:52.
const DFR0_HIDDEN: u64 = field(4) | field(32) | field(40) | field(44) | field(52);
/// ID_AA64DFR0_EL1.PMUVer 11:8, hidden from VMs without PMU access.
const DFR0_PMUVER: u64 = field(8);

macro_rules! read_id {
    ($($crm:literal, $op2:literal);* $(;)?) => {
        /// The hardware value of the ID register (CRm, op2) of group 3; 0 for reserved ones.
        fn hardware_value(crm: u64, op2: u64) -> u64 {
            match (crm, op2) {
                $(
                    ($crm, $op2) => {
                        let v: u64;
                        // SAFETY: reading an ID register has no side effect.
                        unsafe {
                            asm!(concat!("mrs {}, S3_0_C0_C", $crm, "_", $op2), out(reg) v,
                                options(nomem, nostack, preserves_flags))
                        };
                        v
                    }
                )*
                _ => 0,
            }
        }
    };
}

read_id!(
    1, 0; 1, 1; 1, 2; 1, 3; 1, 4; 1, 5; 1, 6; 1, 7;
    2, 0; 2, 1; 2, 2; 2, 3; 2, 4; 2, 5; 2, 6; 2, 7;
    3, 0; 3, 1; 3, 2; 3, 3; 3, 4; 3, 5; 3, 6; 3, 7;
    4, 0; 4, 1; 4, 2; 4, 3; 4, 4; 4, 5; 4, 6; 4, 7;
    5, 0; 5, 1; 5, 2; 5, 3; 5, 4; 5, 5; 5, 6; 5, 7;
    6, 0; 6, 1; 6, 2; 6, 3; 6, 4; 6, 5; 6, 6; 6, 7;
    7, 0; 7, 1; 7, 2; 7, 3; 7, 4; 7, 5; 7, 6; 7, 7;
);

/// Whether (op0, op1, CRn, CRm, op2) is an ID register of group 3.
pub fn is_id_register(sysreg: (u64, u64, u64, u64, u64)) -> bool {
    let (op0, op1, crn, crm, _) = sysreg;
    op0 == 3 && op1 == 0 && crn == 0 && (1..=7).contains(&crm)
}

/// What the guest reads for ID register (CRm, op2).
pub fn guest_value(crm: u64, op2: u64, pmu: bool) -> u64 {
    let v = hardware_value(crm, op2);
    match (crm, op2) {
        (4, 0) => v & !(PFR0_HIDDEN | PFR0_EL1) | PFR0_EL1_AARCH64_ONLY,
        (4, 1) => v & !PFR1_HIDDEN,
        // ID_AA64ZFR0_EL1 (SVE) and ID_AA64SMFR0_EL1 (SME): nothing to describe.
        (4, 4) | (4, 5) => 0,
        (5, 0) if pmu => v & !DFR0_HIDDEN,
        (5, 0) => v & !(DFR0_HIDDEN | DFR0_PMUVER),
        _ => v,
    }
}
