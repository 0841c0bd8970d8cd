//! The hypervisor's disk for `cargo xtask run`: `target/disk/disk.img`, a 1 GiB sparse raw
//! image (format: docs/disk.md) whose store holds the run's images: the images of its VMs (the
//! Debian kernel and initramfs of the Linux demo, or the `--vm` images) and every test-guest
//! program, as ELF images. `--keep-disk` boots the disk left by the previous run as it is.
//!
//! To make a disk with other images, call [`create`] (from `harness_runner::disk`, which the
//! harness suites use too) with your own list of [`ImageSpec`]s.

use std::fs;
use std::path::PathBuf;

pub use harness_runner::disk::{create, ImageSpec};
use harness_runner::disk::{guest_program_image, suite_images, vm_image, IMAGE_SLOTS, NAME_LEN};
use harness_runner::Artifacts;

use crate::build::{rel, Workspace};
use crate::{progress, Failure, RunVms};

/// The RAM a test-guest program's image asks for by default.
const GUEST_RAM_MIB: u64 = 16;

/// Creates (or, with `keep`, keeps) `target/disk/disk.img` for this run; its path.
pub fn prepare(
    ws: &Workspace,
    vms: &RunVms,
    artifacts: &Artifacts,
    keep: bool,
) -> Result<PathBuf, Failure> {
    let path = ws.out.join("disk").join("disk.img");
    if keep && path.exists() {
        progress(&format!(
            "keeping the disk {} (--keep-disk)",
            rel(ws, &path)
        ));
        return Ok(path);
    }
    let images = run_images(vms, artifacts)?;
    create(&path, &images, false).map_err(Failure)?;
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    progress(&format!(
        "wrote the disk {} (1 GiB sparse) with {} images: {}",
        rel(ws, &path),
        images.len(),
        names.join(", ")
    ));
    Ok(path)
}

/// The run's VMs' images (identical ones once), then every test-guest program not yet there,
/// up to the store's [`IMAGE_SLOTS`].
fn run_images(vms: &RunVms, artifacts: &Artifacts) -> Result<Vec<ImageSpec>, Failure> {
    let mut images: Vec<ImageSpec> = match vms {
        RunVms::Guests(vms) => suite_images(vms, artifacts).map_err(Failure)?,
        RunVms::Images(vms) => {
            let mut out: Vec<ImageSpec> = Vec::new();
            for spec in vms.iter().map(vm_image) {
                let same = |s: &ImageSpec| {
                    s.format == spec.format && s.kernel == spec.kernel && s.initrd == spec.initrd
                };
                if !out.iter().any(same) {
                    out.push(spec);
                }
            }
            out
        }
    };
    for (program, elf) in guest_programs(artifacts) {
        if images.len() == IMAGE_SLOTS {
            progress("the disk's image store is full: the other guest programs are left out");
            break;
        }
        if !images.iter().any(|i| i.name == program) {
            images.push(guest_program_image(&program, elf, GUEST_RAM_MIB));
        }
    }
    Ok(images)
}

/// The management agent's executable: built into the same directory as the guests, but it is
/// the management VM (embedded in the hypervisor), not an image to create VMs from.
const AGENT_PROGRAM: &str = "mgmt-agent";

/// The test-guest program ELFs in the guest build directory, by name (not the agent's).
fn guest_programs(artifacts: &Artifacts) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = fs::read_dir(&artifacts.guest_dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Vec<u8>)> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            // Binaries have no extension; `.d` files and the like are not programs.
            if name.contains('.') || name.len() > NAME_LEN || name == AGENT_PROGRAM {
                return None;
            }
            let bytes = fs::read(e.path()).ok()?;
            bytes.starts_with(b"\x7fELF").then_some((name, bytes))
        })
        .collect();
    found.sort();
    found
}
