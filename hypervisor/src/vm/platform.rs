//! The emulated platform of a VM that runs a full operating system: its virtual GICv3, its
//! PL011 console and the virtual timer's interrupt, and how they meet the hardware.
//!
//! Owns: dispatching a VM's trapped device accesses to the device models, delivering their
//! interrupts through the vGIC, and keeping the list registers of the loaded vCPU in step
//! with the vGIC model. Never lets one VM's device state reach another VM: every model here
//! belongs to one VM.
//!
//! The costs that matter (docs/benchmarks.md): an exit with nothing in the list registers
//! syncs without taking the vGIC lock (`Platform::lrs_in_use`); an exit that changed nothing
//! fills after one check without it (`Platform::fill_hint`); a UART access that leaves
//! its interrupt line as it was does not reach the vGIC (`Uart::update_line`); the virtual
//! timer's interrupt usually takes the model's O(1) short path (`virtual_timer_fired`).

use super::mmio::{decode_data_abort, MmioAccess};
use super::{Vcpu, Vm};
use crate::arch::vcpu_if;
use crate::devices::pl011::{Pl011, PL011_SIZE};
use crate::dt::guest_fdt::{GuestGic, GuestPlatform};
use crate::vgic::{self, Effects, Vgic, VgicConfig, VgicVersion};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use spin::Mutex;

/// Where the PL011 is in every VM's IPA space, and its SPI (INTID 32 + 1), as on QEMU virt.
pub const UART_IPA: u64 = 0x0900_0000;
pub const UART_SPI: u32 = 1;
pub const UART_INTID: u32 = 32 + UART_SPI;
/// A VM's console output is a token bucket: it earns 2 KiB per scheduler period (10 ms), i.e.
/// 200 KiB/s in the long run, and may save up to 64 KiB for a burst (a kernel's boot log).
/// Out of tokens, the guest's UART reads as full until the next period, so a VM that floods its
/// console slows only itself, and every other VM's lines and the hypervisor's log still get
/// through.
pub const CONSOLE_BYTES_PER_PERIOD: u32 = 2048;
pub const CONSOLE_BURST_BYTES: u32 = 64 << 10;
/// SPIs each VM's distributor offers.
const VM_SPIS: u32 = 64;
/// The virtual timer's PPI (INTID 27), the same number physically and virtually.
pub const VTIMER_INTID: u32 = 27;

pub struct Platform {
    /// Taken through [`Platform::vgic`], which keeps `fill_hint` right.
    vgic: Mutex<Vgic>,
    pub uart: Mutex<Uart>,
    /// Per vCPU, `Vgic::lrs_in_use` as of its last sync or fill. Only the vCPU's own physical
    /// CPU changes what the model has in its list registers (sync, fill, the timer's short
    /// path), so this copy lets an exit with nothing in them skip the model's lock.
    lrs_in_use: Vec<AtomicU16>,
    /// Bit `i`: vCPU `i`'s next fill may have work (`Vgic::needs_fill`). Written only with
    /// the vGIC locked: every [`VgicGuard`] sets all bits when it is dropped, and a fill that
    /// leaves nothing to do clears its vCPU's bit. A clear bit therefore means the model has
    /// not changed since that fill, and the fill on the way into a vCPU (every switch) skips
    /// the lock. An interrupt made pending for a vCPU while it is being loaded is not missed:
    /// the injector sets the bit and then reads whether the vCPU is loaded (`kick`), the
    /// loading CPU marks it loaded and then reads the bit (all `SeqCst`), so either the fill
    /// sees the bit or the injector kicks the vCPU's CPU, which fills again at that exit.
    fill_hint: AtomicU64,
}

/// The vGIC model, locked. Dropping it marks every vCPU's next fill as having work (see
/// `Platform::fill_hint`): whatever its holder did may have given any vCPU an interrupt.
pub struct VgicGuard<'a> {
    vgic: spin::MutexGuard<'a, Vgic>,
    hint: &'a AtomicU64,
}

impl core::ops::Deref for VgicGuard<'_> {
    type Target = Vgic;
    fn deref(&self) -> &Vgic {
        &self.vgic
    }
}

