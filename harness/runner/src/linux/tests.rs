use super::*;
use bootbundle::Bundle;

const MIB: u64 = 1 << 20;

/// A kernel with a valid header: text_offset 0, `image_size`, 4 KiB pages.
fn kernel(image_size: u64) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[16..24].copy_from_slice(&image_size.to_le_bytes());
    b[24..32].copy_from_slice(&0xau64.to_le_bytes());
    b[0x38..0x3c].copy_from_slice(&layout::IMAGE_MAGIC);
    b
}

fn vm(name: &str, ram: u64) -> LinuxVm {
    LinuxVm {
        name: name.into(),
        kernel: kernel(32 * MIB),
        initrd: vec![7; 1000],
        ram,
        vcpus: 1,
        cmdline: DEFAULT_CMDLINE.into(),
    }
}

fn qemu_suites() -> Vec<LinuxSuite> {
    LINUX_SUITES
        .iter()
        .filter(|n| **n != BAD_VM_ARGS_SUITE)
        .map(|n| linux_suite_by_name(n).unwrap_or_else(|| panic!("no suite {n}")))
        .collect()
}

#[test]
fn every_linux_suite_is_well_formed() {
    let suites = qemu_suites();
    assert_eq!(suites.len(), LINUX_SUITES.len() - 1);
    assert!(linux_suite_by_name(BAD_VM_ARGS_SUITE).is_none());
    assert!(linux_suite_by_name("basics").is_none());
    for s in &suites {
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert!(s.gic == 2 || s.gic == 3);
        LinuxMonitor::new(s).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        crate::qemu::InputScript::new(&s.input).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        // Only the input suite types anything: the others keep QEMU's stdin `/dev/null`.
        assert_eq!(s.input.is_empty(), s.name != "linux_console_input");
        let ids: Vec<String> = s.expectations.iter().map(|e| e.id()).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{}: duplicate cases", s.name);
        for e in &s.expectations {
            assert!(
                s.vms.iter().any(|v| v.name == e.vm()),
                "{}: {}",
                s.name,
                e.id()
            );
        }
        for v in &s.vms {
            assert!(v
                .cmdline
                .starts_with(&format!("console=ttyAMA0 hvname={}", v.name)));
            // Only the suite about it has more vCPUs than physical CPUs.
            assert!(v.vcpus <= s.smp || s.name == "linux_4vcpus_2cpus");
        }
        // Its bundle builds and says what the hypervisor needs.
        let images: Vec<LinuxVm> = s
            .vms
            .iter()
            .map(|v| LinuxVm {
                name: v.name.clone(),
                kernel: kernel(32 * MIB),
                initrd: vec![1; 100],
                ram: v.ram,
                vcpus: v.vcpus,
                cmdline: v.cmdline.clone(),
            })
            .collect();
        let data = build_linux_bundle(&images).unwrap();
        let b = Bundle::parse(&data).unwrap();
        for (spec, v) in b.vms().iter().zip(&s.vms) {
            assert!(spec.flags.linux());
            assert_eq!(
                (spec.ipa_base, spec.load_offset, spec.entry_offset),
                (LINUX_IPA_BASE, 0, 0)
            );
            assert_eq!((spec.ram_size, spec.vcpus), (v.ram, v.vcpus));
            assert_eq!(spec.cmdline, v.cmdline);
            assert_eq!(spec.initrd.len(), 100);
        }
    }
    // Every pending suite is a suite.
    for (name, why) in crate::PENDING_SUITES {
        assert!(crate::all_suite_names().contains(name), "{name}");
        assert!(why.starts_with("pending: "));
    }
    assert!(crate::pending_reason(BAD_VM_ARGS_SUITE).is_none());
    assert!(crate::all_suite_names().contains(&"linux_sleep_1s"));
    assert!(crate::test_suite_names().contains(&"linux_bad_vm_args"));
    assert!(crate::needs_linux_images("linux_smp2"));
    assert!(!crate::needs_linux_images("linux_bad_vm_args"));
    assert!(!crate::needs_linux_images("basics"));
}

