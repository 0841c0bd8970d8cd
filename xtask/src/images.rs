//! The Linux guest images: Debian's arm64 kernel and an initramfs made of Debian's static
//! busybox and `init.sh`, cached under `target/` (see `docs/linux-guests.md`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness_runner::layout;
use harness_runner::linux::LinuxImages;

use crate::build::{rel, run_checked, Workspace};
use crate::cpio::CpioWriter;
use crate::vmarg::gunzip_if_gzip;
use crate::{progress, Failure};

/// `/init` of the initramfs.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// Fetches the packages (`scripts/fetch-guest-images.sh`), then writes
/// `target/images/linux-Image` and `target/images/initramfs.cpio.gz` (each only when its
/// content changes).
pub fn prepare_linux_images(ws: &Workspace) -> Result<LinuxImages, Failure> {
    progress("fetching the Linux guest images: scripts/fetch-guest-images.sh");
    run_checked(
        Command::new(ws.root.join("scripts/fetch-guest-images.sh")).current_dir(&ws.root),
        "scripts/fetch-guest-images.sh",
    )?;
    let images = ws.out.join("images");
    fs::create_dir_all(&images)
        .map_err(|e| Failure(format!("cannot create {}: {e}", images.display())))?;
    let debs = ws.out.join("debs");

    let vmlinuz = find_vmlinuz(&debs.join("linux-image").join("boot"))?;
    let raw = fs::read(&vmlinuz)
        .map_err(|e| Failure(format!("cannot read {}: {e}", vmlinuz.display())))?;
    let was_gzip = raw.starts_with(&[0x1f, 0x8b]);
    let kernel = gunzip_if_gzip(raw).map_err(|e| Failure(format!("{}: {e}", vmlinuz.display())))?;
    let header = layout::parse_image_header(&kernel)
        .map_err(|e| Failure(format!("Debian's kernel {}: {e}", vmlinuz.display())))?;
    let kernel_path = images.join("linux-Image");
    write_if_changed(&kernel_path, &kernel)?;
    progress(&format!(
        "{} ({}{} MiB, text_offset {:#x}, image_size {} MiB, flags {:#x})",
        rel(ws, &kernel_path),
        if was_gzip { "decompressed, " } else { "" },
        kernel.len() >> 20,
        header.text_offset,
        header.image_size >> 20,
        header.flags
    ));

    let busybox_path = debs.join("busybox-static").join("bin").join("busybox");
    let busybox = fs::read(&busybox_path)
        .map_err(|e| Failure(format!("cannot read {}: {e}", busybox_path.display())))?;
    let cpio = initramfs_cpio(&busybox, INIT_SCRIPT).map_err(Failure)?;
    let gz = gzip(&cpio);
    let initramfs = images.join("initramfs.cpio.gz");
    write_if_changed(&initramfs, &gz)?;
    progress(&format!(
        "{} ({} KiB: busybox and init.sh)",
        rel(ws, &initramfs),
        gz.len().div_ceil(1024)
    ));
    Ok(LinuxImages {
        kernel: kernel_path,
        initramfs,
    })
}

/// The one `vmlinuz-*` of the unpacked kernel package (the newest name if several).
fn find_vmlinuz(boot: &Path) -> Result<PathBuf, Failure> {
    let mut found: Vec<PathBuf> = fs::read_dir(boot)
        .map_err(|e| Failure(format!("cannot list {}: {e}", boot.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| Failure(format!("no vmlinuz-* in {}", boot.display())))
}

fn write_if_changed(path: &Path, data: &[u8]) -> Result<(), Failure> {
    if fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

/// gzip with mtime 0 (so the same input gives the same bytes).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// The initramfs: the usual directories, `/dev/console` (the kernel opens it for `/init`
/// before anything is mounted), `/bin/busybox`, `/bin/sh`, and `/init`.
pub fn initramfs_cpio(busybox: &[u8], init: &str) -> Result<Vec<u8>, String> {
    if !busybox.starts_with(b"\x7fELF") {
        return Err("busybox is not an ELF executable".into());
    }
    let mut w = CpioWriter::new();
    for dir in [
        "bin", "dev", "etc", "proc", "root", "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin",
    ] {
        w.dir(dir, if dir == "tmp" { 0o1777 } else { 0o755 })?;
    }
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.char_dev("dev/null", 0o666, 1, 3)?;
    w.file("bin/busybox", 0o755, busybox)?;
    w.symlink("bin/sh", "busybox")?;
    w.file("init", 0o755, init.as_bytes())?;
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::{read_all, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};

    #[test]
    fn initramfs_layout() {
        let busybox = b"\x7fELF fake busybox";
        let a = initramfs_cpio(busybox, INIT_SCRIPT).unwrap();
        let entries = read_all(&a).unwrap();
        let find = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(find("init").mode, S_IFREG | 0o755);
        assert_eq!(find("init").data, INIT_SCRIPT.as_bytes());
        assert_eq!(find("bin/busybox").data, busybox);
        assert_eq!(find("bin/sh").mode & 0o170000, S_IFLNK);
        assert_eq!(find("bin/sh").data, b"busybox");
        assert_eq!(find("dev/console").mode, S_IFCHR | 0o600);
        assert_eq!(find("dev/console").rdev, (5, 1));
        assert_eq!(find("tmp").mode, S_IFDIR | 0o1777);
        for d in ["proc", "sys", "usr/sbin"] {
            assert_eq!(find(d).mode, S_IFDIR | 0o755);
        }
        assert!(initramfs_cpio(b"#!/bin/sh", INIT_SCRIPT)
            .unwrap_err()
            .contains("not an ELF"));
        // Deterministic, also once gzipped; and gzip round-trips.
        let gz = gzip(&a);
        assert_eq!(gz, gzip(&initramfs_cpio(busybox, INIT_SCRIPT).unwrap()));
        assert_eq!(gunzip_if_gzip(gz).unwrap(), a);
    }

    #[test]
    fn init_script_prints_the_markers_the_suites_wait_for() {
        let s = INIT_SCRIPT;
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        for marker in [
            "echo \"HV-LINUX-BOOT $name\"",
            "echo \"HV-LINUX-READY $name\"",
            "echo \"HV-LINUX-CPUS $cpus\"",
            "echo \"HV-SLEEP-START $(uptime_s)\"",
            "echo \"HV-SLEEP-END $(uptime_s)\"",
            "echo \"HV-ALIVE $i $(uptime_s)\"",
            "echo \"HV-FLOOD $i ",
            "poweroff -f",
            "reboot -f",
            "hvname=*)",
            "hvtest=*)",
            "setsid cttyhack sh",
        ] {
            assert!(s.contains(marker), "init.sh lacks {marker}");
        }
        // A flood line stays under the hypervisor's 256-byte line limit.
        let flood = s.lines().find(|l| l.contains("HV-FLOOD $i")).unwrap();
        assert!(flood.trim().len() + 10 < 256);
    }
}
