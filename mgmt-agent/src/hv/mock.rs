//! A host model of the hypervisor's management calls, faithful to the contract of `abi::mgmt`:
//! RAM, storage, CPU and network accounting, the VM state machine (a call in the wrong state
//! fails with `WrongState` and changes nothing), all-or-nothing `apply`, the image store, the
//! persistent area, a device restart, and fault injection.
//!
//! Owns: nothing the agent sees except through [`Hypervisor`]; tests use the extra methods to
//! arrange situations (a guest powering itself off, a lost image, a torn write) and to check
//! that a failed command left the hypervisor exactly as it was ([`MockHypervisor::state`]).
//!
//! Rules modelled (the hypervisor side's documented contract; where it is silent, the choice
//! is marked "model:"):
//! - RAM is held only by Running VMs; create (running), power on and resume need it free
//!   (`NoMemory`). Suspend needs a disk (`NoStorage`).
//! - Storage is held by every VM whatever its state; the sum fits the pool (`NoStorage` at
//!   create, `Inconsistent` in `apply`).
//! - The CPU percentages of all VMs add up to at most 100 (`Inconsistent`).
//! - model: RAM, vCPU and storage changes only apply to PoweredOff VMs (`WrongState`); CPU and
//!   network apply in any state.
//! - model: an image used by a VM cannot be removed (`WrongState`): power on boots it again.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use abi::mgmt::{
    Change, CpuStats, DeviceInfo, ImageFormat, ImageInfo, Name, Resources, VmCreate, VmInfo,
    VmState,
};
use abi::Status;

use super::Hypervisor;

