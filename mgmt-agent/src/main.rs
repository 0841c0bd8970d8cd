//! `mgmt-agent`: the program of the management VM. It boots the VirMO agent over the
//! management hypercalls and serves the management shell on the VM's console (docs/virmo.md).
//!
//! Build: `cargo build -p mgmt-agent --bin mgmt-agent --target aarch64-unknown-none --release`
//! (an ELF linked at IPA 0x8000_0000 with linker/guest.ld). Everything hardware-facing is in
//! `target/`; host builds only get a `main` that says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod target;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "mgmt-agent runs in the management VM: cargo build -p mgmt-agent --bin mgmt-agent \
         --target aarch64-unknown-none --release\n\
         On the host, the same shell against a mock hypervisor: \
         cargo run -p mgmt-agent --example shell --features mock"
    );
    std::process::exit(2);
}
