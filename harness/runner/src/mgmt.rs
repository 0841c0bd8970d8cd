//! Driving the management VM's shell over the serial console: `cargo xtask run
//! --mgmt-script FILE` and the management suites (docs/virmo.md).
//!
//! Owns: the line protocol as seen from the host. The agent prints `virmo-agent ready` once
//! its tree is loaded; then every command line typed gets exactly one answer line, `STATUS
//! <code>[ <text>]`, printed by the hypervisor as `mgmt| STATUS ...`. Blank lines and lines
//! starting with `#` get no answer and are not sent.

use std::time::{Duration, Instant};

use crate::qemu::{ConsoleEvent, Qemu};

/// The management VM's console prefix.
pub const PREFIX: &str = "mgmt| ";
/// What the agent prints when its shell is ready.
pub const READY: &str = "virmo-agent ready";

/// One command of a script and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub command: String,
    /// The answer line without the console prefix: `STATUS <code>[ <text>]`.
    pub answer: String,
}

impl Exchange {
    /// The status code of the answer (0 if it has none).
    pub fn status(&self) -> u16 {
        status_of(&self.answer)
    }
}

/// The code of a `STATUS <code> ...` answer, 0 if it is not one.
pub fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("STATUS ")
        .and_then(|r| r.split(' ').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The lines of a script that are commands (not blank, not comments), trimmed.
pub fn script_commands(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Why a session stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The hypervisor panicked (its `#HV panic` record).
    Panic(String),
    /// QEMU exited.
    Closed,
    /// Nothing came in time (what was awaited).
    Timeout(String),
    /// Writing to QEMU's input failed.
    Input(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Panic(m) => write!(f, "the hypervisor panicked: {m}"),
            SessionError::Closed => write!(f, "QEMU exited"),
            SessionError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            SessionError::Input(e) => write!(f, "cannot write to QEMU's input: {e}"),
        }
    }
}

/// A management shell session on a running QEMU (spawned with input).
pub struct Session<'a> {
    qemu: &'a mut Qemu,
    /// Every console line seen, in order.
    pub transcript: Vec<String>,
    /// Called with every console line as it arrives (e.g. to echo it).
    on_line: Box<dyn FnMut(&str) + 'a>,
}

impl<'a> Session<'a> {
    pub fn new(qemu: &'a mut Qemu, on_line: impl FnMut(&str) + 'a) -> Self {
        Session {
            qemu,
            transcript: Vec::new(),
            on_line: Box::new(on_line),
        }
    }

    /// The next console line, within `timeout`.
    fn next_line(&mut self, deadline: Instant, what: &str) -> Result<String, SessionError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.qemu.recv_timeout(left) {
                Ok(ConsoleEvent::Line(line)) => {
                    (self.on_line)(&line);
                    self.transcript.push(line.clone());
                    if let Some(m) = line.strip_prefix("#HV panic") {
                        return Err(SessionError::Panic(m.trim().to_string()));
                    }
                    return Ok(line);
                }
                Ok(ConsoleEvent::Stderr(_)) => {}
                Ok(ConsoleEvent::Closed) => return Err(SessionError::Closed),
                Err(_) => return Err(SessionError::Timeout(what.to_string())),
            }
        }
    }

    /// Waits until a console line satisfies `f`; returns it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&str) -> bool,
    ) -> Result<String, SessionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.next_line(deadline, what)?;
            if f(&line) {
                return Ok(line);
            }
        }
    }

    /// Waits for the agent's `virmo-agent ready`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), SessionError> {
        let ready = format!("{PREFIX}{READY}");
        self.wait_for(timeout, "the management agent to be ready", |l| {
            l.starts_with(&ready)
        })
        .map(|_| ())
    }

    /// Sends one command line and returns its answer.
    pub fn command(&mut self, command: &str, timeout: Duration) -> Result<Exchange, SessionError> {
        let mut bytes = command.as_bytes().to_vec();
        bytes.push(b'\r');
        self.qemu
            .write_input(&bytes)
            .map_err(|e| SessionError::Input(e.to_string()))?;
        let answer_prefix = format!("{PREFIX}STATUS ");
        let line = self.wait_for(timeout, &format!("the answer to `{command}`"), |l| {
            l.starts_with(&answer_prefix)
        })?;
        Ok(Exchange {
            command: command.to_string(),
            answer: line[PREFIX.len()..].to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_skip_blank_lines_and_comments() {
        let s = "# create a VM\n\nadd ./VirMO/web\n   get ./VirMO/web/State  \n#end\n";
        assert_eq!(
            script_commands(s),
            ["add ./VirMO/web", "get ./VirMO/web/State"]
        );
    }

    #[test]
    fn status_codes_are_read_from_answers() {
        assert_eq!(status_of("STATUS 200 2"), 200);
        assert_eq!(status_of("STATUS 404 no such node"), 404);
        assert_eq!(status_of("STATUS 418"), 418);
        assert_eq!(status_of("virmo-agent ready"), 0);
    }
}
