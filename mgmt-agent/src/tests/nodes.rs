//! The tree has every node of the node table (VirMO-T-001..004), with the table's properties.

use super::support::*;
use crate::dm::Command;
use crate::tree::schema::{self, Def, Format, Mo, NODES};

/// One VM (created), one image (from the store), one NewConfig: every node of the table then
/// has at least one instance, and every node of the tree has a definition with its format.
#[test]
fn every_node_of_the_table_is_in_the_tree_after_one_vm_and_one_image() {
    let mut a = agent();
    new_vm(&mut a, "vm1", "ImgID=1");
    ok(
        &mut a,
        add_value("VirMO/vm1/Resources/NewConfig", Format::Chr, "CPU=10"),
    );
    for d in NODES {
        let found = a
            .tree()
            .iter()
            .any(|(p, _)| matches!(schema::lookup(p), Some(Def::Fixed(e)) if e.id == d.id));
        assert!(found, "no instance of {}", d.path);
    }
    for (path, node) in a.tree().iter() {
        match schema::lookup(path) {
            Some(Def::Fixed(d)) => assert_eq!(node.format, d.format, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn mo_roots_carry_their_moids_and_sit_under_the_root() {
    let mut a = agent();
    assert_eq!(get(&mut a, "."), "DMAcc/DevDetail/DevInfo/VMImgMO/VirMO");
    for (uri, moid) in [
        ("./VirMO", schema::MOID_VIRMO),
        ("VMImgMO", schema::MOID_VMIMGMO),
        ("DevInfo", schema::MOID_DEVINFO),
        ("DevDetail", schema::MOID_DEVDETAIL),
        ("DMAcc/VirMOServer", schema::MOID_DMACC),
    ] {
        assert_eq!(get(&mut a, &format!("{uri}?prop=Type")), moid, "{uri}");
    }
    assert_eq!(get(&mut a, "VirMO/DeviceResources?prop=Type"), "text/plain");
    assert_eq!(get(&mut a, "VirMO/Operations?prop=Type"), "");
}

#[test]
fn dm_standard_objects_describe_the_device_and_its_server() {
    let mut a = agent();
    assert_eq!(get(&mut a, "DevInfo"), "DevId/DmV/Lang/Man/Mod");
    assert_eq!(get(&mut a, "DevInfo/DevId"), "urn:hv-virmo:mgmt");
    assert_eq!(get(&mut a, "DevInfo/DmV"), "1.3");
    assert_eq!(get(&mut a, "DevInfo/Lang"), "en-US");
    assert_eq!(get(&mut a, "DevDetail/SwV"), env!("CARGO_PKG_VERSION"));
    assert_eq!(get(&mut a, "DevDetail/LrgObj"), "false");
    assert_eq!(get(&mut a, "DevDetail/URI/MaxDepth"), "16");
    assert_eq!(get(&mut a, "DevDetail/URI/MaxTotLen"), "255");
    assert_eq!(get(&mut a, "DevDetail/URI/MaxSegLen"), "32");
    assert_eq!(get(&mut a, "DMAcc/VirMOServer/ServerID"), S);
    assert_eq!(get(&mut a, "DMAcc/VirMOServer/AppID"), "w7");
    assert_eq!(get(&mut a, "DMAcc/VirMOServer/AppAddr/1/AddrType"), "URI");
    assert_eq!(
        get(&mut a, ".?prop=ACL"),
        format!("Add={S}&Delete={S}&Exec={S}&Get=*&Replace={S}")
    );
}

/// VirMO-C-001: Add makes the sub-tree, with a unique VMID and State 0 (section 10.2 step 2).
#[test]
fn add_creates_the_vm_subtree_with_a_unique_vmid_never_reused() {
    let mut a = agent();
    ok(&mut a, add("./VirMO/vm1"));
    assert_eq!(
        get(&mut a, "VirMO/vm1"),
        "CreateParams/DMTree/Description/Ext/Operations/Resources/State/UI/VMID"
    );
    assert_eq!(
        get(&mut a, "VirMO/vm1/Operations"),
        "Create/Delete/ExecUICmd/PowerOff/PowerOn/Resume/Suspend"
    );
    assert_eq!(get(&mut a, "VirMO/vm1/Resources"), "CurrentConfig");
    assert_eq!(get(&mut a, "VirMO/vm1/UI"), "Command/Result");
    assert_eq!(get(&mut a, "VirMO/vm1/Ext"), "Handle/LastError");
    assert_eq!(get(&mut a, "VirMO/vm1/VMID"), "1");
    assert_eq!(get(&mut a, "VirMO/vm1/State"), "0");
    assert_eq!(get(&mut a, "VirMO/vm1/CreateParams"), "");
    assert_eq!(get(&mut a, "VirMO/vm1/Ext/Handle"), "0");
    assert_eq!(
        get(&mut a, "VirMO/vm1/Resources/CurrentConfig"),
        "RAM=0&Storage=0&CPU=0&Network=0&VCPUs=0"
    );
    assert_eq!(get(&mut a, "VirMO/vm1/Operations/Create"), "");
    ok(&mut a, add("VirMO/vm2"));
    assert_eq!(get(&mut a, "VirMO/vm2/VMID"), "2");
    ok(&mut a, Command::delete("VirMO/vm1"));
    ok(&mut a, add("VirMO/vm1"));
    assert_eq!(get(&mut a, "VirMO/vm1/VMID"), "3", "VMIDs are never reused");
    assert_eq!(get(&mut a, "VirMO"), "DeviceResources/Operations/vm1/vm2");
    assert_eq!(
        get(&mut a, "VirMO/vm1?prop=Format"),
        "node",
        "{:?}",
        Mo::VirMO
    );
}
