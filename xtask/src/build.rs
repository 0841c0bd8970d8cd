//! Prerequisites, and building the hypervisor image and the test guests.

use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness_runner::elf::{self, ARM64_IMAGE_MAGIC_OFFSET};
use harness_runner::qemu::QEMU;
use harness_runner::suites::TEST_GUEST_IPA_BASE;
use harness_runner::Artifacts;

use crate::{progress, Failure};

pub const HYPERVISOR_TARGET: &str = "aarch64-unknown-none-softfloat";
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// Paths of the workspace.
pub struct Workspace {
    pub root: PathBuf,
    /// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
    pub cargo_target: PathBuf,
    /// Where xtask writes its outputs (images, harness logs, bench results): `<root>/target`.
    pub out: PathBuf,
}

impl Workspace {
    pub fn find() -> Workspace {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
        let cargo_target = match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir)
                }
            }
            _ => root.join("target"),
        };
        let out = root.join("target");
        Workspace {
            root,
            cargo_target,
            out,
        }
    }

    /// A `cargo` command run in the workspace, with the target directory made explicit.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.cargo_target);
        cmd
    }
}

/// Runs `cmd`, failing with `what` if it cannot start or exits unsuccessfully.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<(), Failure> {
    let status = cmd
        .status()
        .map_err(|e| Failure(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("{what} failed ({status})")))
    }
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs the Rust targets and QEMU if they are missing (QEMU only as root).
pub fn ensure_prerequisites() -> Result<(), Failure> {
    let targets = [HYPERVISOR_TARGET, GUEST_TARGET];
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(out) if out.status.success() => {
            let installed = String::from_utf8_lossy(&out.stdout);
            let missing: Vec<&str> = targets
                .iter()
                .copied()
                .filter(|t| !installed.lines().any(|l| l.trim() == *t))
                .collect();
            if !missing.is_empty() {
                progress(&format!("installing Rust targets: {}", missing.join(" ")));
                run_checked(
                    Command::new("rustup")
                        .args(["target", "add"])
                        .args(&missing),
                    "rustup target add",
                )?;
            }
        }
        _ => progress("rustup not found: assuming the aarch64 Rust targets are installed"),
    }
    if !on_path(QEMU) {
        let install =
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-system-arm";
        if !is_root() {
            return Err(Failure(format!(
                "{QEMU} not found on PATH; install it as root with:\n    {install}"
            )));
        }
        progress(&format!("{QEMU} not found; installing: {install}"));
        run_checked(Command::new("apt-get").arg("update"), "apt-get update")?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "qemu-system-arm"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get install qemu-system-arm",
        )?;
        if !on_path(QEMU) {
            return Err(Failure(format!(
                "{QEMU} still not on PATH after installing qemu-system-arm"
            )));
        }
    }
    Ok(())
}

/// `cargo build --release <args> --message-format=json-render-diagnostics`, returning the
/// executables it produced (by name).
fn cargo_build(ws: &Workspace, args: &[&str]) -> Result<Vec<(String, PathBuf)>, Failure> {
    cargo_build_env(ws, args, &[])
}

/// `cargo_build` with extra environment variables.
fn cargo_build_env(
    ws: &Workspace,
    args: &[&str],
    env: &[(&str, &Path)],
) -> Result<Vec<(String, PathBuf)>, Failure> {
    let mut cmd = ws.cargo();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ])
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let what = format!("cargo build {}", args.join(" "));
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure(format!("{what}: cannot start cargo: {e}")))?;
    let mut exes = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" {
            if let (Some(name), Some(exe)) =
                (msg["target"]["name"].as_str(), msg["executable"].as_str())
            {
                exes.push((name.to_string(), PathBuf::from(exe)));
            }
        }
    }
    let status = child.wait().map_err(|e| Failure(format!("{what}: {e}")))?;
    if !status.success() {
        return Err(Failure(format!("{what} failed ({status})")));
    }
    Ok(exes)
}

