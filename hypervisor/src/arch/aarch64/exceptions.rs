//! Rust side of the exception vectors: guest exits and hypervisor crashes.
//!
//! Owns: deciding, for each exit, whether the guest resumes, yields, or is stopped. Anything a
//! guest does that the hypervisor does not emulate stops that VM (with a `#HV vm-fault` record)
//! and never the hypervisor.

use super::vectors::{CrashFrame, GuestRegs, PartialExit};
use super::{gic, percpu};
use crate::hypercall::{self, Action};
use crate::sched::TurnEnd;
use crate::vm::platform::{self, MmioOutcome};
use crate::vm::{StopReason, Vcpu};
use aarch64_cpu::registers::*;
use abi::Conduit;

/// Exception classes (ESR_EL2.EC, Arm ARM D19.2.42).
mod ec {
    pub const WFX: u64 = 0x01;
    /// FP/SIMD access trapped by CPTR_EL2.TFP.
    pub const FP: u64 = 0x07;
    /// Pointer authentication instruction trapped by HCR_EL2.API.
    pub const PAC: u64 = 0x09;
    pub const SMC64: u64 = 0x17;
    pub const SYS64: u64 = 0x18;
    pub const SVE: u64 = 0x19;
    pub const IABT_LOWER: u64 = 0x20;
    pub const DABT_LOWER: u64 = 0x24;
}

/// ESR_EL2.IL: the trapped instruction was 32 bits long.
const ESR_IL: u64 = 1 << 25;
/// Data abort ISS.WnR: the access was a write.
const DABT_WNR: u64 = 1 << 6;
/// SYS64 ISS: direction (1 = read, MRS) and Rt (bits 9:5).
const SYS64_READ: u64 = 1;
const SYS64_RT_SHIFT: u64 = 5;

fn advance_pc(esr: u64) {
    let len = if esr & ESR_IL != 0 { 4 } else { 2 };
    ELR_EL2.set(ELR_EL2.get() + len);
}

#[cold]
fn current_vcpu() -> &'static Vcpu {
    // SAFETY: we are on this CPU's exit path; nothing else borrows its scheduler state.
    let sched = unsafe { percpu::current().sched() };
    sched
        .current()
        .expect("a guest exit always comes from the loaded vCPU")
}

#[inline(never)]
fn reschedule() -> *mut GuestRegs {
    // SAFETY: as in `current_vcpu`.
    unsafe { percpu::current().sched() }.run_next()
}

/// The guest's intermediate physical address of the faulting access: HPFAR_EL2.FIPA gives
/// bits 47:12, FAR_EL2 the offset within the page (Arm ARM D19.2.51).
fn fault_ipa() -> u64 {
    ((HPFAR_EL2.get() >> 4) << 12) | (FAR_EL2.get() & 0xfff)
}

fn stop_for_fault(vcpu: &Vcpu, esr: u64, access: &str, ipa: u64) {
    let vm = vcpu.vm;
    crate::hv_record!(
        "vm-fault id={} name={} vcpu={} ipa={:#x} access={} esr={:#x} elr={:#x}",
        vm.id,
        vm.name,
        vcpu.index,
        ipa,
        access,
        esr,
        ELR_EL2.get()
    );
    vm.stop(StopReason::Fault);
}

/// A hypercall (HVC64), the hot path (docs/benchmarks.md). Only x0..x18 and x30 of the caller
/// are saved in `regs`; its x19..x29 are live and must stay untouched until the assembly
/// stores them (when this returns no `resume`). A call that resumes its caller does not
/// re-check whether another vCPU stopped the VM meanwhile: the preemption tick does, within
/// one time slice.
#[no_mangle]
extern "C" fn handle_guest_hvc(regs: *mut GuestRegs) -> PartialExit {
    // SAFETY: `regs` is the loaded vCPU's register area; this CPU is its only user. Only x0..x7
    // are read and x0..x3 written.
    let x = unsafe { &mut (*regs).x };
    if hypercall::answer_constant_query(x) {
        return resume(regs);
    }
    // The call that ends in a vCPU switch, before the general decoder (which serves it the
    // same way): every instruction here is one of `vcpu_switch_el2_insns`.
    if hypercall::answer_yield(x) {
        // SAFETY: as in `current_vcpu`.
        unsafe { percpu::current().sched() }.end_turn(TurnEnd::Yield);
        return end_turn(regs);
    }
    serve_hvc(regs)
}

