//! The management shell: a line protocol over the management VM's console that gives the DM
//! commands to an operator or a test harness (docs/virmo.md, "The shell").
//!
//! Owns: parsing command lines, `atomic`/`sequence` blocks, and formatting each answer as
//! exactly one line `STATUS <code>[ <text>]`. Never: decides anything about the tree (the
//! agent does) or touches the console (the binary does).
//!
//! ```text
//! get URI                      STATUS 200 <value, or the children a/b/c of an interior node>
//! add URI [FORMAT] [VALUE]     FORMAT: node chr int bool null xml bin b64 float date time
//! replace URI VALUE            VALUE: the rest of the line, spaces included (may be empty)
//! delete URI
//! exec URI
//! atomic | sequence            then commands (each answered STATUS 202 queued), then
//! end                          STATUS <block code> [<code> <text>] [<code> <text>] ...
//! server [ID]                  act as server ID in ACL checks (default: the DMAcc ServerID)
//! help
//! ```
//! Empty lines and lines starting with `#` get no answer.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::agent::Agent;
use crate::dm::{Command, Outcome, StatusCode};
use crate::hv::Hypervisor;
use crate::tree::schema::Format;
use abi::mgmt::FaultPoint;
use abi::Status;

/// The answer to `help` and to a line that is not a command.
pub const USAGE: &str = "usage: get URI | add URI [FORMAT] [VALUE] | replace URI VALUE | \
delete URI | exec URI | atomic ... end | sequence ... end | server [ID] | fault ram|disk|image N | help";

/// The longest console line the hypervisor prints whole (`hypervisor/src/console.rs`,
/// LINE_MAX): longer ones come out in pieces, so the binary [`fit`]s every answer to it.
pub const CONSOLE_LINE_MAX: usize = 256;

/// The longest command line; longer ones are refused whole.
pub const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Atomic,
    Sequence,
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Dm(Command),
    Begin(BlockKind),
    End,
    Server(Option<String>),
    Help,
    /// `fault ram|disk|image N`: make the N-th next pass through a fault point of the
    /// hypervisor fail (tests; `HV_MGMT_FAULT_INJECT`).
    Fault(FaultPoint, u32),
}

/// Splits off the first word of `s` (after leading whitespace) and the rest after one run of
/// whitespace.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.split_once(char::is_whitespace) {
        Some((w, rest)) => (w, rest.trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

/// Parses a line; `Ok(None)` for an empty line or a comment.
pub fn parse_line(line: &str) -> Result<Option<Line>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let (verb, rest) = word(line);
    let (uri, value) = word(rest);
    let usage = |what: &str| alloc::format!("usage: {what}");
    let one_uri = |what: &str| -> Result<String, String> {
        if uri.is_empty() || !value.trim().is_empty() {
            return Err(usage(what));
        }
        Ok(uri.into())
    };
    let no_args = |l: Line, what: &str| {
        if rest.trim().is_empty() {
            Ok(Some(l))
        } else {
            Err(usage(what))
        }
    };
    let cmd = match verb {
        "get" => Command::Get {
            uri: one_uri("get URI")?,
        },
        "delete" => Command::Delete {
            uri: one_uri("delete URI")?,
        },
        "exec" => Command::Exec {
            uri: one_uri("exec URI")?,
        },
        "replace" if !uri.is_empty() => Command::replace(uri, value),
        "replace" => return Err(usage("replace URI VALUE")),
        "add" if !uri.is_empty() => {
            let (first, after) = word(value);
            match Format::parse(first) {
                Some(f) => Command::add(uri, Some(f), after),
                None => Command::add(uri, None, value),
            }
        }
        "add" => return Err(usage("add URI [FORMAT] [VALUE]")),
        "atomic" => return no_args(Line::Begin(BlockKind::Atomic), "atomic"),
        "sequence" => return no_args(Line::Begin(BlockKind::Sequence), "sequence"),
        "end" => return no_args(Line::End, "end"),
        "help" => return no_args(Line::Help, "help"),
        "server" if value.trim().is_empty() => {
            return Ok(Some(Line::Server((!uri.is_empty()).then(|| uri.into()))))
        }
        "server" => return Err(usage("server [ID]")),
        "fault" => {
            let point = match uri {
                "ram" => FaultPoint::RamAlloc,
                "disk" => FaultPoint::DiskIo,
                "image" => FaultPoint::ImageRead,
                _ => return Err(usage("fault ram|disk|image N")),
            };
            let n = value
                .trim()
                .parse::<u32>()
                .map_err(|_| usage("fault ram|disk|image N"))?;
            return Ok(Some(Line::Fault(point, n)));
        }
        _ => return Err(USAGE.into()),
    };
    Ok(Some(Line::Dm(cmd)))
}

