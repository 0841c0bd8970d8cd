//! Guest image formats, `linux`, `elf` and `raw` (docs/guest-images.md): detecting them,
//! placing them ([`crate::layout`], the hypervisor's own code), and the boot bundle entries of
//! the VMs `cargo xtask run --vm` and the Linux-style suites boot ([`GuestVm`]). Also the suites
//! that boot non-Linux images next to Linux ([`FORMAT_SUITES`]) and the `--vm` mistakes about
//! formats that `linux_bad_vm_args` makes.

use std::path::Path;

use bootbundle::{BundleBuilder, OwnedVmSpec, VmFlags};
pub use bootbundle::{ImageFormat, IPA_LIMIT};

use crate::layout::{self, elf, GuestLayout, LayoutError};
use crate::linux::{self, BadArgsCase, Expect, Expectation, LinuxSuite, LinuxSuiteVm, LinuxVm};
use crate::suites::TEST_GUEST_IPA_BASE;
use crate::Artifacts;

/// The RAM base (IPA) of every `--vm` VM unless `base=` says otherwise: QEMU `virt`'s RAM
/// base, where Linux and images built for that board expect their RAM.
pub const DEFAULT_RAM_BASE: u64 = linux::LINUX_IPA_BASE;
/// Where a raw image goes unless `load=` says otherwise, from the RAM base.
pub const RAW_LOAD_OFFSET: u64 = 64 << 10;
/// The formats `format=` takes.
pub const FORMAT_NAMES: &str = "linux, elf, raw";
/// The IPA window of the emulated platform devices every `--vm` VM gets (virtual GIC, PL011;
/// docs/architecture.md): a VM's RAM must not overlap it.
pub const PLATFORM_DEVICES: (u64, u64) = (0x0800_0000, 0x0a00_0000);

/// The format the image's first bytes say: ELF magic at 0 means `elf`, the arm64 `Image` magic
/// at 0x38 means `linux`; anything else is not guessed.
pub fn detect(image: &[u8]) -> Option<ImageFormat> {
    if elf::has_elf_magic(image) {
        Some(ImageFormat::Elf)
    } else if image.get(layout::IMAGE_MAGIC_OFFSET..layout::IMAGE_MAGIC_OFFSET + 4)
        == Some(&layout::IMAGE_MAGIC[..])
    {
        Some(ImageFormat::Linux)
    } else {
        None
    }
}

/// Why [`detect`] found no format, and what to do.
pub const UNDETECTED: &str = "cannot tell the image format: not an ELF file (no \"\\x7fELF\" at \
    offset 0) nor an arm64 Linux Image (no \"ARM\\x64\" at offset 0x38); for a raw binary give \
    format=raw (copied to load=ADDR, by default the RAM base + 64 KiB, and entered there)";

/// Where the hypervisor places an image of `format` (and an initrd of `initrd_len` bytes) in
/// `ram_size` bytes of RAM at IPA `ram_base`; a raw image goes to `load_offset` (from the RAM
/// base) and is entered there.
pub fn plan(
    format: ImageFormat,
    ram_base: u64,
    ram_size: u64,
    image: &[u8],
    load_offset: u64,
    initrd_len: u64,
) -> Result<GuestLayout, LayoutError> {
    match format {
        ImageFormat::Linux => layout::plan(ram_size, image, true, 0, 0, initrd_len),
        ImageFormat::Elf => layout::plan_elf(ram_base, ram_size, image, initrd_len),
        ImageFormat::Raw => {
            layout::plan(ram_size, image, false, load_offset, load_offset, initrd_len)
        }
    }
}

/// A VM of `cargo xtask run --vm` or of a Linux-style suite, its files read: any format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestVm {
    pub name: String,
    pub format: ImageFormat,
    pub image: Vec<u8>,
    /// Empty: no initrd.
    pub initrd: Vec<u8>,
    pub ram: u64,
    /// The RAM's IPA.
    pub ram_base: u64,
    /// Raw images: where the image goes (and is entered), from the RAM base; 0 otherwise.
    pub load_offset: u64,
    pub vcpus: u32,
    pub cmdline: String,
    /// The VirMO CPU percentage (`cpu=`); `None`: an equal part of what is left.
    pub cpu_pct: Option<u8>,
}

