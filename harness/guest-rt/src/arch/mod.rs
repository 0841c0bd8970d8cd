//! The hardware seam: everything that needs an instruction the host does not have.
//!
//! `aarch64` is the real thing (entry points, exception vectors, system registers, `hvc`);
//! `host` has the same functions as stubs, so that the rest of the runtime and the guest
//! programs compile, and their pure logic is tested, on the development machine. Host stubs are
//! never run: guests only execute inside a VM.

/// The most vCPUs a guest can run: one stack and one console line buffer each.
pub const MAX_VCPUS: usize = 8;

/// Bytes of stack per vCPU. Keep it a multiple of 16 (AArch64 SP alignment) and encodable as a
/// `mov` immediate (the entry code loads it with one instruction).
pub const STACK_SIZE: usize = 32 * 1024;

#[cfg(target_os = "none")]
pub mod aarch64;
#[cfg(target_os = "none")]
pub use aarch64::*;

#[cfg(not(target_os = "none"))]
pub mod host;
#[cfg(not(target_os = "none"))]
pub use host::*;
