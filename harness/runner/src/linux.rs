//! Linux guests: their boot bundle entries, the QEMU memory they need, and the Linux suites
//! (a QEMU boot of Debian's kernel with the harness initramfs, judged by expectations on the
//! VMs' console lines). See `docs/linux-guests.md`.
//!
//! The initramfs (`xtask/src/init.sh`) prints `HV-LINUX-BOOT <name>`, `HV-LINUX-READY <name>`
//! and `HV-LINUX-CPUS <n>` and runs the test named by `hvtest=` on the command line; `<name>` is
//! `hvname=` from the command line.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bootbundle::{BundleBuilder, OwnedVmSpec, VmFlags};
use regex::Regex;

use crate::formats::SuiteImage;
use crate::framing::{parse_line, ConsoleLine};
use crate::layout::{self, GuestLayout};
use crate::monitor::CaseResult;
use crate::qemu::InputStep;

/// Linux VMs see their RAM at this IPA (2 MiB aligned, as the arm64 boot protocol wants; the
/// same address as RAM on QEMU `virt`, so the guest's memory map looks like the board's).
pub const LINUX_IPA_BASE: u64 = 0x4000_0000;
/// Defaults of `--vm`.
pub const DEFAULT_RAM: u64 = 256 << 20;
pub const DEFAULT_CMDLINE: &str = "console=ttyAMA0";
/// QEMU memory kept for the hypervisor (its image, heap, page tables, the device tree, and the
/// RAM below where QEMU puts the boot bundle, which no large VM can use).
pub const HYPERVISOR_RESERVE: u64 = 256 << 20;
/// QEMU `-m` is never set below the 1 GiB the test guests' suites use, nor above this.
pub const MIN_MACHINE_RAM: u64 = 1 << 30;
pub const MAX_MACHINE_RAM: u64 = 8 << 30;
/// QEMU `-m` is a multiple of this.
const MACHINE_RAM_STEP: u64 = 256 << 20;

/// The guest images the Linux suites and the demo boot (prepared by `xtask`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxImages {
    /// A raw arm64 `Image` (`target/images/linux-Image`).
    pub kernel: PathBuf,
    /// The harness initramfs (`target/images/initramfs.cpio.gz`).
    pub initramfs: PathBuf,
}

/// A Linux VM with its images loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxVm {
    pub name: String,
    pub kernel: Vec<u8>,
    /// Empty: no initrd.
    pub initrd: Vec<u8>,
    pub ram: u64,
    pub vcpus: u32,
    pub cmdline: String,
}

/// `256 MiB`, `1 GiB`, `1.5 GiB`, `4 KiB`, `100 bytes`.
pub fn size_text(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift {
            return if n.is_multiple_of(1 << shift) {
                format!("{} {unit}", n >> shift)
            } else {
                format!("{:.1} {unit}", n as f64 / (1u64 << shift) as f64)
            };
        }
    }
    format!("{n} bytes")
}

/// Where the hypervisor will place the VM's kernel, initrd and device tree; refuses a VM that
/// it would refuse (bad header, RAM too small), with the VM's name in the message.
pub fn plan_vm(vm: &LinuxVm) -> Result<GuestLayout, String> {
    layout::plan(vm.ram, &vm.kernel, true, 0, 0, vm.initrd.len() as u64)
        .map_err(|e| format!("VM `{}`: {e}", vm.name))
}

/// The QEMU memory (`-m`, in bytes) for VMs with `ram` bytes of RAM in all whose boot bundle is
/// `payload` bytes: both, plus [`HYPERVISOR_RESERVE`], rounded up to 256 MiB, at least
/// [`MIN_MACHINE_RAM`]. More than [`MAX_MACHINE_RAM`] is refused.
pub fn machine_ram(ram: u64, payload: u64) -> Result<u64, String> {
    let need = ram
        .checked_add(payload)
        .and_then(|n| n.checked_add(HYPERVISOR_RESERVE))
        .and_then(|n| n.checked_next_multiple_of(MACHINE_RAM_STEP))
        .unwrap_or(u64::MAX);
    if need > MAX_MACHINE_RAM {
        let images = if payload > 0 {
            format!(" and {} of images", size_text(payload))
        } else {
            String::new()
        };
        return Err(format!(
            "the VMs need {} of RAM{images}, plus {} for the hypervisor: more than the {} \
             QEMU machine xtask runs",
            size_text(ram),
            size_text(HYPERVISOR_RESERVE),
            size_text(MAX_MACHINE_RAM)
        ));
    }
    Ok(need.max(MIN_MACHINE_RAM))
}

/// The QEMU memory for these VMs, see [`machine_ram`].
pub fn machine_ram_for(vms: &[LinuxVm]) -> Result<u64, String> {
    let ram = vms.iter().fold(0u64, |a, v| a.saturating_add(v.ram));
    let payload = vms.iter().fold(0u64, |a, v| {
        a.saturating_add((v.kernel.len() + v.initrd.len() + v.cmdline.len()) as u64)
    });
    machine_ram(ram, payload)
}

