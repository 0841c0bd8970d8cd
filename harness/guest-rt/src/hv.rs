//! The project hypercalls the runtime itself needs (`abi::ids`, vendor hypervisor range).
//! Tests that check the ABI call [`crate::hvc`] directly, to see the raw registers.

use abi::ids::{HV_CONSOLE_WRITE, HV_YIELD};
use abi::{Status, CONSOLE_WRITE_MAX};

use crate::arch::hvc;

/// `HV_CONSOLE_WRITE(ipa, len)`: returns `x0..x3` (`x0` = status, `x1` = bytes written).
pub fn console_write(ipa: u64, len: u64) -> [u64; 4] {
    hvc(HV_CONSOLE_WRITE, [ipa, len, 0])
}

/// Writes all of `bytes`, in as many calls as the size limit needs. Gives up silently on an
/// error: the console is the only place an error could be reported.
pub fn console_write_all(bytes: &[u8]) {
    for chunk in bytes.chunks(CONSOLE_WRITE_MAX as usize) {
        let mut rest = chunk;
        while !rest.is_empty() {
            // With the MMU off a pointer's value is its IPA.
            let [status, written, ..] = console_write(rest.as_ptr() as u64, rest.len() as u64);
            if status != Status::Success.to_reg() || written == 0 {
                return;
            }
            rest = &rest[(written as usize).min(rest.len())..];
        }
    }
}

/// `HV_YIELD`: lets the hypervisor run another vCPU. Returns the status (`x0`).
pub fn yield_now() -> u64 {
    hvc(HV_YIELD, [0; 3])[0]
}
