//! The harness suites: which VMs each one boots, and the boot bundle made from them.

use std::time::Duration;

use bootbundle::{BundleBuilder, OwnedVmSpec, VmFlags};

use crate::elf::FlatImage;
use crate::formats::{bootcheck_cmdline, ImageFormat};

/// Test guests are linked at this IPA (`TEST_GUEST_IPA_BASE`, see `docs/architecture.md`).
pub const TEST_GUEST_IPA_BASE: u64 = 0x8000_0000;
/// Where the isolation suites pin the victim's RAM, so the attacker knows what to aim at.
pub const VICTIM_PA: u64 = 0x5000_0000;
/// An IPA below every test guest's RAM, so mapped in no VM's stage 2 (it is a physical RAM
/// address, which is the point: a guest must not reach it), for `isolation_read_unmapped_ipa`.
pub const UNMAPPED_IPA: u64 = 0x7000_0000;

/// One QEMU run: a boot bundle of VMs, and how to judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suite {
    pub name: String,
    /// QEMU `-smp`.
    pub smp: u32,
    /// Run QEMU with `-icount shift=0,sleep=off` (deterministic time, for benchmarks).
    pub icount: bool,
    /// How long one test may run, from its `#HT run` line; also how long the suite may go
    /// without any progress (a hypervisor that prints nothing).
    pub test_timeout: Duration,
    pub vms: Vec<SuiteVm>,
    /// Extra checks over the whole transcript, each reported as a test case of its own.
    pub checks: Vec<Check>,
    /// The boot bundle's `sched_trace_us`: the hypervisor prints a `#HV sched-window` record
    /// every that many microseconds (0: none), which [`Check::Shares`] judges.
    pub sched_trace_us: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteVm {
    pub name: String,
    /// The guest program: a binary of the `guests` crate.
    pub program: String,
    pub ram_mib: u64,
    pub vcpus: u32,
    /// The command line; `vm_id=<index + 1>` is appended when the bundle is built.
    pub cmdline: String,
    /// Start this VM only once the VM with this index has stopped.
    pub start_after: Option<usize>,
    pub fixed_pa: Option<u64>,
    pub pmu: bool,
    /// The VM gets the emulated platform devices (bundle flag `PLATFORM`): a virtual GICv3,
    /// a PL011 and the virtual timer interrupt.
    pub platform: bool,
    /// This VM's passes only count if the named VM's `#HV vm-stopped` record came earlier.
    pub pass_requires_stopped: Option<String>,
    /// How the program is given to the hypervisor: `Raw`, its flattened image with load and
    /// entry offsets (the default), or `Elf`, its ELF file as it is (bundle flag `ELF`).
    pub format: ImageFormat,
    /// The VirMO CPU percentage; `None`: an equal part of what is left.
    pub cpu_pct: Option<u8>,
    /// The management VM (bundle flag `MANAGEMENT`): may make management calls.
    pub management: bool,
}

impl SuiteVm {
    /// A 16 MiB, 1 vCPU VM running `program`, with an empty command line.
    pub fn new(name: &str, program: &str) -> Self {
        SuiteVm {
            name: name.into(),
            program: program.into(),
            ram_mib: 16,
            vcpus: 1,
            cmdline: String::new(),
            start_after: None,
            fixed_pa: None,
            pmu: false,
            platform: false,
            pass_requires_stopped: None,
            format: ImageFormat::Raw,
            cpu_pct: None,
            management: false,
        }
    }
    pub fn cpu(mut self, pct: u8) -> Self {
        self.cpu_pct = Some(pct);
        self
    }
    pub fn management(mut self) -> Self {
        self.management = true;
        self
    }
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = cmdline.into();
        self
    }
    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }
    pub fn fixed_pa(mut self, pa: u64) -> Self {
        self.fixed_pa = Some(pa);
        self
    }
    pub fn pmu(mut self) -> Self {
        self.pmu = true;
        self
    }
    pub fn platform(mut self) -> Self {
        self.platform = true;
        self
    }
    pub fn pass_requires_stopped(mut self, vm: &str) -> Self {
        self.pass_requires_stopped = Some(vm.into());
        self
    }
    /// Give the hypervisor the program's ELF file (format `elf`).
    pub fn elf(mut self) -> Self {
        self.format = ImageFormat::Elf;
        self
    }
}

/// Checks over a whole suite transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Every listed VM printed `#HT run <test>` before any of them printed `#HT pass <test>`:
    /// the VMs ran at the same time. Reported as test case `<name>`.
    Overlap {
        name: String,
        test: String,
        vms: Vec<String>,
    },
    /// VMs' shares of the device in the windows of the `#HV sched-window` records while the
    /// busy tests all run (`crate::shares`). Reported as test case `<name>`.
    Shares(SharesCheck),
}

/// See [`Check::Shares`] and `crate::shares`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharesCheck {
    pub name: String,
    /// (VM, test): a window counts only if both its records come after the last of these
    /// tests' `#HT run` lines and before the first of them ends.
    pub busy: Vec<(String, String)>,
    pub expect: Vec<ShareExpect>,
    /// With a run-time change (a `#HV quota-applied` record): what holds in the windows that
    /// start at or after it (`expect` holds in those that end before it).
    pub after_change: Option<Vec<ShareExpect>>,
    /// The fewest windows judged (before and after the change, each) for the check to pass.
    pub min_windows: usize,
    /// Report the largest error of a `Near` expectation, in percentage points, as this
    /// `#HT metric`-style figure.
    pub metric: Option<String>,
}

