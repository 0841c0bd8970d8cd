//! What guests may touch directly and what traps to EL2: HCR_EL2, CPTR_EL2, MDCR_EL2,
//! CNTHCTL_EL2 and VTCR_EL2, set once per CPU. Every bit is chosen deliberately; the comments
//! say why (Arm ARM D19.2, the EL2 register descriptions).

use crate::memory::pagetable::vtcr_value;
use aarch64_cpu::registers::*;
use core::sync::atomic::{AtomicU64, Ordering};

pub fn init_el2_controls() {
    HCR_EL2.write(
        // Stage-2 translation on: every guest access goes through its VM's tables.
        HCR_EL2::VM::Enable
            // Guests are AArch64 at EL1.
            + HCR_EL2::RW::EL1IsAarch64
            // Physical IRQs, FIQs and SErrors go to EL2 (and virtual ones to the guest), so a
            // guest can never mask the hypervisor's interrupts.
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::AMO::SET
            // Broadcast TLB and cache maintenance inner-shareable, so a vCPU that moves between
            // physical CPUs finds no stale entries.
            + HCR_EL2::FB::SET
            + HCR_EL2::BSU::InnerShareable
            // Set/way invalidation by a guest is upgraded to clean+invalidate: a guest cannot
            // discard dirty lines that belong to another VM.
            + HCR_EL2::SWIO::SET
            // WFI and WFE trap: a waiting vCPU gives its physical CPU to another.
            + HCR_EL2::TWI::SET
            + HCR_EL2::TWE::SET
            // SMC traps: PSCI is emulated per VM; guests never reach the firmware.
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            // ACTLR_EL1 is implementation defined and may change the CPU for everyone: trap it.
            + HCR_EL2::TACR::SET
            // Implementation-defined system registers likewise.
            + HCR_EL2::TIDCP::SET
            // ID registers trap, so that guests are not told about features whose state is
            // not switched between VMs (see idregs.rs).
            + HCR_EL2::TID3::SET,
    );
    // API and APK left clear: pointer authentication instructions and key registers trap
    // while the keys in the registers are not the loaded vCPU's (`set_pauth_trap`); the keys
    // are switched lazily (context.rs), so each guest has its own.
    // CPTR_EL2 (non-VHE): FP/SIMD trapped (TFP = 1) until a vCPU is loaded; then only while
    // the FP registers hold another vCPU's state (`set_fp_trap`, lazy switching in
    // context.rs). SVE (TZ), SME (TSM), trace (TTA) and activity monitors (TAM) are always
    // trapped: their state is not switched, so no guest may use them. Bits 13:12 and 9 are
    // RES1.
    set_fp_trap(true);
    // The EL1 physical timer belongs to the hypervisor: EL1 may read the physical counter
    // (EL1PCTEN) but not program the physical timer (EL1PCEN = 0).
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR);
    VTCR_EL2.set(vtcr_value(super::mmu::pa_range_bits()));
    // Guests see the real CPU model.
    // SAFETY: VPIDR_EL2 only changes what EL1 reads as MIDR_EL1.
    unsafe {
        core::arch::asm!("msr vpidr_el2, {}", in(reg) MIDR_EL1.get(), options(nomem, nostack))
    };
    init_mdcr_values();
    set_pmu_access(false);
}

/// HCR_EL2.API (bit 41) and HCR_EL2.APK (bit 40): set, the PAC instructions and the key
/// registers do not trap.
const HCR_API_APK: u64 = (1 << 41) | (1 << 40);

/// Whether the pointer authentication instructions and key registers trap to EL2 at EL0 and
/// EL1 (HCR_EL2.API and APK clear). Only on CPUs with pointer authentication (the bits are RES0
/// otherwise). Takes effect at the next context synchronisation event.
#[inline]
pub fn set_pauth_trap(trap: bool) {
    let hcr = HCR_EL2.get() & !HCR_API_APK;
    HCR_EL2.set(hcr | if trap { 0 } else { HCR_API_APK });
}

/// Bits 13, 12 and 9: RES1 (bit 12 is TSM when SME is implemented; set, it traps SME).
const CPTR_RES1: u64 = (0b11 << 12) | (1 << 9);
const CPTR_TZ: u64 = 1 << 8;
const CPTR_TFP: u64 = 1 << 10;
const CPTR_TTA: u64 = 1 << 20;
const CPTR_TAM: u64 = 1 << 30;
const CPTR_ALWAYS: u64 = CPTR_RES1 | CPTR_TZ | CPTR_TTA | CPTR_TAM;

/// Whether FP/SIMD instructions trap to EL2 (CPTR_EL2.TFP): at EL0 and EL1, and at EL2 too,
/// which the hypervisor (built soft-float) only reaches in `context::FpRegs`, after clearing
/// it. Takes effect at the next context synchronisation event (the `eret` into the guest, or
/// an `isb`).
#[inline]
pub fn set_fp_trap(trap: bool) {
    let tfp = if trap { CPTR_TFP } else { 0 };
    CPTR_EL2.set(CPTR_ALWAYS | tfp);
}

/// MDCR_EL2: debug registers always trap (TDA, TDOSA, TDRA) since their state is not
/// switched. The PMU traps (TPM, TPMCR) unless the VM was given the PMU (benchmarks), in which
/// case all counters are the guest's (HPMN = PMCR_EL0.N) and counting at EL2 is allowed
/// (HPMD = 0) so that the hypervisor's cost can be measured from the guest.
#[inline]
pub fn set_pmu_access(allowed: bool) {
    MDCR_EL2.set(MDCR_VALUES[allowed as usize].load(Ordering::Relaxed));
}

/// MDCR_EL2 with the PMU trapped (index 0) and with PMU access (index 1, `set_pmu_access`),
/// computed by `init_mdcr_values` rather than on every vCPU load (PMCR_EL0.N is a read of a
/// system register).
static MDCR_VALUES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Computes `MDCR_VALUES` from this CPU (the CPUs are taken to be alike).
fn init_mdcr_values() {
    let counters = (PMCR_N.read() >> 11) & 0x1f;
    let traps = MDCR_EL2::TDA::SET + MDCR_EL2::TDOSA::SET + MDCR_EL2::TDRA::SET;
    let allowed = traps + MDCR_EL2::HPMN.val(counters);
    let trapped = allowed + MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET;
    MDCR_VALUES[1].store(allowed.value, Ordering::Relaxed);
    MDCR_VALUES[0].store(trapped.value, Ordering::Relaxed);
}

/// PMCR_EL0, read for its N field (bits 15:11, the number of event counters).
struct PmcrN;
const PMCR_N: PmcrN = PmcrN;

impl PmcrN {
    fn read(&self) -> u64 {
        let v: u64;
        // SAFETY: reading PMCR_EL0 at EL2 has no side effect.
        unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) v, options(nomem, nostack)) };
        v
    }
}
