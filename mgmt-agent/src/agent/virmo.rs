//! `VirMO/<x>`: the VM sub-trees and the lifecycle primitives (VirMO 1.0 sections 7.1, 8, 10.2,
//! 10.3).
//!
//! Owns: creating a sub-tree on Add (unique VMID, State 0), reading State and CurrentConfig
//! from the hypervisor, and the Exec of Operations/{Create, Delete, Suspend, Resume, PowerOn,
//! PowerOff}. Every primitive refreshes the state, checks the transition table
//! (`lifecycle`), asks the hypervisor, and only then changes the tree, so a refusal changes
//! nothing; its effect is journaled so an Atomic can undo it.

use alloc::string::{String, ToString};

use abi::mgmt::{ImageInfo, Name, Resources, VmCreate, VmInfo, NAME_LEN, RAM_GRANULE};
use abi::Status;

use super::lifecycle::{self, Primitive, VirState};
use super::skeleton::node_for;
use super::{save_error, Agent, Undo};
use crate::dm::dm_err;
use crate::dm::{DmError, DmResult, StatusCode};
use crate::hv::Hypervisor;
use crate::params::{self, format_config, parse_create_params};
use crate::tree::schema::{path_of, NodeId, NODES};

/// RAM of a VM whose image states no default (abi::mgmt::ImageInfo::default_ram = 0).
pub const DEFAULT_RAM: u64 = 64 << 20;
/// CPU share of a VM whose CreateParams give none: this much, or what is left if less.
pub const DEFAULT_CPU_PCT: u32 = 25;

/// The DM error for a refusal of the hypervisor while doing `what`.
pub(crate) fn hv_error(s: Status, what: &str) -> DmError {
    DmError::new(
        StatusCode::from_hv(s),
        alloc::format!("{what}: the hypervisor refused: {}", s.name()),
    )
}

impl<H: Hypervisor> Agent<H> {
    pub(crate) fn vm_value(&self, x: &str, id: NodeId) -> String {
        self.tree
            .value(&path_of(id, &[x]))
            .unwrap_or_default()
            .to_string()
    }

    pub(crate) fn set_vm_value(&mut self, x: &str, id: NodeId, value: &str) {
        self.tree.set_value(&path_of(id, &[x]), value);
    }

    pub(crate) fn set_last_error(&mut self, x: &str, text: &str) {
        self.set_vm_value(x, NodeId::VmLastError, text);
    }

    /// The names of the `VirMO/<x>` entries.
    pub(crate) fn vm_names(&self) -> alloc::vec::Vec<String> {
        self.tree
            .children("VirMO")
            .into_iter()
            .filter(|n| *n != "Operations" && *n != "DeviceResources")
            .map(String::from)
            .collect()
    }

    pub(crate) fn vm_handle(&self, x: &str) -> u32 {
        self.vm_value(x, NodeId::VmHandle).parse().unwrap_or(0)
    }

    pub(crate) fn stored_state(&self, x: &str) -> VirState {
        VirState::parse(&self.vm_value(x, NodeId::VmState)).unwrap_or(VirState::NotCreated)
    }

    /// Creates the nodes of a VM sub-tree that the client owns, with `values` for some leaves
    /// (section 10.2 step 2). Existing nodes are kept, so this also completes a sub-tree loaded
    /// from an older copy.
    pub(crate) fn fill_subtree(&mut self, root: NodeId, x: &str, values: &[(NodeId, &str)]) {
        let root_pattern = crate::tree::schema::def_of(root).path;
        for d in NODES.iter().filter(|d| {
            d.path == root_pattern
                || d.path
                    .strip_prefix(root_pattern)
                    .is_some_and(|rest| rest.starts_with('/'))
        }) {
            // Nodes that come and go with their meaning (section 8, 9: ZeroOrOne).
            if matches!(d.id, NodeId::NewConfig | NodeId::DownloadedLocation) {
                continue;
            }
            let path = path_of(d.id, &[x]);
            if self.tree.contains(&path) {
                continue;
            }
            let value = values
                .iter()
                .find(|(id, _)| *id == d.id)
                .map_or("", |(_, v)| v);
            self.tree.insert(&path, node_for(d, value));
        }
    }

