//! The aarch64 seam: boot, exception vectors, EL2 registers, and the per-vCPU hardware state.
//!
//! Owns: everything that needs `mrs`/`msr`, assembly or the MMU. Generic code reaches the
//! hardware only through the functions of this module.

pub mod console;
pub mod context;
pub mod copy;
pub mod exceptions;
pub mod firmware;
pub mod gic;
pub mod head;
pub mod idregs;
pub mod mmu;
pub mod percpu;
pub mod pl011;
pub mod pmu;
pub mod timer;
pub mod traps;
pub mod vcpu_if;
pub mod vectors;

pub use copy::copy_bytes;

use crate::dt::hwinfo::HwInfo;
use crate::vm::Vcpu;
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Physical CPUs brought up, in device-tree order; CPU 0 is the boot CPU.
static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(0);
static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);

const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: buddy_system_allocator::LockedHeap<32> = buddy_system_allocator::LockedHeap::empty();

/// Entered from `head` at EL1 or EL3: nothing can be done safely, say so and stop.
#[no_mangle]
extern "C" fn wrong_exception_level(el: u64, _dtb: u64) -> ! {
    console::emergency(format_args!(
        "\nhypervisor: entered at EL{el}, but it must be started at EL2 (with QEMU, use \
         -machine virtualization=on; on a board, have the firmware enter the image at EL2). \
         Halting.\n"
    ));
    halt()
}

/// The boot CPU, from `head`, at EL2 with the MMU off and .bss zeroed.
#[no_mangle]
extern "C" fn primary_main(dtb: u64) -> ! {
    // The device-tree parser allocates, so the heap comes first. Its lock runs with the MMU off
    // here (exclusives on non-cacheable memory work on QEMU; boards must revisit this order).
    // SAFETY: the heap space is a static used by nothing else, handed over once.
    unsafe {
        HEAP.lock()
            .init(core::ptr::addr_of_mut!(HEAP_SPACE) as usize, HEAP_SIZE);
    }
    // SAFETY: the boot protocol passes the device tree's address in x0; `from_ptr` reads its
    // header first and never beyond the size it declares.
    let (hw, dtb_size) = match unsafe { HwInfo::from_ptr(dtb as *const u8) } {
        Ok(v) => v,
        Err(e) => {
            console::emergency(format_args!(
                "\nhypervisor: cannot read the device tree at {dtb:#x}: {e:?}. Halting.\n"
            ));
            halt()
        }
    };
    let cpus = hw.cpus.len().clamp(1, percpu::MAX_CPUS);
    CPU_COUNT.store(cpus, Ordering::Release);
    if let Err(e) = mmu::build_el2_map(&hw, cpus) {
        console::emergency(format_args!(
            "\nhypervisor: cannot build the EL2 map: {e:?}. Halting.\n"
        ));
        halt()
    }
    mmu::enable();
    let uart = hw.uart.map_or(boards::BOARD.fallback_uart, |u| u.base.base);
    console::init(uart);
    log::info!(
        "hypervisor {} on {} ({} CPUs)",
        env!("CARGO_PKG_VERSION"),
        hw.model,
        cpus
    );

    crate::boot::init_memory(&hw, dtb, dtb_size as u64, head::image_layout());
    context::init();
    traps::init_el2_controls();
    let mpidr = MPIDR_EL1.get() & MPIDR_AFFINITY;
    percpu::install(0, mpidr, stack_top(0));
    match (hw.gic, hw.timer) {
        (Some(gic), Some(timer)) => {
            gic::init(gic);
            vcpu_if::init(gic.version, gic.hyp_interface);
            HOST_GIC.call_once(|| gic);
            timer::init(boards::BOARD.sched_period_us);
            PREEMPT_INTID.call_once(|| timer.hyp_phys);
        }
        _ => log::warn!("no GIC or timer in the device tree: vCPUs are not preempted"),
    }
    init_cpu_interrupts(mpidr);
    if let (Some(uart), Some(_)) = (hw.uart, PREEMPT_INTID.get()) {
        if let Some(intid) = uart.irq {
            CONSOLE_INTID.call_once(|| intid);
            console::enable_input(intid, mpidr);
        }
    }
    CPUS_ONLINE.store(1, Ordering::Release);
    crate::boot::create_vms(&hw, cpus);

    for (index, &mpidr) in hw.cpus.iter().enumerate().take(cpus).skip(1) {
        if let Err(e) = firmware::cpu_on(
            mpidr,
            head::secondary_entry as *const () as u64,
            index as u64,
        ) {
            log::error!("CPU {index} (MPIDR {mpidr:#x}) did not start: {e:?}");
        }
    }
    run()
}