#[inline(never)]
fn serve_hvc(regs: *mut GuestRegs) -> PartialExit {
    // SAFETY: as in `handle_guest_hvc`; `regs` is the first field of its `Vcpu` (both
    // `repr(C)`).
    let vcpu = unsafe { Vcpu::from_regs(regs) };
    let x = unsafe { &mut (*regs).x };
    match hypercall::handle(vcpu, x, Conduit::Hvc) {
        Action::Resume => resume(regs),
        _ => end_turn(regs),
    }
}

/// The end of a partial exit (a hypercall, an interrupt) that ends its vCPU's turn, once its
/// registers are complete. (An interrupt exit has synced the list registers already; syncing
/// again before the guest ran changes nothing.)
#[no_mangle]
extern "C" fn handle_guest_reschedule() -> *mut GuestRegs {
    // SAFETY: as in `current_vcpu`.
    let sched = unsafe { percpu::current().sched() };
    if let Some(vcpu) = sched.current() {
        platform::sync_list_registers(vcpu);
    }
    sched.run_next()
}

/// A partial exit that resumes its vCPU.
fn resume(regs: *mut GuestRegs) -> PartialExit {
    PartialExit { resume: regs, regs }
}

/// A partial exit that ends its vCPU's turn (`handle_guest_reschedule` follows).
fn end_turn(regs: *mut GuestRegs) -> PartialExit {
    PartialExit {
        resume: core::ptr::null_mut(),
        regs,
    }
}

/// Every other synchronous exit, with all 31 registers saved.
#[no_mangle]
extern "C" fn handle_guest_sync(regs: *mut GuestRegs) -> *mut GuestRegs {
    let esr = ESR_EL2.get();
    // SAFETY: as for `handle_guest_hvc`; here all registers are saved.
    let vcpu = unsafe { Vcpu::from_regs(regs) };
    let x = unsafe { &mut (*regs).x };
    platform::sync_list_registers(vcpu);
    match other_sync_exit(vcpu, x, esr) {
        Action::Resume if vcpu.vm.is_running() => {
            platform::fill_list_registers(vcpu);
            regs
        }
        _ => reschedule(),
    }
}

/// ICC_SGI1R_EL1 as a trapped system register (op0 3, op1 0, CRn 12, CRm 11, op2 5): a guest
/// sending an SGI, trapped because HCR_EL2.IMO is set (IHI 0069 §12.1.9).
const SYSREG_ICC_SGI1R: (u64, u64, u64, u64, u64) = (3, 0, 12, 11, 5);

/// Whether a trapped system register is a pointer authentication key: APIAKeyLo_EL1 ..
/// APGAKeyHi_EL1 are (op0 3, op1 0, CRn 2, CRm 1..3).
fn is_pauth_key(sysreg: (u64, u64, u64, u64, u64)) -> bool {
    let (op0, op1, crn, crm, _) = sysreg;
    op0 == 3 && op1 == 0 && crn == 2 && (1..=3).contains(&crm)
}

/// The system register named by a SYS64 trap's ISS (Arm ARM D19.2.42): (op0, op1, CRn, CRm,
/// op2).
fn trapped_sysreg(esr: u64) -> (u64, u64, u64, u64, u64) {
    (
        (esr >> 20) & 3,
        (esr >> 14) & 7,
        (esr >> 10) & 0xf,
        (esr >> 1) & 0xf,
        (esr >> 17) & 7,
    )
}

