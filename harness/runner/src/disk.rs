//! The hypervisor's disk in a QEMU run: a sparse raw image (format: `diskfmt`, see
//! docs/disk.md) that QEMU attaches as a virtio-blk device, its store holding the run's images.
//!
//! Every QEMU that boots the hypervisor gets one ([`crate::qemu::QemuConfig::disk`]): `cargo
//! xtask run` keeps its disk at `target/disk/disk.img` (kept across runs with `--keep-disk`),
//! each suite gets a fresh `target/harness/<suite>.disk.img`.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use bootbundle::ImageFormat as BundleFormat;
pub use diskfmt::{DiskBuilder, ImageFormat, ImageSpec, IMAGE_SLOTS, NAME_LEN};

use crate::formats::GuestVm;
use crate::monitor::{CaseResult, Monitor};
use crate::qemu::{QemuConfig, DEFAULT_MEMORY_MIB};
use crate::suites::{self, GuestImages, SuiteVm, TEST_GUEST_IPA_BASE};
use crate::{Artifacts, Judge, SuiteReport};

/// The size of a run's disk: 1 GiB, sparse (only what is written takes room).
pub const DISK_SIZE: u64 = 1 << 30;

/// QEMU's arguments that attach the disk at `path` as the virtio-blk device the hypervisor
/// looks for.
pub fn qemu_args(path: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},if=none,format=raw,id=hd0", path.display()),
        "-device".into(),
        "virtio-blk-device,drive=hd0".into(),
    ]
}

/// Writes a [`DISK_SIZE`] disk at `path` whose store holds `images` (ids 1, 2, ... in order),
/// replacing any file there; with `keep`, an existing file is left as it is (a restart test
/// boots the same disk again).
pub fn create(path: &Path, images: &[ImageSpec], keep: bool) -> Result<(), String> {
    if keep && path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let builder = images
        .iter()
        .cloned()
        .fold(DiskBuilder::new(DISK_SIZE), DiskBuilder::image);
    builder
        .write(path)
        .map_err(|e| format!("cannot write the disk {}: {e}", path.display()))
}

/// The store's format for a bundle format.
pub fn store_format(f: BundleFormat) -> ImageFormat {
    match f {
        BundleFormat::Linux => ImageFormat::Linux,
        BundleFormat::Elf => ImageFormat::Elf,
        BundleFormat::Raw => ImageFormat::Raw,
    }
}

/// The image a `--vm` (or the Linux demo) VM boots, named after the VM, with its RAM (rounded
/// up to 2 MiB), vCPUs and command line as defaults.
pub fn vm_image(vm: &GuestVm) -> ImageSpec {
    let mut spec = ImageSpec::new(&vm.name, store_format(vm.format), vm.image.clone());
    spec.initrd = vm.initrd.clone();
    spec.cmdline = vm.cmdline.clone();
    spec.default_ram = vm.ram.div_ceil(2 << 20) * (2 << 20);
    spec.default_vcpus = vm.vcpus;
    spec.ipa_base = vm.ram_base;
    spec.load_offset = vm.load_offset;
    spec.entry_offset = vm.load_offset;
    spec.platform = vm.format != BundleFormat::Linux;
    spec
}

/// A test-guest program as an ELF image: RAM at [`TEST_GUEST_IPA_BASE`], `ram_mib` MiB.
pub fn guest_program_image(program: &str, elf: Vec<u8>, ram_mib: u64) -> ImageSpec {
    let mut spec = ImageSpec::new(program, ImageFormat::Elf, elf);
    spec.ipa_base = TEST_GUEST_IPA_BASE;
    spec.default_ram = ram_mib.div_ceil(2).max(1) * (2 << 20);
    spec
}

/// The programs of a test-guest suite, each once, as ELF images.
pub fn suite_images(vms: &[SuiteVm], images: &dyn GuestImages) -> Result<Vec<ImageSpec>, String> {
    let mut out: Vec<ImageSpec> = Vec::new();
    for vm in vms {
        if !out.iter().any(|s| s.name == vm.program) {
            out.push(guest_program_image(
                &vm.program,
                images.guest_elf(&vm.program)?,
                vm.ram_mib,
            ));
        }
    }
    Ok(out)
}

/// The suite that checks the hypervisor's disk: `#HV disk` records over three boots.
pub const DISK_SUITE: &str = "disk_store";
/// The disk suites, for the suite lists.
pub const DISK_SUITES: &[&str] = &[DISK_SUITE];

/// `key=value` words of a `#HV` record line.
fn fields(line: &str) -> Vec<(&str, &str)> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

/// A [`Monitor`] that also keeps the `#HV disk` records.
struct DiskJudge {
    monitor: Monitor,
    records: Vec<String>,
}