#[test]
fn suite_details() {
    let s = linux_suite_by_name("linux_boot_gicv2").unwrap();
    assert_eq!((s.gic, s.vms.len()), (2, 1));
    assert_eq!(s.vms[0].cmdline, "console=ttyAMA0 hvname=linux");
    assert_eq!(linux_suite_by_name("linux_boot_gicv3").unwrap().gic, 3);
    let s = linux_suite_by_name("linux_smp2").unwrap();
    assert_eq!((s.smp, s.vms[0].vcpus), (2, 2));
    let s = linux_suite_by_name("linux_poweroff_one").unwrap();
    assert_eq!(
        s.vms[0].cmdline,
        "console=ttyAMA0 hvname=quitter hvtest=poweroff"
    );
    assert_eq!(
        s.vms[1].cmdline,
        "console=ttyAMA0 hvname=survivor hvtest=heartbeat"
    );
    assert_eq!(
        s.expectations[1].describe(),
        "`#HV vm-stopped name=quitter reason=system-off` after `quitter::ready`"
    );
    let s = linux_suite_by_name("linux_flood_isolation").unwrap();
    assert_eq!(
        s.expectations[2].describe(),
        "3 lines matching `^HV-ALIVE ` after `flood::flooding`"
    );
}

#[test]
fn bad_after_references_are_refused() {
    let mut s = linux_suite_by_name("linux_two_vms").unwrap();
    s.expectations[1].after = Some("alpha::nope".into());
    assert_eq!(
        LinuxMonitor::new(&s).unwrap_err(),
        "case `beta::ready`: `after` names no other case `alpha::nope`"
    );
    s.expectations[1].after = Some("beta::ready".into());
    assert!(LinuxMonitor::new(&s).is_err());
    s.expectations[1].after = None;
    s.expectations[0].expect = Expect::Line {
        vm: "alpha".into(),
        regex: "(".into(),
        count: 1,
    };
    assert!(LinuxMonitor::new(&s)
        .unwrap_err()
        .starts_with("case `alpha::ready`: bad regex `(`"));
}

#[test]
fn sizes_and_machine_ram() {
    assert_eq!(size_text(256 * MIB), "256 MiB");
    assert_eq!(size_text(8 << 30), "8 GiB");
    assert_eq!(size_text(3 * MIB / 2), "1.5 MiB");
    assert_eq!(size_text(4096), "4 KiB");
    assert_eq!(size_text(100), "100 bytes");
    // Two 256 MiB VMs with 70 MiB of images: 838 MiB → 1 GiB (the minimum).
    assert_eq!(machine_ram(512 * MIB, 70 * MIB), Ok(1 << 30));
    // 1 GiB + 2 GiB + 70 MiB + 256 MiB = 3398 MiB → 3.5 GiB.
    assert_eq!(machine_ram(3 << 30, 70 * MIB), Ok(3584 * MIB));
    // Exactly 8 GiB is allowed, a byte more is not.
    assert_eq!(machine_ram((8 << 30) - 256 * MIB, 0), Ok(8 << 30));
    assert_eq!(
        machine_ram((8 << 30) - 256 * MIB, 1).unwrap_err(),
        "the VMs need 7.8 GiB of RAM and 1 bytes of images, plus 256 MiB for the hypervisor: \
         more than the 8 GiB QEMU machine xtask runs"
    );
    assert_eq!(
        machine_ram(8 << 30, 0).unwrap_err(),
        "the VMs need 8 GiB of RAM, plus 256 MiB for the hypervisor: more than the 8 GiB QEMU \
         machine xtask runs"
    );
    assert!(machine_ram(u64::MAX, u64::MAX).is_err());
    let vms = [vm("a", 256 * MIB), vm("b", 256 * MIB)];
    assert_eq!(machine_ram_for(&vms), Ok(1 << 30));
}

#[test]
fn bundle_refuses_what_the_hypervisor_would() {
    let mut v = vm("a", 16 * MIB);
    assert_eq!(
        build_linux_bundle(&[v.clone()]).unwrap_err(),
        "VM `a`: image needs 32 MiB of RAM but the VM has 16 MiB"
    );
    v.kernel[0x38] = 0;
    assert_eq!(
        plan_vm(&v).unwrap_err(),
        "VM `a`: not an arm64 Linux Image: bad magic (no \"ARM\\x64\" at offset 0x38)"
    );
    let v = vm("a", 256 * MIB);
    let l = plan_vm(&v).unwrap();
    assert_eq!(l.initrd, Some((32 * MIB, 32 * MIB + 1000)));
    let mut dup = [v.clone(), v];
    assert!(build_linux_bundle(&dup)
        .unwrap_err()
        .starts_with("boot bundle refused"));
    dup[1].name = "b".into();
    assert!(build_linux_bundle(&dup).is_ok());
}