fn other_sync_exit(vcpu: &Vcpu, x: &mut [u64; 31], esr: u64) -> Action {
    match esr >> 26 {
        ec::SMC64 => {
            // A trapped SMC returns to the SMC itself (Arm ARM D1.10.3): step over it.
            advance_pc(esr);
            hypercall::handle(vcpu, x, Conduit::Smc)
        }
        ec::WFX => {
            advance_pc(esr);
            // ISS bit 0 (TI): 0 for WFI, which waits for an interrupt (the vCPU blocks until
            // one is due); WFE only yields.
            let why = if esr & 1 == 0 {
                TurnEnd::Wfi
            } else {
                TurnEnd::Yield
            };
            // SAFETY: as in `current_vcpu`.
            unsafe { percpu::current().sched() }.end_turn(why);
            Action::Yield
        }
        ec::FP => {
            // The registers hold another vCPU's FP/SIMD state: switch, then retry.
            // SAFETY: `vcpu` is the vCPU loaded on this CPU.
            unsafe { super::context::switch_fp(vcpu) };
            Action::Resume
        }
        ec::PAC => {
            // The registers hold another vCPU's keys: switch, then retry.
            // SAFETY: `vcpu` is the vCPU loaded on this CPU.
            unsafe { super::context::switch_pauth(vcpu) };
            Action::Resume
        }
        ec::SYS64 if is_pauth_key(trapped_sysreg(esr)) => {
            // A key register, trapped by HCR_EL2.APK likewise: switch, then retry.
            // SAFETY: as above.
            unsafe { super::context::switch_pauth(vcpu) };
            Action::Resume
        }
        ec::SYS64 => {
            let rt = ((esr >> SYS64_RT_SHIFT) & 0x1f) as usize;
            let read = esr & SYS64_READ != 0;
            let sysreg = trapped_sysreg(esr);
            match (sysreg, vcpu.vm.platform.as_ref()) {
                (reg, _) if super::idregs::is_id_register(reg) => {
                    if read && rt != 31 {
                        x[rt] = super::idregs::guest_value(reg.3, reg.4, vcpu.vm.pmu);
                    }
                }
                (SYSREG_ICC_SGI1R, Some(p)) if !read => {
                    let value = if rt == 31 { 0 } else { x[rt] };
                    let effects = p.vgic().send_sgi(vcpu.index, value);
                    platform::kick(vcpu.vm, effects);
                }
                // Other trapped system registers (debug, PMU of VMs without PMU access, ACTLR,
                // implementation defined, physical timer): read as zero, writes ignored.
                _ => {
                    if read && rt != 31 {
                        x[rt] = 0;
                    }
                }
            }
            advance_pc(esr);
            Action::Resume
        }
        ec::DABT_LOWER => {
            let ipa = fault_ipa();
            match platform::emulate_mmio(vcpu, x, esr, ipa) {
                MmioOutcome::Done => {
                    advance_pc(esr);
                    Action::Resume
                }
                MmioOutcome::Unemulable(why) => {
                    log::warn!("VM {}: {why} at {ipa:#x}", vcpu.vm.name);
                    stop_for_fault(vcpu, esr, "device", ipa);
                    Action::Reschedule
                }
                MmioOutcome::NotADevice => {
                    let access = if esr & DABT_WNR != 0 { "write" } else { "read" };
                    stop_for_fault(vcpu, esr, access, ipa);
                    Action::Reschedule
                }
            }
        }
        ec::IABT_LOWER => {
            stop_for_fault(vcpu, esr, "exec", fault_ipa());
            Action::Reschedule
        }
        ec::SVE => {
            log::warn!("VM {}: SVE is not supported for guests", vcpu.vm.name);
            stop_for_fault(vcpu, esr, "sve", 0);
            Action::Reschedule
        }
        _ => {
            stop_for_fault(vcpu, esr, "unhandled", FAR_EL2.get());
            Action::Reschedule
        }
    }
}