impl core::ops::DerefMut for VgicGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vgic {
        &mut self.vgic
    }
}

impl Drop for VgicGuard<'_> {
    fn drop(&mut self) {
        // Before the lock is released (the fields drop after this).
        self.hint.store(u64::MAX, Ordering::SeqCst);
    }
}

impl Platform {
    /// The platform of a VM with `vcpus` vCPUs; its GIC is of the host's version, since the
    /// guest talks to the host's virtual CPU interface directly.
    pub fn new(vcpus: usize, version: VgicVersion) -> Self {
        Platform {
            vgic: Mutex::new(Vgic::new(VgicConfig {
                vcpus,
                spis: VM_SPIS,
                version,
            })),
            uart: Mutex::new(Self::new_uart()),
            lrs_in_use: (0..vcpus).map(|_| AtomicU16::new(0)).collect(),
            fill_hint: AtomicU64::new(u64::MAX),
        }
    }

    /// The vGIC model, locked (see [`VgicGuard`]).
    pub fn vgic(&self) -> VgicGuard<'_> {
        VgicGuard {
            vgic: self.vgic.lock(),
            hint: &self.fill_hint,
        }
    }

    fn new_uart() -> Uart {
        let mut model = Pl011::new();
        model.set_tx_credit(CONSOLE_BURST_BYTES);
        Uart {
            model,
            backlog: VecDeque::with_capacity(INPUT_BACKLOG),
            line: false,
        }
    }

    /// Back to the power-on state (SYSTEM_RESET).
    pub fn reset(&self) {
        // The UART first (the lock order of `Uart::update_line`), held until both are reset:
        // its record of the line and the vGIC's line go back to deasserted together.
        let mut uart = self.uart.lock();
        self.vgic().reset();
        for lrs in &self.lrs_in_use {
            lrs.store(0, Ordering::Relaxed);
        }
        *uart = Self::new_uart();
    }

    /// Gives what the unloaded `vcpu`'s saved list registers hold back to the vGIC model and
    /// empties them (a suspended VM's state is saved without list registers).
    pub fn unlist_all(&self, vcpu: usize, vif: &mut crate::arch::vcpu_if::VcpuIfState) {
        let mut vgic = self.vgic();
        vgic.unlist_all(vcpu, &vif.lrs, vif.live);
        vif.live = 0;
        vif.lrs = [0; crate::arch::vcpu_if::MAX_LRS];
        self.note_lrs(vcpu, &vgic);
    }

    /// Installs a restored vGIC and UART (a suspended VM brought back from disk).
    pub fn restore(&self, vgic: Vgic, model: Pl011) {
        let mut uart = self.uart.lock();
        let mut v = self.vgic();
        *v = vgic;
        for (i, lrs) in self.lrs_in_use.iter().enumerate() {
            lrs.store(v.lrs_in_use(i), Ordering::Relaxed);
        }
        drop(v);
        uart.model = model;
        uart.backlog.clear();
        uart.line = false;
        let _ = uart.update_line(self);
    }

    /// The list registers of `vcpu` the model has filled, as of its last sync or fill.
    pub fn lrs_in_use(&self, vcpu: usize) -> u16 {
        self.lrs_in_use[vcpu].load(Ordering::Relaxed)
    }

    /// `vcpu`'s entry of `lrs_in_use`, for `Vcpu::lrs_in_use`.
    pub fn lrs_in_use_of(&self, vcpu: usize) -> &AtomicU16 {
        &self.lrs_in_use[vcpu]
    }

    /// Records what the model has in `vcpu`'s list registers (see `lrs_in_use`).
    fn note_lrs(&self, vcpu: usize, vgic: &Vgic) {
        self.lrs_in_use[vcpu].store(vgic.lrs_in_use(vcpu), Ordering::Relaxed);
    }

    /// How the guest's device tree describes this platform.
    pub fn describe(vcpus: usize, version: VgicVersion) -> GuestPlatform {
        let distributor = (vgic::GICD_BASE, vgic::GICD_SIZE);
        let gic = match version {
            VgicVersion::V3 => GuestGic::V3 {
                distributor,
                redistributors: (vgic::GICR_BASE, vgic::GICR_STRIDE * vcpus as u64),
            },
            VgicVersion::V2 => GuestGic::V2 {
                distributor,
                cpu_interface: (vgic::GICC_BASE, vgic::GICC_SIZE),
            },
        };
        GuestPlatform {
            gic,
            uart: (UART_IPA, UART_SPI),
        }
    }
}

