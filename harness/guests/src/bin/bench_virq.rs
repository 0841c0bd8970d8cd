//! `bench_virq`: what the hypervisor executes to deliver one virtual timer interrupt, in EL2
//! instructions, counted with the PMU the hypervisor lets this VM use (`bench_hvc` explains
//! the counters). The VM must be a `PLATFORM` VM (virtual GICv3, virtual timer as PPI 27).
//!
//! Set-up, as Linux does it: the distributor (ARE, Group 1 enabled), this vCPU's
//! redistributor (woken), PPI 27 in Group 1 at priority 0xa0 and enabled, the CPU interface
//! (ICC_SRE_EL1.SRE, ICC_PMR_EL1 = 0xff, EOImode 0, ICC_IGRPEN1_EL1 = 1), an IRQ vector
//! (`guests::irq`), IRQs unmasked.
//!
//! Then `samples` times: read the EL2-only counter, arm the virtual timer a few counter ticks
//! ahead (CNTV_CVAL_EL0 = now + `delta_ticks`, CNTV_CTL_EL0 = ENABLE) and spin, without any
//! hypercall, until the IRQ entry has run. The entry reads the EL2-only counter first thing,
//! acknowledges, disables the timer and EOIs (`guests::irq`). One sample = the counter at the
//! IRQ entry − the counter before arming: every EL2 instruction from the physical timer
//! interrupt's exit to the `eret` into the guest's IRQ vector. The guest's EOI deactivates the
//! hardware-linked interrupt without a trap, so nothing after the entry belongs to the
//! interrupt. A preemption tick (every 10 ms = 10^7 instructions under `-icount shift=0`) that
//! lands inside a sample's window of a few hundred instructions inflates that sample: the
//! median ignores it.
//!
//! Reports `#HT metric virq_inject_el2_insns=<median>` and `virq_inject_el2_insns_min=<min>`.
//! Bootargs: `samples=<n>` (default 1000, at most [`MAX_SAMPLES`]), `delta_ticks=<n>`
//! (default 2).
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::{check, check_eq, fail, metric, test};
use guests::{gicv3, irq, pmu, stats};

guest_rt::test_main!();

const DEFAULT_SAMPLES: u64 = 1000;
const MAX_SAMPLES: usize = 4096;
const DEFAULT_DELTA_TICKS: u64 = 2;
/// Interrupts that precede the measured ones: the first delivery may take a colder path
/// (first use of the list register, of the vGIC's private interrupt state).
const WARM_UP: u64 = 8;
/// How long one interrupt may take to arrive before the test gives up, in counter ticks at
/// most (the delivery takes some hundreds of instructions; 10 ms is generous).
const ARRIVAL_TIMEOUT_MS: u64 = 10;

static mut SAMPLES: [u64; MAX_SAMPLES] = [0; MAX_SAMPLES];

/// One timer interrupt: the EL2 instructions from before arming to the IRQ entry, or the
/// failure message.
fn one_interrupt(delta_ticks: u64, timeout_ticks: u64) -> Result<u64, &'static str> {
    let seen = irq::irq_count();
    let start = pmu::el2_count();
    let now = irq::virtual_count();
    irq::arm_virtual_timer(now + delta_ticks);
    let deadline = now + timeout_ticks;
    while irq::irq_count() == seen {
        if irq::virtual_count() > deadline && irq::irq_count() == seen {
            irq::disable_virtual_timer();
            return Err("the virtual timer interrupt did not arrive within 10 ms");
        }
    }
    let r = irq::record();
    if r.intid & 0xff_ffff != u64::from(gicv3::VTIMER_INTID) {
        return Err("the IRQ acknowledged was not PPI 27");
    }
    Ok(pmu::el2_since(r.el2_at_entry, start))
}

test!(
    fn virtual_timer_interrupt_cost() {
        let available = pmu::counters_available();
        check!(
            available >= pmu::COUNTERS_NEEDED,
            "PMCR_EL0.N = {available}: the VM needs {} event counters",
            pmu::COUNTERS_NEEDED
        );
        let samples = (guest_rt::cmdline().param_u64_or("samples", DEFAULT_SAMPLES) as usize)
            .clamp(1, MAX_SAMPLES);
        let delta = guest_rt::cmdline().param_u64_or("delta_ticks", DEFAULT_DELTA_TICKS);
        let timeout = guest_rt::time::ms_to_ticks(ARRIVAL_TIMEOUT_MS, guest_rt::time::frequency());

        if let Err(e) = gicv3::init_for_ppi(guest_rt::arch::vcpu_index(), gicv3::VTIMER_INTID) {
            fail!("GIC set-up failed: {e:?} (is this a PLATFORM VM?)");
        }
        pmu::start();
        let old_vbar = irq::install();
        irq::unmask();

        // SAFETY: only this function, on the only vCPU, uses SAMPLES.
        let out = unsafe { &mut *core::ptr::addr_of_mut!(SAMPLES) };
        let mut result = Ok(());
        for i in 0..WARM_UP + samples as u64 {
            match one_interrupt(delta, timeout) {
                Ok(n) if i >= WARM_UP => out[(i - WARM_UP) as usize] = n,
                Ok(_) => {}
                Err(e) => {
                    result = Err((i, e));
                    break;
                }
            }
        }

        irq::mask();
        irq::disable_virtual_timer();
        irq::restore(old_vbar);
        let taken = irq::record().count;
        if let Err((i, e)) = result {
            fail!("interrupt {i}: {e} ({taken} taken)");
        }
        check_eq!(taken, WARM_UP + samples as u64, "interrupts taken");

        let (min, median) = stats::min_median(&mut out[..samples]).unwrap();
        metric("virq_inject_el2_insns", median);
        metric("virq_inject_el2_insns_min", min);
        guest_rt::println!(
            "virq: {samples} samples, min {min}, median {median}, max {}, {} not equal to the median",
            out[samples - 1],
            stats::count_other_than(&out[..samples], median)
        );
        check!(
            min > 0,
            "no EL2 instruction counted: is EL2 counting allowed (MDCR_EL2.HPMD)?"
        );
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