/// What VM `vm`'s share of the device must be in every judged window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareExpect {
    pub vm: String,
    pub bound: ShareBound,
}

/// Shares in hundredths of a percent of the device (basis points).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareBound {
    /// Within `tolerance_bp` of `bp`.
    Near { bp: u32, tolerance_bp: u32 },
    /// At most `bp` (plus `shares::CAP_SLACK_BP`).
    AtMost { bp: u32 },
}

/// Where suites get the addresses they aim at.
pub trait Symbols {
    /// The address of `symbol` in the ELF of guest program `program`.
    fn guest_symbol(&self, program: &str, symbol: &str) -> Result<u64, String>;
    /// The address of `symbol` in the hypervisor ELF.
    fn hypervisor_symbol(&self, symbol: &str) -> Result<u64, String>;
}

/// Where bundles get the guest images.
pub trait GuestImages {
    /// The flattened image of guest program `program`.
    fn guest_image(&self, program: &str) -> Result<FlatImage, String>;
    /// The ELF file of guest program `program`.
    fn guest_elf(&self, program: &str) -> Result<Vec<u8>, String>;
}

/// The suites `cargo xtask test` runs, in order.
pub const TEST_SUITES: &[&str] = &[
    "basics",
    "isolation_read_other_vm",
    "isolation_write_other_vm",
    "isolation_read_hypervisor",
    "isolation_read_unmapped_ipa",
    "system_off_one_vm",
    "two_vms_two_cpus",
    "context_switch_one_cpu",
    "preemption_one_cpu",
    "isolation_write_hypervisor",
    "isolation_exec_other_vm",
    "vcpus_exceed_cpus",
    "elf_guest",
    "raw_guest",
    "sched_shares_one_cpu",
    "sched_shares_two_cpus",
    "sched_cap_alone",
    "sched_idle_wfi",
    "sched_quota_change",
    "sched_default_shares_fit",
];

/// Every suite name, including those only `cargo xtask bench` runs.
pub const ALL_SUITES: &[&str] = &[
    "basics",
    "isolation_read_other_vm",
    "isolation_write_other_vm",
    "isolation_read_hypervisor",
    "isolation_read_unmapped_ipa",
    "system_off_one_vm",
    "two_vms_two_cpus",
    "context_switch_one_cpu",
    "preemption_one_cpu",
    "isolation_write_hypervisor",
    "isolation_exec_other_vm",
    "vcpus_exceed_cpus",
    "elf_guest",
    "raw_guest",
    "sched_shares_one_cpu",
    "sched_shares_two_cpus",
    "sched_cap_alone",
    "sched_idle_wfi",
    "sched_quota_change",
    "sched_default_shares_fit",
    "bench",
    "bench_virq",
    "bench_switch",
    "bench_sched",
];

/// The suites `cargo xtask bench` runs (with `-icount`), in order; each reports `#HT metric`
/// figures (docs/benchmarks.md). `sched_shares_one_cpu` is a test suite too: its figure
/// (`sched_share_error_pp_max`) is computed by the runner from the hypervisor's records.
pub const BENCH_SUITES: &[&str] = &[
    "bench",
    "bench_virq",
    "bench_switch",
    "bench_sched",
    "sched_shares_one_cpu",
];

/// The scheduler suites (docs/scheduler.md): `#HV sched-window` records every 100 ms, and the
/// bound on every VM's share of each window, ±0.5 percentage points (in basis points).
pub const SCHED_TRACE_US: u32 = 100_000;
pub const SHARE_TOLERANCE_BP: u32 = 50;
/// How long the CPU-bound VMs of the share suites spin (guest time, under `-icount`): about
/// ten whole 100 ms windows in which all of them are busy.
pub const SHARE_SPIN_MS: u64 = 1200;
/// `sched_quota_change`: one record per period (10 ms), so that "in force from the next
/// period" is seen window by window; the management VM applies the new set this long after
/// it started, while the two spinners spin for `QUOTA_SPIN_MS`.
pub const QUOTA_TRACE_US: u32 = 10_000;
pub const QUOTA_APPLY_AT_MS: u64 = 500;
pub const QUOTA_SPIN_MS: u64 = 1000;
/// `bench_sched`: how long the PMU guest counts while its partner spins next to it.
pub const OVERHEAD_MEASURE_MS: u64 = 500;

/// `bench_switch`: measured round trips, and the partner's loop count per yield. The partner
/// yields [`SWITCH_PARTNER_YIELDS`] times, well over the bench's 50 warm-up + rounds and the
/// preemption ticks in between (it yields only when it runs), so it is still there for every
/// measured round trip; the bench checks that it was.
pub const SWITCH_ROUNDS: u64 = 2000;
pub const SWITCH_PARTNER_WORK: u64 = 256;
pub const SWITCH_PARTNER_YIELDS: u64 = 3 * SWITCH_ROUNDS + 2000;
const _: () = assert!(SWITCH_PARTNER_YIELDS > 2 * (SWITCH_ROUNDS + 50));

