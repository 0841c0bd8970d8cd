//! `idler`: a VM that idles in WFI between virtual timer interrupts, as an idle Linux does
//! (docs/scheduler.md, "Waiting in WFI"). Must be a `PLATFORM` VM (virtual GICv3, virtual
//! timer as PPI 27): the hypervisor then blocks its vCPU on WFI until an interrupt is due,
//! instead of letting it spin through its budget.
//!
//! Set-up as `bench_virq` (`guests::gicv3`, `guests::irq`). Then `ticks` times: arm the
//! virtual timer for the next multiple of `period_ms` from the start (CNTV_CVAL_EL0, so that
//! lateness does not accumulate), and wait in WFI until the interrupt has been taken. Each
//! interrupt's *lateness* is the virtual counter when the wait ends minus the CVAL it was
//! armed for: the time from the timer condition to the guest running its interrupt handler,
//! which is what the scheduler adds (waking the vCPU at its deadline, possibly behind another
//! VM). The test fails if an interrupt came before its CVAL, or any lateness exceeds one
//! scheduling period (10 ms), and prints the largest and the mean.
//!
//! The wait masks IRQs around the check-then-WFI (`msr daifset` ... `wfi` ... `msr daifclr`): a
//! pending interrupt wakes WFI even when masked, and is taken at the unmask, so an interrupt
//! arriving between the check and the WFI is never missed.
//!
//! How little CPU it uses is judged by the runner from the hypervisor's records (the
//! `sched_idle_wfi` suite). Bootargs: `period_ms=<n>` (default 10), `ticks=<n>` (default 100).
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::{check, check_eq, fail, test, time};
use guests::{gicv3, irq};

guest_rt::test_main!();

const DEFAULT_PERIOD_MS: u64 = 10;
const DEFAULT_TICKS: u64 = 100;
/// The scheduling period of the board (boards::QEMU_VIRT.sched_period_us): the bound on
/// lateness the issue sets ("on time, ±1 period").
const SCHED_PERIOD_MS: u64 = 10;

#[cfg(target_os = "none")]
fn wait_for_interrupt_after(seen: u64) {
    loop {
        // SAFETY: masking IRQs and WFI only affect this vCPU's control flow; the interrupt
        // that ends the WFI is taken by the installed vector once unmasked.
        unsafe { core::arch::asm!("msr daifset, #2", "isb", options(nostack)) };
        if irq::irq_count() != seen {
            irq::unmask();
            return;
        }
        // SAFETY: as above.
        unsafe { core::arch::asm!("wfi", options(nostack)) };
        irq::unmask();
    }
}

#[cfg(not(target_os = "none"))]
fn wait_for_interrupt_after(_: u64) {}

test!(
    fn timer_on_time() {
        let period_ms = guest_rt::cmdline().param_u64_or("period_ms", DEFAULT_PERIOD_MS);
        let ticks = guest_rt::cmdline().param_u64_or("ticks", DEFAULT_TICKS);
        let freq = time::frequency();
        let period = time::ms_to_ticks(period_ms.max(1), freq);
        let bound = time::ms_to_ticks(SCHED_PERIOD_MS, freq);

        if let Err(e) = gicv3::init_for_ppi(guest_rt::arch::vcpu_index(), gicv3::VTIMER_INTID) {
            fail!("GIC set-up failed: {e:?} (is this a PLATFORM VM?)");
        }
        let old_vbar = irq::install();
        irq::unmask();

        let start = irq::virtual_count();
        let (mut max_late, mut total_late, mut early) = (0u64, 0u64, 0u64);
        for i in 1..=ticks {
            let cval = start + i * period;
            let seen = irq::irq_count();
            irq::arm_virtual_timer(cval);
            wait_for_interrupt_after(seen);
            let now = irq::virtual_count();
            if now < cval {
                early += 1;
            }
            let late = now.saturating_sub(cval);
            max_late = max_late.max(late);
            total_late += late;
        }

        irq::mask();
        irq::disable_virtual_timer();
        irq::restore(old_vbar);
        let r = irq::record();
        let us = |t: u64| t * 1_000_000 / freq;
        guest_rt::println!(
            "idler: {ticks} interrupts every {period_ms} ms, lateness max {} us, mean {} us",
            us(max_late),
            us(total_late / ticks.max(1))
        );
        check_eq!(r.count, ticks, "interrupts taken");
        check!(
            r.intid & 0xff_ffff == u64::from(gicv3::VTIMER_INTID),
            "the last interrupt was INTID {}, not the virtual timer's PPI 27",
            r.intid & 0xff_ffff
        );
        check_eq!(early, 0, "interrupts taken before their CVAL");
        check!(
            max_late <= bound,
            "an interrupt came {} us late, more than one period ({SCHED_PERIOD_MS} ms)",
            us(max_late)
        );
    }
);

#[cfg(not(target_os = "none"))]
fn main() {}
