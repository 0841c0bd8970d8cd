//! Starting QEMU, reading its console, and typing into it ([`InputScript`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

pub const QEMU: &str = "qemu-system-aarch64";
/// QEMU `-m` of the test-guest suites (`docs/architecture.md`): 1 GiB.
pub const DEFAULT_MEMORY_MIB: u64 = 1024;

/// One QEMU `virt` machine, as `docs/architecture.md` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuConfig {
    pub smp: u32,
    /// GIC version, 2 or 3.
    pub gic: u32,
    /// `-icount shift=0,sleep=off`.
    pub icount: bool,
    /// `-m`, in MiB ([`DEFAULT_MEMORY_MIB`] unless Linux VMs need more).
    pub memory_mib: u64,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The hypervisor's disk (a raw image, see [`crate::disk`]), attached as virtio-blk.
    pub disk: Option<PathBuf>,
}

impl QemuConfig {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-M".into(),
            format!("virt,virtualization=on,gic-version={}", self.gic),
            "-cpu".into(),
            "max".into(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            memory_arg(self.memory_mib),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
        ];
        if self.icount {
            a.extend(["-icount".into(), "shift=0,sleep=off".into()]);
        }
        if let Some(disk) = &self.disk {
            a.extend(crate::disk::qemu_args(disk));
        }
        a
    }

    /// The command line, for logs and for people to paste.
    pub fn command_line(&self) -> String {
        std::iter::once(QEMU.to_string())
            .chain(self.args())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `-m` for `mib` MiB: `1G` when a whole number of GiB, else `<n>M`.
fn memory_arg(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

/// What the console reader threads report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// A line of the serial console (without its terminator).
    Line(String),
    /// A line QEMU wrote to its standard error.
    Stderr(String),
    /// The console closed: QEMU has exited (or is exiting).
    Closed,
}

/// How to connect a QEMU process.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpawnOptions {
    /// Copy the console to our standard output as it arrives (`cargo xtask run`).
    pub echo: bool,
    /// Give QEMU our standard input (the serial console's input), else `/dev/null`.
    pub inherit_stdin: bool,
    /// Give QEMU our standard error, else read it as [`ConsoleEvent::Stderr`].
    pub inherit_stderr: bool,
}

/// A running QEMU. Dropping it kills the process.
pub struct Qemu {
    child: Child,
    /// QEMU's standard input (the serial console's input), if [`Qemu::spawn_with_input`].
    stdin: Option<ChildStdin>,
    rx: Receiver<ConsoleEvent>,
    threads: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Qemu {
    pub fn spawn(config: &QemuConfig, options: SpawnOptions) -> io::Result<Qemu> {
        Self::start(config, options, false)
    }

    /// [`Qemu::spawn`] with QEMU's standard input (`-serial stdio`: the serial console's input)
    /// a pipe that [`Qemu::write_input`] writes to; `options.inherit_stdin` is ignored.
    pub fn spawn_with_input(config: &QemuConfig, options: SpawnOptions) -> io::Result<Qemu> {
        Self::start(config, options, true)
    }

    fn start(config: &QemuConfig, options: SpawnOptions, pipe_stdin: bool) -> io::Result<Qemu> {
        let mut cmd = Command::new(QEMU);
        cmd.args(config.args())
            .stdout(Stdio::piped())
            .stdin(if pipe_stdin {
                Stdio::piped()
            } else if options.inherit_stdin {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if options.inherit_stderr {
                Stdio::inherit()
            } else {
                Stdio::piped()
            });
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {QEMU}: {e}")))?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let out_tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            read_console(stdout, options.echo, out_tx)
        }));
        if let Some(stderr) = child.stderr.take() {
            threads.push(std::thread::spawn(move || {
                for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line).trim_end().to_string();
                    if tx.send(ConsoleEvent::Stderr(line)).is_err() {
                        break;
                    }
                }
            }));
        }
        Ok(Qemu {
            child,
            stdin,
            rx,
            threads,
            status: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Writes `bytes` to the serial console's input (only after [`Qemu::spawn_with_input`]).
    pub fn write_input(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "QEMU's input is not a pipe")
        })?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Result<ConsoleEvent, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Waits for QEMU to exit (after [`ConsoleEvent::Closed`], this returns at once).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.child.wait()?;
        self.status = Some(s);
        Ok(s)
    }

    /// Kills QEMU if it still runs, waits for it, and returns the events not yet received.
    pub fn stop(&mut self) -> Vec<ConsoleEvent> {
        if self.status.is_none() {
            self.terminate();
            let _ = self.wait();
        }
        self.stdin = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.rx.try_iter().collect()
    }
}

