//! `basics` (run with 2 vCPUs): the hypercall ABI and PSCI as a guest sees them.
//!
//! Proves that every call `abi` documents answers as documented (SMCCC and PSCI versions,
//! feature queries, the vendor service queries, the project calls), that unknown and malformed
//! calls fail with the documented status while the VM carries on, and that a second vCPU can be
//! started, observed and stopped through PSCI. Bootargs: `vm_id=<n>` (optional) is the VM id
//! `HV_VM_ID` must return.
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::ids::{
    HV_ABI_VERSION, HV_CALL_COUNT_QUERY, HV_CALL_UID_QUERY, HV_REVISION_QUERY, HV_VM_ID, HV_YIELD,
    PSCI_CPU_ON_64, PSCI_FEATURES, PSCI_VERSION, PSCI_VERSION_1_1, SMCCC_ARCH_FEATURES,
    SMCCC_VERSION, SMCCC_VERSION_1_1,
};
use abi::{PsciStatus, Status, ABI_VERSION_MAJOR, ABI_VERSION_MINOR, CONSOLE_WRITE_MAX};
use abi::{HV_CALL_COUNT, HV_REVISION, HV_UID};
use guest_rt::psci::{self, AffinityState};
use guest_rt::{arch, boot_info, check, check_eq, fail, hv, hvc, smc, test, time};
use guests::secondary::{self, secondary_main, HANDSHAKE_TIMEOUT_MS, SECONDARY};
use smccc::psci::PSCI_CPU_SUSPEND_64;

guest_rt::test_main!();

const NO_ARGS: [u64; 3] = [0; 3];
const SUCCESS: i64 = Status::Success as i64;
const NOT_SUPPORTED: i64 = Status::NotSupported as i64;
const INVALID_PARAMETER: i64 = Status::InvalidParameter as i64;

/// `x0` after a call, read as the signed status it is.
fn status(regs: [u64; 4]) -> i64 {
    regs[0] as i64
}

test!(
    fn smccc_version_is_1_1() {
        let version = hvc(SMCCC_VERSION, NO_ARGS)[0];
        check!(
            version == SMCCC_VERSION_1_1 as u64,
            "SMCCC_VERSION returned {version:#x}"
        );
    }
);

test!(
    fn arch_features_known_and_unknown() {
        let queries = [
            (PSCI_CPU_ON_64, SUCCESS, "PSCI CPU_ON (64-bit)"),
            (HV_ABI_VERSION, SUCCESS, "HV_ABI_VERSION"),
            (0xC600_1234, NOT_SUPPORTED, "an unassigned project call"),
        ];
        for (function, expected, what) in queries {
            let answer = status(hvc(SMCCC_ARCH_FEATURES, [function as u64, 0, 0]));
            check_eq!(
                answer,
                expected,
                "SMCCC_ARCH_FEATURES({function:#x}), {what}"
            );
        }
    }
);

test!(
    fn vendor_call_count_uid_revision() {
        check_eq!(
            hvc(HV_CALL_COUNT_QUERY, NO_ARGS)[0],
            HV_CALL_COUNT as u64,
            "call count"
        );
        // 32-bit calls: the results are w0..w3.
        let uid = hvc(HV_CALL_UID_QUERY, NO_ARGS).map(|x| x as u32);
        check_eq!(uid, HV_UID, "call UID in w0..w3");
        let [major, minor, ..] = hvc(HV_REVISION_QUERY, NO_ARGS);
        check_eq!(
            (major as u32, minor as u32),
            HV_REVISION,
            "revision (major, minor)"
        );
    }
);

test!(
    fn abi_version() {
        let [x0, major, minor, _] = hvc(HV_ABI_VERSION, NO_ARGS);
        check_eq!(x0 as i64, SUCCESS);
        check_eq!(major, ABI_VERSION_MAJOR as u64, "major");
        check_eq!(minor, ABI_VERSION_MINOR as u64, "minor");
    }
);

