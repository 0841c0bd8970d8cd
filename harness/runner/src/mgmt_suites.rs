//! The management suites (issue 5): QEMU runs of the hypervisor with only the management VM,
//! driven through its shell like a VirMO server would, each check a test case
//! (docs/harness.md, "Management suites").
//!
//! Owns: the suites' definitions (a list of [`Step`]s each), and the engine that plays the
//! steps on a [`Console`] and judges them. A suite boots a bundle holding only the management
//! VM (flags `MANAGEMENT_VM | FAULT_INJECTION`) with a fresh disk whose image store holds the
//! images the suite creates VMs from; a step sends a shell command and checks its status and
//! answer, waits for a console line, makes sure a line does *not* come, types raw bytes,
//! captures values (named regex groups) and compares them, or restarts QEMU on the same disk.
//!
//! Must never: judge a line by its position alone (console lines of different VMs interleave;
//! a step searches from a named point of the transcript), nor go on after the shell stopped
//! answering (a late answer would be taken for the next command's).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use bootbundle::{BundleBuilder, BundleFlags, ImageFormat as BundleFormat};
use regex::Regex;

use crate::disk::{self, ImageSpec};
use crate::formats::GuestVm;
use crate::mgmt::{status_of, SessionError, PREFIX, READY};
use crate::monitor::CaseResult;
use crate::qemu::{self, ConsoleEvent, Qemu, QemuConfig, SpawnOptions, DEFAULT_MEMORY_MIB};
use crate::suites::{GuestImages, TEST_GUEST_IPA_BASE};
use crate::{linux, Artifacts, SuiteReport, TAIL_LINES};

pub const LIFECYCLE: &str = "mgmt_lifecycle";
pub const SUSPEND_COUNTER: &str = "mgmt_suspend_counter";
pub const DELETE_SCRUB: &str = "mgmt_delete_scrub";
pub const APPLY_CHANGES: &str = "mgmt_apply_changes";
pub const RESTART: &str = "mgmt_restart";
pub const LINUX_SUSPEND: &str = "mgmt_linux_suspend";
/// [`LINUX_SUSPEND`] at the Linux VM's shell, typing into it after the resume (console input
/// switched to a VM the management VM created).
pub const LINUX_SUSPEND_CONSOLE: &str = "mgmt_linux_suspend_console";
/// Command lines longer than the hypervisor's 64-byte input chunks reach the shell whole.
pub const LONG_LINES: &str = "mgmt_long_lines";
/// Every failure path of the life cycle, with a fault injected on the real hypervisor.
pub const FAULTS: &str = "mgmt_faults";

/// Every management suite, for `--suite`.
pub const MGMT_SUITES: &[&str] = &[
    LIFECYCLE,
    SUSPEND_COUNTER,
    DELETE_SCRUB,
    APPLY_CHANGES,
    RESTART,
    LINUX_SUSPEND,
    LINUX_SUSPEND_CONSOLE,
    LONG_LINES,
    FAULTS,
];

/// Whether `name` is a management suite.
pub fn is_mgmt_suite(name: &str) -> bool {
    MGMT_SUITES.contains(&name)
}

/// Whether suite `name` boots Linux (and so needs [`Artifacts::linux`]).
pub fn needs_linux_images(name: &str) -> bool {
    name == LINUX_SUSPEND || name == LINUX_SUSPEND_CONSOLE
}

/// The Linux VM's RAM in [`LINUX_SUSPEND`].
const LINUX_RAM: u64 = 256 << 20;
/// The Linux VM's name (VirMO entry, console prefix and `hvname=`).
const LINUX_VM: &str = "lin";
/// The RAM of the test-guest images' VMs (their default in the store).
const GUEST_RAM_MIB: u64 = 16;
/// The management VM's RAM (hypervisor/src/vm/management.rs `RAM`).
const MGMT_RAM: u64 = 64 << 20;

/// How long the agent may take to be ready after QEMU starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one command may take to be answered (a suspend writes the VM's RAM to disk).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a [`Action::Line`] waits unless told otherwise.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Steps

/// Values captured from answers and lines (named regex groups), by name.
pub type Vars = BTreeMap<String, String>;

/// What a [`Action::Check`] sees: the values captured so far (it may add some) and the
/// transcript.
pub struct Ctx<'a> {
    pub vars: &'a mut Vars,
    pub lines: &'a [String],
}

/// A check: `Ok(Some(note))` passes and records the note, `Err(why)` fails.
pub type CheckFn = Box<dyn Fn(&mut Ctx) -> Result<Option<String>, String>>;

/// Where a search for a console line starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// At the first line of the run.
    Start,
    /// At the last command (or raw input) sent: includes the lines printed while it ran.
    LastCommand,
    /// After the line the last [`Action::Line`] or [`Action::Find`] matched.
    LastMatch,
    /// At a [`Action::Mark`].
    Mark(&'static str),
    /// Only lines still to come.
    Now,
}

pub enum Action {
    /// Sends shell command `line` (`{var}` replaced by captured values) and checks the
    /// answer's status and, if given, that its text (after `STATUS <code> `) matches `answer`,
    /// whose named groups are captured. No answer within `timeout` ends the run.
    Command {
        line: String,
        status: u16,
        answer: Option<String>,
        timeout: Duration,
    },
    /// Waits until a console line at or after `from` matches `regex` (named groups captured).
    Line {
        regex: String,
        from: From,
        timeout: Duration,
    },
    /// No console line at or after `from` may match `regex` for `during` from now.
    NoLine {
        regex: String,
        from: From,
        during: Duration,
    },
    /// Captures from the first (or, with `last`, the last) line already seen after `from`
    /// that matches `regex`, without waiting.
    Find {
        regex: String,
        from: From,
        last: bool,
    },
    /// Types raw bytes on the console.
    Send(Vec<u8>),
    Pause(Duration),
    /// Names the current point of the transcript, for [`From::Mark`].
    Mark(&'static str),
    /// Judges captured values (and the transcript).
    Check {
        what: String,
        f: CheckFn,
    },
    /// Stops QEMU and boots it again on the same disk, then waits for the agent.
    Reboot,
}

/// One step: what to do, and the test case it counts for (a case passes when all of its
/// steps did).
pub struct Step {
    pub case: &'static str,
    pub action: Action,
}

impl Step {
    /// `command` must be answered `status`.
    pub fn cmd(case: &'static str, command: &str, status: u16) -> Step {
        Step {
            case,
            action: Action::Command {
                line: command.into(),
                status,
                answer: None,
                timeout: ANSWER_TIMEOUT,
            },
        }
    }

    /// `get uri` must be answered 200 with a value matching `value`.
    pub fn get(case: &'static str, uri: &str, value: &str) -> Step {
        Step::cmd(case, &format!("get {uri}"), 200).answer(value)
    }

    /// `VirMO/<vm>/State` must be `state`.
    pub fn state(case: &'static str, vm: &str, state: u8) -> Step {
        Step::get(case, &format!("./VirMO/{vm}/State"), &format!("^{state}$"))
    }

    /// `exec VirMO/<vm>/Operations/<op>` must be answered `status`.
    pub fn op(case: &'static str, vm: &str, op: &str, status: u16) -> Step {
        Step::cmd(case, &format!("exec ./VirMO/{vm}/Operations/{op}"), status)
    }

    /// A console line matching `regex` must come (from the last command on).
    pub fn line(case: &'static str, regex: &str) -> Step {
        Step {
            case,
            action: Action::Line {
                regex: regex.into(),
                from: From::LastCommand,
                timeout: LINE_TIMEOUT,
            },
        }
    }

    /// No line matching `regex` after `from` for `during`.
    pub fn no_line(case: &'static str, regex: &str, from: From, during: Duration) -> Step {
        Step {
            case,
            action: Action::NoLine {
                regex: regex.into(),
                from,
                during,
            },
        }
    }

    /// Captures from the last line after `from` matching `regex`, already seen.
    pub fn find_last(case: &'static str, regex: &str, from: From) -> Step {
        Step {
            case,
            action: Action::Find {
                regex: regex.into(),
                from,
                last: true,
            },
        }
    }

    pub fn send(case: &'static str, bytes: &[u8]) -> Step {
        Step {
            case,
            action: Action::Send(bytes.to_vec()),
        }
    }

    pub fn pause(case: &'static str, d: Duration) -> Step {
        Step {
            case,
            action: Action::Pause(d),
        }
    }

    pub fn mark(case: &'static str, name: &'static str) -> Step {
        Step {
            case,
            action: Action::Mark(name),
        }
    }

    pub fn check(
        case: &'static str,
        what: &str,
        f: impl Fn(&mut Ctx) -> Result<Option<String>, String> + 'static,
    ) -> Step {
        Step {
            case,
            action: Action::Check {
                what: what.into(),
                f: Box::new(f),
            },
        }
    }

