//! Starting QEMU and reading its console.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
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
    rx: Receiver<ConsoleEvent>,
    threads: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Qemu {
    pub fn spawn(config: &QemuConfig, options: SpawnOptions) -> io::Result<Qemu> {
        let mut cmd = Command::new(QEMU);
        cmd.args(config.args())
            .stdout(Stdio::piped())
            .stdin(if options.inherit_stdin {
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
            rx,
            threads,
            status: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
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
