//! The committed DDF files are what the node table generates.

use std::path::PathBuf;

use crate::ddf::{file_name, generate};
use crate::tree::schema::{Mo, NODES};

fn ddf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/ddf")
}

/// Fails if docs/ddf/*.ddf differ from the table; `UPDATE_DDF=1` rewrites them.
#[test]
fn committed_ddf_files_match_the_node_table() {
    let update = std::env::var_os("UPDATE_DDF").is_some_and(|v| v == "1");
    for mo in [Mo::VirMO, Mo::VmImgMO] {
        let path = ddf_dir().join(file_name(mo).unwrap());
        let fresh = generate(mo);
        if update {
            std::fs::write(&path, &fresh).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (UPDATE_DDF=1 cargo test -p mgmt-agent ddf)",
                path.display()
            )
        });
        assert!(
            committed == fresh,
            "{} is stale: run UPDATE_DDF=1 cargo test -p mgmt-agent ddf",
            path.display()
        );
    }
}

#[test]
fn the_ddfs_hold_every_node_of_their_mo_once() {
    for mo in [Mo::VirMO, Mo::VmImgMO] {
        let xml = generate(mo);
        let defs: Vec<_> = NODES.iter().filter(|d| d.mo == mo).collect();
        assert_eq!(xml.matches("<Node>").count(), defs.len(), "{mo:?}");
        assert_eq!(xml.matches("</Node>").count(), defs.len());
        for d in defs {
            assert!(
                xml.contains(&format!(
                    "<Description>{}</Description>",
                    d.description
                        .replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                )),
                "{}",
                d.path
            );
        }
    }
    let virmo = generate(Mo::VirMO);
    assert!(virmo.contains("<DDFName>urn:oma:mo:oma-virmo:1.0</DDFName>"));
    assert!(virmo.contains("<NodeName/>"));
    assert!(virmo.contains("<NodeName>ApplyChanges</NodeName>"));
    assert!(generate(Mo::VmImgMO).contains("<DDFName>urn:oma:mo:oma-vmimgmo:1.0</DDFName>"));
    assert!(generate(Mo::DevInfo).contains("<NodeName>DevInfo</NodeName>"));
}

/// docs/virmo.md documents every node of the table.
#[test]
fn the_documentation_lists_every_node() {
    let doc = std::fs::read_to_string(ddf_dir().join("../virmo.md")).unwrap();
    for d in NODES {
        assert!(
            doc.contains(&format!("| `{}` |", d.path)),
            "docs/virmo.md misses {}",
            d.path
        );
    }
}
