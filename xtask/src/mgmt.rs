//! `cargo xtask run --mgmt-script FILE`: boots the hypervisor with only the management VM,
//! feeds FILE's command lines to its shell one at a time, prints each command with its answer,
//! and stops when FILE ends (docs/virmo.md, "The management shell").

use std::fs;
use std::path::Path;
use std::time::Duration;

use harness_runner::mgmt::{script_commands, Session, SessionError};
use harness_runner::qemu::{Qemu, QemuConfig, SpawnOptions};

use crate::{progress, Failure};

/// The management VM's RAM, in MiB (hypervisor/src/vm/management.rs): QEMU gets this more.
pub const MGMT_RAM_MIB: u64 = 64;

/// How long the agent may take to boot, and one command to be answered (a suspend writes a
/// whole VM's RAM to disk).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run_script(
    config: &QemuConfig,
    script: &Path,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let text = fs::read_to_string(script)
        .map_err(|e| Failure(format!("cannot read {}: {e}", script.display())))?;
    let commands = script_commands(&text);
    progress(&format!(
        "booting the management VM with: {}",
        config.command_line()
    ));
    let mut qemu = Qemu::spawn_with_input(
        config,
        SpawnOptions {
            echo: false,
            inherit_stdin: false,
            inherit_stderr: true,
        },
    )
    .map_err(|e| Failure(e.to_string()))?;
    let result = drive(&mut qemu, &commands, timeout);
    qemu.stop();
    result
}

fn drive(qemu: &mut Qemu, commands: &[String], timeout: Option<Duration>) -> Result<(), Failure> {
    let answer_timeout = timeout.unwrap_or(ANSWER_TIMEOUT);
    let mut session = Session::new(qemu, |line| {
        // The hypervisor's and the guests' lines, except the management VM's answers which
        // are printed with their command below.
        if !line.starts_with("mgmt| STATUS ") {
            println!("{line}");
        }
    });
    session
        .wait_ready(timeout.unwrap_or(READY_TIMEOUT))
        .map_err(|e| Failure(e.to_string()))?;
    for command in commands {
        println!("> {command}");
        match session.command(command, answer_timeout) {
            Ok(x) => println!("< {}", x.answer),
            Err(e @ SessionError::Panic(_)) => return Err(Failure(e.to_string())),
            Err(e) => return Err(Failure(format!("`{command}`: {e}"))),
        }
    }
    progress(&format!(
        "the script's {} commands were answered",
        commands.len()
    ));
    Ok(())
}
