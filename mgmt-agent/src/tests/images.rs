//! VMImgMO (section 9, 10.1; VirMO-C-011, C-012).

use abi::Status;

use super::support::*;
use crate::dm::Command;
use crate::hv::mock::Op;
use crate::hv::Hypervisor;

#[test]
fn store_images_appear_downloaded() {
    let mut a = agent();
    assert_eq!(get(&mut a, "VMImgMO"), "debian/rtos");
    assert_eq!(
        get(&mut a, "VMImgMO/debian"),
        "Description/DownloadURI/DownloadedLocation/Ext/ImgID/MediaType/Name/Operations/State"
    );
    assert_eq!(get(&mut a, "VMImgMO/debian/ImgID"), "1");
    assert_eq!(get(&mut a, "VMImgMO/debian/Name"), "debian");
    assert_eq!(get(&mut a, "VMImgMO/debian/State"), "2");
    assert_eq!(get(&mut a, "VMImgMO/debian/DownloadedLocation"), "store:1");
    assert_eq!(
        get(&mut a, "VMImgMO/debian/MediaType"),
        "application/vnd.arm64-linux-image"
    );
    assert_eq!(get(&mut a, "VMImgMO/rtos/MediaType"), "application/x-elf");
    assert!(get(&mut a, "VMImgMO/rtos/Description").starts_with("Elf image of 4194304 bytes"));
    assert_eq!(get(&mut a, "VMImgMO/rtos/Operations"), "Delete/Download");
    // The server sets Name, MediaType, DownloadURI (section 9).
    ok(&mut a, Command::replace("VMImgMO/rtos/Name", "zephyr 3.6"));
    assert_eq!(get(&mut a, "VMImgMO/rtos/Name"), "zephyr 3.6");
}

/// Section 10.1 steps 1-3: the server adds an entry, the client gives it an ImgID and State 0;
/// Download is not supported yet.
#[test]
fn a_server_added_image_waits_for_a_download_that_is_not_supported_yet() {
    let mut a = agent();
    ok(&mut a, add("VMImgMO/ent"));
    assert_eq!(get(&mut a, "VMImgMO/ent/ImgID"), "new-1");
    assert_eq!(get(&mut a, "VMImgMO/ent/State"), "0");
    assert!(!a.tree().contains("VMImgMO/ent/DownloadedLocation"));
    ok(
        &mut a,
        Command::replace("VMImgMO/ent/DownloadURI", "http://example.com/ent.img"),
    );
    ok(
        &mut a,
        Command::replace("VMImgMO/ent/MediaType", "application/x-elf"),
    );
    let before = snap(&a);
    fails(
        &mut a,
        Command::exec("VMImgMO/ent/Operations/Download"),
        406,
    );
    assert_unchanged(&a, &before);
    // It cannot be used for a VM yet.
    prepare_vm(&mut a, "vm1", "ImgID=new-1");
    let o = exec(&mut a, "vm1", "Create");
    assert_eq!(o.code.code(), 403, "{o:?}");
    assert!(o.text.contains("not downloaded"), "{o:?}");
    // ImgIDs are unique, never reused.
    ok(&mut a, Command::delete("VMImgMO/ent"));
    ok(&mut a, add("VMImgMO/ent"));
    assert_eq!(get(&mut a, "VMImgMO/ent/ImgID"), "new-2");
    ok(&mut a, Command::exec("VMImgMO/ent/Operations/Delete"));
    assert!(!a.tree().contains("VMImgMO/ent"));
}

#[test]
fn create_params_must_name_an_image_of_vmimgmo() {
    let mut a = agent();
    prepare_vm(&mut a, "vm1", "ImgID=9");
    let o = exec(&mut a, "vm1", "Create");
    assert_eq!(o.code.code(), 404, "{o:?}");
    assert!(o.text.contains("ImgID=9"), "{o:?}");
    // An image that left the store behind the agent's back.
    a.hv_mut().lose_image(2);
    ok(
        &mut a,
        Command::replace("VirMO/vm1/CreateParams", "ImgID=2"),
    );
    let before = snap(&a);
    let o = exec(&mut a, "vm1", "Create");
    assert_eq!(o.code.code(), 410, "{o:?}");
    assert_unchanged(&a, &before);
}

/// VirMO-C-012: Operations/Delete removes the image from the store, then the sub-tree.
#[test]
fn deleting_an_image() {
    let mut a = agent();
    ok(&mut a, Command::exec("VMImgMO/rtos/Operations/Delete"));
    assert!(!a.tree().contains("VMImgMO/rtos"));
    assert!(a.hv_mut().images().unwrap().iter().all(|i| i.id != 2));
    // An image a VM boots cannot go.
    new_vm(&mut a, "vm1", "ImgID=1");
    let before = snap(&a);
    let why = fails(
        &mut a,
        Command::exec("VMImgMO/debian/Operations/Delete"),
        403,
    );
    assert!(why.contains("used by VirMO/vm1"), "{why}");
    assert_unchanged(&a, &before);
    // DM Delete of a downloaded image is refused: Exec Delete is the way.
    let why = fails(&mut a, Command::delete("VMImgMO/debian"), 403);
    assert!(why.contains("Operations/Delete"), "{why}");
}

#[test]
fn failures_deleting_an_image_change_nothing() {
    let mut a = agent();
    let before = snap(&a);
    a.hv_mut().fail_next(Op::RemoveImage, Status::IoError);
    fails(&mut a, Command::exec("VMImgMO/rtos/Operations/Delete"), 510);
    assert_unchanged(&a, &before);
    a.hv_mut().fail_next(Op::StoreWrite, Status::IoError);
    fails(&mut a, Command::exec("VMImgMO/rtos/Operations/Delete"), 510);
    assert_unchanged(&a, &before);
    // Already gone from the store: the entry goes.
    a.hv_mut().lose_image(2);
    ok(&mut a, Command::exec("VMImgMO/rtos/Operations/Delete"));
    assert!(!a.tree().contains("VMImgMO/rtos"));
}