impl Qemu {
    /// Asks QEMU to quit with SIGTERM, so that it restores the terminal it may have put in raw
    /// mode (`-serial stdio` on a terminal); kills it if it is still there after a second.
    fn terminate(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let asked = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if asked {
            let until = std::time::Instant::now() + Duration::from_secs(1);
            while std::time::Instant::now() < until {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Describes an exit status for people: `exit status 1`, `signal 9`.
pub fn describe_status(s: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => s.to_string(),
    }
}

fn read_console(mut stdout: ChildStdout, echo: bool, tx: mpsc::Sender<ConsoleEvent>) {
    let mut buf = [0u8; 4096];
    let mut splitter = LineSplitter::default();
    let mut out = io::stdout();
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if echo {
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
        }
        for line in splitter.push(&buf[..n]) {
            if tx.send(ConsoleEvent::Line(line)).is_err() {
                return;
            }
        }
    }
    if let Some(line) = splitter.finish() {
        let _ = tx.send(ConsoleEvent::Line(line));
    }
    let _ = tx.send(ConsoleEvent::Closed);
}

/// One step of the input a suite types into the serial console: once every regex of
/// `wait_for` has matched a whole console line (in any order) seen after the previous step was
/// written (for the first step: since QEMU started), wait `delay`, then write `bytes`. A step
/// with no `wait_for` is due `delay` after the previous one was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputStep {
    pub wait_for: Vec<String>,
    pub delay: Duration,
    pub bytes: Vec<u8>,
}

impl InputStep {
    /// Once a console line matching `regex` has been seen, write `bytes`.
    pub fn on_line(regex: &str, bytes: &[u8]) -> Self {
        InputStep {
            wait_for: vec![regex.into()],
            delay: Duration::ZERO,
            bytes: bytes.to_vec(),
        }
    }

