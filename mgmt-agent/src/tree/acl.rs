//! Access control lists (OMA DM 1.3 TND, "ACL"): `Get=*&Replace=server1+server2`.
//!
//! Owns: ACL syntax and the question "may server S run command C under this ACL". Which ACL is
//! in force at a node (its own or an ancestor's) is the tree's business; which node's ACL a
//! command is checked against (the parent's for Add) is the engine's.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::schema::Cmd;

/// The wildcard: every server.
pub const ANY: &str = "*";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<(Cmd, Vec<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclError {
    NoEquals(String),
    UnknownCommand(String),
    Duplicate(&'static str),
    EmptyServer(&'static str),
    BadServer(String),
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclError::NoEquals(e) => write!(f, "ACL entry {e:?} is not Command=servers"),
            AclError::UnknownCommand(c) => {
                write!(
                    f,
                    "ACL command {c:?} is not one of Add, Delete, Exec, Get, Replace"
                )
            }
            AclError::Duplicate(c) => write!(f, "ACL names {c} twice"),
            AclError::EmptyServer(c) => write!(f, "ACL entry {c} has an empty server name"),
            AclError::BadServer(s) => write!(f, "ACL server name {s:?} has a reserved character"),
        }
    }
}

impl Acl {
    /// Parses an ACL; the empty string is the empty ACL (inherit).
    pub fn parse(s: &str) -> Result<Acl, AclError> {
        let mut entries: Vec<(Cmd, Vec<String>)> = Vec::new();
        if s.is_empty() {
            return Ok(Acl { entries });
        }
        for entry in s.split('&') {
            let (cmd, servers) = entry
                .split_once('=')
                .ok_or_else(|| AclError::NoEquals(entry.into()))?;
            let cmd = Cmd::parse(cmd).ok_or_else(|| AclError::UnknownCommand(cmd.into()))?;
            if entries.iter().any(|(c, _)| *c == cmd) {
                return Err(AclError::Duplicate(cmd.name()));
            }
            let mut list = Vec::new();
            for server in servers.split('+') {
                if server.is_empty() {
                    return Err(AclError::EmptyServer(cmd.name()));
                }
                if server
                    .chars()
                    .any(|c| c.is_control() || c == '=' || c == '&')
                {
                    return Err(AclError::BadServer(server.into()));
                }
                list.push(server.into());
            }
            entries.push((cmd, list));
        }
        Ok(Acl { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `server` may run `cmd`.
    pub fn allows(&self, cmd: Cmd, server: &str) -> bool {
        self.entries
            .iter()
            .filter(|(c, _)| *c == cmd)
            .flat_map(|(_, servers)| servers)
            .any(|s| s == ANY || s == server)
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (cmd, servers)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{}=", cmd.name())?;
            for (j, s) in servers.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                f.write_str(s)?;
            }
        }
        Ok(())
    }
}

/// Whether the ACL text `acl` (already in force, so valid) lets `server` run `cmd`. An
/// unparsable ACL grants nothing.
pub fn allows(acl: &str, cmd: Cmd, server: &str) -> bool {
    Acl::parse(acl).is_ok_and(|a| a.allows(cmd, server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn grants_named_servers_and_the_wildcard() {
        let acl = Acl::parse("Get=*&Replace=server1+server2").unwrap();
        assert!(acl.allows(Cmd::Get, "anyone"));
        assert!(acl.allows(Cmd::Replace, "server2"));
        assert!(!acl.allows(Cmd::Replace, "server3"));
        assert!(!acl.allows(Cmd::Delete, "server1"));
        assert_eq!(acl.to_string(), "Get=*&Replace=server1+server2");
        assert!(Acl::parse("").unwrap().is_empty());
        assert!(!allows("", Cmd::Get, "x"));
    }

    #[test]
    fn refuses_malformed_acls() {
        assert_eq!(Acl::parse("Get"), Err(AclError::NoEquals("Get".into())));
        assert_eq!(
            Acl::parse("Copy=*"),
            Err(AclError::UnknownCommand("Copy".into()))
        );
        assert_eq!(Acl::parse("Get=*&Get=a"), Err(AclError::Duplicate("Get")));
        assert_eq!(Acl::parse("Get=a+"), Err(AclError::EmptyServer("Get")));
        assert_eq!(Acl::parse("Get=a&"), Err(AclError::NoEquals("".into())));
        assert!(!allows("Get=*&", Cmd::Get, "x"));
    }
}
