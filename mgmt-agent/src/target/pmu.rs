//! For the management benchmarks (docs/benchmarks.md): when the hypervisor gave this VM the
//! PMU, event counter 0 counts the instructions retired at EL2, which the hypervisor reads
//! around each management call (`#HV vm-create ... el2_insns=`). Without the PMU the
//! registers trap and read as zero: nothing is set up.

/// PMEVTYPER0_EL0: P and U set (not EL1, not EL0), NSH set (EL2), event 0x08 INST_RETIRED.
const EL2_ONLY_INST_RETIRED: u64 = (1 << 31) | (1 << 30) | (1 << 27) | 0x08;
const PMCR_E: u64 = 1;
const PMCR_N_SHIFT: u64 = 11;

pub fn setup() {
    let pmcr: u64;
    // SAFETY: reading PMCR_EL0 has no side effect (it reads as zero when trapped).
    unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack)) };
    if (pmcr >> PMCR_N_SHIFT) & 0x1f == 0 {
        return;
    }
    // SAFETY: programs counter 0 of this VM's PMU, which no other code of the agent uses.
    unsafe {
        core::arch::asm!(
            "msr pmevtyper0_el0, {t}",
            "msr pmcntenset_el0, {one}",
            "msr pmcr_el0, {c}",
            "isb",
            t = in(reg) EL2_ONLY_INST_RETIRED,
            one = in(reg) 1u64,
            c = in(reg) pmcr | PMCR_E,
            options(nostack)
        )
    };
}
