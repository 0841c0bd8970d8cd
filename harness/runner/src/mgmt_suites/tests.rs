//! Host tests of the management suites: the step engine on scripted consoles, and the suites'
//! definitions.

use super::*;

/// A console that answers each command with the lines `respond` gives (the shell's answer
/// among them), starting with the agent's ready line.
struct FakeConsole<F: FnMut(&str) -> Vec<String>> {
    pending: VecDeque<String>,
    respond: F,
    sent: Vec<String>,
    reboots: usize,
    /// After this many commands the machine "exits".
    dies_after: Option<usize>,
}

impl<F: FnMut(&str) -> Vec<String>> FakeConsole<F> {
    fn new(respond: F) -> Self {
        FakeConsole {
            pending: VecDeque::from(["[ INFO] hello".to_string(), format!("{PREFIX}{READY}")]),
            respond,
            sent: Vec::new(),
            reboots: 0,
            dies_after: None,
        }
    }
}

impl<F: FnMut(&str) -> Vec<String>> Console for FakeConsole<F> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let text = String::from_utf8_lossy(bytes).to_string();
        self.sent.push(text.clone());
        if self.dies_after.is_some_and(|n| self.sent.len() > n) {
            return Err(SessionError::Closed);
        }
        let lines = (self.respond)(text.trim_end_matches('\r'));
        self.pending.extend(lines);
        Ok(())
    }
    fn next_line(&mut self, _timeout: Duration) -> Result<Option<String>, SessionError> {
        match self.pending.pop_front() {
            Some(l) if l == "PANIC" => Err(SessionError::Panic("boom".into())),
            other => Ok(other),
        }
    }
    fn reboot(&mut self) -> Result<(), SessionError> {
        self.reboots += 1;
        self.pending.push_back(format!("{PREFIX}{READY}"));
        Ok(())
    }
}

fn ok(text: &str) -> String {
    if text.is_empty() {
        format!("{PREFIX}STATUS 200")
    } else {
        format!("{PREFIX}STATUS 200 {text}")
    }
}

fn results(cases: &[CaseResult]) -> Vec<(String, Option<String>)> {
    cases
        .iter()
        .map(|c| (c.name.clone(), c.failure.clone()))
        .collect()
}

fn failure<'a>(cases: &'a [CaseResult], name: &str) -> Option<&'a str> {
    cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .failure
        .as_deref()
}

#[test]
fn variables_are_substituted_and_regex_braces_left_alone() {
    let mut vars = Vars::new();
    vars.insert("img".into(), "3".into());
    vars.insert("pa".into(), "0x4.0".into());
    assert_eq!(
        substitute("ImgID={img}&RAM=16M", &vars, str::to_string).unwrap(),
        "ImgID=3&RAM=16M"
    );
    assert_eq!(
        substitute(r"^\d{2}x{pa}{", &vars, regex::escape).unwrap(),
        r"^\d{2}x0x4\.0{"
    );
    assert_eq!(
        substitute("{Img}{ img}{}", &vars, str::to_string).unwrap(),
        "{Img}{ img}{}"
    );
    assert!(substitute("ImgID={nope}", &vars, str::to_string)
        .unwrap_err()
        .contains("{nope}"));
    assert_eq!(num(&vars, "img"), Ok(3));
    vars.insert("h".into(), "0x1f".into());
    assert_eq!(num(&vars, "h"), Ok(31));
    assert!(num(&vars, "pa").is_err());
    assert!(num(&vars, "missing").is_err());
}

#[test]
fn stage2_tables_are_a_root_and_one_table_per_gib_touched() {
    // The suites' VMs: 16 MiB test guests at 2 GiB, the 256 MiB Linux VM at 1 GiB. Measured
    // in QEMU: FreeRAM rises by 16 MiB + 8 KiB when a 16 MiB test guest is suspended.
    assert_eq!(stage2_table_bytes(TEST_GUEST_IPA_BASE, 16 << 20), 8192);
    assert_eq!(stage2_table_bytes(linux::LINUX_IPA_BASE, 256 << 20), 8192);
    // RAM across a 1 GiB boundary needs a second level-2 table.
    assert_eq!(stage2_table_bytes(0x7fe0_0000, 4 << 20), 12288);
    assert_eq!(stage2_table_bytes(0x4000_0000, 1 << 30), 8192);
}

