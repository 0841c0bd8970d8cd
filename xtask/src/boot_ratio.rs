//! The `linux_boot_ratio` benchmark (docs/benchmarks.md): how much longer Debian's Linux takes
//! to reach its userland marker under the hypervisor than natively, in the same QEMU, both
//! with `-icount shift=0,sleep=off` (so time is instructions: 1 ns per instruction).
//!
//! The moment measured is the same in both runs: the initramfs's `/init` prints
//! `HV-LINUX-READY`, then runs `hvclock` (`xtask/linux/hvclock.rs`), which prints the virtual
//! counter CNTVCT_EL0 and its frequency as `HV-LINUX-CLOCK <count> <frequency>`, and then
//! powers off (`hvtest=poweroff`). Counter ticks since QEMU started are the time taken:
//!
//! - natively the kernel runs at EL1 with CNTVOFF = 0, so CNTVCT counts from QEMU's start;
//! - under the hypervisor the VM's counter starts at its creation (CNTVOFF_EL2 = the physical
//!   count then), which the hypervisor's `#HV vm-start ... cntvoff=0x<ticks>` record gives:
//!   CNTVCT + cntvoff is the time since QEMU's start, the hypervisor's own boot included.
//!
//! The native machine is made to match what the VM sees: one CPU, the VM's RAM, the CPU
//! features the hypervisor leaves guests (no SVE, SME or PMU), and a device tree holding only
//! the devices a VM gets (QEMU's own tree, dumped and filtered: memory, CPUs, PSCI, GICv3
//! without ITS, timer, PL011, chosen; no KASLR or RNG seed, which would make runs differ).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness_runner::linux::{self, LinuxImages, LinuxVm, DEFAULT_CMDLINE, DEFAULT_RAM};
use harness_runner::qemu::{describe_status, LineSplitter, QemuConfig, QEMU};
use harness_runner::Artifacts;

use crate::build::{rel, Workspace};
use crate::cpio::CpioWriter;
use crate::images::INIT_SCRIPT;
use crate::{progress, Failure};

/// The VM's (and the native machine's) name on the kernel command line and in the bundle.
const NAME: &str = "bench";
/// The line `/init` prints once userland is up, after which the clock is read.
const READY_LINE: &str = "echo \"HV-LINUX-READY $name\"\n";
/// What the benchmark's `/init` adds after [`READY_LINE`].
const CLOCK_LINE: &str = "echo \"HV-LINUX-CLOCK $(/bin/hvclock)\"\n";
const CLOCK_MARKER: &str = "HV-LINUX-CLOCK ";
/// How long one boot may take (each takes some seconds of host time).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// CPU features the hypervisor hides from guests that QEMU's `max` CPU has (the others it
/// hides, MPAM, AMU, RME, trace, SPE, BRBE, QEMU 7.2 does not implement; MTE needs `mte=on`).
const NATIVE_CPU: &str = "max,sve=off,sme=off,pmu=off";
/// The top-level nodes of QEMU's device tree kept for the native run: what a VM's device tree
/// has (`hypervisor/src/dt/guest_fdt.rs`). Children of the interrupt controller (ITS, v2m)
/// are dropped: a VM's GIC has none.
const KEPT_NODES: &[&str] = &[
    "memory@", "cpus", "psci", "intc@", "timer", "apb-pclk", "pl011@", "chosen",
];

/// The figures of one measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootFigures {
    /// Counter ticks from QEMU's start to the marker, natively.
    pub native_ticks: u64,
    /// Under the hypervisor: the VM's counter at the marker, and its CNTVOFF.
    pub guest_ticks: u64,
    pub cntvoff_ticks: u64,
    pub frequency: u64,
}

impl BootFigures {
    pub fn ratio(&self) -> f64 {
        (self.guest_ticks + self.cntvoff_ticks) as f64 / self.native_ticks as f64
    }

