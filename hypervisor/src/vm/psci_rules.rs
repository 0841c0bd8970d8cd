//! The argument rules of the emulated PSCI (PSCI 1.1, DEN0022, §5.1), independent of how
//! vCPUs are run, so that they are unit-tested on the host.

use abi::PsciStatus;

/// PSCI AFFINITY_INFO results (§5.1.5).
pub const AFFINITY_ON: u64 = 0;
pub const AFFINITY_OFF: u64 = 1;
pub const AFFINITY_ON_PENDING: u64 = 2;

/// MPIDR affinity fields a vCPU's MPIDR may use: Aff0 only (a VM is one cluster). Aff1, Aff2
/// and Aff3 (bits 15:8, 23:16, 39:32) must be zero.
const MPIDR_UPPER_AFFINITY: u64 = 0xff_00ff_ff00;

/// The vCPU index named by `mpidr`, in a VM with `vcpus` vCPUs.
pub fn vcpu_index(mpidr: u64, vcpus: usize) -> Result<usize, PsciStatus> {
    if mpidr & MPIDR_UPPER_AFFINITY != 0 || mpidr & !(MPIDR_UPPER_AFFINITY | 0xff) != 0 {
        return Err(PsciStatus::InvalidParameters);
    }
    let index = (mpidr & 0xff) as usize;
    if index >= vcpus {
        return Err(PsciStatus::InvalidParameters);
    }
    Ok(index)
}

/// AFFINITY_INFO's `lowest_affinity_level` must be 0 here: a VM has a single cluster level
/// below which nothing is reported.
pub fn check_affinity_level(level: u64) -> Result<(), PsciStatus> {
    if level == 0 {
        Ok(())
    } else {
        Err(PsciStatus::InvalidParameters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_aff0_to_vcpu_index() {
        assert_eq!(vcpu_index(0, 2), Ok(0));
        assert_eq!(vcpu_index(1, 2), Ok(1));
    }

    #[test]
    fn refuses_absent_vcpus_and_upper_affinities() {
        assert_eq!(vcpu_index(2, 2), Err(PsciStatus::InvalidParameters));
        assert_eq!(vcpu_index(0x100, 2), Err(PsciStatus::InvalidParameters));
        assert_eq!(vcpu_index(1 << 32, 2), Err(PsciStatus::InvalidParameters));
        assert_eq!(vcpu_index(1 << 63, 2), Err(PsciStatus::InvalidParameters));
    }

    #[test]
    fn affinity_level_must_be_zero() {
        assert!(check_affinity_level(0).is_ok());
        assert_eq!(check_affinity_level(1), Err(PsciStatus::InvalidParameters));
    }
}
