//! Links the bare-metal image with its linker script, and embeds the management VM's agent
//! (`MGMT_AGENT_ELF`, set by `cargo xtask build`); host builds are left alone.
use std::path::PathBuf;

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "none" {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../linker/hypervisor.ld");
        println!("cargo:rustc-link-arg-bins=-T{script}");
        println!("cargo:rerun-if-changed={script}");
    }
    // The agent's ELF goes into the image as `mgmt_agent.elf` (empty without one: the
    // hypervisor then has no management VM to start).
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out.join("mgmt_agent.elf");
    println!("cargo:rerun-if-env-changed=MGMT_AGENT_ELF");
    let agent = match std::env::var("MGMT_AGENT_ELF") {
        Ok(path) if !path.is_empty() => {
            println!("cargo:rerun-if-changed={path}");
            std::fs::read(&path).unwrap_or_else(|e| panic!("MGMT_AGENT_ELF={path}: {e}"))
        }
        _ => Vec::new(),
    };
    std::fs::write(&embedded, agent).expect("cannot write the embedded agent");
    println!("cargo:rerun-if-changed=build.rs");
}
