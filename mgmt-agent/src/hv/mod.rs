//! The seam between the agent and the hypervisor: one trait, implemented over the management
//! hypercalls in the binary (`target::hvcalls`) and by [`mock::MockHypervisor`] on the host.
//!
//! Owns: the list of operations the agent may ask for and their contract, which is that of
//! `abi::mgmt` (every call that changes state is atomic: on error nothing changed). Never:
//! knows about the management tree.

#[cfg(any(test, feature = "mock"))]
pub mod mock;

use alloc::vec::Vec;

use abi::mgmt::{Change, DeviceInfo, FaultPoint, ImageInfo, VmCreate, VmInfo};
use abi::Status;

/// What the agent needs from the hypervisor (abi::mgmt, one method per call).
pub trait Hypervisor {
    /// `HV_MGMT_DEVICE_INFO`: totals and free amounts.
    fn device_info(&mut self) -> Result<DeviceInfo, Status>;
    /// `HV_MGMT_VM_CREATE`: the new VM's handle.
    fn create(&mut self, req: &VmCreate) -> Result<u32, Status>;
    /// `HV_MGMT_VM_DELETE`, from any state.
    fn delete(&mut self, handle: u32) -> Result<(), Status>;
    /// `HV_MGMT_VM_POWER_ON`: PoweredOff → Running.
    fn power_on(&mut self, handle: u32) -> Result<(), Status>;
    /// `HV_MGMT_VM_POWER_OFF`: Running → PoweredOff.
    fn power_off(&mut self, handle: u32) -> Result<(), Status>;
    /// `HV_MGMT_VM_SUSPEND`: Running → Suspended.
    fn suspend(&mut self, handle: u32) -> Result<(), Status>;
    /// `HV_MGMT_VM_RESUME`: Suspended → Running.
    fn resume(&mut self, handle: u32) -> Result<(), Status>;
    /// `HV_MGMT_VM_QUERY`.
    fn query(&mut self, handle: u32) -> Result<VmInfo, Status>;
    /// `HV_MGMT_VM_LIST`: every VM but the management VM.
    fn list(&mut self) -> Result<Vec<u32>, Status>;
    /// `HV_MGMT_APPLY`: all or nothing; on refusal, the index of the change at fault (`None`
    /// for a device-wide inconsistency).
    fn apply(&mut self, changes: &[Change]) -> Result<(), (Status, Option<usize>)>;
    /// `HV_MGMT_IMAGE_LIST`.
    fn images(&mut self) -> Result<Vec<ImageInfo>, Status>;
    /// `HV_MGMT_IMAGE_REMOVE`.
    fn remove_image(&mut self, id: u32) -> Result<(), Status>;
    /// `HV_MGMT_STORE_READ`: `buf.len()` bytes of the management VM's persistent area.
    fn store_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Status>;
    /// `HV_MGMT_STORE_WRITE`: durable when it returns.
    fn store_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Status>;
    /// The size of the persistent area in bytes (0: none).
    fn store_size(&self) -> u64;
    /// `HV_MGMT_FAULT_INJECT`: the `countdown`-th next pass through `point` fails (tests of
    /// the roll-backs; NOT_SUPPORTED unless the hypervisor was started for tests).
    fn fault_inject(&mut self, point: FaultPoint, countdown: u32) -> Result<(), Status> {
        let _ = (point, countdown);
        Err(Status::NotSupported)
    }
}

/// The largest persistent area [`probe_size`] looks for; the agent never needs more.
pub const PROBE_LIMIT: u64 = 16 << 20;

/// The size of an area of unknown size, given `readable(offset)`: whether the byte at `offset`
/// exists. The ABI has no call that tells the size of the persistent area, so the binary finds
/// it with reads of one byte: O(log size) calls. Returns at most [`PROBE_LIMIT`].
pub fn probe_size(mut readable: impl FnMut(u64) -> bool) -> u64 {
    if !readable(0) {
        return 0;
    }
    // Invariant: byte `lo - 1` exists; byte `hi - 1` does not (or `hi` is past the limit).
    let mut lo = 1u64;
    while lo < PROBE_LIMIT && readable((lo * 2).min(PROBE_LIMIT) - 1) {
        lo = (lo * 2).min(PROBE_LIMIT);
    }
    if lo >= PROBE_LIMIT {
        return PROBE_LIMIT;
    }
    let mut hi = (lo * 2).min(PROBE_LIMIT);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if readable(mid - 1) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_finds_the_exact_size() {
        for size in [0u64, 1, 2, 3, 4095, 4096, 4097, 65536, 100_000, PROBE_LIMIT] {
            let mut calls = 0;
            let found = probe_size(|off| {
                calls += 1;
                off < size
            });
            assert_eq!(found, size, "size {size}");
            assert!(calls <= 50, "{calls} calls for {size}");
        }
        assert_eq!(probe_size(|_| true), PROBE_LIMIT);
    }
}