impl From<&LinuxVm> for GuestVm {
    fn from(vm: &LinuxVm) -> Self {
        GuestVm {
            name: vm.name.clone(),
            format: ImageFormat::Linux,
            image: vm.kernel.clone(),
            initrd: vm.initrd.clone(),
            ram: vm.ram,
            ram_base: DEFAULT_RAM_BASE,
            load_offset: 0,
            vcpus: vm.vcpus,
            cmdline: vm.cmdline.clone(),
            cpu_pct: None,
        }
    }
}

impl GuestVm {
    /// Its bundle flags: the format's, and `PLATFORM` for every non-Linux image (Linux VMs
    /// have it anyway): the same virtual GIC, PL011 and timer as a Linux VM, so that an RTOS
    /// built for QEMU `virt` finds its devices.
    pub fn flags(&self) -> VmFlags {
        VmFlags(self.format.flag() | VmFlags::PLATFORM)
    }

    /// Where the hypervisor will place everything; refuses what it would refuse, with the
    /// VM's name in the message.
    pub fn plan(&self) -> Result<GuestLayout, String> {
        plan(
            self.format,
            self.ram_base,
            self.ram,
            &self.image,
            self.load_offset,
            self.initrd.len() as u64,
        )
        .map_err(|e| format!("VM `{}`: {e}", self.name))
    }

    fn spec(&self) -> OwnedVmSpec {
        OwnedVmSpec {
            name: self.name.clone(),
            ram_size: self.ram,
            ipa_base: self.ram_base,
            image: self.image.clone(),
            load_offset: self.load_offset,
            entry_offset: self.load_offset,
            cmdline: self.cmdline.clone(),
            initrd: self.initrd.clone(),
            vcpus: self.vcpus,
            flags: self.flags(),
            start_after: None,
            fixed_pa: None,
            cpu_pct: self.cpu_pct,
        }
    }
}

/// The QEMU memory for these VMs (see [`linux::machine_ram`]).
pub fn machine_ram_for(vms: &[GuestVm]) -> Result<u64, String> {
    let ram = vms.iter().fold(0u64, |a, v| a.saturating_add(v.ram));
    let payload = vms.iter().fold(0u64, |a, v| {
        a.saturating_add((v.image.len() + v.initrd.len() + v.cmdline.len()) as u64)
    });
    linux::machine_ram(ram, payload)
}

/// The boot bundle of `vms`, each checked with [`GuestVm::plan`] first.
pub fn build_bundle(vms: &[GuestVm]) -> Result<Vec<u8>, String> {
    for vm in vms {
        vm.plan()?;
    }
    bundle_unchecked(vms)
}