/// A secondary CPU, from `head`, with its stack set and the MMU off.
#[no_mangle]
extern "C" fn secondary_main(index: u64) -> ! {
    mmu::enable();
    traps::init_el2_controls();
    let mpidr = MPIDR_EL1.get() & MPIDR_AFFINITY;
    percpu::install(index as usize, mpidr, stack_top(index as usize));
    init_cpu_interrupts(mpidr);
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
    log::info!("CPU {index} online");
    run()
}

/// MPIDR_EL1 affinity fields Aff3 (39:32), Aff2, Aff1, Aff0 (23:0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// The INTID of the EL2 physical timer (the preemption tick), from the device tree.
static PREEMPT_INTID: spin::Once<u32> = spin::Once::new();

pub fn preempt_intid() -> Option<u32> {
    PREEMPT_INTID.get().copied()
}

/// The SGI one physical CPU sends another to make it exit its guest and look at its vCPUs'
/// pending interrupts.
pub const KICK_SGI: u32 = 0;
/// The GIC maintenance interrupt (PPI 9, INTID 25; the device tree's value is the same on
/// every board we know, and the vGIC needs no other).
pub const MAINTENANCE_INTID: u32 = 25;

/// This CPU's GIC interface, the kick, the virtual timer and maintenance interrupts, and the
/// preemption tick.
fn init_cpu_interrupts(mpidr: u64) {
    if let Some(&intid) = PREEMPT_INTID.get() {
        gic::init_cpu(mpidr);
        vcpu_if::init_cpu();
        gic::enable_ppi(KICK_SGI, mpidr);
        gic::enable_ppi(crate::vm::platform::VTIMER_INTID, mpidr);
        gic::enable_ppi(MAINTENANCE_INTID, mpidr);
        gic::enable_ppi(intid, mpidr);
        timer::disarm();
    }
}

static CONSOLE_INTID: spin::Once<u32> = spin::Once::new();
static HOST_GIC: spin::Once<crate::dt::hwinfo::GicInfo> = spin::Once::new();

/// The vGIC flavour guests get: the host's, since guests use its virtual CPU interface.
pub fn vgic_version() -> crate::vgic::VgicVersion {
    match HOST_GIC.get().map(|g| g.version) {
        Some(crate::dt::hwinfo::GicVersion::V2) => crate::vgic::VgicVersion::V2,
        _ => crate::vgic::VgicVersion::V3,
    }
}

/// With a GICv2 host: the physical address of the virtual CPU interface (GICV) frame.
pub fn gicv_frame() -> Option<u64> {
    let gic = HOST_GIC.get()?;
    match gic.version {
        crate::dt::hwinfo::GicVersion::V2 => gic.vcpu_interface.map(|r| r.base),
        crate::dt::hwinfo::GicVersion::V3 => None,
    }
}

/// The console UART's receive interrupt, if console input is enabled.
pub fn console_intid() -> Option<u32> {
    CONSOLE_INTID.get().copied()
}

/// This CPU's MPIDR affinity.
pub fn this_mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY
}

/// Makes physical CPU `pcpu` exit its guest (see `KICK_SGI`).
pub fn kick_cpu(pcpu: usize) {
    gic::send_sgi(KICK_SGI, percpu::get(pcpu).mpidr());
}

/// Masks the loaded vCPU's virtual timer interrupt at the timer (CNTV_CTL_EL0.IMASK).
pub fn mask_virtual_timer() {
    const CNTV_CTL_IMASK: u64 = 1 << 1;
    CNTV_CTL_EL0.set(CNTV_CTL_EL0.get() | CNTV_CTL_IMASK);
}

fn stack_top(index: usize) -> u64 {
    let img = head::image_layout();
    img.stacks_start + (index as u64 + 1) * (head::STACK_GUARD_SIZE + head::CPU_STACK_SIZE)
}

/// Enters this CPU's scheduling loop and runs guests; never returns.
fn run() -> ! {
    // SAFETY: on this CPU, outside any exit handler: nothing else borrows its scheduler.
    let regs = unsafe { percpu::current().sched() }.run_next();
    // SAFETY: `regs` is the loaded vCPU's register area and its system state is loaded.
    unsafe { vectors::enter_guest(regs) }
}

pub fn cpu_count() -> usize {
    CPU_COUNT.load(Ordering::Acquire)
}

