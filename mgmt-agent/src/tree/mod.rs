//! The management tree: nodes by path, with their values and run-time properties.
//!
//! Owns: which nodes exist, their values, formats, types, ACLs and titles. Paths are normalized
//! URIs without the leading `./` (`VirMO/vm1/State`); the root is `.`. Never: decides what a
//! command may do (that is `dm::engine` with `schema` and `acl`) or talks to the hypervisor.
//!
//! A `BTreeMap` keyed by path keeps a parent before its children and a sub-tree contiguous
//! (`a` < `a/b`, and every key of the sub-tree of `a` starts with `a/`), so children and
//! sub-trees are range scans. The whole tree is a value: cloning it is the snapshot that
//! Atomic and failed commands roll back to.

pub mod acl;
pub mod schema;
pub mod uri;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;

use schema::Format;

/// The root's path.
pub const ROOT: &str = ".";

/// One node. Interior nodes have format `node` and an empty value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub format: Format,
    /// The DM Type property: an MOID on MO roots, a MIME type on leaves, or empty.
    pub mime: String,
    /// The ACL (DM 1.3 TND syntax); empty means inherited from the parent.
    pub acl: String,
    pub title: String,
    pub value: String,
}

impl Node {
    pub fn interior(mime: &str) -> Node {
        Node {
            format: Format::Node,
            mime: mime.into(),
            acl: String::new(),
            title: String::new(),
            value: String::new(),
        }
    }

    pub fn leaf(format: Format, mime: &str, value: &str) -> Node {
        Node {
            format,
            mime: mime.into(),
            acl: String::new(),
            title: String::new(),
            value: value.into(),
        }
    }

    pub fn is_interior(&self) -> bool {
        self.format == Format::Node
    }
}

/// The parent of `path` (the root for a top-level node; `None` for the root).
pub fn parent(path: &str) -> Option<&str> {
    if path == ROOT {
        return None;
    }
    Some(path.rsplit_once('/').map_or(ROOT, |(p, _)| p))
}

/// The last segment of `path`.
pub fn name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// `parent/child`, or `child` under the root.
pub fn join(parent: &str, child: &str) -> String {
    if parent == ROOT {
        child.into()
    } else {
        alloc::format!("{parent}/{child}")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// A tree holding only the root.
    pub fn new() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT.into(), Node::interior(""));
        Tree { nodes }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.nodes.get_mut(path)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    pub fn value(&self, path: &str) -> Option<&str> {
        self.nodes.get(path).map(|n| n.value.as_str())
    }

    /// Sets the value of an existing node; false if there is none.
    pub fn set_value(&mut self, path: &str, value: &str) -> bool {
        match self.nodes.get_mut(path) {
            Some(n) => {
                n.value = value.into();
                true
            }
            None => false,
        }
    }

    /// Inserts (or replaces) the node at `path`. Its parent must exist and be interior: the
    /// engine checks that first, so a violation is a bug.
    pub fn insert(&mut self, path: &str, node: Node) {
        debug_assert!(
            parent(path).is_some_and(|p| self.nodes.get(p).is_some_and(Node::is_interior)),
            "parent of {path} missing"
        );
        self.nodes.insert(path.into(), node);
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &str) {
        let doomed: Vec<String> = self.subtree(path).map(|(p, _)| p.clone()).collect();
        for p in doomed {
            self.nodes.remove(&p);
        }
    }

    /// `path` and its descendants, parents first.
    pub fn subtree<'a>(&'a self, path: &'a str) -> impl Iterator<Item = (&'a String, &'a Node)> {
        // Every key starting with `path` is in one run from `path` on; `a-b` sorts between `a`
        // and `a/b` (`-` < `/`), so the run is filtered, not cut, at the first sibling.
        let all = path == ROOT;
        let start = if all { "" } else { path };
        self.nodes
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(p, _)| all || p.starts_with(path))
            .filter(move |(p, _)| {
                all || p.as_str() == path || p.as_bytes().get(path.len()) == Some(&b'/')
            })
    }

    /// The names of the children of `path`, in name order.
    pub fn children(&self, path: &str) -> Vec<&str> {
        let prefix = if path == ROOT {
            String::new()
        } else {
            alloc::format!("{path}/")
        };
        self.nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(prefix.as_str()))
            .filter_map(|(p, _)| {
                let rest = &p[prefix.len()..];
                (!rest.is_empty() && rest != ROOT && !rest.contains('/')).then_some(rest)
            })
            .collect()
    }

    /// The ACL in force at `path`: its own, or the nearest ancestor's non-empty one.
    pub fn effective_acl(&self, path: &str) -> &str {
        let mut at = Some(path);
        while let Some(p) = at {
            if let Some(n) = self.nodes.get(p) {
                if !n.acl.is_empty() {
                    return &n.acl;
                }
            }
            at = parent(p);
        }
        ""
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.insert("VirMO", Node::interior("urn"));
        t.insert("VirMO/a", Node::interior(""));
        t.insert("VirMO/a/State", Node::leaf(Format::Int, "text/plain", "0"));
        t.insert("VirMO/a-b", Node::interior(""));
        t.insert(
            "VirMO/a-b/State",
            Node::leaf(Format::Int, "text/plain", "1"),
        );
        t.insert("VirMOX", Node::interior(""));
        t
    }

    #[test]
    fn children_and_subtrees_do_not_leak_into_siblings_with_a_common_prefix() {
        let t = sample();
        assert_eq!(t.children(ROOT), ["VirMO", "VirMOX"]);
        assert_eq!(t.children("VirMO"), ["a", "a-b"]);
        assert_eq!(t.children("VirMO/a"), ["State"]);
        let sub: Vec<_> = t.subtree("VirMO/a").map(|(p, _)| p.as_str()).collect();
        assert_eq!(sub, ["VirMO/a", "VirMO/a/State"]);
        let mut t2 = t.clone();
        t2.remove_subtree("VirMO/a");
        assert!(t2.contains("VirMO/a-b/State"));
        assert!(!t2.contains("VirMO/a/State"));
        assert_eq!(t2.len(), t.len() - 2);
    }

    #[test]
    fn acl_is_inherited_from_the_nearest_ancestor_that_has_one() {
        let mut t = sample();
        t.get_mut(ROOT).unwrap().acl = "Get=*".into();
        assert_eq!(t.effective_acl("VirMO/a/State"), "Get=*");
        t.get_mut("VirMO/a").unwrap().acl = "Get=s1".into();
        assert_eq!(t.effective_acl("VirMO/a/State"), "Get=s1");
        assert_eq!(t.effective_acl("VirMO/a-b/State"), "Get=*");
    }

    #[test]
    fn parents_names_and_joins() {
        assert_eq!(parent("VirMO/a/State"), Some("VirMO/a"));
        assert_eq!(parent("VirMO"), Some(ROOT));
        assert_eq!(parent(ROOT), None);
        assert_eq!(name("VirMO/a/State"), "State");
        assert_eq!(join(ROOT, "VirMO"), "VirMO");
        assert_eq!(join("VirMO", "a"), "VirMO/a");
    }
}
