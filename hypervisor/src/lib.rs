//! The hypervisor's logic. Everything outside `arch` and the `target_os = "none"` modules
//! compiles for the host too, so that `cargo test` covers it (Hafnium's arch seam).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod console;
pub mod devices;
pub mod dt;
pub mod memory;
pub mod quota;
pub mod sched;
pub mod storage;
pub mod vgic;
pub mod vm;

#[cfg(target_os = "none")]
#[path = "arch/aarch64/mod.rs"]
pub mod arch;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod hypercall;
#[cfg(target_os = "none")]
pub mod vm_table;
