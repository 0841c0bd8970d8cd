//! Host side of the test harness: the suites, running them in QEMU, judging the console
//! framing, and reporting (cargo-test-style text and JUnit XML). Used by `xtask`; see
//! `docs/harness.md`.

pub mod disk;
pub mod elf;
pub mod formats;
pub mod framing;
pub mod junit;
/// The hypervisor's placement of a VM's image, initrd and device tree (shared source file).
#[path = "../../../hypervisor/src/vm/layout.rs"]
pub mod layout;
pub mod linux;
pub mod mgmt;
pub mod mgmt_suites;
pub mod monitor;
pub mod qemu;
pub mod report;
pub mod shares;
pub mod suites;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use monitor::{CaseResult, Monitor};
pub use suites::{Suite, SuiteVm};

use elf::FlatImage;
use linux::{LinuxImages, LinuxMonitor, LinuxSuite, BAD_VM_ARGS_SUITE};
use qemu::{ConsoleEvent, InputScript, InputStep, Qemu, QemuConfig, SpawnOptions};
use suites::{GuestImages, Symbols, ALL_SUITES, TEST_SUITES};

/// Suites that are defined and listed but not run by default (`cargo xtask test
/// --include-pending` runs them, and so does naming one with `--suite`), with the reason; they
/// are reported as skipped. Remove a suite from here when what it tests has landed.
pub const PENDING_SUITES: &[(&str, &str)] = &[];

/// Why suite `name` is pending, if it is.
pub fn pending_reason(name: &str) -> Option<&'static str> {
    PENDING_SUITES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// Every suite name `--suite` accepts: the test-guest suites (bench included), then the Linux
/// suites, then the image-format suites.
pub fn all_suite_names() -> Vec<&'static str> {
    ALL_SUITES
        .iter()
        .chain(linux::LINUX_SUITES)
        .chain(formats::FORMAT_SUITES)
        .chain(disk::DISK_SUITES)
        .chain(mgmt_suites::MGMT_SUITES)
        .copied()
        .collect()
}

/// The suites `cargo xtask test` runs (or reports as skipped, if pending), in order.
pub fn test_suite_names() -> Vec<&'static str> {
    TEST_SUITES
        .iter()
        .chain(linux::LINUX_SUITES)
        .chain(formats::FORMAT_SUITES)
        .chain(disk::DISK_SUITES)
        .chain(mgmt_suites::MGMT_SUITES)
        .copied()
        .collect()
}

/// Whether suite `name` boots Linux guests (and so needs [`Artifacts::linux`]).
pub fn needs_linux_images(name: &str) -> bool {
    linux::linux_suite_by_name(name).is_some_and(|s| formats::boots_linux(&s))
        || mgmt_suites::needs_linux_images(name)
}

/// The built images the harness boots.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The hypervisor ELF (for symbols).
    pub hypervisor_elf: PathBuf,
    /// The flat hypervisor image QEMU loads (`-kernel`).
    pub hypervisor_bin: PathBuf,
    /// Where the guest program ELFs are (`<target>/aarch64-unknown-none/release`).
    pub guest_dir: PathBuf,
    /// Debian's kernel and the initramfs, if prepared (only the Linux suites need them).
    pub linux: Option<LinuxImages>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

impl Artifacts {
    pub fn guest_elf(&self, program: &str) -> PathBuf {
        self.guest_dir.join(program)
    }

    fn guest_bytes(&self, program: &str) -> Result<Vec<u8>, String> {
        let path = self.guest_elf(program);
        if !path.exists() {
            return Err(format!(
                "guest program `{program}` not found at {} (is it a binary of the `guests` crate?)",
                path.display()
            ));
        }
        read(&path, "guest program")
    }
}

impl Symbols for Artifacts {
    fn guest_symbol(&self, program: &str, symbol: &str) -> Result<u64, String> {
        elf::symbol_address(&self.guest_bytes(program)?, symbol)
            .map_err(|e| format!("guest `{program}`: {e}"))
    }
    fn hypervisor_symbol(&self, symbol: &str) -> Result<u64, String> {
        elf::symbol_address(&read(&self.hypervisor_elf, "hypervisor ELF")?, symbol)
            .map_err(|e| format!("hypervisor ELF: {e}"))
    }
}

