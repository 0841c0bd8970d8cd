//! Judging a suite from its console transcript.
//!
//! [`Monitor`] is fed console lines (with the time since QEMU started) and decides every test's
//! result. It does no I/O and reads no clock, so it is tested on synthetic transcripts.

use std::time::Duration;

use crate::framing::{parse_line, ConsoleLine, HtEvent, HvRecord};
use crate::shares::{self, Evidence, Window};
use crate::suites::{Check, SharesCheck, Suite};

/// The result of one test case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    /// The VM the test ran in; `None` for suite-level cases (checks, hypervisor panic, QEMU).
    pub vm: Option<String>,
    pub name: String,
    /// `None` if the test passed, else why it failed.
    pub failure: Option<String>,
    pub time: Duration,
    /// The console lines that belong to the test (the VM's lines while it ran, and the
    /// hypervisor records about the VM, such as `vm-fault` with `ipa=` and `access=`).
    pub output: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
    /// `<vm>::<test>`, or `<name>` for suite-level cases.
    pub fn id(&self) -> String {
        match &self.vm {
            Some(vm) => format!("{vm}::{}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Listed,
    Running,
    ExpectStop,
    Passed,
    Failed(String),
}

#[derive(Debug)]
struct TestState {
    name: String,
    /// Named by a `#HT list` line (rather than first seen in a later event).
    listed: bool,
    status: Status,
    run_at: Option<Duration>,
    end_at: Option<Duration>,
    run_seq: Option<u64>,
    pass_seq: Option<u64>,
    /// The line that finished it (pass, fail, stop...).
    end_seq: Option<u64>,
    output: Vec<String>,
}

impl TestState {
    fn active(&self) -> bool {
        matches!(self.status, Status::Running | Status::ExpectStop)
    }
    fn finished(&self) -> bool {
        matches!(self.status, Status::Passed | Status::Failed(_))
    }
    fn finish(&mut self, status: Status, now: Duration, seq: u64) {
        self.status = status;
        self.end_at = Some(now);
        self.end_seq = Some(seq);
    }
}

#[derive(Debug)]
struct VmState {
    name: String,
    pass_requires_stopped: Option<String>,
    announced: Option<usize>,
    begun: bool,
    tests: Vec<TestState>,
    done: bool,
    stopped: Option<String>,
    last_fault: Option<String>,
}

impl VmState {
    fn test(&mut self, name: &str) -> &mut TestState {
        let i = match self.tests.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                // A test that was never listed: judge it all the same.
                self.tests.push(TestState {
                    name: name.to_string(),
                    listed: false,
                    status: Status::Listed,
                    run_at: None,
                    end_at: None,
                    run_seq: None,
                    pass_seq: None,
                    end_seq: None,
                    output: Vec::new(),
                });
                self.tests.len() - 1
            }
        };
        &mut self.tests[i]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    TimedOut(String),
    QemuExited,
}

/// Decides a suite's results from its console.
#[derive(Debug)]
pub struct Monitor {
    test_timeout: Duration,
    time_limit: Duration,
    vms: Vec<VmState>,
    checks: Vec<Check>,
    seq: u64,
    last_progress: Duration,
    panic: Option<String>,
    all_stopped: bool,
    end: Option<End>,
    qemu_failure: Option<String>,
    metrics: Vec<(String, String)>,
    /// `#HV boot cpus=`.
    cpus: Option<u32>,
    /// `#HV vm-start`: VM ids and names.
    vm_ids: Vec<(u16, String)>,
    /// `#HV sched-window` records.
    windows: Vec<Window>,
    /// `#HV quota-applied`: (seq, t).
    quota_changes: Vec<(u64, u64)>,
}

/// A test over its limit fails "timed out after ..."; this formats the limit.
fn secs(d: Duration) -> String {
    format!("{d:?}")
}

/// How many lines of a test's console are kept for its report.
const MAX_TEST_OUTPUT: usize = 200;

impl Monitor {
    pub fn new(suite: &Suite) -> Self {
        Monitor {
            test_timeout: suite.test_timeout,
            time_limit: suite.test_timeout * 20,
            vms: suite
                .vms
                .iter()
                .map(|vm| VmState {
                    name: vm.name.clone(),
                    pass_requires_stopped: vm.pass_requires_stopped.clone(),
                    announced: None,
                    begun: false,
                    tests: Vec::new(),
                    done: false,
                    stopped: None,
                    last_fault: None,
                })
                .collect(),
            checks: suite.checks.clone(),
            seq: 0,
            last_progress: Duration::ZERO,
            panic: None,
            all_stopped: false,
            end: None,
            qemu_failure: None,
            metrics: Vec::new(),
            cpus: None,
            vm_ids: Vec::new(),
            windows: Vec::new(),
            quota_changes: Vec::new(),
        }
    }

    /// The `#HT metric` figures seen so far, in order, then the figures of the checks that
    /// compute one (`SharesCheck::metric`).
    pub fn metrics(&self) -> Vec<(String, String)> {
        let mut out = self.metrics.clone();
        for check in &self.checks {
            if let Check::Shares(c) = check {
                if let (Some(name), Some(max)) = (&c.metric, self.shares(c).max_error_pp) {
                    out.push((name.clone(), format!("{max:.4}")));
                }
            }
        }
        out
    }

    /// The hypervisor's panic message, if it panicked.
    pub fn panic_message(&self) -> Option<&str> {
        self.panic.as_deref()
    }

    /// Feeds one console line, seen `now` after QEMU started.
    pub fn feed(&mut self, line: &str, now: Duration) {
        self.seq += 1;
        if self.panic.is_some() || self.end.is_some() {
            return; // Nothing after a panic is trustworthy; nothing comes after the end.
        }
        match parse_line(line) {
            ConsoleLine::Hv(record) => {
                self.last_progress = now;
                self.on_record(&record, line.trim_end(), now);
            }
            ConsoleLine::Guest { vm, event, .. } => {
                // The line belongs to the tests running in the VM (the event handler adds it to
                // the test it names if that one was not running).
                let seq = self.seq;
                let Some(v) = self.vms.iter_mut().find(|v| v.name == vm) else {
                    return;
                };
                for t in v.tests.iter_mut().filter(|t| t.active()) {
                    if t.output.len() < MAX_TEST_OUTPUT {
                        t.output.push(line.trim_end().to_string());
                    }
                }
                if let Some(event) = event {
                    self.last_progress = now;
                    self.on_event(&vm, event, seq, line.trim_end(), now);
                }
            }
            ConsoleLine::Other(_) => {}
        }
    }

    fn vm_stopped(&self, name: &str) -> bool {
        self.vms
            .iter()
            .any(|v| v.name == name && v.stopped.is_some())
    }

    fn on_event(&mut self, vm_name: &str, event: HtEvent, seq: u64, line: &str, now: Duration) {
        let vi = self
            .vms
            .iter()
            .position(|v| v.name == vm_name)
            .expect("known VM");
        let requirement = self.vms[vi].pass_requires_stopped.clone();
        let requirement_met = requirement.as_deref().is_none_or(|r| self.vm_stopped(r));
        let v = &mut self.vms[vi];
        match event {
            HtEvent::Begin { tests } => {
                v.begun = true;
                v.announced = tests;
            }
            HtEvent::List(name) => {
                v.begun = true;
                v.test(&name).listed = true;
            }
            HtEvent::Run(name) => {
                let t = v.test(&name);
                if !t.finished() {
                    if !t.active() {
                        t.output.push(line.to_string());
                    }
                    t.status = Status::Running;
                    t.run_at = Some(now);
                    t.run_seq = Some(seq);
                }
            }
            HtEvent::Pass(name) => {
                let t = v.test(&name);
                t.pass_seq.get_or_insert(seq);
                if !t.active() {
                    t.output.push(line.to_string());
                }
                let verdict = match (&t.status, requirement) {
                    (Status::Passed | Status::Failed(_), _) => None,
                    (Status::ExpectStop, _) => Some(Status::Failed(
                        "reported pass after `expect-stop`, but the hypervisor did not stop the VM"
                            .into(),
                    )),
                    (_, Some(other)) if !requirement_met => Some(Status::Failed(format!(
                        "passed before VM `{other}` was stopped, so the pass proves nothing \
                         (pass_requires_stopped)"
                    ))),
                    _ => Some(Status::Passed),
                };
                if let Some(status) = verdict {
                    t.finish(status, now, seq);
                }
            }
            HtEvent::Fail { test, message } => {
                let t = v.test(&test);
                if !t.active() {
                    t.output.push(line.to_string());
                }
                if !matches!(t.status, Status::Failed(_)) {
                    let message = if message.is_empty() {
                        "failed".to_string()
                    } else {
                        message
                    };
                    t.finish(Status::Failed(message), now, seq);
                }
            }
            HtEvent::ExpectStop(name) => {
                let t = v.test(&name);
                if !t.finished() {
                    if t.run_at.is_none() {
                        t.run_at = Some(now);
                        t.run_seq = Some(seq);
                    }
                    if !t.active() {
                        t.output.push(line.to_string());
                    }
                    t.status = Status::ExpectStop;
                }
            }
            HtEvent::Metric { name, value } => self.metrics.push((name, value)),
            HtEvent::Done { .. } => v.done = true,
            HtEvent::Unknown(_) => {}
        }
    }

    fn on_record(&mut self, record: &HvRecord, line: &str, now: Duration) {
        let seq = self.seq;
        match record.event.as_str() {
            "panic" => {
                let message = if record.rest.is_empty() {
                    "(no message)"
                } else {
                    &record.rest
                };
                self.panic = Some(message.to_string());
                for t in self.vms.iter_mut().flat_map(|v| v.tests.iter_mut()) {
                    if !t.finished() {
                        t.finish(
                            Status::Failed(format!("hypervisor panic: {message}")),
                            now,
                            seq,
                        );
                    }
                }
            }
            "all-stopped" => self.all_stopped = true,
            "boot" => self.cpus = record.get("cpus").and_then(|c| c.parse().ok()),
            "sched-window" => {
                if let Some(w) = Window::parse(self.seq, &record.fields) {
                    self.windows.push(w);
                }
            }
            "quota-applied" => {
                if let Some(t) = record.get("t").and_then(|t| t.parse().ok()) {
                    self.quota_changes.push((self.seq, t));
                }
            }
            "vm-fault" | "vm-stopped" | "vm-start" | "vm-reset" => {
                let Some(v) = record
                    .get("name")
                    .and_then(|n| self.vms.iter_mut().find(|v| v.name == n))
                else {
                    return;
                };
                for t in v.tests.iter_mut().filter(|t| t.active()) {
                    t.output.push(line.to_string());
                }
                match record.event.as_str() {
                    "vm-start" => {
                        if let Some(id) = record.get("id").and_then(|i| i.parse().ok()) {
                            let name = v.name.clone();
                            self.vm_ids.push((id, name));
                        }
                    }
                    "vm-fault" => {
                        let field = |k: &str| record.get(k).unwrap_or("?").to_string();
                        v.last_fault = Some(format!(
                            "vm-fault ipa={} access={}",
                            field("ipa"),
                            field("access")
                        ));
                    }
                    "vm-stopped" => {
                        let reason = record.get("reason").unwrap_or("unknown").to_string();
                        let fault = v
                            .last_fault
                            .as_ref()
                            .map(|f| format!(" ({f})"))
                            .unwrap_or_default();
                        for t in v.tests.iter_mut().filter(|t| t.active()) {
                            let status = match (&t.status, reason.as_str()) {
                                (Status::ExpectStop, "fault" | "system-off") => Status::Passed,
                                (Status::ExpectStop, _) => Status::Failed(format!(
                                    "VM stopped with reason={reason}{fault}, expected reason=fault or system-off"
                                )),
                                _ => Status::Failed(format!(
                                    "VM stopped (reason={reason}){fault} while the test was running"
                                )),
                            };
                            t.finish(status, now, seq);
                        }
                        v.stopped = Some(reason);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// When the suite should be given up on (time since QEMU started): the earliest running
    /// test's limit, or, when no test runs, `test_timeout` without progress; never later than
    /// the suite's overall limit.
    pub fn deadline(&self) -> Duration {
        let running = self
            .vms
            .iter()
            .flat_map(|v| &v.tests)
            .filter(|t| t.active())
            .filter_map(|t| t.run_at)
            .map(|at| at + self.test_timeout)
            .min();
        let idle = self.last_progress + self.test_timeout;
        running.unwrap_or(idle).min(idle).min(self.time_limit)
    }

    /// The deadline has passed (the runner then kills QEMU): fails the tests over their limit.
    pub fn timeout(&mut self, now: Duration) {
        if self.end.is_some() {
            return;
        }
        let limit = self.test_timeout;
        let seq = self.seq;
        let mut expired = Vec::new();
        for v in &mut self.vms {
            for t in v.tests.iter_mut().filter(|t| t.active()) {
                if t.run_at.is_some_and(|at| at + limit <= now) {
                    let message = if t.status == Status::ExpectStop {
                        format!(
                            "timed out after {} waiting for the hypervisor to stop the VM",
                            secs(limit)
                        )
                    } else {
                        format!("timed out after {}", secs(limit))
                    };
                    t.finish(Status::Failed(message), now, seq);
                    expired.push(format!("{}::{}", v.name, t.name));
                }
            }
        }
        let why = if !expired.is_empty() {
            format!("suite stopped after {} timed out", expired.join(", "))
        } else if now >= self.time_limit {
            format!("suite exceeded its time limit of {}", secs(self.time_limit))
        } else {
            format!("timed out: no progress for {}", secs(limit))
        };
        self.end = Some(End::TimedOut(why));
    }

    /// QEMU exited on its own (not killed by the runner), `success` telling its exit status.
    pub fn qemu_exited(&mut self, status: &str, success: bool) {
        if self.end.is_none() && self.panic.is_none() {
            self.end = Some(End::QemuExited);
        }
        if !success {
            self.qemu_failure = Some(format!("QEMU exited with {status}"));
        }
    }

    /// Whether the suite is over: every VM finished (`#HT done`) or was stopped, or the
    /// hypervisor stopped them all, panicked, or QEMU exited, or it timed out.
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
            || self.panic.is_some()
            || self.all_stopped
            || self.vms.iter().all(|v| v.done || v.stopped.is_some())
    }

    fn end_note(&self) -> String {
        if let Some(p) = &self.panic {
            return format!("hypervisor panic: {p}");
        }
        match &self.end {
            Some(End::TimedOut(why)) => why.clone(),
            Some(End::QemuExited) => "QEMU exited".into(),
            None if self.all_stopped => "all VMs stopped".into(),
            None => "suite finished".into(),
        }
    }

    /// Every test case's result: the VMs' tests in suite and listing order, then the checks, then
    /// suite-level failures (hypervisor panic, QEMU failure).
    pub fn results(&self) -> Vec<CaseResult> {
        let note = self.end_note();
        let mut out = Vec::new();
        for v in &self.vms {
            let stopped = v
                .stopped
                .as_ref()
                .map(|r| format!("VM stopped: reason={r}"));
            if !v.begun && v.tests.is_empty() {
                let why = match &stopped {
                    Some(s) => format!("VM never reported its tests ({s})"),
                    None => format!("VM never reported its tests ({note})"),
                };
                out.push(case(
                    Some(&v.name),
                    "(startup)",
                    Some(why),
                    Duration::ZERO,
                    Vec::new(),
                ));
            }
            for t in &v.tests {
                let failure = match &t.status {
                    Status::Passed => None,
                    Status::Failed(m) => Some(m.clone()),
                    Status::Listed => Some(format!(
                        "did not run ({})",
                        stopped.as_ref().unwrap_or(&note)
                    )),
                    Status::Running => Some(format!("did not finish ({note})")),
                    Status::ExpectStop => {
                        Some(format!("the hypervisor did not stop the VM ({note})"))
                    }
                };
                let time = match (t.run_at, t.end_at) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => Duration::ZERO,
                };
                out.push(case(
                    Some(&v.name),
                    &t.name,
                    failure,
                    time,
                    t.output.clone(),
                ));
            }
            if let Some(n) = v.announced {
                let listed = v.tests.iter().filter(|t| t.listed).count();
                if n != listed {
                    let why = format!("announced {n} tests but listed {listed}");
                    out.push(case(
                        Some(&v.name),
                        "(listing)",
                        Some(why),
                        Duration::ZERO,
                        Vec::new(),
                    ));
                }
            }
        }
        for check in &self.checks {
            match check {
                Check::Overlap { name, test, vms } => out.push(case(
                    None,
                    name,
                    self.overlap_failure(test, vms),
                    Duration::ZERO,
                    Vec::new(),
                )),
                Check::Shares(c) => out.push(case(
                    None,
                    &c.name,
                    self.shares(c).failure,
                    Duration::ZERO,
                    Vec::new(),
                )),
            }
        }
        if let Some(p) = &self.panic {
            out.push(case(
                None,
                "hypervisor",
                Some(format!("hypervisor panic: {p}")),
                Duration::ZERO,
                Vec::new(),
            ));
        }
        if let Some(q) = &self.qemu_failure {
            out.push(case(
                None,
                "qemu",
                Some(q.clone()),
                Duration::ZERO,
                Vec::new(),
            ));
        }
        out
    }

    fn shares(&self, check: &SharesCheck) -> shares::Verdict {
        let mut from = Some(0);
        let mut to: Option<u64> = None;
        for (vm, test) in &check.busy {
            let t = self
                .vms
                .iter()
                .find(|v| &v.name == vm)
                .and_then(|v| v.tests.iter().find(|t| &t.name == test));
            from = match (from, t.and_then(|t| t.run_seq)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            if let Some(end) = t.and_then(|t| t.end_seq) {
                to = Some(to.map_or(end, |x| x.min(end)));
            }
        }
        shares::judge(
            check,
            &Evidence {
                cpus: self.cpus,
                vms: &self.vm_ids,
                windows: &self.windows,
                changes: &self.quota_changes,
                busy_from: from,
                busy_to: to,
            },
        )
    }

    fn overlap_failure(&self, test: &str, vms: &[String]) -> Option<String> {
        let mut runs = Vec::new();
        let mut passes = Vec::new();
        for name in vms {
            let t = self
                .vms
                .iter()
                .find(|v| &v.name == name)
                .and_then(|v| v.tests.iter().find(|t| t.name == test));
            let Some(run) = t.and_then(|t| t.run_seq) else {
                return Some(format!("`{test}` never ran in VM {name}"));
            };
            let Some(pass) = t.and_then(|t| t.pass_seq) else {
                return Some(format!("`{test}` did not pass in VM {name}"));
            };
            runs.push((run, name));
            passes.push((pass, name));
        }
        let (last_run, late) = runs.iter().max()?;
        let (first_pass, early) = passes.iter().min()?;
        (first_pass < last_run).then(|| {
            format!(
                "VM {early} passed `{test}` before VM {late} started it: the VMs did not run at the same time"
            )
        })
    }
}

fn case(
    vm: Option<&str>,
    name: &str,
    failure: Option<String>,
    time: Duration,
    output: Vec<String>,
) -> CaseResult {
    CaseResult {
        vm: vm.map(str::to_string),
        name: name.to_string(),
        failure,
        time,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suites::SuiteVm;

    const T: Duration = Duration::from_secs(30);

    fn suite(vms: Vec<SuiteVm>) -> Suite {
        Suite {
            name: "s".into(),
            smp: 2,
            icount: false,
            test_timeout: T,
            vms,
            checks: vec![],
            sched_trace_us: 0,
        }
    }

    fn isolation() -> Suite {
        suite(vec![
            SuiteVm::new("victim", "victim").pass_requires_stopped("attacker"),
            SuiteVm::new("attacker", "attacker"),
        ])
    }

    /// Feeds a transcript, one line per second.
    fn feed(m: &mut Monitor, transcript: &str) {
        for line in transcript.lines() {
            let now = Duration::from_secs(m.seq + 1);
            m.feed(line.trim_start(), now);
        }
    }

    fn results(m: &Monitor) -> Vec<(String, Option<String>)> {
        m.results()
            .into_iter()
            .map(|c| (c.id(), c.failure))
            .collect()
    }

    fn failure(m: &Monitor, id: &str) -> Option<String> {
        m.results()
            .into_iter()
            .find(|c| c.id() == id)
            .unwrap_or_else(|| panic!("no case {id}"))
            .failure
    }

    #[test]
    fn passing_and_failing_tests() {
        let mut m = Monitor::new(&suite(vec![SuiteVm::new("basics", "basics").vcpus(2)]));
        feed(
            &mut m,
            "[INFO] booting
             #HV boot cpus=2 gic=v3 ram=1073741824
             #HV vm-start id=1 name=basics vcpus=2 ram=16777216 pa=0x48000000 pcpu=0
             basics| #HT begin tests=3
             basics| #HT list psci_version
             basics| #HT list bad_hvc
             basics| #HT list never
             basics| #HT run psci_version
             basics| some output
             basics| #HT pass psci_version
             basics| #HT run bad_hvc
             basics| #HT fail bad_hvc expected NOT_SUPPORTED, got 0 <&>",
        );
        assert!(!m.is_finished());
        feed(&mut m, "basics| #HT done passed=1 failed=1");
        assert!(m.is_finished());
        assert_eq!(
            results(&m),
            vec![
                ("basics::psci_version".into(), None),
                (
                    "basics::bad_hvc".into(),
                    Some("expected NOT_SUPPORTED, got 0 <&>".into())
                ),
                (
                    "basics::never".into(),
                    Some("did not run (suite finished)".into())
                ),
            ]
        );
        let r = m.results();
        assert_eq!(r[0].time, Duration::from_secs(2));
        assert_eq!(
            r[0].output,
            vec![
                "basics| #HT run psci_version",
                "basics| some output",
                "basics| #HT pass psci_version"
            ]
        );
    }

    #[test]
    fn expect_stop_satisfied_by_a_fault() {
        let mut m = Monitor::new(&isolation());
        feed(
            &mut m,
            "victim| #HT begin tests=1
             victim| #HT list pattern_intact
             victim| #HT run pattern_intact
             attacker| #HT begin tests=1
             attacker| #HT list read_blocked
             attacker| #HT run read_blocked
             attacker| #HT expect-stop read_blocked
             #HV vm-fault id=2 name=attacker vcpu=0 ipa=0x50001040 access=read esr=0x92000006 elr=0x80001234
             #HV vm-stopped id=2 name=attacker reason=fault
             victim| #HT pass pattern_intact
             victim| #HT done passed=1 failed=0",
        );
        assert!(m.is_finished());
        assert_eq!(
            results(&m),
            vec![
                ("victim::pattern_intact".into(), None),
                ("attacker::read_blocked".into(), None)
            ]
        );
        let out = m.results()[1].output.join("\n");
        assert!(out.contains("ipa=0x50001040 access=read"), "{out}");
        assert!(out.contains("reason=fault"), "{out}");
    }

    #[test]
    fn expect_stop_satisfied_by_system_off() {
        let mut m = Monitor::new(&suite(vec![SuiteVm::new("quitter", "system_off")]));
        feed(
            &mut m,
            "quitter| #HT begin tests=1
             quitter| #HT list off
             quitter| #HT run off
             quitter| #HT expect-stop off
             #HV vm-stopped id=1 name=quitter reason=system-off
             #HV all-stopped",
        );
        assert!(m.is_finished());
        assert_eq!(results(&m), vec![("quitter::off".into(), None)]);
    }

    #[test]
    fn expect_stop_unsatisfied() {
        // Stopped for the wrong reason.
        let mut m = Monitor::new(&isolation());
        feed(
            &mut m,
            "attacker| #HT list a
             attacker| #HT run a
             attacker| #HT expect-stop a
             #HV vm-stopped id=2 name=attacker reason=error",
        );
        assert_eq!(
            failure(&m, "attacker::a").unwrap(),
            "VM stopped with reason=error, expected reason=fault or system-off"
        );
        // Not stopped: the access went through and the guest said so.
        let mut m = Monitor::new(&isolation());
        feed(
            &mut m,
            "attacker| #HT list a
             attacker| #HT list b
             attacker| #HT run a
             attacker| #HT expect-stop a
             attacker| #HT pass a
             attacker| #HT run b
             attacker| #HT expect-stop b
             attacker| #HT fail b read returned 0x1234",
        );
        assert!(failure(&m, "attacker::a")
            .unwrap()
            .contains("did not stop the VM"));
        assert_eq!(failure(&m, "attacker::b").unwrap(), "read returned 0x1234");
        // Not stopped, and QEMU went away.
        let mut m = Monitor::new(&isolation());
        feed(
            &mut m,
            "attacker| #HT list a
             attacker| #HT run a
             attacker| #HT expect-stop a",
        );
        m.qemu_exited("exit status 0", true);
        assert!(m.is_finished());
        assert_eq!(
            failure(&m, "attacker::a").unwrap(),
            "the hypervisor did not stop the VM (QEMU exited)"
        );
        assert_eq!(
            failure(&m, "victim::(startup)").unwrap(),
            "VM never reported its tests (QEMU exited)"
        );
    }

    #[test]
    fn pass_requires_stopped_ordering() {
        let mut m = Monitor::new(&isolation());
        feed(
            &mut m,
            "victim| #HT list pattern_intact
             victim| #HT run pattern_intact
             victim| #HT pass pattern_intact
             attacker| #HT list a
             attacker| #HT run a
             attacker| #HT expect-stop a
             #HV vm-stopped id=2 name=attacker reason=fault",
        );
        assert_eq!(
            failure(&m, "victim::pattern_intact").unwrap(),
            "passed before VM `attacker` was stopped, so the pass proves nothing (pass_requires_stopped)"
        );
        assert_eq!(failure(&m, "attacker::a"), None);
        // A failure is a failure, whatever the order.
        let mut m = Monitor::new(&isolation());
        feed(
            &mut m,
            "#HV vm-stopped id=2 name=attacker reason=fault\nvictim| #HT fail p pattern changed",
        );
        assert_eq!(failure(&m, "victim::p").unwrap(), "pattern changed");
    }

    #[test]
    fn vm_stopping_fails_running_and_unrun_tests() {
        let mut m = Monitor::new(&suite(vec![SuiteVm::new("basics", "basics")]));
        feed(
            &mut m,
            "basics| #HT begin tests=2
             basics| #HT list a
             basics| #HT list b
             basics| #HT run a
             #HV vm-fault id=1 name=basics vcpu=1 ipa=0x0 access=exec esr=0x8200000f elr=0x0
             #HV vm-stopped id=1 name=basics reason=fault
             #HV all-stopped",
        );
        assert!(m.is_finished());
        assert_eq!(
            failure(&m, "basics::a").unwrap(),
            "VM stopped (reason=fault) (vm-fault ipa=0x0 access=exec) while the test was running"
        );
        assert_eq!(
            failure(&m, "basics::b").unwrap(),
            "did not run (VM stopped: reason=fault)"
        );
    }

    #[test]
    fn panic_fails_every_unfinished_test() {
        let mut m = Monitor::new(&isolation());
        feed(
            &mut m,
            "victim| #HT list p
             victim| #HT list q
             victim| #HT run p
             attacker| #HT list a
             attacker| #HT run a
             attacker| #HT pass a
             #HV panic at src/vm.rs:10: stage-2 table corrupt
             attacker| #HT list late
             #HV vm-stopped id=1 name=victim reason=fault",
        );
        assert!(m.is_finished());
        assert_eq!(
            m.panic_message(),
            Some("at src/vm.rs:10: stage-2 table corrupt")
        );
        let p = "hypervisor panic: at src/vm.rs:10: stage-2 table corrupt".to_string();
        assert_eq!(
            results(&m),
            vec![
                ("victim::p".into(), Some(p.clone())),
                ("victim::q".into(), Some(p.clone())),
                // The pass came before the panic but the requirement was not met.
                ("attacker::a".into(), None),
                ("hypervisor".into(), Some(p)),
            ]
        );
    }

    #[test]
    fn a_test_times_out_from_its_run_line() {
        let mut m = Monitor::new(&suite(vec![
            SuiteVm::new("b", "basics"),
            SuiteVm::new("c", "basics"),
        ]));
        m.feed("b| #HT list slow", Duration::from_secs(1));
        m.feed("b| #HT list next", Duration::from_secs(1));
        m.feed("c| #HT list other", Duration::from_secs(1));
        m.feed("b| #HT run slow", Duration::from_secs(5));
        assert_eq!(m.deadline(), Duration::from_secs(35));
        m.feed("c| #HT run other", Duration::from_secs(20));
        m.feed("c| still going", Duration::from_secs(30));
        assert_eq!(m.deadline(), Duration::from_secs(35));
        m.timeout(Duration::from_secs(35));
        assert!(m.is_finished());
        assert_eq!(
            results(&m),
            vec![
                ("b::slow".into(), Some("timed out after 30s".into())),
                (
                    "b::next".into(),
                    Some("did not run (suite stopped after b::slow timed out)".into())
                ),
                (
                    "c::other".into(),
                    Some("did not finish (suite stopped after b::slow timed out)".into())
                ),
            ]
        );
        assert_eq!(m.results()[0].time, T);
    }

    #[test]
    fn silence_times_out() {
        let mut m = Monitor::new(&isolation());
        assert_eq!(m.deadline(), T);
        m.feed("[INFO] not framing, not progress", Duration::from_secs(10));
        assert_eq!(m.deadline(), T);
        m.feed("#HV boot cpus=2 gic=v3 ram=1", Duration::from_secs(10));
        assert_eq!(m.deadline(), Duration::from_secs(40));
        m.timeout(Duration::from_secs(40));
        assert_eq!(
            failure(&m, "victim::(startup)").unwrap(),
            "VM never reported its tests (timed out: no progress for 30s)"
        );
        // An expect-stop that never comes times out too, and says what it waited for.
        let mut m = Monitor::new(&isolation());
        m.feed("attacker| #HT expect-stop a", Duration::from_secs(1));
        m.timeout(m.deadline());
        assert_eq!(
            failure(&m, "attacker::a").unwrap(),
            "timed out after 30s waiting for the hypervisor to stop the VM"
        );
        // The suite as a whole has a limit even while progress is made.
        let mut m = Monitor::new(&isolation());
        for s in 0..700 {
            m.feed("#HV vm-reset id=1 name=victim", Duration::from_secs(s));
        }
        assert_eq!(m.deadline(), T * 20);
        m.timeout(T * 20);
        assert!(failure(&m, "victim::(startup)")
            .unwrap()
            .contains("time limit of 600s"));
    }

    #[test]
    fn overlap_check() {
        let mut s = suite(vec![
            SuiteVm::new("spin_a", "spinner"),
            SuiteVm::new("spin_b", "spinner"),
        ]);
        s.checks.push(Check::Overlap {
            name: "overlap".into(),
            test: "spin".into(),
            vms: vec!["spin_a".into(), "spin_b".into()],
        });
        let good = "spin_a| #HT run spin
                    spin_b| #HT run spin
                    spin_b| #HT pass spin
                    spin_a| #HT pass spin";
        let mut m = Monitor::new(&s);
        feed(&mut m, good);
        assert_eq!(failure(&m, "overlap"), None);
        assert_eq!(failure(&m, "spin_a::spin"), None);

        let serial = "spin_a| #HT run spin
                      spin_a| #HT pass spin
                      spin_b| #HT run spin
                      spin_b| #HT pass spin";
        let mut m = Monitor::new(&s);
        feed(&mut m, serial);
        assert_eq!(
            failure(&m, "overlap").unwrap(),
            "VM spin_a passed `spin` before VM spin_b started it: the VMs did not run at the same time"
        );
        let mut m = Monitor::new(&s);
        feed(&mut m, "spin_a| #HT run spin\nspin_a| #HT pass spin");
        assert_eq!(
            failure(&m, "overlap").unwrap(),
            "`spin` never ran in VM spin_b"
        );
        let mut m = Monitor::new(&s);
        feed(
            &mut m,
            "spin_a| #HT run spin\nspin_b| #HT run spin\nspin_a| #HT pass spin",
        );
        assert_eq!(
            failure(&m, "overlap").unwrap(),
            "`spin` did not pass in VM spin_b"
        );
    }

    #[test]
    fn shares_check_from_records() {
        use crate::suites::SharesCheck;
        let mut s = suite(vec![
            SuiteVm::new("a", "spinner"),
            SuiteVm::new("b", "spinner"),
        ]);
        s.checks.push(Check::Shares(SharesCheck {
            name: "shares".into(),
            busy: vec![("a".into(), "spin".into()), ("b".into(), "spin".into())],
            expect: crate::shares::near(0, &[("a", 75), ("b", 25)], 50),
            after_change: None,
            min_windows: 2,
            metric: Some("err".into()),
        }));
        // A window before both run (ignored), three while they do, one after a ended.
        let transcript = "#HV boot cpus=2 gic=v3 ram=1073741824
             #HV vm-start id=1 name=a vcpus=1 ram=16777216 pa=0x48000000 pcpu=0 cpu=75 cntvoff=0x0
             #HV vm-start id=2 name=b vcpus=1 ram=16777216 pa=0x49000000 pcpu=0 cpu=25 cntvoff=0x0
             #HV sched-window t=1000 vm1=0 vm2=0
             a| #HT run spin
             b| #HT run spin
             #HV sched-window t=2000 vm1=100 vm2=100
             #HV sched-window t=3000 vm1=1600 vm2=600
             #HV sched-window t=4000 vm1=3100 vm2=1100
             #HV sched-window t=5000 vm1=4610 vm2=1600
             a| #HT pass spin
             #HV sched-window t=6000 vm1=4610 vm2=2600";
        let mut m = Monitor::new(&s);
        feed(&mut m, transcript);
        assert_eq!(failure(&m, "shares"), None);
        assert_eq!(m.metrics(), [("err".to_string(), "0.5000".to_string())]);
        // b got 30 % of the device in one window: over the bound.
        let mut m = Monitor::new(&s);
        feed(&mut m, &transcript.replace("vm2=1600", "vm2=1700"));
        let f = failure(&m, "shares").unwrap();
        assert!(f.contains("VM b got 30.000% of the device"), "{f}");
    }

    #[test]
    fn listing_mismatch_unknown_vms_and_forgery() {
        let mut m = Monitor::new(&suite(vec![SuiteVm::new("a", "basics")]));
        feed(
            &mut m,
            "a| #HT begin tests=2
             a| #HT list x
             a| #HT run x
             a| #HT pass x
             a| #HT run unlisted
             a| #HT pass unlisted
             stranger| #HT fail x nope
             a| #HV all-stopped
             a| #HV panic forged",
        );
        assert!(!m.is_finished());
        assert_eq!(m.panic_message(), None);
        feed(&mut m, "a| #HT done passed=2 failed=0");
        assert_eq!(
            results(&m),
            vec![
                ("a::x".into(), None),
                ("a::unlisted".into(), None),
                (
                    "a::(listing)".into(),
                    Some("announced 2 tests but listed 1".into())
                ),
            ]
        );
    }

    #[test]
    fn qemu_failure_and_metrics() {
        let mut m = Monitor::new(&suite(vec![SuiteVm::new("bench", "bench_hvc")]));
        feed(
            &mut m,
            "bench| #HT begin tests=1
             bench| #HT list hvc
             bench| #HT run hvc
             bench| #HT metric hvc_null_ns=812
             bench| #HT metric hvc_null_cycles=1.5e3
             bench| #HT pass hvc",
        );
        m.qemu_exited("exit status 1", false);
        assert_eq!(
            m.metrics(),
            [
                ("hvc_null_ns".to_string(), "812".to_string()),
                ("hvc_null_cycles".into(), "1.5e3".into())
            ]
        );
        assert_eq!(
            results(&m),
            vec![
                ("bench::hvc".into(), None),
                ("qemu".into(), Some("QEMU exited with exit status 1".into()))
            ]
        );
    }
}
