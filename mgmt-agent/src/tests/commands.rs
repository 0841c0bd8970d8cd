//! The generic rules of every command: status codes 200, 400, 404, 405, 406, 414, 415, 418,
//! 425, node properties and ACLs (OMA DM 1.3 TND).

use super::support::*;
use crate::dm::Command;
use crate::tree::schema::{self, Cmd, Def, Format, Scope, NODES};

fn with_vm() -> A {
    let mut a = agent();
    new_vm(&mut a, "vm1", "ImgID=1");
    a
}

#[test]
fn get_returns_values_and_child_lists_and_404_for_missing_nodes() {
    let mut a = with_vm();
    assert_eq!(get(&mut a, "VirMO/vm1/State"), "2");
    assert_eq!(get(&mut a, "./VirMO/vm1/State"), "2");
    assert_eq!(get(&mut a, "VMImgMO"), "debian/rtos");
    assert_eq!(
        fails(&mut a, Command::get("VirMO/x/State"), 404),
        "no such node: VirMO/x/State"
    );
    fails(&mut a, Command::replace("VirMO/x/Description", "d"), 404);
    fails(&mut a, Command::delete("VirMO/x"), 404);
    fails(&mut a, Command::exec("VirMO/x/Operations/Create"), 404);
    let why = fails(&mut a, add("VirMO/x/Resources/NewConfig"), 404);
    assert!(why.contains("parent"), "{why}");
}

#[test]
fn replace_of_no_replace_nodes_is_405_and_changes_nothing() {
    let mut a = with_vm();
    ok(&mut a, add("VMImgMO/mine"));
    let before = snap(&a);
    for uri in [
        "VirMO/vm1/VMID",
        "VirMO/vm1/State",
        "VirMO/vm1/Resources/CurrentConfig",
        "VirMO/vm1/UI/Result",
        "VirMO/vm1/Ext/Handle",
        "VirMO/vm1/Ext/LastError",
        "VirMO/vm1/Operations/Create",
        "VirMO/DeviceResources",
        "VirMO/Operations/ApplyChanges",
        "VMImgMO/debian/ImgID",
        "VMImgMO/debian/State",
        "VMImgMO/debian/DownloadedLocation",
        "DevInfo/DevId",
        "DevDetail/SwV",
    ] {
        let name = uri.rsplit('/').next().unwrap();
        assert_eq!(
            fails(&mut a, Command::replace(uri, "1"), 405),
            format!("{name} is not replaceable"),
            "{uri}"
        );
    }
    // Interior nodes have no value.
    let why = fails(&mut a, Command::replace("VirMO/vm1", "x"), 405);
    assert!(why.contains("interior"), "{why}");
    assert_unchanged(&a, &before);
}

#[test]
fn exec_of_a_node_that_is_not_executable_is_405() {
    let mut a = with_vm();
    for uri in [
        "VirMO/vm1/State",
        "VirMO/vm1",
        "VirMO",
        "VMImgMO/debian/Name",
        "DevInfo",
    ] {
        let why = fails(&mut a, Command::exec(uri), 405);
        assert_eq!(why, format!("{uri} is not executable"));
    }
}

#[test]
fn delete_of_a_permanent_node_is_405() {
    let mut a = with_vm();
    let before = snap(&a);
    for uri in [
        "VirMO/vm1/VMID",
        "VirMO/vm1/State",
        "VirMO/vm1/Operations",
        "VirMO/vm1/DMTree",
        "VirMO",
        "VirMO/Operations",
        "VMImgMO",
        "VMImgMO/debian/ImgID",
        "DevInfo",
        "DevDetail/URI",
        "DMAcc",
    ] {
        let why = fails(&mut a, Command::delete(uri), 405);
        assert!(why.contains("permanent"), "{uri}: {why}");
    }
    fails(&mut a, Command::delete("."), 405);
    assert_unchanged(&a, &before);
}