#[test]
fn machines_have_room_for_the_vm_and_its_image_copy() {
    let mut image = ImageSpec::new("lin", disk::ImageFormat::Linux, vec![0; 40 << 20]);
    image.default_ram = 256 << 20;
    // 256 reserve + 64 management + 256 + 40 = 616 MiB: the 1 GiB minimum.
    assert_eq!(machine_mib(&image), 1024);
    image.default_ram = 1 << 30;
    // 256 + 64 + 1024 + 40 = 1384 MiB, rounded up to 1536.
    assert_eq!(machine_mib(&image), 1536);
}

#[test]
fn counts_must_follow_each_other() {
    let lines: Vec<String> = [
        "x| count=1",
        "ctr| count=1",
        "#HV y",
        "ctr| count=2",
        "ctr| count=3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(counts(&lines, "ctr", 0, lines.len()), [1, 2, 3]);
    assert_eq!(counts(&lines, "ctr", 3, lines.len()), [2, 3]);
    assert_eq!(consecutive(&[1, 2, 3], 1), Ok(()));
    assert!(consecutive(&[1, 3], 1)
        .unwrap_err()
        .contains("count=3 where count=2"));
    assert!(consecutive(&[], 1).is_err());
}

#[test]
fn commands_are_judged_by_status_and_answer_and_capture_values() {
    let mut console = FakeConsole::new(|cmd| match cmd {
        "get ./VMImgMO/counter/ImgID" => vec![ok("7")],
        "add ./VirMO/x" => vec![format!("{PREFIX}STATUS 418 VirMO/x already exists")],
        "get ./VirMO/x/State" => vec!["x| noise".into(), ok("2")],
        other => vec![format!("{PREFIX}STATUS 400 usage: {other}")],
    });
    let steps = vec![
        image_id("capture", "counter"),
        Step::cmd("capture", "replace ./VirMO/x/CreateParams ImgID={img}", 400).answer("ImgID=7$"),
        Step::cmd("exists", "add ./VirMO/x", 418).answer("already exists"),
        Step::cmd("wrong_status", "add ./VirMO/x", 200),
        Step::state("wrong_answer", "x", 3),
        Step::cmd(
            "missing_var",
            "replace ./VirMO/x/CreateParams ImgID={nope}",
            200,
        ),
    ];
    let cases = run_steps(&mut console, &steps);
    assert_eq!(
        results(&cases)[..2],
        [("capture".into(), None), ("exists".into(), None)]
    );
    assert_eq!(
        failure(&cases, "wrong_status"),
        Some("`add ./VirMO/x` answered `STATUS 418 VirMO/x already exists`, expected status 200")
    );
    assert_eq!(
        failure(&cases, "wrong_answer"),
        Some("`get ./VirMO/x/State` answered `STATUS 200 2`: `2` does not match `^3$`")
    );
    assert!(failure(&cases, "missing_var").unwrap().contains("not sent"));
    // The command with a missing value was never typed; every other was, with a CR.
    assert_eq!(console.sent.len(), 5);
    assert_eq!(console.sent[1], "replace ./VirMO/x/CreateParams ImgID=7\r");
    // A case's output holds the commands and answers.
    assert_eq!(
        cases[0].output[..2],
        ["> get ./VMImgMO/counter/ImgID", "< STATUS 200 7"]
    );
}

#[test]
fn lines_are_searched_from_the_last_command_marks_or_the_last_match() {
    let mut console = FakeConsole::new(|cmd| match cmd {
        "exec go" => vec![
            "#HV vm-create id=1 name=a pa=0x100".into(),
            "a| count=1".into(),
            ok(""),
            "a| count=2".into(),
        ],
        "get more" => vec!["a| count=3".into(), ok(""), "a| count=4".into()],
        _ => vec![ok("")],
    });
    let steps = vec![
        Step::mark("m", "before"),
        Step::cmd("go", "exec go", 200),
        // Printed before the answer: still found.
        Step::line(
            "go",
            r"^#HV vm-create id=\d+ name=a pa=(?P<pa>0x[0-9a-f]+)$",
        ),
        Step::line("go", r"^a\| count=(?P<first>\d+)$"),
        Step::line("go", r"^a\| count=(?P<second>\d+)$").from(From::LastMatch),
        Step::cmd("more", "get more", 200),
        Step::find_last("more", r"^a\| count=(?P<last>\d+)$", From::Mark("before")),
        Step::line("more", r"^a\| count=(?P<later>\d+)$").from(From::Now),
        Step::check("values", "captured", |c| {
            assert_eq!(num(c.vars, "pa"), Ok(0x100));
            assert_eq!(
                ["first", "second", "last", "later"].map(|v| num(c.vars, v).unwrap()),
                [1, 2, 3, 4]
            );
            Ok(Some("all four".into()))
        }),
        Step::line("not_there", r"^a\| count=9$"),
        Step::line("bad_mark", r"x").from(From::Mark("nowhere")),
    ];
    let cases = run_steps(&mut console, &steps);
    for name in ["m", "go", "more", "values"] {
        assert_eq!(failure(&cases, name), None, "{name}");
    }
    assert!(cases[3].output.contains(&"xtask: ok: all four".to_string()));
    assert!(failure(&cases, "not_there")
        .unwrap()
        .starts_with("no console line matched `^a\\| count=9$`"));
    assert!(failure(&cases, "bad_mark")
        .unwrap()
        .contains("no mark `nowhere`"));
}

#[test]
fn absent_lines_and_checks_fail_their_case_only() {
    let mut console = FakeConsole::new(|cmd| match cmd {
        "exec suspend" => vec![ok(""), "a| count=7".into()],
        _ => vec![ok("")],
    });
    let steps = vec![
        Step::cmd("quiet", "get x", 200),
        Step::no_line(
            "quiet",
            r"^a\| ",
            From::LastCommand,
            Duration::from_millis(10),
        ),
        Step::cmd("noisy", "exec suspend", 200),
        Step::mark("noisy", "after"),
        Step::no_line(
            "noisy",
            r"^a\| ",
            From::LastCommand,
            Duration::from_millis(10),
        ),
        Step::check("checked", "fails", |_| Err("wrong".into())),
        Step::cmd("after", "get y", 200),
    ];
    let cases = run_steps(&mut console, &steps);
    assert_eq!(failure(&cases, "quiet"), None);
    assert_eq!(
        failure(&cases, "noisy"),
        Some("`a| count=7` matched `^a\\| ` (none may for 0.01s)")
    );
    assert_eq!(failure(&cases, "checked"), Some("wrong"));
    assert_eq!(failure(&cases, "after"), None);
}

#[test]
fn a_machine_that_stops_fails_the_cases_not_reached() {
    let mut console = FakeConsole::new(|_| vec![ok("")]);
    console.dies_after = Some(1);
    let steps = vec![
        Step::cmd("first", "get a", 200),
        Step::cmd("second", "get b", 200),
        Step::cmd("third", "get c", 200),
        Step::check("first", "late part of first", |_| Ok(None)),
    ];
    let cases = run_steps(&mut console, &steps);
    assert_eq!(
        results(&cases),
        [
            ("first".into(), Some("not reached: QEMU exited".into())),
            ("second".into(), Some("QEMU exited".into())),
            ("third".into(), Some("not reached: QEMU exited".into())),
        ]
    );

    // A panic line ends the run at once; so does an agent that never becomes ready.
    let mut console = FakeConsole::new(|_| vec!["PANIC".into()]);
    let cases = run_steps(&mut console, &[Step::cmd("one", "get a", 200)]);
    assert_eq!(
        failure(&cases, "one"),
        Some("the hypervisor panicked: boom")
    );
    let mut console = FakeConsole::new(|_| vec![ok("")]);
    console.pending.clear();
    let cases = run_steps(&mut console, &[Step::cmd("one", "get a", 200)]);
    assert_eq!(
        failure(&cases, "one"),
        Some("not reached: timed out waiting for the management agent to be ready")
    );
    assert!(console.sent.is_empty());
}

#[test]
fn an_unanswered_command_ends_the_run() {
    let mut console = FakeConsole::new(|cmd| if cmd == "get a" { vec![] } else { vec![ok("")] });
    let cases = run_steps(
        &mut console,
        &[
            Step::cmd("one", "get a", 200),
            Step::cmd("two", "get b", 200),
        ],
    );
    assert_eq!(
        results(&cases),
        [
            (
                "one".into(),
                Some("timed out waiting for the answer to `get a`".into())
            ),
            (
                "two".into(),
                Some("not reached: timed out waiting for the answer to `get a`".into())
            ),
        ]
    );
    // Before giving up, it asked the hypervisor for its CPU accounting (Ctrl-] s).
    assert_eq!(console.sent, ["get a\r", "\u{1d}s"]);
}

#[test]
fn reboots_wait_for_the_agent_again() {
    let mut console = FakeConsole::new(|_| vec![ok("1")]);
    let steps = vec![
        Step::get("a", "./VirMO/x/VMID", r"^(?P<vmid>\d+)$"),
        Step::reboot("a"),
        Step::get("b", "./VirMO/x/VMID", "^{vmid}$"),
    ];
    let cases = run_steps(&mut console, &steps);
    assert_eq!(results(&cases), [("a".into(), None), ("b".into(), None)]);
    assert_eq!(console.reboots, 1);
}

/// A scripted `counter` VM for `mgmt_suspend_counter`: the free RAM and the count follow the
/// suspend and resume; `resume_from` is the first count printed after the resume.
fn counter_world(resume_from: u64, talks_while_suspended: bool) -> impl FnMut(&str) -> Vec<String> {
    const FREE: u64 = 1_000_000_000;
    let mut suspended = false;
    move |cmd| {
        let answer = |t: &str| vec![ok(t)];
        match cmd {
            "get ./VMImgMO/counter/ImgID" => answer("1"),
            "exec ./VirMO/ctr/Operations/Create" => {
                let mut v = vec![
                    "#HV vm-create id=1 name=ctr image=1 ram=16777216 pa=0x8ec00000 cpu=25 running=true".to_string(),
                    "ctr| count=1".into(),
                    ok(""),
                ];
                v.extend((2..=5).map(|n| format!("ctr| count={n}")));
                v
            }
            "get ./VirMO/DeviceResources" => {
                let free = if suspended {
                    FREE + (16 << 20) + 8192
                } else {
                    FREE
                };
                answer(&format!(
                    "RAM=2000000000&Storage=1&FreeRAM={free}&FreeStorage=1&CPUs=2"
                ))
            }
            "exec ./VirMO/ctr/Operations/Suspend" => {
                suspended = true;
                let mut v = vec![
                    "ctr| count=6".to_string(),
                    "#HV vm-suspend id=1 name=ctr bytes=16777216 ticks=5".into(),
                    ok(""),
                ];
                if talks_while_suspended {
                    v.push("ctr| count=7".into());
                }
                v
            }
            "get ./VirMO/ctr/State" => answer(if suspended { "3" } else { "2" }),
            "exec ./VirMO/ctr/Operations/Resume" => {
                suspended = false;
                vec![
                    "#HV vm-resume id=1 name=ctr pa=0x8e000000 ticks=5".into(),
                    ok(""),
                    format!("ctr| count={resume_from}"),
                    format!("ctr| count={}", resume_from + 1),
                ]
            }
            _ => answer(""),
        }
    }
}

#[test]
fn the_suspend_counter_suite_passes_a_counter_that_goes_on() {
    let mut console = FakeConsole::new(counter_world(7, false));
    let cases = run_steps(&mut console, &suspend_counter());
    assert!(cases.iter().all(|c| c.passed()), "{:#?}", results(&cases));
    let resumed = cases
        .iter()
        .find(|c| c.name == "resume_continues_the_count")
        .unwrap();
    assert!(resumed.output.iter().any(
        |l| l == "xtask: ok: created at pa=0x8ec00000, resumed at pa=0x8e000000 (other frames)"
    ));
    let freed = cases
        .iter()
        .find(|c| c.name == "suspend_frees_the_ram")
        .unwrap();
    assert!(freed
        .output
        .iter()
        .any(|l| l.contains("16785408 bytes = RAM 16777216 + stage-2 tables 8192")));
}

#[test]
fn the_suspend_counter_suite_fails_a_reset_count_or_a_talking_suspended_vm() {
    let mut console = FakeConsole::new(counter_world(1, false));
    let cases = run_steps(&mut console, &suspend_counter());
    assert_eq!(
        failure(&cases, "resume_continues_the_count"),
        Some("the first count after resume: 1, expected 7")
    );
    assert_eq!(failure(&cases, "silent_while_suspended"), None);

    let mut console = FakeConsole::new(counter_world(8, true));
    let cases = run_steps(&mut console, &suspend_counter());
    assert!(failure(&cases, "silent_while_suspended")
        .unwrap()
        .starts_with("`ctr| count=7` matched"));
    // The last count is the last before Suspend was answered.
    assert_eq!(
        failure(&cases, "resume_continues_the_count"),
        Some("the first count after resume: 8, expected 7")
    );
}

/// Every `{var}` a step uses is captured by an earlier step (or set by a check: `big`), every
/// mark is set before it is used, every regex compiles, and case names are unique per suite
/// run order (a case's steps may be apart, but a name is one case).
#[test]
fn every_suite_definition_is_consistent() {
    let names = Regex::new(r"\(\?P<([a-z_0-9]+)>").unwrap();
    let uses = Regex::new(r"\{([a-z_][a-z0-9_]*)\}").unwrap();
    for suite in MGMT_SUITES {
        let steps = steps(suite).unwrap_or_else(|| panic!("{suite} has no steps"));
        assert!(!steps.is_empty());
        let mut known: Vec<String> = vec!["big".into()];
        let mut marks: Vec<&str> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let (texts, from): (Vec<&str>, Option<From>) = match &step.action {
                Action::Command { line, answer, .. } => (
                    std::iter::once(line.as_str())
                        .chain(answer.as_deref())
                        .collect(),
                    None,
                ),
                Action::Line { regex, from, .. }
                | Action::NoLine { regex, from, .. }
                | Action::Find { regex, from, .. } => (vec![regex.as_str()], Some(*from)),
                Action::Mark(m) => {
                    marks.push(m);
                    (vec![], None)
                }
                _ => (vec![], None),
            };
            for t in &texts {
                for u in uses.captures_iter(t) {
                    assert!(
                        known.iter().any(|k| k == &u[1]),
                        "{suite} step {i}: `{t}` uses {{{}}} before it is captured",
                        &u[1]
                    );
                }
            }
            if let Action::Command {
                answer: Some(re), ..
            }
            | Action::Line { regex: re, .. }
            | Action::NoLine { regex: re, .. }
            | Action::Find { regex: re, .. } = &step.action
            {
                let plain = uses.replace_all(re, "1");
                Regex::new(&plain).unwrap_or_else(|e| panic!("{suite} step {i}: {e}"));
                known.extend(names.captures_iter(re).map(|c| c[1].to_string()));
            }
            if let Some(From::Mark(m)) = from {
                assert!(
                    marks.contains(&m),
                    "{suite} step {i}: mark {m} not set before"
                );
            }
        }
        // Cases in the order of their first step, each a name fit for a test id.
        let mut seen: Vec<&str> = Vec::new();
        for s in &steps {
            assert!(
                s.case
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{suite}: case name {}",
                s.case
            );
            if !seen.contains(&s.case) {
                seen.push(s.case);
            }
        }
        assert!(seen.len() >= 3, "{suite}: {seen:?}");
    }
    assert!(MGMT_SUITES.iter().all(|s| is_mgmt_suite(s)));
    // `cargo xtask test` runs them all, reporting the pending one as skipped.
    assert!(MGMT_SUITES
        .iter()
        .all(|s| crate::test_suite_names().contains(s) && crate::all_suite_names().contains(s)));
    assert_eq!(crate::pending_reason(LINUX_SUSPEND_CONSOLE), None);
    assert_eq!(crate::pending_reason(LONG_LINES), None);
    assert!(crate::needs_linux_images(LINUX_SUSPEND));
    assert!(needs_linux_images(LINUX_SUSPEND) && !needs_linux_images(LIFECYCLE));
}

#[test]
fn the_bundle_holds_only_the_management_flags() {
    let b = bundle().unwrap();
    let parsed = bootbundle::Bundle::parse(&b).unwrap();
    assert!(parsed.flags().management_vm() && parsed.flags().fault_injection());
    assert!(parsed.vms().is_empty());
}

#[test]
fn long_lines_are_as_long_as_their_cases_say() {
    let mut lengths = Vec::new();
    for step in long_lines() {
        if let (Some(n), Action::Command { line, .. }) =
            (step.case.strip_prefix("line_of_"), &step.action)
        {
            if line.starts_with("replace ") {
                let n: usize = n.trim_end_matches("_bytes").parse().unwrap();
                // The engine adds the CR.
                assert_eq!(line.len() + 1, n, "{line}");
                lengths.push(n);
            }
        }
    }
    assert_eq!(lengths, [63, 64, 65, 66, 100, 130, 200, 240]);
}
