//! Atomic (all or nothing, hypervisor effects undone) and Sequence (in order, stop at the first
//! failure).

use abi::mgmt::VmState;
use abi::Status;

use super::support::*;
use crate::dm::{Command, StatusCode};
use crate::hv::mock::Op;
use crate::tree::schema::Format;

fn codes(o: &crate::BlockOutcome) -> Vec<u16> {
    o.results.iter().map(|r| r.code.code()).collect()
}

#[test]
fn a_successful_atomic_applies_everything_and_is_saved_once() {
    let mut a = agent();
    let writes = |a: &A| {
        a.hv()
            .calls
            .iter()
            .filter(|c| **c == Op::StoreWrite)
            .count()
    };
    let before = writes(&a);
    let o = a.atomic(
        S,
        &[
            add("VirMO/vm1"),
            Command::replace("VirMO/vm1/CreateParams", "ImgID=1"),
            Command::exec("VirMO/vm1/Operations/Create"),
            Command::get("VirMO/vm1/State"),
        ],
    );
    assert_eq!(o.code, StatusCode::Ok);
    assert_eq!(codes(&o), [200, 200, 200, 200]);
    assert_eq!(o.results[3].text, "2");
    assert_eq!(writes(&a), before + 1);
    assert_eq!(
        saved_copy(a.hv()).unwrap().nodes,
        a.tree()
            .iter()
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect::<Vec<_>>()
    );
}

/// The failed command keeps its code, the others get 216, the Atomic 507; values, nodes and the
/// VMs made or changed by the Atomic are as before.
#[test]
fn a_failed_atomic_rolls_back_values_nodes_and_hypervisor_effects() {
    let mut a = agent();
    let h = new_vm(&mut a, "vm1", "ImgID=2&CPU=10");
    let off = new_vm(&mut a, "vm2", "ImgID=2&CPU=10&Running=false");
    let before = snap(&a);
    let o = a.atomic(
        S,
        &[
            Command::replace("VirMO/vm1/Description", "changed"),
            add("VirMO/vm3"),
            Command::replace("VirMO/vm3/CreateParams", "ImgID=2&CPU=10"),
            Command::exec("VirMO/vm3/Operations/Create"),
            Command::exec("VirMO/vm1/Operations/Suspend"),
            Command::exec("VirMO/vm2/Operations/PowerOn"),
            add_value("VirMO/vm1/Resources/NewConfig", Format::Chr, "CPU=20"),
            Command::exec("VirMO/Operations/ApplyChanges"),
            Command::replace("VirMO/vm1/State", "3"),
            Command::replace("VirMO/vm1/Description", "never"),
        ],
    );
    assert_eq!(o.code, StatusCode::AtomicFailed);
    assert_eq!(
        codes(&o),
        [216, 216, 216, 216, 216, 216, 216, 216, 405, 216]
    );
    assert_eq!(o.results[8].text, "State is not replaceable");
    assert_unchanged(&a, &before);
    assert_eq!(
        a.hv().vm(h).unwrap().state,
        VmState::Running,
        "Suspend undone"
    );
    assert_eq!(
        a.hv().vm(off).unwrap().state,
        VmState::PoweredOff,
        "PowerOn undone"
    );
    assert_eq!(
        a.hv().vm(h).unwrap().resources.cpu_pct,
        10,
        "ApplyChanges undone"
    );
    assert_eq!(
        a.hv().vm_count(),
        2,
        "the VM the Atomic created is deleted again"
    );
    assert!(!a.tree().contains("VirMO/vm3"));
    assert!(last_error(&a, "vm1").starts_with("405 "));
}

