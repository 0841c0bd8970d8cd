//! Resource management (section 8, VirMO-C-010): CurrentConfig, NewConfig + ApplyChanges,
//! DeviceResources.

use abi::mgmt::VmState;
use abi::Status;

use super::support::*;
use crate::dm::Command;
use crate::hv::mock::{Op, MIB};
use crate::hv::Hypervisor;
use crate::tree::schema::Format;

const APPLY: &str = "VirMO/Operations/ApplyChanges";

fn new_config(a: &mut A, x: &str, value: &str) {
    ok(
        a,
        add_value(
            &format!("VirMO/{x}/Resources/NewConfig"),
            Format::Chr,
            value,
        ),
    );
}

fn cpu_of(a: &A, h: u32) -> u32 {
    a.hv().vm(h).unwrap().resources.cpu_pct
}

/// Three VMs: web (Running, 30%), db (PoweredOff, 30%), idle (Running, 20%), plus one with no VM.
fn three() -> (A, u32, u32, u32) {
    let mut a = agent();
    let web = new_vm(&mut a, "web", "ImgID=2&CPU=30");
    let db = new_vm(&mut a, "db", "ImgID=2&CPU=30&Running=false");
    let idle = new_vm(&mut a, "idle", "ImgID=2&CPU=20");
    ok(&mut a, add("VirMO/planned"));
    (a, web, db, idle)
}

#[test]
fn current_config_is_the_real_allocation() {
    let (mut a, web, ..) = three();
    assert_eq!(
        get(&mut a, "VirMO/web/Resources/CurrentConfig"),
        "RAM=16777216&Storage=0&CPU=30&Network=0&VCPUs=1"
    );
    // Changed behind the agent's back: CurrentConfig follows.
    let mut r = a.hv().vm(web).unwrap().resources;
    r.cpu_pct = 10;
    a.hv_mut()
        .apply(&[abi::mgmt::Change {
            handle: web,
            resources: r,
        }])
        .unwrap();
    assert!(get(&mut a, "VirMO/web/Resources/CurrentConfig").contains("&CPU=10&"));
}

#[test]
fn apply_changes_applies_every_new_config_at_once_and_deletes_them() {
    let (mut a, web, db, idle) = three();
    new_config(&mut a, "web", "CPU=40&Network=20");
    new_config(&mut a, "db", "RAM=64M&CPU=40&Storage=1M&VCPUs=2");
    new_config(&mut a, "planned", "");
    ok(&mut a, Command::exec(APPLY));
    assert_eq!(
        get(&mut a, "VirMO/web/Resources/CurrentConfig"),
        "RAM=16777216&Storage=0&CPU=40&Network=20&VCPUs=1"
    );
    assert_eq!(
        get(&mut a, "VirMO/db/Resources/CurrentConfig"),
        "RAM=67108864&Storage=1048576&CPU=40&Network=0&VCPUs=2"
    );
    assert_eq!(cpu_of(&a, idle), 20, "VMs without NewConfig are untouched");
    assert_eq!(a.hv().vm(db).unwrap().resources.ram, 64 * MIB);
    assert_eq!(cpu_of(&a, web), 40);
    for x in ["web", "db", "planned", "idle"] {
        assert!(
            !a.tree().contains(&format!("VirMO/{x}/Resources/NewConfig")),
            "{x}"
        );
    }
    // Nothing pending: a no-op.
    ok(&mut a, Command::exec(APPLY));
}

#[test]
fn an_empty_new_config_leaves_its_vm_alone() {
    let (mut a, web, ..) = three();
    new_config(&mut a, "web", "");
    ok(&mut a, Command::exec(APPLY));
    assert_eq!(cpu_of(&a, web), 30);
    assert!(!a.tree().contains("VirMO/web/Resources/NewConfig"));
}

#[track_caller]
fn refused(a: &mut A, code: u16, reason: &str) {
    let before = snap(a);
    let why = fails(a, Command::exec(APPLY), code);
    assert!(why.contains(reason), "{why}");
    assert_unchanged(a, &before);
}

