//! `cargo xtask build | run | test | bench`: builds the hypervisor and the test guests, boots
//! them in QEMU, and runs the harness (see `docs/harness.md`).

mod args;
mod boot_ratio;
mod build;
mod cpio;
mod disk;
mod images;
mod mgmt;
mod mgmt_bench;
mod vmarg;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::process::{Command, ExitCode};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use harness_runner::formats::{self, GuestVm, ImageFormat};
use harness_runner::linux::{self, LinuxVm, DEFAULT_CMDLINE, DEFAULT_RAM};
use harness_runner::qemu::{
    self, ConsoleEvent, Qemu, QemuConfig, SpawnOptions, DEFAULT_MEMORY_MIB,
};
use harness_runner::suites::{self, SuiteVm};
use harness_runner::{
    junit, needs_linux_images, pending_reason, report, run_suites, test_suite_names, Artifacts,
};

use args::{Command as Cmd, Demo, RunOpts, TestOpts, Usage};
use bootbundle::BundleFlags;
use build::{rel, Workspace};

/// A command failed (exit status 1); the message says why.
#[derive(Debug)]
pub struct Failure(pub String);

/// Prints an `xtask: ...` progress line (to stderr, so stdout carries only the console and
/// the test report).
pub fn progress(msg: &str) {
    eprintln!("xtask: {msg}");
}

fn main() -> ExitCode {
    let command = match args::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: error: {e}\n(`cargo xtask help` lists the commands and options)");
            return ExitCode::from(2);
        }
    };
    let ws = Workspace::find();
    let result = match command {
        Cmd::Help => {
            print!("{}", args::HELP);
            Ok(())
        }
        Cmd::Build => build::ensure_prerequisites()
            .and_then(|()| build::build(&ws))
            .map(|_| ()),
        Cmd::Run(opts) => match cmd_run(&ws, &opts) {
            Err(Stop::Usage(Usage(msg))) => {
                eprintln!("xtask: error: {msg}");
                return ExitCode::from(2);
            }
            Err(Stop::Failure(f)) => Err(f),
            Ok(()) => Ok(()),
        },
        Cmd::Test(opts) => cmd_test(&ws, &opts),
        Cmd::Bench { mgmt_only } => cmd_bench(&ws, mgmt_only),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn prepare(ws: &Workspace) -> Result<Artifacts, Failure> {
    build::ensure_prerequisites()?;
    build::build(ws)
}

/// Why `cargo xtask run` stopped: a bad `--vm` (exit status 2, nothing started) or a failure.
enum Stop {
    Usage(Usage),
    Failure(Failure),
}

impl From<Usage> for Stop {
    fn from(u: Usage) -> Self {
        Stop::Usage(u)
    }
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Failure(f)
    }
}

/// What `cargo xtask run` boots.
enum RunVms {
    /// Test-guest programs (`--demo guests`).
    Guests(Vec<SuiteVm>),
    /// The Linux demo, or the `--vm` images.
    Images(Vec<GuestVm>),
}