// Judging transcripts.

fn monitor(name: &str) -> LinuxMonitor {
    LinuxMonitor::new(&linux_suite_by_name(name).unwrap()).unwrap()
}

fn feed(m: &mut LinuxMonitor, transcript: &str) {
    for (i, line) in transcript.lines().enumerate() {
        m.feed(line.trim_start(), Duration::from_secs(i as u64 + 1));
    }
}

fn verdicts(m: &LinuxMonitor) -> Vec<(String, Option<String>)> {
    m.results()
        .into_iter()
        .map(|c| (c.id(), c.failure))
        .collect()
}

#[test]
fn boot_reaches_the_marker() {
    let mut m = monitor("linux_boot_gicv3");
    feed(
        &mut m,
        "#HV boot cpus=2 gic=v3 ram=1073741824
         #HV vm-start id=1 name=linux vcpus=1 ram=268435456 pa=0x50000000 pcpu=0
         linux| [    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]
         linux| HV-LINUX-BOOT linux
         other| HV-LINUX-READY linux
         linux| HV-LINUX-READY linuxx",
    );
    assert!(!m.is_finished());
    feed(&mut m, "linux| HV-LINUX-READY linux");
    assert!(m.is_finished());
    let r = m.results();
    assert_eq!(verdicts(&m), vec![("linux::ready".to_string(), None)]);
    assert_eq!(r[0].output, vec!["linux| HV-LINUX-READY linux"]);
    assert_eq!(r[0].time, Duration::from_secs(1));
}

#[test]
fn a_forged_marker_outside_the_vm_prefix_does_not_count() {
    let mut m = monitor("linux_boot_gicv3");
    feed(
        &mut m,
        "HV-LINUX-READY linux\n[INFO] linux| HV-LINUX-READY linux\n#HV x name=linux",
    );
    assert!(!m.is_finished());
    m.timeout(Duration::from_secs(120));
    let v = verdicts(&m);
    assert_eq!(
        v[0].1.as_deref(),
        Some("expected a line matching `^HV-LINUX-READY linux$`: not seen within 120s")
    );
}

#[test]
fn smp_counts_cpus() {
    let mut m = monitor("linux_smp2");
    feed(&mut m, "smp| HV-LINUX-READY smp\nsmp| HV-LINUX-CPUS 1");
    m.qemu_exited("exit status 0", true);
    assert_eq!(
        verdicts(&m),
        vec![
            ("smp::ready".to_string(), None),
            (
                "smp::cpus".to_string(),
                Some("expected a line matching `^HV-LINUX-CPUS 2$`: QEMU exited (exit status 0) before this was seen".into())
            )
        ]
    );
}

#[test]
fn poweroff_ends_one_vm_and_the_other_goes_on() {
    let mut m = monitor("linux_poweroff_one");
    feed(
        &mut m,
        "quitter| HV-LINUX-READY quitter
         survivor| HV-LINUX-READY survivor
         survivor| HV-ALIVE 0 3.10
         quitter| HV-POWEROFF
         #HV vm-stopped id=1 name=quitter reason=system-off
         survivor| HV-ALIVE 1 4.10",
    );
    assert!(
        !m.is_finished(),
        "one heartbeat after the stop is not enough"
    );
    feed(&mut m, "survivor| HV-ALIVE 2 5.10");
    assert!(m.is_finished());
    assert!(
        verdicts(&m).iter().all(|(_, f)| f.is_none()),
        "{:?}",
        verdicts(&m)
    );
}

