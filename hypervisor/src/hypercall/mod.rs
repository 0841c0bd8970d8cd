//! Serving hypercalls and emulated PSCI for the calling vCPU.
//!
//! Owns: the meaning of every call of `docs/hypercalls.md`. Every argument is validated here
//! (pointers through `GuestRam::translate`); a bad argument is an error status for the caller,
//! never a fault of the hypervisor.

mod lifecycle;
mod mgmt;

pub use lifecycle::{init as init_lifecycle, restore_from_disk};

use crate::vm::psci_rules::{self, AFFINITY_OFF, AFFINITY_ON, AFFINITY_ON_PENDING};
use crate::vm::{guest_bytes, Power, StopReason, Vcpu};
use abi::ids::*;
use abi::{Call, Conduit, PsciCall, PsciStatus, Status, CONSOLE_WRITE_MAX};

/// What the vCPU does after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Return to the caller.
    Resume,
    /// Let the next runnable vCPU of this physical CPU run.
    Yield,
    /// The caller can no longer run (powered off, VM stopped or resetting).
    Reschedule,
}

/// Serves the version queries that are answered from constants alone, without looking at the
/// VM or memory: `HV_ABI_VERSION` and `SMCCC_VERSION`, the calls a guest makes to probe the
/// hypervisor and the "null hypercall" of the benchmarks. Checked before anything else so that
/// they cost little more than the trap itself; returns false for every other call, which
/// [`handle`] serves (it serves these too, e.g. through `smc`).
#[inline(always)]
pub fn answer_constant_query(x: &mut [u64; 31]) -> bool {
    let function = x[0] as u32;
    if function == HV_ABI_VERSION {
        x[0] = Status::Success.to_reg();
        x[1] = abi::ABI_VERSION_MAJOR as u64;
        x[2] = abi::ABI_VERSION_MINOR as u64;
        true
    } else if function == SMCCC_VERSION {
        x[0] = SMCCC_VERSION_1_1 as u64;
        true
    } else {
        false
    }
}

/// Serves `HV_YIELD` through `hvc`, the call that ends in a vCPU switch, ahead of the general
/// decoder, which serves it the same way: returns true if `x` held it.
#[inline(always)]
pub fn answer_yield(x: &mut [u64; 31]) -> bool {
    if x[0] as u32 == HV_YIELD {
        x[0] = Status::Success.to_reg();
        true
    } else {
        false
    }
}

/// Serves the call in `x[0..8]`, writing results into `x[0..4]`.
#[inline(always)]
pub fn handle(vcpu: &Vcpu, x: &mut [u64; 31], conduit: Conduit) -> Action {
    let args: &[u64; 8] = x[..8].try_into().unwrap();
    match abi::decode(args, conduit) {
        Call::AbiVersion => {
            x[0] = Status::Success.to_reg();
            x[1] = abi::ABI_VERSION_MAJOR as u64;
            x[2] = abi::ABI_VERSION_MINOR as u64;
        }
        Call::SmcccVersion => x[0] = SMCCC_VERSION_1_1 as u64,
        Call::ArchFeatures { function } => {
            x[0] = if abi::is_implemented(function, conduit) {
                Status::Success.to_reg()
            } else {
                Status::NotSupported.to_reg()
            }
        }
        Call::HvCallCount => x[0] = abi::HV_CALL_COUNT as u64,
        Call::HvCallUid => {
            for (reg, word) in x.iter_mut().zip(abi::HV_UID) {
                *reg = word as u64;
            }
        }
        Call::HvRevision => {
            x[0] = abi::HV_REVISION.0 as u64;
            x[1] = abi::HV_REVISION.1 as u64;
        }
        Call::VmId => {
            x[0] = Status::Success.to_reg();
            x[1] = vcpu.vm.id as u64;
            x[2] = vcpu.index as u64;
            x[3] = vcpu.vm.vcpus.len() as u64;
        }
        Call::ConsoleWrite { ipa, len } => console_write(vcpu, x, ipa, len),
        Call::Yield => {
            x[0] = Status::Success.to_reg();
            return Action::Yield;
        }
        Call::Psci(call) => return psci(vcpu, x, call, conduit),
        Call::Mgmt { function, args } => return mgmt::handle(vcpu, x, function, args),
        Call::Unknown { .. } => x[0] = Status::NotSupported.to_reg(),
    }
    Action::Resume
}

