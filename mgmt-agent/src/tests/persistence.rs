//! The tree survives a device restart (saved after every successful change, reconciled with the
//! hypervisor at boot).

use abi::mgmt::{Resources, VmState};
use abi::Status;

use super::support::*;
use crate::dm::Command;
use crate::hv::mock::{MockHypervisor, Op, MIB};
use crate::tree::schema::Format;

/// Stops the agent, restarts the device, boots a new agent on the same hypervisor and store.
fn restart(a: A) -> (A, Vec<String>) {
    let mut hv = a.into_hv();
    hv.restart();
    let mut b = boot(hv);
    let notices = b.take_notices();
    (b, notices)
}

#[test]
fn what_servers_wrote_survives_a_restart() {
    let mut a = agent();
    let running = new_vm(&mut a, "web", "ImgID=2&CPU=20");
    let suspended = new_vm(&mut a, "db", "ImgID=2&CPU=20");
    assert_eq!(exec(&mut a, "db", "Suspend").code.code(), 200);
    ok(
        &mut a,
        Command::replace("VirMO/web/Description", "the web server"),
    );
    ok(
        &mut a,
        Command::replace(
            "VirMO/web?prop=ACL",
            "Add=virmo-server&Exec=virmo-server&Get=*&Replace=virmo-server",
        ),
    );
    ok(
        &mut a,
        add_value("VirMO/web/Resources/NewConfig", Format::Chr, "CPU=30"),
    );
    ok(
        &mut a,
        add_value(
            "VirMO/web/DMTree/FUMO",
            Format::Node,
            "urn:oma:mo:oma-fumo:1.0",
        ),
    );
    ok(&mut a, add("VirMO/planned"));
    ok(
        &mut a,
        Command::replace("VirMO/planned/CreateParams", "ImgID=1&Running=false"),
    );
    ok(&mut a, add("VMImgMO/ent"));
    ok(
        &mut a,
        Command::replace("VMImgMO/ent/DownloadURI", "http://example.com/e"),
    );
    ok(
        &mut a,
        Command::replace("DMAcc/VirMOServer/AppAddr/1/Addr", "https://dm.example.com"),
    );
    ok(&mut a, Command::replace("VirMO/web?prop=Title", "web"));
    let tree_before = a.tree().clone();

    let (mut b, notices) = restart(a);
    assert!(
        notices.iter().any(|n| n.contains("loaded the tree")),
        "{notices:?}"
    );
    // The hypervisor brings Running VMs back PoweredOff and Suspended ones Suspended.
    assert_eq!(state(&mut b, "web"), "1");
    assert_eq!(state(&mut b, "db"), "3");
    assert_eq!(b.hv().vm(running).unwrap().state, VmState::PoweredOff);
    assert_eq!(b.hv().vm(suspended).unwrap().state, VmState::Suspended);
    // Everything else is as it was.
    let mut expected = tree_before.clone();
    expected.set_value("VirMO/web/State", "1");
    assert_eq!(b.tree(), &expected);
    assert_eq!(get(&mut b, "VirMO/web?prop=Title"), "web");
    // Counters go on: no VMID or ImgID is reused.
    ok(&mut b, add("VirMO/next"));
    assert_eq!(get(&mut b, "VirMO/next/VMID"), "4");
    ok(&mut b, add("VMImgMO/ent2"));
    assert_eq!(get(&mut b, "VMImgMO/ent2/ImgID"), "new-2");
    // And the VMs are usable.
    assert_eq!(exec(&mut b, "web", "PowerOn").code.code(), 200);
    assert_eq!(exec(&mut b, "db", "Resume").code.code(), 200);
}

#[test]
fn a_boot_with_nothing_new_writes_nothing() {
    let mut a = agent();
    new_vm(&mut a, "vm1", "ImgID=2&Running=false");
    let (b, _) = restart(a);
    assert!(
        !b.hv().calls.contains(&Op::StoreWrite),
        "{:?}",
        b.hv().calls
    );
}

#[test]
fn a_vm_gone_after_the_restart_is_kept_in_state_0() {
    let mut a = agent();
    let h = new_vm(&mut a, "vm1", "ImgID=2&Running=false");
    ok(&mut a, Command::replace("VirMO/vm1/Description", "keep"));
    let mut hv = a.into_hv();
    hv.lose_vm(h);
    let mut b = boot(hv);
    let notices = b.take_notices();
    assert!(
        notices.iter().any(|n| n.contains("no longer has this VM")),
        "{notices:?}"
    );
    assert_eq!(state(&mut b, "vm1"), "0");
    assert_eq!(get(&mut b, "VirMO/vm1/Description"), "keep");
    assert_eq!(
        get(&mut b, "VirMO/vm1/CreateParams"),
        "ImgID=2&Running=false"
    );
    assert_eq!(exec(&mut b, "vm1", "Create").code.code(), 200);
}

