//! `system_off`: proves PSCI SYSTEM_OFF through `hvc` stops the VM (`reason=system-off`) and
//! never returns to it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::ids::PSCI_SYSTEM_OFF;
use guest_rt::{expect_stop, fail, hvc, test};

guest_rt::test_main!();

test!(
    fn power_off() {
        expect_stop("power_off");
        let [x0, ..] = hvc(PSCI_SYSTEM_OFF, [0; 3]);
        fail!("PSCI SYSTEM_OFF returned {}", x0 as i64);
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
