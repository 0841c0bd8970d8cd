//! Host side of the test harness: the suites, running them in QEMU, judging the console
//! framing, and reporting (cargo-test-style text and JUnit XML). Used by `xtask`; see
//! `docs/harness.md`.

pub mod elf;
pub mod framing;
pub mod junit;
pub mod monitor;
pub mod qemu;
pub mod report;
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
use qemu::{ConsoleEvent, Qemu, QemuConfig, SpawnOptions};
use suites::{GuestImages, Symbols};

/// The built images the harness boots.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The hypervisor ELF (for symbols).
    pub hypervisor_elf: PathBuf,
    /// The flat hypervisor image QEMU loads (`-kernel`).
    pub hypervisor_bin: PathBuf,
    /// Where the guest program ELFs are (`<target>/aarch64-unknown-none/release`).
    pub guest_dir: PathBuf,
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
}

impl SuiteReport {
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed()).count()
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
        let bundle = suites::build_bundle(&suite.vms, artifacts)?;
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
    let config = QemuConfig {
        smp: suite.smp,
        gic: 3,
        icount: suite.icount,
        kernel: artifacts.hypervisor_bin.clone(),
        initrd: bundle,
    };
    match run_qemu(suite, &config, &log) {
        Ok((monitor, tail)) => SuiteReport {
            name: name.to_string(),
            time: start.elapsed(),
            cases: monitor.results(),
            tail,
            log,
            metrics: monitor.metrics().to_vec(),
        },
        Err(e) => failed_setup(name, out_dir, start, e),
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
    }
}

/// Runs QEMU until the suite is finished, timed out, or QEMU exits; logs the console.
fn run_qemu(
    suite: &Suite,
    config: &QemuConfig,
    log_path: &Path,
) -> Result<(Monitor, Vec<String>), String> {
    let file =
        File::create(log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut log = BufWriter::new(file);
    let _ = writeln!(log, "xtask: {}", config.command_line());
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut monitor = Monitor::new(suite);
    let mut qemu = Qemu::spawn(config, SpawnOptions::default()).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut record = |event: ConsoleEvent, monitor: &mut Monitor| {
        let line = match event {
            ConsoleEvent::Line(line) => {
                monitor.feed(&line, start.elapsed());
                line
            }
            ConsoleEvent::Stderr(line) => format!("qemu stderr: {line}"),
            ConsoleEvent::Closed => return,
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
        match qemu.recv_timeout(wait) {
            Ok(ConsoleEvent::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = qemu.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
                monitor.qemu_exited(&qemu::describe_status(&status), status.success());
                exited = true;
                break;
            }
            Ok(event) => record(event, &mut monitor),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if finished_at.is_none() && monitor.is_finished() {
            finished_at = Some(Instant::now());
        }
    }
    for event in qemu.stop() {
        record(event, &mut monitor);
    }
    if !exited {
        let _ = writeln!(log, "xtask: QEMU stopped by the runner");
    }
    let _ = log.flush();
    Ok((monitor, tail.into_iter().collect()))
}

/// Runs `names` with at most `jobs` QEMUs at once, calling `on_done` as each suite finishes;
/// returns the reports in the order of `names`.
pub fn run_suites(
    names: &[String],
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
                let report = run_suite(name, artifacts, out_dir);
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
