//! `demo`: not a test. A friendly VM for `cargo xtask run`: it shows its identity and command
//! line, ticks for a while (yielding while it waits), and powers itself off, which shows console
//! output, scheduling, time and PSCI SYSTEM_OFF working together.
//!
//! Bootargs: `ticks=<n>` (default 5), how many 500 ms ticks to print.
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::ids::HV_VM_ID;
use abi::Status;
use guest_rt::{boot_info, hvc, println, psci, time};

guest_rt::entry!(demo_main);

const TICK_MS: u64 = 500;
const DEFAULT_TICKS: u64 = 5;

fn demo_main(_dtb_ipa: u64) {
    let info = boot_info();
    let [status, vm_id, ..] = hvc(HV_VM_ID, [0; 3]);
    if status == Status::Success.to_reg() {
        println!(
            "hello from VM {vm_id} ({} vCPUs), cmdline \"{}\"",
            info.vcpu_count,
            info.cmdline.as_str()
        );
    } else {
        println!("HV_VM_ID failed with {}", status as i64);
    }
    for tick in 1..=info.cmdline.param_u64_or("ticks", DEFAULT_TICKS) {
        time::sleep_ms(TICK_MS);
        println!("tick {tick}");
    }
    println!("demo finished");
    psci::system_off()
}

#[cfg(not(target_os = "none"))]
fn main() {}