    /// Ticks in ns, which under `-icount shift=0` are instructions (and idle time skipped).
    fn ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000_000 / self.frequency.max(1) as u128) as u64
    }

    /// The `#HT metric`-style figures for `results.json`.
    pub fn metrics(&self) -> Vec<(String, String)> {
        let m = |n: &str, v: String| (n.to_string(), v);
        vec![
            m("linux_boot_ratio", format!("{:.4}", self.ratio())),
            m(
                "linux_boot_native_insns",
                self.ns(self.native_ticks).to_string(),
            ),
            m(
                "linux_boot_hv_insns",
                self.ns(self.guest_ticks + self.cntvoff_ticks).to_string(),
            ),
            m(
                "linux_boot_hv_startup_insns",
                self.ns(self.cntvoff_ticks).to_string(),
            ),
        ]
    }
}

/// Runs both boots and returns the figures; writes `target/harness/linux_boot_{native,hv}.log`.
pub fn measure(
    ws: &Workspace,
    artifacts: &Artifacts,
    images: &LinuxImages,
) -> Result<BootFigures, Failure> {
    let dir = ws.out.join("bench");
    fs::create_dir_all(&dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
    let logs = ws.out.join("harness");
    fs::create_dir_all(&logs)
        .map_err(|e| Failure(format!("cannot create {}: {e}", logs.display())))?;

    let hvclock = build_hvclock(ws, &dir)?;
    let base = read(&images.initramfs)?;
    let initramfs = bench_initramfs(&base, &hvclock, INIT_SCRIPT).map_err(Failure)?;
    let initramfs_path = dir.join("linux-boot-initramfs.cpio");
    write(&initramfs_path, &initramfs)?;
    let kernel = read(&images.kernel)?;
    let cmdline = format!("{DEFAULT_CMDLINE} hvname={NAME} hvtest=poweroff");

    // Under the hypervisor: one Linux VM, as `cargo xtask run --vm` makes it.
    let vm = LinuxVm {
        name: NAME.into(),
        kernel,
        initrd: initramfs,
        ram: DEFAULT_RAM,
        vcpus: 1,
        cmdline: cmdline.clone(),
    };
    let memory = linux::machine_ram_for(std::slice::from_ref(&vm)).map_err(Failure)?;
    let bundle = linux::build_linux_bundle(std::slice::from_ref(&vm)).map_err(Failure)?;
    let bundle_path = dir.join("linux-boot.bundle.bin");
    write(&bundle_path, &bundle)?;
    let disk = dir.join("linux-boot.disk.img");
    harness_runner::disk::create(&disk, &[], false).map_err(Failure)?;
    let hv = QemuConfig {
        smp: 1,
        gic: 3,
        icount: true,
        memory_mib: memory >> 20,
        kernel: artifacts.hypervisor_bin.clone(),
        initrd: bundle_path,
        disk: Some(disk),
    };
    let dtb = native_dtb(&dir)?;
    let native = native_args(images, &initramfs_path, &dtb, &cmdline);
    let hv_log = logs.join("linux_boot_hv.log");
    let native_log = logs.join("linux_boot_native.log");
    progress("linux_boot_ratio: booting Linux under the hypervisor and natively (QEMU -icount)");
    let (hv_lines, native_lines) = std::thread::scope(|s| {
        let hv_run = s.spawn(|| run_to_exit(&hv.args(), &hv_log));
        let native_run = run_to_exit(&native, &native_log);
        (hv_run.join().expect("QEMU runner thread"), native_run)
    });
    let (hv_lines, native_lines) = (hv_lines?, native_lines?);
    let (guest_ticks, frequency) = find_clock(&hv_lines, &format!("{NAME}| "))
        .map_err(|e| Failure(format!("{e} (log: {})", rel(ws, &hv_log))))?;
    let cntvoff_ticks = find_cntvoff(&hv_lines, NAME)
        .map_err(|e| Failure(format!("{e} (log: {})", rel(ws, &hv_log))))?;
    let (native_ticks, native_frequency) = find_clock(&native_lines, "")
        .map_err(|e| Failure(format!("{e} (log: {})", rel(ws, &native_log))))?;
    if native_frequency != frequency {
        return Err(Failure(format!(
            "the counter runs at {native_frequency} Hz natively but {frequency} Hz in the VM"
        )));
    }
    Ok(BootFigures {
        native_ticks,
        guest_ticks,
        cntvoff_ticks,
        frequency,
    })
}

/// QEMU's arguments for the native boot: the same machine without EL2 (the kernel starts at
/// EL1), matched to the VM (see the module comment).
fn native_args(images: &LinuxImages, initramfs: &Path, dtb: &Path, cmdline: &str) -> Vec<String> {
    [
        "-M",
        "virt,gic-version=3",
        "-cpu",
        NATIVE_CPU,
        "-smp",
        "1",
        "-m",
        &format!("{}M", DEFAULT_RAM >> 20),
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-kernel",
        &images.kernel.display().to_string(),
        "-initrd",
        &initramfs.display().to_string(),
        "-dtb",
        &dtb.display().to_string(),
        "-append",
        cmdline,
        "-icount",
        "shift=0,sleep=off",
    ]
    .map(String::from)
    .to_vec()
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
}

fn write(path: &Path, data: &[u8]) -> Result<(), Failure> {
    fs::write(path, data).map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

/// Compiles `xtask/linux/hvclock.rs` into `<dir>/hvclock` with `rustc` (the toolchain's, as
/// cargo gives it to xtask) and returns it.
fn build_hvclock(ws: &Workspace, dir: &Path) -> Result<Vec<u8>, Failure> {
    let source = ws.root.join("xtask").join("linux").join("hvclock.rs");
    let out = dir.join("hvclock");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    // Run in the workspace, so that rustup picks the workspace's toolchain (which has the
    // target: `build::ensure_prerequisites` installed it).
    let status = Command::new(rustc)
        .current_dir(&ws.root)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "hvclock",
        ])
        .args(["--target", crate::build::GUEST_TARGET])
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "strip=symbols", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .map_err(|e| Failure(format!("cannot run rustc: {e}")))?;
    if !status.success() {
        return Err(Failure(format!(
            "rustc {} failed ({})",
            rel(ws, &source),
            describe_status(&status)
        )));
    }
    read(&out)
}