impl Judge for DiskJudge {
    fn feed(&mut self, line: &str, now: Duration) {
        if line.starts_with("#HV disk ") {
            self.records.push(line.trim_end().to_string());
        }
        self.monitor.feed(line, now)
    }
    fn deadline(&self) -> Duration {
        self.monitor.deadline()
    }
    fn timeout(&mut self, now: Duration) {
        self.monitor.timeout(now)
    }
    fn qemu_exited(&mut self, status: &str, success: bool) {
        self.monitor.qemu_exited(status, success)
    }
    fn is_finished(&self) -> bool {
        self.monitor.is_finished()
    }
}

/// [`DISK_SUITE`]: boots one short VM (`system_off`) three times and judges the hypervisor's
/// `#HV disk` record each time: a blank disk is formatted as an empty store
/// (`formats_a_blank_disk`), the same disk is mounted at the next boot (`mounts_it_again`: the
/// store survives a restart), and a disk built with an image has it in its store
/// (`finds_the_built_images`). Writes `<out_dir>/disk_store.log` (all three consoles) and the
/// disks `<out_dir>/disk_store.{blank,built}.disk.img`.
pub fn run_disk_suite(artifacts: &Artifacts, out_dir: &Path) -> SuiteReport {
    let start = Instant::now();
    let name = DISK_SUITE;
    let log = out_dir.join(format!("{name}.log"));
    let setup = || -> Result<(suites::Suite, std::path::PathBuf), String> {
        let suite = quitter_suite(artifacts)?;
        fs::create_dir_all(out_dir)
            .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
        let bundle = out_dir.join(format!("{name}.bundle.bin"));
        fs::write(&bundle, suites::build_bundle(&suite.vms, artifacts)?)
            .map_err(|e| format!("cannot write {}: {e}", bundle.display()))?;
        Ok((suite, bundle))
    };
    let (suite, bundle) = match setup() {
        Ok(v) => v,
        Err(e) => return crate::failed_setup(name, out_dir, start, e),
    };
    let blank = out_dir.join(format!("{name}.blank.disk.img"));
    let built = out_dir.join(format!("{name}.built.disk.img"));
    let program = suite.vms[0].program.clone();
    // (case, disk, the record's fields it wants)
    type Boot<'a> = (
        &'static str,
        &'a Path,
        &'static [(&'static str, &'static str)],
    );
    let boots: [Boot; 3] = [
        (
            "formats_a_blank_disk",
            &blank,
            &[("state", "formatted"), ("images", "0")],
        ),
        (
            "mounts_it_again",
            &blank,
            &[("state", "mounted"), ("images", "0")],
        ),
        (
            "finds_the_built_images",
            &built,
            &[("state", "mounted"), ("images", "1")],
        ),
    ];
    let mut cases = Vec::new();
    let mut transcript = String::new();
    let mut tail = Vec::new();
    for (i, (case, disk, want)) in boots.into_iter().enumerate() {
        let t = Instant::now();
        let prepared = match i {
            0 => fs::File::create(disk)
                .and_then(|f| f.set_len(DISK_SIZE))
                .map_err(|e| format!("cannot create {}: {e}", disk.display())),
            2 => GuestImages::guest_elf(artifacts, &program)
                .and_then(|elf| create(disk, &[guest_program_image(&program, elf, 16)], false)),
            _ => Ok(()),
        };
        let config = QemuConfig {
            smp: suite.smp,
            gic: 3,
            icount: false,
            memory_mib: DEFAULT_MEMORY_MIB,
            kernel: artifacts.hypervisor_bin.clone(),
            initrd: bundle.clone(),
            disk: Some(disk.to_path_buf()),
        };
        let boot_log = out_dir.join(format!("{name}.boot{}.log", i + 1));
        let mut judge = DiskJudge {
            monitor: Monitor::new(&suite),
            records: Vec::new(),
        };
        let outcome = prepared.and_then(|()| crate::run_qemu(&mut judge, &config, &boot_log, &[]));
        transcript.push_str(&fs::read_to_string(&boot_log).unwrap_or_default());
        let failure = match outcome {
            Err(e) => Some(e),
            Ok(lines) => {
                tail = lines;
                judge_disk(&judge, want)
            }
        };
        cases.push(CaseResult {
            vm: None,
            name: case.into(),
            failure,
            time: t.elapsed(),
            output: judge.records.clone(),
        });
        let _ = fs::remove_file(&boot_log);
    }
    let _ = fs::write(&log, transcript);
    SuiteReport {
        name: name.into(),
        time: start.elapsed(),
        cases,
        tail,
        log,
        metrics: vec![],
        skipped: None,
    }
}