/// Builds the hypervisor and the guests; writes `target/images/hypervisor.bin`.
pub fn build(ws: &Workspace) -> Result<Artifacts, Failure> {
    // The management VM's agent first: the hypervisor image embeds it (docs/virmo.md).
    progress(&format!("building the management agent ({GUEST_TARGET})"));
    let agent = cargo_build(
        ws,
        &[
            "-p",
            "mgmt-agent",
            "--bin",
            "mgmt-agent",
            "--target",
            GUEST_TARGET,
        ],
    )?
    .into_iter()
    .find(|(name, _)| name == "mgmt-agent")
    .map(|(_, p)| p)
    .ok_or_else(|| Failure("cargo built no `mgmt-agent` executable".into()))?;
    progress(&format!("building the hypervisor ({HYPERVISOR_TARGET})"));
    let exes = cargo_build_env(
        ws,
        &[
            "-p",
            "hypervisor",
            "--bin",
            "hypervisor",
            "--target",
            HYPERVISOR_TARGET,
        ],
        &[("MGMT_AGENT_ELF", agent.as_path())],
    )?;
    let hypervisor_elf = exes
        .into_iter()
        .find(|(name, _)| name == "hypervisor")
        .map(|(_, p)| p)
        .ok_or_else(|| Failure("cargo built no `hypervisor` executable".into()))?;
    let data = fs::read(&hypervisor_elf)
        .map_err(|e| Failure(format!("cannot read {}: {e}", hypervisor_elf.display())))?;
    let image = elf::flatten(&data)
        .map_err(|e| Failure(format!("hypervisor ELF {}: {e}", hypervisor_elf.display())))?;
    if !elf::has_arm64_image_header(&image.bytes) {
        return Err(Failure(format!(
            "the hypervisor image has no arm64 Image header (magic \"ARM\\x64\" at offset {ARM64_IMAGE_MAGIC_OFFSET:#x}); \
             QEMU would not boot it as a Linux Image. Does its `.text.head` start with the Image header?"
        )));
    }
    let images = ws.out.join("images");
    fs::create_dir_all(&images)
        .map_err(|e| Failure(format!("cannot create {}: {e}", images.display())))?;
    let hypervisor_bin = images.join("hypervisor.bin");
    fs::write(&hypervisor_bin, &image.bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", hypervisor_bin.display())))?;
    progress(&format!(
        "wrote {} ({} KiB, load {:#x}, entry {:#x})",
        rel(ws, &hypervisor_bin),
        image.bytes.len().div_ceil(1024),
        image.load_addr,
        image.entry
    ));

    progress(&format!("building the guests ({GUEST_TARGET})"));
    let guests = cargo_build(ws, &["-p", "guests", "--bins", "--target", GUEST_TARGET])?;
    let guest_dir = ws.cargo_target.join(GUEST_TARGET).join("release");
    let mut names = Vec::new();
    for (name, path) in &guests {
        let data =
            fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
        let img = elf::flatten(&data).map_err(|e| Failure(format!("guest `{name}`: {e}")))?;
        if img.load_addr < TEST_GUEST_IPA_BASE {
            return Err(Failure(format!(
                "guest `{name}` loads at {:#x}, below the guest IPA base {TEST_GUEST_IPA_BASE:#x}",
                img.load_addr
            )));
        }
        names.push(name.as_str());
    }
    names.sort();
    progress(&format!(
        "built {} guests: {}",
        names.len(),
        names.join(", ")
    ));
    Ok(Artifacts {
        hypervisor_elf,
        hypervisor_bin,
        guest_dir,
        linux: None,
    })
}

/// `path` relative to the workspace root, for messages.
pub fn rel(ws: &Workspace, path: &Path) -> String {
    path.strip_prefix(&ws.root)
        .unwrap_or(path)
        .display()
        .to_string()
}