    /// Add `VirMO/<x>`: a new sub-tree, a VMID never used before, State 0 (section 10.2).
    pub(crate) fn add_vm(&mut self, x: &str) -> DmResult {
        let vmid = self.counters.next_vmid.to_string();
        self.counters.next_vmid += 1;
        self.fill_subtree(
            NodeId::Vm,
            x,
            &[
                (NodeId::VmId, &vmid),
                (NodeId::VmState, VirState::NotCreated.value()),
                (NodeId::VmHandle, "0"),
            ],
        );
        Ok(String::new())
    }

    /// The state of VM `x` according to the hypervisor, written to the tree. A VM the
    /// hypervisor no longer has goes back to NotCreated (0), keeping what the server wrote.
    /// If the hypervisor cannot answer, the last known state stands.
    pub(crate) fn refresh_vm(&mut self, x: &str) -> VirState {
        self.query_vm(x)
            .map_or_else(|_| self.stored_state(x), |_| self.stored_state(x))
    }

    /// Queries VM `x`, refreshing its State; `Ok(None)` if it has no VM.
    pub(crate) fn query_vm(&mut self, x: &str) -> Result<Option<VmInfo>, Status> {
        let handle = self.vm_handle(x);
        if handle == 0 {
            return Ok(None);
        }
        match self.hv.query(handle) {
            Ok(info) => {
                self.set_vm_value(x, NodeId::VmState, VirState::from_hv(info.state).value());
                Ok(Some(info))
            }
            Err(Status::NotFound) => {
                self.forget_vm(x, handle);
                Ok(None)
            }
            Err(s) => Err(s),
        }
    }

    /// The hypervisor no longer has VM `x`: back to NotCreated, with a note.
    pub(crate) fn forget_vm(&mut self, x: &str, handle: u32) {
        self.set_vm_value(x, NodeId::VmState, VirState::NotCreated.value());
        self.set_vm_value(x, NodeId::VmHandle, "0");
        let why = alloc::format!(
            "the hypervisor no longer has this VM (handle {handle}): State is 0 (NotCreated); \
             Exec Operations/Create makes it again from CreateParams"
        );
        self.set_last_error(x, &why);
        self.note(alloc::format!("VirMO/{x}: {why}"));
    }

    /// `VirMO/<x>/Resources/CurrentConfig`: the real allocation (zeros without a VM).
    pub(crate) fn current_config(&mut self, x: &str) -> DmResult {
        match self.query_vm(x) {
            Ok(Some(info)) => Ok(format_config(&info.resources)),
            Ok(None) => Ok(format_config(&params::NOTHING)),
            Err(s) => Err(hv_error(s, "query").blame(x)),
        }
    }

    /// Exec of `VirMO/<x>/Operations/<op>`.
    pub(crate) fn exec_vm(&mut self, x: &str, op: NodeId, in_atomic: bool) -> DmResult {
        let r = match op {
            NodeId::OpCreate => self.create_vm(x),
            NodeId::OpDelete => self.delete_vm(x, in_atomic),
            NodeId::OpSuspend => self.transition_vm(x, Primitive::Suspend, in_atomic),
            NodeId::OpResume => self.transition_vm(x, Primitive::Resume, in_atomic),
            NodeId::OpPowerOn => self.transition_vm(x, Primitive::PowerOn, in_atomic),
            NodeId::OpPowerOff => self.transition_vm(x, Primitive::PowerOff, in_atomic),
            NodeId::OpExecUiCmd => self.exec_ui(x),
            _ => Err(dm_err!(NotAllowed, "VirMO/{x}: not an operation")),
        };
        r.map_err(|e| e.blame(x))
    }

