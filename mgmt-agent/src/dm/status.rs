//! OMA DM status codes (DM 1.3 Representation Protocol, "Response Status Codes") and how a
//! hypervisor [`abi::Status`] maps onto them.
//!
//! Owns: the codes this client answers with and that mapping. Never: decides which code a
//! situation deserves (the engine and the MO handlers do).

use abi::Status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    /// 200: done.
    Ok = 200,
    /// 202: accepted for processing (a command queued in a shell `atomic`/`sequence` block).
    Accepted = 202,
    /// 215: not executed (a command after the failure in a Sequence).
    NotExecuted = 215,
    /// 216: inside a failed Atomic, rolled back.
    RolledBack = 216,
    /// 400: malformed command or value.
    BadRequest = 400,
    /// 403: understood but refused in the current state (VM state, image in use, ...).
    Forbidden = 403,
    /// 404: no such node (or no such image for CreateParams' ImgID).
    NotFound = 404,
    /// 405: the node's access type does not allow the command (Replace on State, Exec on a
    /// non-executable node, Delete of a permanent node...).
    NotAllowed = 405,
    /// 406: optional feature not supported (Download, ?list=, Exec below DMTree...).
    NotSupported = 406,
    /// 410: the VM is gone from the hypervisor.
    Gone = 410,
    /// 414: URI longer or deeper than DevDetail/URI says.
    UriTooLong = 414,
    /// 415: value or format does not match the node's format.
    BadFormat = 415,
    /// 418: Add of a node that exists.
    AlreadyExists = 418,
    /// 420: not enough RAM, storage or CPU share, or the persistent area is full.
    DeviceFull = 420,
    /// 425: the ACL does not grant the command to this server.
    PermissionDenied = 425,
    /// 500: the command failed (inconsistent resources, hypervisor refusal...).
    Failed = 500,
    /// 507: an Atomic failed; every command in it was rolled back.
    AtomicFailed = 507,
    /// 510: the persistent area failed (disk I/O); the command was rolled back.
    DataStoreFailure = 510,
    /// 516: inside a failed Atomic, this command's effect could not be undone.
    RollbackFailed = 516,
}

impl StatusCode {
    pub const fn code(self) -> u16 {
        self as u16
    }

    pub const fn is_success(self) -> bool {
        matches!(self, StatusCode::Ok | StatusCode::Accepted)
    }

    /// The DM code for a refusal of the hypervisor.
    pub const fn from_hv(s: Status) -> StatusCode {
        match s {
            Status::Success => StatusCode::Ok,
            Status::NoMemory | Status::NoStorage => StatusCode::DeviceFull,
            Status::WrongState => StatusCode::Forbidden,
            Status::NotFound => StatusCode::Gone,
            Status::IoError => StatusCode::DataStoreFailure,
            Status::NotSupported => StatusCode::NotSupported,
            Status::Inconsistent
            | Status::BadImage
            | Status::Denied
            | Status::InvalidParameter
            | Status::NotRequired => StatusCode::Failed,
        }
    }
}

impl core::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervisor_statuses_map_to_dm_codes() {
        assert_eq!(StatusCode::from_hv(Status::NoMemory).code(), 420);
        assert_eq!(StatusCode::from_hv(Status::NoStorage).code(), 420);
        assert_eq!(StatusCode::from_hv(Status::WrongState).code(), 403);
        assert_eq!(StatusCode::from_hv(Status::NotFound).code(), 410);
        assert_eq!(StatusCode::from_hv(Status::IoError).code(), 510);
        assert_eq!(StatusCode::from_hv(Status::Inconsistent).code(), 500);
        assert_eq!(StatusCode::from_hv(Status::BadImage).code(), 500);
        assert_eq!(StatusCode::from_hv(Status::Denied).code(), 500);
        assert_eq!(StatusCode::from_hv(Status::NotSupported).code(), 406);
        assert!(StatusCode::Ok.is_success() && !StatusCode::RolledBack.is_success());
    }
}
