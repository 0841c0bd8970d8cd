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
    "bench",
    "bench_virq",
    "bench_switch",
];

/// The suites `cargo xtask bench` runs (with `-icount`), in order; each reports `#HT metric`
/// figures (docs/benchmarks.md).
pub const BENCH_SUITES: &[&str] = &["bench", "bench_virq", "bench_switch"];

/// `bench_switch`: measured round trips, and the partner's loop count per yield. The partner
/// yields [`SWITCH_PARTNER_YIELDS`] times, well over the bench's 50 warm-up + rounds and the
/// preemption ticks in between (it yields only when it runs), so it is still there for every
/// measured round trip; the bench checks that it was.
pub const SWITCH_ROUNDS: u64 = 2000;
pub const SWITCH_PARTNER_WORK: u64 = 256;
pub const SWITCH_PARTNER_YIELDS: u64 = 3 * SWITCH_ROUNDS + 2000;
const _: () = assert!(SWITCH_PARTNER_YIELDS > 2 * (SWITCH_ROUNDS + 50));

const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn suite(name: &str, smp: u32, vms: Vec<SuiteVm>) -> Suite {
    Suite {
        name: name.into(),
        smp,
        icount: false,
        test_timeout: DEFAULT_TEST_TIMEOUT,
        vms,
        checks: Vec::new(),
    }
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
    let mut builder = BundleBuilder::new();
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
            assert!(ALL_SUITES.contains(name) && !TEST_SUITES.contains(name));
            assert!(suite_by_name(name, &Fake).unwrap().icount, "{name}");
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
