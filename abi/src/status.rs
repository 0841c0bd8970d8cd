//! Status codes returned in `x0`.

/// SMCCC status codes (SMCCC 1.1 §7.1), extended with project codes below -64 so that they can
/// never collide with a future SMCCC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Status {
    Success = 0,
    NotSupported = -1,
    NotRequired = -2,
    InvalidParameter = -3,
    /// The caller is not allowed to make this call (for example a management call from a VM that
    /// is not the management VM).
    Denied = -65,
    /// Not enough free RAM for the request.
    NoMemory = -66,
    /// Not enough free disk space (storage pool or suspend area), or no disk.
    NoStorage = -67,
    /// The VM is not in a state that allows the operation (spec 7.1); nothing changed.
    WrongState = -68,
    /// No VM or image with that handle or id.
    NotFound = -69,
    /// A disk read or write failed; the operation was rolled back.
    IoError = -70,
    /// A set of changes is inconsistent across VMs (CPU sum over 100, RAM or storage that does
    /// not fit); nothing changed.
    Inconsistent = -71,
    /// The image is not usable (bad header, too large for the VM's RAM).
    BadImage = -72,
}

impl Status {
    /// A short name for logs and the management shell.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::NotSupported => "not supported",
            Status::NotRequired => "not required",
            Status::InvalidParameter => "invalid parameter",
            Status::Denied => "denied",
            Status::NoMemory => "not enough free RAM",
            Status::NoStorage => "not enough free storage",
            Status::WrongState => "wrong state",
            Status::NotFound => "not found",
            Status::IoError => "disk I/O error",
            Status::Inconsistent => "inconsistent resource set",
            Status::BadImage => "bad image",
        }
    }

    /// The value as it travels in `x0`.
    pub const fn to_reg(self) -> u64 {
        self as i64 as u64
    }

    /// Decodes `x0` after a call; `None` for a value that is not a status.
    pub const fn from_reg(x0: u64) -> Option<Self> {
        match x0 as i64 {
            0 => Some(Status::Success),
            -1 => Some(Status::NotSupported),
            -2 => Some(Status::NotRequired),
            -3 => Some(Status::InvalidParameter),
            -65 => Some(Status::Denied),
            -66 => Some(Status::NoMemory),
            -67 => Some(Status::NoStorage),
            -68 => Some(Status::WrongState),
            -69 => Some(Status::NotFound),
            -70 => Some(Status::IoError),
            -71 => Some(Status::Inconsistent),
            -72 => Some(Status::BadImage),
            _ => None,
        }
    }
}

/// PSCI return codes (PSCI 1.1 §5.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum PsciStatus {
    Success = 0,
    NotSupported = smccc::psci::error::NOT_SUPPORTED,
    InvalidParameters = smccc::psci::error::INVALID_PARAMETERS,
    Denied = smccc::psci::error::DENIED,
    AlreadyOn = smccc::psci::error::ALREADY_ON,
    OnPending = smccc::psci::error::ON_PENDING,
    InternalFailure = smccc::psci::error::INTERNAL_FAILURE,
    NotPresent = smccc::psci::error::NOT_PRESENT,
    Disabled = smccc::psci::error::DISABLED,
    InvalidAddress = smccc::psci::error::INVALID_ADDRESS,
}

impl PsciStatus {
    /// PSCI returns a signed 32-bit value; SMC64 callers read it sign-extended from `x0`.
    pub const fn to_reg(self) -> u64 {
        self as i32 as i64 as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_x0() {
        for s in [
            Status::Success,
            Status::NotSupported,
            Status::NotRequired,
            Status::InvalidParameter,
            Status::Denied,
            Status::NoMemory,
            Status::NoStorage,
            Status::WrongState,
            Status::NotFound,
            Status::IoError,
            Status::Inconsistent,
            Status::BadImage,
        ] {
            assert_eq!(Status::from_reg(s.to_reg()), Some(s));
        }
        assert_eq!(Status::from_reg(7), None);
        assert_eq!(Status::NotSupported.to_reg(), u64::MAX);
    }

    #[test]
    fn psci_status_is_sign_extended() {
        assert_eq!(PsciStatus::InvalidAddress.to_reg() as i64, -9);
        assert_eq!(PsciStatus::Success.to_reg(), 0);
    }
}
