//! `victim`: the other half of the isolation tests. It holds a page of known values, waits
//! while an `attacker` VM tries to reach it, then proves the page is unchanged and that the
//! victim still runs normally (a hypercall works).
//!
//! The runner finds the page through the ELF symbol `VICTIM_PATTERN` (4 KiB, page aligned, in
//! `.data`) and aims the attacker at it. Bootargs: `wait_ms=<n>` (default 2000), how long the
//! attacker gets.
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::ids::HV_ABI_VERSION;
use abi::Status;
use guest_rt::{check_eq, fail, hvc, test, time};

guest_rt::test_main!();

const PAGE_WORDS: usize = 512;
/// High bits of every pattern word; the low bits hold the word's index.
const PATTERN_MARK: u64 = 0x5AFE_0000_0000_0000;
const DEFAULT_WAIT_MS: u64 = 2000;

/// One page of `u64`s, page aligned so that a page-granular attack covers it exactly.
#[repr(C, align(4096))]
pub struct Page(pub [u64; PAGE_WORDS]);

const fn pattern_word(index: usize) -> u64 {
    PATTERN_MARK | index as u64
}

const fn pattern() -> Page {
    let mut words = [0; PAGE_WORDS];
    let mut i = 0;
    while i < PAGE_WORDS {
        words[i] = pattern_word(i);
        i += 1;
    }
    Page(words)
}

/// `static mut` (not `static`): a mutable static goes to `.data`, in RAM the attacker could
/// write, rather than to read-only data.
#[no_mangle]
#[used]
pub static mut VICTIM_PATTERN: Page = pattern();

test!(
    fn pattern_intact() {
        time::sleep_ms(guest_rt::cmdline().param_u64_or("wait_ms", DEFAULT_WAIT_MS));
        let words = (&raw const VICTIM_PATTERN).cast::<u64>();
        for i in 0..PAGE_WORDS {
            // SAFETY: `i` is within the page; volatile because another VM is what might change it.
            let word = unsafe { words.add(i).read_volatile() };
            if word != pattern_word(i) {
                fail!(
                    "VICTIM_PATTERN[{i}] is {word:#x}, expected {:#x}",
                    pattern_word(i)
                );
            }
        }
        check_eq!(
            hvc(HV_ABI_VERSION, [0; 3])[0] as i64,
            Status::Success as i64,
            "a hypercall"
        );
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