fn bundle_unchecked(vms: &[GuestVm]) -> Result<Vec<u8>, String> {
    let mut builder = BundleBuilder::new();
    for vm in vms {
        builder.add(vm.spec());
    }
    builder
        .build()
        .map_err(|e| format!("boot bundle refused: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Suites

/// What a VM of a Linux-style suite boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuiteImage {
    /// Debian's kernel with the harness initramfs.
    Linux,
    /// The ELF file of test-guest program `program`, as format `elf`, RAM at
    /// [`TEST_GUEST_IPA_BASE`].
    GuestElf(String),
    /// These bytes, as `format`, RAM at [`TEST_GUEST_IPA_BASE`]: an image the hypervisor must
    /// refuse (not checked when the bundle is built).
    Refused(ImageFormat, Vec<u8>),
}

/// The suites of this module, run by `cargo xtask test` after the Linux suites. They are
/// [`LinuxSuite`]s (judged by expectations on console lines).
pub const FORMAT_SUITES: &[&str] = &["elf_next_to_linux", "elf_refused"];

/// The `magic=` value the suites pass to `bootcheck` (harness/guests/src/bin/bootcheck.rs
/// checks it against its own copy).
pub const BOOTCHECK_MAGIC: u64 = 0x600d_b007;
/// `bootcheck`'s tests, in order; the last one powers the VM off.
pub const BOOTCHECK_TESTS: &[&str] = &[
    "entry_state",
    "bootargs_from_the_device_tree",
    "psci_version_hvc_and_smc",
    "cpu_on_through_smc",
    "boots_and_powers_off",
];

/// `bootcheck`'s command line.
pub fn bootcheck_cmdline() -> String {
    format!("magic={BOOTCHECK_MAGIC:#x}")
}

/// A `bootcheck` VM of a Linux-style suite: its ELF file, 2 vCPUs, 16 MiB.
fn bootcheck_vm(name: &str) -> LinuxSuiteVm {
    LinuxSuiteVm {
        name: name.into(),
        vcpus: 2,
        ram: 16 << 20,
        cmdline: bootcheck_cmdline(),
        image: SuiteImage::GuestElf("bootcheck".into()),
    }
}

fn expectation(case: &str, expect: Expect, after: Option<&str>) -> Expectation {
    Expectation {
        case: case.into(),
        expect,
        after: after.map(str::to_string),
    }
}

fn line(case: &str, vm: &str, regex: &str, after: Option<&str>) -> Expectation {
    let expect = Expect::Line {
        vm: vm.into(),
        regex: regex.into(),
        count: 1,
    };
    expectation(case, expect, after)
}

/// The cases of a `bootcheck` VM judged from its framing: each test's `#HT pass`, the last
/// one's `#HT expect-stop` and the `system-off` stop that follows, and no `#HT fail` before.
fn bootcheck_cases(vm: &str) -> Vec<Expectation> {
    let (last, others) = BOOTCHECK_TESTS.split_last().expect("tests");
    let mut cases: Vec<Expectation> = others
        .iter()
        .map(|t| line(t, vm, &format!("^#HT pass {t}$"), None))
        .collect();
    cases.push(line(
        "expect_stop",
        vm,
        &format!("^#HT expect-stop {last}$"),
        None,
    ));
    let stop = Expect::Record {
        vm: vm.into(),
        event: "vm-stopped".into(),
        fields: vec![("reason".into(), "system-off".into())],
    };
    let after = format!("{vm}::expect_stop");
    cases.push(expectation(last, stop, Some(&after)));
    let no_fail = Expect::Absent {
        vm: vm.into(),
        regex: "^#HT fail ".into(),
        until: after.clone(),
    };
    cases.push(expectation("no_failures", no_fail, None));
    cases
}

/// An ELF executable with these `PT_LOAD` segments (`(paddr = vaddr, file bytes, memsz,
/// p_flags)`) and entry point: test files for refusals.
pub fn elf_file(segments: &[(u64, &[u8], u64, u32)], entry: u64) -> Vec<u8> {
    let phnum = segments.len();
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01");
    out.resize(16, 0);
    out.extend_from_slice(&elf::ET_EXEC.to_le_bytes());
    out.extend_from_slice(&elf::EM_AARCH64.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&(elf::EHDR_SIZE as u64).to_le_bytes());
    out.extend_from_slice(&[0; 12]); // e_shoff, e_flags
    out.extend_from_slice(&(elf::EHDR_SIZE as u16).to_le_bytes());
    out.extend_from_slice(&(elf::PHDR_SIZE as u16).to_le_bytes());
    out.extend_from_slice(&(phnum as u16).to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    let mut offset = (elf::EHDR_SIZE + elf::PHDR_SIZE * phnum) as u64;
    for &(addr, data, memsz, flags) in segments {
        out.extend_from_slice(&elf::PT_LOAD.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        for v in [offset, addr, addr, data.len() as u64, memsz, 16] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        offset += data.len() as u64;
    }
    for (_, data, _, _) in segments {
        out.extend_from_slice(data);
    }
    out
}

const RX: u32 = elf::PF_R | elf::PF_X;
const RW: u32 = elf::PF_R | elf::PF_W;
/// `b .`: a program that spins.
const SPIN: [u8; 4] = [0x00, 0x00, 0x00, 0x14];

/// A valid ELF of one segment at `addr`.
fn elf_at(addr: u64) -> Vec<u8> {
    elf_file(&[(addr, &SPIN, 0x1000, RX)], addr)
}

/// A valid ELF whose one segment lies at 0x8000_0000, outside RAM at 0x4000_0000.
fn elf_outside_ram() -> Vec<u8> {
    elf_at(0x8000_0000)
}

/// An ELF whose second segment overlaps the first one's `.bss`.
fn elf_overlapping() -> Vec<u8> {
    elf_file(
        &[
            (0x4010_0000, &SPIN, 0x2000, RX),
            (0x4010_1000, &[7; 16], 16, RW),
        ],
        0x4010_0000,
    )
}

/// A valid ELF cut short in its segment contents.
fn elf_truncated() -> Vec<u8> {
    let mut f = elf_file(&[(0x8000_1000, &[0x14; 256], 256, RX)], 0x8000_1000);
    f.truncate(f.len() - 100);
    f
}

/// The suite of this module called `name`.
pub fn suite_by_name(name: &str) -> Option<LinuxSuite> {
    let mut s = LinuxSuite {
        name: name.into(),
        smp: 2,
        gic: 3,
        timeout: linux::LINUX_SUITE_TIMEOUT,
        vms: vec![],
        expectations: vec![],
        input: vec![],
    };
    match name {
        // An ELF guest and a Linux guest side by side.
        "elf_next_to_linux" => {
            s.vms = vec![LinuxSuiteVm::new("linux", None), bootcheck_vm("bootcheck")];
            s.expectations = vec![line("ready", "linux", "^HV-LINUX-READY linux$", None)];
            s.expectations.extend(bootcheck_cases("bootcheck"));
        }
        // Two ELF images the hypervisor must refuse (`VM ... not created`), and a good one that
        // must run all the same.
        "elf_refused" => {
            let refused = |name: &str, image: Vec<u8>| LinuxSuiteVm {
                name: name.into(),
                vcpus: 1,
                ram: 16 << 20,
                cmdline: String::new(),
                image: SuiteImage::Refused(ImageFormat::Elf, image),
            };
            s.vms = vec![
                refused("truncated", elf_truncated()),
                // RAM at 0x8000_0000, 16 MiB: 0x9000_0000 is past its end.
                refused("outside", elf_at(0x9000_0000)),
                bootcheck_vm("bootcheck"),
            ];
            let not_created = |id: usize, vm: &str, why: &str| {
                let regex = format!(r"^\[ERROR\] VM {id} \({vm}\) not created: {why}");
                expectation(
                    "not_created",
                    Expect::Log {
                        vm: vm.into(),
                        regex,
                    },
                    None,
                )
            };
            s.expectations = vec![
                not_created(
                    1,
                    "truncated",
                    r"bad ELF file: segment 0: 256 bytes at file offset 0x78 do not fit",
                ),
                not_created(
                    2,
                    "outside",
                    r"ELF segment 0 \(IPA 0x90000000\.\.0x90001000\) lies outside the VM's RAM \(0x80000000\.\.0x81000000",
                ),
            ];
            s.expectations.extend(bootcheck_cases("bootcheck"));
        }
        _ => return None,
    }
    Some(s)
}

/// Reads the images of a Linux-style suite's VMs: Debian's kernel and the initramfs (only if
/// a VM boots Linux), test-guest ELF files.
pub fn load_suite_vms(suite: &LinuxSuite, artifacts: &Artifacts) -> Result<Vec<GuestVm>, String> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| format!("cannot read the {what} {}: {e}", p.display()))
    };
    let mut linux_images: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut out = Vec::new();
    for v in &suite.vms {
        let (format, image, initrd, ram_base) = match &v.image {
            SuiteImage::Linux => {
                if linux_images.is_none() {
                    let images = artifacts.linux.as_ref().ok_or(
                        "the Linux guest images were not prepared (cargo xtask prepares them \
                         for Linux suites)",
                    )?;
                    linux_images = Some((
                        read(&images.kernel, "Linux kernel")?,
                        read(&images.initramfs, "initramfs")?,
                    ));
                }
                let (kernel, initrd) = linux_images.clone().unwrap_or_default();
                (ImageFormat::Linux, kernel, initrd, DEFAULT_RAM_BASE)
            }
            SuiteImage::GuestElf(program) => {
                let elf = read(&artifacts.guest_elf(program), "guest program")?;
                (ImageFormat::Elf, elf, vec![], TEST_GUEST_IPA_BASE)
            }
            SuiteImage::Refused(format, bytes) => {
                (*format, bytes.clone(), vec![], TEST_GUEST_IPA_BASE)
            }
        };
        out.push(GuestVm {
            name: v.name.clone(),
            format,
            image,
            initrd,
            ram: v.ram,
            ram_base,
            load_offset: 0,
            vcpus: v.vcpus,
            cmdline: v.cmdline.clone(),
            cpu_pct: None,
        });
    }
    Ok(out)
}

/// The boot bundle of a Linux-style suite: every VM checked first, except those meant to be
/// refused by the hypervisor ([`SuiteImage::Refused`]).
pub fn suite_bundle(suite: &LinuxSuite, vms: &[GuestVm]) -> Result<Vec<u8>, String> {
    for (v, vm) in suite.vms.iter().zip(vms) {
        if !matches!(v.image, SuiteImage::Refused(..)) {
            vm.plan()?;
        }
    }
    bundle_unchecked(vms)
}

/// Whether Linux-style suite `suite` boots Debian's kernel.
pub fn boots_linux(suite: &LinuxSuite) -> bool {
    suite.vms.iter().any(|v| v.image == SuiteImage::Linux)
}

// ---------------------------------------------------------------------------------------------
// `--vm` mistakes about formats (cases of `linux_bad_vm_args`)

/// The files [`bad_args_cases`] uses, written next to the corrupt kernels.
pub fn bad_args_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("outside-ram.elf", elf_outside_ram()),
        ("overlapping.elf", elf_overlapping()),
        ("truncated.elf", elf_truncated()),
    ]
}