    /// Operations/Create: CreateParams → `HV_MGMT_VM_CREATE` → State 2 or 1 (section 10.2).
    fn create_vm(&mut self, x: &str) -> DmResult {
        let state = self.refresh_vm(x);
        // Both create primitives apply to NotCreated only: check before reading CreateParams.
        lifecycle::next(Primitive::Create, state)
            .map_err(|e| DmError::new(StatusCode::Forbidden, e))?;
        let params = parse_create_params(&self.vm_value(x, NodeId::CreateParams))
            .map_err(|e| dm_err!(BadRequest, "CreateParams: {e}"))?;
        let primitive = if params.running {
            Primitive::Create
        } else {
            Primitive::CreateAndPowerOff
        };
        let to = lifecycle::next(primitive, state)
            .map_err(|e| DmError::new(StatusCode::Forbidden, e))?;
        let image = self.image_for_create(&params.img_id)?;
        let dev = self
            .hv
            .device_info()
            .map_err(|s| hv_error(s, "device info"))?;
        let cpu_left = 100u32.saturating_sub(dev.cpu_allocated_pct);
        let keys = params.resources;
        let cpu = match keys.cpu {
            Some(cpu) if cpu > cpu_left => {
                return Err(dm_err!(
                    DeviceFull,
                    "CPU={cpu}: only {cpu_left}% is left (the CPU shares of all VMs add up to at most 100%)"
                ))
            }
            Some(cpu) => cpu,
            None if cpu_left == 0 => {
                return Err(dm_err!(
                    DeviceFull,
                    "no CPU share left (100% allocated): lower another VM's CPU with NewConfig and ApplyChanges"
                ))
            }
            None => DEFAULT_CPU_PCT.min(cpu_left),
        };
        let resources = Resources {
            ram: keys.ram.unwrap_or_else(|| default_ram(&image)),
            storage: keys.storage.unwrap_or(0),
            cpu_pct: cpu,
            net_pct: keys.network.unwrap_or(0),
            vcpus: keys.vcpus.unwrap_or(1),
        };
        let name = params.name.unwrap_or_else(|| truncate(x, NAME_LEN).into());
        let req = VmCreate {
            image: image.id,
            running: params.running,
            resources,
            name: Name::new(&name).unwrap_or(Name::EMPTY),
        };
        let handle = self.hv.create(&req).map_err(|s| {
            let mut e = hv_error(s, "create");
            if s == Status::NoMemory {
                e.reason = alloc::format!(
                    "{}: RAM={} does not fit in the {} bytes free",
                    e.reason,
                    resources.ram,
                    dev.ram_free
                );
            }
            e
        })?;
        self.record(Undo::Delete(handle));
        self.set_vm_value(x, NodeId::VmState, to.value());
        self.set_vm_value(x, NodeId::VmHandle, &handle.to_string());
        self.set_last_error(x, "");
        Ok(String::new())
    }

    /// Operations/Delete: any Created state → Deleted (4) → the sub-tree is removed (section
    /// 10.3). Deleting cannot be undone: see [`Agent::irreversible`].
    fn delete_vm(&mut self, x: &str, in_atomic: bool) -> DmResult {
        if in_atomic {
            return Err(dm_err!(
                NotSupported,
                "Delete cannot be rolled back, so it is not allowed inside an Atomic"
            ));
        }
        let state = self.refresh_vm(x);
        lifecycle::next(Primitive::Delete, state)
            .map_err(|e| DmError::new(StatusCode::Forbidden, e))?;
        let handle = self.vm_handle(x);
        self.irreversible(
            "delete",
            |agent| {
                // Deleted (4) is a logical state (section 7.1.3): the sub-tree goes with it.
                agent.set_vm_value(x, NodeId::VmState, VirState::Deleted.value());
                agent.tree.remove_subtree(&path_of(NodeId::Vm, &[x]));
            },
            // A VM already gone is what Delete wants.
            |hv| match hv.delete(handle) {
                Err(Status::NotFound) => Ok(()),
                other => other,
            },
        )
    }