    pub fn reboot(case: &'static str) -> Step {
        Step {
            case,
            action: Action::Reboot,
        }
    }

    /// The answer's text must match `regex` ([`Action::Command`] only).
    pub fn answer(mut self, regex: &str) -> Step {
        if let Action::Command { answer, .. } = &mut self.action {
            *answer = Some(regex.into());
        }
        self
    }

    /// Searches from `at` ([`Action::Line`], [`Action::Find`]).
    pub fn from(mut self, at: From) -> Step {
        match &mut self.action {
            Action::Line { from, .. } | Action::Find { from, .. } => *from = at,
            _ => {}
        }
        self
    }

    /// Waits at most `d` ([`Action::Line`], [`Action::Command`]).
    pub fn timeout(mut self, d: Duration) -> Step {
        match &mut self.action {
            Action::Line { timeout, .. } | Action::Command { timeout, .. } => *timeout = d,
            _ => {}
        }
        self
    }
}

/// `{name}` in `text` replaced by the value of `name` (`[a-z_][a-z0-9_]*`; other braces, such
/// as regex repetitions `{2}`, stay), each value passed through `escape`. Names no value.
pub fn substitute(
    text: &str,
    vars: &Vars,
    escape: impl Fn(&str) -> String,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let is_var = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && after[name_len..].starts_with('}');
        if !is_var {
            out.push_str(&rest[..=open]);
            rest = after;
            continue;
        }
        let value = vars
            .get(name)
            .ok_or_else(|| format!("no value for {{{name}}} (the step that captures it failed)"))?;
        out.push_str(&rest[..open]);
        out.push_str(&escape(value));
        rest = &after[name_len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A captured value as a number (decimal, or hex with `0x`).
pub fn num(vars: &Vars, name: &str) -> Result<u64, String> {
    let v = vars
        .get(name)
        .ok_or_else(|| format!("no value for {name} (the step that captures it failed)"))?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    }
    .map_err(|_| format!("{name}={v} is not a number"))
}

/// Fails unless `a == b`, naming both.
fn expect_eq(what: &str, a: u64, b: u64) -> Result<Option<String>, String> {
    if a == b {
        Ok(Some(format!("{what}: {a}")))
    } else {
        Err(format!("{what}: {a}, expected {b}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The hypervisor's memory accounting

/// A stage-2 translation table: one 4 KiB frame (`hypervisor/src/memory/pagetable.rs`).
const TABLE_BYTES: u64 = 4096;
/// What one level-1 entry maps: 1 GiB (4 KiB granule, the walk starts at level 1).
const L1_ENTRY: u64 = 1 << 30;
/// What one level-2 entry maps: 2 MiB, the block size the hypervisor uses for RAM.
const L2_ENTRY: u64 = 2 << 20;

/// The bytes of stage-2 tables the hypervisor takes from the free RAM for a VM whose `ram`
/// bytes sit at IPA `ipa`, on a GICv3 host (no GICV frame mapped).
///
/// `memory::pagetable` starts the walk at level 1 (39-bit IPA): one root table, then one
/// level-2 table per 1 GiB of IPA space the RAM touches, in which the RAM is mapped with
/// 2 MiB blocks: its IPA, size and PA are all multiples of 2 MiB (`RAM_ALIGN` in
/// hypervisor/src/vm/machine.rs; the agent refuses RAM that is not a multiple of 2 MiB), so
/// no level-3 table. (A whole 1 GiB would be one level-1 block if its PA were 1 GiB aligned;
/// the suites' VMs are far smaller.) Suspend frees these tables with the RAM, and resume
/// allocates them again.
pub fn stage2_table_bytes(ipa: u64, ram: u64) -> u64 {
    assert!(
        ipa.is_multiple_of(L2_ENTRY) && ram.is_multiple_of(L2_ENTRY) && ram > 0,
        "VM RAM is mapped in 2 MiB blocks"
    );
    let first = ipa / L1_ENTRY;
    let last = (ipa + ram - 1) / L1_ENTRY;
    TABLE_BYTES * (1 + (last - first + 1))
}

/// A check that the free RAM went up (or down) by exactly `vm_ram_var` bytes of RAM plus its
/// stage-2 tables (RAM at `ipa`) between the captures `before` and `after`.
fn ram_delta_check(
    case: &'static str,
    before: &'static str,
    after: &'static str,
    vm_ram_var: &'static str,
    ipa: u64,
    freed: bool,
) -> Step {
    let what = if freed {
        format!("FreeRAM rose by the VM's RAM plus its stage-2 tables ({before} -> {after})")
    } else {
        format!("FreeRAM fell by the VM's RAM plus its stage-2 tables ({before} -> {after})")
    };
    Step::check(case, &what.clone(), move |c| {
        let (b, a, ram) = (
            num(c.vars, before)?,
            num(c.vars, after)?,
            num(c.vars, vm_ram_var)?,
        );
        let tables = stage2_table_bytes(ipa, ram);
        let delta = if freed {
            a.checked_sub(b)
        } else {
            b.checked_sub(a)
        };
        match delta {
            Some(d) if d == ram + tables => Ok(Some(format!(
                "{what}: {b} -> {a}, {d} bytes = RAM {ram} + stage-2 tables {tables}"
            ))),
            _ => Err(format!(
                "{what}: {b} -> {a}, expected a change of RAM {ram} + stage-2 tables {tables} = {}",
                ram + tables
            )),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The console and the engine

/// Where the steps are played: a QEMU running the hypervisor, or a script in unit tests.
pub trait Console {
    /// Types `bytes` on the serial console.
    fn send(&mut self, bytes: &[u8]) -> Result<(), SessionError>;
    /// The next console line within `timeout`; `Ok(None)` if none came.
    fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, SessionError>;
    /// Stops the machine and starts it again on the same disk.
    fn reboot(&mut self) -> Result<(), SessionError>;
    /// Writes a line of the runner's own to the log.
    fn note(&mut self, _text: &str) {}
}

/// The state of one test case while the steps run.
struct CaseState {
    name: &'static str,
    failure: Option<String>,
    time: Duration,
    output: Vec<String>,
    /// Steps of this case not yet played.
    left: usize,
}

/// Plays `steps` on `console` (after the agent's ready line) and judges them: one
/// [`CaseResult`] per case, in the order of their first step.
pub fn run_steps(console: &mut dyn Console, steps: &[Step]) -> Vec<CaseResult> {
    let mut engine = Engine {
        console,
        lines: Vec::new(),
        marks: BTreeMap::new(),
        vars: Vars::new(),
        last_command: 0,
        last_match: 0,
    };
    let mut cases: Vec<CaseState> = Vec::new();
    for s in steps {
        match cases.iter_mut().find(|c| c.name == s.case) {
            Some(c) => c.left += 1,
            None => cases.push(CaseState {
                name: s.case,
                failure: None,
                time: Duration::ZERO,
                output: Vec::new(),
                left: 1,
            }),
        }
    }
    let mut fatal = engine.wait_ready().err();
    for step in steps {
        if fatal.is_some() {
            break;
        }
        let case = cases
            .iter_mut()
            .find(|c| c.name == step.case)
            .expect("every step's case is listed");
        let start = Instant::now();
        let mut output = Vec::new();
        match engine.play(&step.action, &mut output) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                output.push(format!("xtask: failed: {why}"));
                case.failure.get_or_insert(why);
            }
            Err(e) => {
                let why = e.to_string();
                case.failure.get_or_insert(why.clone());
                fatal = Some(e);
            }
        }
        // The runner's own lines go to the log too (the console logs what it types).
        for line in &output {
            if line.starts_with("xtask: ") && !line.starts_with("xtask: console input") {
                engine.console.note(&format!("{} {line}", case.name));
            }
        }
        case.time += start.elapsed();
        case.output.extend(output);
        case.left -= 1;
    }
    cases
        .into_iter()
        .map(|c| {
            let failure = match (&c.failure, &fatal) {
                (Some(f), _) => Some(f.clone()),
                (None, Some(e)) if c.left > 0 => Some(format!("not reached: {e}")),
                _ => None,
            };
            CaseResult {
                vm: None,
                name: c.name.into(),
                failure,
                time: c.time,
                output: c.output,
            }
        })
        .collect()
}

struct Engine<'c> {
    console: &'c mut dyn Console,
    /// Every console line seen, in order.
    lines: Vec<String>,
    marks: BTreeMap<&'static str, usize>,
    vars: Vars,
    /// The transcript's length when the last command (or input) was sent.
    last_command: usize,
    /// Just after the line the last search matched.
    last_match: usize,
}

/// A step's verdict: `Err` (outer) ends the run; `Ok(Err(why))` fails the step's case.
type Played = Result<Result<(), String>, SessionError>;

impl Engine<'_> {
    fn next_line(&mut self, deadline: Instant) -> Result<Option<usize>, SessionError> {
        let left = deadline.saturating_duration_since(Instant::now());
        Ok(self.console.next_line(left)?.map(|line| {
            self.lines.push(line);
            self.lines.len() - 1
        }))
    }

    /// The index of the first line at or after `from` that satisfies `f`, waiting until
    /// `deadline` for it.
    fn search(
        &mut self,
        from: usize,
        deadline: Instant,
        f: impl Fn(&str) -> bool,
    ) -> Result<Option<usize>, SessionError> {
        if let Some(i) = (from..self.lines.len()).find(|&i| f(&self.lines[i])) {
            return Ok(Some(i));
        }
        while let Some(i) = self.next_line(deadline)? {
            if f(&self.lines[i]) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The shell did not answer: asks the hypervisor for every VM's CPU accounting (Ctrl-]
    /// `s`, `#HV sched-stats` records) and reads the console for a while, so that the log
    /// shows whether the hypervisor still runs and the management VM still gets its CPU.
    fn diagnose_silence(&mut self, out: &mut Vec<String>) -> Result<(), SessionError> {
        const STATS: [u8; 2] = [0x1D, b's'];
        out.push("xtask: no answer: asking the hypervisor for the VMs' CPU accounting".into());
        self.console.send(&STATS)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some(i) = self.next_line(deadline)? {
            out.push(self.lines[i].clone());
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), SessionError> {
        let from = self.lines.len();
        let ready = format!("{PREFIX}{READY}");
        match self.search(from, Instant::now() + READY_TIMEOUT, |l| {
            l.starts_with(&ready)
        })? {
            Some(_) => Ok(()),
            None => Err(SessionError::Timeout(
                "the management agent to be ready".into(),
            )),
        }
    }

    fn index(&self, from: From) -> Result<usize, String> {
        Ok(match from {
            From::Start => 0,
            From::LastCommand => self.last_command,
            From::LastMatch => self.last_match,
            From::Now => self.lines.len(),
            From::Mark(m) => *self
                .marks
                .get(m)
                .ok_or_else(|| format!("no mark `{m}` (a suite definition error)"))?,
        })
    }

    fn regex(&self, pattern: &str) -> Result<Regex, String> {
        let pattern = substitute(pattern, &self.vars, regex::escape)?;
        Regex::new(&pattern).map_err(|e| format!("bad regex `{pattern}`: {e}"))
    }

    /// Stores the named groups of `re` in `text`.
    fn capture(&mut self, re: &Regex, text: &str) {
        if let Some(caps) = re.captures(text) {
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    self.vars.insert(name.to_string(), m.as_str().to_string());
                }
            }
        }
    }

    fn play(&mut self, action: &Action, out: &mut Vec<String>) -> Played {
        match action {
            Action::Command {
                line,
                status,
                answer,
                timeout,
            } => {
                let line = match substitute(line, &self.vars, str::to_string) {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(format!("`{line}` not sent: {e}"))),
                };
                let re = match answer.as_deref().map(|a| self.regex(a)).transpose() {
                    Ok(re) => re,
                    Err(e) => return Ok(Err(e)),
                };
                self.last_command = self.lines.len();
                out.push(format!("> {line}"));
                self.console.send(format!("{line}\r").as_bytes())?;
                let answer_prefix = format!("{PREFIX}STATUS ");
                let deadline = Instant::now() + *timeout;
                let Some(i) = self.search(self.last_command, deadline, |l| {
                    l.starts_with(&answer_prefix)
                })?
                else {
                    self.diagnose_silence(out)?;
                    return Err(SessionError::Timeout(format!("the answer to `{line}`")));
                };
                let got = self.lines[i][PREFIX.len()..].to_string();
                out.push(format!("< {got}"));
                let code = status_of(&got);
                let text = got
                    .strip_prefix(&format!("STATUS {code}"))
                    .map(|t| t.strip_prefix(' ').unwrap_or(t))
                    .unwrap_or("")
                    .to_string();
                if code != *status {
                    return Ok(Err(format!(
                        "`{line}` answered `{got}`, expected status {status}"
                    )));
                }
                if let Some(re) = re {
                    if !re.is_match(&text) {
                        return Ok(Err(format!(
                            "`{line}` answered `{got}`: `{text}` does not match `{re}`"
                        )));
                    }
                    self.capture(&re, &text);
                }
                Ok(Ok(()))
            }
            Action::Line {
                regex,
                from,
                timeout,
            } => {
                let (re, from) = match self
                    .regex(regex)
                    .and_then(|re| Ok((re, self.index(*from)?)))
                {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(e)),
                };
                let deadline = Instant::now() + *timeout;
                match self.search(from, deadline, |l| re.is_match(l))? {
                    Some(i) => {
                        let line = self.lines[i].clone();
                        out.push(line.clone());
                        self.capture(&re, &line);
                        self.last_match = i + 1;
                        Ok(Ok(()))
                    }
                    None => Ok(Err(format!(
                        "no console line matched `{re}` within {}s",
                        timeout.as_secs_f64()
                    ))),
                }
            }
            Action::NoLine {
                regex,
                from,
                during,
            } => {
                let (re, from) = match self
                    .regex(regex)
                    .and_then(|re| Ok((re, self.index(*from)?)))
                {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(e)),
                };
                let deadline = Instant::now() + *during;
                let found = self.search(from, deadline, |l| re.is_match(l))?;
                // Read on to the end of the quiet time even after a bad line: the next steps
                // expect the time to have passed.
                while self.next_line(deadline)?.is_some() {}
                match found {
                    None => {
                        out.push(format!(
                            "xtask: no line matched `{re}` for {}s",
                            during.as_secs_f64()
                        ));
                        Ok(Ok(()))
                    }
                    Some(i) => Ok(Err(format!(
                        "`{}` matched `{re}` (none may for {}s)",
                        self.lines[i],
                        during.as_secs_f64()
                    ))),
                }
            }
            Action::Find { regex, from, last } => {
                let (re, from) = match self
                    .regex(regex)
                    .and_then(|re| Ok((re, self.index(*from)?)))
                {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(e)),
                };
                let mut hits = (from..self.lines.len()).filter(|&i| re.is_match(&self.lines[i]));
                let hit = if *last { hits.next_back() } else { hits.next() };
                match hit {
                    Some(i) => {
                        let line = self.lines[i].clone();
                        out.push(line.clone());
                        self.capture(&re, &line);
                        self.last_match = i + 1;
                        Ok(Ok(()))
                    }
                    None => Ok(Err(format!("no console line so far matched `{re}`"))),
                }
            }
            Action::Send(bytes) => {
                self.last_command = self.lines.len();
                out.push(format!(
                    "xtask: console input: {}",
                    qemu::escape_bytes(bytes)
                ));
                self.console.send(bytes)?;
                Ok(Ok(()))
            }
            Action::Pause(d) => {
                let deadline = Instant::now() + *d;
                while self.next_line(deadline)?.is_some() {}
                Ok(Ok(()))
            }
            Action::Mark(name) => {
                self.marks.insert(name, self.lines.len());
                Ok(Ok(()))
            }
            Action::Check { what, f } => {
                let mut ctx = Ctx {
                    vars: &mut self.vars,
                    lines: &self.lines,
                };
                match f(&mut ctx) {
                    Ok(note) => {
                        out.push(format!("xtask: ok: {}", note.as_deref().unwrap_or(what)));
                        Ok(Ok(()))
                    }
                    Err(why) => Ok(Err(why)),
                }
            }
            Action::Reboot => {
                out.push("xtask: QEMU stopped and started again on the same disk".into());
                self.console.reboot()?;
                self.wait_ready()?;
                Ok(Ok(()))
            }
        }
    }
}

/// A QEMU machine as a [`Console`]: every line and every input goes to the suite's log.
struct QemuConsole {
    config: QemuConfig,
    qemu: Qemu,
    log: BufWriter<File>,
    tail: VecDeque<String>,
}

impl QemuConsole {
    fn start(config: &QemuConfig, log_path: &Path) -> Result<QemuConsole, String> {
        let file = File::create(log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut log = BufWriter::new(file);
        let _ = writeln!(log, "xtask: {}", config.command_line());
        let qemu =
            Qemu::spawn_with_input(config, SpawnOptions::default()).map_err(|e| e.to_string())?;
        Ok(QemuConsole {
            config: config.clone(),
            qemu,
            log,
            tail: VecDeque::with_capacity(TAIL_LINES),
        })
    }

    fn record(&mut self, line: &str) {
        let _ = writeln!(self.log, "{line}");
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    /// Stops QEMU, logging what it still printed.
    fn stop(&mut self) {
        for event in self.qemu.stop() {
            match event {
                ConsoleEvent::Line(l) => self.record(&l),
                ConsoleEvent::Stderr(l) => self.record(&format!("qemu stderr: {l}")),
                ConsoleEvent::Closed => {}
            }
        }
        self.record("xtask: QEMU stopped by the runner");
        let _ = self.log.flush();
    }
}

impl Console for QemuConsole {
    fn send(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.record(&format!(
            "xtask: console input: {}",
            qemu::escape_bytes(bytes)
        ));
        self.qemu
            .write_input(bytes)
            .map_err(|e| SessionError::Input(e.to_string()))
    }

    fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, SessionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.qemu.recv_timeout(left) {
                Ok(ConsoleEvent::Line(line)) => {
                    self.record(&line);
                    if let Some(m) = line.strip_prefix("#HV panic") {
                        return Err(SessionError::Panic(m.trim().to_string()));
                    }
                    return Ok(Some(line));
                }
                Ok(ConsoleEvent::Stderr(line)) => self.record(&format!("qemu stderr: {line}")),
                Ok(ConsoleEvent::Closed) => {
                    let status = self
                        .qemu
                        .wait()
                        .map(|s| qemu::describe_status(&s))
                        .unwrap_or_default();
                    self.record(&format!("xtask: QEMU exited ({status})"));
                    return Err(SessionError::Closed);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(SessionError::Closed);
                }
            }
        }
    }

    fn reboot(&mut self) -> Result<(), SessionError> {
        self.stop();
        self.record(&format!("xtask: {}", self.config.command_line()));
        self.qemu = Qemu::spawn_with_input(&self.config, SpawnOptions::default())
            .map_err(|e| SessionError::Input(e.to_string()))?;
        Ok(())
    }

    fn note(&mut self, text: &str) {
        self.record(text);
    }
}

// ---------------------------------------------------------------------------------------------
// Running a suite

/// A management suite: the images its store holds, the machine, the steps.
pub struct MgmtSuite {
    pub name: String,
    pub smp: u32,
    pub memory_mib: u64,
    pub images: Vec<ImageSpec>,
    pub steps: Vec<Step>,
}

/// The boot bundle of every management suite: no VM of its own, only the management VM
/// (embedded in the hypervisor), and fault injection allowed.
pub fn bundle() -> Result<Vec<u8>, String> {
    let mut b = BundleBuilder::new();
    b.flags = BundleFlags(BundleFlags::MANAGEMENT_VM | BundleFlags::FAULT_INJECTION);
    b.build().map_err(|e| e.to_string())
}

/// Runs management suite `name` (one of [`MGMT_SUITES`]). Writes `<out_dir>/<name>.log` (the
/// console of every boot, the input typed and the runner's notes), `<name>.bundle.bin` and
/// `<name>.disk.img`. Never fails: a problem before QEMU starts is a failed `setup` case.
pub fn run_mgmt_suite(name: &str, artifacts: &Artifacts, out_dir: &Path) -> SuiteReport {
    let start = Instant::now();
    let log = out_dir.join(format!("{name}.log"));
    let setup = || -> Result<(MgmtSuite, QemuConfig), String> {
        let suite = suite(name, artifacts)?;
        fs::create_dir_all(out_dir)
            .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
        let bundle_path = out_dir.join(format!("{name}.bundle.bin"));
        fs::write(&bundle_path, bundle()?)
            .map_err(|e| format!("cannot write {}: {e}", bundle_path.display()))?;
        let disk_path = out_dir.join(format!("{name}.disk.img"));
        disk::create(&disk_path, &suite.images, false)?;
        let config = QemuConfig {
            smp: suite.smp,
            gic: 3,
            icount: false,
            memory_mib: suite.memory_mib,
            kernel: artifacts.hypervisor_bin.clone(),
            initrd: bundle_path,
            disk: Some(disk_path),
        };
        Ok((suite, config))
    };
    let (suite, config) = match setup() {
        Ok(x) => x,
        Err(e) => return crate::failed_setup(name, out_dir, start, e),
    };
    let mut console = match QemuConsole::start(&config, &log) {
        Ok(c) => c,
        Err(e) => return crate::failed_setup(name, out_dir, start, e),
    };
    let cases = run_steps(&mut console, &suite.steps);
    console.stop();
    SuiteReport {
        name: name.to_string(),
        time: start.elapsed(),
        cases,
        tail: console.tail.into_iter().collect(),
        log,
        metrics: vec![],
        skipped: None,
    }
}

/// Suite `name` with its images (read from `artifacts`).
pub fn suite(name: &str, artifacts: &Artifacts) -> Result<MgmtSuite, String> {
    let guest = |program: &str| -> Result<ImageSpec, String> {
        Ok(disk::guest_program_image(
            program,
            GuestImages::guest_elf(artifacts, program)?,
            GUEST_RAM_MIB,
        ))
    };
    let (images, memory_mib) = match name {
        LIFECYCLE | SUSPEND_COUNTER | APPLY_CHANGES | RESTART | LONG_LINES | FAULTS => {
            (vec![guest("counter")?], DEFAULT_MEMORY_MIB)
        }
        DELETE_SCRUB => (vec![guest("scrub")?], DEFAULT_MEMORY_MIB),
        LINUX_SUSPEND | LINUX_SUSPEND_CONSOLE => {
            let image = linux_image(artifacts, name == LINUX_SUSPEND)?;
            let memory = machine_mib(&image);
            (vec![image], memory)
        }
        _ => return Err(format!("no management suite `{name}`")),
    };
    Ok(MgmtSuite {
        name: name.to_string(),
        smp: 2,
        memory_mib,
        images,
        steps: steps(name).ok_or_else(|| format!("no management suite `{name}`"))?,
    })
}

/// The Linux image of the Linux suites' store: Debian's kernel and the harness initramfs,
/// 256 MiB by default, `hvname=lin` (the name its markers carry); with `heartbeat`,
/// `hvtest=heartbeat`: the initramfs prints `HV-ALIVE <n> <uptime>` every second instead of
/// running a shell (xtask/src/init.sh).
fn linux_image(artifacts: &Artifacts, heartbeat: bool) -> Result<ImageSpec, String> {
    let images = artifacts
        .linux
        .as_ref()
        .ok_or("the Linux guest images are not prepared (scripts/fetch-guest-images.sh)")?;
    let read = |p: &Path| fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    Ok(disk::vm_image(&GuestVm {
        name: LINUX_VM.into(),
        format: BundleFormat::Linux,
        image: read(&images.kernel)?,
        initrd: read(&images.initramfs)?,
        ram: LINUX_RAM,
        ram_base: linux::LINUX_IPA_BASE,
        load_offset: 0,
        vcpus: 1,
        cmdline: format!(
            "{} hvname={LINUX_VM}{}",
            linux::DEFAULT_CMDLINE,
            if heartbeat { " hvtest=heartbeat" } else { "" }
        ),
        cpu_pct: None,
    }))
}

/// QEMU `-m` for a machine that runs the management VM and one VM of `image`: the
/// hypervisor's reserve, the management VM's RAM, the VM's RAM and the copy of its image the
/// hypervisor keeps in memory (for power-on), rounded up to 256 MiB, at least the 1 GiB of
/// the test-guest suites.
pub fn machine_mib(image: &ImageSpec) -> u64 {
    const STEP: u64 = 256 << 20;
    let staging = (image.kernel.len() + image.initrd.len()) as u64;
    let bytes = linux::HYPERVISOR_RESERVE + MGMT_RAM + image.default_ram + staging;
    (bytes.div_ceil(STEP) * STEP).max(DEFAULT_MEMORY_MIB << 20) >> 20
}

// ---------------------------------------------------------------------------------------------
// The suites

/// `add ./VirMO/<vm>`, its CreateParams (`ImgID={img}&<params>`), Create answered 200, and
/// the hypervisor's `vm-create` record, whose `ram=` and `pa=` are captured as `<vm>_ram` and
/// `<vm>_pa`.
fn create_vm(case: &'static str, vm: &str, params: &str) -> Vec<Step> {
    let params = if params.is_empty() {
        String::new()
    } else {
        format!("&{params}")
    };
    vec![
        Step::cmd(case, &format!("add ./VirMO/{vm}"), 200),
        Step::cmd(
            case,
            &format!("replace ./VirMO/{vm}/CreateParams ImgID={{img}}{params}"),
            200,
        ),
        Step::op(case, vm, "Create", 200),
        Step::line(
            case,
            &format!(
                r"^#HV vm-create id=\d+ name={vm} image={{img}} ram=(?P<{vm}_ram>\d+) pa=(?P<{vm}_pa>0x[0-9a-f]+) "
            ),
        ),
    ]
}

/// `get ./VMImgMO/<program>/ImgID`, captured as `img`.
fn image_id(case: &'static str, program: &str) -> Step {
    Step::get(
        case,
        &format!("./VMImgMO/{program}/ImgID"),
        r"^(?P<img>\d+)$",
    )
}

/// [`FAULTS`]: each failure path of the life cycle on the real hypervisor. The management
/// shell's `fault ram|disk|image 1` (bundle flag `FAULT_INJECTION`) makes the next RAM
/// allocation, disk request or image read fail; the operation must fail with the status that
/// says why, leave the VM in its state and the free RAM as it was, and succeed when tried again.
fn faults() -> Vec<Step> {
    let vm = "f";
    // `op` of `vm` with `fault` injected: refused with `status`, `state` kept, FreeRAM kept.
    let refused = |case: &'static str, fault: &str, op: &str, status: u16, state: u8| {
        vec![
            free_ram(case, "free_before"),
            Step::cmd(case, &format!("fault {fault} 1"), 200),
            Step::op(case, vm, op, status),
            Step::state(case, vm, state),
            free_ram(case, "free_after"),
            Step::check(case, "FreeRAM unchanged", |c| {
                expect_eq(
                    "FreeRAM after the failed operation",
                    num(c.vars, "free_after")?,
                    num(c.vars, "free_before")?,
                )
            }),
        ]
    };
    let counting = |case: &'static str| Step::line(case, r"^f\| count=\d+$");
    let mut s = vec![
        image_id("create_without_ram", "counter"),
        Step::cmd("create_without_ram", "add ./VirMO/f", 200),
        Step::cmd(
            "create_without_ram",
            "replace ./VirMO/f/CreateParams ImgID={img}&RAM=16M&Running=true",
            200,
        ),
    ];
    s.extend(refused("create_without_ram", "ram", "Create", 420, 0));
    s.extend(refused(
        "create_image_unreadable",
        "image",
        "Create",
        510,
        0,
    ));
    s.extend(refused("create_disk_error", "disk", "Create", 510, 0));
    s.extend([
        Step::no_line(
            "create_disk_error",
            r"^#HV vm-create ",
            From::Start,
            Duration::ZERO,
        ),
        Step::op("create_after_faults", vm, "Create", 200),
        Step::state("create_after_faults", vm, 2),
        counting("create_after_faults"),
    ]);
    // The VM keeps running through a failed suspend.
    s.extend(refused("suspend_disk_error", "disk", "Suspend", 510, 2));
    s.extend([
        counting("suspend_disk_error"),
        Step::op("suspend_after_fault", vm, "Suspend", 200),
        Step::state("suspend_after_fault", vm, 3),
    ]);
    s.extend(refused("resume_without_ram", "ram", "Resume", 420, 3));
    s.extend(refused("resume_disk_error", "disk", "Resume", 510, 3));
    s.extend([
        Step::op("resume_after_faults", vm, "Resume", 200),
        Step::state("resume_after_faults", vm, 2),
        counting("resume_after_faults"),
        Step::op("power_on_without_ram", vm, "PowerOff", 200),
        Step::state("power_on_without_ram", vm, 1),
    ]);
    s.extend(refused("power_on_without_ram", "ram", "PowerOn", 420, 1));
    s.extend([
        Step::op("power_on_after_fault", vm, "PowerOn", 200),
        Step::state("power_on_after_fault", vm, 2),
        counting("power_on_after_fault"),
        // The tree's record cannot be written: the whole command is rolled back.
        Step::cmd("delete_disk_error", "fault disk 1", 200),
        Step::op("delete_disk_error", vm, "Delete", 510).answer("rolled back"),
        Step::state("delete_disk_error", vm, 2),
        counting("delete_disk_error"),
        Step::op("delete_after_fault", vm, "Delete", 200),
        Step::cmd("delete_after_fault", "get ./VirMO/f", 404),
    ]);
    s
}

/// `FreeRAM` of `VirMO/DeviceResources`, captured as `var`.
fn free_ram(case: &'static str, var: &str) -> Step {
    Step::get(
        case,
        "./VirMO/DeviceResources",
        &format!(r"(^|&)FreeRAM=(?P<{var}>\d+)(&|$)"),
    )
}

/// The steps of suite `name`.
pub fn steps(name: &str) -> Option<Vec<Step>> {
    Some(match name {
        LIFECYCLE => lifecycle(),
        SUSPEND_COUNTER => suspend_counter(),
        DELETE_SCRUB => delete_scrub(),
        APPLY_CHANGES => apply_changes(),
        RESTART => restart(),
        LINUX_SUSPEND => linux_suspend(false),
        LINUX_SUSPEND_CONSOLE => linux_suspend(true),
        LONG_LINES => long_lines(),
        FAULTS => faults(),
        _ => return None,
    })
}

/// [`LIFECYCLE`]: a `counter` VM through every state, `State` read after each step; wrong-state
/// operations refused with nothing changed; refused Creates; DM command errors.
fn lifecycle() -> Vec<Step> {
    let vm = "vm1";
    let mut s = vec![
        image_id("add_makes_state_0", "counter"),
        Step::cmd("add_makes_state_0", "add ./VirMO/vm1", 200),
        Step::state("add_makes_state_0", vm, 0),
        Step::get("add_makes_state_0", "./VirMO/vm1/VMID", r"^\d+$"),
        // The MO identifiers and the nodes of sections 8 and 9 (Appendix C, VirMO-T-001..004).
        Step::get(
            "mo_identifiers",
            "./VirMO?prop=Type",
            "^urn:oma:mo:oma-virmo:1.0$",
        ),
        Step::get(
            "mo_identifiers",
            "./VMImgMO?prop=Type",
            "^urn:oma:mo:oma-vmimgmo:1.0$",
        ),
        Step::get(
            "required_nodes",
            "./VirMO/vm1",
            "^CreateParams/DMTree/Description/Ext/Operations/Resources/State/UI/VMID$",
        ),
        Step::get(
            "required_nodes",
            "./VirMO/vm1/Operations",
            "^Create/Delete/ExecUICmd/PowerOff/PowerOn/Resume/Suspend$",
        ),
        Step::get("required_nodes", "./VirMO/vm1/UI", "^Command/Result$"),
        Step::get("required_nodes", "./VirMO", "^DeviceResources/Operations/vm1$"),
        Step::get(
            "required_nodes",
            "./VMImgMO/counter",
            "^Description/DownloadURI/DownloadedLocation/Ext/ImgID/MediaType/Name/Operations/State$",
        ),
        // The store's images are Downloaded (VirMO-C-011, the part without a download).
        Step::get("store_image_downloaded", "./VMImgMO/counter/State", "^2$"),
        Step::get(
            "store_image_downloaded",
            "./VMImgMO/counter/DownloadedLocation",
            "^store:{img}$",
        ),
        Step::cmd("add_existing_node_is_418", "add ./VirMO/vm1", 418),
        Step::cmd("replace_state_is_405", "replace ./VirMO/vm1/State 2", 405),
        Step::state("replace_state_is_405", vm, 0),
        Step::cmd("get_missing_node_is_404", "get ./VirMO/nosuchvm/State", 404),
        Step::cmd("get_missing_node_is_404", "get ./VirMO/vm1/NoSuchNode", 404),
        // An image the store does not have: refused, nothing created.
        Step::cmd(
            "create_missing_image_refused",
            "replace ./VirMO/vm1/CreateParams ImgID=99",
            200,
        ),
        Step::op("create_missing_image_refused", vm, "Create", 404).answer("ImgID=99"),
        Step::state("create_missing_image_refused", vm, 0),
        Step::get(
            "create_missing_image_refused",
            "./VirMO/vm1/Ext/LastError",
            "^404 .*ImgID=99",
        ),
        Step::no_line(
            "create_missing_image_refused",
            r"^#HV vm-create ",
            From::Start,
            Duration::ZERO,
        ),
        // More RAM than is free: refused by the hypervisor, nothing allocated.
        free_ram("create_too_much_ram_refused", "free_before"),
        Step::check(
            "create_too_much_ram_refused",
            "a RAM size above the free RAM",
            |c| {
                let free = num(c.vars, "free_before")?;
                let big = (free / L2_ENTRY + 1) * L2_ENTRY;
                c.vars.insert("big".into(), big.to_string());
                Ok(Some(format!("RAM={big} > FreeRAM={free}")))
            },
        ),
        Step::cmd(
            "create_too_much_ram_refused",
            "replace ./VirMO/vm1/CreateParams ImgID={img}&RAM={big}",
            200,
        ),
        Step::op("create_too_much_ram_refused", vm, "Create", 420).answer("does not fit"),
        Step::state("create_too_much_ram_refused", vm, 0),
        free_ram("create_too_much_ram_refused", "free_after"),
        Step::check("create_too_much_ram_refused", "FreeRAM unchanged", |c| {
            expect_eq(
                "FreeRAM after the refused Create",
                num(c.vars, "free_after")?,
                num(c.vars, "free_before")?,
            )
        }),
        Step::no_line(
            "create_too_much_ram_refused",
            r"^#HV vm-create ",
            From::Start,
            Duration::ZERO,
        ),
        // Create, running.
        Step::cmd(
            "create_running",
            "replace ./VirMO/vm1/CreateParams ImgID={img}&Running=true",
            200,
        ),
        Step::mark("create_running", "created"),
        Step::op("create_running", vm, "Create", 200),
        Step::line(
            "create_running",
            r"^#HV vm-create id=\d+ name=vm1 image=\d+ ram=16777216 pa=0x[0-9a-f]+ cpu=25 running=true( |$)",
        ),
        Step::state("create_running", vm, 2),
        Step::line("create_running", r"^vm1\| count=1$").from(From::Mark("created")),
        Step::get(
            "create_running",
            "./VirMO/vm1/Resources/CurrentConfig",
            r"^RAM=16777216&Storage=0&CPU=25&Network=0&VCPUs=1$",
        ),
    ];
    // Wrong-state operations: refused (403), the state unchanged.
    let wrong = |case: &'static str, ops: &[&str], state: u8| -> Vec<Step> {
        let mut v: Vec<Step> = ops
            .iter()
            .map(|op| Step::op(case, vm, op, 403).answer(&format!("^{op} needs ")))
            .collect();
        v.push(Step::state(case, vm, state));
        v
    };
    s.extend(wrong(
        "wrong_state_ops_when_running",
        &["Resume", "PowerOn", "Create"],
        2,
    ));
    s.push(
        Step::cmd("wrong_state_ops_when_running", "delete ./VirMO/vm1", 403)
            .answer("Operations/Delete"),
    );
    s.push(Step::state("wrong_state_ops_when_running", vm, 2));
    // The image a VM boots from stays while the VM exists (VirMO-C-012).
    s.push(
        Step::cmd(
            "image_delete_refused_while_used",
            "exec ./VMImgMO/counter/Operations/Delete",
            403,
        )
        .answer("used by VirMO/vm1"),
    );
    s.push(Step::get(
        "image_delete_refused_while_used",
        "./VMImgMO/counter/State",
        "^2$",
    ));
    s.extend([
        Step::op("suspend", vm, "Suspend", 200),
        Step::line(
            "suspend",
            r"^#HV vm-suspend id=\d+ name=vm1 bytes=16777216 ",
        ),
        Step::state("suspend", vm, 3),
    ]);
    s.extend(wrong(
        "wrong_state_ops_when_suspended",
        &["Suspend", "PowerOn", "PowerOff", "Create"],
        3,
    ));
    s.extend([
        Step::op("resume", vm, "Resume", 200),
        Step::line("resume", r"^#HV vm-resume id=\d+ name=vm1 pa=0x[0-9a-f]+ "),
        Step::state("resume", vm, 2),
        Step::op("power_off", vm, "PowerOff", 200),
        Step::line(
            "power_off",
            r"^#HV vm-stopped id=\d+ name=vm1 reason=power-off( |$)",
        ),
        Step::state("power_off", vm, 1),
    ]);
    s.extend(wrong(
        "wrong_state_ops_when_powered_off",
        &["Suspend", "Resume", "PowerOff", "Create"],
        1,
    ));
    s.extend([
        Step::mark("power_on", "powered_on"),
        Step::op("power_on", vm, "PowerOn", 200),
        Step::line(
            "power_on",
            r"^#HV vm-power-on id=\d+ name=vm1 pa=0x[0-9a-f]+( |$)",
        ),
        Step::state("power_on", vm, 2),
        // Booted again from its image: the count starts over.
        Step::line("power_on", r"^vm1\| count=1$").from(From::Mark("powered_on")),
        Step::op("delete", vm, "Delete", 200),
        Step::line("delete", r"^#HV vm-delete id=\d+ name=vm1( |$)"),
        Step::cmd("delete", "get ./VirMO/vm1", 404),
        Step::cmd("delete", "get ./VirMO/vm1/State", 404),
        Step::get("delete", "./VirMO/DeviceResources", r"(^|&)VMs=0(&|$)"),
        Step::cmd(
            "image_delete",
            "exec ./VMImgMO/counter/Operations/Delete",
            200,
        ),
        Step::cmd("image_delete", "get ./VMImgMO/counter", 404),
        Step::get(
            "image_delete",
            "./VirMO/DeviceResources",
            r"(^|&)Images=0(&|$)",
        ),
    ]);
    s
}

/// [`SUSPEND_COUNTER`]: a `counter` VM suspended after `count=5` and resumed: the free RAM
/// follows, it is silent while suspended, and the count goes on where it stopped.
fn suspend_counter() -> Vec<Step> {
    let mut s = vec![image_id("create", "counter")];
    s.extend(create_vm("create", "ctr", "Running=true"));
    s.extend([
        Step::line("counting", r"^ctr\| count=5$").timeout(Duration::from_secs(30)),
        Step::check("counting", "count=1..5 in order", |c| {
            let counts = counts(c.lines, "ctr", 0, c.lines.len());
            consecutive(&counts, 1).map(|()| Some(format!("counts {counts:?}")))
        }),
        free_ram("suspend_frees_the_ram", "free_running"),
        Step::op("suspend_frees_the_ram", "ctr", "Suspend", 200),
        Step::mark("suspend_frees_the_ram", "suspended"),
        // Right after the answer: the lines read so far end with it.
        Step::find_last(
            "suspend_frees_the_ram",
            r"^ctr\| count=(?P<last>\d+)$",
            From::Start,
        ),
        Step::line(
            "suspend_frees_the_ram",
            r"^#HV vm-suspend id=\d+ name=ctr bytes={ctr_ram} ",
        ),
        Step::state("suspend_frees_the_ram", "ctr", 3),
        free_ram("suspend_frees_the_ram", "free_suspended"),
        ram_delta_check(
            "suspend_frees_the_ram",
            "free_running",
            "free_suspended",
            "ctr_ram",
            TEST_GUEST_IPA_BASE,
            true,
        ),
        Step::no_line(
            "silent_while_suspended",
            r"^ctr\| ",
            From::Mark("suspended"),
            Duration::from_millis(600),
        ),
        Step::state("silent_while_suspended", "ctr", 3),
        Step::mark("resume_continues_the_count", "resume"),
        Step::op("resume_continues_the_count", "ctr", "Resume", 200),
        Step::line(
            "resume_continues_the_count",
            r"^#HV vm-resume id=\d+ name=ctr pa=(?P<pa_resume>0x[0-9a-f]+) ",
        ),
        Step::state("resume_continues_the_count", "ctr", 2),
        Step::line("resume_continues_the_count", r"^ctr\| count=(?P<next>\d+)$")
            .from(From::Mark("resume")),
        Step::check("resume_continues_the_count", "next = last + 1", |c| {
            expect_eq(
                "the first count after resume",
                num(c.vars, "next")?,
                num(c.vars, "last")? + 1,
            )
        }),
        Step::line(
            "resume_continues_the_count",
            r"^ctr\| count=(?P<next2>\d+)$",
        )
        .from(From::LastMatch),
        Step::check("resume_continues_the_count", "then next + 1", |c| {
            expect_eq(
                "the second count after resume",
                num(c.vars, "next2")?,
                num(c.vars, "next")? + 1,
            )
        }),
        Step::check("resume_continues_the_count", "where it resumed", |c| {
            let (a, b) = (num(c.vars, "ctr_pa")?, num(c.vars, "pa_resume")?);
            Ok(Some(format!(
                "created at pa={a:#x}, resumed at pa={b:#x} ({})",
                if a == b {
                    "the same frames"
                } else {
                    "other frames"
                }
            )))
        }),
        free_ram("resume_takes_the_ram_again", "free_resumed"),
        ram_delta_check(
            "resume_takes_the_ram_again",
            "free_suspended",
            "free_resumed",
            "ctr_ram",
            TEST_GUEST_IPA_BASE,
            false,
        ),
    ]);
    s
}

/// The `count=` values of VM `vm` in `lines[from..to]`.
fn counts(lines: &[String], vm: &str, from: usize, to: usize) -> Vec<u64> {
    let prefix = format!("{vm}| count=");
    lines[from.min(to)..to]
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .collect()
}

/// Fails unless `counts` is `first, first + 1, ...`.
fn consecutive(counts: &[u64], first: u64) -> Result<(), String> {
    for (i, &n) in counts.iter().enumerate() {
        if n != first + i as u64 {
            return Err(format!(
                "count={n} where count={} was due: {counts:?}",
                first + i as u64
            ));
        }
    }
    if counts.is_empty() {
        return Err("no count= line".into());
    }
    Ok(())
}

/// [`DELETE_SCRUB`]: VM `a` (program `scrub`) fills its RAM with a pattern and is deleted; VM
/// `b` of the same size gets the same frames (the frame allocator is first fit from the top
/// and deterministic, and Delete frees everything `a` had: `b`'s image copy, RAM and tables
/// land where `a`'s were) and finds them zeroed.
fn delete_scrub() -> Vec<Step> {
    let mut s = vec![image_id("create_a", "scrub")];
    s.extend(create_vm("create_a", "a", "RAM=16M"));
    s.extend([
        Step::line("a_writes_its_pattern", r"^a\| scrub zeros=(?P<a_zeros>.*)$"),
        Step::line("a_writes_its_pattern", r"^a\| scrub pattern-written$"),
        Step::op("delete_a", "a", "Delete", 200),
        Step::line("delete_a", r"^#HV vm-delete id=\d+ name=a( |$)"),
        Step::cmd("delete_a", "get ./VirMO/a", 404),
    ]);
    s.extend(create_vm("create_b", "b", "RAM=16M"));
    s.extend([
        Step::check("b_gets_a_frames", "b's RAM is where a's was", |c| {
            let (a, b) = (num(c.vars, "a_pa")?, num(c.vars, "b_pa")?);
            if a == b {
                Ok(Some(format!("a and b both at pa={a:#x}")))
            } else {
                Err(format!(
                    "a was at pa={a:#x}, b is at pa={b:#x}: b does not reuse a's frames"
                ))
            }
        }),
        Step::line("b_sees_zeros", r"^b\| scrub zeros=(?P<b_zeros>.*)$"),
        Step::check("b_sees_zeros", "zeros=ok", |c| {
            match c.vars.get("b_zeros").map(String::as_str) {
                Some("ok") => Ok(Some("b found only zeros beyond its image".into())),
                other => Err(format!("b found `zeros={}`", other.unwrap_or("?"))),
            }
        }),
        Step::check("a_saw_zeros_too", "zeros=ok", |c| {
            match c.vars.get("a_zeros").map(String::as_str) {
                Some("ok") => Ok(None),
                other => Err(format!("a found `zeros={}`", other.unwrap_or("?"))),
            }
        }),
    ]);
    s
}

/// [`APPLY_CHANGES`]: two VMs at CPU=30; NewConfig CPU=80 for one is refused by ApplyChanges
/// (the sum would be 110 %) with nothing changed and the NewConfig kept; a RAM change of a
/// running VM is refused; then 50/30 is applied and the NewConfig nodes are gone.
fn apply_changes() -> Vec<Step> {
    let config = |case: &'static str, vm: &str, cpu: u32| {
        Step::get(
            case,
            &format!("./VirMO/{vm}/Resources/CurrentConfig"),
            &format!("^RAM=16777216&Storage=0&CPU={cpu}&Network=0&VCPUs=1$"),
        )
    };
    let allocated = |case: &'static str, pct: u32| {
        Step::get(
            case,
            "./VirMO/DeviceResources",
            &format!("(^|&)CPUAllocated={pct}(&|$)"),
        )
    };
    let apply = "exec ./VirMO/Operations/ApplyChanges";
    let mut s = vec![image_id("create_two_at_30", "counter")];
    s.extend(create_vm("create_two_at_30", "a", "CPU=30"));
    s.extend(create_vm("create_two_at_30", "b", "CPU=30"));
    s.extend([
        config("create_two_at_30", "a", 30),
        config("create_two_at_30", "b", 30),
        allocated("create_two_at_30", 60),
        Step::cmd(
            "over_100_refused",
            "add ./VirMO/a/Resources/NewConfig chr CPU=80",
            200,
        ),
        Step::cmd("over_100_refused", apply, 420).answer("110%"),
        config("unchanged_after_refusal", "a", 30),
        config("unchanged_after_refusal", "b", 30),
        allocated("unchanged_after_refusal", 60),
        // On failure every NewConfig stays, for a retry (docs/virmo.md).
        Step::get(
            "unchanged_after_refusal",
            "./VirMO/a/Resources/NewConfig",
            "^CPU=80$",
        ),
        // RAM only changes while PoweredOff.
        Step::cmd(
            "ram_change_of_running_vm_refused",
            "replace ./VirMO/a/Resources/NewConfig RAM=32M",
            200,
        ),
        Step::cmd("ram_change_of_running_vm_refused", apply, 403)
            .answer("only change while PoweredOff"),
        config("ram_change_of_running_vm_refused", "a", 30),
        Step::cmd(
            "valid_change_applied",
            "replace ./VirMO/a/Resources/NewConfig CPU=50",
            200,
        ),
        Step::cmd(
            "valid_change_applied",
            "add ./VirMO/b/Resources/NewConfig chr CPU=30",
            200,
        ),
        Step::cmd("valid_change_applied", apply, 200),
        config("valid_change_applied", "a", 50),
        config("valid_change_applied", "b", 30),
        allocated("valid_change_applied", 80),
        Step::cmd(
            "new_configs_deleted",
            "get ./VirMO/a/Resources/NewConfig",
            404,
        ),
        Step::cmd(
            "new_configs_deleted",
            "get ./VirMO/b/Resources/NewConfig",
            404,
        ),
        Step::get(
            "new_configs_deleted",
            "./VirMO/a/Resources",
            "^CurrentConfig$",
        ),
        // Both still run.
        Step::line("vms_still_run", r"^a\| count=\d+$").from(From::Now),
        Step::line("vms_still_run", r"^b\| count=\d+$").from(From::Now),
    ]);
    s
}

