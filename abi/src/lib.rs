//! The hypercall ABI, defined once and used by both sides.
//!
//! Owns: function identifiers, status codes, and the decoding of a trapped `hvc`/`smc` register
//! file into a typed [`Call`]. It never touches hardware except in [`guest`], the guest-side
//! wrappers, which only exist on aarch64.
//!
//! Conventions (see `docs/hypercalls.md`):
//! - SMCCC 1.1, HVC64 conduit. The function identifier is in `w0`; arguments in `x1..x7`;
//!   results in `x0..x3`. Registers `x4..x30` are preserved across a call.
//! - Project calls live in the Vendor Specific Hypervisor Service range (OEN 6).
//! - Every pointer argument is an intermediate physical address (IPA) of the caller.
#![cfg_attr(not(test), no_std)]

pub mod call;
pub mod ids;
pub mod mgmt;
pub mod status;

#[cfg(target_arch = "aarch64")]
pub mod guest;

pub use call::{decode, is_implemented, Call, Conduit, PsciCall, CONSOLE_WRITE_MAX};
pub use status::{PsciStatus, Status};

/// The project ABI version, returned by [`ids::HV_ABI_VERSION`]: bump the major on any
/// incompatible change, the minor when calls are added.
pub const ABI_VERSION_MAJOR: u16 = 0;
pub const ABI_VERSION_MINOR: u16 = 2;

/// The UUID returned by the Call UID query (SMCCC 1.1 §7.2): a random v4 UUID that identifies
/// this hypervisor's vendor service, as four 32-bit words in `w0..w3` order.
pub const HV_UID: [u32; 4] = [0x4f6d_6156, 0x5269_6d4f, 0x8e3a_1c52, 0x2d7b_9e01];

/// The revision of the vendor service (Call Revision query): `(major, minor)`.
pub const HV_REVISION: (u32, u32) = (ABI_VERSION_MAJOR as u32, ABI_VERSION_MINOR as u32);

/// The number of project calls in the vendor range (Call Count query).
pub const HV_CALL_COUNT: u32 = 4 + (mgmt::MGMT_LAST - mgmt::MGMT_FIRST + 1);