/// The quitter of `system_off_one_vm` alone (it powers off at once), as [`DISK_SUITE`].
fn quitter_suite(symbols: &dyn suites::Symbols) -> Result<suites::Suite, String> {
    let mut suite = suites::suite_by_name("system_off_one_vm", symbols)?;
    suite.name = DISK_SUITE.into();
    suite.vms.truncate(1);
    Ok(suite)
}

/// Why a boot's console does not show the wanted `#HV disk` record (1 GiB, and `want`), or
/// `None`; a hypervisor panic or a failed VM test counts too.
fn judge_disk(judge: &DiskJudge, want: &[(&str, &str)]) -> Option<String> {
    if let Some(bad) = judge.monitor.results().into_iter().find(|c| !c.passed()) {
        return Some(format!("{}: {}", bad.id(), bad.failure.unwrap_or_default()));
    }
    let [record] = &judge.records[..] else {
        return Some(format!(
            "expected one `#HV disk` record, got {}: {:?}",
            judge.records.len(),
            judge.records
        ));
    };
    let have = fields(record);
    let capacity = DISK_SIZE.to_string();
    let wanted = want
        .iter()
        .copied()
        .chain([("capacity", capacity.as_str())]);
    for (key, value) in wanted {
        if !have.contains(&(key, value)) {
            return Some(format!("`{record}`: expected {key}={value}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_with_images_and_kept_on_request() {
        let dir = std::env::temp_dir().join(format!("runner-disk-{}", std::process::id()));
        let path = dir.join("d").join("disk.img");
        let image = guest_program_image("counter", vec![0x7f; 1000], 16);
        create(&path, std::slice::from_ref(&image), false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), DISK_SIZE);
        let bytes = std::fs::read(&path).unwrap();
        let (_, records) = diskfmt::read_images(&bytes).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (
                records[0].name.as_str(),
                records[0].ipa_base,
                records[0].default_ram
            ),
            ("counter", TEST_GUEST_IPA_BASE, 16 << 20)
        );
        // Kept: not rewritten (an empty list would otherwise leave no image).
        create(&path, &[], true).unwrap();
        let (_, records) = diskfmt::read_images(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(records.len(), 1);
        create(&path, &[], false).unwrap();
        let (_, records) = diskfmt::read_images(&std::fs::read(&path).unwrap()).unwrap();
        assert!(records.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            qemu_args(Path::new("x.img")).join(" "),
            "-drive file=x.img,if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0"
        );
    }

    #[test]
    fn disk_records_are_judged_by_their_fields() {
        struct NoSymbols;
        impl suites::Symbols for NoSymbols {
            fn guest_symbol(&self, _: &str, s: &str) -> Result<u64, String> {
                Err(s.into())
            }
            fn hypervisor_symbol(&self, s: &str) -> Result<u64, String> {
                Err(s.into())
            }
        }
        let suite = quitter_suite(&NoSymbols).unwrap();
        let mut judge = DiskJudge {
            monitor: Monitor::new(&suite),
            records: Vec::new(),
        };
        let transcript = [
            "#HV disk capacity=1073741824 state=mounted images=1 vms=0",
            "quitter| #HT begin tests=1",
            "quitter| #HT list power_off",
            "quitter| #HT run power_off",
            "quitter| #HT expect-stop power_off",
            "#HV vm-stopped id=1 name=quitter reason=system-off",
            "#HV all-stopped",
        ];
        for (i, line) in transcript.iter().enumerate() {
            judge.feed(line, Duration::from_millis(i as u64));
        }
        assert!(judge.is_finished());
        assert_eq!(
            judge_disk(&judge, &[("state", "mounted"), ("images", "1")]),
            None
        );
        assert_eq!(
            judge_disk(&judge, &[("images", "2")]).unwrap(),
            "`#HV disk capacity=1073741824 state=mounted images=1 vms=0`: expected images=2"
        );
        judge.records.clear();
        assert!(judge_disk(&judge, &[])
            .unwrap()
            .starts_with("expected one `#HV disk` record"));
    }

    #[test]
    fn vm_images_keep_their_placement() {
        let vm = GuestVm {
            name: "rtos".into(),
            format: BundleFormat::Raw,
            image: vec![1; 10],
            initrd: vec![],
            ram: 3 << 20,
            ram_base: 0x4000_0000,
            load_offset: 0x1_0000,
            vcpus: 2,
            cmdline: "x=1".into(),
            cpu_pct: None,
        };
        let s = vm_image(&vm);
        assert_eq!(s.format, ImageFormat::Raw);
        assert_eq!(
            (s.default_ram, s.load_offset, s.entry_offset),
            (4 << 20, 0x1_0000, 0x1_0000)
        );
        assert!(s.platform);
        DiskBuilder::new(DISK_SIZE).image(s).plan().unwrap();
    }
}