/// `sched_shares_two_cpus`: the spinners keep a masked virtual timer at most this far ahead
/// (`spinner`'s `pace_us`), so that QEMU's `-icount` round robin interleaves the two CPUs.
pub const SHARE_PACE_US: u64 = 50;

const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn suite(name: &str, smp: u32, vms: Vec<SuiteVm>) -> Suite {
    Suite {
        name: name.into(),
        smp,
        icount: false,
        test_timeout: DEFAULT_TEST_TIMEOUT,
        vms,
        checks: Vec::new(),
        sched_trace_us: 0,
    }
}

/// `n` CPU-bound VMs (program `spinner`, `spin_ms`) at VirMO percentages `pcts`, on `smp`
/// physical CPUs, with no management VM (so the percentages are of the whole device), and the
/// check that each gets its share of every 100 ms window.
fn share_suite(name: &str, smp: u32, pcts: &[(&str, u32)], spin_ms: u64) -> Suite {
    let vms = pcts
        .iter()
        .map(|&(vm, p)| {
            SuiteVm::new(vm, "spinner")
                .cmdline(format!("spin_ms={spin_ms}"))
                .cpu(p as u8)
        })
        .collect();
    let mut s = suite(name, smp, vms);
    s.icount = true;
    s.sched_trace_us = SCHED_TRACE_US;
    s.checks.push(Check::Shares(SharesCheck {
        name: "shares".into(),
        busy: busy(pcts.iter().map(|p| p.0), "spin"),
        expect: crate::shares::near(0, pcts, SHARE_TOLERANCE_BP),
        after_change: None,
        min_windows: 8,
        metric: None,
    }));
    s
}

fn busy<'a>(vms: impl Iterator<Item = &'a str>, test: &str) -> Vec<(String, String)> {
    vms.map(|vm| (vm.to_string(), test.to_string())).collect()
}

/// The victim of the isolation suites, optionally pinned at [`VICTIM_PA`]. Its passes only count
/// once `stopped_first` has been stopped: it proves it survived the other VM's end.
fn victim(stopped_first: &str, pinned: bool) -> SuiteVm {
    let vm = SuiteVm::new("victim", "victim")
        .cmdline("wait_ms=2000")
        .pass_requires_stopped(stopped_first);
    if pinned {
        vm.fixed_pa(VICTIM_PA)
    } else {
        vm
    }
}

/// The attacker's `access=` word for an isolation suite: the access its name says.
fn access_in_name(name: &str) -> &'static str {
    if name.contains("write") {
        "write"
    } else if name.contains("exec") {
        "exec"
    } else {
        "read"
    }
}

/// Two `spinner` VMs that busy-wait 300 ms without any hypercall, and the check that they ran at
/// the same time: on `smp` physical CPUs.
fn overlapping_spinners(name: &str, smp: u32) -> Suite {
    let mut s = suite(
        name,
        smp,
        vec![
            SuiteVm::new("spin_a", "spinner").cmdline("spin_ms=300"),
            SuiteVm::new("spin_b", "spinner").cmdline("spin_ms=300"),
        ],
    );
    s.checks.push(Check::Overlap {
        name: "overlap".into(),
        test: "spin".into(),
        vms: vec!["spin_a".into(), "spin_b".into()],
    });
    s
}

fn attacker(target: u64, access: &str) -> SuiteVm {
    SuiteVm::new("attacker", "attacker").cmdline(format!("target={target:#x} access={access}"))
}

/// The physical address of the victim's `VICTIM_PATTERN` when the victim is pinned at
/// [`VICTIM_PA`].
pub fn victim_pattern_pa(symbols: &dyn Symbols) -> Result<u64, String> {
    let ipa = symbols.guest_symbol("victim", "VICTIM_PATTERN")?;
    let offset = ipa.checked_sub(TEST_GUEST_IPA_BASE).ok_or_else(|| {
        format!("VICTIM_PATTERN at {ipa:#x} lies below the guest base {TEST_GUEST_IPA_BASE:#x}")
    })?;
    Ok(VICTIM_PA + offset)
}