test!(
    fn vm_id() {
        let [x0, id, vcpu, vcpus] = hvc(HV_VM_ID, NO_ARGS);
        check_eq!(x0 as i64, SUCCESS);
        check!(id >= 1, "VM ids start at 1, got {id}");
        if let Some(expected) = guest_rt::param_u64("vm_id") {
            check_eq!(id, expected, "VM id against the vm_id= bootarg");
        }
        check_eq!(vcpu, 0, "vCPU index of the boot vCPU");
        check_eq!(
            vcpus,
            boot_info().vcpu_count as u64,
            "vCPU count against the device tree"
        );
    }
);

test!(
    fn debug_control_is_not_the_guests() {
        // MDSCR_EL1 is not switched between vCPUs (docs/benchmarks.md, "vCPU switch"): that is
        // only right because MDCR_EL2.TDA traps it and the hypervisor ignores the write. Set
        // MDE and KDE (bits 15 and 13) and read it back.
        let wanted: u64 = (1 << 15) | (1 << 13);
        let read: u64;
        #[cfg(target_os = "none")]
        {
            // SAFETY: a write the hypervisor traps and ignores; were it not trapped, MDE and
            // KDE alone change nothing without breakpoints programmed.
            unsafe {
                core::arch::asm!(
                    "msr mdscr_el1, {w}",
                    "mrs {r}, mdscr_el1",
                    w = in(reg) wanted,
                    r = out(reg) read,
                    options(nostack)
                )
            };
        }
        #[cfg(not(target_os = "none"))]
        {
            read = 0;
        }
        check_eq!(read & wanted, 0);
    }
);

test!(
    fn unknown_calls_not_supported() {
        let unknown = [
            (0xC600_1234, "unassigned project call"),
            (0x8600_0042, "unassigned 32-bit vendor hypervisor call"),
            (0xC700_0000, "trusted application range"),
            (0x4600_0000, "yielding call"),
            (0xC500_0000, "standard hypervisor service range"),
        ];
        for (function, what) in unknown {
            check_eq!(
                status(hvc(function, NO_ARGS)),
                NOT_SUPPORTED,
                "{function:#x}, {what}"
            );
        }
    }
);

test!(
    fn management_calls_denied() {
        // Not the management VM: every management call is refused before its arguments are
        // looked at, whatever they are (a valid page of ours included), and changes nothing.
        let page = guests::mgmt::page_ipa();
        for function in abi::mgmt::MGMT_FIRST..=abi::mgmt::MGMT_LAST {
            for args in [NO_ARGS, [page, page, 1], [1, page, 16]] {
                check_eq!(
                    status(hvc(function, args)),
                    Status::Denied as i64,
                    "management call {function:#x} with {args:#x?}"
                );
            }
        }
    }
);

test!(
    fn console_write_bad_pointers() {
        /// Any short length will do: these buffers are refused before a byte is read.
        const LEN: u64 = 8;
        let info = boot_info();
        let ram_end = info.ram_end();
        check!(
            info.ram_base >= LEN,
            "RAM at {:#x}: IPA 0 would be in RAM",
            info.ram_base
        );
        let refused = [
            (0, LEN, "IPA 0, below RAM"),
            (ram_end, LEN, "just past the end of RAM"),
            (ram_end - LEN / 2, LEN, "straddling the end of RAM"),
            (
                info.ram_base,
                CONSOLE_WRITE_MAX + 1,
                "longer than CONSOLE_WRITE_MAX",
            ),
            (
                u64::MAX - LEN / 2,
                LEN,
                "wrapping around the end of the address space",
            ),
        ];
        for (ipa, len, what) in refused {
            let answer = status(hv::console_write(ipa, len));
            check_eq!(
                answer,
                INVALID_PARAMETER,
                "HV_CONSOLE_WRITE({ipa:#x}, {len}), {what}"
            );
        }
        // Still alive, and a good buffer is written whole.
        let text = b"console_write_bad_pointers: this line is a good write\n";
        let [x0, written, ..] = hv::console_write(text.as_ptr() as u64, text.len() as u64);
        check_eq!(x0 as i64, SUCCESS, "a good write");
        check_eq!(written, text.len() as u64, "bytes written");
    }
);

test!(
    fn yield_returns_success() {
        check_eq!(status(hvc(HV_YIELD, NO_ARGS)), SUCCESS);
    }
);