    /// Suspend, Resume, PowerOn (undone by the opposite call in a failed Atomic) and PowerOff
    /// (which cannot be undone: powering on again reboots the guest; see
    /// [`Agent::irreversible`]).
    fn transition_vm(&mut self, x: &str, p: Primitive, in_atomic: bool) -> DmResult {
        if p == Primitive::PowerOff && in_atomic {
            return Err(dm_err!(
                NotSupported,
                "PowerOff cannot be rolled back (powering on again reboots the guest), so it is \
                 not allowed inside an Atomic"
            ));
        }
        let state = self.refresh_vm(x);
        let to = lifecycle::next(p, state).map_err(|e| DmError::new(StatusCode::Forbidden, e))?;
        let h = self.vm_handle(x);
        let set_state = |agent: &mut Self| {
            agent.set_vm_value(x, NodeId::VmState, to.value());
            agent.set_last_error(x, "");
        };
        let (result, undo) = match p {
            Primitive::Suspend => (self.hv.suspend(h), Undo::Resume(h)),
            Primitive::Resume => (self.hv.resume(h), Undo::Suspend(h)),
            Primitive::PowerOn => (self.hv.power_on(h), Undo::PowerOff(h)),
            _ => return self.irreversible("PowerOff", set_state, |hv| hv.power_off(h)),
        };
        let what = alloc::format!("{p:?}");
        result.map_err(|s| hv_error(s, &what))?;
        self.record(undo);
        set_state(self);
        Ok(String::new())
    }

    /// Runs a hypervisor effect that cannot be undone (refused inside an Atomic by the
    /// callers). The tree as it will be afterwards (`after`) is saved *before* the effect: a
    /// failed save leaves the hypervisor untouched, and a failed effect restores and re-saves
    /// the tree. If that re-save fails too and the device restarts, the saved tree lacks
    /// something the hypervisor still has, and the boot reconciliation puts it back.
    pub(crate) fn irreversible(
        &mut self,
        what: &str,
        after: impl FnOnce(&mut Self),
        effect: impl FnOnce(&mut H) -> Result<(), Status>,
    ) -> DmResult {
        let before = self.tree.clone();
        after(self);
        if let Err(e) = self.persist() {
            self.tree = before;
            return Err(save_error(e));
        }
        if let Err(s) = effect(&mut self.hv) {
            self.tree = before;
            if let Err(e) = self.persist() {
                self.note(alloc::format!("saving after a failed {what}: {e}"));
            }
            return Err(hv_error(s, what));
        }
        Ok(String::new())
    }

    /// DM Delete of `VirMO/<x>`: only without a VM behind it (State 0).
    pub(crate) fn check_vm_deletable(&mut self, x: &str) -> DmResult<()> {
        let state = self.refresh_vm(x);
        if state.is_created() {
            return Err(dm_err!(
                Forbidden,
                "VirMO/{x} holds a created VM ({state}): Exec VirMO/{x}/Operations/Delete deletes it"
            ));
        }
        Ok(())
    }

    /// The store image that CreateParams' `ImgID` names (a `VMImgMO/<x>/ImgID` value).
    fn image_for_create(&mut self, img_id: &str) -> DmResult<ImageInfo> {
        let Some(entry) = self
            .image_names()
            .into_iter()
            .find(|y| self.image_value(y, NodeId::ImgId) == img_id)
        else {
            return Err(dm_err!(
                NotFound,
                "CreateParams: ImgID={img_id}: no VMImgMO/<x>/ImgID has this value"
            ));
        };
        let Some(id) = self.store_id(&entry) else {
            let state = self.image_value(&entry, NodeId::ImgState);
            return Err(dm_err!(
                Forbidden,
                "CreateParams: ImgID={img_id}: VMImgMO/{entry} is not downloaded (State {state})"
            ));
        };
        let images = self.hv.images().map_err(|s| hv_error(s, "image list"))?;
        images.into_iter().find(|i| i.id == id).ok_or_else(|| {
            dm_err!(
                Gone,
                "CreateParams: ImgID={img_id}: image {id} is no longer in the store"
            )
        })
    }
}

/// The RAM an image gets by default: its own default, in whole 2 MiB granules.
pub(crate) fn default_ram(image: &ImageInfo) -> u64 {
    let ram = if image.default_ram == 0 {
        DEFAULT_RAM
    } else {
        image.default_ram
    };
    ram.div_ceil(RAM_GRANULE) * RAM_GRANULE
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
