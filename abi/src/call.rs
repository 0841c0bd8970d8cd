//! Decoding of a trapped call: the register file of the caller in, a typed [`Call`] out.
//!
//! Decoding is total: any register contents give a `Call`, with `Unknown` for what this
//! hypervisor does not implement. Argument checks that need the caller's memory map (pointers)
//! are the handler's job; checks that need nothing else (sizes, reserved bits) are done here.

use crate::ids::*;

/// The most bytes one `HV_CONSOLE_WRITE` takes; longer writes are refused with
/// `INVALID_PARAMETER` so that one call has a bounded cost.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// How the call reached the hypervisor. Project calls are only served on `Hvc`; PSCI and the
/// SMCCC architecture queries are served on both, as on hardware where either conduit may be the
/// one advertised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    SmcccVersion,
    ArchFeatures {
        function: u32,
    },
    HvCallCount,
    HvCallUid,
    HvRevision,
    AbiVersion,
    VmId,
    ConsoleWrite {
        ipa: u64,
        len: u64,
    },
    Yield,
    /// A management call ([`crate::mgmt`]): only the management VM may make it.
    Mgmt {
        function: u32,
        args: [u64; 3],
    },
    Psci(PsciCall),
    Unknown {
        function: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciCall {
    Version,
    Features {
        function: u32,
    },
    CpuOn {
        target_mpidr: u64,
        entry: u64,
        context: u64,
    },
    CpuOff,
    AffinityInfo {
        target_mpidr: u64,
        lowest_level: u64,
    },
    SystemOff,
    SystemReset,
}

/// Function identifiers with their low 16 bits (the function number) cleared: the service
/// ranges this hypervisor serves. Matching on these first keeps decoding to a couple of
/// compares on the hypercall hot path.
const RANGE_ARCH_32: u32 = FAST_CALL | (OEN_ARCH << 24);
const RANGE_PSCI_32: u32 = FAST_CALL | (OEN_STANDARD << 24);
const RANGE_PSCI_64: u32 = FAST_CALL | CONV_64 | (OEN_STANDARD << 24);
const RANGE_VENDOR_HYP_32: u32 = FAST_CALL | (OEN_VENDOR_HYP << 24);
const RANGE_VENDOR_HYP_64: u32 = FAST_CALL | CONV_64 | (OEN_VENDOR_HYP << 24);

/// Decodes the caller's `x0..x7`. Always inlined: it is on every hypercall's path, and inlined
/// into the handler's `match` the two dispatches fold into one.
#[inline(always)]
pub fn decode(regs: &[u64; 8], conduit: Conduit) -> Call {
    let function = regs[0] as u32;
    // SMC32/HVC32 calls take their arguments from the low 32 bits only (SMCCC 1.1 §2.6).
    let arg = |i: usize| -> u64 {
        if function & CONV_64 != 0 {
            regs[i]
        } else {
            regs[i] & 0xffff_ffff
        }
    };
    let unknown = Call::Unknown { function };
    let hvc = conduit == Conduit::Hvc;
    // Yielding calls (bit 31 clear) match none of the ranges: all are fast-call ranges.
    match function & !0xffff {
        RANGE_VENDOR_HYP_64 if hvc => match function {
            HV_ABI_VERSION => Call::AbiVersion,
            HV_VM_ID => Call::VmId,
            HV_CONSOLE_WRITE => Call::ConsoleWrite {
                ipa: arg(1),
                len: arg(2),
            },
            HV_YIELD => Call::Yield,
            f if crate::mgmt::is_mgmt_call(f) => Call::Mgmt {
                function: f,
                args: [arg(1), arg(2), arg(3)],
            },
            _ => unknown,
        },
        RANGE_VENDOR_HYP_32 if hvc => match function {
            HV_CALL_COUNT_QUERY => Call::HvCallCount,
            HV_CALL_UID_QUERY => Call::HvCallUid,
            HV_REVISION_QUERY => Call::HvRevision,
            _ => unknown,
        },
        RANGE_ARCH_32 => match function {
            SMCCC_VERSION => Call::SmcccVersion,
            SMCCC_ARCH_FEATURES => Call::ArchFeatures {
                function: arg(1) as u32,
            },
            _ => unknown,
        },
        RANGE_PSCI_32 | RANGE_PSCI_64 => match decode_psci(function, arg) {
            Some(p) => Call::Psci(p),
            None => unknown,
        },
        _ => unknown,
    }
}

#[inline]
fn decode_psci(function: u32, arg: impl Fn(usize) -> u64) -> Option<PsciCall> {
    Some(match function {
        PSCI_VERSION => PsciCall::Version,
        PSCI_FEATURES => PsciCall::Features {
            function: arg(1) as u32,
        },
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => PsciCall::CpuOn {
            target_mpidr: arg(1),
            entry: arg(2),
            context: arg(3),
        },
        PSCI_CPU_OFF => PsciCall::CpuOff,
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => PsciCall::AffinityInfo {
            target_mpidr: arg(1),
            lowest_level: arg(2),
        },
        PSCI_SYSTEM_OFF => PsciCall::SystemOff,
        PSCI_SYSTEM_RESET => PsciCall::SystemReset,
        _ => return None,
    })
}

/// Whether `function` is implemented on `conduit`: the answer of `SMCCC_ARCH_FEATURES` and
/// `PSCI_FEATURES`, derived from the decoder so that the two can never disagree.
pub fn is_implemented(function: u32, conduit: Conduit) -> bool {
    let regs = [function as u64, 0, 0, 0, 0, 0, 0, 0];
    !matches!(decode(&regs, conduit), Call::Unknown { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(regs: &[u64]) -> Call {
        let mut r = [0u64; 8];
        r[..regs.len()].copy_from_slice(regs);
        decode(&r, Conduit::Hvc)
    }

    #[test]
    fn decodes_smccc_architecture_calls() {
        assert_eq!(call(&[SMCCC_VERSION as u64]), Call::SmcccVersion);
        assert_eq!(
            call(&[SMCCC_ARCH_FEATURES as u64, PSCI_CPU_ON_64 as u64]),
            Call::ArchFeatures {
                function: PSCI_CPU_ON_64
            }
        );
    }

    #[test]
    fn ignores_the_upper_half_of_x0() {
        assert_eq!(
            call(&[0xdead_beef_0000_0000 | HV_YIELD as u64]),
            Call::Yield
        );
    }

    #[test]
    fn decodes_project_calls_with_their_arguments() {
        assert_eq!(
            call(&[HV_CONSOLE_WRITE as u64, 0x8000_1000, 12]),
            Call::ConsoleWrite {
                ipa: 0x8000_1000,
                len: 12
            }
        );
        assert_eq!(call(&[HV_ABI_VERSION as u64]), Call::AbiVersion);
        assert_eq!(call(&[HV_VM_ID as u64]), Call::VmId);
        assert_eq!(call(&[HV_CALL_UID_QUERY as u64]), Call::HvCallUid);
        assert_eq!(
            call(&[crate::mgmt::HV_MGMT_VM_QUERY as u64, 3, 0x8000_2000, 9]),
            Call::Mgmt {
                function: crate::mgmt::HV_MGMT_VM_QUERY,
                args: [3, 0x8000_2000, 9]
            }
        );
        assert_eq!(
            decode(
                &[crate::mgmt::HV_MGMT_VM_QUERY as u64, 0, 0, 0, 0, 0, 0, 0],
                Conduit::Smc
            ),
            Call::Unknown {
                function: crate::mgmt::HV_MGMT_VM_QUERY
            }
        );
    }

    #[test]
    fn project_calls_are_not_served_through_smc() {
        let r = [HV_YIELD as u64, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode(&r, Conduit::Smc),
            Call::Unknown { function: HV_YIELD }
        );
        assert!(!is_implemented(HV_CONSOLE_WRITE, Conduit::Smc));
        assert!(is_implemented(PSCI_CPU_ON_64, Conduit::Smc));
    }

    #[test]
    fn psci_32_bit_calls_truncate_their_arguments() {
        assert_eq!(
            call(&[
                PSCI_CPU_ON_32 as u64,
                0xffff_0000_0000_0001,
                0x1_4000_0000,
                7
            ]),
            Call::Psci(PsciCall::CpuOn {
                target_mpidr: 1,
                entry: 0x4000_0000,
                context: 7
            })
        );
        assert_eq!(
            call(&[PSCI_CPU_ON_64 as u64, 1, 0x1_4000_0000, 7]),
            Call::Psci(PsciCall::CpuOn {
                target_mpidr: 1,
                entry: 0x1_4000_0000,
                context: 7
            })
        );
    }

    #[test]
    fn unknown_and_yielding_calls_are_unknown() {
        assert_eq!(
            call(&[0xC600_1234]),
            Call::Unknown {
                function: 0xC600_1234
            }
        );
        // Bit 31 clear: a yielding call, which this hypervisor does not implement.
        assert_eq!(
            call(&[0x4600_0000]),
            Call::Unknown {
                function: 0x4600_0000
            }
        );
        assert_eq!(
            call(&[0xC700_0000]),
            Call::Unknown {
                function: 0xC700_0000
            }
        );
        assert!(!is_implemented(0x8400_0001, Conduit::Hvc)); // CPU_SUSPEND is not emulated
    }
}
