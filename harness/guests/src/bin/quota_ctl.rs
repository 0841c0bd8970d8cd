//! `quota_ctl`: the management VM of the `sched_quota_change` suite (bundle flag MANAGEMENT).
//! It makes the management calls that exist (docs/hypercalls.md, "Management calls") against
//! two CPU-bound VMs `a` and `b` at 50 % each, and changes their quotas at a known moment.
//!
//! In order: the device (DEVICE_INFO), the VMs (VM_LIST, VM_QUERY, including handles that
//! are not VMs it manages), their CPU accounting (VM_STATS: consumed, throttled time and
//! periods, against what a CPU-bound VM at 45 % of the device must show), sets the hypervisor
//! must refuse without changing anything (a percentage over 100, a sum over 100, a VM named
//! twice, an unknown VM, a change of something else than the CPU), and at `apply_at_ms` of its
//! virtual time the valid set a=80 b=20, which the runner's shares check must see in force
//! from the next period (`#HV quota-applied`).
//!
//! It then stays (yielding, at its 10 %) until `until_ms`, after the spinners have finished: a
//! VM that stops releases its RAM, which holds its physical CPU for milliseconds (zeroing it),
//! and that must not happen in the windows the runner judges.
//!
//! Bootargs: `a=<handle>`, `b=<handle>` (the VM ids of `a` and `b`), `apply_at_ms=<n>`
//! (default 500), `until_ms=<n>` (default 1100).
#![cfg_attr(target_os = "none", no_std, no_main)]

use abi::mgmt::{Change, VmInfo, VmState};
use abi::Status;
use guest_rt::{check, check_eq, fail, test, time};
use guests::mgmt;

guest_rt::test_main!();

const DEFAULT_APPLY_AT_MS: u64 = 500;
const DEFAULT_UNTIL_MS: u64 = 1100;
/// The board's management share and period (boards::QEMU_VIRT).
const MGMT_PCT: u32 = 10;
const PERIOD_US: u32 = 10_000;

fn handles() -> (u64, u64) {
    let c = guest_rt::cmdline();
    (c.param_u64_or("a", 2), c.param_u64_or("b", 3))
}

fn st(s: Status) -> u64 {
    s.to_reg()
}

fn elapsed_ns() -> u64 {
    (time::now() as u128 * 1_000_000_000 / time::frequency() as u128) as u64
}

fn query(handle: u64) -> Result<VmInfo, guest_rt::TestFailure> {
    match mgmt::vm_query(handle) {
        Ok(info) => Ok(info),
        Err(x0) => fail!("VM_QUERY({handle}) failed: x0={:#x}", x0),
    }
}

test!(
    fn device_info() {
        let d = match mgmt::device_info() {
            Ok(d) => d,
            Err(x0) => fail!("DEVICE_INFO failed: x0={x0:#x}"),
        };
        check!(d.pcpus >= 1, "pcpus = {}", d.pcpus);
        check_eq!(d.mgmt_cpu_pct, MGMT_PCT, "management VM share");
        check_eq!(d.cpu_allocated_pct, 100, "VirMO percentages allocated");
        check_eq!(d.period_us, PERIOD_US, "scheduling period");
        check_eq!(d.vms, 2, "VMs (the management VM not counted)");
        check!(
            d.ram_free < d.ram_total,
            "RAM free {} of {}",
            d.ram_free,
            d.ram_total
        );
    }
);

test!(
    fn vm_list_and_query() {
        let (a, b) = handles();
        let list = match mgmt::vm_list() {
            Ok(l) => l,
            Err(x0) => fail!("VM_LIST failed: x0={x0:#x}"),
        };
        check_eq!(list.total, 2, "VM_LIST count");
        check_eq!(
            list.as_slice(),
            &[a as u32, b as u32][..],
            "VM_LIST handles"
        );
        for (handle, name) in [(a, "a"), (b, "b")] {
            let info = query(handle)?;
            check_eq!(info.handle, handle as u32);
            check_eq!(info.name.as_str(), name);
            check_eq!(info.state, VmState::Running);
            check_eq!(info.resources.cpu_pct, 50, "VM {name}'s CPU percentage");
            check_eq!(info.resources.vcpus, 1);
            check_eq!(info.resources.ram, 16 << 20);
        }
        // The management VM is not a VM it manages; 99 is no VM; the page must be the
        // caller's, aligned.
        let own = guest_rt::param_u64("vm_id").unwrap_or(1);
        check_eq!(
            mgmt::vm_query(own).err(),
            Some(st(Status::NotFound)),
            "VM_QUERY(self)"
        );
        check_eq!(
            mgmt::vm_query(99).err(),
            Some(st(Status::NotFound)),
            "VM_QUERY(99)"
        );
        let unaligned = mgmt::page_ipa() + 8;
        check_eq!(
            mgmt::vm_query_at(a, unaligned).err(),
            Some(st(Status::InvalidParameter)),
            "VM_QUERY into an unaligned page"
        );
        check_eq!(
            mgmt::vm_query_at(a, 0x1000).err(),
            Some(st(Status::InvalidParameter)),
            "VM_QUERY into a page outside the caller's RAM"
        );
    }
);

