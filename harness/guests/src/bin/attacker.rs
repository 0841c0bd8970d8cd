//! `attacker`: proves, together with the runner, that a VM cannot reach memory outside its own
//! RAM. It accesses the IPA given on its command line (the runner aims it at another VM's memory
//! or the hypervisor's) and passes only if the hypervisor stops it (`expect-stop`).
//!
//! Bootargs: `target=0x<hex>` the IPA to access (8-byte aligned); `access=read|write|exec`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::{check, expect_stop, fail, println, test};

guest_rt::test_main!();

/// What a write leaves behind, recognisable in a dump of the victim.
const WRITE_MARK: u64 = 0xBAD0_BAD0_BAD0_BAD0;

#[derive(Clone, Copy, Debug)]
enum Access {
    Read,
    Write,
    Exec,
}

impl Access {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "exec" => Some(Access::Exec),
            _ => None,
        }
    }
}

test!(
    fn attack() {
        let Some(target) = guest_rt::param_u64("target") else {
            fail!("bootarg target=0x<hex> missing or not a number");
        };
        let Some(access) = guest_rt::param("access").and_then(Access::parse) else {
            fail!("bootarg access=read|write|exec missing or unknown");
        };
        // With the MMU off an unaligned access faults inside this VM, before the hypervisor ever
        // sees it: that would prove nothing.
        check!(target % 8 == 0, "target {target:#x} is not 8-byte aligned");

        expect_stop("attack");
        // With the MMU off an IPA is the address.
        let address = target as usize;
        match access {
            Access::Read => {
                // SAFETY: deliberately not: reading outside our RAM is the attack; the hypervisor
                // must stop us before the value arrives.
                let value = unsafe { (address as *const u64).read_volatile() };
                println!("read {value:#x}");
            }
            // SAFETY: as above, writing outside our RAM is the attack.
            Access::Write => unsafe { (address as *mut u64).write_volatile(WRITE_MARK) },
            Access::Exec => {
                // SAFETY: as above, executing outside our RAM is the attack.
                let code = unsafe { core::mem::transmute::<usize, extern "C" fn()>(address) };
                code();
            }
        }
        fail!("{access:?} access to {target:#x} was not stopped");
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