#[test]
fn add_of_an_existing_node_is_418_and_of_an_unknown_one_405() {
    let mut a = with_vm();
    for uri in [
        "VirMO/vm1",
        "VirMO/vm1/State",
        "VirMO/Operations",
        "VirMO/DeviceResources",
        "VMImgMO/debian",
    ] {
        assert_eq!(
            fails(&mut a, add(uri), 418),
            format!("{uri} already exists")
        );
    }
    let why = fails(&mut a, add("VirMO/vm1/Foo"), 405);
    assert!(why.contains("not a node"), "{why}");
    fails(&mut a, add("Foo"), 405);
    // Client-made nodes cannot be added by a server.
    ok(&mut a, add("VMImgMO/mine"));
    let why = fails(&mut a, add("VMImgMO/mine/DownloadedLocation"), 405);
    assert_eq!(why, "VMImgMO/mine/DownloadedLocation cannot be added");
    fails(&mut a, add("VirMO/vm1/State/x"), 405);
}

#[test]
fn optional_features_that_are_not_supported_are_406() {
    let mut a = with_vm();
    let why = fails(
        &mut a,
        Command::exec("VMImgMO/debian/Operations/Download"),
        406,
    );
    assert!(why.contains("Download is not supported"), "{why}");
    fails(&mut a, Command::get("VirMO?list=Struct"), 406);
    fails(&mut a, Command::get("VirMO?prop=TStamp"), 406);
    fails(&mut a, Command::get("VirMO?prop=VerNo"), 406);
    fails(&mut a, Command::replace("VirMO/vm1?prop=Name", "vm9"), 406);
    ok(
        &mut a,
        add_value(
            "VirMO/vm1/DMTree/LAWMO",
            Format::Node,
            "urn:oma:mo:oma-lawmo:1.0",
        ),
    );
    ok(
        &mut a,
        add_value("VirMO/vm1/DMTree/LAWMO/Operations", Format::Node, ""),
    );
    ok(
        &mut a,
        add_value(
            "VirMO/vm1/DMTree/LAWMO/Operations/FullyLock",
            Format::Null,
            "",
        ),
    );
    let why = fails(
        &mut a,
        Command::exec("VirMO/vm1/DMTree/LAWMO/Operations/FullyLock"),
        406,
    );
    assert!(why.contains("not forwarded"), "{why}");
}

#[test]
fn bad_uris_are_400_and_uris_past_the_devdetail_limits_414() {
    let mut a = agent();
    fails(&mut a, Command::get("VirMO//x"), 400);
    fails(&mut a, Command::get("/VirMO"), 400);
    fails(&mut a, Command::get("VirMO/../DevInfo"), 400);
    fails(&mut a, Command::get("VirMO?bogus"), 400);
    fails(&mut a, add(&format!("VirMO/{}", "x".repeat(33))), 414);
    fails(&mut a, Command::get(&["a"; 17].join("/")), 414);
    fails(
        &mut a,
        Command::get(&["abcdefghijklmnop"; 16].join("/")),
        414,
    );
    fails(&mut a, Command::get("VirMO?prop=ACL"), 200);
    fails(&mut a, Command::delete("VirMO?prop=ACL"), 405);
}

#[test]
fn values_and_formats_must_match_the_node_format_415() {
    let mut a = with_vm();
    let why = fails(&mut a, add_value("VirMO/vm2", Format::Chr, ""), 415);
    assert_eq!(why, "VirMO/vm2 has format node, not chr");
    fails(
        &mut a,
        add_value("VirMO/vm1/Resources/NewConfig", Format::Int, "CPU=1"),
        415,
    );
    ok(&mut a, add_value("VirMO/vm1/DMTree/N", Format::Int, "5"));
    fails(
        &mut a,
        add_value("VirMO/vm1/DMTree/M", Format::Int, "five"),
        415,
    );
    fails(
        &mut a,
        add_value("VirMO/vm1/DMTree/B", Format::Bool, "yes"),
        415,
    );
    fails(&mut a, Command::replace("VirMO/vm1/DMTree/N", "x"), 415);
    ok(&mut a, Command::replace("VirMO/vm1/DMTree/N", "6"));
    assert_eq!(get(&mut a, "VirMO/vm1/DMTree/N"), "6");
    assert_eq!(get(&mut a, "VirMO/vm1/DMTree/N?prop=Format"), "int");
}

