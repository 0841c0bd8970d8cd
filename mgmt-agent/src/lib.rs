//! The management VM agent (issue 5). It will hold the VirMO and VM Image MO trees and turn DM
//! commands into management hypercalls; until then this crate only pins its place in the
//! workspace and its dependency on the shared ABI.
#![cfg_attr(not(test), no_std)]

pub use abi;