/// [`RESTART`]: boot 1 makes VMs `run` (Running), `off` (PoweredOff) and `sus` (Suspended)
/// and a Description; boot 2, on the same disk, finds the tree as it was, `run` PoweredOff and
/// able to power on, `sus` still Suspended and able to resume where it stopped, and new VMIDs
/// after the old ones.
fn restart() -> Vec<Step> {
    let mut s = vec![image_id("boot1", "counter")];
    s.extend(create_vm("boot1", "run", "Running=true"));
    s.push(Step::line("boot1", r"^run\| count=2$"));
    s.extend(create_vm("boot1", "off", "Running=false"));
    s.extend(create_vm("boot1", "sus", ""));
    s.extend([
        Step::line("boot1", r"^sus\| count=3$"),
        Step::op("boot1", "sus", "Suspend", 200),
        Step::find_last("boot1", r"^sus\| count=(?P<sus_last>\d+)$", From::Start),
        Step::state("boot1", "run", 2),
        Step::state("boot1", "off", 1),
        Step::state("boot1", "sus", 3),
        Step::cmd(
            "boot1",
            "replace ./VirMO/run/Description kept across a restart",
            200,
        ),
    ]);
    for vm in ["run", "off", "sus"] {
        s.push(Step::get(
            "boot1",
            &format!("./VirMO/{vm}/VMID"),
            &format!(r"^(?P<{vm}_vmid>\d+)$"),
        ));
    }
    s.extend([Step::mark("boot1", "boot2"), Step::reboot("boot1")]);
    s.push(Step::get("tree_survives", "./VirMO", "(^|/)off/run/sus$"));
    for vm in ["run", "off", "sus"] {
        s.push(Step::get(
            "tree_survives",
            &format!("./VirMO/{vm}/VMID"),
            &format!("^{{{vm}_vmid}}$"),
        ));
    }
    s.extend([
        Step::get(
            "tree_survives",
            "./VirMO/run/CreateParams",
            "^ImgID={img}&Running=true$",
        ),
        Step::get(
            "tree_survives",
            "./VirMO/off/CreateParams",
            "^ImgID={img}&Running=false$",
        ),
        Step::get("tree_survives", "./VirMO/sus/CreateParams", "^ImgID={img}$"),
        Step::get(
            "tree_survives",
            "./VirMO/run/Description",
            "^kept across a restart$",
        ),
    ]);
    // The record names the VM (its hypervisor id is not the VMID).
    s.extend([
        Step::line(
            "running_vm_comes_back_powered_off",
            r"^#HV vm-restore id=\d+ name=run was=2 now=off( |$)",
        )
        .from(From::Mark("boot2")),
        Step::state("running_vm_comes_back_powered_off", "run", 1),
        Step::state("powered_off_vm_stays_powered_off", "off", 1),
        Step::mark("running_vm_powers_on_again", "powered_on"),
        Step::op("running_vm_powers_on_again", "run", "PowerOn", 200),
        Step::line(
            "running_vm_powers_on_again",
            r"^#HV vm-power-on id=\d+ name=run ",
        ),
        Step::state("running_vm_powers_on_again", "run", 2),
        Step::line("running_vm_powers_on_again", r"^run\| count=1$").from(From::Mark("powered_on")),
        Step::cmd("vmids_not_reused", "add ./VirMO/new", 200),
        Step::get(
            "vmids_not_reused",
            "./VirMO/new/VMID",
            r"^(?P<new_vmid>\d+)$",
        ),
        Step::check(
            "vmids_not_reused",
            "the new VMID is above the old ones",
            |c| {
                let new = num(c.vars, "new_vmid")?;
                let old = ["run_vmid", "off_vmid", "sus_vmid"]
                    .iter()
                    .map(|v| num(c.vars, v))
                    .collect::<Result<Vec<_>, _>>()?;
                if old.iter().all(|&o| new > o) {
                    Ok(Some(format!("VMID {new} after {old:?}")))
                } else {
                    Err(format!("VMID {new} reuses or precedes {old:?}"))
                }
            },
        ),
    ]);
    // The suspended VM stays suspended: its RAM, vCPU and device state are on the disk, and
    // Resume continues it where it stopped (its count goes on).
    s.extend([
        Step::line(
            "suspended_vm_stays_suspended",
            r"^#HV vm-restore id=\d+ name=sus was=3 now=suspended( |$)",
        )
        .from(From::Mark("boot2")),
        Step::state("suspended_vm_stays_suspended", "sus", 3),
        Step::mark("suspended_vm_resumes", "resume"),
        Step::op("suspended_vm_resumes", "sus", "Resume", 200),
        Step::line(
            "suspended_vm_resumes",
            r"^#HV vm-resume id=\d+ name=sus pa=0x[0-9a-f]+ ",
        ),
        Step::state("suspended_vm_resumes", "sus", 2),
        Step::line("suspended_vm_resumes", r"^sus\| count=(?P<sus_next>\d+)$")
            .from(From::Mark("resume")),
        Step::check("suspended_vm_resumes", "the count goes on", |c| {
            expect_eq(
                "the first count after the resume (after the restart)",
                num(c.vars, "sus_next")?,
                num(c.vars, "sus_last")? + 1,
            )
        }),
    ]);
    s
}