#[test]
fn poweroff_with_the_wrong_reason_or_killing_both_fails() {
    let mut m = monitor("linux_poweroff_one");
    feed(
        &mut m,
        "quitter| HV-LINUX-READY quitter
         survivor| HV-LINUX-READY survivor
         #HV vm-fault id=1 name=quitter vcpu=0 ipa=0x9000000 access=write esr=0x93c08046 elr=0xffff800008000000
         #HV vm-stopped id=1 name=quitter reason=fault
         #HV vm-stopped id=2 name=survivor reason=system-off",
    );
    assert!(m.is_finished());
    let v = verdicts(&m);
    assert_eq!(
        v,
        vec![
            ("quitter::ready".to_string(), None),
            (
                "quitter::system_off".to_string(),
                Some("expected `#HV vm-stopped name=quitter reason=system-off` after `quitter::ready`: VM stopped (reason=fault) before this was seen".into())
            ),
            ("survivor::ready".to_string(), None),
            (
                "survivor::alive_after".to_string(),
                Some("expected 2 lines matching `^HV-ALIVE ` after `quitter::system_off`: VM stopped (reason=system-off) before this was seen".into())
            ),
            (
                "quitter::(fault)".to_string(),
                Some("the hypervisor stopped the VM: #HV vm-fault id=1 name=quitter vcpu=0 ipa=0x9000000 access=write esr=0x93c08046 elr=0xffff800008000000".into())
            ),
        ]
    );
    let fault = m.results().pop().unwrap();
    assert_eq!(fault.output.len(), 2, "the fault and the stop records");
    // A failed case shows the VM's last lines.
    let r = m.results();
    assert!(r[3]
        .output
        .iter()
        .any(|l| l == "#HV vm-stopped id=2 name=survivor reason=system-off"));
}

#[test]
fn reboot_needs_boot_reset_boot_in_order() {
    let mut m = monitor("linux_reboot_one");
    feed(
        &mut m,
        "rebooter| HV-LINUX-BOOT rebooter
         rebooter| HV-LINUX-BOOT rebooter
         survivor| HV-LINUX-READY survivor
         survivor| HV-ALIVE 0 1.0",
    );
    // Two boot lines without a reset in between: the second does not count.
    assert!(!m.is_finished());
    feed(
        &mut m,
        "rebooter| HV-REBOOT
         #HV vm-reset id=1 name=rebooter
         survivor| HV-ALIVE 1 2.0
         rebooter| [    0.000000] Booting Linux
         rebooter| HV-LINUX-BOOT rebooter",
    );
    assert!(!m.is_finished());
    feed(&mut m, "survivor| HV-ALIVE 2 3.0");
    assert!(m.is_finished());
    assert!(
        verdicts(&m).iter().all(|(_, f)| f.is_none()),
        "{:?}",
        verdicts(&m)
    );
}

#[test]
fn sleep_is_judged_on_guest_time() {
    let run = |start: &str, end: &str| {
        let mut m = monitor("linux_sleep_1s");
        feed(
            &mut m,
            &format!(
                "sleeper| HV-LINUX-READY sleeper\nsleeper| HV-SLEEP-START {start}\nsleeper| HV-SLEEP-END {end}"
            ),
        );
        assert!(m.is_finished());
        verdicts(&m)[1].1.clone()
    };
    assert_eq!(run("5.00", "6.01"), None);
    assert_eq!(run("5.00", "5.90"), None);
    assert_eq!(run("5.00", "6.50"), None);
    assert_eq!(
        run("5.00", "6.51"),
        Some("expected HV-SLEEP-START/END 0.9 to 1.5 s apart: `sleep 1` took 1.51 s of guest time (5 to 6.51), expected 0.9 to 1.5 s".into())
    );
    assert!(run("5.00", "5.10").unwrap().contains("took 0.10 s"));
    let mut m = monitor("linux_sleep_1s");
    feed(&mut m, "sleeper| HV-SLEEP-END 3.0");
    assert_eq!(
        verdicts(&m)[1].1.as_deref(),
        Some("expected HV-SLEEP-START/END 0.9 to 1.5 s apart: HV-SLEEP-END before HV-SLEEP-START")
    );
}