fn console_write(vcpu: &Vcpu, x: &mut [u64; 31], ipa: u64, len: u64) {
    let vm = vcpu.vm;
    let bytes = if len > CONSOLE_WRITE_MAX {
        None
    } else {
        guest_bytes(vm, ipa, len)
    };
    match bytes {
        Some(bytes) => {
            vm.console
                .lock()
                .push(bytes, |line| crate::arch::console::vm_line(&vm.name, line));
            x[0] = Status::Success.to_reg();
            x[1] = len;
        }
        None => {
            x[0] = Status::InvalidParameter.to_reg();
            x[1] = 0;
        }
    }
}

fn psci(vcpu: &Vcpu, x: &mut [u64; 31], call: PsciCall, conduit: Conduit) -> Action {
    let vm = vcpu.vm;
    let status = |s: PsciStatus| s.to_reg();
    match call {
        PsciCall::Version => x[0] = PSCI_VERSION_1_1 as u64,
        PsciCall::Features { function } => {
            let psci_or_smccc =
                abi::ids::oen(function) == OEN_STANDARD || function == SMCCC_VERSION;
            x[0] = if psci_or_smccc && abi::is_implemented(function, conduit) {
                status(PsciStatus::Success)
            } else {
                status(PsciStatus::NotSupported)
            };
        }
        PsciCall::CpuOn {
            target_mpidr,
            entry,
            context,
        } => {
            x[0] = match cpu_on(vcpu, target_mpidr, entry, context) {
                Ok(()) => status(PsciStatus::Success),
                Err(e) => status(e),
            };
        }
        PsciCall::CpuOff => {
            *vcpu.power.lock() = Power::Off;
            let any_on = vm.vcpus.iter().any(|v| *v.power.lock() != Power::Off);
            if !any_on {
                vm.stop(StopReason::CpuOff);
            }
            return Action::Reschedule;
        }
        PsciCall::AffinityInfo {
            target_mpidr,
            lowest_level,
        } => {
            x[0] = match psci_rules::check_affinity_level(lowest_level)
                .and_then(|_| psci_rules::vcpu_index(target_mpidr, vm.vcpus.len()))
            {
                Ok(i) => match *vm.vcpus[i].power.lock() {
                    Power::On => AFFINITY_ON,
                    Power::Off => AFFINITY_OFF,
                    Power::Pending { .. } => AFFINITY_ON_PENDING,
                },
                Err(e) => status(e),
            };
        }
        PsciCall::SystemOff => {
            vm.stop(StopReason::SystemOff);
            return Action::Reschedule;
        }
        PsciCall::SystemReset => {
            vm.request_reset();
            return Action::Reschedule;
        }
    }
    Action::Resume
}

fn cpu_on(vcpu: &Vcpu, target: u64, entry: u64, context: u64) -> Result<(), PsciStatus> {
    let vm = vcpu.vm;
    let index = psci_rules::vcpu_index(target, vm.vcpus.len())?;
    if !vm.ram().contains(entry) || !entry.is_multiple_of(4) {
        return Err(PsciStatus::InvalidAddress);
    }
    let mut power = vm.vcpus[index].power.lock();
    match *power {
        Power::On => Err(PsciStatus::AlreadyOn),
        Power::Pending { .. } => Err(PsciStatus::OnPending),
        Power::Off => {
            *power = Power::Pending { entry, context };
            drop(power);
            crate::sched::vcpu_powered_on(vm.vcpus[index]);
            Ok(())
        }
    }
}