/// The calls faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    DeviceInfo,
    Create,
    Delete,
    PowerOn,
    PowerOff,
    Suspend,
    Resume,
    Query,
    List,
    Apply,
    Images,
    RemoveImage,
    StoreRead,
    StoreWrite,
}

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this status and changes nothing.
    Fail(Status),
    /// A store write that stops after `keep` bytes (power lost mid-write) and reports
    /// `IoError`.
    TornWrite { keep: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockVm {
    pub state: VmState,
    pub image: u32,
    pub resources: Resources,
    pub name: Name,
}

/// Everything a call can change, to compare before and after a failed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockState {
    pub vms: BTreeMap<u32, MockVm>,
    pub images: Vec<ImageInfo>,
    pub store: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct MockHypervisor {
    pub pcpus: u32,
    pub mgmt_cpu_pct: u32,
    pub period_us: u32,
    /// RAM of the device, and how much of it VMs may use.
    pub ram_total: u64,
    pub ram_for_vms: u64,
    pub storage_total: u64,
    pub disk: bool,
    vms: BTreeMap<u32, MockVm>,
    next_handle: u32,
    images: Vec<ImageInfo>,
    store: Vec<u8>,
    faults: Vec<(Op, Fault)>,
    /// Every call made, in order (faulted ones included).
    pub calls: Vec<Op>,
    /// What `fault_inject` armed, in order (the mock only records it).
    pub armed: Vec<(abi::mgmt::FaultPoint, u32)>,
}

pub const MIB: u64 = 1 << 20;

impl Default for MockHypervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHypervisor {
    /// A device of 2 CPUs, 1 GiB of RAM (768 MiB for VMs), a 256 MiB storage pool, a disk and
    /// a 64 KiB persistent area; no image, no VM.
    pub fn new() -> Self {
        MockHypervisor {
            pcpus: 2,
            mgmt_cpu_pct: 10,
            period_us: 10_000,
            ram_total: 1024 * MIB,
            ram_for_vms: 768 * MIB,
            storage_total: 256 * MIB,
            disk: true,
            vms: BTreeMap::new(),
            next_handle: 1,
            images: Vec::new(),
            store: alloc::vec![0; 64 << 10],
            armed: Vec::new(),
            faults: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// Adds an image to the store.
    pub fn with_image(
        mut self,
        id: u32,
        format: ImageFormat,
        default_ram: u64,
        name: &str,
    ) -> Self {
        self.images.push(ImageInfo {
            id,
            format,
            size: 4 * MIB,
            initrd_size: 0,
            default_ram,
            name: Name::new(name).expect("valid image name"),
        });
        self
    }

    /// Sets the size of the persistent area (its contents are lost).
    pub fn with_store_size(mut self, size: usize) -> Self {
        self.store = alloc::vec![0; size];
        self
    }

    /// Makes the next call of `op` fail with `fault`. Faults of one op fire in the order armed.
    pub fn fail_next(&mut self, op: Op, status: Status) {
        self.faults.push((op, Fault::Fail(status)));
    }

    /// Makes the next store write stop after `keep` bytes and fail.
    pub fn tear_next_store_write(&mut self, keep: usize) {
        self.faults
            .push((Op::StoreWrite, Fault::TornWrite { keep }));
    }

    /// Faults armed and not yet fired.
    pub fn pending_faults(&self) -> usize {
        self.faults.len()
    }

    pub fn vm(&self, handle: u32) -> Option<&MockVm> {
        self.vms.get(&handle)
    }

    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// The persistent area, to corrupt it in tests.
    pub fn store_mut(&mut self) -> &mut [u8] {
        &mut self.store
    }

    pub fn state(&self) -> MockState {
        MockState {
            vms: self.vms.clone(),
            images: self.images.clone(),
            store: self.store.clone(),
        }
    }

    /// A VM made outside the agent (the boot bundle), bypassing the checks.
    pub fn add_vm(&mut self, state: VmState, image: u32, resources: Resources, name: &str) -> u32 {
        let handle = self.next_handle;
        self.next_handle += 1;
        self.vms.insert(
            handle,
            MockVm {
                state,
                image,
                resources,
                name: Name::new(name).expect("valid VM name"),
            },
        );
        handle
    }

    /// The guest powers itself off (PSCI SYSTEM_OFF).
    pub fn guest_power_off(&mut self, handle: u32) {
        if let Some(vm) = self.vms.get_mut(&handle) {
            vm.state = VmState::PoweredOff;
        }
    }

    /// The VM disappears behind the agent's back.
    pub fn lose_vm(&mut self, handle: u32) {
        self.vms.remove(&handle);
    }

    /// The image disappears from the store behind the agent's back.
    pub fn lose_image(&mut self, id: u32) {
        self.images.retain(|i| i.id != id);
    }

    /// A device restart: Running VMs come back PoweredOff, Suspended ones Suspended; the store
    /// and the images survive; armed faults are dropped.
    pub fn restart(&mut self) {
        for vm in self.vms.values_mut() {
            if vm.state == VmState::Running {
                vm.state = VmState::PoweredOff;
            }
        }
        self.faults.clear();
        self.calls.clear();
    }

    fn fault(&mut self, op: Op) -> Option<Fault> {
        self.calls.push(op);
        let at = self.faults.iter().position(|(o, _)| *o == op)?;
        Some(self.faults.remove(at).1)
    }

    fn injected(&mut self, op: Op) -> Result<(), Status> {
        match self.fault(op) {
            Some(Fault::Fail(s)) => Err(s),
            Some(Fault::TornWrite { .. }) => Err(Status::IoError),
            None => Ok(()),
        }
    }

    fn ram_used(&self) -> u64 {
        self.vms
            .values()
            .filter(|v| v.state == VmState::Running)
            .map(|v| v.resources.ram)
            .sum()
    }

    fn ram_free(&self) -> u64 {
        self.ram_for_vms - self.ram_used()
    }

    fn storage_used(&self) -> u64 {
        self.vms.values().map(|v| v.resources.storage).sum()
    }

    fn vm_mut(&mut self, handle: u32, from: VmState) -> Result<&mut MockVm, Status> {
        let vm = self.vms.get_mut(&handle).ok_or(Status::NotFound)?;
        if vm.state != from {
            return Err(Status::WrongState);
        }
        Ok(vm)
    }

    fn store_range(&self, offset: u64, len: usize) -> Result<core::ops::Range<usize>, Status> {
        let start = usize::try_from(offset).map_err(|_| Status::InvalidParameter)?;
        let end = start.checked_add(len).ok_or(Status::InvalidParameter)?;
        if end > self.store.len() {
            return Err(Status::InvalidParameter);
        }
        Ok(start..end)
    }
}

impl Hypervisor for MockHypervisor {
    fn fault_inject(&mut self, point: abi::mgmt::FaultPoint, countdown: u32) -> Result<(), Status> {
        self.armed.push((point, countdown));
        Ok(())
    }

    fn device_info(&mut self) -> Result<DeviceInfo, Status> {
        self.injected(Op::DeviceInfo)?;
        Ok(DeviceInfo {
            pcpus: self.pcpus,
            mgmt_cpu_pct: self.mgmt_cpu_pct,
            cpu_allocated_pct: self.vms.values().map(|v| v.resources.cpu_pct).sum(),
            period_us: self.period_us,
            ram_total: self.ram_total,
            ram_free: self.ram_free(),
            storage_total: self.storage_total,
            storage_free: self.storage_total - self.storage_used(),
            net_allocated_pct: self.vms.values().map(|v| v.resources.net_pct).sum(),
            vms: self.vms.len() as u32,
            images: self.images.len() as u32,
            disk: self.disk as u32,
        })
    }

    fn create(&mut self, req: &VmCreate) -> Result<u32, Status> {
        self.injected(Op::Create)?;
        req.resources.validate()?;
        let image = self
            .images
            .iter()
            .find(|i| i.id == req.image)
            .ok_or(Status::NotFound)?;
        if req.resources.ram < image.size + image.initrd_size {
            return Err(Status::BadImage);
        }
        let cpu: u32 = self.vms.values().map(|v| v.resources.cpu_pct).sum();
        if cpu + req.resources.cpu_pct > 100 {
            return Err(Status::Inconsistent);
        }
        if self.storage_used() + req.resources.storage > self.storage_total {
            return Err(Status::NoStorage);
        }
        if req.running && req.resources.ram > self.ram_free() {
            return Err(Status::NoMemory);
        }
        let state = if req.running {
            VmState::Running
        } else {
            VmState::PoweredOff
        };
        let handle = self.next_handle;
        self.next_handle += 1;
        self.vms.insert(
            handle,
            MockVm {
                state,
                image: req.image,
                resources: req.resources,
                name: req.name,
            },
        );
        Ok(handle)
    }

    fn delete(&mut self, handle: u32) -> Result<(), Status> {
        self.injected(Op::Delete)?;
        self.vms.remove(&handle).map(|_| ()).ok_or(Status::NotFound)
    }

    fn power_on(&mut self, handle: u32) -> Result<(), Status> {
        self.injected(Op::PowerOn)?;
        let free = self.ram_free();
        let vm = self.vm_mut(handle, VmState::PoweredOff)?;
        if vm.resources.ram > free {
            return Err(Status::NoMemory);
        }
        vm.state = VmState::Running;
        Ok(())
    }

    fn power_off(&mut self, handle: u32) -> Result<(), Status> {
        self.injected(Op::PowerOff)?;
        self.vm_mut(handle, VmState::Running)?.state = VmState::PoweredOff;
        Ok(())
    }

    fn suspend(&mut self, handle: u32) -> Result<(), Status> {
        self.injected(Op::Suspend)?;
        let disk = self.disk;
        let vm = self.vm_mut(handle, VmState::Running)?;
        if !disk {
            return Err(Status::NoStorage);
        }
        vm.state = VmState::Suspended;
        Ok(())
    }

    fn resume(&mut self, handle: u32) -> Result<(), Status> {
        self.injected(Op::Resume)?;
        let free = self.ram_free();
        let vm = self.vm_mut(handle, VmState::Suspended)?;
        if vm.resources.ram > free {
            return Err(Status::NoMemory);
        }
        vm.state = VmState::Running;
        Ok(())
    }

    fn query(&mut self, handle: u32) -> Result<VmInfo, Status> {
        self.injected(Op::Query)?;
        let vm = self.vms.get(&handle).ok_or(Status::NotFound)?;
        Ok(VmInfo {
            handle,
            state: vm.state,
            image: vm.image,
            resources: vm.resources,
            cpu: CpuStats::default(),
            name: vm.name,
        })
    }

    fn list(&mut self) -> Result<Vec<u32>, Status> {
        self.injected(Op::List)?;
        Ok(self.vms.keys().copied().collect())
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), (Status, Option<usize>)> {
        self.injected(Op::Apply).map_err(|s| (s, None))?;
        let mut after = self.vms.clone();
        for (i, c) in changes.iter().enumerate() {
            let at = |s| (s, Some(i));
            if changes[..i].iter().any(|d| d.handle == c.handle) {
                return Err(at(Status::InvalidParameter));
            }
            c.resources
                .validate()
                .map_err(|_| at(Status::InvalidParameter))?;
            let vm = after.get_mut(&c.handle).ok_or(at(Status::NotFound))?;
            let old = vm.resources;
            let cold = old.ram != c.resources.ram
                || old.vcpus != c.resources.vcpus
                || old.storage != c.resources.storage;
            if cold && vm.state != VmState::PoweredOff {
                return Err(at(Status::WrongState));
            }
            if c.resources.ram > self.ram_for_vms {
                return Err(at(Status::Inconsistent));
            }
            vm.resources = c.resources;
        }
        let cpu: u32 = after.values().map(|v| v.resources.cpu_pct).sum();
        let storage: u64 = after.values().map(|v| v.resources.storage).sum();
        if cpu > 100 || storage > self.storage_total {
            return Err((Status::Inconsistent, None));
        }
        self.vms = after;
        Ok(())
    }

    fn images(&mut self) -> Result<Vec<ImageInfo>, Status> {
        self.injected(Op::Images)?;
        Ok(self.images.clone())
    }

    fn remove_image(&mut self, id: u32) -> Result<(), Status> {
        self.injected(Op::RemoveImage)?;
        if !self.images.iter().any(|i| i.id == id) {
            return Err(Status::NotFound);
        }
        if self.vms.values().any(|v| v.image == id) {
            return Err(Status::WrongState);
        }
        self.images.retain(|i| i.id != id);
        Ok(())
    }

    fn store_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Status> {
        self.injected(Op::StoreRead)?;
        let range = self.store_range(offset, buf.len())?;
        buf.copy_from_slice(&self.store[range]);
        Ok(())
    }

    fn store_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Status> {
        let range = self.store_range(offset, data.len());
        match self.fault(Op::StoreWrite) {
            Some(Fault::Fail(s)) => return Err(s),
            Some(Fault::TornWrite { keep }) => {
                let range = range?;
                let keep = keep.min(data.len());
                self.store[range.start..range.start + keep].copy_from_slice(&data[..keep]);
                return Err(Status::IoError);
            }
            None => {}
        }
        let range = range?;
        self.store[range].copy_from_slice(data);
        Ok(())
    }

    fn store_size(&self) -> u64 {
        self.store.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(ram_mib: u64, cpu: u32) -> Resources {
        Resources {
            ram: ram_mib * MIB,
            storage: 0,
            cpu_pct: cpu,
            net_pct: 0,
            vcpus: 1,
        }
    }

    fn req(ram_mib: u64, cpu: u32, running: bool) -> VmCreate {
        VmCreate {
            image: 1,
            running,
            resources: res(ram_mib, cpu),
            name: Name::new("t").unwrap(),
        }
    }

    fn hv() -> MockHypervisor {
        MockHypervisor::new().with_image(1, ImageFormat::Elf, 64 * MIB, "img")
    }

    #[test]
    fn accounts_ram_of_running_vms_only() {
        let mut hv = hv();
        let a = hv.create(&req(512, 10, true)).unwrap();
        assert_eq!(hv.create(&req(512, 10, true)), Err(Status::NoMemory));
        let b = hv.create(&req(512, 10, false)).unwrap();
        assert_eq!(hv.power_on(b), Err(Status::NoMemory));
        hv.power_off(a).unwrap();
        hv.power_on(b).unwrap();
        assert_eq!(hv.device_info().unwrap().ram_free, 256 * MIB);
    }

    #[test]
    fn wrong_state_changes_nothing() {
        let mut hv = hv();
        let a = hv.create(&req(64, 10, false)).unwrap();
        let before = hv.state();
        assert_eq!(hv.power_off(a), Err(Status::WrongState));
        assert_eq!(hv.suspend(a), Err(Status::WrongState));
        assert_eq!(hv.resume(a), Err(Status::WrongState));
        assert_eq!(hv.state(), before);
        assert_eq!(hv.power_on(99), Err(Status::NotFound));
    }

    #[test]
    fn apply_is_all_or_nothing() {
        let mut hv = hv();
        let a = hv.create(&req(64, 50, true)).unwrap();
        let b = hv.create(&req(64, 40, false)).unwrap();
        let before = hv.state();
        let ok = Change {
            handle: b,
            resources: res(64, 50),
        };
        let over = Change {
            handle: a,
            resources: res(64, 60),
        };
        assert_eq!(hv.apply(&[ok, over]), Err((Status::Inconsistent, None)));
        let hot_ram = Change {
            handle: a,
            resources: res(128, 50),
        };
        assert_eq!(hv.apply(&[ok, hot_ram]), Err((Status::WrongState, Some(1))));
        assert_eq!(hv.state(), before);
        hv.apply(&[Change {
            handle: b,
            resources: res(128, 50),
        }])
        .unwrap();
        assert_eq!(hv.vm(b).unwrap().resources.ram, 128 * MIB);
    }

    #[test]
    fn faults_fire_once_and_torn_writes_keep_a_prefix() {
        let mut hv = hv();
        hv.fail_next(Op::Create, Status::NoMemory);
        assert_eq!(hv.create(&req(64, 10, true)), Err(Status::NoMemory));
        assert!(hv.create(&req(64, 10, true)).is_ok());
        hv.tear_next_store_write(3);
        assert_eq!(hv.store_write(0, &[1, 2, 3, 4, 5]), Err(Status::IoError));
        assert_eq!(&hv.store[..5], &[1, 2, 3, 0, 0]);
        assert_eq!(hv.store_write(1 << 20, &[1]), Err(Status::InvalidParameter));
    }

    #[test]
    fn restart_powers_off_running_vms_and_keeps_suspended_ones() {
        let mut hv = hv();
        let a = hv.create(&req(64, 10, true)).unwrap();
        let b = hv.create(&req(64, 10, true)).unwrap();
        hv.suspend(b).unwrap();
        hv.restart();
        assert_eq!(hv.vm(a).unwrap().state, VmState::PoweredOff);
        assert_eq!(hv.vm(b).unwrap().state, VmState::Suspended);
    }

    #[test]
    fn images_in_use_cannot_be_removed() {
        let mut hv = hv();
        let a = hv.create(&req(64, 10, false)).unwrap();
        assert_eq!(hv.remove_image(1), Err(Status::WrongState));
        hv.delete(a).unwrap();
        hv.remove_image(1).unwrap();
        assert_eq!(hv.remove_image(1), Err(Status::NotFound));
    }
}