#[test]
fn flood_isolation_needs_heartbeats_during_the_flood() {
    let mut m = monitor("linux_flood_isolation");
    feed(
        &mut m,
        "quiet| HV-LINUX-READY quiet
         quiet| HV-ALIVE 0 1.0
         quiet| HV-ALIVE 1 2.0
         quiet| HV-ALIVE 2 3.0
         flood| HV-FLOOD-START",
    );
    for i in 0..100 {
        m.feed(&format!("flood| HV-FLOOD {i} xxxx"), Duration::from_secs(4));
    }
    assert!(!m.is_finished(), "heartbeats before the flood do not count");
    feed(
        &mut m,
        "quiet| HV-ALIVE 3 4.0\nquiet| HV-ALIVE 4 5.0\nquiet| HV-ALIVE 5 6.0",
    );
    assert!(m.is_finished());
    assert!(
        verdicts(&m).iter().all(|(_, f)| f.is_none()),
        "{:?}",
        verdicts(&m)
    );
    let r = m.results();
    assert_eq!(
        r[0].output.len(),
        20,
        "matched lines kept for the report are capped"
    );
}

#[test]
fn a_panic_fails_everything_open_and_ends_the_suite() {
    let mut m = monitor("linux_two_vms");
    feed(
        &mut m,
        "alpha| HV-LINUX-READY alpha
         #HV panic at src/vgic.rs:10: boom
         beta| HV-LINUX-READY beta",
    );
    assert!(m.is_finished());
    assert_eq!(
        verdicts(&m),
        vec![
            ("alpha::ready".to_string(), None),
            (
                "beta::ready".to_string(),
                Some("expected a line matching `^HV-LINUX-READY beta$`: hypervisor panic: at src/vgic.rs:10: boom".into())
            ),
            (
                "hypervisor".to_string(),
                Some("hypervisor panic: at src/vgic.rs:10: boom".into())
            ),
        ]
    );
    m.qemu_exited("signal 9", false);
    assert_eq!(m.results().len(), 4, "plus the qemu case");
}

/// The console of `linux_console_input` when all goes well (`beta` is typed into first).
const CONSOLE_INPUT_OK: &str = "alpha| HV-LINUX-READY alpha
    beta| HV-LINUX-READY beta
    alpha| shell on the console (poweroff -f ends this VM, reboot -f restarts it)
    [ INFO] console input goes to VM beta
    beta| ~ # echo HV-INPUT-$((6*7))
    beta| HV-INPUT-42
    [ INFO] console input goes to VM alpha
    alpha| ~ # echo HV-INPUT-A$((1+1))
    alpha| HV-INPUT-A2
    [ INFO] console input: Ctrl-] 1-9 selects VM n (creation order), Ctrl-] ? shows this, Ctrl-] s prints the VMs' CPU accounting, Ctrl-] Ctrl-] sends Ctrl-]
    [ INFO] * 1: alpha
    [ INFO]   2: beta
    #HV sched-stats id=1 name=alpha cpu=50 share_bp=5000 consumed_us=812000 throttled_us=0 throttled_periods=0 periods=2400
    #HV sched-stats id=2 name=beta cpu=50 share_bp=5000 consumed_us=790000 throttled_us=0 throttled_periods=0 periods=2400";

#[test]
fn console_input_suite_types_in_steps() {
    use crate::qemu::InputScript;
    let s = linux_suite_by_name("linux_console_input").unwrap();
    assert_eq!(
        s.vms.iter().map(|v| v.cmdline.as_str()).collect::<Vec<_>>(),
        [
            "console=ttyAMA0 hvname=alpha",
            "console=ttyAMA0 hvname=beta"
        ]
    );
    // Replaying the console through the script gives the input, step by step.
    let mut script = InputScript::new(&s.input).unwrap();
    let mut typed: Vec<(u64, Vec<u8>)> = Vec::new();
    for (i, line) in CONSOLE_INPUT_OK.lines().enumerate() {
        let t = Duration::from_secs(i as u64 + 1);
        script.feed(line.trim_start(), t);
        while let Some(b) = script.take_due(t + Duration::from_millis(500)) {
            typed.push((i as u64 + 1, b));
        }
    }
    assert!(script.is_done(), "{:?}", script.pending());
    assert_eq!(
        typed,
        vec![
            (2, b"\x1d2".to_vec()),
            // Half a second after the switch: at the next line's wake-up.
            (3, b"echo HV-INPUT-$((6*7))\n".to_vec()),
            (6, b"\x1d1".to_vec()),
            (7, b"echo HV-INPUT-A$((1+1))\n".to_vec()),
            (9, b"\x1d?".to_vec()),
            (12, b"\x1ds".to_vec()),
        ]
    );
    // The echo waits half a second after the switch.
    let mut script = InputScript::new(&s.input).unwrap();
    script.feed("beta| HV-LINUX-READY beta", Duration::from_secs(1));
    script.feed("alpha| HV-LINUX-READY alpha", Duration::from_secs(2));
    assert_eq!(
        script.take_due(Duration::from_secs(2)),
        Some(b"\x1d2".to_vec())
    );
    assert_eq!(script.next_due(), Some(Duration::from_millis(2500)));
}

