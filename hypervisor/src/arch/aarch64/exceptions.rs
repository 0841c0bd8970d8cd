//! Rust side of the exception vectors: guest exits and hypervisor crashes.
//!
//! Owns: deciding, for each exit, whether the guest resumes, yields, or is stopped. Anything a
//! guest does that the hypervisor does not emulate stops that VM (with a `#HV vm-fault` record)
//! and never the hypervisor.

use super::vectors::{CrashFrame, GuestRegs, HvcExit};
use super::{gic, percpu};
use crate::hypercall::{self, Action};
use crate::vm::{StopReason, Vcpu};
use aarch64_cpu::registers::*;
use abi::Conduit;

/// Exception classes (ESR_EL2.EC, Arm ARM D19.2.42).
mod ec {
    pub const WFX: u64 = 0x01;
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
extern "C" fn handle_guest_hvc(regs: *mut GuestRegs) -> HvcExit {
    // SAFETY: `regs` is the loaded vCPU's register area; this CPU is its only user. Only x0..x7
    // are read and x0..x3 written.
    let x = unsafe { &mut (*regs).x };
    if hypercall::answer_constant_query(x) {
        return HvcExit { resume: regs, regs };
    }
    serve_hvc(regs)
}

#[inline(never)]
fn serve_hvc(regs: *mut GuestRegs) -> HvcExit {
    // SAFETY: as in `handle_guest_hvc`; `regs` is the first field of its `Vcpu` (both
    // `repr(C)`).
    let vcpu = unsafe { Vcpu::from_regs(regs) };
    let x = unsafe { &mut (*regs).x };
    match hypercall::handle(vcpu, x, Conduit::Hvc) {
        Action::Resume => HvcExit { resume: regs, regs },
        _ => HvcExit {
            resume: core::ptr::null_mut(),
            regs,
        },
    }
}

/// The end of a hypercall that yields or stops its caller, once its registers are complete.
#[no_mangle]
extern "C" fn handle_guest_hvc_reschedule() -> *mut GuestRegs {
    reschedule()
}

/// Every other synchronous exit, with all 31 registers saved.
#[no_mangle]
extern "C" fn handle_guest_sync(regs: *mut GuestRegs) -> *mut GuestRegs {
    let esr = ESR_EL2.get();
    // SAFETY: as for `handle_guest_hvc`; here all registers are saved.
    let vcpu = unsafe { Vcpu::from_regs(regs) };
    let x = unsafe { &mut (*regs).x };
    match other_sync_exit(vcpu, x, esr) {
        Action::Resume if vcpu.vm.is_running() => regs,
        _ => reschedule(),
    }
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
            Action::Yield
        }
        ec::SYS64 => {
            // Trapped system register accesses (debug, PMU of VMs without PMU access, ACTLR,
            // implementation defined, physical timer): read as zero, writes ignored.
            let rt = ((esr >> SYS64_RT_SHIFT) & 0x1f) as usize;
            if esr & SYS64_READ != 0 && rt != 31 {
                x[rt] = 0;
            }
            advance_pc(esr);
            Action::Resume
        }
        ec::DABT_LOWER => {
            let access = if esr & DABT_WNR != 0 { "write" } else { "read" };
            stop_for_fault(vcpu, esr, access, fault_ipa());
            Action::Reschedule
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

/// A physical interrupt while a guest ran. The only one enabled today is the preemption tick
/// (the vGIC and guest interrupts come with the Linux guest issue): it ends the time slice.
#[no_mangle]
extern "C" fn handle_guest_irq(regs: *mut GuestRegs) -> *mut GuestRegs {
    let intid = gic::acknowledge();
    if intid >= gic::SPURIOUS {
        return regs;
    }
    let tick = Some(intid) == super::preempt_intid();
    if tick {
        super::timer::arm_slice();
    }
    gic::end_of_interrupt(intid);
    if tick {
        reschedule()
    } else {
        log::warn!("unexpected interrupt {intid}");
        regs
    }
}

#[no_mangle]
extern "C" fn handle_guest_fiq(regs: *mut GuestRegs) -> *mut GuestRegs {
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