impl GuestImages for Artifacts {
    fn guest_image(&self, program: &str) -> Result<FlatImage, String> {
        elf::flatten(&self.guest_bytes(program)?).map_err(|e| format!("guest `{program}`: {e}"))
    }
    fn guest_elf(&self, program: &str) -> Result<Vec<u8>, String> {
        self.guest_bytes(program)
    }
}

/// The outcome of one suite.
#[derive(Clone, Debug)]
pub struct SuiteReport {
    pub name: String,
    pub time: Duration,
    pub cases: Vec<CaseResult>,
    /// The last console lines (see [`TAIL_LINES`]).
    pub tail: Vec<String>,
    /// The full console log.
    pub log: PathBuf,
    /// `#HT metric` figures, in order.
    pub metrics: Vec<(String, String)>,
    /// The suite was not run, for this reason (it is pending): its cases are skipped.
    pub skipped: Option<String>,
}

impl SuiteReport {
    pub fn failed(&self) -> usize {
        if self.skipped.is_some() {
            return 0;
        }
        self.cases.iter().filter(|c| !c.passed()).count()
    }

    pub fn passed(&self) -> usize {
        if self.skipped.is_some() {
            return 0;
        }
        self.cases.len() - self.failed()
    }

    /// Cases not run.
    pub fn ignored(&self) -> usize {
        if self.skipped.is_some() {
            self.cases.len()
        } else {
            0
        }
    }

    /// The report of a suite that is not run (see [`PENDING_SUITES`]): its cases, by name,
    /// skipped for `reason`.
    pub fn skipped(name: &str, reason: &str, out_dir: &Path) -> SuiteReport {
        let cases = match linux::linux_suite_by_name(name) {
            Some(s) => linux::case_names(&s)
                .into_iter()
                .map(|(vm, case)| (Some(vm), case))
                .collect(),
            None => vec![(None, "(suite)".to_string())],
        };
        SuiteReport {
            name: name.to_string(),
            time: Duration::ZERO,
            cases: cases
                .into_iter()
                .map(|(vm, name)| CaseResult {
                    vm,
                    name,
                    failure: None,
                    time: Duration::ZERO,
                    output: vec![],
                })
                .collect(),
            tail: vec![],
            log: out_dir.join(format!("{name}.log")),
            metrics: vec![],
            skipped: Some(reason.to_string()),
        }
    }
}

/// What `run_qemu` needs from a judge of the console: [`Monitor`] for test-guest suites,
/// [`LinuxMonitor`] for Linux suites.
trait Judge {
    fn feed(&mut self, line: &str, now: Duration);
    fn deadline(&self) -> Duration;
    fn timeout(&mut self, now: Duration);
    fn qemu_exited(&mut self, status: &str, success: bool);
    fn is_finished(&self) -> bool;
}

impl Judge for Monitor {
    fn feed(&mut self, line: &str, now: Duration) {
        Monitor::feed(self, line, now)
    }
    fn deadline(&self) -> Duration {
        Monitor::deadline(self)
    }
    fn timeout(&mut self, now: Duration) {
        Monitor::timeout(self, now)
    }
    fn qemu_exited(&mut self, status: &str, success: bool) {
        Monitor::qemu_exited(self, status, success)
    }
    fn is_finished(&self) -> bool {
        Monitor::is_finished(self)
    }
}

impl Judge for LinuxMonitor {
    fn feed(&mut self, line: &str, now: Duration) {
        LinuxMonitor::feed(self, line, now)
    }
    fn deadline(&self) -> Duration {
        LinuxMonitor::deadline(self)
    }
    fn timeout(&mut self, now: Duration) {
        LinuxMonitor::timeout(self, now)
    }
    fn qemu_exited(&mut self, status: &str, success: bool) {
        LinuxMonitor::qemu_exited(self, status, success)
    }
    fn is_finished(&self) -> bool {
        LinuxMonitor::is_finished(self)
    }
}

/// How many console lines a failure report shows.
pub const TAIL_LINES: usize = 20;
/// How long QEMU may take to exit once a suite has finished, so that the records of the VMs
/// stopping (and any panic then) are still judged.
const GRACE: Duration = Duration::from_secs(2);