/// The VMs of `cargo xtask run`, every file read and checked. Mistakes in `--vm` files are
/// found before anything is fetched or built; the images are fetched only if needed.
fn run_vms(ws: &Workspace, opts: &RunOpts) -> Result<RunVms, Stop> {
    if opts.vms.is_empty() && opts.demo == Demo::Guests {
        return Ok(RunVms::Guests(suites::demo_vms()));
    }
    if opts.vms.is_empty() {
        let images = images::prepare_linux_images(ws)?;
        let read = |p: &std::path::Path| {
            fs::read(p).map_err(|e| Failure(format!("cannot read {}: {e}", p.display())))
        };
        let (kernel, initrd) = (read(&images.kernel)?, read(&images.initramfs)?);
        let vms: Vec<LinuxVm> = ["alpha", "beta"]
            .iter()
            .map(|name| LinuxVm {
                name: name.to_string(),
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                ram: DEFAULT_RAM,
                vcpus: 1,
                cmdline: DEFAULT_CMDLINE.into(),
            })
            .collect();
        for vm in &vms {
            linux::plan_vm(vm).map_err(Failure)?;
        }
        return Ok(RunVms::Images(vms.iter().map(GuestVm::from).collect()));
    }
    let mut loaded = Vec::new();
    for vm in &opts.vms {
        loaded.push((vmarg::load_kernel(vm)?, vmarg::load_initrd(vm)?));
    }
    // The harness initramfs is the default initrd of Linux images only.
    let wants_default = |(image, initrd): &(vmarg::Image, Option<Vec<u8>>)| {
        image.format == ImageFormat::Linux && initrd.is_none()
    };
    let default_initrd = if loaded.iter().any(wants_default) {
        build::ensure_prerequisites()?;
        let images = images::prepare_linux_images(ws)?;
        Some(
            fs::read(&images.initramfs)
                .map_err(|e| Failure(format!("cannot read {}: {e}", images.initramfs.display())))?,
        )
    } else {
        None
    };
    let mut vms = Vec::new();
    for (vm, (image, initrd)) in opts.vms.iter().zip(loaded) {
        let initrd = match (initrd, image.format) {
            (Some(initrd), _) => initrd,
            (None, ImageFormat::Linux) => default_initrd.clone().unwrap_or_default(),
            (None, _) => Vec::new(),
        };
        vms.push(vmarg::finish_vm(vm, image, initrd)?);
    }
    formats::machine_ram_for(&vms).map_err(|e| Usage(format!("--vm: {e}")))?;
    Ok(RunVms::Images(vms))
}

fn cmd_run(ws: &Workspace, opts: &RunOpts) -> Result<(), Stop> {
    let vms = run_vms(ws, opts)?;
    let artifacts = prepare(ws)?;
    let (bundle, names, memory_mib) = match &vms {
        RunVms::Guests(vms) => (
            suites::build_bundle(vms, &artifacts).map_err(Failure)?,
            vms.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
            DEFAULT_MEMORY_MIB,
        ),
        RunVms::Images(vms) => (
            formats::build_bundle(vms).map_err(Failure)?,
            vms.iter().map(|v| v.name.clone()).collect(),
            formats::machine_ram_for(vms).map_err(Failure)? >> 20,
        ),
    };
    // The management VM starts first, with console input (docs/virmo.md). With a script, it
    // is the only VM: the others are only put in the image store.
    let flags = BundleFlags(
        BundleFlags::MANAGEMENT_VM
            | if opts.fault_injection {
                BundleFlags::FAULT_INJECTION
            } else {
                0
            }
            | if opts.mgmt_pmu {
                BundleFlags::MANAGEMENT_PMU
            } else {
                0
            },
    );
    let (bundle, names) = if opts.mgmt_script.is_some() {
        let mut b = bootbundle::BundleBuilder::new();
        b.flags = flags;
        (b.build().map_err(|e| Failure(e.to_string()))?, Vec::new())
    } else {
        let mut bundle = bundle;
        bootbundle::set_flags(&mut bundle, flags).map_err(|e| Failure(e.to_string()))?;
        (bundle, names)
    };
    let names: Vec<String> = std::iter::once("mgmt".to_string()).chain(names).collect();
    let memory_mib = memory_mib + (mgmt::MGMT_RAM_MIB + 256);
    let bundle_path = ws.out.join("images").join("run-bundle.bin");
    fs::write(&bundle_path, bundle)
        .map_err(|e| Failure(format!("cannot write {}: {e}", bundle_path.display())))?;
    let config = QemuConfig {
        smp: opts.smp,
        gic: opts.gic,
        icount: opts.icount,
        memory_mib,
        kernel: artifacts.hypervisor_bin.clone(),
        initrd: bundle_path,
        disk: Some(disk::prepare(ws, &vms, &artifacts, opts.keep_disk)?),
    };
    // With a script, `mgmt::run_script` says what it boots.
    if let Some(script) = &opts.mgmt_script {
        return mgmt::run_script(&config, script, opts.timeout).map_err(Stop::Failure);
    }
    progress(&format!(
        "booting VMs {} with: {}",
        names.join(", "),
        config.command_line()
    ));
    let stdin_tty = io::stdin().is_terminal();
    let mut qemu = Qemu::spawn(
        &config,
        SpawnOptions {
            echo: true,
            inherit_stdin: stdin_tty,
            inherit_stderr: true,
        },
    )
    .map_err(|e| Failure(e.to_string()))?;
    let outcome = watch_console(&mut qemu, opts);
    qemu.stop();
    outcome.map(|msg| progress(&msg)).map_err(Stop::Failure)
}

