//! The management shell on the host, against the mock hypervisor: the same protocol as the
//! management VM's console, for trying commands and writing harness scripts.
//!
//! ```sh
//! printf 'add VirMO/vm1\nreplace VirMO/vm1/CreateParams ImgID=1\nexec VirMO/vm1/Operations/Create\nget VirMO/vm1/State\n' \
//!   | cargo run -q -p mgmt-agent --example shell --features mock
//! ```
//! The mock device has 2 CPUs, 1 GiB of RAM (768 MiB for VMs), a 256 MiB storage pool and two
//! images: 1 (`debian`, Linux, 128 MiB by default) and 2 (`rtos`, ELF, 16 MiB).

use std::io::{self, BufRead, Write};

use mgmt_agent::abi::mgmt::ImageFormat;
use mgmt_agent::hv::mock::{MockHypervisor, MIB};
use mgmt_agent::shell::{fit, notice_line, CONSOLE_LINE_MAX};
use mgmt_agent::{Agent, AgentConfig, Shell};

fn main() {
    let hv = MockHypervisor::new()
        .with_image(1, ImageFormat::Linux, 128 * MIB, "debian")
        .with_image(2, ImageFormat::Elf, 16 * MIB, "rtos");
    let mut agent = Agent::boot(hv, AgentConfig::default());
    let mut out = io::stdout().lock();
    let notices = |agent: &mut Agent<MockHypervisor>, out: &mut io::StdoutLock| {
        for n in agent.take_notices() {
            let _ = writeln!(out, "{}", notice_line(&n));
        }
    };
    notices(&mut agent, &mut out);
    let _ = writeln!(out, "virmo-agent ready");
    let mut shell = Shell::new(&agent.config().server_id.clone());
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = shell.answer(&mut agent, &line);
        notices(&mut agent, &mut out);
        if let Some(answer) = answer {
            let _ = writeln!(out, "{}", fit(&answer, CONSOLE_LINE_MAX));
        }
    }
}