/// `/init` for the benchmark: `init` with [`CLOCK_LINE`] right after the READY marker.
pub fn bench_init_script(init: &str) -> Result<String, String> {
    let at = init
        .find(READY_LINE)
        .ok_or("init.sh no longer prints `HV-LINUX-READY $name` on a line of its own")?
        + READY_LINE.len();
    Ok(format!("{}{CLOCK_LINE}{}", &init[..at], &init[at..]))
}

/// The benchmark's initramfs: the harness initramfs `base` (a gzip-compressed cpio), then,
/// 4-byte aligned, an uncompressed cpio with `/bin/hvclock` and the benchmark's `/init`.
/// Linux unpacks concatenated archives in order, and a later file replaces an earlier one
/// (init/initramfs.c), so `/init` is the benchmark's.
pub fn bench_initramfs(base: &[u8], hvclock: &[u8], init: &str) -> Result<Vec<u8>, String> {
    if !hvclock.starts_with(b"\x7fELF") {
        return Err("hvclock is not an ELF executable".into());
    }
    let mut w = CpioWriter::new();
    // `bin` exists already; the writer wants every directory before its files.
    w.dir("bin", 0o755)?;
    w.file("bin/hvclock", 0o755, hvclock)?;
    w.file("init", 0o755, bench_init_script(init)?.as_bytes())?;
    let mut out = base.to_vec();
    out.resize(base.len().next_multiple_of(4), 0);
    out.extend_from_slice(&w.finish());
    Ok(out)
}