/// Follows the console of `cargo xtask run` until the `--expect`s matched, QEMU exited, the
/// hypervisor panicked or the timeout passed.
fn watch_console(qemu: &mut Qemu, opts: &RunOpts) -> Result<String, Failure> {
    const PANIC_GRACE: Duration = Duration::from_secs(1);
    let start = Instant::now();
    let mut matched = vec![false; opts.expects.len()];
    let mut panic: Option<(String, Instant)> = None;
    let unmatched = |matched: &[bool]| -> String {
        let list: Vec<String> = opts
            .expects
            .iter()
            .zip(matched)
            .filter(|(_, m)| !**m)
            .map(|(r, _)| format!("`{r}`"))
            .collect();
        if list.is_empty() {
            String::new()
        } else {
            format!("; --expect not matched: {}", list.join(", "))
        }
    };
    loop {
        let deadline = match (&panic, opts.timeout) {
            (Some((_, at)), _) => Some(*at + PANIC_GRACE),
            (None, Some(t)) => Some(start + t),
            (None, None) => None,
        };
        let event = match deadline {
            Some(d) => qemu.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => qemu.recv_timeout(Duration::from_secs(3600)),
        };
        match event {
            Ok(ConsoleEvent::Line(line)) => {
                if panic.is_some() {
                    continue;
                }
                if let Some(msg) = line.strip_prefix("#HV panic") {
                    panic = Some((msg.trim().to_string(), Instant::now()));
                    continue;
                }
                for (re, m) in opts.expects.iter().zip(matched.iter_mut()) {
                    *m |= re.is_match(&line);
                }
                if !matched.is_empty() && matched.iter().all(|m| *m) {
                    return Ok(format!(
                        "every --expect matched after {:.1}s",
                        start.elapsed().as_secs_f64()
                    ));
                }
            }
            Ok(ConsoleEvent::Stderr(_)) => {}
            Ok(ConsoleEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let status = qemu
                    .wait()
                    .map_err(|e| Failure(format!("waiting for QEMU: {e}")))?;
                let status_text = qemu::describe_status(&status);
                if let Some((msg, _)) = panic {
                    return Err(Failure(format!("the hypervisor panicked: {msg}")));
                }
                if !matched.iter().all(|m| *m) {
                    return Err(Failure(format!(
                        "QEMU exited ({status_text}) first{}",
                        unmatched(&matched)
                    )));
                }
                if !status.success() {
                    return Err(Failure(format!("QEMU exited with {status_text}")));
                }
                return Ok("QEMU exited".into());
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some((msg, _)) = panic {
                    return Err(Failure(format!("the hypervisor panicked: {msg}")));
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let t = opts.timeout.unwrap_or_default();
                    return Err(Failure(format!(
                        "timed out after {t:?}{}",
                        unmatched(&matched)
                    )));
                }
            }
        }
    }
}

