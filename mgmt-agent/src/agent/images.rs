//! `VMImgMO/<x>`: the VM images (VirMO 1.0 sections 9 and 10.1).
//!
//! Owns: the image sub-trees, made at boot for each image of the hypervisor's store (State 2,
//! `DownloadedLocation` = `store:<id>`, `ImgID` = the store id) or on Add by a server (State 0,
//! `ImgID` = `new-<n>`), and their operations. Download needs a network the management VM does
//! not have yet: 406. Delete removes the image from the store, then the sub-tree.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use abi::mgmt::ImageInfo;
use abi::Status;

use super::Agent;
use crate::dm::dm_err;
use crate::dm::DmResult;
use crate::hv::Hypervisor;
use crate::tree::schema::{def_of, path_of, NodeId};

/// `VMImgMO/<x>/State` values (section 9).
pub const NOT_DOWNLOADED: &str = "0";
pub const DOWNLOADED: &str = "2";

/// The `DownloadedLocation` prefix of an image in the hypervisor's store.
pub const STORE_PREFIX: &str = "store:";

impl<H: Hypervisor> Agent<H> {
    pub(crate) fn image_names(&self) -> Vec<String> {
        self.tree
            .children("VMImgMO")
            .into_iter()
            .map(String::from)
            .collect()
    }

    pub(crate) fn image_value(&self, y: &str, id: NodeId) -> String {
        self.tree
            .value(&path_of(id, &[y]))
            .unwrap_or_default()
            .to_string()
    }

    /// The store id of image entry `y`, if it is downloaded into the store.
    pub(crate) fn store_id(&self, y: &str) -> Option<u32> {
        if self.image_value(y, NodeId::ImgState) != DOWNLOADED {
            return None;
        }
        self.tree
            .value(&path_of(NodeId::DownloadedLocation, &[y]))?
            .strip_prefix(STORE_PREFIX)?
            .parse()
            .ok()
    }

    /// Add `VMImgMO/<x>` by a server (section 10.1 step 2): a new ImgID, State 0.
    pub(crate) fn add_image(&mut self, y: &str) -> DmResult {
        let id = alloc::format!("new-{}", self.counters.next_img);
        self.counters.next_img += 1;
        self.fill_subtree(
            NodeId::Img,
            y,
            &[(NodeId::ImgId, &id), (NodeId::ImgState, NOT_DOWNLOADED)],
        );
        Ok(String::new())
    }

    /// The entry of store image `info`, made at boot under the name `y`.
    pub(crate) fn add_store_image(&mut self, y: &str, info: &ImageInfo) {
        let id = info.id.to_string();
        let description = alloc::format!(
            "{:?} image of {} bytes, initrd {} bytes, default RAM {} bytes",
            info.format,
            info.size,
            info.initrd_size,
            info.default_ram
        );
        self.fill_subtree(
            NodeId::Img,
            y,
            &[
                (NodeId::ImgId, &id),
                (NodeId::ImgName, info.name.as_str()),
                (NodeId::ImgDescription, &description),
                (NodeId::ImgState, DOWNLOADED),
                (NodeId::MediaType, info.format.media_type()),
            ],
        );
        self.set_downloaded_location(y, Some(info.id));
    }

    /// Sets (or, with `None`, removes) `DownloadedLocation`, which only exists in State 2.
    pub(crate) fn set_downloaded_location(&mut self, y: &str, id: Option<u32>) {
        let path = path_of(NodeId::DownloadedLocation, &[y]);
        match id {
            Some(id) => {
                let value = alloc::format!("{STORE_PREFIX}{id}");
                let def = def_of(NodeId::DownloadedLocation);
                self.tree
                    .insert(&path, super::skeleton::node_for(def, &value));
            }
            None => self.tree.remove_subtree(&path),
        }
    }

    /// Exec `VMImgMO/<x>/Operations/Download`.
    pub(crate) fn download_image(&mut self, y: &str) -> DmResult {
        Err(dm_err!(
            NotSupported,
            "VMImgMO/{y}: Download is not supported yet (the management VM has no network); \
             images reach the store with the boot bundle"
        ))
    }

    /// Exec `VMImgMO/<x>/Operations/Delete`: the image leaves the store, then its sub-tree
    /// goes (section 9). Cannot be undone: refused in an Atomic, saved ahead
    /// ([`Agent::irreversible`]).
    pub(crate) fn delete_image(&mut self, y: &str, in_atomic: bool) -> DmResult {
        if in_atomic {
            return Err(dm_err!(
                NotSupported,
                "deleting an image cannot be rolled back, so it is not allowed inside an Atomic"
            ));
        }
        let path = path_of(NodeId::Img, &[y]);
        let Some(id) = self.store_id(y) else {
            // Nothing downloaded: only the sub-tree goes.
            self.tree.remove_subtree(&path);
            return Ok(String::new());
        };
        if let Some(user) = self.image_user(id) {
            return Err(dm_err!(
                Forbidden,
                "VMImgMO/{y} (image {id}) is used by VirMO/{user}, whose power-on boots it \
                 again: delete that VM first"
            ));
        }
        self.irreversible(
            "image delete",
            |agent| agent.tree.remove_subtree(&path),
            |hv| match hv.remove_image(id) {
                Err(Status::NotFound) => Ok(()),
                other => other,
            },
        )
    }

    /// DM Delete of `VMImgMO/<x>`: only when nothing is in the store for it.
    pub(crate) fn check_image_deletable(&self, y: &str) -> DmResult<()> {
        if self.store_id(y).is_some() {
            return Err(dm_err!(
                Forbidden,
                "VMImgMO/{y} is in the store (State 2): Exec VMImgMO/{y}/Operations/Delete \
                 deletes it"
            ));
        }
        Ok(())
    }

    /// The VirMO entry of a VM that boots store image `id`, if any.
    fn image_user(&mut self, id: u32) -> Option<String> {
        for x in self.vm_names() {
            if let Ok(Some(info)) = self.query_vm(&x) {
                if info.image == id {
                    return Some(x);
                }
            }
        }
        None
    }
}