/// `cargo xtask run --vm` mistakes about formats, placement and addresses. `path` names the
/// files of [`linux::BadArgsFiles`].
pub fn bad_args_cases(path: &dyn Fn(&str) -> String) -> Vec<BadArgsCase> {
    let case = |name: &'static str, vm: String, expect: &str| BadArgsCase {
        name,
        args: vec!["run".into(), "--vm".into(), vm],
        expect: expect.into(),
    };
    let small = format!("kernel={}", path("small-Image"));
    let corrupt = format!("kernel={}", path("corrupt-Image"));
    vec![
        case(
            "unknown_format",
            format!("{small},format=coff"),
            "--vm: format=coff: unknown format (formats: linux, elf, raw)",
        ),
        case(
            "undetectable_format",
            corrupt.clone(),
            "for a raw binary give format=raw",
        ),
        case(
            "elf_outside_ram",
            format!("kernel={}", path("outside-ram.elf")),
            "VM `vm1`: ELF segment 0 (IPA 0x80000000..0x80001000) lies outside the VM's RAM \
             (0x40000000..0x50000000",
        ),
        case(
            "elf_segments_overlap",
            format!("kernel={},format=elf", path("overlapping.elf")),
            "VM `vm1`: ELF segments 0 (IPA 0x40100000..0x40102000) and 1 (IPA \
             0x40101000..0x40101010) overlap",
        ),
        case(
            "elf_truncated",
            format!("kernel={}", path("truncated.elf")),
            "VM `vm1`: bad ELF file: segment 0: 256 bytes at file offset 0x78 do not fit",
        ),
        case(
            "elf_not_an_elf",
            format!("{small},format=elf"),
            "VM `vm1`: bad ELF file: no \"\\x7fELF\" magic at offset 0",
        ),
        case(
            "load_not_raw",
            format!("{small},load=0x40100000"),
            "VM `vm1`: load= is only for format=raw (a linux image says where it goes)",
        ),
        case(
            "raw_load_below_ram",
            format!("{corrupt},format=raw,load=0x1000"),
            "VM `vm1`: load=0x1000 lies below the VM's RAM at 0x40000000",
        ),
        case(
            "raw_too_large",
            format!("{corrupt},format=raw,ram=4K"),
            "VM `vm1`: image needs 68 KiB of RAM but the VM has 4 KiB",
        ),
        case(
            "bad_address",
            format!("{corrupt},format=raw,load=0x4000zz"),
            "--vm: load=0x4000zz: not an address",
        ),
        case(
            "base_on_devices",
            format!("{corrupt},format=raw,base=0x8000000"),
            "--vm: base=0x8000000: the VM's RAM (0x8000000..0x18000000) would overlap the \
             emulated devices at 0x8000000..0xa000000",
        ),
        case(
            "linux_base_unaligned",
            format!("{small},base=0x40001000"),
            "VM `vm1`: base=0x40001000: a Linux VM's RAM base must be 2 MiB aligned",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::LinuxMonitor;
    use bootbundle::Bundle;

    const MIB: u64 = 1 << 20;

    fn linux_image() -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[16..24].copy_from_slice(&(2 * MIB).to_le_bytes());
        b[0x38..0x3c].copy_from_slice(&layout::IMAGE_MAGIC);
        b
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect(&elf_outside_ram()), Some(ImageFormat::Elf));
        assert_eq!(detect(&linux_image()), Some(ImageFormat::Linux));
        assert_eq!(detect(b"\x7fELF"), Some(ImageFormat::Elf));
        assert_eq!(detect(&[0; 0x3c]), None);
        assert_eq!(detect(&linux_image()[..0x3b]), None);
        assert_eq!(detect(&SPIN), None);
        assert_eq!(detect(&[]), None);
        assert!(UNDETECTED.contains("format=raw"));
    }

    #[test]
    fn test_files_are_what_they_claim() {
        let plan_at = |f: &[u8], base| plan(ImageFormat::Elf, base, 256 * MIB, f, 0, 0);
        assert!(matches!(
            plan_at(&elf_outside_ram(), DEFAULT_RAM_BASE),
            Err(LayoutError::SegmentOutsideRam { index: 0, .. })
        ));
        assert!(plan_at(&elf_outside_ram(), 0x8000_0000).is_ok());
        assert!(matches!(
            plan_at(&elf_overlapping(), DEFAULT_RAM_BASE),
            Err(LayoutError::SegmentsOverlap { .. })
        ));
        assert!(matches!(
            plan_at(&elf_truncated(), 0x8000_0000),
            Err(LayoutError::Elf(elf::ElfError::SegmentOutsideFile { .. }))
        ));
        assert_eq!(bad_args_files().len(), 3);
    }

    #[test]
    fn plans_every_format() {
        let raw = plan(ImageFormat::Raw, 0x4000_0000, MIB, &SPIN, 0x1_0000, 0).unwrap();
        assert_eq!((raw.image_offset, raw.entry_offset), (0x1_0000, 0x1_0000));
        let l = plan(
            ImageFormat::Linux,
            0x4000_0000,
            16 * MIB,
            &linux_image(),
            0,
            0,
        )
        .unwrap();
        assert_eq!(l.image_end, 2 * MIB);
        let e = plan(ImageFormat::Elf, 0x8000_0000, MIB, &elf_outside_ram(), 0, 0).unwrap();
        assert_eq!((e.image_offset, e.image_end), (0, 0x1000));
    }

    #[test]
    fn bundles_say_the_format() {
        let vm = |format, image: Vec<u8>, ram_base, load_offset| GuestVm {
            name: format!("{format}"),
            format,
            image,
            initrd: vec![],
            ram: 16 * MIB,
            ram_base,
            load_offset,
            vcpus: 1,
            cmdline: "x".into(),
            cpu_pct: None,
        };
        let vms = [
            vm(ImageFormat::Linux, linux_image(), DEFAULT_RAM_BASE, 0),
            vm(ImageFormat::Elf, elf_outside_ram(), 0x8000_0000, 0),
            vm(ImageFormat::Raw, SPIN.to_vec(), DEFAULT_RAM_BASE, 0x1_0000),
        ];
        let data = build_bundle(&vms).unwrap();
        let b = Bundle::parse(&data).unwrap();
        let specs = b.vms();
        assert_eq!(specs[0].flags.format(), ImageFormat::Linux);
        assert_eq!(specs[1].flags.format(), ImageFormat::Elf);
        assert_eq!(specs[2].flags.format(), ImageFormat::Raw);
        assert!(specs.iter().all(|s| s.flags.platform()));
        assert_eq!(specs[1].ipa_base, 0x8000_0000);
        assert_eq!((specs[1].load_offset, specs[1].entry_offset), (0, 0));
        assert_eq!(
            (specs[2].load_offset, specs[2].entry_offset),
            (0x1_0000, 0x1_0000)
        );
        // A VM the hypervisor would refuse is refused here first, with its name.
        let bad = vm(ImageFormat::Elf, elf_outside_ram(), DEFAULT_RAM_BASE, 0);
        assert!(build_bundle(std::slice::from_ref(&bad))
            .unwrap_err()
            .starts_with("VM `elf`: ELF segment 0"));
        assert!(machine_ram_for(&[bad]).is_ok());
        let linux = crate::linux::LinuxVm {
            name: "l".into(),
            kernel: linux_image(),
            initrd: vec![1],
            ram: 64 * MIB,
            vcpus: 2,
            cmdline: "c".into(),
        };
        let g = GuestVm::from(&linux);
        assert_eq!(
            (g.format, g.ram_base, g.image.len()),
            (ImageFormat::Linux, 0x4000_0000, 4096)
        );
    }

    #[test]
    fn suites_are_well_formed() {
        for name in FORMAT_SUITES {
            let s = suite_by_name(name).unwrap();
            assert_eq!(&s.name, name);
            LinuxMonitor::new(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
            for e in &s.expectations {
                assert!(s.vms.iter().any(|v| v.name == e.vm()), "{name}: {}", e.id());
            }
            assert!(s.vms.iter().all(|v| v.vcpus <= s.smp));
            // Its bundle builds (with stand-in images).
            let vms: Vec<GuestVm> = s
                .vms
                .iter()
                .map(|v| {
                    let (format, image, ram_base) = match &v.image {
                        SuiteImage::Linux => (ImageFormat::Linux, linux_image(), DEFAULT_RAM_BASE),
                        SuiteImage::GuestElf(_) => {
                            (ImageFormat::Elf, elf_outside_ram(), TEST_GUEST_IPA_BASE)
                        }
                        SuiteImage::Refused(f, b) => (*f, b.clone(), TEST_GUEST_IPA_BASE),
                    };
                    GuestVm {
                        name: v.name.clone(),
                        format,
                        image,
                        initrd: vec![],
                        ram: v.ram,
                        ram_base,
                        load_offset: 0,
                        vcpus: v.vcpus,
                        cmdline: v.cmdline.clone(),
                        cpu_pct: None,
                    }
                })
                .collect();
            Bundle::parse(&suite_bundle(&s, &vms).unwrap()).unwrap();
            // The refused images really are refused.
            for (v, vm) in s.vms.iter().zip(&vms) {
                if let SuiteImage::Refused(..) = v.image {
                    assert!(vm.plan().is_err(), "{name}: {}", v.name);
                    assert!(build_bundle(std::slice::from_ref(vm)).is_err());
                }
            }
        }
        assert!(suite_by_name("basics").is_none());
        let s = suite_by_name("elf_next_to_linux").unwrap();
        assert!(boots_linux(&s));
        assert!(!boots_linux(&suite_by_name("elf_refused").unwrap()));
        assert_eq!(s.vms[1].cmdline, "magic=0x600db007");
        let ids: Vec<String> = s.expectations.iter().map(|e| e.id()).collect();
        assert_eq!(
            ids,
            [
                "linux::ready",
                "bootcheck::entry_state",
                "bootcheck::bootargs_from_the_device_tree",
                "bootcheck::psci_version_hvc_and_smc",
                "bootcheck::cpu_on_through_smc",
                "bootcheck::expect_stop",
                "bootcheck::boots_and_powers_off",
                "bootcheck::no_failures",
            ]
        );
    }

    #[test]
    fn refusal_messages_match_the_layout() {
        // The regexes of `elf_refused` match what the layout says.
        let s = suite_by_name("elf_refused").unwrap();
        for (i, v) in s.vms.iter().enumerate() {
            let SuiteImage::Refused(_, image) = &v.image else {
                continue;
            };
            let why = plan(ImageFormat::Elf, TEST_GUEST_IPA_BASE, v.ram, image, 0, 0)
                .unwrap_err()
                .to_string();
            let line = format!("[ERROR] VM {} ({}) not created: {why}", i + 1, v.name);
            let e = s.expectations.iter().find(|e| e.vm() == v.name).unwrap();
            let Expect::Log { regex, .. } = &e.expect else {
                panic!("not a log case")
            };
            assert!(regex::Regex::new(regex).unwrap().is_match(&line), "{line}");
        }
    }
}