/// Loads `vcpu`'s state into this CPU's registers.
///
/// # Safety
/// `vcpu` must be pinned to this CPU and no other vCPU may be loaded.
#[inline(always)]
pub unsafe fn load_vcpu(vcpu: &Vcpu) {
    let vm = vcpu.vm;
    // SAFETY: the caller guarantees exclusive access to this vCPU's context.
    let ctx = unsafe { vcpu.ctx() };
    VTTBR_EL2.set(vm.stage2_root() | ((vm.vmid as u64) << 48));
    // VMPIDR_EL2: bit 31 is RES1; Aff0 is the vCPU index (docs/architecture.md).
    VMPIDR_EL2.set((1 << 31) | vcpu.index as u64);
    CNTVOFF_EL2.set(vm.cntvoff());
    traps::set_pmu_access(vm.pmu);
    ctx.sys.load();
    // FP/SIMD and the pointer authentication keys are switched at their first use
    // (context::switch_fp, switch_pauth), unless the registers still hold this vCPU's.
    let cpu = percpu::current();
    traps::set_fp_trap(!core::ptr::eq(cpu.fp_owner(), vcpu));
    if context::has_pointer_auth() {
        traps::set_pauth_trap(!core::ptr::eq(cpu.pauth_owner(), vcpu));
    }
    ctx.vif.load();
    // The virtual timer interrupt this vCPU had not finished with stays active, so that its
    // hardware-linked list register still matches the physical state.
    if ctx.vtimer_active {
        gic::set_ppi_active(crate::vm::platform::VTIMER_INTID, true);
    }
    ELR_EL2.set(ctx.elr);
    SPSR_EL2.set(ctx.spsr);
    // Everything above in effect before the guest runs.
    barrier::isb(barrier::SY);
}

/// Saves the loaded `vcpu`'s register state and leaves the CPU with no guest state loaded
/// that could fire (its virtual timer is disabled until it is loaded again).
///
/// # Safety
/// `vcpu` must be the vCPU loaded on this CPU.
#[inline(always)]
pub unsafe fn unload_vcpu(vcpu: &Vcpu) {
    // SAFETY: the caller guarantees exclusive access to this vCPU's context.
    let ctx = unsafe { vcpu.ctx() };
    ctx.elr = ELR_EL2.get();
    ctx.spsr = SPSR_EL2.get();
    ctx.sys.save();
    // FP/SIMD stays in the registers until another vCPU uses it (context::switch_fp).
    let filled = vcpu.lrs_in_use.map_or(0, |l| l.load(Ordering::Relaxed));
    ctx.vif.save(filled);
    CNTV_CTL_EL0.set(0);
    let vtimer = crate::vm::platform::VTIMER_INTID;
    ctx.vtimer_active = gic::ppi_active(vtimer);
    if ctx.vtimer_active {
        gic::set_ppi_active(vtimer, false);
    }
}

/// The physical counter (CNTPCT_EL0).
pub fn physical_count() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Zeroes `[pa, pa + len)` of identity-mapped RAM: with `DC ZVA` (a whole cache block per
/// instruction) when the CPU allows it (DCZID_EL0.DZP clear) and the range is block aligned,
/// else with plain stores. For frames: page tables, a VM's RAM before it is freed.
pub fn zero_range(pa: u64, len: u64) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effect.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    const DZP: u64 = 1 << 4;
    let block = 4u64 << (dczid & 0xf);
    if dczid & DZP != 0 || !pa.is_multiple_of(block) || !len.is_multiple_of(block) {
        // SAFETY: the caller owns `[pa, pa + len)`, identity-mapped read-write RAM.
        unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len as usize) }.fill(0);
        return;
    }
    let end = pa + len;
    let mut addr = pa;
    while addr < end {
        // SAFETY: `DC ZVA` zeroes the aligned block at `addr`, inside the caller's range.
        unsafe { core::arch::asm!("dc zva, {}", in(reg) addr, options(nostack)) };
        addr += block;
    }
    barrier::dsb(barrier::ISH);
}

/// Cleans and invalidates `[pa, pa + len)` from the data caches to the point of coherency, so
/// that a guest running with its caches off sees what the hypervisor wrote.
pub fn clean_dcache_range(pa: u64, len: u64) {
    // CTR_EL0.DminLine: log2 of the smallest data cache line in words.
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effect.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let end = pa + len;
    let mut addr = pa & !(line - 1);
    // Eight lines per iteration: a VM's whole RAM (hundreds of MiB) is cleaned when it is
    // loaded, and the loop's own instructions would otherwise outnumber the `dc`s three to one
    // (it counts in the VM's boot time, docs/benchmarks.md).
    const UNROLL: u64 = 8;
    while addr + UNROLL * line <= end {
        // SAFETY: cache maintenance by VA on identity-mapped RAM; it changes no data.
        unsafe {
            core::arch::asm!(
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                "dc civac, {a}",
                "add {a}, {a}, {l}",
                a = inout(reg) addr,
                l = in(reg) line,
                options(nostack)
            )
        };
    }
    while addr < end {
        // SAFETY: as above.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) addr, options(nostack)) };
        addr += line;
    }
    barrier::dsb(barrier::SY);
}