#[test]
fn a_hypervisor_refusal_inside_an_atomic_undoes_what_came_before() {
    let mut a = agent();
    prepare_vm(&mut a, "vm1", "ImgID=2");
    prepare_vm(&mut a, "vm2", "ImgID=2&RAM=1G");
    let before = snap(&a);
    let o = a.atomic(
        S,
        &[
            Command::exec("VirMO/vm1/Operations/Create"),
            Command::exec("VirMO/vm2/Operations/Create"),
        ],
    );
    assert_eq!(o.code, StatusCode::AtomicFailed);
    assert_eq!(codes(&o), [216, 420]);
    assert_unchanged(&a, &before);
    assert_eq!(a.hv().vm_count(), 0);
    assert!(last_error(&a, "vm2").starts_with("420 "));
}

#[test]
fn effects_that_cannot_be_undone_are_refused_inside_an_atomic() {
    let mut a = agent();
    new_vm(&mut a, "vm1", "ImgID=2");
    for cmd in [
        Command::exec("VirMO/vm1/Operations/Delete"),
        Command::exec("VirMO/vm1/Operations/PowerOff"),
        Command::exec("VMImgMO/rtos/Operations/Delete"),
    ] {
        let before = snap(&a);
        let o = a.atomic(
            S,
            &[Command::replace("VirMO/vm1/Description", "x"), cmd.clone()],
        );
        assert_eq!(o.code, StatusCode::AtomicFailed, "{cmd:?}");
        assert_eq!(codes(&o), [216, 406], "{cmd:?}");
        assert!(
            o.results[1].text.contains("not allowed inside an Atomic"),
            "{o:?}"
        );
        assert_unchanged(&a, &before);
    }
}

#[test]
fn an_undo_that_fails_is_516_and_the_tree_follows_the_hypervisor() {
    let mut a = agent();
    prepare_vm(&mut a, "vm1", "ImgID=2");
    let o = {
        // The Atomic creates the VM, then fails; deleting it again fails too.
        a.hv_mut().fail_next(Op::Delete, Status::IoError);
        a.atomic(
            S,
            &[
                Command::exec("VirMO/vm1/Operations/Create"),
                Command::get("VirMO/nope"),
            ],
        )
    };
    assert_eq!(o.code, StatusCode::AtomicFailed);
    assert_eq!(codes(&o), [516, 404]);
    // The VM exists; the tree says so: vm1 is back to State 0 and the orphan is adopted.
    assert_eq!(a.hv().vm_count(), 1);
    assert_eq!(state(&mut a, "vm1"), "0");
    assert_eq!(get(&mut a, "VirMO"), "DeviceResources/Operations/vm1/vm1-2");
    assert_eq!(state(&mut a, "vm1-2"), "2");
    assert!(a
        .take_notices()
        .iter()
        .any(|n| n.contains("rollback failed")));
}

#[test]
fn a_failed_save_of_an_atomic_undoes_it_510() {
    let mut a = agent();
    prepare_vm(&mut a, "vm1", "ImgID=2");
    let before = snap(&a);
    a.hv_mut().fail_next(Op::StoreWrite, Status::IoError);
    let o = a.atomic(
        S,
        &[
            Command::exec("VirMO/vm1/Operations/Create"),
            Command::replace("VirMO/vm1/Description", "x"),
        ],
    );
    assert_eq!(o.code, StatusCode::DataStoreFailure);
    assert_eq!(codes(&o), [216, 216]);
    assert_unchanged(&a, &before);
}

#[test]
fn a_sequence_runs_in_order_and_stops_at_the_first_failure() {
    let mut a = agent();
    let o = a.sequence(
        S,
        &[
            add("VirMO/vm1"),
            Command::replace("VirMO/vm1/CreateParams", "ImgID=2"),
            Command::exec("VirMO/vm1/Operations/Create"),
            Command::exec("VirMO/vm1/Operations/Resume"),
            Command::replace("VirMO/vm1/Description", "not reached"),
        ],
    );
    assert_eq!(o.code, StatusCode::Ok);
    assert_eq!(codes(&o), [200, 200, 200, 403, 215]);
    // What succeeded stays.
    assert_eq!(state(&mut a, "vm1"), "2");
    assert_eq!(get(&mut a, "VirMO/vm1/Description"), "");
}
