//! The VM lifecycle of sections 7.1, 10.2 and 10.3 (VirMO-C-001..008).

use super::support::*;
use crate::dm::Command;
use abi::mgmt::VmState;

#[test]
fn a_vm_goes_through_every_state() {
    let mut a = agent();
    ok(&mut a, add("VirMO/vm1"));
    assert_eq!(state(&mut a, "vm1"), "0");
    ok(
        &mut a,
        Command::replace("VirMO/vm1/CreateParams", "ImgID=1&Running=true"),
    );
    assert_eq!(exec(&mut a, "vm1", "Create").code.code(), 200);
    assert_eq!(state(&mut a, "vm1"), "2");
    let h: u32 = get(&mut a, "VirMO/vm1/Ext/Handle").parse().unwrap();
    assert_eq!(a.hv().vm(h).unwrap().state, VmState::Running);
    assert_eq!(a.hv().vm(h).unwrap().name.as_str(), "vm1");
    for (op, s, hv_state) in [
        ("Suspend", "3", VmState::Suspended),
        ("Resume", "2", VmState::Running),
        ("PowerOff", "1", VmState::PoweredOff),
        ("PowerOn", "2", VmState::Running),
    ] {
        let o = exec(&mut a, "vm1", op);
        assert_eq!(o.code.code(), 200, "{op}: {o:?}");
        assert_eq!(state(&mut a, "vm1"), s, "after {op}");
        assert_eq!(a.hv().vm(h).unwrap().state, hv_state, "after {op}");
    }
    assert_eq!(exec(&mut a, "vm1", "Delete").code.code(), 200);
    assert!(
        !a.tree().contains("VirMO/vm1"),
        "section 10.3: the sub-tree goes"
    );
    assert!(a.hv().vm(h).is_none());
    assert_eq!(get(&mut a, "VirMO"), "DeviceResources/Operations");
}

#[test]
fn running_false_creates_the_vm_powered_off() {
    let mut a = agent();
    let h = new_vm(&mut a, "vm1", "ImgID=2&Running=false");
    assert_eq!(state(&mut a, "vm1"), "1");
    assert_eq!(a.hv().vm(h).unwrap().state, VmState::PoweredOff);
}

/// Every primitive from every state it does not apply to: 403, nothing changes.
#[test]
fn primitives_in_the_wrong_state_are_refused_and_change_nothing() {
    let ops = [
        "Create", "Suspend", "Resume", "PowerOn", "PowerOff", "Delete",
    ];
    // (how to reach the state, the state, the operations that apply there)
    let setups: [(&[&str], &str, &[&str]); 4] = [
        (&[], "0", &["Create"]),
        (&["Create"], "2", &["Suspend", "PowerOff", "Delete"]),
        (&["Create", "PowerOff"], "1", &["PowerOn", "Delete"]),
        (&["Create", "Suspend"], "3", &["Resume", "Delete"]),
    ];
    for (path, st, allowed) in setups {
        let mut a = agent();
        prepare_vm(&mut a, "vm1", "ImgID=1");
        for op in path {
            assert_eq!(exec(&mut a, "vm1", op).code.code(), 200);
        }
        assert_eq!(state(&mut a, "vm1"), st);
        for op in ops.iter().filter(|op| !allowed.contains(op)) {
            let before = snap(&a);
            let o = exec(&mut a, "vm1", op);
            assert_eq!(o.code.code(), 403, "{op} in state {st}: {o:?}");
            assert!(o.text.contains("needs"), "{o:?}");
            assert_unchanged(&a, &before);
            assert!(last_error(&a, "vm1").starts_with("403 "), "{op}");
        }
    }
}

#[test]
fn delete_works_from_every_created_state() {
    for path in [
        &["Create"][..],
        &["Create", "PowerOff"],
        &["Create", "Suspend"],
    ] {
        let mut a = agent();
        prepare_vm(&mut a, "vm1", "ImgID=1");
        for op in path {
            exec(&mut a, "vm1", op);
        }
        assert_eq!(exec(&mut a, "vm1", "Delete").code.code(), 200, "{path:?}");
        assert_eq!(a.hv().vm_count(), 0);
        assert!(!a.tree().contains("VirMO/vm1"));
    }
}

/// VirMO-C-002: State follows the VM, also when the guest changes it (PSCI SYSTEM_OFF).
#[test]
fn state_is_read_from_the_hypervisor() {
    let mut a = agent();
    let h = new_vm(&mut a, "vm1", "ImgID=1");
    a.hv_mut().guest_power_off(h);
    assert_eq!(state(&mut a, "vm1"), "1");
    let o = exec(&mut a, "vm1", "PowerOff");
    assert_eq!(o.code.code(), 403, "{o:?}");
    assert_eq!(exec(&mut a, "vm1", "PowerOn").code.code(), 200);
    // A Get of the sub-tree's State without a prior refresh sees the same.
    a.hv_mut().guest_power_off(h);
    assert_eq!(exec(&mut a, "vm1", "Suspend").code.code(), 403);
}

