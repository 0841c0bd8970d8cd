//! Every failure of the hypervisor or of the persistent area leaves the tree, the hypervisor
//! and the saved copy as they were (section 7.1: "if a state transition fails, the VirMO Client
//! MUST reverse the operation"), and says why: in the answer and in Ext/LastError.

use abi::Status;

use super::support::*;
use crate::dm::Command;
use crate::hv::mock::Op;
use crate::tree::schema::Format;

/// Brings VM `vm1` to a state by a list of operations (after Add + CreateParams).
fn vm_after(params: &str, ops: &[&str]) -> A {
    let mut a = agent();
    prepare_vm(&mut a, "vm1", params);
    for op in ops {
        assert_eq!(exec(&mut a, "vm1", op).code.code(), 200, "{op}");
    }
    a
}

#[track_caller]
fn check_failure(a: &mut A, op: &str, code: u16, reason: &str) {
    let before = snap(a);
    let o = exec(a, "vm1", op);
    assert_eq!(o.code.code(), code, "{op}: {o:?}");
    assert!(o.text.contains(reason), "{op}: {o:?}");
    assert_unchanged(a, &before);
    let le = last_error(a, "vm1");
    assert!(
        le.starts_with(&format!("{code} ")) && le.contains(reason),
        "{le}"
    );
}

#[test]
fn injected_hypervisor_faults_change_nothing() {
    // (setup ops, op, injected fault, DM code, reason); CreateParams ImgID=1.
    type Case = (
        &'static [&'static str],
        &'static str,
        (Op, Status),
        u16,
        &'static str,
    );
    let cases: [Case; 11] = [
        (
            &[],
            "Create",
            (Op::Create, Status::NoMemory),
            420,
            "not enough free RAM",
        ),
        (
            &[],
            "Create",
            (Op::Create, Status::BadImage),
            500,
            "bad image",
        ),
        (
            &[],
            "Create",
            (Op::Create, Status::IoError),
            510,
            "disk I/O error",
        ),
        (
            &[],
            "Create",
            (Op::DeviceInfo, Status::IoError),
            510,
            "device info",
        ),
        (
            &["Create", "PowerOff"],
            "PowerOn",
            (Op::PowerOn, Status::NoMemory),
            420,
            "PowerOn",
        ),
        (
            &["Create", "Suspend"],
            "Resume",
            (Op::Resume, Status::NoMemory),
            420,
            "Resume",
        ),
        (
            &["Create"],
            "Suspend",
            (Op::Suspend, Status::IoError),
            510,
            "Suspend",
        ),
        (
            &["Create"],
            "PowerOff",
            (Op::PowerOff, Status::IoError),
            510,
            "PowerOff",
        ),
        (
            &["Create"],
            "Delete",
            (Op::Delete, Status::IoError),
            510,
            "delete",
        ),
        (
            &["Create", "Suspend"],
            "Delete",
            (Op::Delete, Status::Denied),
            500,
            "denied",
        ),
        (
            &["Create"],
            "Suspend",
            (Op::Suspend, Status::NotSupported),
            406,
            "not supported",
        ),
    ];
    for (setup, op, (fault_op, status), code, reason) in cases {
        let mut a = vm_after("ImgID=1", setup);
        a.hv_mut().fail_next(fault_op, status);
        check_failure(&mut a, op, code, reason);
        assert_eq!(a.hv().pending_faults(), 0, "{op}: the fault fired");
        // The same operation works once the fault is gone.
        assert_eq!(
            exec(&mut a, "vm1", op).code.code(),
            200,
            "{op} after the fault"
        );
        assert_eq!(last_error(&a, "vm1"), "", "a success clears LastError");
    }
}

#[test]
fn real_refusals_of_the_mock_change_nothing() {
    // Bigger than the RAM for VMs (768 MiB).
    let mut a = vm_after("ImgID=1&RAM=1G", &[]);
    check_failure(&mut a, "Create", 420, "does not fit in the");
    // Bigger than the storage pool (256 MiB).
    let mut a = vm_after("ImgID=1&Storage=512M", &[]);
    check_failure(&mut a, "Create", 420, "not enough free storage");
    // RAM too small for the image (4 MiB kernel).
    let mut a = vm_after("ImgID=1&RAM=2M", &[]);
    check_failure(&mut a, "Create", 500, "bad image");
    // Suspend needs a disk.
    let mut a = vm_after("ImgID=1", &["Create"]);
    a.hv_mut().disk = false;
    check_failure(&mut a, "Suspend", 420, "not enough free storage");
    // Power on without free RAM: another VM holds it.
    let mut a = vm_after("ImgID=1&RAM=512M", &["Create", "PowerOff"]);
    new_vm(&mut a, "big", "ImgID=1&RAM=512M");
    check_failure(&mut a, "PowerOn", 420, "PowerOn");
}