    /// `delay` after the previous step was written, write `bytes`.
    pub fn after(delay: Duration, bytes: &[u8]) -> Self {
        InputStep {
            wait_for: vec![],
            delay,
            bytes: bytes.to_vec(),
        }
    }
}

/// `bytes` for logs: printable ASCII as is, the rest escaped (`\x1d2`, `echo x\n`).
pub fn escape_bytes(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Plays [`InputStep`]s in order against the console. Like the monitors, it does no I/O and
/// reads no clock: the caller feeds it every console line with the time since QEMU started,
/// wakes up by [`InputScript::next_due`], and writes what [`InputScript::take_due`] returns.
#[derive(Debug)]
pub struct InputScript {
    steps: Vec<(InputStep, Vec<regex::Regex>)>,
    /// The step waited for.
    next: usize,
    /// Which of its `wait_for` regexes matched.
    seen: Vec<bool>,
    /// When it is due, once its lines were all seen.
    due_at: Option<Duration>,
}

impl InputScript {
    /// Fails if a regex does not compile.
    pub fn new(steps: &[InputStep]) -> Result<Self, String> {
        let mut compiled = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let regexes = step
                .wait_for
                .iter()
                .map(|r| {
                    regex::Regex::new(r)
                        .map_err(|e| format!("input step {}: bad regex `{r}`: {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?;
            compiled.push((step.clone(), regexes));
        }
        let mut script = InputScript {
            steps: compiled,
            next: 0,
            seen: vec![],
            due_at: None,
        };
        script.arm(Duration::ZERO);
        Ok(script)
    }

    /// No steps at all (QEMU needs no input).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Every step was written.
    pub fn is_done(&self) -> bool {
        self.next >= self.steps.len()
    }

    /// Step `next` becomes the one waited for, at `now`.
    fn arm(&mut self, now: Duration) {
        self.due_at = None;
        self.seen.clear();
        if let Some((step, regexes)) = self.steps.get(self.next) {
            self.seen = vec![false; regexes.len()];
            if regexes.is_empty() {
                self.due_at = Some(now + step.delay);
            }
        }
    }

    /// A console line (as printed, without its terminator) arrived at `now`.
    pub fn feed(&mut self, line: &str, now: Duration) {
        if self.due_at.is_some() {
            return;
        }
        let Some((step, regexes)) = self.steps.get(self.next) else {
            return;
        };
        for (seen, r) in self.seen.iter_mut().zip(regexes) {
            *seen |= r.is_match(line);
        }
        if self.seen.iter().all(|s| *s) {
            self.due_at = Some(now + step.delay);
        }
    }

    /// When the next step is to be written, if its lines have been seen.
    pub fn next_due(&self) -> Option<Duration> {
        self.due_at
    }

    /// The bytes of the next step if it is due at `now` (the step then counts as written, at
    /// `now`); call again until `None`, as the following step may be due at once.
    pub fn take_due(&mut self, now: Duration) -> Option<Vec<u8>> {
        if self.due_at.is_none_or(|t| t > now) {
            return None;
        }
        let bytes = self.steps[self.next].0.bytes.clone();
        self.next += 1;
        self.arm(now);
        Some(bytes)
    }

    /// What the next step still waits for, for logs (`None` when every step was written):
    /// `step 2 of 5 (`echo x\n`): waiting for `^a\| READY$``.
    pub fn pending(&self) -> Option<String> {
        let (step, regexes) = self.steps.get(self.next)?;
        let what = match self.due_at {
            Some(t) => format!("due at {:.1} s", t.as_secs_f64()),
            None => {
                let missing: Vec<String> = regexes
                    .iter()
                    .zip(&self.seen)
                    .filter(|(_, s)| !**s)
                    .map(|(r, _)| format!("`{}`", r.as_str()))
                    .collect();
                format!("waiting for {}", missing.join(", "))
            }
        };
        Some(format!(
            "step {} of {} (`{}`): {what}",
            self.next + 1,
            self.steps.len(),
            escape_bytes(&step.bytes)
        ))
    }
}

/// Splits a byte stream into lines (`\n`, with any `\r` dropped), decoding lossily.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

/// A line longer than this is cut (the hypervisor's own limit is 256 bytes per guest line).
const MAX_LINE: usize = 64 * 1024;

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' || self.partial.len() >= MAX_LINE {
                lines.push(self.take());
                if b == b'\n' {
                    continue;
                }
            }
            self.partial.push(b);
        }
        lines
    }

    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.partial).replace('\r', "");
        self.partial.clear();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_follows_the_architecture_doc() {
        let c = QemuConfig {
            smp: 2,
            gic: 3,
            icount: false,
            memory_mib: DEFAULT_MEMORY_MIB,
            kernel: "target/images/hypervisor.bin".into(),
            initrd: "b.bin".into(),
            disk: None,
        };
        assert_eq!(
            c.command_line(),
            "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 1G \
             -display none -serial stdio -monitor none -no-reboot \
             -kernel target/images/hypervisor.bin -initrd b.bin"
        );
        let c = QemuConfig {
            icount: true,
            smp: 1,
            ..c
        };
        assert!(c
            .command_line()
            .ends_with("-initrd b.bin -icount shift=0,sleep=off"));
        assert!(c.command_line().contains(" -smp 1 "));
        let c = QemuConfig {
            memory_mib: 1280,
            gic: 2,
            ..c
        };
        assert!(c.command_line().contains(" -m 1280M "));
        assert!(c.command_line().contains("gic-version=2 "));
        let c = QemuConfig {
            memory_mib: 2048,
            ..c
        };
        assert!(c.command_line().contains(" -m 2G "));
        let c = QemuConfig {
            disk: Some("d.img".into()),
            ..c
        };
        assert!(c.command_line().ends_with(
            " -drive file=d.img,if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0"
        ));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn input_steps_wait_for_their_lines_in_any_order_then_their_delay() {
        let mut s = InputScript::new(&[
            InputStep {
                wait_for: vec![r"^a\| READY$".into(), r"^b\| READY$".into()],
                delay: Duration::ZERO,
                bytes: b"\x1d2".to_vec(),
            },
            InputStep::after(ms(500), b"echo hi\n"),
            InputStep::on_line(r"^b\| hi$", b"\x1d?"),
        ])
        .unwrap();
        assert!(!s.is_empty() && !s.is_done());
        assert_eq!(s.next_due(), None);
        assert_eq!(
            s.pending().unwrap(),
            r"step 1 of 3 (`\x1d2`): waiting for `^a\| READY$`, `^b\| READY$`"
        );
        s.feed("b| READY", ms(100));
        s.feed("a| READY?", ms(150));
        s.feed("[ INFO] a| READY", ms(160));
        assert_eq!(s.take_due(ms(200)), None, "a| READY not seen yet");
        assert!(s.pending().unwrap().ends_with("waiting for `^a\\| READY$`"));
        s.feed("a| READY", ms(300));
        assert_eq!(s.next_due(), Some(ms(300)));
        // Written late (the caller woke up at 350 ms): the next delay counts from then.
        assert_eq!(s.take_due(ms(350)), Some(b"\x1d2".to_vec()));
        assert_eq!(s.next_due(), Some(ms(850)));
        assert_eq!(
            s.pending().unwrap(),
            r"step 2 of 3 (`echo hi\n`): due at 0.8 s"
        );
        // Lines do not hurry a step that waits for time only.
        s.feed("b| hi", ms(400));
        assert_eq!(s.take_due(ms(849)), None);
        assert_eq!(s.take_due(ms(850)), Some(b"echo hi\n".to_vec()));
        assert_eq!(s.take_due(ms(850)), None);
        // `b| hi` came before step 2 was written: it does not count for step 3.
        assert_eq!(s.next_due(), None);
        s.feed("b| hi", ms(900));
        assert_eq!(s.take_due(ms(900)), Some(b"\x1d?".to_vec()));
        assert!(s.is_done());
        assert_eq!(s.pending(), None);
        assert_eq!(s.next_due(), None);
        assert_eq!(s.take_due(ms(10_000)), None);
        s.feed("b| hi", ms(10_000));
    }

    #[test]
    fn steps_due_at_once_come_one_after_the_other() {
        let mut s = InputScript::new(&[
            InputStep::after(Duration::ZERO, b"a"),
            InputStep::after(Duration::ZERO, b"b"),
            InputStep::after(ms(10), b"c"),
        ])
        .unwrap();
        assert_eq!(s.next_due(), Some(Duration::ZERO));
        assert_eq!(s.take_due(ms(5)), Some(b"a".to_vec()));
        assert_eq!(s.take_due(ms(5)), Some(b"b".to_vec()));
        assert_eq!(s.take_due(ms(5)), None);
        assert_eq!(s.take_due(ms(15)), Some(b"c".to_vec()));
        assert!(s.is_done());
    }

    #[test]
    fn no_steps_and_bad_regexes() {
        let s = InputScript::new(&[]).unwrap();
        assert!(s.is_empty() && s.is_done());
        assert_eq!((s.next_due(), s.pending()), (None, None));
        let e = InputScript::new(&[InputStep::after(ms(1), b"x"), InputStep::on_line("(", b"y")])
            .unwrap_err();
        assert!(e.starts_with("input step 2: bad regex `(`"), "{e}");
        assert_eq!(
            escape_bytes(b"\x1d1echo $((1+1))\n"),
            r"\x1d1echo $((1+1))\n"
        );
    }

    #[test]
    fn splits_lines_across_reads() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab"), Vec::<String>::new());
        assert_eq!(s.push(b"c\r\nde\n\nf"), vec!["abc", "de", ""]);
        assert_eq!(s.push(b"\xffg"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("f\u{fffd}g"));
        assert_eq!(s.finish(), None);
    }
}