#[test]
fn a_vm_that_vanished_goes_back_to_not_created_and_can_be_created_again() {
    let mut a = agent();
    let h = new_vm(&mut a, "vm1", "ImgID=1&Running=false");
    ok(&mut a, Command::replace("VirMO/vm1/Description", "keep me"));
    a.hv_mut().lose_vm(h);
    assert_eq!(state(&mut a, "vm1"), "0");
    assert_eq!(get(&mut a, "VirMO/vm1/Ext/Handle"), "0");
    assert!(get(&mut a, "VirMO/vm1/Ext/LastError").contains("no longer has this VM"));
    assert_eq!(get(&mut a, "VirMO/vm1/Description"), "keep me");
    assert_eq!(
        get(&mut a, "VirMO/vm1/Resources/CurrentConfig"),
        "RAM=0&Storage=0&CPU=0&Network=0&VCPUs=0"
    );
    assert_eq!(exec(&mut a, "vm1", "Create").code.code(), 200);
    assert_eq!(state(&mut a, "vm1"), "1");
    assert_eq!(get(&mut a, "VirMO/vm1/Ext/LastError"), "");
}

#[test]
fn dm_delete_of_a_vm_entry_needs_state_0() {
    let mut a = agent();
    new_vm(&mut a, "vm1", "ImgID=1");
    let before = snap(&a);
    let why = fails(&mut a, Command::delete("VirMO/vm1"), 403);
    assert!(why.contains("Operations/Delete"), "{why}");
    assert_unchanged(&a, &before);
    ok(&mut a, add("VirMO/vm2"));
    ok(&mut a, Command::delete("VirMO/vm2"));
    assert!(!a.tree().contains("VirMO/vm2"));
}

/// VirMO-C-003: the VM is made from CreateParams.
#[test]
fn create_follows_create_params_and_defaults() {
    let mut a = agent();
    let h = new_vm(
        &mut a,
        "vm1",
        "ImgID=2&RAM=32M&Storage=1M&CPU=40&Network=10&VCPUs=2&Name=rtos-a",
    );
    let vm = a.hv().vm(h).unwrap().clone();
    assert_eq!(vm.image, 2);
    assert_eq!(vm.name.as_str(), "rtos-a");
    assert_eq!(
        get(&mut a, "VirMO/vm1/Resources/CurrentConfig"),
        "RAM=33554432&Storage=1048576&CPU=40&Network=10&VCPUs=2"
    );
    // Defaults: the image's RAM, 25% CPU (or what is left), no storage, 1 vCPU.
    new_vm(&mut a, "vm2", "ImgID=1");
    assert_eq!(
        get(&mut a, "VirMO/vm2/Resources/CurrentConfig"),
        "RAM=134217728&Storage=0&CPU=25&Network=0&VCPUs=1"
    );
    new_vm(&mut a, "vm3", "ImgID=2&CPU=30");
    new_vm(&mut a, "vm4", "ImgID=2&Running=false");
    assert_eq!(
        get(&mut a, "VirMO/vm4/Resources/CurrentConfig"),
        "RAM=16777216&Storage=0&CPU=5&Network=0&VCPUs=1"
    );
    prepare_vm(&mut a, "vm5", "ImgID=2&Running=false");
    let why = exec(&mut a, "vm5", "Create").text;
    assert!(why.contains("no CPU share left"), "{why}");
}

/// CreateParams is checked when it is written (400, nothing stored) and again at Create.
#[test]
fn bad_create_params_are_refused_with_the_reason() {
    let mut a = agent();
    ok(&mut a, add("VirMO/vm1"));
    for (value, reason) in [
        ("ImgID=1&ImgID=2", "CreateParams: duplicate key ImgID"),
        ("Running=true", "CreateParams: missing ImgID"),
        (
            "ImgID=1&Running=yes",
            "CreateParams: Running=yes: not a bool (true or false)",
        ),
        ("ImgID=1&Colour=blue", "CreateParams: unknown key Colour"),
        ("ImgID=1&X-Vendor=1", "CreateParams: unknown key X-Vendor"),
        ("imgid=1", "(keys are case-sensitive: ImgID)"),
        ("ImgID=1&&Running=true", "CreateParams: pair 2 is empty"),
    ] {
        let before = snap(&a);
        let why = fails(
            &mut a,
            Command::replace("VirMO/vm1/CreateParams", value),
            400,
        );
        assert!(why.contains(reason), "{value}: {why}");
        assert_unchanged(&a, &before);
    }
    // Never set: Create says what is missing.
    let o = exec(&mut a, "vm1", "Create");
    assert_eq!(o.code.code(), 400);
    assert_eq!(o.text, "CreateParams: missing ImgID");
    assert_eq!(a.hv().vm_count(), 0);
}