/// The boot bundle of Linux VMs: flag `LINUX`, RAM at [`LINUX_IPA_BASE`], offsets 0 (the
/// hypervisor places the kernel), the initrd and command line as given. Every VM is checked
/// with [`plan_vm`] first.
pub fn build_linux_bundle(vms: &[LinuxVm]) -> Result<Vec<u8>, String> {
    let mut builder = BundleBuilder::new();
    for vm in vms {
        plan_vm(vm)?;
        builder.add(OwnedVmSpec {
            name: vm.name.clone(),
            ram_size: vm.ram,
            ipa_base: LINUX_IPA_BASE,
            image: vm.kernel.clone(),
            load_offset: 0,
            entry_offset: 0,
            cmdline: vm.cmdline.clone(),
            initrd: vm.initrd.clone(),
            vcpus: vm.vcpus,
            flags: VmFlags(VmFlags::LINUX),
            start_after: None,
            fixed_pa: None,
            cpu_pct: None,
        });
    }
    builder
        .build()
        .map_err(|e| format!("boot bundle refused: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Suites

/// The Linux suites, in the order `cargo xtask test` runs them. All but
/// [`BAD_VM_ARGS_SUITE`] boot QEMU.
pub const LINUX_SUITES: &[&str] = &[
    BAD_VM_ARGS_SUITE,
    "linux_boot_gicv3",
    "linux_boot_gicv2",
    "linux_smp2",
    "linux_4vcpus_2cpus",
    "linux_two_vms",
    "linux_poweroff_one",
    "linux_reboot_one",
    "linux_sleep_1s",
    "linux_flood_isolation",
    "linux_console_input",
];

/// The host-only suite that runs `cargo xtask run --vm ...` with bad values (see
/// [`bad_vm_args_cases`]).
pub const BAD_VM_ARGS_SUITE: &str = "linux_bad_vm_args";

/// How long a Linux suite may run.
pub const LINUX_SUITE_TIMEOUT: Duration = Duration::from_secs(120);

/// A QEMU boot of Linux VMs and what their consoles must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxSuite {
    pub name: String,
    pub smp: u32,
    /// GIC version, 2 or 3.
    pub gic: u32,
    pub timeout: Duration,
    pub vms: Vec<LinuxSuiteVm>,
    pub expectations: Vec<Expectation>,
    /// What the runner types into the serial console, and when (empty: QEMU's standard input
    /// is `/dev/null`, as for the test-guest suites).
    pub input: Vec<InputStep>,
}

/// One VM of a Linux suite: Debian's kernel and the harness initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxSuiteVm {
    pub name: String,
    pub vcpus: u32,
    pub ram: u64,
    pub cmdline: String,
    /// What it boots: Debian's kernel and the initramfs, or another image
    /// ([`crate::formats`]).
    pub image: SuiteImage,
}

impl LinuxSuiteVm {
    /// 256 MiB, 1 vCPU, `console=ttyAMA0 hvname=<name>`, plus `hvtest=<test>` if given.
    pub fn new(name: &str, hvtest: Option<&str>) -> Self {
        let mut cmdline = format!("{DEFAULT_CMDLINE} hvname={name}");
        if let Some(t) = hvtest {
            let _ = write!(cmdline, " hvtest={t}");
        }
        LinuxSuiteVm {
            name: name.into(),
            vcpus: 1,
            ram: DEFAULT_RAM,
            cmdline,
            image: SuiteImage::Linux,
        }
    }
    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }
}

/// One test case of a Linux suite, reported as `<vm>::<case>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub case: String,
    pub expect: Expect,
    /// Only what comes after this other case (`<vm>::<case>`, of the same suite) was met
    /// counts.
    pub after: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `count` lines of VM `vm` (the text after `<vm>| `) match `regex`.
    Line {
        vm: String,
        regex: String,
        count: usize,
    },
    /// A `#HV <event>` record with `name=<vm>` and these fields.
    Record {
        vm: String,
        event: String,
        fields: Vec<(String, String)>,
    },
    /// VM `vm` printed `HV-SLEEP-START <uptime>` then `HV-SLEEP-END <uptime>`, and the guest
    /// time between them is within `[min_ms, max_ms]` milliseconds.
    Sleep {
        vm: String,
        min_ms: u64,
        max_ms: u64,
    },
    /// A hypervisor log line (`[LEVEL] message`, the whole line) matches `regex`; the case is
    /// reported under VM `vm`.
    Log { vm: String, regex: String },
    /// No line of VM `vm` matches `regex` until case `until` (`<vm>::<case>`) is met: the case
    /// passes then, and fails at the first such line, or if `until` is never met.
    Absent {
        vm: String,
        regex: String,
        until: String,
    },
}

impl Expectation {
    /// `<vm>::<case>`, as reported.
    pub fn id(&self) -> String {
        format!("{}::{}", self.vm(), self.case)
    }

    pub fn vm(&self) -> &str {
        match &self.expect {
            Expect::Line { vm, .. }
            | Expect::Record { vm, .. }
            | Expect::Sleep { vm, .. }
            | Expect::Log { vm, .. }
            | Expect::Absent { vm, .. } => vm,
        }
    }