#[test]
fn console_input_is_judged_per_vm() {
    let mut m = monitor("linux_console_input");
    feed(&mut m, CONSOLE_INPUT_OK);
    assert!(m.is_finished());
    assert_eq!(
        verdicts(&m),
        [
            "alpha::ready",
            "beta::ready",
            "beta::selected",
            "beta::input",
            "alpha::selected",
            "alpha::input",
            "alpha::not_given_beta_input",
            "alpha::listed",
            "beta::listed",
            "alpha::sched_stats",
            "beta::sched_stats",
        ]
        .iter()
        .map(|c| (c.to_string(), None))
        .collect::<Vec<_>>()
    );
    let r = m.results();
    assert_eq!(r[3].output, ["beta| HV-INPUT-42"], "not the echoed command");
    assert_eq!(r[7].output, ["[ INFO] * 1: alpha"]);

    // The echoed command line alone does not pass, nor output before the switch.
    let mut m = monitor("linux_console_input");
    feed(
        &mut m,
        "beta| HV-INPUT-42
         beta| ~ # echo HV-INPUT-42
         [ INFO] console input goes to VM beta
         beta| ~ # echo HV-INPUT-$((6*7))
         beta| echo HV-INPUT-42",
    );
    m.timeout(Duration::from_secs(120));
    let v = verdicts(&m);
    assert_eq!(v[2].1, None);
    assert_eq!(
        v[3].1.as_deref(),
        Some(
            "expected a line matching `^HV-INPUT-42$` after `beta::selected`: not seen within 120s"
        )
    );
    assert_eq!(
        v[6].1.as_deref(),
        Some("expected no line matching `^HV-INPUT-42$` until `alpha::input`: `alpha::input` was not met: not seen within 120s")
    );
    let listed = m.results().into_iter().nth(7).unwrap();
    assert_eq!(
        listed.failure.as_deref(),
        Some("expected a hypervisor log line matching `^\\[ INFO\\] \\* 1: alpha$` after `alpha::input`: not seen within 120s")
    );
    assert_eq!(
        listed.output[..2],
        [
            "(last 1 hypervisor log lines)",
            "[ INFO] console input goes to VM beta"
        ]
    );
}

#[test]
fn console_input_given_to_both_vms_fails() {
    let mut m = monitor("linux_console_input");
    let both = CONSOLE_INPUT_OK.replace(
        "beta| HV-INPUT-42\n",
        "beta| HV-INPUT-42\n alpha| HV-INPUT-42\n",
    );
    feed(&mut m, &both);
    let v = verdicts(&m);
    let bad: Vec<_> = v.iter().filter(|(_, f)| f.is_some()).collect();
    assert_eq!(
        bad,
        [&(
            "alpha::not_given_beta_input".to_string(),
            Some("expected no line matching `^HV-INPUT-42$` until `alpha::input`: seen: alpha| HV-INPUT-42".into())
        )]
    );
    // A guest cannot fake the hypervisor's list; a log line with the wrong mark does not count.
    let mut m = monitor("linux_console_input");
    let fake = CONSOLE_INPUT_OK
        .replace("[ INFO] * 1: alpha", "alpha| [ INFO] * 1: alpha")
        .replace("[ INFO]   2: beta", "[ INFO] * 2: beta");
    feed(&mut m, &fake);
    m.qemu_exited("exit status 0", true);
    let v = verdicts(&m);
    assert!(v[7]
        .1
        .as_deref()
        .unwrap()
        .ends_with("QEMU exited (exit status 0) before this was seen"));
    assert!(v[8].1.is_some());
    // The accounting (Ctrl-] s) is only looked for after the listing: not met either.
    assert!(v[9].1.is_some() && v[10].1.is_some());
    assert_eq!(v.iter().filter(|(_, f)| f.is_some()).count(), 4, "{v:?}");
}

