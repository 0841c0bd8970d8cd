//! Making the tree agree with the hypervisor: at boot, after loading the saved copy, and after a
//! rollback whose undo failed. The hypervisor is the truth about VMs and images; the tree is the
//! truth about what servers wrote.
//!
//! Rules (docs/virmo.md, "Persistence"):
//! - A saved node is restored if the node table allows it at that place; the static nodes
//!   (DevInfo, DevDetail, ...) keep their values from code and take only the saved ACL and
//!   title. Nodes that do not fit are dropped with a notice.
//! - A VM entry whose handle the hypervisor still has takes its real state (after a restart
//!   the hypervisor brings Running VMs back PoweredOff and Suspended ones Suspended). One whose
//!   VM is gone goes back to State 0 (NotCreated) with a note in Ext/LastError, keeping every
//!   value a server wrote, so Exec Create can make it again.
//! - A VM the hypervisor has and no entry names (made by the boot bundle, or left behind by a
//!   crash or a failed undo) is adopted as a new `VirMO/<name>` entry with a new VMID and
//!   CreateParams describing it.
//! - Each store image without an entry gets one (State 2). An entry whose store image is gone
//!   goes back to State 0 and loses its DownloadedLocation.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use abi::mgmt::VmInfo;
use abi::Status;

use super::lifecycle::VirState;
use super::Agent;
use crate::hv::Hypervisor;
use crate::params;
use crate::persist::Saved;
use crate::tree::schema::{self, path_of, Def, NodeId};
use crate::tree::{self, uri, ROOT};

impl<H: Hypervisor> Agent<H> {
    /// Puts a saved copy into the (skeleton) tree.
    pub(crate) fn restore(&mut self, saved: Saved) {
        self.counters = saved.counters;
        for (path, node) in saved.nodes {
            if super::skeleton::is_static(&path) {
                if let Some(n) = self.tree.get_mut(&path) {
                    n.acl = node.acl;
                    n.title = node.title;
                }
                continue;
            }
            let fits = path != ROOT
                && uri::parse(&path).is_ok_and(|u| u.path == path && u.query.is_none())
                && tree::parent(&path)
                    .and_then(|p| self.tree.get(p))
                    .is_some_and(|p| p.is_interior())
                && match schema::lookup(&path) {
                    Some(Def::Fixed(d)) => d.format == node.format,
                    Some(Def::Open) => true,
                    None => false,
                };
            if fits {
                self.tree.insert(&path, node);
            } else {
                self.note(alloc::format!(
                    "saved node {path} does not fit the tree: dropped"
                ));
            }
        }
        // Complete sub-trees saved by an older agent, and keep identifiers unique even if the
        // counters were damaged.
        for x in self.vm_names() {
            self.fill_subtree(
                NodeId::Vm,
                &x,
                &[(NodeId::VmState, "0"), (NodeId::VmHandle, "0")],
            );
            if let Ok(n) = self.vm_value(&x, NodeId::VmId).parse::<u64>() {
                self.counters.next_vmid = self.counters.next_vmid.max(n + 1);
            }
        }
        for y in self.image_names() {
            self.fill_subtree(NodeId::Img, &y, &[(NodeId::ImgState, "0")]);
            if let Some(n) = self
                .image_value(&y, NodeId::ImgId)
                .strip_prefix("new-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                self.counters.next_img = self.counters.next_img.max(n + 1);
            }
        }
    }

    pub(crate) fn reconcile(&mut self) {
        self.reconcile_images();
        self.reconcile_vms();
    }

    fn reconcile_images(&mut self) {
        let images = match self.hv.images() {
            Ok(list) => list,
            Err(s) => {
                self.note(alloc::format!(
                    "image list failed ({}): VMImgMO not refreshed",
                    s.name()
                ));
                return;
            }
        };
        for y in self.image_names() {
            if let Some(id) = self.store_id(&y) {
                if !images.iter().any(|i| i.id == id) {
                    self.set_image_state(&y, super::images::NOT_DOWNLOADED);
                    self.set_downloaded_location(&y, None);
                    self.note(alloc::format!(
                        "VMImgMO/{y}: image {id} is no longer in the store: State 0"
                    ));
                }
            }
        }
        for info in &images {
            let known = self
                .image_names()
                .iter()
                .any(|y| self.store_id(y) == Some(info.id));
            if !known {
                let y = self.unique_name(
                    "VMImgMO",
                    info.name.as_str(),
                    &alloc::format!("img{}", info.id),
                );
                self.add_store_image(&y, info);
            }
        }
    }