    /// What is expected, for failure messages.
    pub fn describe(&self) -> String {
        let what = match &self.expect {
            Expect::Line { regex, count, .. } if *count == 1 => {
                format!("a line matching `{regex}`")
            }
            Expect::Line { regex, count, .. } => format!("{count} lines matching `{regex}`"),
            Expect::Record { event, fields, .. } => {
                let mut s = format!("`#HV {event} name={}", self.vm());
                for (k, v) in fields {
                    let _ = write!(s, " {k}={v}");
                }
                s + "`"
            }
            Expect::Sleep { min_ms, max_ms, .. } => format!(
                "HV-SLEEP-START/END {:.1} to {:.1} s apart",
                *min_ms as f64 / 1000.0,
                *max_ms as f64 / 1000.0
            ),
            Expect::Log { regex, .. } => format!("a hypervisor log line matching `{regex}`"),
            Expect::Absent { regex, until, .. } => {
                format!("no line matching `{regex}` until `{until}`")
            }
        };
        match &self.after {
            Some(a) => format!("{what} after `{a}`"),
            None => what,
        }
    }
}

fn line(case: &str, vm: &str, regex: &str, count: usize, after: Option<&str>) -> Expectation {
    Expectation {
        case: case.into(),
        expect: Expect::Line {
            vm: vm.into(),
            regex: regex.into(),
            count,
        },
        after: after.map(str::to_string),
    }
}

/// `<vm>::ready`: the initramfs marker.
fn ready(vm: &str) -> Expectation {
    line("ready", vm, &format!("^HV-LINUX-READY {vm}$"), 1, None)
}

/// `<vm>::<case>`: a hypervisor log line matching `regex`, after case `after`.
fn log(case: &str, vm: &str, regex: &str, after: Option<&str>) -> Expectation {
    Expectation {
        case: case.into(),
        expect: Expect::Log {
            vm: vm.into(),
            regex: regex.into(),
        },
        after: after.map(str::to_string),
    }
}