/// Runs QEMU with `args` until it exits by itself, logging its console to `log`; returns the
/// console lines. Fails on a timeout or a failure exit status.
fn run_to_exit(args: &[String], log: &Path) -> Result<Vec<String>, Failure> {
    let mut text = format!("xtask: {QEMU} {}\n", args.join(" "));
    let mut child = Command::new(QEMU)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start {QEMU}: {e}")))?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_tx = tx.clone();
    let readers = [
        std::thread::spawn(move || {
            let mut splitter = LineSplitter::default();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for line in splitter.push(&buf[..n]) {
                    let _ = out_tx.send(Some(line));
                }
            }
            if let Some(line) = splitter.finish() {
                let _ = out_tx.send(Some(line));
            }
            let _ = out_tx.send(None);
        }),
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(Some(format!("qemu stderr: {line}")));
            }
        }),
    ];
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(line)) => lines.push(line),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure(format!("waiting for {QEMU}: {e}")))?;
    for r in readers {
        let _ = r.join();
    }
    lines.extend(rx.try_iter().flatten());
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    write(log, text.as_bytes())?;
    if timed_out {
        return Err(Failure(format!(
            "QEMU did not finish within {}s (log: {})",
            BOOT_TIMEOUT.as_secs(),
            log.display()
        )));
    }
    if !status.success() {
        return Err(Failure(format!(
            "QEMU ended with {} (log: {})",
            describe_status(&status),
            log.display()
        )));
    }
    Ok(lines)
}

/// `(count, frequency)` from the `HV-LINUX-CLOCK <count> <frequency>` console line, which
/// starts with `prefix` (`<vm>| ` under the hypervisor).
pub fn find_clock(lines: &[String], prefix: &str) -> Result<(u64, u64), String> {
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix)?.trim().strip_prefix(CLOCK_MARKER))
        .ok_or("Linux never printed `HV-LINUX-CLOCK` (did it reach userland?)")?;
    let mut words = line.split_whitespace().map(str::parse::<u64>);
    match (words.next(), words.next()) {
        (Some(Ok(count)), Some(Ok(frequency))) if frequency > 0 => Ok((count, frequency)),
        _ => Err(format!("bad clock line `HV-LINUX-CLOCK {line}`")),
    }
}

/// CNTVOFF of VM `name`, from its `#HV vm-start ... cntvoff=0x<ticks>` record.
pub fn find_cntvoff(lines: &[String], name: &str) -> Result<u64, String> {
    let record = lines
        .iter()
        .filter_map(|l| l.strip_prefix("#HV vm-start "))
        .find(|r| r.split_whitespace().any(|w| w == format!("name={name}")))
        .ok_or(format!("no `#HV vm-start` record for VM `{name}`"))?;
    let value = record
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cntvoff="))
        .ok_or(
            "the hypervisor's `#HV vm-start` record has no `cntvoff=` (the VM's CNTVOFF_EL2, \
             the physical count at its creation), which the ratio needs",
        )?;
    let hex = value.strip_prefix("0x").unwrap_or(value);
    u64::from_str_radix(hex, 16).map_err(|_| format!("bad cntvoff `{value}`"))
}

