//! The VM state machine of VirMO 1.0 section 7.1: the states of `VirMO/<x>/State` and the one
//! table of valid transitions (section 7.1.4), which every primitive is checked against before
//! the hypervisor is asked for anything.

use abi::mgmt::VmState;

/// `VirMO/<x>/State` values (section 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirState {
    NotCreated = 0,
    PoweredOff = 1,
    Running = 2,
    Suspended = 3,
    Deleted = 4,
}

impl VirState {
    pub const fn value(self) -> &'static str {
        match self {
            VirState::NotCreated => "0",
            VirState::PoweredOff => "1",
            VirState::Running => "2",
            VirState::Suspended => "3",
            VirState::Deleted => "4",
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            VirState::NotCreated => "NotCreated",
            VirState::PoweredOff => "PoweredOff",
            VirState::Running => "Running",
            VirState::Suspended => "Suspended",
            VirState::Deleted => "Deleted",
        }
    }

    pub fn parse(s: &str) -> Option<VirState> {
        [
            VirState::NotCreated,
            VirState::PoweredOff,
            VirState::Running,
            VirState::Suspended,
            VirState::Deleted,
        ]
        .into_iter()
        .find(|v| v.value() == s)
    }

    pub const fn from_hv(s: VmState) -> VirState {
        match s {
            VmState::PoweredOff => VirState::PoweredOff,
            VmState::Running => VirState::Running,
            VmState::Suspended => VirState::Suspended,
        }
    }

    /// The Created state of section 7.1.2 groups Running, Suspended and PoweredOff.
    pub const fn is_created(self) -> bool {
        matches!(
            self,
            VirState::PoweredOff | VirState::Running | VirState::Suspended
        )
    }
}

impl core::fmt::Display for VirState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u8)
    }
}

/// The VM management primitives (section 7.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Primitive {
    Create,
    CreateAndPowerOff,
    Suspend,
    Resume,
    PowerOn,
    PowerOff,
    Delete,
}

use VirState::{Deleted, NotCreated, PoweredOff, Running, Suspended};

/// Section 7.1.4: primitive, applicable states, post-primitive state.
pub const TRANSITIONS: [(Primitive, &[VirState], VirState); 7] = [
    (Primitive::Create, &[NotCreated], Running),
    (Primitive::CreateAndPowerOff, &[NotCreated], PoweredOff),
    (Primitive::Suspend, &[Running], Suspended),
    (Primitive::Resume, &[Suspended], Running),
    (Primitive::PowerOn, &[PoweredOff], Running),
    (Primitive::PowerOff, &[Running], PoweredOff),
    (
        Primitive::Delete,
        &[PoweredOff, Running, Suspended],
        Deleted,
    ),
];

/// The state `p` leads to from `from`, or why it does not apply.
pub fn next(p: Primitive, from: VirState) -> Result<VirState, alloc::string::String> {
    let (_, applicable, to) = TRANSITIONS
        .iter()
        .find(|(q, _, _)| *q == p)
        .expect("every primitive has a row");
    if applicable.contains(&from) {
        return Ok(*to);
    }
    let mut needs = alloc::string::String::new();
    for (i, s) in applicable.iter().enumerate() {
        if i > 0 {
            needs.push_str(" or ");
        }
        needs.push_str(&alloc::format!("{s}"));
    }
    Err(alloc::format!("{p:?} needs {needs}; the VM is {from}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_spec() {
        let all = [NotCreated, PoweredOff, Running, Suspended, Deleted];
        let mut allowed = 0;
        for p in TRANSITIONS.iter().map(|t| t.0) {
            for from in all {
                if next(p, from).is_ok() {
                    allowed += 1;
                }
            }
        }
        assert_eq!(allowed, 9);
        assert_eq!(next(Primitive::Create, NotCreated), Ok(Running));
        assert_eq!(
            next(Primitive::CreateAndPowerOff, NotCreated),
            Ok(PoweredOff)
        );
        assert_eq!(next(Primitive::Suspend, Running), Ok(Suspended));
        assert_eq!(next(Primitive::Resume, Suspended), Ok(Running));
        assert_eq!(next(Primitive::PowerOn, PoweredOff), Ok(Running));
        assert_eq!(next(Primitive::PowerOff, Running), Ok(PoweredOff));
        for from in [PoweredOff, Running, Suspended] {
            assert_eq!(next(Primitive::Delete, from), Ok(Deleted));
        }
        assert_eq!(
            next(Primitive::Suspend, PoweredOff).unwrap_err(),
            "Suspend needs Running (2); the VM is PoweredOff (1)"
        );
        assert_eq!(
            next(Primitive::Delete, NotCreated).unwrap_err(),
            "Delete needs PoweredOff (1) or Running (2) or Suspended (3); the VM is NotCreated (0)"
        );
    }

    #[test]
    fn state_values_round_trip() {
        for s in [NotCreated, PoweredOff, Running, Suspended, Deleted] {
            assert_eq!(VirState::parse(s.value()), Some(s));
        }
        assert_eq!(VirState::parse("5"), None);
        assert!(VirState::from_hv(VmState::Suspended).is_created());
        assert!(!NotCreated.is_created());
    }
}