#[test]
fn the_acl_decides_who_may_do_what_425() {
    let mut a = with_vm();
    let intruder = "intruder";
    let before = snap(&a);
    let deny = |a: &mut A, cmd: Command| {
        let o = a.execute(intruder, &cmd);
        assert_eq!(o.code.code(), 425, "{cmd:?} -> {o:?}");
        o.text
    };
    // Get=* lets anyone read; only the configured server changes anything.
    assert_eq!(
        a.execute(intruder, &Command::get("VirMO/vm1/State")).text,
        "2"
    );
    let why = deny(&mut a, Command::replace("VirMO/vm1/Description", "x"));
    assert!(
        why.starts_with("server intruder may not Replace VirMO/vm1/Description"),
        "{why}"
    );
    deny(&mut a, add("VirMO/vm2"));
    deny(&mut a, Command::exec("VirMO/vm1/Operations/PowerOff"));
    deny(&mut a, Command::replace("VirMO/vm1?prop=ACL", "Get=*"));
    assert_unchanged(&a, &before);
    ok(
        &mut a,
        add_value("VirMO/vm1/Resources/NewConfig", Format::Chr, "CPU=5"),
    );
    deny(&mut a, Command::delete("VirMO/vm1/Resources/NewConfig"));

    // A node's own ACL overrides the inherited one, for the node and its children.
    ok(
        &mut a,
        Command::replace("VirMO/vm1?prop=ACL", "Get=srv2&Replace=srv2+virmo-server"),
    );
    assert_eq!(
        a.execute("srv2", &Command::get("VirMO/vm1?prop=ACL")).text,
        "Get=srv2&Replace=srv2+virmo-server"
    );
    fails(&mut a, Command::get("VirMO/vm1/State"), 425);
    assert_eq!(
        a.execute("srv2", &Command::get("VirMO/vm1/State")).text,
        "2"
    );
    assert_eq!(
        a.execute("srv2", &Command::replace("VirMO/vm1/Description", "d"))
            .code
            .code(),
        200
    );
    // Exec is not granted by vm1's ACL any more, even to the configured server.
    fails(&mut a, Command::exec("VirMO/vm1/Operations/PowerOff"), 425);
    // Other VMs still inherit the root's ACL.
    ok(&mut a, add("VirMO/vm2"));
    assert_eq!(get(&mut a, "VirMO/vm2/State"), "0");
}

#[test]
fn replacing_an_acl_takes_replace_on_the_node_or_on_a_leafs_parent() {
    let mut a = with_vm();
    // vm1 lets only srv2 replace: srv2 may change the ACL of vm1's leaves; S may not.
    ok(
        &mut a,
        Command::replace("VirMO/vm1?prop=ACL", "Get=*&Replace=srv2"),
    );
    fails(
        &mut a,
        Command::replace(
            "VirMO/vm1/Description?prop=ACL",
            "Get=*&Replace=virmo-server",
        ),
        425,
    );
    let o = a.execute(
        "srv2",
        &Command::replace(
            "VirMO/vm1/Description?prop=ACL",
            "Get=*&Replace=virmo-server",
        ),
    );
    assert_eq!(o.code.code(), 200, "{o:?}");
    ok(
        &mut a,
        Command::replace("VirMO/vm1/Description", "now S may"),
    );
    // Syntax is checked; the root's ACL cannot become empty.
    let why = fails(&mut a, Command::replace("VirMO?prop=ACL", "Get"), 400);
    assert!(why.contains("not Command=servers"), "{why}");
    fails(&mut a, Command::replace("VirMO?prop=ACL", "Copy=*"), 400);
    fails(&mut a, Command::replace(".?prop=ACL", ""), 400);
    // An empty ACL means "inherit".
    let o = a.execute("srv2", &Command::replace("VirMO/vm1?prop=ACL", ""));
    assert_eq!(o.code.code(), 200, "{o:?}");
    ok(&mut a, Command::exec("VirMO/vm1/Operations/Suspend"));
}

#[test]
fn node_properties() {
    let mut a = with_vm();
    assert_eq!(get(&mut a, "VirMO/vm1/State?prop=Format"), "int");
    assert_eq!(get(&mut a, "VirMO/vm1/State?prop=Type"), "text/plain");
    assert_eq!(get(&mut a, "VirMO/vm1/UI/Command?prop=Type"), "text/xml");
    assert_eq!(get(&mut a, "VirMO/vm1/State?prop=Name"), "State");
    assert_eq!(get(&mut a, "VirMO/vm1/CreateParams?prop=Size"), "7");
    fails(&mut a, Command::get("VirMO/vm1?prop=Size"), 405);
    assert_eq!(get(&mut a, "VirMO/vm1/State?prop=ACL"), "");
    ok(
        &mut a,
        Command::replace("VirMO/vm1?prop=Title", "the web VM"),
    );
    assert_eq!(get(&mut a, "VirMO/vm1?prop=Title"), "the web VM");
    fails(
        &mut a,
        Command::replace("VirMO/vm1/State?prop=Format", "chr"),
        405,
    );
    fails(
        &mut a,
        Command::replace("VirMO/vm1/State?prop=Type", "x"),
        405,
    );
    fails(&mut a, Command::get("VirMO?prop=Bogus"), 406);
}