/// Forgets every TLB entry of the VM with this VMID, on every CPU.
pub fn invalidate_vm_tlb(vmid: u16, stage2_root: u64) {
    let saved = VTTBR_EL2.get();
    VTTBR_EL2.set(stage2_root | ((vmid as u64) << 48));
    barrier::isb(barrier::SY);
    // SAFETY: TLB maintenance for the VMID now in VTTBR_EL2; it changes no memory.
    unsafe { core::arch::asm!("tlbi vmalls12e1is", options(nostack)) };
    barrier::dsb(barrier::ISH);
    VTTBR_EL2.set(saved);
    barrier::isb(barrier::SY);
}

/// Waits until something may have changed for this idle CPU: an interrupt (a kick, the
/// scheduler's deadline, console input), which is handled here, since no guest is loaded to
/// take the exit.
pub fn wait_for_event() {
    if PREEMPT_INTID.get().is_none() {
        aarch64_cpu::asm::wfe();
        return;
    }
    // WFI wakes on a pending interrupt even though interrupts are masked at EL2.
    aarch64_cpu::asm::wfi();
    loop {
        let intid = gic::acknowledge();
        if intid >= gic::SPURIOUS {
            break;
        }
        if Some(intid) == preempt_intid() {
            // Level-triggered: silenced until the scheduler arms it again.
            timer::disarm();
        } else if Some(intid) == console_intid() {
            console::handle_input();
        }
        gic::end_of_interrupt(intid);
    }
    serve_flush_request();
    percpu::current().take_resched();
}

/// If another CPU asked (it wants to run a vCPU whose lazily switched state this CPU's
/// registers hold), saves that state to the vCPUs' contexts.
#[inline]
pub fn serve_flush_request() {
    if percpu::current().take_flush() {
        context::flush_lazy_state();
    }
}

/// Waits until `vcpu`, handed to this CPU (`me`) by the scheduler, is loaded on no other CPU
/// and no other CPU's registers hold any of its state, asking that CPU to flush it. Serves
/// such requests from other CPUs meanwhile, so two CPUs exchanging vCPUs cannot deadlock.
#[inline]
pub fn take_vcpu(vcpu: &Vcpu, me: usize) {
    // The usual case: it was last on this CPU, or flushed, and is loaded nowhere.
    let home = vcpu.lazy_home.load(Ordering::Acquire);
    if !vcpu.is_loaded() && (home == crate::vm::NO_CPU || home == me) {
        return;
    }
    take_vcpu_slow(vcpu, me)
}

#[cold]
fn take_vcpu_slow(vcpu: &Vcpu, me: usize) {
    let mut asked = crate::vm::NO_CPU;
    loop {
        serve_flush_request();
        let home = vcpu.lazy_home.load(Ordering::Acquire);
        let elsewhere = home != crate::vm::NO_CPU && home != me;
        if !vcpu.is_loaded() && !elsewhere {
            return;
        }
        if elsewhere && asked != home {
            percpu::get(home).request_flush();
            kick_cpu(home);
            asked = home;
        }
        core::hint::spin_loop();
    }
}

/// Makes sure no CPU's registers hold any of `vcpu`'s state (it is loaded nowhere): flushes
/// this CPU's, or asks the CPU that has it and waits.
pub fn reclaim_lazy_state(vcpu: &Vcpu) {
    let me = percpu::current().index();
    let mut asked = crate::vm::NO_CPU;
    loop {
        serve_flush_request();
        let home = vcpu.lazy_home.load(Ordering::Acquire);
        if home == crate::vm::NO_CPU {
            return;
        }
        if home == me {
            context::flush_lazy_state();
        } else if asked != home {
            percpu::get(home).request_flush();
            kick_cpu(home);
            asked = home;
        }
        core::hint::spin_loop();
    }
}

/// When the loaded vCPU's virtual timer fires, in physical counter ticks: `None` if it is
/// disabled or masked (CNTV_CTL_EL0.ENABLE, IMASK).
pub fn virtual_timer_deadline() -> Option<u64> {
    let ctl = CNTV_CTL_EL0.get();
    const ENABLE: u64 = 1;
    const IMASK: u64 = 1 << 1;
    if ctl & ENABLE == 0 || ctl & IMASK != 0 {
        return None;
    }
    // CNTVCT = CNTPCT − CNTVOFF (Arm ARM D11.2.4).
    Some(CNTV_CVAL_EL0.get().wrapping_add(CNTVOFF_EL2.get()))
}

/// The counter frequency in Hz.
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::emergency(format_args!("\n#HV panic {info}\n"));
    halt()
}