/// Builds the named suite's bundle, boots it in QEMU, and judges it. Writes
/// `<out_dir>/<suite>.log` (the console) and `<out_dir>/<suite>.bundle.bin`. Never fails: a
/// problem before QEMU starts is reported as a failed `setup` case.
pub fn run_suite(name: &str, artifacts: &Artifacts, out_dir: &Path) -> SuiteReport {
    if name == BAD_VM_ARGS_SUITE {
        return run_bad_vm_args(out_dir);
    }
    if name == disk::DISK_SUITE {
        return disk::run_disk_suite(artifacts, out_dir);
    }
    if mgmt_suites::is_mgmt_suite(name) {
        return mgmt_suites::run_mgmt_suite(name, artifacts, out_dir);
    }
    if let Some(suite) = linux::linux_suite_by_name(name) {
        return run_linux_suite(&suite, artifacts, out_dir);
    }
    match suites::suite_by_name(name, artifacts) {
        Ok(suite) => run_suite_def(&suite, artifacts, out_dir),
        Err(e) => failed_setup(name, out_dir, Instant::now(), e),
    }
}

/// [`run_suite`] for a suite given by value (a custom one, or with other timeouts).
pub fn run_suite_def(suite: &Suite, artifacts: &Artifacts, out_dir: &Path) -> SuiteReport {
    let start = Instant::now();
    let name = &suite.name;
    let log = out_dir.join(format!("{name}.log"));
    let setup = || -> Result<PathBuf, String> {
        let bundle = suites::build_bundle_traced(&suite.vms, suite.sched_trace_us, artifacts)?;
        fs::create_dir_all(out_dir)
            .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
        let path = out_dir.join(format!("{name}.bundle.bin"));
        fs::write(&path, bundle).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let bundle = match setup() {
        Ok(path) => path,
        Err(e) => return failed_setup(name, out_dir, start, e),
    };
    // A fresh disk whose store holds the suite's programs.
    let disk = out_dir.join(format!("{name}.disk.img"));
    let made = disk::suite_images(&suite.vms, artifacts)
        .and_then(|images| disk::create(&disk, &images, false));
    if let Err(e) = made {
        return failed_setup(name, out_dir, start, e);
    }
    let config = QemuConfig {
        smp: suite.smp,
        gic: 3,
        icount: suite.icount,
        memory_mib: qemu::DEFAULT_MEMORY_MIB,
        kernel: artifacts.hypervisor_bin.clone(),
        initrd: bundle,
        disk: Some(disk),
    };
    let mut monitor = Monitor::new(suite);
    match run_qemu(&mut monitor, &config, &log, &[]) {
        Ok(tail) => SuiteReport {
            name: name.to_string(),
            time: start.elapsed(),
            cases: monitor.results(),
            tail,
            log,
            metrics: monitor.metrics(),
            skipped: None,
        },
        Err(e) => failed_setup(name, out_dir, start, e),
    }
}

/// Boots a Linux suite (Debian's kernel and the initramfs from [`Artifacts::linux`]) and judges
/// it with a [`LinuxMonitor`]. Writes the same files as [`run_suite_def`].
pub fn run_linux_suite(suite: &LinuxSuite, artifacts: &Artifacts, out_dir: &Path) -> SuiteReport {
    let start = Instant::now();
    let name = &suite.name;
    let log = out_dir.join(format!("{name}.log"));
    let setup = || -> Result<(PathBuf, u64, LinuxMonitor), String> {
        let monitor = LinuxMonitor::new(suite)?;
        let vms = formats::load_suite_vms(suite, artifacts)?;
        let memory = formats::machine_ram_for(&vms)?;
        let bundle = formats::suite_bundle(suite, &vms)?;
        fs::create_dir_all(out_dir)
            .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
        let path = out_dir.join(format!("{name}.bundle.bin"));
        fs::write(&path, bundle).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok((path, memory, monitor))
    };
    let (bundle, memory, mut monitor) = match setup() {
        Ok(x) => x,
        Err(e) => return failed_setup(name, out_dir, start, e),
    };
    // A fresh disk with an empty store (the VMs boot from the bundle).
    let disk = out_dir.join(format!("{name}.disk.img"));
    if let Err(e) = disk::create(&disk, &[], false) {
        return failed_setup(name, out_dir, start, e);
    }
    let config = QemuConfig {
        smp: suite.smp,
        gic: suite.gic,
        icount: false,
        memory_mib: memory >> 20,
        kernel: artifacts.hypervisor_bin.clone(),
        initrd: bundle,
        disk: Some(disk),
    };
    match run_qemu(&mut monitor, &config, &log, &suite.input) {
        Ok(tail) => SuiteReport {
            name: name.to_string(),
            time: start.elapsed(),
            cases: monitor.results(),
            tail,
            log,
            metrics: vec![],
            skipped: None,
        },
        Err(e) => failed_setup(name, out_dir, start, e),
    }
}

/// [`BAD_VM_ARGS_SUITE`]: runs this program (which must be `xtask`) once per case of
/// [`linux::bad_vm_args_cases`], with the test kernels written to `<out_dir>/bad-vm-args/`.
fn run_bad_vm_args(out_dir: &Path) -> SuiteReport {
    let start = Instant::now();
    let name = BAD_VM_ARGS_SUITE;
    let log_path = out_dir.join(format!("{name}.log"));
    let cli = match std::env::current_exe() {
        Ok(p)
            if p.file_stem()
                .is_some_and(|s| s.to_string_lossy().starts_with("xtask")) =>
        {
            p
        }
        Ok(p) => {
            return failed_setup(
                name,
                out_dir,
                start,
                format!(
                    "this suite runs the xtask CLI, but this program is {}",
                    p.display()
                ),
            )
        }
        Err(e) => return failed_setup(name, out_dir, start, format!("no current executable: {e}")),
    };
    let files = linux::BadArgsFiles {
        dir: out_dir.join("bad-vm-args"),
    };
    let setup = || -> Result<(), String> {
        fs::create_dir_all(&files.dir)
            .map_err(|e| format!("cannot create {}: {e}", files.dir.display()))?;
        for (file, data) in linux::BadArgsFiles::contents() {
            let p = files.dir.join(file);
            fs::write(&p, data).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return failed_setup(name, out_dir, start, e);
    }
    let mut log = String::new();
    let mut cases = Vec::new();
    for case in linux::bad_vm_args_cases(&files) {
        let t = Instant::now();
        let output = std::process::Command::new(&cli)
            .args(&case.args)
            .stdin(std::process::Stdio::null())
            .output();
        let (failure, stderr) = match output {
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr).to_string();
                (
                    linux::judge_bad_args(o.status.code(), &stderr, &case.expect),
                    stderr,
                )
            }
            Err(e) => (
                Some(format!("cannot run {}: {e}", cli.display())),
                String::new(),
            ),
        };
        let command = format!("xtask {}", case.args.join(" "));
        log.push_str(&format!("$ {command}\n{stderr}"));
        cases.push(CaseResult {
            vm: None,
            name: case.name.to_string(),
            failure,
            time: t.elapsed(),
            output: std::iter::once(format!("$ {command}"))
                .chain(stderr.lines().map(str::to_string))
                .collect(),
        });
    }
    let _ = fs::write(&log_path, &log);
    SuiteReport {
        name: name.to_string(),
        time: start.elapsed(),
        cases,
        tail: {
            let lines: Vec<String> = log.lines().map(str::to_string).collect();
            lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
        },
        log: log_path,
        metrics: vec![],
        skipped: None,
    }
}

