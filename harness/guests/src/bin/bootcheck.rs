//! `bootcheck` (run with 2 vCPUs): one program that boots from any image format
//! (docs/guest-images.md) and checks what every format promises: the entry state, its bootargs
//! and a device tree placed as documented, PSCI through both conduits (`hvc` and a trapped
//! `smc`), a second vCPU started with `CPU_ON`, and `SYSTEM_OFF`.
//!
//! The harness gives it to the hypervisor as its ELF file (`elf_guest`, `elf_next_to_linux`,
//! `elf_refused`) and flattened to a raw image (`raw_guest`); by hand:
//! `cargo xtask run --vm kernel=target/aarch64-unknown-none/release/bootcheck,base=0x80000000,ram=16M,vcpus=2,cmdline=magic=0x600db007`.
//! Bootargs: `magic=<n>`, which must be [`MAGIC`] (`harness_runner::formats::BOOTCHECK_MAGIC`).
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::ids::PSCI_VERSION_1_1;
use abi::ids::{PSCI_AFFINITY_INFO_64, PSCI_CPU_ON_64, PSCI_SYSTEM_OFF, PSCI_VERSION};
use abi::PsciStatus;
use guest_rt::psci::{AffinityState, LowestAffinityLevel};
use guest_rt::{arch, boot_info, check, check_eq, expect_stop, fail, hvc, smc, test, time};
use guests::secondary::{self, secondary_main, HANDSHAKE_TIMEOUT_MS, SECONDARY};

guest_rt::test_main!();

/// The `magic=` bootarg the harness passes (the same number as the runner's
/// `BOOTCHECK_MAGIC`): proves the bootargs were read from this VM's device tree.
const MAGIC: u64 = 0x600d_b007;
/// The device tree's alignment and the free gap the hypervisor leaves after the image
/// (`hypervisor/src/vm/layout.rs`, `DTB_ALIGN` and `DTB_GAP`), and its largest size.
const DTB_ALIGN: u64 = 64 << 10;
const DTB_GAP: u64 = 64 << 10;
const DTB_MAX: u64 = 64 << 10;
/// A function ID in the PSCI range that PSCI does not assign.
const PSCI_UNASSIGNED: u32 = 0x8400_001F;
const NOT_SUPPORTED: i64 = PsciStatus::NotSupported as i64;

/// The system registers of the entry contract, as this vCPU sees them (the runtime changes
/// none of them): CurrentEL, DAIF, SCTLR_EL1.
#[cfg(target_os = "none")]
fn entry_registers() -> (u64, u64, u64) {
    let (el, daif, sctlr): (u64, u64, u64);
    // SAFETY: reading system registers has no side effect.
    unsafe {
        core::arch::asm!(
            "mrs {el}, CurrentEL",
            "mrs {daif}, DAIF",
            "mrs {sctlr}, SCTLR_EL1",
            el = out(reg) el,
            daif = out(reg) daif,
            sctlr = out(reg) sctlr,
            options(nomem, nostack, preserves_flags)
        )
    };
    (el, daif, sctlr)
}

#[cfg(not(target_os = "none"))]
fn entry_registers() -> (u64, u64, u64) {
    unreachable!("guest code only runs inside a VM")
}

/// `[start, end)` of the loaded image (`linker/guest.ld`): what the device tree must follow.
#[cfg(target_os = "none")]
fn image_range() -> (u64, u64) {
    extern "C" {
        static __image_start: [u8; 0];
        static __image_end: [u8; 0];
    }
    // Only the addresses of the linker symbols are taken.
    (
        (&raw const __image_start) as u64,
        (&raw const __image_end) as u64,
    )
}

#[cfg(not(target_os = "none"))]
fn image_range() -> (u64, u64) {
    unreachable!("guest code only runs inside a VM")
}