/// QEMU's device tree for the native run (`dumpdtb`), filtered by [`filter_fdt`]: written to
/// `<dir>/linux-boot-native.dtb`.
fn native_dtb(dir: &Path) -> Result<PathBuf, Failure> {
    let full = dir.join("qemu-virt.dtb");
    let output = Command::new(QEMU)
        .args([
            "-M",
            &format!("virt,gic-version=3,dumpdtb={}", full.display()),
            "-cpu",
            NATIVE_CPU,
            "-smp",
            "1",
            "-m",
            &format!("{}M", DEFAULT_RAM >> 20),
            "-display",
            "none",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure(format!("cannot run {QEMU}: {e}")))?;
    if !output.status.success() {
        return Err(Failure(format!(
            "{QEMU} dumpdtb failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let filtered = filter_fdt(&read(&full)?, &|path| keep_node(path), &|path, prop| {
        !(path == "/chosen" && (prop == "kaslr-seed" || prop == "rng-seed"))
    })
    .map_err(|e| Failure(format!("QEMU's device tree: {e}")))?;
    let path = dir.join("linux-boot-native.dtb");
    write(&path, &filtered)?;
    Ok(path)
}

/// Whether the node at `path` (`/name@addr/child`) is kept in the native device tree.
fn keep_node(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => true,
        [top] => KEPT_NODES
            .iter()
            .any(|k| top == k || (k.ends_with('@') && top.starts_with(k))),
        [top, ..] if top.starts_with("intc@") => false,
        [top, ..] => keep_node(&format!("/{top}")),
        [] => true,
    }
}

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const FDT_HEADER: usize = 40;

fn be32(b: &[u8], off: usize) -> Result<u32, String> {
    b.get(off..off + 4)
        .map(|s| u32::from_be_bytes(s.try_into().unwrap()))
        .ok_or_else(|| format!("truncated at {off:#x}"))
}

/// A copy of the flattened device tree `blob` (DTSpec v0.4 chapter 5) without the nodes whose
/// path `keep_node` refuses (and their subtrees) and the properties `keep_prop(node path,
/// name)` refuses. The memory reservation block and the strings block are kept as they are.
pub fn filter_fdt(
    blob: &[u8],
    keep_node: &dyn Fn(&str) -> bool,
    keep_prop: &dyn Fn(&str, &str) -> bool,
) -> Result<Vec<u8>, String> {
    if be32(blob, 0)? != FDT_MAGIC {
        return Err("not a flattened device tree (bad magic)".into());
    }
    let off_struct = be32(blob, 8)? as usize;
    let off_strings = be32(blob, 12)? as usize;
    let off_rsvmap = be32(blob, 16)? as usize;
    let boot_cpu = be32(blob, 28)?;
    let size_strings = be32(blob, 32)? as usize;
    let size_struct = be32(blob, 36)? as usize;
    let strings = blob
        .get(off_strings..off_strings + size_strings)
        .ok_or("strings block out of bounds")?;
    let structure = blob
        .get(off_struct..off_struct + size_struct)
        .ok_or("structure block out of bounds")?;
    // The reservation map: (address, size) pairs up to a (0, 0) entry.
    let mut rsv_end = off_rsvmap;
    loop {
        let entry = blob
            .get(rsv_end..rsv_end + 16)
            .ok_or("memory reservation block out of bounds")?;
        rsv_end += 16;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
    }
    let cstr = |b: &[u8], at: usize| -> Result<String, String> {
        let rest = b.get(at..).ok_or("string out of bounds")?;
        let len = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or("unterminated string")?;
        Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
    };
    let align4 = |n: usize| n.next_multiple_of(4);

    let mut out_struct = Vec::new();
    let mut path: Vec<String> = Vec::new();
    // Depth of the dropped subtree we are inside (0: not dropping).
    let mut dropping = 0usize;
    let mut at = 0;
    loop {
        let token = be32(structure, at)?;
        let start = at;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(structure, at)?;
                at = align4(at + name.len() + 1);
                if dropping > 0 {
                    dropping += 1;
                    continue;
                }
                let full = if path.is_empty() {
                    "/".to_string()
                } else {
                    format!("{}/{name}", path.last().unwrap().trim_end_matches('/'))
                };
                if !keep_node(&full) {
                    dropping = 1;
                    continue;
                }
                path.push(full);
                out_struct.extend_from_slice(&structure[start..at]);
            }
            FDT_END_NODE => {
                if dropping > 0 {
                    dropping -= 1;
                    continue;
                }
                path.pop().ok_or("unbalanced END_NODE")?;
                out_struct.extend_from_slice(&structure[start..at]);
            }
            FDT_PROP => {
                let len = be32(structure, at)? as usize;
                let name_off = be32(structure, at + 4)? as usize;
                at = align4(at + 8 + len);
                if at > structure.len() {
                    return Err("property out of bounds".into());
                }
                if dropping > 0 {
                    continue;
                }
                let node = path.last().ok_or("property outside any node")?;
                if keep_prop(node, &cstr(strings, name_off)?) {
                    out_struct.extend_from_slice(&structure[start..at]);
                }
            }
            FDT_NOP => {}
            FDT_END => {
                if !path.is_empty() || dropping > 0 {
                    return Err("END inside a node".into());
                }
                out_struct.extend_from_slice(&structure[start..at]);
                break;
            }
            t => return Err(format!("unknown token {t:#x} at {start:#x}")),
        }
    }

    let rsvmap = &blob[off_rsvmap..rsv_end];
    let new_rsv = align4(FDT_HEADER).next_multiple_of(8);
    let new_struct = new_rsv + rsvmap.len();
    let new_strings = new_struct + out_struct.len();
    let total = new_strings + strings.len();
    let mut out = vec![0u8; new_rsv];
    let header = [
        FDT_MAGIC,
        total as u32,
        new_struct as u32,
        new_strings as u32,
        new_rsv as u32,
        17,
        16,
        boot_cpu,
        strings.len() as u32,
        out_struct.len() as u32,
    ];
    for (i, v) in header.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(rsvmap);
    out.extend_from_slice(&out_struct);
    out.extend_from_slice(strings);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny FDT writer for the tests.
    struct Fdt {
        structure: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Fdt {
        fn new() -> Self {
            Fdt {
                structure: Vec::new(),
                strings: Vec::new(),
            }
        }
        fn u32(&mut self, v: u32) {
            self.structure.extend_from_slice(&v.to_be_bytes());
        }
        fn pad(&mut self) {
            let n = self.structure.len().next_multiple_of(4);
            self.structure.resize(n, 0);
        }
        fn begin(&mut self, name: &str) {
            self.u32(FDT_BEGIN_NODE);
            self.structure.extend_from_slice(name.as_bytes());
            self.structure.push(0);
            self.pad();
        }
        fn end(&mut self) {
            self.u32(FDT_END_NODE);
        }
        fn prop(&mut self, name: &str, value: &[u8]) {
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.u32(FDT_PROP);
            self.u32(value.len() as u32);
            self.u32(off);
            self.structure.extend_from_slice(value);
            self.pad();
        }
        fn finish(mut self) -> Vec<u8> {
            self.u32(FDT_END);
            let rsv = 40;
            let st = rsv + 16;
            let sg = st + self.structure.len();
            let total = sg + self.strings.len();
            let mut out = Vec::new();
            for v in [
                FDT_MAGIC,
                total as u32,
                st as u32,
                sg as u32,
                rsv as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structure.len() as u32,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&[0; 16]);
            out.extend_from_slice(&self.structure);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// The node paths and `path:prop` names of `blob`, in order.
    fn walk(blob: &[u8]) -> Vec<String> {
        let seen = std::cell::RefCell::new(Vec::new());
        let props = std::cell::RefCell::new(Vec::new());
        filter_fdt(
            blob,
            &|p| {
                seen.borrow_mut().push(p.to_string());
                true
            },
            &|p, n| {
                props.borrow_mut().push(format!("{p}:{n}"));
                true
            },
        )
        .unwrap();
        let mut seen = seen.into_inner();
        seen.extend(props.into_inner());
        seen
    }

    fn qemu_like() -> Vec<u8> {
        let mut f = Fdt::new();
        f.begin("");
        f.prop("compatible", b"linux,dummy-virt\0");
        f.begin("pcie@10000000");
        f.prop("reg", &[0; 16]);
        f.begin("child");
        f.end();
        f.end();
        f.begin("intc@8000000");
        f.prop("compatible", b"arm,gic-v3\0");
        f.begin("its@8080000");
        f.prop("msi-controller", b"");
        f.end();
        f.end();
        f.begin("pl011@9000000");
        f.end();
        f.begin("virtio_mmio@a000000");
        f.end();
        f.begin("chosen");
        f.prop("rng-seed", &[1; 32]);
        f.prop("stdout-path", b"/pl011@9000000\0");
        f.prop("kaslr-seed", &[2; 8]);
        f.end();
        f.end();
        f.finish()
    }

    #[test]
    fn filters_nodes_and_properties() {
        let blob = qemu_like();
        let out = filter_fdt(&blob, &keep_node, &|p, n| {
            !(p == "/chosen" && (n == "kaslr-seed" || n == "rng-seed"))
        })
        .unwrap();
        assert_eq!(
            walk(&out),
            [
                "/",
                "/intc@8000000",
                "/pl011@9000000",
                "/chosen",
                "/:compatible",
                "/intc@8000000:compatible",
                "/chosen:stdout-path",
            ]
        );
        // Header sizes are consistent: the output filters to itself.
        assert_eq!(
            filter_fdt(&out, &|_| true, &|_, _| true).unwrap(),
            out,
            "a kept-everything copy is identical"
        );
        assert_eq!(
            u32::from_be_bytes(out[4..8].try_into().unwrap()) as usize,
            out.len()
        );
        assert!(filter_fdt(
            b"nope nope nope nope nope nope nope nope ",
            &keep_node,
            &|_, _| true
        )
        .unwrap_err()
        .contains("magic"));
    }

    #[test]
    fn keeps_what_a_vm_has() {
        for p in [
            "/",
            "/memory@40000000",
            "/cpus",
            "/cpus/cpu@0",
            "/psci",
            "/intc@8000000",
            "/timer",
            "/apb-pclk",
            "/pl011@9000000",
            "/chosen",
        ] {
            assert!(keep_node(p), "{p}");
        }
        for p in [
            "/pcie@10000000",
            "/virtio_mmio@a000000",
            "/intc@8000000/its@8080000",
            "/flash@0",
            "/fw-cfg@9020000",
            "/pl031@9010000",
            "/gpio-keys",
            "/platform-bus@c000000",
            "/timers",
        ] {
            assert!(!keep_node(p), "{p}");
        }
    }

    #[test]
    fn init_script_and_initramfs() {
        let init = bench_init_script(INIT_SCRIPT).unwrap();
        let ready = init.find(READY_LINE).unwrap();
        assert_eq!(
            &init[ready + READY_LINE.len()..][..CLOCK_LINE.len()],
            CLOCK_LINE
        );
        assert!(bench_init_script("#!/bin/sh\necho hi\n").is_err());
        let base = [0x1f, 0x8b, 1, 2, 3];
        let out = bench_initramfs(&base, b"\x7fELF...", INIT_SCRIPT).unwrap();
        assert_eq!(&out[..5], &base);
        assert_eq!(&out[5..8], &[0, 0, 0]);
        let entries = crate::cpio::read_all(&out[8..]).unwrap();
        let init_entry = entries.iter().find(|e| e.name == "init").unwrap();
        assert_eq!(init_entry.data, init.as_bytes());
        assert!(entries.iter().any(|e| e.name == "bin/hvclock"));
        assert!(bench_initramfs(&base, b"#!", INIT_SCRIPT).is_err());
    }

    #[test]
    fn parses_clock_and_cntvoff() {
        let lines: Vec<String> = [
            "#HV vm-start id=1 name=bench vcpus=1 ram=268435456 pa=0x70000000 pcpu=0 cntvoff=0x63ac3",
            "bench| HV-LINUX-READY bench",
            "bench| HV-LINUX-CLOCK 67037416 62500000",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(find_clock(&lines, "bench| "), Ok((67037416, 62500000)));
        assert_eq!(find_cntvoff(&lines, "bench"), Ok(0x63ac3));
        assert!(find_clock(&lines, "").is_err());
        let old = ["#HV vm-start id=1 name=bench vcpus=1".to_string()];
        assert!(find_cntvoff(&old, "bench")
            .unwrap_err()
            .contains("cntvoff="));
        assert!(find_clock(&["HV-LINUX-CLOCK x 1".into()], "").is_err());
        let native = ["HV-LINUX-CLOCK 55674540 62500000".to_string()];
        assert_eq!(find_clock(&native, ""), Ok((55674540, 62500000)));
    }

    #[test]
    fn figures() {
        let f = BootFigures {
            native_ticks: 1000,
            guest_ticks: 1100,
            cntvoff_ticks: 50,
            frequency: 62_500_000,
        };
        assert!((f.ratio() - 1.15).abs() < 1e-12);
        let m = f.metrics();
        assert_eq!(m[0], ("linux_boot_ratio".into(), "1.1500".into()));
        assert_eq!(m[1], ("linux_boot_native_insns".into(), "16000".into()));
        assert_eq!(m[2], ("linux_boot_hv_insns".into(), "18400".into()));
        assert_eq!(m[3], ("linux_boot_hv_startup_insns".into(), "800".into()));
    }
}
