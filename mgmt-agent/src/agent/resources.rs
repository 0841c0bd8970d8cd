//! Resource management (VirMO 1.0 section 8): `VirMO/Operations/ApplyChanges` and
//! `VirMO/DeviceResources`.
//!
//! Owns: the consistency check of all `NewConfig` nodes together and their all-or-nothing
//! application through one `HV_MGMT_APPLY`. Rules (docs/virmo.md, "NewConfig and
//! ApplyChanges"):
//! - A VM without a NewConfig, or with an empty one, is untouched (section 8).
//! - CPU and Network change in any Created state. RAM, VCPUs and Storage only change while the
//!   VM is PoweredOff: a running guest cannot lose or gain RAM or vCPUs under it, and a
//!   suspended one has its RAM saved at its old size. Refused with 403, nothing changes.
//! - After the change, the CPU shares of all VMs add up to at most 100 (the spec's example says
//!   "is 100%"; less is accepted, the rest stays unallocated), and so do the network shares;
//!   a VM's new RAM fits in the free RAM (so it can be powered on now); the storage added fits
//!   in the free storage. Otherwise 420, nothing changes.
//! - On success every NewConfig node is deleted (section 8), empty ones included.

use alloc::string::String;
use alloc::vec::Vec;

use abi::mgmt::{Change, Resources, VmState};

use super::virmo::hv_error;
use super::{Agent, Undo};
use crate::dm::dm_err;
use crate::dm::{DmError, DmResult};
use crate::hv::Hypervisor;
use crate::params::{self, parse_config};
use crate::tree::schema::{path_of, NodeId};

impl<H: Hypervisor> Agent<H> {
    /// `VirMO/DeviceResources`: `RAM=<total>&Storage=<total>` and vendor keys.
    pub(crate) fn device_resources(&mut self) -> DmResult {
        let d = self
            .hv
            .device_info()
            .map_err(|s| hv_error(s, "device info"))?;
        Ok(params::join(&[
            ("RAM", d.ram_total),
            ("Storage", d.storage_total),
            ("FreeRAM", d.ram_free),
            ("FreeStorage", d.storage_free),
            ("CPUs", u64::from(d.pcpus)),
            ("MgmtCPU", u64::from(d.mgmt_cpu_pct)),
            ("CPUAllocated", u64::from(d.cpu_allocated_pct)),
            ("NetworkAllocated", u64::from(d.net_allocated_pct)),
            ("VMs", u64::from(d.vms)),
            ("Images", u64::from(d.images)),
            ("Disk", u64::from(d.disk != 0)),
        ]))
    }

    /// Exec `VirMO/Operations/ApplyChanges`.
    pub(crate) fn apply_changes(&mut self) -> DmResult {
        let names = self.vm_names();
        let mut pending: Vec<(String, params::ResourceKeys)> = Vec::new();
        for x in &names {
            let Some(text) = self.tree.value(&path_of(NodeId::NewConfig, &[x])) else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            let keys = parse_config(text)
                .map_err(|e| dm_err!(BadRequest, "VirMO/{x}/Resources/NewConfig: {e}").blame(x))?;
            if !keys.is_empty() {
                pending.push((x.clone(), keys));
            }
        }
        if pending.is_empty() {
            self.drop_new_configs(&names);
            return Ok(String::new());
        }

        // The allocation of every created VM, as the hypervisor has it now.
        let mut current: Vec<(String, u32, VmState, Resources)> = Vec::new();
        for x in &names {
            match self.query_vm(x) {
                Ok(Some(info)) => {
                    current.push((x.clone(), info.handle, info.state, info.resources))
                }
                Ok(None) => {}
                Err(s) => return Err(hv_error(s, "query").blame(x)),
            }
        }
        let dev = self
            .hv
            .device_info()
            .map_err(|s| hv_error(s, "device info"))?;

        let mut changes = Vec::new();
        let mut undo = Vec::new();
        let mut blame = Vec::new();
        let mut storage_added: u64 = 0;
        for (x, keys) in &pending {
            let Some((_, handle, state, old)) = current.iter().find(|(y, ..)| y == x) else {
                return Err(dm_err!(
                    Forbidden,
                    "VirMO/{x} has no VM (State 0): give its resources in CreateParams"
                )
                .blame(x));
            };
            let new = keys.over(*old);
            let cold = new.ram != old.ram || new.vcpus != old.vcpus || new.storage != old.storage;
            if cold && *state != VmState::PoweredOff {
                return Err(dm_err!(
                    Forbidden,
                    "VirMO/{x} is {}: RAM, VCPUs and Storage only change while PoweredOff \
                     (CPU and Network apply live)",
                    super::lifecycle::VirState::from_hv(*state)
                )
                .blame(x));
            }
            if new.ram != old.ram && new.ram > dev.ram_free {
                return Err(dm_err!(
                    DeviceFull,
                    "VirMO/{x}: RAM={} does not fit in the {} bytes free",
                    new.ram,
                    dev.ram_free
                )
                .blame(x));
            }
            storage_added = storage_added.saturating_add(new.storage.saturating_sub(old.storage));
            changes.push(Change {
                handle: *handle,
                resources: new,
            });
            undo.push(Change {
                handle: *handle,
                resources: *old,
            });
            blame.push(x.clone());
        }
        let after = |pick: fn(&Resources) -> u32| -> u32 {
            current
                .iter()
                .map(|(_, h, _, old)| {
                    changes
                        .iter()
                        .find(|c| c.handle == *h)
                        .map_or(pick(old), |c| pick(&c.resources))
                })
                .sum()
        };
        let cpu = after(|r| r.cpu_pct);
        if cpu > 100 {
            return Err(dm_err!(
                DeviceFull,
                "inconsistent: the CPU shares would add up to {cpu}% (at most 100%)"
            ));
        }
        let net = after(|r| r.net_pct);
        if net > 100 {
            return Err(dm_err!(
                DeviceFull,
                "inconsistent: the network shares would add up to {net}% (at most 100%)"
            ));
        }
        if storage_added > dev.storage_free {
            return Err(dm_err!(
                DeviceFull,
                "inconsistent: {storage_added} bytes more storage, {} free",
                dev.storage_free
            ));
        }
        if let Err((s, at)) = self.hv.apply(&changes) {
            let e: DmError = hv_error(s, "apply");
            return Err(match at.and_then(|i| blame.get(i)) {
                Some(x) => e.blame(x),
                None => e,
            });
        }
        self.record(Undo::Apply(undo));
        self.drop_new_configs(&names);
        for x in &blame {
            self.set_last_error(x, "");
        }
        Ok(String::new())
    }

    fn drop_new_configs(&mut self, names: &[String]) {
        for x in names {
            self.tree.remove_subtree(&path_of(NodeId::NewConfig, &[x]));
        }
    }
}