    fn set_image_state(&mut self, y: &str, state: &str) {
        self.tree.set_value(&path_of(NodeId::ImgState, &[y]), state);
    }

    /// Refreshes every VM entry, forgets the VMs that are gone, adopts the unknown ones.
    pub(crate) fn reconcile_vms(&mut self) {
        let handles = match self.hv.list() {
            Ok(h) => h,
            Err(s) => {
                self.note(alloc::format!(
                    "VM list failed ({}): VirMO not refreshed",
                    s.name()
                ));
                return;
            }
        };
        let mut named = Vec::new();
        for x in self.vm_names() {
            let h = self.vm_handle(&x);
            if h == 0 {
                continue;
            }
            if handles.contains(&h) {
                named.push(h);
                if let Err(s) = self.query_vm(&x) {
                    self.note(alloc::format!("VirMO/{x}: query failed: {}", s.name()));
                }
            } else {
                self.forget_vm(&x, h);
            }
        }
        for h in handles.into_iter().filter(|h| !named.contains(h)) {
            match self.hv.query(h) {
                Ok(info) => self.adopt(&info),
                Err(Status::NotFound) => {}
                Err(s) => self.note(alloc::format!("VM {h}: query failed: {}", s.name())),
            }
        }
    }

    /// A VM nobody named gets an entry, as if a server had made it.
    fn adopt(&mut self, info: &VmInfo) {
        let x = self.unique_name(
            "VirMO",
            info.name.as_str(),
            &alloc::format!("vm{}", info.handle),
        );
        let state = VirState::from_hv(info.state);
        let mut create = alloc::format!(
            "ImgID={}&Running={}&{}",
            info.image,
            state == VirState::Running,
            params::format_config(&info.resources)
        );
        // The name goes in only if it cannot break the key=value syntax.
        let name = info.name.as_str();
        if !name.is_empty() && !name.contains(['&', '=']) {
            create.push_str("&Name=");
            create.push_str(name);
        }
        let vmid = self.counters.next_vmid.to_string();
        self.counters.next_vmid += 1;
        let handle = info.handle.to_string();
        self.fill_subtree(
            NodeId::Vm,
            &x,
            &[
                (NodeId::VmId, &vmid),
                (NodeId::VmState, state.value()),
                (NodeId::VmHandle, &handle),
                (NodeId::CreateParams, &create),
                (
                    NodeId::VmDescription,
                    "adopted: a VM the hypervisor had and no VirMO entry named",
                ),
            ],
        );
        self.note(alloc::format!(
            "VirMO/{x}: adopted VM {} ({state})",
            info.handle
        ));
    }

    /// A child name of `parent` made from `wanted` (characters a segment cannot hold become
    /// `-`), or `fallback`, not used yet.
    pub(crate) fn unique_name(&self, parent: &str, wanted: &str, fallback: &str) -> String {
        let clean: String = wanted
            .chars()
            .map(|c| if uri::segment_char_ok(c) { c } else { '-' })
            .collect();
        let clean = super::virmo::truncate(&clean, uri::MAX_SEG_LEN - 4);
        let base = if clean.is_empty() || uri::check_segment(clean).is_err() {
            fallback
        } else {
            clean
        };
        let taken = |n: &str| self.tree.contains(&tree::join(parent, n));
        if !taken(base) {
            return base.into();
        }
        (2..)
            .map(|i| alloc::format!("{}-{i}", super::virmo::truncate(base, uri::MAX_SEG_LEN - 4)))
            .find(|n| !taken(n))
            .expect("a free name")
    }
}
