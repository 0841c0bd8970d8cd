//! The rules every DM command obeys (OMA DM 1.3 TND and Representation Protocol), in order:
//! URI syntax and limits (400, 414), the node's existence (404; 418 for Add), the access type
//! of its definition in the node table (405), the ACL (425: the node's own ACL for Get,
//! Replace, Delete and Exec; the parent's for Add), the value's format (415). Only then the
//! behaviour of the MO runs (`agent`), dispatched on the node's `NodeId`.
//!
//! Owns: those checks and the dispatch. Never: changes the hypervisor itself.

use alloc::string::{String, ToString};

use super::{Command, DmResult};
use crate::agent::Agent;
use crate::dm::dm_err;
use crate::hv::Hypervisor;
use crate::params;
use crate::tree::acl::{self, Acl};
use crate::tree::schema::{self, Cmd, Def, Format, NodeId, Scope, TEXT_PLAIN};
use crate::tree::uri::{self, Query};
use crate::tree::{self, Node, ROOT};

/// The `<x>` name at segment `i` of `path` (`VirMO/vm1/State`, 1 → `vm1`).
fn segment(path: &str, i: usize) -> &str {
    path.split('/').nth(i).unwrap_or("")
}

impl<H: Hypervisor> Agent<H> {
    /// Runs `cmd` for `server` without the transaction around it (see `Agent::execute`). A
    /// failed change inside `VirMO/<x>` is blamed on VM `x` (its Ext/LastError says why).
    pub(crate) fn run(&mut self, server: &str, cmd: &Command, in_atomic: bool) -> DmResult {
        let result = self.dispatch(server, cmd, in_atomic);
        match result {
            Err(e) if cmd.is_mutating() && e.blame.is_none() => Err(match self.vm_of(cmd.uri()) {
                Some(x) => e.blame(&x),
                None => e,
            }),
            other => other,
        }
    }

    fn dispatch(&mut self, server: &str, cmd: &Command, in_atomic: bool) -> DmResult {
        let u = uri::parse(cmd.uri()).map_err(|e| {
            if e.is_limit() {
                dm_err!(UriTooLong, "{}: {e}", cmd.uri())
            } else {
                dm_err!(BadRequest, "{}: {e}", cmd.uri())
            }
        })?;
        let path = u.path.as_str();
        match (cmd, &u.query) {
            (_, Some(Query::List(what))) => Err(dm_err!(
                NotSupported,
                "?list={what} is not supported: Get an interior node for its children"
            )),
            (Command::Get { .. }, Some(Query::Prop(p))) => self.get_prop(server, path, p),
            (Command::Replace { value, .. }, Some(Query::Prop(p))) => {
                self.replace_prop(server, path, p, value)
            }
            (_, Some(Query::Prop(_))) => {
                Err(dm_err!(NotAllowed, "only Get and Replace take ?prop="))
            }
            (Command::Get { .. }, None) => self.get(server, path),
            (Command::Add { format, value, .. }, None) => self.add(server, path, *format, value),
            (Command::Replace { value, .. }, None) => self.replace(server, path, value),
            (Command::Delete { .. }, None) => self.delete(server, path),
            (Command::Exec { .. }, None) => self.exec(server, path, in_atomic),
        }
    }

    /// The definition of an existing node (404 if there is none).
    fn existing(&self, path: &str) -> DmResult<Def> {
        if !self.tree.contains(path) {
            return Err(dm_err!(NotFound, "no such node: {path}"));
        }
        schema::lookup(path).ok_or_else(|| dm_err!(Failed, "{path} has no definition"))
    }

    fn check_access(def: Def, cmd: Cmd, path: &str) -> DmResult<()> {
        if def.access().allows(cmd) {
            return Ok(());
        }
        let name = tree::name(path);
        Err(match cmd {
            Cmd::Get => dm_err!(NotAllowed, "{name} is not readable"),
            Cmd::Replace => dm_err!(NotAllowed, "{name} is not replaceable"),
            Cmd::Exec => dm_err!(NotAllowed, "{path} is not executable"),
            Cmd::Delete => dm_err!(NotAllowed, "{path} cannot be deleted"),
            Cmd::Add => dm_err!(NotAllowed, "{path} cannot be added"),
        })
    }