#[test]
fn servers_build_management_objects_under_dmtree() {
    let mut a = with_vm();
    ok(
        &mut a,
        add_value(
            "VirMO/vm1/DMTree/SCOMO",
            Format::Node,
            "urn:oma:mo:oma-scomo:1.0",
        ),
    );
    ok(
        &mut a,
        add_value("VirMO/vm1/DMTree/SCOMO/Inventory", Format::Node, ""),
    );
    ok(&mut a, add("VirMO/vm1/DMTree/SCOMO/Inventory/Deployed"));
    assert_eq!(
        get(&mut a, "VirMO/vm1/DMTree/SCOMO?prop=Type"),
        "urn:oma:mo:oma-scomo:1.0"
    );
    assert_eq!(get(&mut a, "VirMO/vm1/DMTree/SCOMO/Inventory"), "Deployed");
    ok(
        &mut a,
        Command::replace("VirMO/vm1/DMTree/SCOMO/Inventory/Deployed", "app-1.0"),
    );
    assert_eq!(
        get(&mut a, "VirMO/vm1/DMTree/SCOMO/Inventory/Deployed"),
        "app-1.0"
    );
    fails(
        &mut a,
        add("VirMO/vm1/DMTree/SCOMO/Inventory/Deployed/x"),
        405,
    );
    ok(&mut a, Command::delete("VirMO/vm1/DMTree/SCOMO"));
    assert_eq!(get(&mut a, "VirMO/vm1/DMTree"), "");
}

#[test]
fn servers_manage_dm_accounts() {
    let mut a = agent();
    ok(&mut a, add_value("DMAcc/Other", Format::Node, ""));
    assert_eq!(
        get(&mut a, "DMAcc/Other?prop=Type"),
        crate::tree::schema::MOID_DMACC
    );
    ok(
        &mut a,
        add_value("DMAcc/Other/ServerID", Format::Chr, "other-server"),
    );
    ok(&mut a, Command::replace("DMAcc/Other/ServerID", "other"));
    assert_eq!(get(&mut a, "DMAcc"), "Other/VirMOServer");
    ok(&mut a, Command::delete("DMAcc/Other"));
    assert_eq!(get(&mut a, "DMAcc"), "VirMOServer");
}

/// A tree with an instance of every node of the table.
fn full() -> A {
    let mut a = with_vm();
    ok(
        &mut a,
        add_value("VirMO/vm1/Resources/NewConfig", Format::Chr, "CPU=10"),
    );
    a
}

/// For every node of the table and every command but Add: the engine refuses with 405 exactly
/// when the table's access type (or, for Delete, a Permanent scope) says so.
#[test]
fn every_access_rule_of_the_table_is_enforced() {
    let template = full();
    for d in NODES.iter().filter(|d| d.path != ".") {
        let path = template
            .tree()
            .iter()
            .map(|(p, _)| p.clone())
            .find(|p| matches!(schema::lookup(p), Some(Def::Fixed(e)) if e.id == d.id))
            .unwrap_or_else(|| panic!("no instance of {}", d.path));
        let interior = d.format == Format::Node;
        for cmd in [Cmd::Get, Cmd::Replace, Cmd::Exec, Cmd::Delete] {
            let mut a = full();
            let command = match cmd {
                Cmd::Get => Command::get(&path),
                Cmd::Replace => Command::replace(&path, "1"),
                Cmd::Exec => Command::exec(&path),
                _ => Command::delete(&path),
            };
            let o = run(&mut a, command);
            let refused = !d.access.allows(cmd)
                || (cmd == Cmd::Delete && d.scope == Scope::Permanent)
                || (cmd == Cmd::Replace && interior);
            assert_eq!(
                o.code.code() == 405,
                refused,
                "{} {path}: {o:?}",
                cmd.name()
            );
        }
    }
}
