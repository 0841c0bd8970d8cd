//! The management VM agent (issue 5): the VirMO Client of OMA VirMO 1.0 section 6.4.1.
//!
//! It keeps the device management tree (VirMO, VMImgMO, and the DM 1.3 objects DevInfo,
//! DevDetail and DMAcc), runs the DM commands a server sends (Get, Add, Replace, Delete, Exec,
//! Atomic, Sequence) with OMA DM status codes, turns them into management hypercalls, and
//! saves the tree so it survives a device restart. Everything is plain `no_std` + `alloc` Rust
//! behind the [`Hypervisor`] trait, so all of it runs in host tests against
//! [`hv::mock::MockHypervisor`]; the binary (`src/main.rs`, `src/target/`) adds the console,
//! the heap and the hypercalls. Documentation: `docs/virmo.md`.
//!
//! ```text
//! Shell (line protocol) ─▶ Agent::execute / atomic / sequence
//!                             ├─ dm::engine   generic checks: URI, existence, access type, ACL, format
//!                             ├─ agent::*     VirMO / VMImgMO behaviour, lifecycle, resources, UI
//!                             ├─ tree         nodes, schema (the node table), ACLs, URIs
//!                             ├─ persist      two-slot crash-safe copy in the persistent area
//!                             └─ hv           the Hypervisor trait (hypercalls or mock)
//! ```
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod agent;
pub mod ddf;
pub mod dm;
pub mod hv;
pub mod params;
pub mod persist;
pub mod shell;
pub mod tree;

#[cfg(test)]
mod tests;

pub use abi;
pub use agent::{Agent, AgentConfig};
pub use dm::{BlockOutcome, Command, Outcome, StatusCode};
pub use hv::Hypervisor;
pub use shell::{LineReader, Shell};