#[test]
fn inconsistent_new_configs_are_refused_whole() {
    // CPU over 100% in total: one VM's change is fine alone, the sum is not.
    let (mut a, ..) = three();
    new_config(&mut a, "web", "CPU=40");
    new_config(&mut a, "db", "CPU=45");
    refused(&mut a, 420, "CPU shares would add up to 105%");
    // Exactly 100 is fine.
    ok(
        &mut a,
        Command::replace("VirMO/db/Resources/NewConfig", "CPU=40"),
    );
    ok(&mut a, Command::exec(APPLY));

    let (mut a, ..) = three();
    new_config(&mut a, "web", "Network=60");
    new_config(&mut a, "db", "Network=50");
    refused(&mut a, 420, "network shares would add up to 110%");

    let (mut a, ..) = three();
    new_config(&mut a, "db", "RAM=1G");
    refused(&mut a, 420, "does not fit");
    assert!(last_error(&a, "db").starts_with("420 "));

    let (mut a, ..) = three();
    new_config(&mut a, "db", "Storage=300M");
    refused(&mut a, 420, "more storage");
}

#[test]
fn ram_vcpus_and_storage_do_not_change_live() {
    for change in ["RAM=32M", "VCPUs=2", "Storage=1M"] {
        let (mut a, ..) = three();
        new_config(&mut a, "web", change);
        new_config(&mut a, "db", "CPU=10");
        refused(&mut a, 403, "only change while PoweredOff");
        assert!(last_error(&a, "web").contains("Running (2)"), "{change}");
    }
    // Suspended VMs keep their RAM too; CPU applies live.
    let (mut a, web, ..) = three();
    assert_eq!(exec(&mut a, "web", "Suspend").code.code(), 200);
    new_config(&mut a, "web", "RAM=32M");
    refused(&mut a, 403, "Suspended (3)");
    ok(
        &mut a,
        Command::replace("VirMO/web/Resources/NewConfig", "CPU=5"),
    );
    ok(&mut a, Command::exec(APPLY));
    assert_eq!(cpu_of(&a, web), 5);
    assert_eq!(a.hv().vm(web).unwrap().state, VmState::Suspended);
}

#[test]
fn bad_or_misplaced_new_configs_are_refused() {
    let (mut a, ..) = three();
    // Syntax is checked when the node is written...
    let why = fails(
        &mut a,
        add_value("VirMO/web/Resources/NewConfig", Format::Chr, "CPU=500"),
        400,
    );
    assert!(why.contains("a percentage is 0 to 100"), "{why}");
    fails(
        &mut a,
        add_value("VirMO/web/Resources/NewConfig", Format::Chr, "ImgID=1"),
        400,
    );
    new_config(&mut a, "web", "CPU=5");
    fails(
        &mut a,
        Command::replace("VirMO/web/Resources/NewConfig", "CPU=5&CPU=6"),
        400,
    );
    fails(
        &mut a,
        add_value("VirMO/web/Resources/NewConfig", Format::Chr, "CPU=5"),
        418,
    );
    // ...and a VM without a VM behind it cannot take one.
    new_config(&mut a, "planned", "CPU=5");
    refused(&mut a, 403, "VirMO/planned has no VM");
    assert!(last_error(&a, "planned").contains("CreateParams"));
    ok(&mut a, Command::delete("VirMO/planned/Resources/NewConfig"));
    ok(&mut a, Command::exec(APPLY));
}

#[test]
fn a_refusal_of_the_hypervisor_is_blamed_on_the_vm_it_names() {
    let (mut a, ..) = three();
    new_config(&mut a, "web", "CPU=10");
    new_config(&mut a, "db", "CPU=10");
    a.hv_mut().fail_next(Op::Apply, Status::Inconsistent);
    refused(&mut a, 500, "inconsistent resource set");
    assert!(
        a.tree().contains("VirMO/web/Resources/NewConfig"),
        "kept for a retry"
    );
    ok(&mut a, Command::exec(APPLY));
}

#[test]
fn device_resources_gives_totals_and_what_is_free() {
    let (mut a, ..) = three();
    let text = get(&mut a, "VirMO/DeviceResources");
    assert_eq!(
        text,
        format!(
            "RAM={}&Storage={}&FreeRAM={}&FreeStorage={}&CPUs=2&MgmtCPU=10&CPUAllocated=80\
             &NetworkAllocated=0&VMs=3&Images=2&Disk=1",
            1024 * MIB,
            256 * MIB,
            (768 - 32) * MIB,
            256 * MIB
        )
    );
    let pairs = crate::params::pairs(&text).unwrap();
    assert_eq!(pairs[0].0, "RAM");
    assert_eq!(pairs[1].0, "Storage");
}