test!(
    fn psci_version_is_1_1() {
        let through_hvc = hvc(PSCI_VERSION, NO_ARGS)[0];
        check!(
            through_hvc == PSCI_VERSION_1_1 as u64,
            "PSCI_VERSION via hvc: {through_hvc:#x}"
        );
        let through_smc = smc(PSCI_VERSION, NO_ARGS)[0];
        check!(
            through_smc == PSCI_VERSION_1_1 as u64,
            "PSCI_VERSION via smc: {through_smc:#x}"
        );
    }
);

test!(
    fn psci_features() {
        let queries = [
            (PSCI_CPU_ON_64, PsciStatus::Success, "CPU_ON (64-bit)"),
            (PSCI_VERSION, PsciStatus::Success, "PSCI_VERSION"),
            (
                PSCI_CPU_SUSPEND_64,
                PsciStatus::NotSupported,
                "CPU_SUSPEND (64-bit), not emulated",
            ),
        ];
        for (function, expected, what) in queries {
            let answer = status(hvc(PSCI_FEATURES, [function as u64, 0, 0]));
            check_eq!(
                answer,
                expected as i64,
                "PSCI_FEATURES({function:#x}), {what}"
            );
        }
    }
);

fn secondary_state() -> i64 {
    psci::affinity_info(SECONDARY)
}

test!(
    fn psci_cpu_on_secondary() {
        let vcpus = boot_info().vcpu_count;
        check!(
            vcpus > SECONDARY as usize,
            "needs 2 vCPUs, the VM has {vcpus}"
        );
        check_eq!(
            secondary_state(),
            AffinityState::Off as i64,
            "AFFINITY_INFO(1) before CPU_ON"
        );

        check_eq!(
            psci::start_vcpu(SECONDARY, secondary_main),
            PsciStatus::Success as i64,
            "CPU_ON"
        );
        check!(
            secondary::wait_running(),
            "vCPU 1 did not run within {HANDSHAKE_TIMEOUT_MS} ms"
        );
        // It now waits for the release, so it is on for sure.
        check_eq!(
            secondary_state(),
            AffinityState::On as i64,
            "AFFINITY_INFO(1) while it runs"
        );

        secondary::release();
        check!(
            time::wait_until(HANDSHAKE_TIMEOUT_MS, || secondary_state()
                == AffinityState::Off as i64),
            "AFFINITY_INFO(1) still {} {HANDSHAKE_TIMEOUT_MS} ms after its release",
            secondary_state()
        );
    }
);

test!(
    fn psci_cpu_on_errors() {
        /// A vCPU index the 2-vCPU VM does not have.
        const ABSENT: u64 = 7;
        let info = boot_info();
        check!(
            info.vcpu_count <= ABSENT as usize,
            "vCPU {ABSENT} exists in this VM"
        );
        let entry = arch::secondary_entry_ipa();

        let answer = psci::cpu_on(ABSENT, entry, 0);
        check_eq!(
            answer,
            PsciStatus::InvalidParameters as i64,
            "CPU_ON of absent vCPU {ABSENT}"
        );
        let answer = psci::cpu_on(0, entry, 0);
        check_eq!(
            answer,
            PsciStatus::AlreadyOn as i64,
            "CPU_ON of the calling vCPU 0"
        );

        check_eq!(
            secondary_state(),
            AffinityState::Off as i64,
            "vCPU 1 must be off for this case"
        );
        let answer = psci::cpu_on(SECONDARY, info.ram_end(), 0);
        check_eq!(
            answer,
            PsciStatus::InvalidAddress as i64,
            "CPU_ON with an entry past RAM"
        );
    }
);

test!(
    fn hvc_100k_back_to_back() {
        const CALLS: u32 = 100_000;
        let expected = [
            SUCCESS as u64,
            ABI_VERSION_MAJOR as u64,
            ABI_VERSION_MINOR as u64,
        ];
        let mut correct = 0;
        for call in 0..CALLS {
            let answer = hvc(HV_ABI_VERSION, NO_ARGS);
            if answer[..3] != expected {
                let [x0, x1, x2, _] = answer;
                fail!("call {call} of {CALLS} returned x0={x0:#x} x1={x1:#x} x2={x2:#x}");
            }
            correct += 1;
        }
        check_eq!(correct, CALLS);
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