/// A physical interrupt while a guest ran: the preemption tick (ends the time slice), the
/// guest's virtual timer (handed to it), a kick from another CPU or a vGIC maintenance
/// interrupt (both only mean: bring the list registers up to date). A partial exit, as for a
/// hypercall: only x0..x18 and x30 are in `regs`.
#[no_mangle]
extern "C" fn handle_guest_irq(regs: *mut GuestRegs) -> PartialExit {
    // SAFETY: `regs` is the loaded vCPU's register area, the first field of its `Vcpu`; this
    // CPU is its only user. x19..x29 are not there yet, and not read.
    let vcpu = unsafe { Vcpu::from_regs(regs) };
    let intid = gic::acknowledge();
    if intid >= gic::SPURIOUS {
        return resume(regs);
    }
    if intid == platform::VTIMER_INTID {
        // Left active: the guest's deactivation of its virtual PPI 27 (hardware-linked)
        // deactivates it, so it cannot fire again before the guest has handled it.
        gic::priority_drop(intid);
        // Syncs and fills the list registers itself (the short path of docs/benchmarks.md).
        if !platform::virtual_timer_fired(vcpu) {
            super::mask_virtual_timer();
            gic::deactivate(intid);
        }
        // As for a hypercall that resumes its caller, whether another vCPU stopped the VM
        // meanwhile is left to the preemption tick, within one time slice.
        return resume(regs);
    }
    platform::sync_list_registers(vcpu);
    let mut tick = false;
    match intid {
        super::KICK_SGI => {
            gic::end_of_interrupt(intid);
            super::serve_flush_request();
            tick = percpu::current().take_resched();
        }
        super::MAINTENANCE_INTID => gic::end_of_interrupt(intid),
        _ if Some(intid) == super::console_intid() => {
            super::console::handle_input();
            gic::end_of_interrupt(intid);
        }
        _ if Some(intid) == super::preempt_intid() => {
            // The scheduler's deadline: the turn ends, and the next decision re-arms it.
            super::timer::disarm();
            gic::end_of_interrupt(intid);
            tick = true;
        }
        _ => {
            gic::end_of_interrupt(intid);
            log::warn!("unexpected interrupt {intid}");
        }
    }
    if tick || !vcpu.vm.is_running() {
        return end_turn(regs);
    }
    platform::fill_list_registers(vcpu);
    resume(regs)
}

#[no_mangle]
extern "C" fn handle_guest_fiq(regs: *mut GuestRegs) -> PartialExit {
    handle_guest_irq(regs)
}

#[no_mangle]
extern "C" fn handle_guest_serror(_regs: *mut GuestRegs) -> *mut GuestRegs {
    let vcpu = current_vcpu();
    stop_for_fault(vcpu, ESR_EL2.get(), "serror", 0);
    reschedule()
}

const VECTOR_NAMES: [&str; 8] = [
    "SP0 sync",
    "SP0 IRQ",
    "SP0 FIQ",
    "SP0 SError",
    "EL2 sync",
    "EL2 IRQ",
    "EL2 FIQ",
    "EL2 SError",
];

/// An exception taken from the hypervisor itself: print everything useful, then halt this CPU.
#[no_mangle]
extern "C" fn hyp_crash(frame: &CrashFrame, kind: u64) -> ! {
    let name = VECTOR_NAMES.get(kind as usize).copied().unwrap_or("?");
    let cpu = MPIDR_EL1.get() & 0xff_00ff_ffff;
    super::console::emergency(format_args!(
        "\n#HV panic unexpected exception in the hypervisor: {name} on CPU {cpu:#x}\n\
         ESR_EL2={:#018x} (EC {:#x}) FAR_EL2={:#018x}\nELR_EL2={:#018x} SPSR_EL2={:#018x} SP={:#018x}\n",
        frame.esr,
        frame.esr >> 26,
        frame.far,
        frame.elr,
        frame.spsr,
        frame.sp
    ));
    for (i, pair) in frame.x.chunks(2).enumerate() {
        match pair {
            [a, b] => super::console::emergency(format_args!(
                "x{:<2}={a:#018x} x{:<2}={b:#018x}\n",
                2 * i,
                2 * i + 1
            )),
            [a] => super::console::emergency(format_args!("x{:<2}={a:#018x}\n", 2 * i)),
            _ => {}
        }
    }
    super::halt()
}