/// A failed save undoes the command, hypervisor effects included, and answers 510.
#[test]
fn a_failed_save_rolls_the_command_back() {
    let cases: [(&[&str], &str); 5] = [
        (&[], "Create"),
        (&["Create"], "Suspend"),
        (&["Create", "Suspend"], "Resume"),
        (&["Create", "PowerOff"], "PowerOn"),
        (&["Create"], "PowerOff"),
    ];
    for (setup, op) in cases {
        let mut a = vm_after("ImgID=1", setup);
        a.hv_mut().fail_next(Op::StoreWrite, Status::IoError);
        check_failure(&mut a, op, 510, "rolled back");
    }
    for setup in [&["Create"][..], &["Create", "Suspend"]] {
        let mut a = vm_after("ImgID=1", setup);
        a.hv_mut().fail_next(Op::StoreWrite, Status::IoError);
        check_failure(&mut a, "Delete", 510, "rolled back");
        assert!(a.tree().contains("VirMO/vm1"));
    }
    // Tree-only commands too.
    let mut a = vm_after("ImgID=1", &["Create"]);
    for cmd in [
        Command::replace("VirMO/vm1/Description", "d"),
        add("VirMO/vm2"),
        add_value("VirMO/vm1/Resources/NewConfig", Format::Chr, "CPU=5"),
        Command::replace("VirMO/vm1?prop=ACL", "Get=*"),
        Command::delete("DMAcc/VirMOServer"),
    ] {
        let before = snap(&a);
        a.hv_mut().fail_next(Op::StoreWrite, Status::IoError);
        let why = fails(&mut a, cmd.clone(), 510);
        assert!(why.contains("disk I/O error"), "{why}");
        assert_unchanged(&a, &before);
    }
}

/// A write torn by a power cut: the command fails, and after a restart the previous copy is
/// what comes back.
#[test]
fn a_torn_save_keeps_the_previous_copy_across_a_restart() {
    let mut a = agent();
    ok(&mut a, add("VirMO/vm1"));
    ok(&mut a, Command::replace("VirMO/vm1/Description", "saved"));
    a.hv_mut().tear_next_store_write(100);
    fails(
        &mut a,
        Command::replace("VirMO/vm1/Description", "torn"),
        510,
    );
    assert_eq!(get(&mut a, "VirMO/vm1/Description"), "saved");
    let mut hv = a.into_hv();
    hv.restart();
    let mut b = boot(hv);
    assert_eq!(get(&mut b, "VirMO/vm1/Description"), "saved");
}

#[test]
fn a_tree_too_large_for_the_persistent_area_is_refused_with_420() {
    let mut a = boot(hv().with_store_size(8192));
    a.take_notices();
    let mut added = 0;
    loop {
        let o = run(&mut a, add(&format!("VirMO/vm{added}")));
        if o.code.code() != 200 {
            assert_eq!(o.code.code(), 420, "{o:?}");
            assert!(o.text.contains("more than a slot"), "{o:?}");
            break;
        }
        added += 1;
        assert!(added < 100);
    }
    assert!(!a.tree().contains(&format!("VirMO/vm{added}")));
}

#[test]
fn failing_reads_are_reported() {
    let mut a = vm_after("ImgID=1", &["Create"]);
    a.hv_mut().fail_next(Op::Query, Status::IoError);
    let why = fails(
        &mut a,
        Command::get("VirMO/vm1/Resources/CurrentConfig"),
        510,
    );
    assert!(why.contains("query"), "{why}");
    a.hv_mut().fail_next(Op::DeviceInfo, Status::IoError);
    fails(&mut a, Command::get("VirMO/DeviceResources"), 510);
    // State falls back to the last known value.
    a.hv_mut().fail_next(Op::Query, Status::IoError);
    assert_eq!(state(&mut a, "vm1"), "2");
}