fn cmd_test(ws: &Workspace, opts: &TestOpts) -> Result<(), Failure> {
    build::ensure_prerequisites()?;
    let start = Instant::now();
    let mut problems = Vec::new();
    if opts.skip_host {
        progress("skipping the host tests (--skip-host)");
    } else {
        progress("fetching test device trees: scripts/fetch-dtbs.sh target/dtbs");
        build::run_checked(
            Command::new(ws.root.join("scripts/fetch-dtbs.sh"))
                .arg("target/dtbs")
                .current_dir(&ws.root),
            "scripts/fetch-dtbs.sh",
        )?;
        progress("host tests: HV_REQUIRE_DTBS=1 cargo test --workspace");
        if let Err(Failure(e)) = build::run_checked(
            ws.cargo()
                .args(["test", "--workspace"])
                .env("HV_REQUIRE_DTBS", "1"),
            "cargo test --workspace",
        ) {
            progress(&format!("{e}; running the harness all the same"));
            problems.push("the host tests failed (cargo test --workspace, above)".to_string());
        }
    }
    let mut artifacts = build::build(ws)?;
    let names: Vec<String> = if opts.suites.is_empty() {
        test_suite_names().iter().map(|s| s.to_string()).collect()
    } else {
        opts.suites.clone()
    };
    // Pending suites are reported as skipped, unless asked for (--include-pending, or by name).
    let skip: Vec<(String, String)> = names
        .iter()
        .filter(|_| !opts.include_pending && opts.suites.is_empty())
        .filter_map(|n| pending_reason(n).map(|why| (n.clone(), why.to_string())))
        .collect();
    if names
        .iter()
        .any(|n| needs_linux_images(n) && !skip.iter().any(|(s, _)| s == n))
    {
        // Without the images the Linux suites fail their setup; the others still run.
        match images::prepare_linux_images(ws) {
            Ok(images) => artifacts.linux = Some(images),
            Err(Failure(e)) => {
                progress(&format!("{e}; the Linux suites cannot run"));
                problems.push(format!(
                    "the Linux guest images could not be prepared ({e})"
                ));
            }
        }
    }
    let out_dir = ws.out.join("harness");
    fs::create_dir_all(&out_dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", out_dir.display())))?;
    let jobs = opts.jobs.min(2);
    println!(
        "\nrunning {} harness suites ({} at a time){}",
        names.len() - skip.len(),
        jobs,
        if skip.is_empty() {
            String::new()
        } else {
            format!(
                "; {} pending, skipped (--include-pending runs them)",
                skip.len()
            )
        }
    );
    let _ = io::stdout().flush();
    let reports = run_suites(&names, &skip, &artifacts, &out_dir, jobs, |r| {
        print!("{}", report::case_lines(r));
        let _ = io::stdout().flush();
    });
    let junit_path = out_dir.join("junit.xml");
    fs::write(&junit_path, junit::junit_xml(&reports))
        .map_err(|e| Failure(format!("cannot write {}: {e}", junit_path.display())))?;
    print!("{}", report::summary(&reports, start.elapsed()));
    progress(&format!(
        "JUnit report: {}; console logs: {}/<suite>.log",
        rel(ws, &junit_path),
        rel(ws, &out_dir)
    ));
    let failed: usize = reports.iter().map(|r| r.failed()).sum();
    if failed > 0 {
        problems.push(format!("{failed} harness test(s) failed"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure(problems.join("; ")))
    }
}

/// `mgmt_only` (`--mgmt-only`): only the management figures, neither the bench suites nor
/// `linux_boot_ratio`.
fn cmd_bench(ws: &Workspace, mgmt_only: bool) -> Result<(), Failure> {
    let artifacts = prepare(ws)?;
    let out_dir = ws.out.join("harness");
    fs::create_dir_all(&out_dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", out_dir.display())))?;
    let names: Vec<String> = if mgmt_only {
        Vec::new()
    } else {
        suites::BENCH_SUITES.iter().map(|s| s.to_string()).collect()
    };
    progress(&format!(
        "running the bench suites {} (QEMU -icount shift=0,sleep=off, 2 at a time)",
        names.join(", ")
    ));
    let reports = run_suites(&names, &[], &artifacts, &out_dir, 2, |r| {
        print!("{}", report::case_lines(r));
        let _ = io::stdout().flush();
    });
    // The figures of every suite that passed are recorded, even if another failed.
    let mut metrics = Vec::new();
    let mut problems = Vec::new();
    for r in &reports {
        if r.failed() > 0 {
            problems.push(format!(
                "suite `{}` failed; its figures are not recorded (log: {})",
                r.name,
                rel(ws, &r.log)
            ));
        } else if r.metrics.is_empty() {
            problems.push(format!(
                "suite `{}` reported no `#HT metric` (log: {})",
                r.name,
                rel(ws, &r.log)
            ));
        } else {
            metrics.extend(r.metrics.iter().cloned());
        }
    }
    if !problems.is_empty() {
        print!("{}", report::summary(&reports, longest(&reports)));
    }
    // linux_boot_ratio: Debian's Linux booted natively and under the hypervisor.
    if !mgmt_only {
        match images::prepare_linux_images(ws)
            .and_then(|images| boot_ratio::measure(ws, &artifacts, &images))
        {
            Ok(figures) => metrics.extend(figures.metrics()),
            Err(Failure(e)) => problems.push(format!("linux_boot_ratio not measured: {e}")),
        }
    }
    // The management VM's create, suspend and resume.
    match mgmt_bench::measure(&artifacts, &out_dir) {
        Ok(figures) => metrics.extend(figures),
        Err(Failure(e)) => problems.push(format!("management figures not measured: {e}")),
    }
    if !metrics.is_empty() {
        let path = ws.out.join("bench").join("results.json");
        let merged =
            merge_results(fs::read_to_string(&path).ok().as_deref(), &metrics).map_err(Failure)?;
        fs::create_dir_all(path.parent().unwrap())
            .map_err(|e| Failure(format!("cannot create bench dir: {e}")))?;
        let text = serde_json::to_string_pretty(&merged).expect("JSON") + "\n";
        fs::write(&path, text)
            .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
        println!();
        for (name, value) in &metrics {
            println!("{name:<40} {value}");
        }
        progress(&format!("figures merged into {}", rel(ws, &path)));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure(problems.join("; ")))
    }
}

/// The longest suite time of `reports` (they ran in parallel), for the summary line.
fn longest(reports: &[harness_runner::SuiteReport]) -> Duration {
    reports.iter().map(|r| r.time).max().unwrap_or_default()
}

/// Merges `metrics` into the flat JSON object `existing` (other keys are kept).
fn merge_results(
    existing: Option<&str>,
    metrics: &[(String, String)],
) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let mut map: BTreeMap<String, serde_json::Value> = match existing {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text).map_err(|e| {
            format!("target/bench/results.json is not a flat JSON object ({e}); move it away")
        })?,
        _ => BTreeMap::new(),
    };
    for (name, value) in metrics {
        let number: serde_json::Number = value
            .parse()
            .map_err(|_| format!("metric `{name}`: `{value}` is not a number"))?;
        map.insert(name.clone(), serde_json::Value::Number(number));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_bench_results() {
        let m = |n: &str, v: &str| (n.to_string(), v.to_string());
        let merged = merge_results(
            Some(r#"{"other_bench": 3, "hvc_null_ns": 900}"#),
            &[m("hvc_null_ns", "812"), m("ratio", "1.5")],
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&merged).unwrap(),
            r#"{"hvc_null_ns":812,"other_bench":3,"ratio":1.5}"#
        );
        assert!(merge_results(None, &[m("x", "fast")])
            .unwrap_err()
            .contains("not a number"));
        assert!(merge_results(Some("[1]"), &[])
            .unwrap_err()
            .contains("not a flat JSON object"));
        assert!(merge_results(Some(""), &[m("a", "-2")]).is_ok());
    }
}
