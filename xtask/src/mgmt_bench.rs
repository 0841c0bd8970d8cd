//! The management benchmarks of `cargo xtask bench` (docs/benchmarks.md): the EL2
//! instructions of creating a VM (up to its first instruction), suspending and resuming it,
//! and the speed of the RAM copy, from the hypervisor's `#HV vm-create`, `vm-first-entry`,
//! `vm-suspend` and `vm-resume` records.
//!
//! QEMU runs with `-icount shift=0,sleep=off` and one CPU; the management VM gets the PMU
//! (bundle flag `MANAGEMENT_PMU`) and programs event counter 0 to count instructions retired
//! at EL2, which the hypervisor reads around each call. Disk I/O and work proportional to the
//! VM's RAM (cache cleaning, zeroing) are counted apart (`*_excluded_insns`).

use std::path::Path;
use std::time::Duration;

use bootbundle::{BundleBuilder, BundleFlags};
use harness_runner::disk::{create, guest_program_image};
use harness_runner::mgmt::Session;
use harness_runner::qemu::{Qemu, QemuConfig, SpawnOptions, DEFAULT_MEMORY_MIB};
use harness_runner::suites::GuestImages;
use harness_runner::Artifacts;

use crate::Failure;

/// The VM measured: a spinner that spins for far longer than the benchmark (it must be
/// running when it is suspended), 16 MiB of RAM.
const PROGRAM: &str = "spinner";
const RAM_MIB: u64 = 16;
const TIMEOUT: Duration = Duration::from_secs(300);
/// VMs created, for the median of their creation costs.
const CREATES: usize = 3;

/// `key=value` of a record's line, as a number.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Boots the management VM, creates, suspends and resumes one VM; the figures.
pub fn measure(artifacts: &Artifacts, out_dir: &Path) -> Result<Vec<(String, String)>, Failure> {
    let f = |e: String| Failure(e);
    let elf = GuestImages::guest_elf(artifacts, PROGRAM).map_err(f)?;
    let mut image = guest_program_image(PROGRAM, elf, RAM_MIB);
    image.cmdline = "spin_ms=100000000".into();
    let disk = out_dir.join("mgmt-bench.disk.img");
    create(&disk, &[image], false).map_err(f)?;
    let mut b = BundleBuilder::new();
    b.flags = BundleFlags(BundleFlags::MANAGEMENT_VM | BundleFlags::MANAGEMENT_PMU);
    let bundle = out_dir.join("mgmt-bench.bundle.bin");
    std::fs::write(&bundle, b.build().map_err(|e| Failure(e.to_string()))?)
        .map_err(|e| Failure(format!("cannot write {}: {e}", bundle.display())))?;
    let config = QemuConfig {
        smp: 1,
        gic: 3,
        icount: true,
        memory_mib: DEFAULT_MEMORY_MIB,
        kernel: artifacts.hypervisor_bin.clone(),
        initrd: bundle,
        disk: Some(disk),
    };
    let mut qemu = Qemu::spawn_with_input(&config, SpawnOptions::default())
        .map_err(|e| Failure(e.to_string()))?;
    let log = out_dir.join("mgmt-bench.log");
    let result = run(&mut qemu, &log);
    qemu.stop();
    result
}

/// `log`: where the session's transcript goes (the records, for breakdowns by hand).
fn run(qemu: &mut Qemu, log: &Path) -> Result<Vec<(String, String)>, Failure> {
    let mut s = Session::new(qemu, |_| {});
    let figures = figures(&mut s);
    let _ = std::fs::write(log, s.transcript.join("\n") + "\n");
    figures
}

fn figures(s: &mut Session) -> Result<Vec<(String, String)>, Failure> {
    let err = |e: harness_runner::mgmt::SessionError| Failure(e.to_string());
    s.wait_ready(TIMEOUT).map_err(err)?;
    let record = |s: &Session, prefix: &str| -> Result<String, Failure> {
        s.transcript
            .iter()
            .rev()
            .find(|l| l.starts_with(prefix))
            .cloned()
            .ok_or_else(|| Failure(format!("no `{prefix}` record")))
    };
    let missing =
        |what: &str| Failure(format!("no {what}: is the PMU given to the management VM?"));
    // Three VMs are created: the median of their costs (the decision that first enters a VM
    // costs more when it also opens a new scheduling period).
    let mut creates = Vec::new();
    for n in 1..=CREATES {
        let vm = format!("bench{n}");
        for cmd in [
            format!("add ./VirMO/{vm}"),
            format!("replace ./VirMO/{vm}/CreateParams ImgID=1&Running=true&CPU=20"),
            format!("exec ./VirMO/{vm}/Operations/Create"),
        ] {
            let x = s.command(&cmd, TIMEOUT).map_err(err)?;
            if x.status() != 200 {
                return Err(Failure(format!("`{cmd}`: {}", x.answer)));
            }
        }
        let created = record(s, "#HV vm-create ")?;
        let id = field(&created, "id").ok_or_else(|| missing("id"))?;
        let entry_prefix = format!("#HV vm-first-entry id={id} ");
        // The first entry may come before the answer to the create.
        let first = match record(s, &entry_prefix) {
            Ok(line) => line,
            Err(_) => s
                .wait_for(TIMEOUT, "the VM's first entry", |l| {
                    l.starts_with(&entry_prefix)
                })
                .map_err(err)?,
        };
        let insns = field(&created, "el2_insns").ok_or_else(|| missing("el2_insns"))?
            + field(&first, "el2_insns").ok_or_else(|| missing("el2_insns"))?;
        creates.push((insns, field(&created, "excluded_insns").unwrap_or(0)));
    }
    creates.sort();
    let (create, excluded) = creates[creates.len() / 2];
    let mut figures = vec![
        ("vm_create_el2_insns".to_string(), create.to_string()),
        ("vm_create_excluded_insns".to_string(), excluded.to_string()),
    ];
    for (op, name) in [("Suspend", "suspend"), ("Resume", "resume")] {
        let x = s
            .command(&format!("exec ./VirMO/bench1/Operations/{op}"), TIMEOUT)
            .map_err(err)?;
        if x.status() != 200 {
            return Err(Failure(format!("{op}: {}", x.answer)));
        }
        let line = record(s, &format!("#HV vm-{name} "))?;
        let insns = field(&line, "el2_insns").ok_or_else(|| missing("el2_insns"))?;
        figures.push((format!("vm_{name}_el2_insns"), insns.to_string()));
        figures.push((
            format!("vm_{name}_excluded_insns"),
            field(&line, "excluded_insns").unwrap_or(0).to_string(),
        ));
        figures.push((
            format!("{name}_mib_per_s"),
            field(&line, "mib_per_s").unwrap_or(0).to_string(),
        ));
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields_are_read_by_key() {
        let l =
            "#HV vm-suspend id=1 name=b bytes=16777216 ram_us=120 mib_per_s=133 el2_insns=4100 \
                 excluded_insns=99";
        assert_eq!(field(l, "el2_insns"), Some(4100));
        assert_eq!(field(l, "excluded_insns"), Some(99));
        assert_eq!(field(l, "mib_per_s"), Some(133));
        assert_eq!(field(l, "missing"), None);
    }
}
