//! Runtime of the harness test guests, in the style of Hafnium's hftest.
//!
//! A test guest is a `no_std`, `no_main` binary linked with `linker/guest.ld` and run as a VM
//! (contract: `docs/architecture.md`, "Guests"). This crate gives it:
//!
//! - the entry points, per-vCPU stacks and an exception vector table that reports and powers off
//!   ([`arch`]), and [`entry!`] / [`test_main!`] to name the program's main function;
//! - [`print!`] / [`println!`] on the console hypercall, one whole line per call ([`console`]);
//! - what the device tree says: RAM, vCPU count, command line ([`boot`], [`bootargs`]);
//! - test registration with [`test!`], the checks [`check!`] / [`check_eq!`], and the `#HT`
//!   framing the host runner parses ([`harness`], [`framing`]);
//! - wrappers for the calls guests make: PSCI ([`psci`]), project hypercalls ([`hv`]), time
//!   ([`time`]), and plain cross-vCPU flags without atomics ([`sync`]).
//!
//! Everything but `arch::aarch64` is plain Rust, so host builds compile it (hardware access
//! goes to `arch::host` stubs that are never run) and `cargo test` checks the pure logic.
#![cfg_attr(not(test), no_std)]

pub mod arch;
pub mod boot;
pub mod bootargs;
pub mod console;
pub mod framing;
pub mod harness;
pub mod hv;
pub mod line;
pub mod psci;
pub mod sync;
pub mod time;

pub use arch::{hvc, smc, MAX_VCPUS};
pub use boot::{boot_info, BootInfo};
pub use bootargs::Cmdline;
pub use harness::{expect_stop, metric, run_tests, TestDesc, TestFailure, TestResult};

/// The command line of this VM (`/chosen/bootargs`).
pub fn cmdline() -> Cmdline<'static> {
    boot_info().cmdline
}

/// The value of the `key=value` word `key` on the command line.
pub fn param(key: &str) -> Option<&'static str> {
    cmdline().param(key)
}

/// The numeric value (decimal or `0x` hex) of `key` on the command line.
pub fn param_u64(key: &str) -> Option<u64> {
    cmdline().param_u64(key)
}

/// Names the program's main function, `fn(dtb_ipa: u64)`, called on the boot vCPU once the
/// runtime is set up. When it returns the VM is powered off.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[doc(hidden)]
        #[no_mangle]
        pub fn __guest_rt_main(dtb_ipa: u64) {
            let main: fn(u64) = $main;
            main(dtb_ipa)
        }

        // Host builds: no entry point, but the signature is still checked.
        #[cfg(not(target_os = "none"))]
        const _: fn(u64) = $main;
    };
}

/// The main function of a test program: run every registered [`test!`], report, power off.
#[macro_export]
macro_rules! test_main {
    () => {
        $crate::entry!($crate::harness::run_tests_main);
    };
}
