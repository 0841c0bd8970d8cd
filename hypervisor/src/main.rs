//! The hypervisor image. Everything lives in the library; this binary only pulls it in so that
//! its entry point (`_start`, in `arch::head`, named by the linker script) is linked. On the
//! host it is an empty program so that `cargo test --workspace` builds.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use hypervisor as _;

#[cfg(not(target_os = "none"))]
fn main() {}
