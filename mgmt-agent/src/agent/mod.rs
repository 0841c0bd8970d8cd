//! The VirMO Client (VirMO 1.0 section 6.4.1): the management tree, kept consistent with the
//! hypervisor, and the DM commands that manage both.
//!
//! Owns: the [`Agent`] (tree + hypervisor + persistent copy), booting and reconciling, and the
//! transaction around every command: a failed command leaves the tree and the hypervisor as
//! they were (tree snapshot + undo of hypervisor effects), a successful mutating one is saved
//! to the persistent area before it is answered (or undone if the save fails).
//! The generic command rules are in `dm::engine`, the MO behaviour in the sub-modules here:
//! `virmo` (VM sub-trees and lifecycle), `resources` (ApplyChanges, DeviceResources), `images`
//! (VMImgMO), `ui` (ExecUICmd), `reconcile` (boot), `skeleton` (static nodes).

mod images;
pub mod lifecycle;
mod reconcile;
mod resources;
mod skeleton;
mod ui;
mod virmo;

use alloc::string::String;
use alloc::vec::Vec;

use abi::mgmt::Change;

pub(crate) use skeleton::node_for;

use crate::dm::{Command, DmError, Outcome, StatusCode};
use crate::hv::Hypervisor;
use crate::persist::{self, Counters, SaveError, Store};
use crate::tree::Tree;

/// What the agent says about the device and the DM server it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// The DM server's identifier: `DMAcc/<account>/ServerID`, the server named in the default
    /// ACLs, and the identity the management shell acts as.
    pub server_id: String,
    /// The `DMAcc/<x>` node of that server's account.
    pub account: String,
    pub server_name: String,
    pub server_addr: String,
    /// `DevInfo/DevId`.
    pub dev_id: String,
    pub man: String,
    pub model: String,
    pub dev_type: String,
    pub oem: String,
    /// `DevDetail/FwV`: the binary puts the hypervisor's ABI version here.
    pub fw_version: String,
    pub hw_version: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            server_id: "virmo-server".into(),
            account: "VirMOServer".into(),
            server_name: "VirMO server".into(),
            server_addr: "console:mgmt".into(),
            dev_id: "urn:hv-virmo:mgmt".into(),
            man: "hv project".into(),
            model: "Type-I hypervisor, AArch64".into(),
            dev_type: "virtualization host".into(),
            oem: "hv project".into(),
            fw_version: "unknown".into(),
            hw_version: "aarch64".into(),
        }
    }
}

/// A hypervisor effect and how to take it back (Atomic rollback, failed save).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Undo {
    Delete(u32),
    PowerOff(u32),
    Suspend(u32),
    Resume(u32),
    Apply(Vec<Change>),
}

/// The hypervisor effects of the open transaction, each with the index of the command (in an
/// Atomic) that caused it.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub cmd: usize,
    pub undo: Vec<(usize, Undo)>,
}

pub struct Agent<H: Hypervisor> {
    pub(crate) hv: H,
    pub(crate) tree: Tree,
    pub(crate) config: AgentConfig,
    pub(crate) counters: Counters,
    pub(crate) store: Store,
    pub(crate) journal: Option<Journal>,
    pub(crate) notices: Vec<String>,
}

impl<H: Hypervisor> Agent<H> {
    /// Starts the agent: loads the persistent copy of the tree (or starts a fresh one), then
    /// makes it agree with the hypervisor (`reconcile`), then saves the result.
    pub fn boot(mut hv: H, config: AgentConfig) -> Agent<H> {
        let (store, loaded) = Store::open(&mut hv);
        let mut agent = Agent {
            hv,
            tree: skeleton::skeleton(&config),
            config,
            counters: Counters::default(),
            store,
            journal: None,
            notices: Vec::new(),
        };
        match loaded {
            Ok(saved) => {
                let n = saved.nodes.len();
                agent.restore(saved);
                agent.note(alloc::format!(
                    "loaded the tree from the persistent area ({n} nodes)"
                ));
            }
            Err(why) => {
                agent.note(alloc::format!("{why}: starting a fresh tree"));
                skeleton::default_account(&mut agent.tree, &agent.config);
            }
        }
        agent.reconcile();
        if let Err(e) = agent.persist() {
            agent.note(alloc::format!("saving the tree at boot failed: {e}"));
        }
        agent
    }