/// Builds the named suite (see [`ALL_SUITES`]).
pub fn suite_by_name(name: &str, symbols: &dyn Symbols) -> Result<Suite, String> {
    let s = match name {
        "basics" => suite("basics", 2, vec![SuiteVm::new("basics", "basics").vcpus(2)]),
        "isolation_read_other_vm" | "isolation_write_other_vm" | "isolation_exec_other_vm" => {
            let target = victim_pattern_pa(symbols)?;
            suite(
                name,
                2,
                vec![
                    victim("attacker", true),
                    attacker(target, access_in_name(name)),
                ],
            )
        }
        "isolation_read_hypervisor" | "isolation_write_hypervisor" => {
            let target = symbols.hypervisor_symbol("__data_start")?;
            suite(
                name,
                2,
                vec![
                    victim("attacker", false),
                    attacker(target, access_in_name(name)),
                ],
            )
        }
        "isolation_read_unmapped_ipa" => suite(
            name,
            2,
            vec![victim("attacker", false), attacker(UNMAPPED_IPA, "read")],
        ),
        "system_off_one_vm" => suite(
            name,
            2,
            vec![
                SuiteVm::new("quitter", "system_off"),
                victim("quitter", false),
            ],
        ),
        "two_vms_two_cpus" => overlapping_spinners(name, 2),
        // One physical CPU: the spinners only overlap if the hypervisor time-slices them.
        "preemption_one_cpu" => overlapping_spinners(name, 1),
        // Two VMs on one physical CPU, switched at every yield (and at every preemption tick).
        "context_switch_one_cpu" => suite(
            name,
            1,
            vec![
                SuiteVm::new("ctx_a", "ctxswitch"),
                SuiteVm::new("ctx_b", "ctxswitch"),
            ],
        ),
        // The 2 vCPUs of `basics` share one physical CPU.
        "vcpus_exceed_cpus" => suite(name, 1, vec![SuiteVm::new("basics", "basics").vcpus(2)]),
        // One program booted from its ELF file, and from its flattened raw image
        // (docs/guest-images.md).
        "elf_guest" | "raw_guest" => {
            let vm = SuiteVm::new("bootcheck", "bootcheck")
                .vcpus(2)
                .cmdline(bootcheck_cmdline());
            let vm = if name == "elf_guest" { vm.elf() } else { vm };
            suite(name, 2, vec![vm])
        }
        // Three CPU-bound VMs at 50/30/20 % on one physical CPU, then on two (shares of the
        // whole device). The one-CPU suite's largest error is a benchmark figure.
        "sched_shares_one_cpu" => {
            let mut s = share_suite(name, 1, &[("a", 50), ("b", 30), ("c", 20)], SHARE_SPIN_MS);
            if let Some(Check::Shares(c)) = s.checks.last_mut() {
                c.metric = Some("sched_share_error_pp_max".into());
            }
            s
        }
        "sched_shares_two_cpus" => {
            let mut s = share_suite(name, 2, &[("a", 50), ("b", 30), ("c", 20)], SHARE_SPIN_MS);
            for vm in &mut s.vms {
                vm.cmdline = format!("{} pace_us={SHARE_PACE_US}", vm.cmdline);
            }
            s
        }
        // A VM capped at 20 % alone on an idle two-CPU device gets at most 20 % (0.4 CPU).
        "sched_cap_alone" => {
            let mut s = share_suite(name, 2, &[("capped", 20)], 1000);
            if let Some(Check::Shares(c)) = s.checks.last_mut() {
                c.expect = vec![ShareExpect {
                    vm: "capped".into(),
                    bound: ShareBound::AtMost { bp: 2000 },
                }];
            }
            s
        }
        // A VM waiting in WFI between virtual timer interrupts (every 10 ms) next to a
        // CPU-bound one on one physical CPU: it uses under 0.5 % and its interrupts come on
        // time (the guest checks their lateness); the spinner gets its 50 %.
        "sched_idle_wfi" => {
            let idler = SuiteVm::new("idler", "idler")
                .platform()
                .cpu(50)
                .cmdline("period_ms=10 ticks=100");
            let hog = SuiteVm::new("hog", "spinner")
                .cpu(50)
                .cmdline("spin_ms=1100");
            let mut s = suite(name, 1, vec![idler, hog]);
            s.icount = true;
            s.sched_trace_us = SCHED_TRACE_US;
            s.checks.push(Check::Shares(SharesCheck {
                name: "shares".into(),
                busy: vec![
                    ("idler".into(), "timer_on_time".into()),
                    ("hog".into(), "spin".into()),
                ],
                expect: vec![
                    ShareExpect {
                        vm: "idler".into(),
                        bound: ShareBound::AtMost { bp: 50 },
                    },
                    ShareExpect {
                        vm: "hog".into(),
                        bound: ShareBound::Near {
                            bp: 5000,
                            tolerance_bp: SHARE_TOLERANCE_BP,
                        },
                    },
                ],
                after_change: None,
                min_windows: 6,
                metric: None,
            }));
            s
        }
        // The management VM (`quota_ctl`) reads the device, the VMs and their accounting,
        // has invalid sets refused, then moves `a`/`b` from 50/50 to 80/20 while both spin:
        // 45/45 % of the device before (the management VM has 10 %), 72/18 % from the first
        // period after the change.
        "sched_quota_change" => {
            let ctl = SuiteVm::new("ctl", "quota_ctl")
                .management()
                .cmdline(format!(
                    "apply_at_ms={QUOTA_APPLY_AT_MS} until_ms={} a=2 b=3",
                    QUOTA_SPIN_MS + 100
                ));
            let spinner = |vm: &str| {
                SuiteVm::new(vm, "spinner")
                    .cpu(50)
                    .cmdline(format!("spin_ms={QUOTA_SPIN_MS}"))
            };
            let mut s = suite(name, 1, vec![ctl, spinner("a"), spinner("b")]);
            s.icount = true;
            s.sched_trace_us = QUOTA_TRACE_US;
            s.checks.push(Check::Shares(SharesCheck {
                name: "shares".into(),
                busy: busy(["a", "b"].into_iter(), "spin"),
                expect: crate::shares::near(10, &[("a", 50), ("b", 50)], SHARE_TOLERANCE_BP),
                after_change: Some(crate::shares::near(
                    10,
                    &[("a", 80), ("b", 20)],
                    SHARE_TOLERANCE_BP,
                )),
                min_windows: 20,
                metric: None,
            }));
            s
        }
        // A management VM (10 % of the device) and two 1-vCPU VMs given no percentage on two
        // CPUs, as `cargo xtask run` boots them: the second VM's equal part (VirMO 50 %, 0.9
        // CPU) cannot be placed beside the management VM's 0.2 CPU; it gets the largest share
        // that can be, and both run at once.
        "sched_default_shares_fit" => {
            let spinner = |vm: &str| SuiteVm::new(vm, "spinner").cmdline("spin_ms=300");
            let mut s = suite(
                name,
                2,
                vec![spinner("mgmt").management(), spinner("a"), spinner("b")],
            );
            s.checks.push(Check::Overlap {
                name: "overlap".into(),
                test: "spin".into(),
                vms: vec!["a".into(), "b".into()],
            });
            s
        }
        // Two CPU-bound VMs on one physical CPU at the default period: the PMU guest counts
        // the hypervisor's instructions and everyone's while its partner spins.
        "bench_sched" => {
            let bench = SuiteVm::new("bench", "bench_sched")
                .pmu()
                .cmdline(format!("measure_ms={OVERHEAD_MEASURE_MS}"));
            let partner = SuiteVm::new("partner", "spinner")
                .cmdline(format!("spin_ms={}", OVERHEAD_MEASURE_MS + 200));
            let mut s = suite(name, 1, vec![bench, partner]);
            s.icount = true;
            s.test_timeout = Duration::from_secs(120);
            s
        }
        "bench" => {
            let mut s = suite("bench", 1, vec![SuiteVm::new("bench", "bench_hvc").pmu()]);
            s.icount = true;
            s.test_timeout = Duration::from_secs(120);
            s
        }
        // One PLATFORM VM taking virtual timer interrupts through its vGICv3.
        "bench_virq" => {
            let vm = SuiteVm::new("bench", "bench_virq").pmu().platform();
            let mut s = suite(name, 1, vec![vm.cmdline("samples=1000")]);
            s.icount = true;
            s.test_timeout = Duration::from_secs(120);
            s
        }
        // Two PLATFORM VMs (as Linux VMs are) yielding to each other on one physical CPU.
        "bench_switch" => {
            let bench = SuiteVm::new("bench", "bench_switch")
                .pmu()
                .platform()
                .cmdline(format!(
                    "rounds={SWITCH_ROUNDS} partner_work={SWITCH_PARTNER_WORK}"
                ));
            let partner = SuiteVm::new("partner", "yielder")
                .platform()
                .cmdline(format!(
                    "yields={SWITCH_PARTNER_YIELDS} work={SWITCH_PARTNER_WORK}"
                ));
            let mut s = suite(name, 1, vec![bench, partner]);
            s.icount = true;
            s.test_timeout = Duration::from_secs(120);
            s
        }
        _ => {
            return Err(format!(
                "unknown suite `{name}` (suites: {})",
                ALL_SUITES.join(", ")
            ))
        }
    };
    Ok(s)
}