    /// 425 unless the ACL in force at `acl_node` grants `cmd` to `server`.
    fn check_acl(&self, acl_node: &str, cmd: Cmd, server: &str, path: &str) -> DmResult<()> {
        let acl = self.tree.effective_acl(acl_node);
        if acl::allows(acl, cmd, server) {
            return Ok(());
        }
        Err(dm_err!(
            PermissionDenied,
            "server {server} may not {} {path} (ACL of {acl_node}: {acl})",
            cmd.name()
        ))
    }

    fn get(&mut self, server: &str, path: &str) -> DmResult {
        let def = self.existing(path)?;
        Self::check_access(def, Cmd::Get, path)?;
        self.check_acl(path, Cmd::Get, server, path)?;
        let node = self.tree.get(path).expect("exists");
        if node.is_interior() {
            return Ok(self.tree.children(path).join("/"));
        }
        match def.id() {
            Some(NodeId::VmState) => {
                let x = segment(path, 1);
                Ok(self.refresh_vm(x).value().into())
            }
            Some(NodeId::CurrentConfig) => self.current_config(segment(path, 1)),
            Some(NodeId::DeviceResources) => self.device_resources(),
            _ => Ok(node.value.clone()),
        }
    }

    fn add(&mut self, server: &str, path: &str, format: Option<Format>, value: &str) -> DmResult {
        if self.tree.contains(path) {
            return Err(dm_err!(AlreadyExists, "{path} already exists"));
        }
        let parent = tree::parent(path).unwrap_or(ROOT);
        match self.tree.get(parent) {
            None => {
                return Err(dm_err!(
                    NotFound,
                    "no such node: {parent} (parent of {path})"
                ))
            }
            Some(p) if !p.is_interior() => {
                return Err(dm_err!(
                    NotAllowed,
                    "{parent} is a leaf: it has no children"
                ))
            }
            Some(_) => {}
        }
        let def = schema::lookup(path).ok_or_else(|| {
            dm_err!(
                NotAllowed,
                "{path} is not a node of this tree (see the DDF)"
            )
        })?;
        Self::check_access(def, Cmd::Add, path)?;
        self.check_acl(parent, Cmd::Add, server, path)?;
        let format = match def {
            Def::Fixed(d) => match format {
                Some(f) if f != d.format => {
                    return Err(dm_err!(
                        BadFormat,
                        "{path} has format {}, not {f}",
                        d.format
                    ))
                }
                _ => d.format,
            },
            Def::Open => format.unwrap_or(Format::Chr),
        };
        if format != Format::Node {
            format
                .check(value)
                .map_err(|why| dm_err!(BadFormat, "{value:?} {why}"))?;
        }
        let name = tree::name(path);
        match def {
            Def::Fixed(d) => match d.id {
                NodeId::Vm => self.add_vm(name),
                NodeId::Img => self.add_image(name),
                _ => {
                    if d.id == NodeId::NewConfig {
                        params::parse_config(value)
                            .map_err(|e| dm_err!(BadRequest, "NewConfig: {e}"))?;
                    }
                    self.tree.insert(path, crate::agent::node_for(d, value));
                    Ok(String::new())
                }
            },
            Def::Open => {
                let node = if format == Format::Node {
                    // The value of an interior node is its Type: the MOID of an MO root.
                    Node::interior(value)
                } else {
                    Node::leaf(format, TEXT_PLAIN, value)
                };
                self.tree.insert(path, node);
                Ok(String::new())
            }
        }
    }

    fn replace(&mut self, server: &str, path: &str, value: &str) -> DmResult {
        let def = self.existing(path)?;
        let node = self.tree.get(path).expect("exists");
        if node.is_interior() {
            return Err(dm_err!(
                NotAllowed,
                "{} is an interior node: it has no value to replace",
                tree::name(path)
            ));
        }
        let format = node.format;
        Self::check_access(def, Cmd::Replace, path)?;
        self.check_acl(path, Cmd::Replace, server, path)?;
        format
            .check(value)
            .map_err(|why| dm_err!(BadFormat, "{value:?} {why}"))?;
        match def.id() {
            Some(NodeId::CreateParams) => {
                params::parse_create_params(value)
                    .map_err(|e| dm_err!(BadRequest, "CreateParams: {e}"))?;
            }
            Some(NodeId::NewConfig) => {
                params::parse_config(value).map_err(|e| dm_err!(BadRequest, "NewConfig: {e}"))?;
            }
            _ => {}
        }
        self.tree.set_value(path, value);
        Ok(String::new())
    }

