//! `scrub`: not a test. A VM for the management suite `mgmt_delete_scrub`
//! (harness/runner/src/mgmt_suites.rs): it proves that the RAM it is given holds nothing of a
//! previous VM, then leaves a pattern in it for the next VM to (not) find.
//!
//! 1. Checks that its RAM beyond its own image is all zero: from `__image_end` (the end of the
//!    loaded image; the stacks and `.bss` lie below the image, see linker/guest.ld, and there
//!    is no heap) to the end of RAM, except the device tree the hypervisor wrote there. Prints
//!    `scrub range=<start>-<end> dtb=<start>-<end>`, then `scrub zeros=ok`, or `scrub
//!    zeros=bad offset=<hex>` with the offset from the RAM base of the first non-zero byte.
//! 2. Fills the same RAM with a pattern that is never zero (each 8-byte word: `PATTERN` or'ed
//!    with its own address) and prints `scrub pattern-written`.
//! 3. Idles, yielding the CPU, until it is deleted.
//!
//! The device tree stays intact: the command line read from it is still in use.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::{boot_info, hv, println};

guest_rt::entry!(scrub_main);

/// The high bits of every pattern word (the low bits are the word's address).
const PATTERN: u64 = 0x5c5c_0000_0000_0000;
/// Bytes per checked and written word.
const WORD: u64 = 8;

/// The address ranges `[start, end)` of RAM to scrub: from `image_end` (rounded up to a word)
/// to `ram_end`, without the device tree `dtb` (rounded out to words).
fn scrub_ranges(image_end: u64, ram_end: u64, dtb: (u64, u64)) -> [(u64, u64); 2] {
    let start = image_end.next_multiple_of(WORD).min(ram_end);
    let (dtb_start, dtb_end) = (
        (dtb.0 & !(WORD - 1)).clamp(start, ram_end),
        dtb.1.next_multiple_of(WORD).clamp(start, ram_end),
    );
    if dtb_start >= dtb_end {
        return [(start, ram_end), (ram_end, ram_end)];
    }
    [(start, dtb_start), (dtb_end, ram_end)]
}

/// The device tree's size: its header's `totalsize` (big-endian, at offset 4).
fn dtb_size(dtb_ipa: u64) -> u64 {
    // SAFETY: the hypervisor placed a device tree of at least a header at `dtb_ipa`, inside
    // this VM's RAM (x0 at entry); with the MMU off the IPA is the pointer.
    let word = unsafe { core::ptr::read_volatile((dtb_ipa + 4) as *const u32) };
    u64::from(u32::from_be(word))
}

/// The first address in `range` whose word is not zero.
fn first_non_zero((start, end): (u64, u64)) -> Option<u64> {
    (start..end).step_by(WORD as usize).find(|&a| {
        // SAFETY: `a` is a word-aligned address of this VM's RAM above its image (see
        // `scrub_ranges`), which nothing else uses.
        unsafe { core::ptr::read_volatile(a as *const u64) != 0 }
    })
}

fn fill((start, end): (u64, u64)) {
    for a in (start..end).step_by(WORD as usize) {
        // SAFETY: as in `first_non_zero`: free RAM of this VM's own.
        unsafe { core::ptr::write_volatile(a as *mut u64, PATTERN | a) };
    }
}

#[cfg(target_os = "none")]
fn image_end() -> u64 {
    extern "C" {
        static __image_end: [u8; 0];
    }
    // Only the address of the linker symbol is taken.
    (&raw const __image_end) as u64
}

#[cfg(not(target_os = "none"))]
fn image_end() -> u64 {
    unreachable!("guest code only runs inside a VM")
}

fn scrub_main(dtb_ipa: u64) {
    let info = boot_info();
    let dtb = (dtb_ipa, dtb_ipa + dtb_size(dtb_ipa));
    let ranges = scrub_ranges(image_end(), info.ram_end(), dtb);
    println!(
        "scrub range={:#x}-{:#x} dtb={:#x}-{:#x}",
        ranges[0].0, ranges[1].1, dtb.0, dtb.1
    );
    match ranges.iter().find_map(|&r| first_non_zero(r)) {
        None => println!("scrub zeros=ok"),
        Some(a) => println!("scrub zeros=bad offset={:#x}", a - info.ram_base),
    }
    ranges.iter().for_each(|&r| fill(r));
    println!("scrub pattern-written");
    loop {
        hv::yield_now();
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_tree_is_cut_out_of_the_scrubbed_ram() {
        let (image_end, ram_end) = (0x8010_0003, 0x8100_0000);
        assert_eq!(
            scrub_ranges(image_end, ram_end, (0x8011_0000, 0x8011_0105)),
            [(0x8010_0008, 0x8011_0000), (0x8011_0108, 0x8100_0000)]
        );
        // A device tree below the image (not where the hypervisor puts it) is not in the way.
        assert_eq!(
            scrub_ranges(image_end, ram_end, (0x8000_0000, 0x8000_1000)),
            [(0x8010_0008, ram_end), (ram_end, ram_end)]
        );
        // One running to the end of RAM leaves nothing after it.
        assert_eq!(
            scrub_ranges(image_end, ram_end, (0x80ff_f000, 0x8200_0000)),
            [(0x8010_0008, 0x80ff_f000), (ram_end, ram_end)]
        );
    }
}