fn record(case: &str, vm: &str, event: &str, fields: &[(&str, &str)], after: &str) -> Expectation {
    Expectation {
        case: case.into(),
        expect: Expect::Record {
            vm: vm.into(),
            event: event.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        after: Some(after.into()),
    }
}

fn linux_suite(
    name: &str,
    smp: u32,
    gic: u32,
    vms: Vec<LinuxSuiteVm>,
    expectations: Vec<Expectation>,
) -> LinuxSuite {
    LinuxSuite {
        name: name.into(),
        smp,
        gic,
        timeout: LINUX_SUITE_TIMEOUT,
        vms,
        expectations,
        input: vec![],
    }
}

/// The Linux suite that boots QEMU, by name (`None` for other names, and for
/// [`BAD_VM_ARGS_SUITE`]).
pub fn linux_suite_by_name(name: &str) -> Option<LinuxSuite> {
    let vm = LinuxSuiteVm::new;
    let s = match name {
        "linux_boot_gicv3" | "linux_boot_gicv2" => linux_suite(
            name,
            2,
            if name.ends_with("v2") { 2 } else { 3 },
            vec![vm("linux", None)],
            vec![ready("linux")],
        ),
        "linux_smp2" => linux_suite(
            name,
            2,
            3,
            vec![vm("smp", None).vcpus(2)],
            vec![
                ready("smp"),
                line("cpus", "smp", "^HV-LINUX-CPUS 2$", 1, None),
            ],
        ),
        // Four vCPUs of one VM time-shared on two physical CPUs by the quota scheduler
        // (docs/scheduler.md): Linux brings them all up.
        "linux_4vcpus_2cpus" => linux_suite(
            name,
            2,
            3,
            vec![vm("smp", None).vcpus(4)],
            vec![
                ready("smp"),
                line("cpus", "smp", "^HV-LINUX-CPUS 4$", 1, None),
            ],
        ),
        "linux_two_vms" => linux_suite(
            name,
            2,
            3,
            vec![vm("alpha", None), vm("beta", None)],
            vec![ready("alpha"), ready("beta")],
        ),
        // `quitter` powers off; `survivor` must go on printing heartbeats after that.
        "linux_poweroff_one" => linux_suite(
            name,
            2,
            3,
            vec![
                vm("quitter", Some("poweroff")),
                vm("survivor", Some("heartbeat")),
            ],
            vec![
                ready("quitter"),
                record(
                    "system_off",
                    "quitter",
                    "vm-stopped",
                    &[("reason", "system-off")],
                    "quitter::ready",
                ),
                ready("survivor"),
                line(
                    "alive_after",
                    "survivor",
                    "^HV-ALIVE ",
                    2,
                    Some("quitter::system_off"),
                ),
            ],
        ),
        // `rebooter` reboots at every boot: its first boot, the reset, a second boot; and
        // `survivor` goes on.
        "linux_reboot_one" => linux_suite(
            name,
            2,
            3,
            vec![
                vm("rebooter", Some("reboot")),
                vm("survivor", Some("heartbeat")),
            ],
            vec![
                line("boot_1", "rebooter", "^HV-LINUX-BOOT rebooter$", 1, None),
                record("reset", "rebooter", "vm-reset", &[], "rebooter::boot_1"),
                line(
                    "boot_2",
                    "rebooter",
                    "^HV-LINUX-BOOT rebooter$",
                    1,
                    Some("rebooter::reset"),
                ),
                ready("survivor"),
                line(
                    "alive_after",
                    "survivor",
                    "^HV-ALIVE ",
                    2,
                    Some("rebooter::reset"),
                ),
            ],
        ),
        "linux_sleep_1s" => linux_suite(
            name,
            2,
            3,
            vec![vm("sleeper", Some("sleep"))],
            vec![
                ready("sleeper"),
                Expectation {
                    case: "sleep_1s".into(),
                    expect: Expect::Sleep {
                        vm: "sleeper".into(),
                        min_ms: 900,
                        max_ms: 1500,
                    },
                    after: None,
                },
            ],
        ),
        // `flood` prints as fast as it can; `quiet` must still boot and print heartbeats.
        "linux_flood_isolation" => linux_suite(
            name,
            2,
            3,
            vec![vm("flood", Some("flood")), vm("quiet", Some("heartbeat"))],
            vec![
                line("flooding", "flood", "^HV-FLOOD [0-9]+ ", 100, None),
                ready("quiet"),
                line(
                    "alive_during_flood",
                    "quiet",
                    "^HV-ALIVE ",
                    3,
                    Some("flood::flooding"),
                ),
            ],
        ),
        // Typing on the physical console: Ctrl-] 2 gives the input to `beta`, Ctrl-] 1 back to
        // `alpha`, Ctrl-] ? lists the VMs (hypervisor/src/devices/console_input.rs). The
        // shells echo the command lines (`beta| ~ # echo HV-INPUT-$((6*7))`): only the
        // computed output, alone on its line, counts.
        "linux_console_input" => {
            const ESC: u8 = 0x1D;
            let half_s = Duration::from_millis(500);
            let mut s = linux_suite(
                name,
                2,
                3,
                vec![vm("alpha", None), vm("beta", None)],
                vec![
                    ready("alpha"),
                    ready("beta"),
                    log(
                        "selected",
                        "beta",
                        r"^\[ INFO\] console input goes to VM beta$",
                        None,
                    ),
                    line("input", "beta", "^HV-INPUT-42$", 1, Some("beta::selected")),
                    log(
                        "selected",
                        "alpha",
                        r"^\[ INFO\] console input goes to VM alpha$",
                        Some("beta::input"),
                    ),
                    line(
                        "input",
                        "alpha",
                        "^HV-INPUT-A2$",
                        1,
                        Some("alpha::selected"),
                    ),
                    // Had alpha's shell been given beta's command, it would have run it before
                    // alpha's own (one FIFO, in order): so alpha's output closes the window.
                    Expectation {
                        case: "not_given_beta_input".into(),
                        expect: Expect::Absent {
                            vm: "alpha".into(),
                            regex: "^HV-INPUT-42$".into(),
                            until: "alpha::input".into(),
                        },
                        after: None,
                    },
                    log(
                        "listed",
                        "alpha",
                        r"^\[ INFO\] \* 1: alpha$",
                        Some("alpha::input"),
                    ),
                    log(
                        "listed",
                        "beta",
                        r"^\[ INFO\]   2: beta$",
                        Some("alpha::input"),
                    ),
                    // Ctrl-] s: every VM's CPU accounting (docs/scheduler.md).
                    record("sched_stats", "alpha", "sched-stats", &[], "beta::listed"),
                    record("sched_stats", "beta", "sched-stats", &[], "beta::listed"),
                ],
            );
            s.input = vec![
                InputStep {
                    wait_for: vec![
                        r"^alpha\| HV-LINUX-READY alpha$".into(),
                        r"^beta\| HV-LINUX-READY beta$".into(),
                    ],
                    delay: Duration::ZERO,
                    bytes: vec![ESC, b'2'],
                },
                InputStep::after(half_s, b"echo HV-INPUT-$((6*7))\n"),
                InputStep::on_line(r"^beta\| HV-INPUT-42$", &[ESC, b'1']),
                InputStep::after(half_s, b"echo HV-INPUT-A$((1+1))\n"),
                InputStep::on_line(r"^alpha\| HV-INPUT-A2$", &[ESC, b'?']),
                InputStep::on_line(r"^\[ INFO\]   2: beta$", &[ESC, b's']),
            ];
            s
        }
        // The suites that boot other image formats too.
        _ => return crate::formats::suite_by_name(name),
    };
    Some(s)
}

/// The `cargo xtask run --vm` mistakes [`BAD_VM_ARGS_SUITE`] makes, each with the text its
/// error message must contain. `files` names the test files the suite writes first (see
/// [`BadArgsFiles`]).
pub struct BadArgsCase {
    pub name: &'static str,
    pub args: Vec<String>,
    pub expect: String,
}

/// The files [`bad_vm_args_cases`] refers to; [`BadArgsFiles::contents`] says what to write.
pub struct BadArgsFiles {
    pub dir: PathBuf,
}

impl BadArgsFiles {
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `(file name, contents)`: a corrupt kernel (no magic), a truncated one, a big-endian one,
    /// a 64 KiB-page one, a valid header wanting 64 MiB, a small valid one, and the ELF files of
    /// [`crate::formats::bad_args_files`].
    pub fn contents() -> Vec<(&'static str, Vec<u8>)> {
        let header = |image_size: u64, flags: u64| {
            let mut b = vec![0u8; 4096];
            b[16..24].copy_from_slice(&image_size.to_le_bytes());
            b[24..32].copy_from_slice(&flags.to_le_bytes());
            b[0x38..0x3c].copy_from_slice(&layout::IMAGE_MAGIC);
            b
        };
        let corrupt: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        vec![
            ("corrupt-Image", corrupt),
            ("truncated-Image", header(1 << 20, 2)[..40].to_vec()),
            ("big-endian-Image", header(1 << 20, 0b011)),
            ("64k-pages-Image", header(1 << 20, 0b110)),
            ("64MiB-Image", header(64 << 20, 0b1010)),
            ("small-Image", header(1 << 20, 0b1010)),
        ]
        .into_iter()
        .chain(crate::formats::bad_args_files())
        .collect()
    }
}

/// The cases of [`BAD_VM_ARGS_SUITE`]. Each runs `xtask run <args>`, which must exit with
/// status 2, print the expected text, and build and start nothing.
pub fn bad_vm_args_cases(files: &BadArgsFiles) -> Vec<BadArgsCase> {
    let f = |n: &str| files.path(n);
    let missing = f("no-such-Image");
    let case = |name: &'static str, args: &[&str], expect: &str| BadArgsCase {
        name,
        args: std::iter::once("run")
            .chain(args.iter().copied())
            .map(str::to_string)
            .collect(),
        expect: expect.into(),
    };
    let small = format!("kernel={}", f("small-Image"));
    vec![
        case(
            "unknown_key",
            &["--vm", &format!("{small},colour=blue")],
            "--vm: unknown key `colour` (keys: kernel, format, initrd, ram, base, load, vcpus, cpu, cmdline, name)",
        ),
        case(
            "missing_kernel",
            &["--vm", "ram=256M"],
            "--vm `ram=256M`: `kernel=PATH` is missing",
        ),
        case(
            "not_key_value",
            &["--vm", "Image"],
            "--vm: `Image` is not key=value",
        ),
        case(
            "empty_value",
            &["--vm", "kernel="],
            "--vm: `kernel=` has no value",
        ),
        case(
            "repeated_key",
            &["--vm", &format!("{small},ram=1G,ram=2G")],
            "--vm: `ram` given twice",
        ),
        case(
            "bad_size",
            &["--vm", &format!("{small},ram=lots")],
            "--vm: ram=lots: not a size",
        ),
        case(
            "unaligned_size",
            &["--vm", &format!("{small},ram=1000")],
            "--vm: ram=1000: not a multiple of 4 KiB",
        ),
        case(
            "zero_vcpus",
            &["--vm", &format!("{small},vcpus=0")],
            "--vm: vcpus=0: must be 1 to 8",
        ),
        case(
            "too_many_vcpus",
            &["--vm", &format!("{small},vcpus=9")],
            "--vm: vcpus=9: must be 1 to 8",
        ),
        case(
            "bad_name",
            &["--vm", &format!("{small},name=a.b")],
            "--vm: name=a.b: a name is 1 to 31 characters of A-Z a-z 0-9 _ -",
        ),
        case(
            "duplicate_name",
            &[
                "--vm",
                &format!("{small},name=x"),
                "--vm",
                &format!("{small},name=x"),
            ],
            "--vm: two VMs are named `x`",
        ),
        case(
            "machine_ram_exceeded",
            &[
                "--vm",
                &format!("{small},ram=5G"),
                "--vm",
                &format!("{small},ram=3G"),
            ],
            "more than the 8 GiB QEMU machine xtask runs",
        ),
        case(
            "demo_and_vm",
            &["--demo", "guests", "--vm", &small],
            "--demo and --vm cannot be combined",
        ),
        case(
            "unreadable_kernel",
            &["--vm", &format!("kernel={missing}")],
            &format!("VM `vm1`: cannot read kernel {missing}:"),
        ),
        case(
            "corrupt_kernel",
            &[
                "--vm",
                &format!("kernel={},name=bad,format=linux", f("corrupt-Image")),
            ],
            "VM `bad`: not an arm64 Linux Image: bad magic",
        ),
        case(
            "truncated_kernel",
            &["--vm", &format!("kernel={},format=linux", f("truncated-Image"))],
            "VM `vm1`: not an arm64 Linux Image: 40 bytes, shorter than the 64-byte header",
        ),
        case(
            "big_endian_kernel",
            &["--vm", &format!("kernel={}", f("big-endian-Image"))],
            "big-endian arm64 kernel: only little-endian kernels are supported",
        ),
        case(
            "64k_page_kernel",
            &["--vm", &format!("kernel={}", f("64k-pages-Image"))],
            "kernel built for 64 KiB pages: only 4 KiB page kernels are supported",
        ),
        case(
            "ram_too_small",
            &["--vm", &format!("kernel={},ram=32M", f("64MiB-Image"))],
            "VM `vm1`: image needs 64 MiB of RAM but the VM has 32 MiB",
        ),
        case(
            "unreadable_initrd",
            &["--vm", &format!("{small},initrd={missing}")],
            &format!("VM `vm1`: cannot read initrd {missing}:"),
        ),
        case(
            "initrd_does_not_fit",
            &[
                "--vm",
                &format!("{small},ram=2M,initrd={}", f("64MiB-Image")),
            ],
            "VM `vm1`: initrd of 4 KiB does not fit",
        ),
    ]
    .into_iter()
    .chain(crate::formats::bad_args_cases(&f))
    .collect()
}