    fn delete(&mut self, server: &str, path: &str) -> DmResult {
        if path == ROOT {
            return Err(dm_err!(NotAllowed, "the root cannot be deleted"));
        }
        let def = self.existing(path)?;
        if def.scope() == Scope::Permanent {
            return Err(dm_err!(
                NotAllowed,
                "{path} is permanent: it cannot be deleted"
            ));
        }
        Self::check_access(def, Cmd::Delete, path)?;
        self.check_acl(path, Cmd::Delete, server, path)?;
        match def.id() {
            Some(NodeId::Vm) => self.check_vm_deletable(segment(path, 1))?,
            Some(NodeId::Img) => self.check_image_deletable(segment(path, 1))?,
            _ => {}
        }
        self.tree.remove_subtree(path);
        Ok(String::new())
    }

    fn exec(&mut self, server: &str, path: &str, in_atomic: bool) -> DmResult {
        let def = self.existing(path)?;
        if let Def::Open = def {
            return Err(dm_err!(
                NotSupported,
                "{path}: commands below DMTree are kept in the tree, not forwarded (VMs run no DM client)"
            ));
        }
        Self::check_access(def, Cmd::Exec, path)?;
        self.check_acl(path, Cmd::Exec, server, path)?;
        let x = segment(path, 1);
        match def.id().expect("fixed") {
            NodeId::ApplyChanges => self.apply_changes(),
            NodeId::OpDownload => self.download_image(x),
            NodeId::OpImgDelete => self.delete_image(x, in_atomic),
            id => self.exec_vm(x, id, in_atomic),
        }
    }

    /// `Get URI?prop=NAME` (DM 1.3 TND, node properties).
    fn get_prop(&mut self, server: &str, path: &str, prop: &str) -> DmResult {
        self.existing(path)?;
        self.check_acl(path, Cmd::Get, server, path)?;
        let node = self.tree.get(path).expect("exists");
        match prop {
            "ACL" => Ok(node.acl.clone()),
            "Format" => Ok(node.format.name().into()),
            "Type" => Ok(node.mime.clone()),
            "Name" => Ok(if path == ROOT { ROOT } else { tree::name(path) }.into()),
            "Size" if node.is_interior() => {
                Err(dm_err!(NotAllowed, "Size is a property of leaf nodes only"))
            }
            "Size" => Ok(node.value.len().to_string()),
            "Title" => Ok(node.title.clone()),
            _ => Err(dm_err!(
                NotSupported,
                "property {prop} is not supported (ACL, Format, Type, Name, Size, Title)"
            )),
        }
    }

    /// `Replace URI?prop=ACL|Title`. Changing a node's ACL takes the Replace right on the node
    /// if it is interior, on its parent if it is a leaf (DM 1.3 TND).
    fn replace_prop(&mut self, server: &str, path: &str, prop: &str, value: &str) -> DmResult {
        self.existing(path)?;
        let interior = self.tree.get(path).expect("exists").is_interior();
        match prop {
            "ACL" => {
                let rights_on = if interior {
                    path
                } else {
                    tree::parent(path).unwrap_or(ROOT)
                };
                self.check_acl(rights_on, Cmd::Replace, server, path)?;
                let acl = Acl::parse(value).map_err(|e| dm_err!(BadRequest, "{e}"))?;
                if path == ROOT && acl.is_empty() {
                    return Err(dm_err!(BadRequest, "the root's ACL cannot be empty"));
                }
                self.tree.get_mut(path).expect("exists").acl = value.into();
                Ok(String::new())
            }
            "Title" => {
                self.check_acl(path, Cmd::Replace, server, path)?;
                self.tree.get_mut(path).expect("exists").title = value.into();
                Ok(String::new())
            }
            "Name" => Err(dm_err!(NotSupported, "renaming nodes is not supported")),
            "Format" | "Type" | "Size" => Err(dm_err!(NotAllowed, "{prop} cannot be replaced")),
            _ => Err(dm_err!(
                NotSupported,
                "property {prop} is not supported (ACL, Title)"
            )),
        }
    }
}