    /// Runs one command as `server`: all of it or nothing of it.
    pub fn execute(&mut self, server: &str, cmd: &Command) -> Outcome {
        let before = self.tree.clone();
        self.journal = Some(Journal::default());
        let result = self.run(server, cmd, false);
        let journal = self.journal.take().unwrap_or_default();
        let result = match result {
            Ok(text) if cmd.is_mutating() => self.persist().map(|_| text).map_err(|e| {
                let e = save_error(e);
                match self.vm_of(cmd.uri()) {
                    Some(x) => e.blame(&x),
                    None => e,
                }
            }),
            other => other,
        };
        match result {
            Ok(text) => Outcome::ok(text),
            Err(e) => {
                self.roll_back(before, journal.undo);
                self.record_failure(&e);
                e.outcome()
            }
        }
    }

    /// Lines for the console that are not answers (boot messages, user interaction displays,
    /// rollback failures), oldest first.
    pub fn take_notices(&mut self) -> Vec<String> {
        core::mem::take(&mut self.notices)
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn hv(&self) -> &H {
        &self.hv
    }

    /// For tests and the binary: reach the hypervisor behind the agent's back.
    pub fn hv_mut(&mut self) -> &mut H {
        &mut self.hv
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Stops the agent, giving the hypervisor back (a "device restart" in tests).
    pub fn into_hv(self) -> H {
        self.hv
    }

    /// The `VirMO/<x>` entry a command's URI is in, if it exists.
    pub(crate) fn vm_of(&self, uri: &str) -> Option<String> {
        let path = crate::tree::uri::parse(uri).ok()?.path;
        let mut segs = path.split('/');
        let (Some("VirMO"), Some(x), Some(_)) = (segs.next(), segs.next(), segs.next()) else {
            return None;
        };
        self.tree
            .contains(&alloc::format!("VirMO/{x}/VMID"))
            .then(|| x.into())
    }

    pub(crate) fn note(&mut self, line: String) {
        self.notices.push(line);
    }

    /// Records a hypervisor effect of the current command.
    pub(crate) fn record(&mut self, undo: Undo) {
        if let Some(j) = &mut self.journal {
            j.undo.push((j.cmd, undo));
        }
    }

    /// Saves the tree if it changed since the last save.
    pub(crate) fn persist(&mut self) -> Result<bool, SaveError> {
        let payload = persist::encode(&self.tree, &self.counters);
        self.store.save(&mut self.hv, payload)
    }

    /// Undoes `undo` (newest first) and restores `before`. Returns the commands whose effect
    /// could not be undone; if any, the tree is then re-read from the hypervisor, which is the
    /// truth about VMs.
    pub(crate) fn roll_back(&mut self, before: Tree, undo: Vec<(usize, Undo)>) -> Vec<usize> {
        let mut failed = Vec::new();
        for (cmd, u) in undo.into_iter().rev() {
            let r = match &u {
                Undo::Delete(h) => self.hv.delete(*h),
                Undo::PowerOff(h) => self.hv.power_off(*h),
                Undo::Suspend(h) => self.hv.suspend(*h),
                Undo::Resume(h) => self.hv.resume(*h),
                Undo::Apply(changes) => self.hv.apply(changes).map_err(|(s, _)| s),
            };
            if let Err(s) = r {
                self.note(alloc::format!("rollback failed: {u:?}: {}", s.name()));
                failed.push(cmd);
            }
        }
        self.tree = before;
        if !failed.is_empty() {
            self.reconcile_vms();
        }
        failed
    }

    /// Writes why a command failed into the blamed VM's `Ext/LastError` (the one node a failed
    /// command changes; it is saved with the next successful change).
    pub(crate) fn record_failure(&mut self, e: &DmError) {
        if let Some(x) = &e.blame {
            let text = alloc::format!("{} {}", e.code, e.reason);
            self.set_last_error(&x.clone(), &text);
        }
    }
}

/// The DM status of a failed save.
pub(crate) fn save_error(e: SaveError) -> DmError {
    let code = match e {
        SaveError::TooLarge { .. } => StatusCode::DeviceFull,
        SaveError::Io(_) => StatusCode::DataStoreFailure,
    };
    DmError::new(code, alloc::format!("{e}; the command was rolled back"))
}
