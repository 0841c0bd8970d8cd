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
}

impl Status {
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
