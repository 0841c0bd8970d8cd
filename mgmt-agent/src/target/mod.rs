//! The binary glue: the only hardware-facing code of the agent, and the only `unsafe`.
//!
//! - `entry`: `_start`, the stack, the exception vectors, the panic handler;
//! - `heap`: the global allocator over a static array;
//! - `console`: output through `HV_CONSOLE_WRITE`, input from the emulated PL011;
//! - `hvcalls`: the [`Hypervisor`](mgmt_agent::Hypervisor) trait over the management
//!   hypercalls;
//! - `pmu`: the counter the hypervisor's benchmarks read, when this VM has the PMU.
//!
//! The VM runs on one vCPU at EL1 with the MMU off and every interrupt masked (entry contract,
//! docs/architecture.md "Guests"), so nothing here is ever re-entered, and there are no
//! atomics (exclusives are not guaranteed on the Device memory a guest with its MMU off sees).

mod console;
mod entry;
mod heap;
mod hvcalls;
mod pmu;

use abi::ids::{HV_ABI_VERSION, HV_YIELD};
use mgmt_agent::shell::{fit, notice_line, Input, LineReader, Shell, CONSOLE_LINE_MAX};
use mgmt_agent::{Agent, AgentConfig};

/// The hypervisor's ABI version, for `DevDetail/FwV`.
fn abi_version() -> alloc::string::String {
    let [status, major, minor, _] = abi::guest::hvc(HV_ABI_VERSION, [0; 3]);
    if status == abi::Status::Success.to_reg() {
        alloc::format!("hv-abi {major}.{minor}")
    } else {
        "unknown".into()
    }
}

fn print_notices(agent: &mut Agent<hvcalls::HvCalls>) {
    for n in agent.take_notices() {
        console::line(&notice_line(&n));
    }
}

/// Called by `_start` on the boot vCPU with the device tree's IPA (unused: everything the
/// agent needs comes through hypercalls).
fn agent_main(_dtb_ipa: u64) -> ! {
    heap::init();
    pmu::setup();
    let hv = hvcalls::HvCalls::take();
    let config = AgentConfig {
        fw_version: abi_version(),
        ..AgentConfig::default()
    };
    let mut agent = Agent::boot(hv, config);
    print_notices(&mut agent);
    console::line("virmo-agent ready");
    let mut shell = Shell::new(&agent.config().server_id.clone());
    let mut reader = LineReader::new();
    loop {
        let Some(byte) = console::read_byte() else {
            // Nothing typed: let the other VMs run. (Not WFI: with every interrupt masked and
            // no timer armed, a vCPU blocked in WFI might never be woken.)
            abi::guest::hvc(HV_YIELD, [0; 3]);
            continue;
        };
        let answer = match reader.push(byte) {
            None => continue,
            Some(Input::TooLong) => Some(shell.too_long()),
            Some(Input::Line(line)) => shell.answer(&mut agent, &line),
        };
        print_notices(&mut agent);
        if let Some(answer) = answer {
            console::line(&fit(&answer, CONSOLE_LINE_MAX));
        }
    }
}