/// [`LINUX_SUSPEND`] (and, with `shell`, [`LINUX_SUSPEND_CONSOLE`]): a Debian Linux VM from
/// the store, suspended and resumed: the free RAM follows, it is silent while suspended, and
/// after the resume its heartbeat goes on with the next number and an uptime that did not
/// see the suspended time (its virtual counter stood still); or, at its shell, it answers
/// what is typed into it after the resume, and the management shell still answers after.
fn linux_suspend(shell: bool) -> Vec<Step> {
    const ESC: u8 = 0x1D;
    let boot = Duration::from_secs(90);
    let ready = if shell {
        r"^lin\| HV-LINUX-READY lin$"
    } else {
        r"^lin\| HV-ALIVE 2 [0-9.]+$"
    };
    let mut s = vec![
        image_id("create", LINUX_VM),
        Step::mark("create", "created"),
    ];
    // The VM is named after its entry (`lin`).
    s.extend(create_vm("create", LINUX_VM, "RAM=256M&CPU=50"));
    s.extend([
        Step::state("create", LINUX_VM, 2),
        Step::line("boots", ready)
            .from(From::Mark("created"))
            .timeout(boot),
        // The shell prints its prompt (no line) right after.
        Step::pause("boots", Duration::from_secs(1)),
        free_ram("suspend_frees_the_ram", "free_running"),
        Step::op("suspend_frees_the_ram", LINUX_VM, "Suspend", 200),
        Step::mark("suspend_frees_the_ram", "suspended"),
    ]);
    if !shell {
        // Right after the answer: the lines read so far end with it.
        s.push(Step::find_last(
            "suspend_frees_the_ram",
            r"^lin\| HV-ALIVE (?P<last>\d+) (?P<last_up>[0-9.]+)$",
            From::Start,
        ));
    }
    s.extend([
        Step::line(
            "suspend_frees_the_ram",
            r"^#HV vm-suspend id=\d+ name=lin bytes={lin_ram} ",
        ),
        Step::state("suspend_frees_the_ram", LINUX_VM, 3),
        free_ram("suspend_frees_the_ram", "free_suspended"),
        ram_delta_check(
            "suspend_frees_the_ram",
            "free_running",
            "free_suspended",
            "lin_ram",
            linux::LINUX_IPA_BASE,
            true,
        ),
        // Three heartbeats' time.
        Step::no_line(
            "silent_while_suspended",
            r"^lin\| ",
            From::Mark("suspended"),
            Duration::from_secs(3),
        ),
        Step::mark("resume", "resume"),
        Step::op("resume", LINUX_VM, "Resume", 200),
        Step::line(
            "resume",
            r"^#HV vm-resume id=\d+ name=lin pa=(?P<pa_resume>0x[0-9a-f]+) ",
        ),
        Step::state("resume", LINUX_VM, 2),
        Step::check("resume", "where it resumed", |c| {
            let (a, b) = (num(c.vars, "lin_pa")?, num(c.vars, "pa_resume")?);
            Ok(Some(format!(
                "created at pa={a:#x}, resumed at pa={b:#x} ({})",
                if a == b {
                    "the same frames"
                } else {
                    "other frames"
                }
            )))
        }),
    ]);
    if !shell {
        s.extend([
            Step::line(
                "heartbeat_goes_on",
                r"^lin\| HV-ALIVE (?P<next>\d+) (?P<next_up>[0-9.]+)$",
            )
            .from(From::Mark("resume"))
            .timeout(Duration::from_secs(10)),
            Step::check("heartbeat_goes_on", "next = last + 1", |c| {
                expect_eq(
                    "the first heartbeat after resume",
                    num(c.vars, "next")?,
                    num(c.vars, "last")? + 1,
                )
            }),
            Step::check(
                "heartbeat_goes_on",
                "the uptime did not count the suspended time",
                |c| {
                    let up = |v: &str| -> Result<f64, String> {
                        c.vars
                            .get(v)
                            .and_then(|x| x.parse().ok())
                            .ok_or_else(|| format!("no uptime {v}"))
                    };
                    let gap = up("next_up")? - up("last_up")?;
                    // One `sleep 1` and the loop; the VM was suspended for more than 3 s.
                    if (0.9..2.5).contains(&gap) {
                        Ok(Some(format!(
                            "uptime went on by {gap:.2}s across the suspension"
                        )))
                    } else {
                        Err(format!(
                            "uptime went on by {gap:.2}s across the suspension (one heartbeat, \
                             about 1 s, expected)"
                        ))
                    }
                },
            ),
            Step::state("heartbeat_goes_on", LINUX_VM, 2),
        ]);
        return s;
    }
    s.extend([
        // The management VM is VM 1 of the console, the Linux VM VM 2.
        Step::send("shell_answers_after_resume", &[ESC, b'2']),
        Step::line(
            "shell_answers_after_resume",
            r"^\[ INFO\] console input goes to VM lin$",
        ),
        Step::pause("shell_answers_after_resume", Duration::from_millis(500)),
        Step::send("shell_answers_after_resume", b"echo resumed-$((6*7))\r"),
        Step::line("shell_answers_after_resume", r"^lin\| resumed-42$")
            .timeout(Duration::from_secs(30)),
        Step::send("management_shell_after", &[ESC, b'1']),
        Step::line(
            "management_shell_after",
            r"^\[ INFO\] console input goes to VM mgmt$",
        ),
        Step::state("management_shell_after", LINUX_VM, 2),
    ]);
    s
}