test!(
    fn entry_state() {
        let (el, daif, sctlr) = entry_registers();
        // CurrentEL bits [3:2]; DAIF bits [9:6]; SCTLR_EL1.M bit 0, .C bit 2, .I bit 12.
        check_eq!((el >> 2) & 3, 1, "exception level (CurrentEL)");
        check_eq!(daif, 0b1111 << 6, "DAIF: D, A, I and F masked");
        check_eq!(sctlr & 1, 0, "SCTLR_EL1.M: MMU off");
        check_eq!(sctlr & (1 << 2), 0, "SCTLR_EL1.C: data cache off");
    }
);

test!(
    fn bootargs_from_the_device_tree() {
        let info = boot_info();
        check_eq!(
            guest_rt::param_u64("magic"),
            Some(MAGIC),
            "magic= in /chosen/bootargs `{}`",
            info.cmdline.as_str()
        );
        let (start, end) = image_range();
        let dtb = info.dtb_ipa;
        check!(
            info.ram_base <= start && end <= info.ram_end(),
            "image {start:#x}..{end:#x} outside RAM {:#x}..{:#x}",
            info.ram_base,
            info.ram_end()
        );
        check!(
            dtb.is_multiple_of(DTB_ALIGN),
            "device tree at {dtb:#x}, not 64 KiB aligned"
        );
        check!(
            dtb >= end + DTB_GAP,
            "device tree at {dtb:#x}, less than 64 KiB after the image end {end:#x}"
        );
        check!(
            dtb + DTB_MAX <= info.ram_end(),
            "device tree at {dtb:#x} does not fit in RAM ending at {:#x}",
            info.ram_end()
        );
        check!(
            info.vcpu_count >= 2,
            "needs 2 vCPUs, the device tree lists {}",
            info.vcpu_count
        );
    }
);

test!(
    fn psci_version_hvc_and_smc() {
        for (conduit, call) in [("hvc", hvc as fn(u32, [u64; 3]) -> [u64; 4]), ("smc", smc)] {
            let version = call(PSCI_VERSION, [0; 3])[0];
            check_eq!(
                version,
                PSCI_VERSION_1_1 as u64,
                "PSCI_VERSION through {conduit}"
            );
            let unknown = call(PSCI_UNASSIGNED, [0; 3])[0] as i64;
            check_eq!(
                unknown,
                NOT_SUPPORTED,
                "unassigned PSCI function {PSCI_UNASSIGNED:#x} through {conduit}"
            );
        }
    }
);

/// `AFFINITY_INFO(1)` through `smc`.
fn secondary_state() -> i64 {
    let level: u64 = LowestAffinityLevel::All.into();
    smc(PSCI_AFFINITY_INFO_64, [SECONDARY, level, 0])[0] as i64
}

test!(
    fn cpu_on_through_smc() {
        // The runtime's secondary entry point runs the function passed as context id.
        let entry = secondary_main as fn() as usize as u64;
        let status = smc(
            PSCI_CPU_ON_64,
            [SECONDARY, arch::secondary_entry_ipa(), entry],
        )[0] as i64;
        check_eq!(status, PsciStatus::Success as i64, "CPU_ON(1) through smc");
        check!(
            secondary::wait_running(),
            "vCPU 1 did not run within {HANDSHAKE_TIMEOUT_MS} ms"
        );
        check_eq!(
            secondary_state(),
            AffinityState::On as i64,
            "AFFINITY_INFO(1) while it runs"
        );
        secondary::release();
        check!(
            time::wait_until(HANDSHAKE_TIMEOUT_MS, || secondary_state()
                == AffinityState::Off as i64),
            "vCPU 1 still on {HANDSHAKE_TIMEOUT_MS} ms after its release"
        );
    }
);

test!(
    fn boots_and_powers_off() {
        expect_stop("boots_and_powers_off");
        let [x0, ..] = hvc(PSCI_SYSTEM_OFF, [0; 3]);
        fail!("PSCI SYSTEM_OFF returned {}", x0 as i64);
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
