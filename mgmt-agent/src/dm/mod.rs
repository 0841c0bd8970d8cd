//! DM commands and their results.
//!
//! Owns: the command model (Get, Add, Replace, Delete, Exec; Atomic and Sequence blocks of them),
//! the status codes, and the generic rules every command obeys ([`engine`]: existence, access
//! type, ACL, format) before the MO-specific behaviour in `agent` runs; the all-or-nothing and
//! in-order execution of blocks ([`block`]).

pub mod block;
pub mod engine;
pub mod status;

use alloc::string::String;
use alloc::vec::Vec;

pub use status::StatusCode;

use crate::tree::schema::{Cmd, Format};

/// One DM command. `uri` is as the server sent it (`./VirMO/vm1/State`, `VirMO/vm1?prop=ACL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Get {
        uri: String,
    },
    /// `format`: the Meta/Format of the item (`None`: the node's own format, `chr` for a node
    /// the server defines below DMTree). `value`: the data; for an interior node (`node`
    /// format) it is the node's Type, e.g. an MOID.
    Add {
        uri: String,
        format: Option<Format>,
        value: String,
    },
    Replace {
        uri: String,
        value: String,
    },
    Delete {
        uri: String,
    },
    Exec {
        uri: String,
    },
}

impl Command {
    pub fn uri(&self) -> &str {
        match self {
            Command::Get { uri }
            | Command::Add { uri, .. }
            | Command::Replace { uri, .. }
            | Command::Delete { uri }
            | Command::Exec { uri } => uri,
        }
    }

    pub fn cmd(&self) -> Cmd {
        match self {
            Command::Get { .. } => Cmd::Get,
            Command::Add { .. } => Cmd::Add,
            Command::Replace { .. } => Cmd::Replace,
            Command::Delete { .. } => Cmd::Delete,
            Command::Exec { .. } => Cmd::Exec,
        }
    }

    /// Whether the command is meant to change the tree (and so is persisted when it succeeds).
    pub fn is_mutating(&self) -> bool {
        !matches!(self, Command::Get { .. })
    }

    pub fn get(uri: &str) -> Command {
        Command::Get { uri: uri.into() }
    }

    pub fn add(uri: &str, format: Option<Format>, value: &str) -> Command {
        Command::Add {
            uri: uri.into(),
            format,
            value: value.into(),
        }
    }

    pub fn replace(uri: &str, value: &str) -> Command {
        Command::Replace {
            uri: uri.into(),
            value: value.into(),
        }
    }

    pub fn delete(uri: &str) -> Command {
        Command::Delete { uri: uri.into() }
    }

    pub fn exec(uri: &str) -> Command {
        Command::Exec { uri: uri.into() }
    }
}

/// The result of one command: its status, and the value (Get) or the reason (errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: StatusCode,
    pub text: String,
}

impl Outcome {
    pub fn ok(text: String) -> Outcome {
        Outcome {
            code: StatusCode::Ok,
            text,
        }
    }

    pub fn is_success(&self) -> bool {
        self.code.is_success()
    }
}

/// The result of an Atomic or a Sequence: the block's own status, one outcome per command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    pub code: StatusCode,
    pub results: Vec<Outcome>,
}

/// Why a command failed. `blame`: the `VirMO/<x>` name of the VM whose `Ext/LastError`
/// should say so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmError {
    pub code: StatusCode,
    pub reason: String,
    pub blame: Option<String>,
}

impl DmError {
    pub fn new(code: StatusCode, reason: impl Into<String>) -> DmError {
        DmError {
            code,
            reason: reason.into(),
            blame: None,
        }
    }

    /// The same error, recorded against VM `x`.
    pub fn blame(mut self, x: &str) -> DmError {
        if self.blame.is_none() {
            self.blame = Some(x.into());
        }
        self
    }

    pub fn outcome(&self) -> Outcome {
        Outcome {
            code: self.code,
            text: self.reason.clone(),
        }
    }
}

/// `DmError::new(code, format!(...))`.
macro_rules! dm_err {
    ($code:ident, $($arg:tt)+) => {
        $crate::dm::DmError::new($crate::dm::StatusCode::$code, alloc::format!($($arg)+))
    };
}

pub(crate) use dm_err;

pub type DmResult<T = String> = Result<T, DmError>;