#[test]
fn vms_made_outside_virmo_are_adopted() {
    let mut hv = hv();
    let r = Resources {
        ram: 128 * MIB,
        storage: 0,
        cpu_pct: 50,
        net_pct: 0,
        vcpus: 2,
    };
    let alpha = hv.add_vm(VmState::Running, 1, r, "alpha");
    hv.add_vm(
        VmState::PoweredOff,
        2,
        Resources { cpu_pct: 10, ..r },
        "Operations",
    );
    hv.add_vm(
        VmState::Suspended,
        2,
        Resources { cpu_pct: 10, ..r },
        "a b/c&d=e",
    );
    let mut a = boot(hv);
    assert_eq!(
        get(&mut a, "VirMO"),
        "DeviceResources/Operations/Operations-2/a-b-c-d-e/alpha"
    );
    assert_eq!(state(&mut a, "alpha"), "2");
    assert_eq!(state(&mut a, "Operations-2"), "1");
    assert_eq!(state(&mut a, "a-b-c-d-e"), "3");
    crate::params::parse_create_params(&get(&mut a, "VirMO/a-b-c-d-e/CreateParams")).unwrap();
    assert_eq!(get(&mut a, "VirMO/alpha/Ext/Handle"), alpha.to_string());
    assert_eq!(
        get(&mut a, "VirMO/alpha/CreateParams"),
        "ImgID=1&Running=true&RAM=134217728&Storage=0&CPU=50&Network=0&VCPUs=2&Name=alpha"
    );
    crate::params::parse_create_params(&get(&mut a, "VirMO/alpha/CreateParams")).unwrap();
    // Adopted VMs are managed like any other.
    assert_eq!(exec(&mut a, "alpha", "PowerOff").code.code(), 200);
    assert_eq!(exec(&mut a, "alpha", "Delete").code.code(), 200);
}

#[test]
fn an_empty_or_corrupt_store_starts_a_fresh_tree() {
    let mut a = boot(hv());
    let notices = a.take_notices();
    assert!(
        notices[0].contains("persistent area is empty: starting a fresh tree"),
        "{notices:?}"
    );
    ok(&mut a, add("VirMO/vm1"));
    let mut hv = a.into_hv();
    for b in hv.store_mut().iter_mut().take(64) {
        *b ^= 0x5a;
    }
    let size = hv.store_mut().len();
    for b in hv.store_mut()[size / 2..size / 2 + 64].iter_mut() {
        *b ^= 0x5a;
    }
    let mut b = boot(hv);
    let notices = b.take_notices();
    assert!(notices[0].contains("no valid copy"), "{notices:?}");
    assert_eq!(get(&mut b, "VirMO"), "DeviceResources/Operations");
    assert_eq!(get(&mut b, "DMAcc"), "VirMOServer");
    assert_eq!(get(&mut b, "VMImgMO"), "debian/rtos");
}

#[test]
fn without_a_persistent_area_the_tree_lives_in_ram() {
    let mut a = boot(hv().with_store_size(0));
    let notices = a.take_notices();
    assert!(notices[0].contains("no persistent area"), "{notices:?}");
    new_vm(&mut a, "vm1", "ImgID=2");
    assert_eq!(state(&mut a, "vm1"), "2");
}

#[test]
fn an_unreadable_store_is_not_overwritten() {
    let mut a = agent();
    ok(&mut a, add("VirMO/vm1"));
    let mut hv = a.into_hv();
    hv.fail_next(Op::StoreRead, Status::IoError);
    let mut b = boot(hv);
    assert!(b.take_notices()[0].contains("unreadable"));
    ok(&mut b, add("VirMO/other"));
    let mut c = boot(b.into_hv());
    assert_eq!(get(&mut c, "VirMO"), "DeviceResources/Operations/vm1");
}

#[test]
fn images_follow_the_store() {
    let mut a = agent();
    ok(&mut a, Command::replace("VMImgMO/rtos/Description", "mine"));
    let mut hv = a.into_hv();
    hv.lose_image(2);
    let hv: MockHypervisor = hv.with_image(3, abi::mgmt::ImageFormat::Raw, 0, "blob");
    let mut b = boot(hv);
    assert_eq!(get(&mut b, "VMImgMO"), "blob/debian/rtos");
    assert_eq!(get(&mut b, "VMImgMO/rtos/State"), "0");
    assert!(!b.tree().contains("VMImgMO/rtos/DownloadedLocation"));
    assert_eq!(get(&mut b, "VMImgMO/rtos/Description"), "mine");
    assert_eq!(get(&mut b, "VMImgMO/blob/ImgID"), "3");
    assert_eq!(
        get(&mut b, "VMImgMO/blob/MediaType"),
        "application/octet-stream"
    );
    // An image without a default RAM boots with 64 MiB.
    let h = new_vm(&mut b, "vm1", "ImgID=3&Running=false");
    assert_eq!(b.hv().vm(h).unwrap().resources.ram, 64 * MIB);
}