test!(
    fn cpu_accounting() {
        let (a, _) = handles();
        // A's budget is 45 % of the device; it spins, so it is throttled every period.
        // This VM can be preempted between reading its clock and the call: each reading is
        // bracketed by the clock before and after.
        let stats = || {
            let before = elapsed_ns();
            let s = mgmt::vm_stats(a);
            (before, elapsed_ns(), s)
        };
        time::sleep_ms(100);
        let (_, t0, s0) = stats();
        time::sleep_ms(100);
        let (t1, t1_after, s1) = stats();
        let (Ok(s0), Ok(s1)) = (s0, s1) else {
            fail!("VM_STATS({a}) failed: {s0:?} {s1:?}");
        };
        let pct = |part: u64, whole: u64| part * 100 / whole.max(1);
        guest_rt::println!(
            "a: consumed {} us, throttled {} us in {} periods; over the last {} us: {}% used, {}% throttled",
            s1.consumed_ns / 1000,
            s1.throttled_ns / 1000,
            s1.throttled_periods,
            (t1 - t0) / 1000,
            pct(s1.consumed_ns - s0.consumed_ns, t1 - t0),
            pct(s1.throttled_ns - s0.throttled_ns, t1 - t0)
        );
        // Since boot: never more than its share, plus the budget of the period under way
        // (it may have used it all at the period's start): 45 % of 10 ms.
        check!(
            s1.consumed_ns <= t1_after * 45 / 100 + 4_500_000,
            "a consumed {} ns in {} ns: over 45 %",
            s1.consumed_ns,
            t1_after
        );
        // Over 100 ms (two readings at any point of their periods: ±1 period's budget).
        let used = pct(s1.consumed_ns - s0.consumed_ns, t1 - t0);
        check!(
            (40..=50).contains(&used),
            "a used {used}% of 100 ms, expected 45 %"
        );
        let throttled = pct(s1.throttled_ns - s0.throttled_ns, t1 - t0);
        check!(
            (45..=60).contains(&throttled),
            "a was throttled {throttled}% of 100 ms, expected 55 %"
        );
        let periods = s1.throttled_periods - s0.throttled_periods;
        check!(
            (9..=11).contains(&periods),
            "a was throttled in {periods} periods of 100 ms, expected every one (10)"
        );
        // The management VM's own accounting, and VM_QUERY's copy of a's.
        match mgmt::vm_stats(0) {
            Ok(own) => check!(own.consumed_ns > 0, "own consumption 0"),
            Err(x0) => fail!("VM_STATS(0) failed: x0={x0:#x}"),
        }
        let info = query(a)?;
        check!(
            info.cpu.consumed_ns >= s1.consumed_ns && info.cpu.throttled_periods >= periods,
            "VM_QUERY's accounting {:?} is behind VM_STATS' {s1:?}",
            info.cpu
        );
        check_eq!(
            mgmt::vm_stats(99).err(),
            Some(st(Status::NotFound)),
            "VM_STATS(99)"
        );
    }
);

/// A change of VM `handle`'s CPU percentage to `pct`, everything else as VM_QUERY says.
fn cpu_change(handle: u64, pct: u32) -> Result<Change, guest_rt::TestFailure> {
    let mut resources = query(handle)?.resources;
    resources.cpu_pct = pct;
    Ok(Change {
        handle: handle as u32,
        resources,
    })
}

test!(
    fn invalid_sets_refused() {
        let (a, b) = handles();
        let (ca, cb) = (cpu_change(a, 60)?, cpu_change(b, 50)?);
        let mut over = ca;
        over.resources.cpu_pct = 101;
        let mut ram = ca;
        ram.resources.ram += 2 << 20;
        let unknown = Change { handle: 99, ..ca };
        let cases: [(&str, &[Change], Status, u64); 5] = [
            ("a at 101 %", &[over, cb], Status::InvalidParameter, 0),
            (
                "a 60 + b 50 = 110 %",
                &[ca, cb],
                Status::Inconsistent,
                u64::MAX,
            ),
            ("a named twice", &[ca, ca], Status::Inconsistent, 0),
            ("an unknown VM", &[cb, unknown], Status::NotFound, 1),
            ("a RAM change", &[ram], Status::NotSupported, 0),
        ];
        for (what, set, status, index) in cases {
            let (x0, x1) = mgmt::apply(set);
            check_eq!(
                (x0, x1),
                (st(status), index),
                "APPLY {what}: (status, index)"
            );
        }
        // Nothing changed.
        for h in [a, b] {
            check_eq!(
                query(h)?.resources.cpu_pct,
                50,
                "VM {h}'s percentage after the refusals"
            );
        }
        match mgmt::device_info() {
            Ok(d) => check_eq!(d.cpu_allocated_pct, 100),
            Err(x0) => fail!("DEVICE_INFO failed: x0={x0:#x}"),
        }
    }
);

test!(
    fn apply_at_known_moment() {
        let (a, b) = handles();
        let at_ms = guest_rt::cmdline().param_u64_or("apply_at_ms", DEFAULT_APPLY_AT_MS);
        let set = [cpu_change(a, 80)?, cpu_change(b, 20)?];
        let at = time::ms_to_ticks(at_ms, time::frequency());
        check!(
            time::now() < at,
            "already past {at_ms} ms: the earlier tests took too long"
        );
        while time::now() < at {
            guest_rt::hv::yield_now();
        }
        let (x0, x1) = mgmt::apply(&set);
        let when = elapsed_ns() / 1000;
        check_eq!((x0, x1), (st(Status::Success), 0), "APPLY a=80 b=20");
        guest_rt::println!("applied a=80 b=20 at {when} us");
        check_eq!(query(a)?.resources.cpu_pct, 80);
        check_eq!(query(b)?.resources.cpu_pct, 20);
    }
);

test!(
    fn outlast_the_spinners() {
        let until_ms = guest_rt::cmdline().param_u64_or("until_ms", DEFAULT_UNTIL_MS);
        let until = time::ms_to_ticks(until_ms, time::frequency());
        while time::now() < until {
            guest_rt::hv::yield_now();
        }
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