/// The report of a suite that could not be started: one failed `setup` case (also written to
/// the suite's log).
fn failed_setup(name: &str, out_dir: &Path, start: Instant, why: String) -> SuiteReport {
    let log = out_dir.join(format!("{name}.log"));
    let _ = fs::create_dir_all(out_dir);
    let _ = fs::write(&log, format!("xtask: suite not started: {why}\n"));
    SuiteReport {
        name: name.to_string(),
        time: start.elapsed(),
        cases: vec![CaseResult {
            vm: None,
            name: "setup".into(),
            failure: Some(why),
            time: Duration::ZERO,
            output: vec![],
        }],
        tail: vec![],
        log,
        metrics: vec![],
        skipped: None,
    }
}

/// Runs QEMU until the suite is finished, timed out, or QEMU exits; types `input` into the
/// serial console (QEMU's standard input is a pipe then, else `/dev/null`); logs the console
/// and the input; returns its last lines.
fn run_qemu(
    monitor: &mut dyn Judge,
    config: &QemuConfig,
    log_path: &Path,
    input: &[InputStep],
) -> Result<Vec<String>, String> {
    let mut input = InputScript::new(input)?;
    let file =
        File::create(log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut log = BufWriter::new(file);
    let _ = writeln!(log, "xtask: {}", config.command_line());
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut qemu = if input.is_empty() {
        Qemu::spawn(config, SpawnOptions::default())
    } else {
        Qemu::spawn_with_input(config, SpawnOptions::default())
    }
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    // `Err(note)`: a line of the runner's own (`xtask: ...`), logged only.
    type Event = Result<ConsoleEvent, String>;
    let mut record = |event: Event, monitor: &mut dyn Judge, input: &mut InputScript| {
        let line = match event {
            Ok(ConsoleEvent::Line(line)) => {
                monitor.feed(&line, start.elapsed());
                input.feed(&line, start.elapsed());
                line
            }
            Ok(ConsoleEvent::Stderr(line)) => format!("qemu stderr: {line}"),
            Ok(ConsoleEvent::Closed) => return,
            Err(note) => note,
        };
        let _ = writeln!(log, "{line}");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let mut exited = false;
    let mut finished_at: Option<Instant> = None;
    loop {
        let now = start.elapsed();
        while let Some(bytes) = finished_at.is_none().then(|| input.take_due(now)).flatten() {
            let text = qemu::escape_bytes(&bytes);
            let note = match qemu.write_input(&bytes) {
                Ok(()) => format!("xtask: console input: {text}"),
                Err(e) => format!("xtask: console input {text} not written: {e}"),
            };
            record(Err(note), monitor, &mut input);
        }
        let wait = match finished_at {
            Some(at) => match GRACE.checked_sub(at.elapsed()) {
                Some(left) => left,
                None => break, // QEMU did not exit by itself: killed below.
            },
            None => {
                let deadline = monitor.deadline();
                if now >= deadline {
                    monitor.timeout(now);
                    break;
                }
                deadline - now
            }
        };
        let wait = match input.next_due().filter(|_| finished_at.is_none()) {
            Some(due) => wait.min(due.saturating_sub(now)),
            None => wait,
        };
        match qemu.recv_timeout(wait) {
            Ok(ConsoleEvent::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = qemu.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
                monitor.qemu_exited(&qemu::describe_status(&status), status.success());
                exited = true;
                break;
            }
            Ok(event) => record(Ok(event), monitor, &mut input),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if finished_at.is_none() && monitor.is_finished() {
            finished_at = Some(Instant::now());
        }
    }
    for event in qemu.stop() {
        record(Ok(event), monitor, &mut input);
    }
    if let Some(pending) = input.pending() {
        record(
            Err(format!("xtask: console input not all sent: {pending}")),
            monitor,
            &mut input,
        );
    }
    if !exited {
        let _ = writeln!(log, "xtask: QEMU stopped by the runner");
    }
    let _ = log.flush();
    Ok(tail.into_iter().collect())
}

/// Runs `names` with at most `jobs` QEMUs at once, calling `on_done` as each suite finishes;
/// returns the reports in the order of `names`. A suite of `skip` (name, reason) is not run but
/// reported as skipped.
pub fn run_suites(
    names: &[String],
    skip: &[(String, String)],
    artifacts: &Artifacts,
    out_dir: &Path,
    jobs: usize,
    on_done: impl Fn(&SuiteReport),
) -> Vec<SuiteReport> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SuiteReport>>> = Mutex::new(vec![None; names.len()]);
    let (tx, rx) = mpsc::channel::<usize>();
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, names.len().max(1)) {
            let tx = tx.clone();
            let (next, results) = (&next, &results);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(name) = names.get(i) else { break };
                let report = match skip.iter().find(|(n, _)| n == name) {
                    Some((_, why)) => SuiteReport::skipped(name, why, out_dir),
                    None => run_suite(name, artifacts, out_dir),
                };
                results.lock().unwrap()[i] = Some(report);
                let _ = tx.send(i);
            });
        }
        drop(tx);
        for i in rx {
            if let Some(r) = &results.lock().unwrap()[i] {
                on_done(r);
            }
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .flatten()
        .collect()
}