#[test]
fn absent_needs_a_real_until() {
    let mut s = linux_suite_by_name("linux_console_input").unwrap();
    let e = s
        .expectations
        .iter_mut()
        .find(|e| e.case == "not_given_beta_input")
        .unwrap();
    e.expect = Expect::Absent {
        vm: "alpha".into(),
        regex: "x".into(),
        until: "alpha::nope".into(),
    };
    assert_eq!(
        LinuxMonitor::new(&s).unwrap_err(),
        "case `alpha::not_given_beta_input`: `until` names no other case `alpha::nope`"
    );
    // `until` failing (alpha stopped) decides it too.
    let mut m = monitor("linux_console_input");
    feed(
        &mut m,
        "alpha| HV-LINUX-READY alpha\n#HV vm-stopped id=1 name=alpha reason=system-off",
    );
    assert_eq!(
        verdicts(&m)[6].1.as_deref(),
        Some("expected no line matching `^HV-INPUT-42$` until `alpha::input`: `alpha::input` was not met: VM stopped (reason=system-off) before this was seen")
    );
}

#[test]
fn bad_vm_args_cases_and_judging() {
    let files = BadArgsFiles {
        dir: PathBuf::from("/tmp/x"),
    };
    let cases = bad_vm_args_cases(&files);
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len());
    assert!(cases.iter().all(|c| c.args[0] == "run"));
    let corrupt = cases.iter().find(|c| c.name == "corrupt_kernel").unwrap();
    assert_eq!(
        corrupt.args,
        [
            "run",
            "--vm",
            "kernel=/tmp/x/corrupt-Image,name=bad,format=linux"
        ]
    );
    // Without `format=`, the corrupt file's format is not guessed; the ELF files are ELF.
    assert!(cases
        .iter()
        .any(|c| c.name == "undetectable_format" && c.args[2] == "kernel=/tmp/x/corrupt-Image"));
    // The written files are what the cases say.
    let contents = BadArgsFiles::contents();
    let get = |n: &str| &contents.iter().find(|(f, _)| *f == n).unwrap().1;
    assert_eq!(
        layout::parse_image_header(get("corrupt-Image")),
        Err(layout::LayoutError::BadMagic)
    );
    assert_eq!(get("truncated-Image").len(), 40);
    assert_eq!(
        layout::parse_image_header(get("big-endian-Image")),
        Err(layout::LayoutError::BigEndian)
    );
    assert_eq!(
        layout::parse_image_header(get("64k-pages-Image")),
        Err(layout::LayoutError::UnsupportedPageSize { kib: 64 })
    );
    assert_eq!(
        layout::parse_image_header(get("64MiB-Image"))
            .unwrap()
            .image_size,
        64 * MIB
    );
    assert!(layout::plan(2 * MIB, get("small-Image"), true, 0, 0, 0).is_ok());
    assert_eq!(crate::formats::detect(get("corrupt-Image")), None);
    assert_eq!(crate::formats::detect(get("truncated-Image")), None);
    for elf in ["outside-ram.elf", "overlapping.elf", "truncated.elf"] {
        assert_eq!(
            crate::formats::detect(get(elf)),
            Some(crate::formats::ImageFormat::Elf)
        );
    }

    assert_eq!(
        judge_bad_args(Some(2), "xtask: error: boom\n", "boom"),
        None
    );
    assert_eq!(
        judge_bad_args(Some(1), "xtask: error: boom\n", "boom").unwrap(),
        "expected exit status 2, got status 1; stderr: xtask: error: boom"
    );
    assert_eq!(
        judge_bad_args(None, "", "boom").unwrap(),
        "expected exit status 2, got a signal; stderr: "
    );
    assert!(judge_bad_args(Some(2), "xtask: error: bang", "boom")
        .unwrap()
        .starts_with("the error does not say `boom`"));
    assert!(
        judge_bad_args(Some(2), "xtask: building the hypervisor\nboom", "boom")
            .unwrap()
            .starts_with("built or booted before refusing")
    );
}