/// Judges one run of the CLI: exit status 2 and `expect` in its standard error, and no sign of
/// a build or QEMU (`xtask: building`, `xtask: booting`).
pub fn judge_bad_args(code: Option<i32>, stderr: &str, expect: &str) -> Option<String> {
    if code != Some(2) {
        let status = code.map_or("a signal".to_string(), |c| format!("status {c}"));
        return Some(format!(
            "expected exit status 2, got {status}; stderr: {}",
            stderr.trim()
        ));
    }
    if !stderr.contains(expect) {
        return Some(format!(
            "the error does not say `{expect}`; stderr: {}",
            stderr.trim()
        ));
    }
    if stderr.contains("xtask: building") || stderr.contains("xtask: booting") {
        return Some(format!(
            "built or booted before refusing; stderr: {}",
            stderr.trim()
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Judging a Linux suite

#[derive(Debug)]
struct ExpState {
    exp: Expectation,
    regex: Option<Regex>,
    seen: usize,
    /// Console sequence number and time at which it was met.
    met: Option<(u64, Duration)>,
    failed: Option<String>,
    sleep_start: Option<f64>,
    output: Vec<String>,
}

impl ExpState {
    fn open(&self) -> bool {
        self.met.is_none() && self.failed.is_none()
    }
}

/// How many lines of each VM are kept to explain a failure.
const VM_TAIL: usize = 15;

/// Decides a Linux suite's results from its console. Like [`crate::Monitor`], it does no I/O
/// and reads no clock.
#[derive(Debug)]
pub struct LinuxMonitor {
    timeout: Duration,
    exps: Vec<ExpState>,
    tails: Vec<(String, VecDeque<String>)>,
    /// The last hypervisor log lines (shown with a failed [`Expect::Log`] case).
    log_tail: VecDeque<String>,
    faults: Vec<(String, String)>,
    seq: u64,
    panic: Option<String>,
    ended: bool,
    qemu_failure: Option<String>,
}

impl LinuxMonitor {
    /// Fails if an expectation's regex does not compile or its `after` names no case.
    pub fn new(suite: &LinuxSuite) -> Result<Self, String> {
        let mut exps = Vec::new();
        for exp in &suite.expectations {
            let regex = match &exp.expect {
                Expect::Line { regex, .. }
                | Expect::Log { regex, .. }
                | Expect::Absent { regex, .. } => Some(
                    Regex::new(regex)
                        .map_err(|e| format!("case `{}`: bad regex `{regex}`: {e}", exp.id()))?,
                ),
                _ => None,
            };
            let until = match &exp.expect {
                Expect::Absent { until, .. } => Some(("until", until)),
                _ => None,
            };
            for (what, a) in exp
                .after
                .as_ref()
                .map(|a| ("after", a))
                .into_iter()
                .chain(until)
            {
                if *a == exp.id() || !suite.expectations.iter().any(|o| o.id() == *a) {
                    return Err(format!(
                        "case `{}`: `{what}` names no other case `{a}`",
                        exp.id()
                    ));
                }
            }
            exps.push(ExpState {
                exp: exp.clone(),
                regex,
                seen: 0,
                met: None,
                failed: None,
                sleep_start: None,
                output: Vec::new(),
            });
        }
        Ok(LinuxMonitor {
            timeout: suite.timeout,
            exps,
            tails: suite
                .vms
                .iter()
                .map(|v| (v.name.clone(), VecDeque::new()))
                .collect(),
            log_tail: VecDeque::new(),
            faults: Vec::new(),
            seq: 0,
            panic: None,
            ended: false,
            qemu_failure: None,
        })
    }

    /// The console sequence number at which case `id` (`<vm>::<case>`) was met.
    fn met_seq(&self, id: &str) -> Option<u64> {
        self.exps
            .iter()
            .find(|e| e.exp.id() == id)
            .and_then(|e| e.met.map(|(s, _)| s))
    }

    /// Whether what comes at `seq` may count for expectation `i` (its `after` was met before).
    fn after_met(&self, i: usize, seq: u64) -> bool {
        match &self.exps[i].exp.after {
            None => true,
            Some(a) => self.met_seq(a).is_some_and(|s| s < seq),
        }
    }

    fn fail_open(&mut self, vm: Option<&str>, why: &str) {
        for e in self.exps.iter_mut().filter(|e| e.open()) {
            if vm.is_none_or(|v| e.exp.vm() == v) {
                e.failed = Some(match &e.exp.expect {
                    Expect::Absent { until, .. } => format!("`{until}` was not met: {why}"),
                    _ => why.to_string(),
                });
            }
        }
    }

    /// Decides the [`Expect::Absent`] cases whose `until` case was decided.
    fn settle_absent(&mut self, seq: u64, now: Duration) {
        for i in 0..self.exps.len() {
            let Expect::Absent { until, .. } = &self.exps[i].exp.expect else {
                continue;
            };
            if !self.exps[i].open() {
                continue;
            }
            let Some(u) = self.exps.iter().find(|e| e.exp.id() == *until) else {
                continue;
            };
            let failed = u
                .failed
                .as_ref()
                .map(|f| format!("`{until}` was not met: {f}"));
            if u.met.is_some() {
                self.exps[i].met = Some((seq, now));
            } else if failed.is_some() {
                self.exps[i].failed = failed;
            }
        }
    }

    pub fn feed(&mut self, raw: &str, now: Duration) {
        self.seq += 1;
        let seq = self.seq;
        if self.panic.is_some() || self.ended {
            return;
        }
        self.feed_line(raw, seq, now);
        self.settle_absent(seq, now);
    }

    fn feed_line(&mut self, raw: &str, seq: u64, now: Duration) {
        match parse_line(raw) {
            ConsoleLine::Hv(r) => {
                let raw = raw.trim_end().to_string();
                if r.event == "panic" {
                    let msg = if r.rest.is_empty() {
                        "(no message)".into()
                    } else {
                        r.rest.clone()
                    };
                    self.fail_open(None, &format!("hypervisor panic: {msg}"));
                    self.panic = Some(msg);
                    return;
                }
                let Some(vm) = r.get("name").map(str::to_string) else {
                    return;
                };
                if let Some((_, tail)) = self.tails.iter_mut().find(|(n, _)| *n == vm) {
                    push_tail(tail, &raw);
                }
                for i in 0..self.exps.len() {
                    let matches = match &self.exps[i].exp.expect {
                        Expect::Record {
                            vm: v,
                            event,
                            fields,
                        } => {
                            *v == vm
                                && *event == r.event
                                && fields.iter().all(|(k, val)| r.get(k) == Some(val))
                        }
                        _ => false,
                    };
                    if matches && self.exps[i].open() && self.after_met(i, seq) {
                        let e = &mut self.exps[i];
                        e.met = Some((seq, now));
                        e.output.push(raw.clone());
                    }
                }
                match r.event.as_str() {
                    "vm-fault" => self.faults.push((vm, raw)),
                    "vm-stopped" => {
                        let reason = r.get("reason").unwrap_or("unknown");
                        if matches!(reason, "fault" | "error") {
                            self.faults.push((vm.clone(), raw.clone()));
                        }
                        self.fail_open(
                            Some(&vm),
                            &format!("VM stopped (reason={reason}) before this was seen"),
                        );
                    }
                    _ => {}
                }
            }
            ConsoleLine::Guest { vm, text, .. } => {
                if let Some((_, tail)) = self.tails.iter_mut().find(|(n, _)| *n == vm) {
                    push_tail(tail, raw.trim_end());
                }
                for i in 0..self.exps.len() {
                    if self.exps[i].exp.vm() != vm
                        || !self.exps[i].open()
                        || !self.after_met(i, seq)
                    {
                        continue;
                    }
                    let e = &mut self.exps[i];
                    match &e.exp.expect {
                        Expect::Line { count, .. } => {
                            if e.regex.as_ref().is_some_and(|r| r.is_match(&text)) {
                                e.seen += 1;
                                if e.output.len() < 20 {
                                    e.output.push(raw.trim_end().to_string());
                                }
                                if e.seen >= *count {
                                    e.met = Some((seq, now));
                                }
                            }
                        }
                        Expect::Sleep { min_ms, max_ms, .. } => {
                            let (min_ms, max_ms) = (*min_ms, *max_ms);
                            let number = |p: &str| {
                                text.strip_prefix(p)
                                    .and_then(|t| t.split_whitespace().next())
                                    .and_then(|t| t.parse::<f64>().ok())
                            };
                            if let Some(t) = number("HV-SLEEP-START ") {
                                e.sleep_start = Some(t);
                                e.output.push(raw.trim_end().to_string());
                            } else if let Some(t1) = number("HV-SLEEP-END ") {
                                e.output.push(raw.trim_end().to_string());
                                match e.sleep_start {
                                    None => {
                                        e.failed = Some("HV-SLEEP-END before HV-SLEEP-START".into())
                                    }
                                    Some(t0) => {
                                        let ms = ((t1 - t0) * 1000.0).round();
                                        if ms >= min_ms as f64 && ms <= max_ms as f64 {
                                            e.met = Some((seq, now));
                                        } else {
                                            e.failed = Some(format!(
                                                "`sleep 1` took {:.2} s of guest time ({t0} to {t1}), \
                                                 expected {:.1} to {:.1} s",
                                                t1 - t0,
                                                min_ms as f64 / 1000.0,
                                                max_ms as f64 / 1000.0
                                            ));
                                        }
                                    }
                                }
                            }
                        }
                        Expect::Absent { .. } => {
                            if e.regex.as_ref().is_some_and(|r| r.is_match(&text)) {
                                e.output.push(raw.trim_end().to_string());
                                e.failed = Some(format!("seen: {}", raw.trim_end()));
                            }
                        }
                        Expect::Record { .. } | Expect::Log { .. } => {}
                    }
                }
            }
            // The hypervisor's log: `[LEVEL] message`.
            ConsoleLine::Other(text) if text.starts_with('[') => {
                if self.log_tail.len() == VM_TAIL {
                    self.log_tail.pop_front();
                }
                self.log_tail.push_back(text.clone());
                for i in 0..self.exps.len() {
                    let matches = matches!(self.exps[i].exp.expect, Expect::Log { .. })
                        && self.exps[i]
                            .regex
                            .as_ref()
                            .is_some_and(|r| r.is_match(&text));
                    if matches && self.exps[i].open() && self.after_met(i, seq) {
                        let e = &mut self.exps[i];
                        e.met = Some((seq, now));
                        e.output.push(text.clone());
                    }
                }
            }
            ConsoleLine::Other(_) => {}
        }
    }

    /// The suite's time limit (from QEMU's start).
    pub fn deadline(&self) -> Duration {
        self.timeout
    }

    /// The time limit passed: every open case fails.
    pub fn timeout(&mut self, _now: Duration) {
        if !self.ended && self.panic.is_none() {
            let why = format!("not seen within {:?}", self.timeout);
            self.fail_open(None, &why);
            self.ended = true;
        }
    }

    pub fn qemu_exited(&mut self, status: &str, success: bool) {
        if !self.ended && self.panic.is_none() {
            self.fail_open(
                None,
                &format!("QEMU exited ({status}) before this was seen"),
            );
            self.ended = true;
        }
        if !success {
            self.qemu_failure = Some(format!("QEMU exited with {status}"));
        }
    }

    /// Every case is decided (or the hypervisor panicked, or it is over).
    pub fn is_finished(&self) -> bool {
        self.ended || self.panic.is_some() || self.exps.iter().all(|e| !e.open())
    }

    /// One case per expectation (`<vm>::<case>`), then `<vm>::(fault)` for each VM the
    /// hypervisor stopped for a fault, `hypervisor` on a panic, `qemu` on a failed exit.
    pub fn results(&self) -> Vec<CaseResult> {
        let mut out = Vec::new();
        for e in &self.exps {
            let vm = e.exp.vm();
            let failure = match (&e.met, &e.failed) {
                (Some(_), _) => None,
                (None, Some(f)) => Some(format!("expected {}: {f}", e.exp.describe())),
                (None, None) => Some(format!("expected {}: suite ended first", e.exp.describe())),
            };
            let output = if failure.is_some() {
                let mut o = e.output.clone();
                if matches!(e.exp.expect, Expect::Log { .. }) {
                    o.push(format!(
                        "(last {} hypervisor log lines)",
                        self.log_tail.len()
                    ));
                    o.extend(self.log_tail.iter().cloned());
                }
                if let Some((_, tail)) = self.tails.iter().find(|(n, _)| n == vm) {
                    o.push(format!("(last {} lines of VM {vm})", tail.len()));
                    o.extend(tail.iter().cloned());
                }
                o
            } else {
                e.output.clone()
            };
            out.push(CaseResult {
                vm: Some(vm.to_string()),
                name: e.exp.case.clone(),
                failure,
                time: e.met.map_or(Duration::ZERO, |(_, t)| t),
                output,
            });
        }
        let mut faulted: Vec<&str> = Vec::new();
        for (vm, line) in &self.faults {
            if faulted.contains(&vm.as_str()) {
                continue;
            }
            faulted.push(vm);
            let lines: Vec<String> = self
                .faults
                .iter()
                .filter(|(v, _)| v == vm)
                .map(|(_, l)| l.clone())
                .collect();
            out.push(CaseResult {
                vm: Some(vm.clone()),
                name: "(fault)".into(),
                failure: Some(format!("the hypervisor stopped the VM: {line}")),
                time: Duration::ZERO,
                output: lines,
            });
        }
        if let Some(p) = &self.panic {
            out.push(CaseResult {
                vm: None,
                name: "hypervisor".into(),
                failure: Some(format!("hypervisor panic: {p}")),
                time: Duration::ZERO,
                output: vec![],
            });
        }
        if let Some(q) = &self.qemu_failure {
            out.push(CaseResult {
                vm: None,
                name: "qemu".into(),
                failure: Some(q.clone()),
                time: Duration::ZERO,
                output: vec![],
            });
        }
        out
    }
}

fn push_tail(tail: &mut VecDeque<String>, line: &str) {
    if tail.len() == VM_TAIL {
        tail.pop_front();
    }
    tail.push_back(line.to_string());
}

/// The case names of a suite (for reports of suites that were not run).
pub fn case_names(suite: &LinuxSuite) -> Vec<(String, String)> {
    suite
        .expectations
        .iter()
        .map(|e| (e.vm().to_string(), e.case.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
