//! Virtual machines: their RAM, stage-2 tables, vCPUs and life cycle.
//!
//! Owns: every VM's resources from creation to release. A VM's RAM is only freed (zeroed first)
//! once none of its vCPUs is loaded on any physical CPU, so a stopped VM can never be running
//! on memory that has been handed to someone else.

pub mod layout;
pub use layout::elf;
pub mod mmio;
pub mod psci_rules;
pub mod ram;

#[cfg(target_os = "none")]
pub mod lifecycle;
#[cfg(target_os = "none")]
mod machine;
#[cfg(target_os = "none")]
pub mod management;
#[cfg(target_os = "none")]
pub mod platform;
#[cfg(target_os = "none")]
mod snapshot;
#[cfg(target_os = "none")]
pub use machine::*;