/// [`LONG_LINES`]: `replace ./VirMO/x/Description <value>` lines of 64 to 240 bytes, each read
/// back whole (the answer stays under the agent's 256-byte cut).
fn long_lines() -> Vec<Step> {
    /// (case, bytes of the line with its CR): around the hypervisor's 64-byte input buffer,
    /// then longer.
    const LINES: [(&str, usize); 8] = [
        ("line_of_63_bytes", 63),
        ("line_of_64_bytes", 64),
        ("line_of_65_bytes", 65),
        ("line_of_66_bytes", 66),
        ("line_of_100_bytes", 100),
        ("line_of_130_bytes", 130),
        ("line_of_200_bytes", 200),
        ("line_of_240_bytes", 240),
    ];
    let prefix = "replace ./VirMO/x/Description ";
    let mut s = vec![Step::cmd("setup", "add ./VirMO/x", 200)];
    for (case, len) in LINES {
        // Each value differs from the others, so a line read back is this one.
        let value: String = (0..len - 1 - prefix.len())
            .map(|i| char::from(b'A' + ((i + len) % 26) as u8))
            .collect();
        s.push(Step::cmd(case, &format!("{prefix}{value}"), 200));
        s.push(Step::get(
            case,
            "./VirMO/x/Description",
            &format!("^{}$", regex::escape(&value)),
        ));
    }
    s
}

#[cfg(test)]
mod tests;