/// A VM's PL011 and the level its interrupt line last had in the vGIC.
/// Console input waiting for room in a VM's receive FIFO: what a script or a paste sends
/// faster than the guest reads is kept, not dropped.
pub const INPUT_BACKLOG: usize = 4096;

pub struct Uart {
    pub model: Pl011,
    /// Input bytes the FIFO had no room for, oldest first (moved in as the guest reads).
    /// On the heap (at most `INPUT_BACKLOG` bytes, reserved at creation): inline it made every
    /// `Vm` 4 KiB larger, and creating one copies it (docs/benchmarks.md).
    backlog: VecDeque<u8>,
    /// What the vGIC model was last told of the line (`update_line`): most accesses (a
    /// console character is two, FR then DR) leave the level as it was, and then the vGIC is
    /// not involved at all.
    line: bool,
}

impl Uart {
    /// Moves backlog bytes into the receive FIFO while it has room.
    fn drain_backlog(&mut self) {
        while !self.backlog.is_empty() && self.model.can_accept_input() {
            if let Some(b) = self.backlog.pop_front() {
                self.model.push_input(b);
            }
        }
    }

    /// Tells the vGIC the line's level if it changed; returns whom to kick. Called with the
    /// UART locked, so that the vGIC sees the levels in the order the UART had them (the lock
    /// order is UART, then vGIC; nothing takes them the other way).
    fn update_line(&mut self, p: &Platform) -> Effects {
        let level = self.model.irq_level();
        if level == self.line {
            return Effects::default();
        }
        self.line = level;
        p.vgic().set_level(0, UART_INTID, level)
    }
}

/// The outcome of a trapped access to an emulated device.
pub enum MmioOutcome {
    /// Emulated: step over the instruction and resume.
    Done,
    /// Not a device of this VM: a stage-2 fault like any other.
    NotADevice,
    /// A device access the hypervisor cannot emulate (no syndrome, bad size).
    Unemulable(&'static str),
}

/// Emulates the data abort `esr` at `ipa` by `vcpu`, whose registers are `x`. The UART is
/// looked at first: it takes most device accesses (a Linux boot makes tens of thousands, two
/// per console character), the GIC a few hundred.
pub fn emulate_mmio(vcpu: &Vcpu, x: &mut [u64; 31], esr: u64, ipa: u64) -> MmioOutcome {
    let vm = vcpu.vm;
    let Some(platform) = vm.platform.as_ref() else {
        return MmioOutcome::NotADevice;
    };
    let in_uart = (UART_IPA..UART_IPA + PL011_SIZE).contains(&ipa);
    if !in_uart && !Vgic::contains_for(crate::arch::vgic_version(), ipa, vm.vcpus.len()) {
        return MmioOutcome::NotADevice;
    }
    let access = match decode_data_abort(esr, ipa) {
        Ok(a) => a,
        Err(_) => return MmioOutcome::Unemulable("device access without syndrome"),
    };
    let effects = if in_uart {
        uart_access(vm, platform, &access, x)
    } else {
        gic_access(platform, vcpu.index, &access, x)
    };
    match effects {
        Ok(e) => {
            if e != Effects::default() {
                kick(vm, e);
            }
            MmioOutcome::Done
        }
        Err(why) => MmioOutcome::Unemulable(why),
    }
}

fn gic_access(
    p: &Platform,
    vcpu: usize,
    a: &MmioAccess,
    x: &mut [u64; 31],
) -> Result<Effects, &'static str> {
    let mut vgic = p.vgic();
    if a.write {
        vgic.mmio_write(vcpu, a.ipa, a.size, a.write_value(x))
            .map_err(|_| "bad GIC access")
    } else {
        let v = vgic
            .mmio_read(vcpu, a.ipa, a.size)
            .map_err(|_| "bad GIC access")?;
        a.complete_read(x, v);
        Ok(Effects::default())
    }
}