/// The `cargo xtask run` demo: VMs `alpha` and `beta` running the `demo` guest.
pub fn demo_vms() -> Vec<SuiteVm> {
    vec![
        SuiteVm::new("alpha", "demo").cmdline("ticks=5"),
        SuiteVm::new("beta", "demo").cmdline("ticks=5"),
    ]
}

/// `cmdline` with `vm_id=<id>` appended.
pub fn cmdline_with_id(cmdline: &str, id: usize) -> String {
    let cmdline = cmdline.trim();
    if cmdline.is_empty() {
        format!("vm_id={id}")
    } else {
        format!("{cmdline} vm_id={id}")
    }
}

/// Builds the boot bundle for `vms`.
pub fn build_bundle(vms: &[SuiteVm], images: &dyn GuestImages) -> Result<Vec<u8>, String> {
    build_bundle_traced(vms, 0, images)
}

/// Builds the boot bundle for `vms`, with `#HV sched-window` records every `sched_trace_us`
/// microseconds (0: none).
pub fn build_bundle_traced(
    vms: &[SuiteVm],
    sched_trace_us: u32,
    images: &dyn GuestImages,
) -> Result<Vec<u8>, String> {
    let mut builder = BundleBuilder::new();
    builder.sched_trace_us = sched_trace_us;
    for (index, vm) in vms.iter().enumerate() {
        let flags = if vm.pmu { VmFlags::PMU } else { 0 }
            | if vm.platform { VmFlags::PLATFORM } else { 0 }
            | if vm.management {
                VmFlags::MANAGEMENT
            } else {
                0
            };
        if vm.format == ImageFormat::Elf {
            // The hypervisor loads the segments: check they fit as it will.
            let elf = images.guest_elf(&vm.program)?;
            crate::layout::plan_elf(TEST_GUEST_IPA_BASE, vm.ram_mib << 20, &elf, 0)
                .map_err(|e| format!("guest `{}` as ELF: {e}", vm.program))?;
            builder.add(OwnedVmSpec {
                name: vm.name.clone(),
                ram_size: vm.ram_mib << 20,
                ipa_base: TEST_GUEST_IPA_BASE,
                load_offset: 0,
                entry_offset: 0,
                image: elf,
                cmdline: cmdline_with_id(&vm.cmdline, index + 1),
                initrd: Vec::new(),
                vcpus: vm.vcpus,
                flags: VmFlags(flags | VmFlags::ELF),
                start_after: vm.start_after,
                fixed_pa: vm.fixed_pa,
                cpu_pct: vm.cpu_pct,
            });
            continue;
        }
        let image = images.guest_image(&vm.program)?;
        let offset = |addr: u64, what: &str| {
            addr.checked_sub(TEST_GUEST_IPA_BASE).ok_or_else(|| {
                format!(
                    "guest `{}`: {what} {addr:#x} lies below the guest base {TEST_GUEST_IPA_BASE:#x} \
                     (is it linked with the guest linker script?)",
                    vm.program
                )
            })
        };
        builder.add(OwnedVmSpec {
            name: vm.name.clone(),
            ram_size: vm.ram_mib << 20,
            ipa_base: TEST_GUEST_IPA_BASE,
            load_offset: offset(image.load_addr, "load address")?,
            entry_offset: offset(image.entry, "entry point")?,
            image: image.bytes,
            cmdline: cmdline_with_id(&vm.cmdline, index + 1),
            initrd: Vec::new(),
            vcpus: vm.vcpus,
            flags: VmFlags(flags),
            start_after: vm.start_after,
            fixed_pa: vm.fixed_pa,
            cpu_pct: vm.cpu_pct,
        });
    }
    builder
        .build()
        .map_err(|e| format!("boot bundle refused: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootbundle::Bundle;

    struct Fake;
    impl Symbols for Fake {
        fn guest_symbol(&self, program: &str, symbol: &str) -> Result<u64, String> {
            match (program, symbol) {
                ("victim", "VICTIM_PATTERN") => Ok(0x8000_3040),
                _ => Err(format!("no {symbol} in {program}")),
            }
        }
        fn hypervisor_symbol(&self, symbol: &str) -> Result<u64, String> {
            match symbol {
                "__data_start" => Ok(0x4021_5000),
                _ => Err(format!("no {symbol}")),
            }
        }
    }
    impl GuestImages for Fake {
        fn guest_image(&self, program: &str) -> Result<FlatImage, String> {
            match program {
                "missing" => Err("guest program `missing` not built".into()),
                "low" => Ok(FlatImage {
                    bytes: vec![1; 64],
                    load_addr: 0x4000_0000,
                    entry: 0x4000_0000,
                }),
                _ => Ok(FlatImage {
                    bytes: vec![1; 64],
                    load_addr: 0x8000_1000,
                    entry: 0x8000_1008,
                }),
            }
        }
        fn guest_elf(&self, program: &str) -> Result<Vec<u8>, String> {
            let at = |addr| crate::formats::elf_file(&[(addr, &[0, 0, 0, 0x14], 0x100, 5)], addr);
            match program {
                "missing" => Err("guest program `missing` not built".into()),
                "low" => Ok(at(0x4000_0000)),
                _ => Ok(at(0x8000_1000)),
            }
        }
    }

    fn vm<'a>(s: &'a Suite, name: &str) -> &'a SuiteVm {
        s.vms.iter().find(|v| v.name == name).unwrap()
    }

    #[test]
    fn every_suite_builds_a_valid_bundle() {
        for name in ALL_SUITES {
            let s = suite_by_name(name, &Fake).unwrap();
            assert_eq!(&s.name, name);
            let data = build_bundle(&s.vms, &Fake).unwrap();
            let b = Bundle::parse(&data).unwrap();
            assert_eq!(b.vms().len(), s.vms.len());
            for (i, (spec, vm)) in b.vms().iter().zip(&s.vms).enumerate() {
                assert_eq!(spec.name, vm.name);
                assert!(
                    spec.cmdline.ends_with(&format!("vm_id={}", i + 1)),
                    "{}",
                    spec.cmdline
                );
                if vm.format == ImageFormat::Elf {
                    assert_eq!((spec.load_offset, spec.entry_offset), (0, 0));
                    assert!(spec.flags.elf());
                } else {
                    assert_eq!((spec.load_offset, spec.entry_offset), (0x1000, 0x1008));
                    assert_eq!(spec.flags.format(), ImageFormat::Raw);
                }
                assert_eq!(spec.ipa_base, TEST_GUEST_IPA_BASE);
                assert_eq!(spec.ram_size, 16 << 20);
                assert_eq!(spec.flags.pmu(), vm.pmu);
                assert_eq!(spec.flags.platform(), vm.platform);
                assert!(!spec.flags.linux());
            }
        }
        assert!(TEST_SUITES.iter().all(|s| ALL_SUITES.contains(s)));
        assert!(!TEST_SUITES.contains(&"bench"));
        for name in BENCH_SUITES {
            assert!(ALL_SUITES.contains(name));
            let s = suite_by_name(name, &Fake).unwrap();
            assert!(s.icount, "{name}");
            // A bench suite that `cargo xtask test` runs too has no PMU VM: its figures
            // come from the runner's checks.
            assert!(
                !TEST_SUITES.contains(name) || s.vms.iter().all(|v| !v.pmu),
                "{name}"
            );
        }
        assert!(suite_by_name("nope", &Fake)
            .unwrap_err()
            .contains("unknown suite"));
    }

    #[test]
    fn isolation_targets() {
        let s = suite_by_name("isolation_read_other_vm", &Fake).unwrap();
        assert_eq!(s.vms[0].name, "victim");
        assert_eq!(s.vms[0].fixed_pa, Some(0x5000_0000));
        assert_eq!(s.vms[0].cmdline, "wait_ms=2000");
        assert_eq!(s.vms[0].pass_requires_stopped.as_deref(), Some("attacker"));
        assert_eq!(vm(&s, "attacker").cmdline, "target=0x50003040 access=read");
        let s = suite_by_name("isolation_write_other_vm", &Fake).unwrap();
        assert_eq!(vm(&s, "attacker").cmdline, "target=0x50003040 access=write");
        let s = suite_by_name("isolation_exec_other_vm", &Fake).unwrap();
        assert_eq!(s.vms[0].fixed_pa, Some(0x5000_0000));
        assert_eq!(vm(&s, "attacker").cmdline, "target=0x50003040 access=exec");
        let s = suite_by_name("isolation_read_hypervisor", &Fake).unwrap();
        assert_eq!(vm(&s, "attacker").cmdline, "target=0x40215000 access=read");
        let s = suite_by_name("isolation_write_hypervisor", &Fake).unwrap();
        assert_eq!(s.vms[0].fixed_pa, None);
        assert_eq!(vm(&s, "attacker").cmdline, "target=0x40215000 access=write");
        let s = suite_by_name("isolation_read_unmapped_ipa", &Fake).unwrap();
        assert_eq!(vm(&s, "attacker").cmdline, "target=0x70000000 access=read");
        let s = suite_by_name("system_off_one_vm", &Fake).unwrap();
        assert_eq!(vm(&s, "quitter").program, "system_off");
        assert_eq!(
            vm(&s, "victim").pass_requires_stopped.as_deref(),
            Some("quitter")
        );
        let s = suite_by_name("bench", &Fake).unwrap();
        assert!(s.icount && s.vms[0].pmu && s.smp == 1);
        assert!(!s.vms[0].platform);
        let s = suite_by_name("bench_virq", &Fake).unwrap();
        assert!(s.icount && s.smp == 1 && s.vms.len() == 1);
        assert!(s.vms[0].pmu && s.vms[0].platform);
        let s = suite_by_name("bench_switch", &Fake).unwrap();
        assert!(s.icount && s.smp == 1);
        assert_eq!(
            (
                vm(&s, "bench").program.as_str(),
                vm(&s, "partner").program.as_str()
            ),
            ("bench_switch", "yielder")
        );
        assert!(vm(&s, "bench").pmu && !vm(&s, "partner").pmu);
        assert!(s.vms.iter().all(|v| v.platform));
    }

    #[test]
    fn one_cpu_suites() {
        let s = suite_by_name("context_switch_one_cpu", &Fake).unwrap();
        assert_eq!(s.smp, 1);
        assert!(s.vms.iter().all(|v| v.program == "ctxswitch"));
        assert_eq!(s.vms.len(), 2);
        let s = suite_by_name("preemption_one_cpu", &Fake).unwrap();
        let two_cpus = suite_by_name("two_vms_two_cpus", &Fake).unwrap();
        assert_eq!((s.smp, two_cpus.smp), (1, 2));
        assert_eq!((&s.vms, &s.checks), (&two_cpus.vms, &two_cpus.checks));
        let s = suite_by_name("vcpus_exceed_cpus", &Fake).unwrap();
        assert_eq!((s.smp, s.vms[0].vcpus), (1, 2));
        assert_eq!(s.vms[0].program, "basics");
    }

    #[test]
    fn sched_suites() {
        let shares = |s: &Suite| match s.checks.as_slice() {
            [Check::Shares(c)] => c.clone(),
            other => panic!("{}: {other:?}", s.name),
        };
        for name in [
            "sched_shares_one_cpu",
            "sched_shares_two_cpus",
            "sched_cap_alone",
            "sched_idle_wfi",
            "sched_quota_change",
        ] {
            let s = suite_by_name(name, &Fake).unwrap();
            assert!(s.icount && s.sched_trace_us > 0, "{name}");
            let c = shares(&s);
            assert!(c.min_windows >= 6, "{name}");
            for e in c.expect.iter().chain(c.after_change.iter().flatten()) {
                assert!(s.vms.iter().any(|v| v.name == e.vm), "{name}: {}", e.vm);
            }
            for (vm, _) in &c.busy {
                assert!(s.vms.iter().any(|v| &v.name == vm), "{name}: {vm}");
            }
            // The trace period reaches the bundle.
            let data = build_bundle_traced(&s.vms, s.sched_trace_us, &Fake).unwrap();
            let b = Bundle::parse(&data).unwrap();
            assert_eq!(b.sched_trace_us(), s.sched_trace_us);
            assert_eq!(b.vms()[0].cpu_pct, s.vms[0].cpu_pct);
        }
        let s = suite_by_name("sched_shares_one_cpu", &Fake).unwrap();
        assert_eq!(s.smp, 1);
        let c = shares(&s);
        assert_eq!(c.metric.as_deref(), Some("sched_share_error_pp_max"));
        assert_eq!(
            c.expect.iter().map(|e| e.bound).collect::<Vec<_>>(),
            [5000, 3000, 2000].map(|bp| ShareBound::Near {
                bp,
                tolerance_bp: 50
            })
        );
        // On two CPUs the spinners pace QEMU's round robin, and the suite runs by default.
        let s = suite_by_name("sched_shares_two_cpus", &Fake).unwrap();
        assert_eq!(s.smp, 2);
        let pace = format!("pace_us={SHARE_PACE_US}");
        assert!(s.vms.iter().all(|v| v.cmdline.contains(&pace)));
        assert!(crate::pending_reason("sched_shares_two_cpus").is_none());
        // The VMs of `cargo xtask run`: a management VM and two 1-vCPU VMs given no share.
        let s = suite_by_name("sched_default_shares_fit", &Fake).unwrap();
        assert_eq!(s.smp, 2);
        assert!(s.vms[0].management && s.vms.iter().all(|v| v.cpu_pct.is_none()));
        assert!(s.vms.iter().all(|v| v.vcpus == 1));
        // Next to a management VM, VirMO 50 % is 45 % of the device.
        let s = suite_by_name("sched_quota_change", &Fake).unwrap();
        assert!(s.vms[0].management && s.vms[1..].iter().all(|v| !v.management));
        assert_eq!(s.sched_trace_us, QUOTA_TRACE_US);
        let c = shares(&s);
        let bps = |v: &[ShareExpect]| {
            v.iter()
                .map(|e| match e.bound {
                    ShareBound::Near { bp, .. } => bp,
                    ShareBound::AtMost { bp } => bp,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(bps(&c.expect), [4500, 4500]);
        assert_eq!(bps(c.after_change.as_ref().unwrap()), [7200, 1800]);
        let data = build_bundle(&s.vms, &Fake).unwrap();
        assert!(Bundle::parse(&data).unwrap().vms()[0].flags.management());
        let s = suite_by_name("sched_idle_wfi", &Fake).unwrap();
        assert!(vm(&s, "idler").platform && !vm(&s, "hog").platform);
        let s = suite_by_name("bench_sched", &Fake).unwrap();
        assert!(s.icount && s.smp == 1 && vm(&s, "bench").pmu && !vm(&s, "partner").pmu);
    }

    #[test]
    fn elf_and_raw_guests() {
        for (name, format) in [
            ("elf_guest", ImageFormat::Elf),
            ("raw_guest", ImageFormat::Raw),
        ] {
            let s = suite_by_name(name, &Fake).unwrap();
            assert_eq!((s.smp, s.vms.len()), (2, 1));
            let vm = &s.vms[0];
            assert_eq!((vm.program.as_str(), vm.vcpus), ("bootcheck", 2));
            assert_eq!(vm.format, format);
            assert_eq!(vm.cmdline, "magic=0x600db007");
            let data = build_bundle(&s.vms, &Fake).unwrap();
            let b = Bundle::parse(&data).unwrap();
            assert_eq!(b.vms()[0].flags.format(), format);
        }
    }

    #[test]
    fn bundle_errors_are_clear() {
        let e = build_bundle(&[SuiteVm::new("a", "missing")], &Fake).unwrap_err();
        assert!(e.contains("not built"), "{e}");
        let e = build_bundle(&[SuiteVm::new("a", "missing").elf()], &Fake).unwrap_err();
        assert!(e.contains("not built"), "{e}");
        let e = build_bundle(&[SuiteVm::new("a", "low")], &Fake).unwrap_err();
        assert!(e.contains("below the guest base"), "{e}");
        let e = build_bundle(&[SuiteVm::new("a", "low").elf()], &Fake).unwrap_err();
        assert!(
            e.starts_with(
                "guest `low` as ELF: ELF segment 0 (IPA 0x40000000..0x40000100) lies outside"
            ),
            "{e}"
        );
        let e = build_bundle(&[SuiteVm::new("a b", "x")], &Fake).unwrap_err();
        assert!(e.contains("bundle refused"), "{e}");
    }

    #[test]
    fn demo_and_cmdlines() {
        let data = build_bundle(&demo_vms(), &Fake).unwrap();
        let b = Bundle::parse(&data).unwrap();
        assert_eq!(b.vms()[0].cmdline, "ticks=5 vm_id=1");
        assert_eq!(b.vms()[1].cmdline, "ticks=5 vm_id=2");
        assert_eq!(b.vms()[1].name, "beta");
        assert_eq!(cmdline_with_id("", 3), "vm_id=3");
    }
}
