//! Function identifiers (SMCCC 1.1 §2.5: bit 31 fast call, bit 30 SMC64, bits 29:24 owning
//! entity number, bits 15:0 function number).

pub use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1, SMCCC_VERSION};
pub use smccc::psci::{
    PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_32, PSCI_CPU_ON_64,
    PSCI_FEATURES, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
};

/// Bit 31: fast call. Yielding calls are not supported by this hypervisor.
pub const FAST_CALL: u32 = 1 << 31;
/// Bit 30: the SMC64/HVC64 calling convention.
pub const CONV_64: u32 = 1 << 30;
/// Owning entity numbers (SMCCC 1.1 table 6-4).
pub const OEN_ARCH: u32 = 0;
pub const OEN_STANDARD: u32 = 4;
pub const OEN_VENDOR_HYP: u32 = 6;

/// The owning entity number of a function identifier.
pub const fn oen(function: u32) -> u32 {
    (function >> 24) & 0x3f
}

/// The SMCCC version this hypervisor implements, in the `SMCCC_VERSION` encoding.
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;
/// The PSCI version emulated for guests (1.1), in the `PSCI_VERSION` encoding.
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;

/// Generic service queries of the vendor-specific hypervisor range (SMCCC 1.1 §6.2).
pub const HV_CALL_COUNT_QUERY: u32 = 0x8600_FF00;
pub const HV_CALL_UID_QUERY: u32 = 0x8600_FF01;
pub const HV_REVISION_QUERY: u32 = 0x8600_FF03;

/// `HV_ABI_VERSION() -> (status, major, minor)`.
pub const HV_ABI_VERSION: u32 = 0xC600_0000;
/// `HV_VM_ID() -> (status, vm_id, vcpu_index, vcpu_count)`.
pub const HV_VM_ID: u32 = 0xC600_0001;
/// `HV_CONSOLE_WRITE(ipa, len) -> (status, bytes_written)`. The buffer must lie wholly in the
/// caller's RAM; at most [`crate::call::CONSOLE_WRITE_MAX`] bytes are taken per call.
pub const HV_CONSOLE_WRITE: u32 = 0xC600_0002;
/// `HV_YIELD() -> (status)`: give up the physical CPU to the next runnable vCPU.
pub const HV_YIELD: u32 = 0xC600_0003;