fn uart_access(
    vm: &Vm,
    p: &Platform,
    a: &MmioAccess,
    x: &mut [u64; 31],
) -> Result<Effects, &'static str> {
    let offset = a.ipa - UART_IPA;
    let mut uart = p.uart.lock();
    if a.write {
        let out = uart
            .model
            .write(offset, a.size, a.write_value(x) as u32)
            .map_err(|_| "bad PL011 access")?;
        if let Some(byte) = out {
            vm.console.lock().push(&[byte], |line| {
                crate::arch::console::vm_line(&vm.name, line)
            });
        }
    } else {
        let v = uart
            .model
            .read(offset, a.size)
            .map_err(|_| "bad PL011 access")?;
        a.complete_read(x, v as u64);
        uart.drain_backlog();
    }
    Ok(uart.update_line(p))
}

/// A new scheduler period: every VM's console earns its tokens.
pub fn refill_console_budgets() {
    for vm in crate::vm_table::all() {
        let Some(p) = vm.platform.as_ref() else {
            continue;
        };
        if !vm.is_running() {
            continue;
        }
        let effects = {
            let mut uart = p.uart.lock();
            let credit = uart
                .model
                .tx_credit()
                .saturating_add(CONSOLE_BYTES_PER_PERIOD);
            uart.model.set_tx_credit(credit.min(CONSOLE_BURST_BYTES));
            uart.update_line(p)
        };
        kick(vm, effects);
    }
}

/// Feeds console input to a VM's PL011 and raises its interrupt.
pub fn console_input(vm: &Vm, byte: u8) {
    let Some(p) = vm.platform.as_ref() else {
        return;
    };
    let effects = {
        let mut uart = p.uart.lock();
        if uart.backlog.len() < INPUT_BACKLOG {
            uart.backlog.push_back(byte);
        } else {
            log::warn!("VM {}: console input backlog full, byte dropped", vm.name);
        }
        uart.drain_backlog();
        uart.update_line(p)
    };
    kick(vm, effects);
}

/// Makes the vCPUs that gained an interrupt look at it: one waiting in WFI is woken (the
/// scheduler runs it soon, `sched::wake`); those loaded on another physical CPU get a kick (an
/// SGI that makes them exit and refresh their list registers). One loaded on this CPU is the
/// current vCPU, whose list registers are refreshed on the way back to it; one not loaded picks
/// the interrupt up when it is next loaded.
///
/// The wake-up is never lost: a vCPU blocks (`sched`) under the scheduler's lock after seeing
/// nothing pending in the model; the interrupt was made pending in the model before this
/// takes that lock to wake it.
pub fn kick(vm: &Vm, effects: Effects) {
    let here = crate::arch::percpu::current().index();
    for (i, target) in vm.vcpus.iter().enumerate() {
        if effects.kick & (1 << i) == 0 {
            continue;
        }
        let loaded = target.is_loaded();
        let on = target.running_on();
        if loaded && on == here {
            continue;
        }
        crate::sched::wake(target);
        if loaded {
            crate::arch::kick_cpu(on);
        }
    }
}

/// First step of every exit that may change interrupt state: what the guest did with its list
/// registers since it was last entered (acknowledged, finished) goes into the vGIC model,
/// before anything of this exit (an injection, an emulated GIC access) changes the model.
/// Only the list registers the model filled are looked at, and only those the hardware does
/// not report empty are read.
#[inline]
pub fn sync_list_registers(vcpu: &Vcpu) {
    let Some(lrs) = vcpu.lrs_in_use else {
        return;
    };
    if lrs.load(Ordering::Relaxed) != 0 {
        if let Some(p) = vcpu.vm.platform.as_ref() {
            sync_in_use(vcpu, p);
        }
    }
}

/// `sync_list_registers` when some list registers are in use; apart so that the common case
/// (none) stays a few instructions.
#[inline(never)]
fn sync_in_use(vcpu: &Vcpu, p: &Platform) {
    let empty = vcpu_if::empty_lrs();
    let mut vgic = p.vgic();
    let effects = vgic.sync_list_registers(vcpu.index, |n| {
        (empty & (1 << n) == 0).then(|| vcpu_if::read_lr(n))
    });
    p.note_lrs(vcpu.index, &vgic);
    drop(vgic);
    if effects != Effects::default() {
        kick(vcpu.vm, effects);
    }
}