/// `s` on one line: backslash, control characters and (with `bracket`) `]` escaped.
pub fn escape(s: &str, bracket: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ']' if bracket => out.push_str("\\]"),
            c if c.is_control() => out.push_str(&alloc::format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `line` cut to at most `max` bytes, saying how much was cut. The hypervisor prints a guest's
/// console line in pieces of 256 bytes (`hypervisor/src/console.rs`, LINE_MAX), so the binary
/// fits every answer to that, keeping "one answer, one line".
pub fn fit(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.into();
    }
    let mut keep = max;
    loop {
        let marker = alloc::format!(" [+{} bytes cut]", line.len() - keep);
        if keep + marker.len() <= max && line.is_char_boundary(keep) {
            return alloc::format!("{}{marker}", &line[..keep]);
        }
        keep -= 1;
    }
}

/// A notice of the agent (boot messages, user interaction displays) as a console line: `# `
/// and the text, escaped, cut to [`CONSOLE_LINE_MAX`]. Answers start with `STATUS`, so the two
/// never mix.
pub fn notice_line(text: &str) -> String {
    fit(
        &alloc::format!("# {}", escape(text, false)),
        CONSOLE_LINE_MAX,
    )
}

fn status(o: &Outcome) -> String {
    if o.text.is_empty() {
        alloc::format!("STATUS {}", o.code)
    } else {
        alloc::format!("STATUS {} {}", o.code, escape(&o.text, false))
    }
}

/// The shell's state between lines: who it acts as, and the block being collected.
pub struct Shell {
    server: String,
    block: Option<(BlockKind, Vec<Command>)>,
}

impl Shell {
    /// A shell acting as `server` (the binary passes the DMAcc ServerID).
    pub fn new(server: &str) -> Shell {
        Shell {
            server: server.into(),
            block: None,
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The answer to `line`, or `None` for an empty line or a comment.
    pub fn answer<H: Hypervisor>(&mut self, agent: &mut Agent<H>, line: &str) -> Option<String> {
        let parsed = match parse_line(line) {
            Ok(None) => return None,
            Ok(Some(l)) => l,
            Err(usage) => return Some(alloc::format!("STATUS 400 {usage}")),
        };
        Some(match parsed {
            Line::Help => alloc::format!("STATUS 200 {USAGE}"),
            Line::Fault(point, n) => match agent.hv_mut().fault_inject(point, n) {
                Ok(()) => alloc::format!("STATUS 200 fault {point:?} armed at {n}"),
                Err(Status::NotSupported) => {
                    "STATUS 406 fault injection is not enabled in this hypervisor".into()
                }
                Err(e) => alloc::format!("STATUS 400 {}", e.name()),
            },
            Line::Server(None) => alloc::format!("STATUS 200 {}", self.server),
            Line::Server(Some(id)) => {
                self.server = id;
                alloc::format!("STATUS 200 {}", self.server)
            }
            Line::Begin(_) if self.block.is_some() => {
                "STATUS 400 nested blocks are not supported: end the open one first".into()
            }
            Line::Begin(kind) => {
                self.block = Some((kind, Vec::new()));
                alloc::format!("STATUS 200 {kind:?} started: send commands, then end")
            }
            Line::End => match self.block.take() {
                None => "STATUS 400 end without atomic or sequence".into(),
                Some((kind, cmds)) => {
                    let out = match kind {
                        BlockKind::Atomic => agent.atomic(&self.server, &cmds),
                        BlockKind::Sequence => agent.sequence(&self.server, &cmds),
                    };
                    let mut line = alloc::format!("STATUS {}", out.code);
                    for r in &out.results {
                        line.push_str(&alloc::format!(" [{}", r.code));
                        if !r.text.is_empty() {
                            line.push(' ');
                            line.push_str(&escape(&r.text, true));
                        }
                        line.push(']');
                    }
                    line
                }
            },
            Line::Dm(cmd) => match &mut self.block {
                Some((kind, cmds)) => {
                    cmds.push(cmd);
                    alloc::format!(
                        "STATUS {} queued {} in {kind:?}",
                        StatusCode::Accepted,
                        cmds.len()
                    )
                }
                None => status(&agent.execute(&self.server, &cmd)),
            },
        })
    }

    /// The answer to a line the reader refused for its length.
    pub fn too_long(&self) -> String {
        alloc::format!("STATUS 400 line longer than {MAX_LINE} bytes")
    }
}

/// What the line reader produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Line(String),
    TooLong,
}

/// Assembles console bytes into lines: `\n`, `\r` or `\r\n` end a line, backspace and DEL erase
/// the last character, and a line longer than [`MAX_LINE`] is dropped whole.
#[derive(Default)]
pub struct LineReader {
    buf: Vec<u8>,
    overflow: bool,
}

impl LineReader {
    pub fn new() -> LineReader {
        LineReader::default()
    }

    pub fn push(&mut self, b: u8) -> Option<Input> {
        match b {
            b'\n' | b'\r' => {
                let done = if self.overflow {
                    Input::TooLong
                } else {
                    Input::Line(String::from_utf8_lossy(&self.buf).to_string())
                };
                self.buf.clear();
                self.overflow = false;
                Some(done)
            }
            0x08 | 0x7f => {
                // Remove one whole UTF-8 character.
                while let Some(c) = self.buf.pop() {
                    if c & 0xC0 != 0x80 {
                        break;
                    }
                }
                None
            }
            _ if self.buf.len() >= MAX_LINE => {
                self.overflow = true;
                None
            }
            _ => {
                self.buf.push(b);
                None
            }
        }
    }
}
