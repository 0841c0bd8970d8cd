//! The nodes that exist on every device from the first boot: the root, DevInfo, DevDetail, the
//! DMAcc placeholder, and the static parts of VirMO and VMImgMO (DM 1.3 standard objects; VirMO
//! sections 8 and 9).
//!
//! Owns: their values (which come from code and configuration, so they are rebuilt at every
//! boot rather than loaded), the default ACLs, and the server account created on a fresh tree.

use alloc::string::String;

use crate::tree::schema::{def_of, path_of, NodeDef, NodeId, NODES};
use crate::tree::{uri, Node, Tree, ROOT};

use super::AgentConfig;

/// A node as its definition says, with `value` for a leaf.
pub(crate) fn node_for(def: &NodeDef, value: &str) -> Node {
    if def.format == crate::tree::schema::Format::Node {
        Node::interior(def.mime)
    } else {
        Node::leaf(def.format, def.mime, value)
    }
}

/// The root's ACL: anyone may read, only the configured server may change anything. Every node
/// inherits it unless a server gives it its own.
pub(crate) fn root_acl(server: &str) -> String {
    alloc::format!("Add={server}&Delete={server}&Exec={server}&Get=*&Replace={server}")
}

/// The static nodes, the ids of which are listed here and nowhere else.
const STATIC: [NodeId; 22] = [
    NodeId::DevInfo,
    NodeId::DevId,
    NodeId::Man,
    NodeId::Mod,
    NodeId::DmV,
    NodeId::Lang,
    NodeId::DevDetail,
    NodeId::DevTyp,
    NodeId::Oem,
    NodeId::FwV,
    NodeId::SwV,
    NodeId::HwV,
    NodeId::LrgObj,
    NodeId::Uri,
    NodeId::MaxDepth,
    NodeId::MaxTotLen,
    NodeId::MaxSegLen,
    NodeId::DmAcc,
    NodeId::VirMO,
    NodeId::Operations,
    NodeId::ApplyChanges,
    NodeId::DeviceResources,
];

pub(crate) fn skeleton(config: &AgentConfig) -> Tree {
    let mut tree = Tree::new();
    tree.get_mut(ROOT).expect("root").acl = root_acl(&config.server_id);
    let max_depth = alloc::format!("{}", uri::MAX_DEPTH);
    let max_tot = alloc::format!("{}", uri::MAX_TOT_LEN);
    let max_seg = alloc::format!("{}", uri::MAX_SEG_LEN);
    for id in STATIC.into_iter().chain([NodeId::VmImgMO]) {
        let def = def_of(id);
        let value: &str = match id {
            NodeId::DevId => &config.dev_id,
            NodeId::Man => &config.man,
            NodeId::Mod => &config.model,
            NodeId::DmV => "1.3",
            NodeId::Lang => "en-US",
            NodeId::DevTyp => &config.dev_type,
            NodeId::Oem => &config.oem,
            NodeId::FwV => &config.fw_version,
            NodeId::SwV => env!("CARGO_PKG_VERSION"),
            NodeId::HwV => &config.hw_version,
            NodeId::LrgObj => "false",
            NodeId::MaxDepth => &max_depth,
            NodeId::MaxTotLen => &max_tot,
            NodeId::MaxSegLen => &max_seg,
            _ => "",
        };
        tree.insert(def.path, node_for(def, value));
    }
    tree
}

/// Whether `path` is a node of the skeleton (its value comes from code, not from the store).
pub(crate) fn is_static(path: &str) -> bool {
    path == ROOT
        || STATIC
            .into_iter()
            .chain([NodeId::VmImgMO])
            .any(|id| def_of(id).path == path)
}

/// The account of the configured server, created on a fresh tree (DM 1.3 DMAcc).
pub(crate) fn default_account(tree: &mut Tree, config: &AgentConfig) {
    let acc = config.account.as_str();
    let addr = "1";
    for d in NODES.iter().filter(|d| d.path.starts_with("DMAcc/<x>")) {
        let value: &str = match d.id {
            NodeId::AppId => "w7",
            NodeId::ServerId => &config.server_id,
            NodeId::AccName => &config.server_name,
            NodeId::Addr => &config.server_addr,
            NodeId::AddrType => "URI",
            NodeId::AAuthPref => "",
            _ => "",
        };
        let path = path_of(d.id, &[acc, addr]);
        tree.insert(&path, node_for(d, value));
    }
}