/// Last step before entering a vCPU: its list registers get what the model says should be
/// there (what is still in flight, then the highest-priority pending interrupts); only those
/// that change are written. If more is pending than fits, a maintenance interrupt is requested
/// for when room appears. Only valid after `sync_list_registers` in the same exit (or after
/// loading the vCPU, whose saved list registers the model has already seen).
#[inline]
pub fn fill_list_registers(vcpu: &Vcpu) {
    let Some(p) = vcpu.platform else {
        return;
    };
    let bit = vcpu.fill_bit;
    if p.fill_hint.load(Ordering::SeqCst) & bit == 0 {
        // The model has not changed since this vCPU's last fill, which left nothing to do.
        return;
    }
    fill_with_lock(vcpu, p, bit);
}

/// `fill_list_registers` when the model may have work for it; apart so that the common case
/// (nothing) stays a few instructions.
#[inline(never)]
fn fill_with_lock(vcpu: &Vcpu, p: &Platform, bit: u64) {
    // The raw lock: this fill sets its own bit of the hint, exactly.
    let mut vgic = p.vgic.lock();
    let lrs = vcpu_if::lr_count();
    let filled = vgic.fill_list_registers(vcpu.index, lrs, vcpu_if::write_lr);
    if !vgic.needs_fill(vcpu.index, lrs) {
        // Written with the lock held, as every write of the hint: no update is lost.
        let hint = p.fill_hint.load(Ordering::Relaxed);
        p.fill_hint.store(hint & !bit, Ordering::SeqCst);
    }
    if !filled.changed {
        return;
    }
    p.note_lrs(vcpu.index, &vgic);
    drop(vgic);
    let hcr = vcpu_if::HCR_EN | if filled.more { vcpu_if::HCR_NPIE } else { 0 };
    vcpu_if::set_hcr(hcr);
    if filled.kick != Effects::default() {
        kick(vcpu.vm, filled.kick);
    }
}

/// The physical virtual-timer interrupt fired while `vcpu` ran: hand it to the guest as its
/// PPI 27, hardware-linked so that the guest's deactivation also deactivates the physical
/// interrupt (which stays active, and so silent, until then). This is the whole of the exit's
/// interrupt work, list registers included: in the usual case (nothing else in flight) the
/// model's short path (`Vgic::refire_hw`) writes the one list register; otherwise the general
/// path syncs, injects and fills. False if the VM has no interrupt controller to take it (the
/// caller then masks it at the timer: nothing in that VM could ever acknowledge it).
pub fn virtual_timer_fired(vcpu: &Vcpu) -> bool {
    let Some(p) = vcpu.vm.platform.as_ref() else {
        return false;
    };
    // The raw lock: the short path lists the interrupt as a fill would and leaves nothing for
    // the next fill (`Vgic::refire_hw`), so the fill hint stays as it is.
    let mut vgic = p.vgic.lock();
    if let Some((n, raw)) =
        vgic.refire_hw(vcpu.index, VTIMER_INTID, VTIMER_INTID, vcpu_if::empty_lrs)
    {
        drop(vgic);
        // The one list register in use now.
        if let Some(lrs) = p.lrs_in_use.get(vcpu.index) {
            lrs.store(1 << n, Ordering::Relaxed);
        }
        vcpu_if::write_lr_raw_and_hcr(n, raw, vcpu_if::HCR_EN);
        return true;
    }
    drop(vgic);
    timer_general_path(vcpu, p);
    true
}

/// `virtual_timer_fired` off its short path: sync, inject, fill.
#[inline(never)]
fn timer_general_path(vcpu: &Vcpu, p: &Platform) {
    sync_list_registers(vcpu);
    // Only the vCPU that owns the timer is concerned, and it is the current one: no kick.
    let _ = p.vgic().inject_hw(vcpu.index, VTIMER_INTID, VTIMER_INTID);
    fill_list_registers(vcpu);
}
