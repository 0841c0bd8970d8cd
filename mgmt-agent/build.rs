//! Links the management VM binary with linker/guest.ld (the test guests' script: RAM at IPA
//! 0x8000_0000, NOBITS stacks and .bss below the loaded image) when building for the bare-metal
//! target. Host builds (unit tests, the shell example, `cargo check`) link normally.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let script = manifest_dir.join("../linker/guest.ld");
    println!("cargo::rerun-if-changed={}", script.display());
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = script.canonicalize().expect("linker/guest.ld is missing");
        println!("cargo::rustc-link-arg-bins=-T{}", script.display());
    }
}
