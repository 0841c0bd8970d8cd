//! The emulated platform of a VM that runs a full operating system: its virtual GICv3, its
//! PL011 console and the virtual timer's interrupt, and how they meet the hardware.
//!
//! Owns: dispatching a VM's trapped device accesses to the device models, delivering their
//! interrupts through the vGIC, and keeping the list registers of the loaded vCPU in step
//! with the vGIC model. Never lets one VM's device state reach another VM: every model here
//! belongs to one VM.

use super::mmio::{decode_data_abort, MmioAccess};
use super::{Vcpu, Vm};
use crate::arch::vcpu_if;
use crate::devices::pl011::{Pl011, PL011_SIZE};
use crate::dt::guest_fdt::{GuestGic, GuestPlatform};
use crate::vgic::{self, Effects, Vgic, VgicConfig, VgicVersion};
use spin::Mutex;

/// Where the PL011 is in every VM's IPA space, and its SPI (INTID 32 + 1), as on QEMU virt.
pub const UART_IPA: u64 = 0x0900_0000;
pub const UART_SPI: u32 = 1;
pub const UART_INTID: u32 = 32 + UART_SPI;
/// What a VM may write to its console per scheduler period (10 ms): 2 KiB, i.e. 200 KiB/s.
/// Beyond it the guest's UART reads as full until the next period, so a VM that floods its
/// console slows only itself, and every other VM's lines and the hypervisor's log still get
/// through.
pub const CONSOLE_BYTES_PER_PERIOD: u32 = 2048;
/// SPIs each VM's distributor offers.
const VM_SPIS: u32 = 64;
/// The virtual timer's PPI (INTID 27), the same number physically and virtually.
pub const VTIMER_INTID: u32 = 27;

pub struct Platform {
    pub vgic: Mutex<Vgic>,
    pub uart: Mutex<Pl011>,
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
        }
    }

    fn new_uart() -> Pl011 {
        let mut uart = Pl011::new();
        uart.set_tx_credit(CONSOLE_BYTES_PER_PERIOD);
        uart
    }

    /// Back to the power-on state (SYSTEM_RESET).
    pub fn reset(&self) {
        self.vgic.lock().reset();
        *self.uart.lock() = Self::new_uart();
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

/// The outcome of a trapped access to an emulated device.
pub enum MmioOutcome {
    /// Emulated: step over the instruction and resume.
    Done,
    /// Not a device of this VM: a stage-2 fault like any other.
    NotADevice,
    /// A device access the hypervisor cannot emulate (no syndrome, bad size).
    Unemulable(&'static str),
}

/// Emulates the data abort `esr` at `ipa` by `vcpu`, whose registers are `x`.
pub fn emulate_mmio(vcpu: &Vcpu, x: &mut [u64; 31], esr: u64, ipa: u64) -> MmioOutcome {
    let vm = vcpu.vm;
    let Some(platform) = vm.platform.as_ref() else {
        return MmioOutcome::NotADevice;
    };
    let in_gic = Vgic::contains_for(crate::arch::vgic_version(), ipa, vm.vcpus.len());
    let in_uart = (UART_IPA..UART_IPA + PL011_SIZE).contains(&ipa);
    if !in_gic && !in_uart {
        return MmioOutcome::NotADevice;
    }
    let access = match decode_data_abort(esr, ipa) {
        Ok(a) => a,
        Err(_) => return MmioOutcome::Unemulable("device access without syndrome"),
    };
    let effects = if in_gic {
        match gic_access(platform, vcpu.index, &access, x) {
            Ok(e) => e,
            Err(why) => return MmioOutcome::Unemulable(why),
        }
    } else {
        match uart_access(vm, platform, &access, x) {
            Ok(e) => e,
            Err(why) => return MmioOutcome::Unemulable(why),
        }
    };
    kick(vm, effects);
    MmioOutcome::Done
}

fn gic_access(
    p: &Platform,
    vcpu: usize,
    a: &MmioAccess,
    x: &mut [u64; 31],
) -> Result<Effects, &'static str> {
    let mut vgic = p.vgic.lock();
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
    let level = {
        let mut uart = p.uart.lock();
        if a.write {
            let out = uart
                .write(offset, a.size, a.write_value(x) as u32)
                .map_err(|_| "bad PL011 access")?;
            if let Some(byte) = out {
                vm.console.lock().push(&[byte], |line| {
                    crate::arch::console::vm_line(&vm.name, line)
                });
            }
        } else {
            let v = uart.read(offset, a.size).map_err(|_| "bad PL011 access")?;
            a.complete_read(x, v as u64);
        }
        uart.irq_level()
    };
    Ok(p.vgic.lock().set_level(0, UART_INTID, level))
}

/// A new scheduler period: every VM's console output budget is refilled.
pub fn refill_console_budgets() {
    for vm in crate::vm_table::all() {
        let Some(p) = vm.platform.as_ref() else {
            continue;
        };
        if !vm.is_running() {
            continue;
        }
        let level = {
            let mut uart = p.uart.lock();
            uart.set_tx_credit(CONSOLE_BYTES_PER_PERIOD);
            uart.irq_level()
        };
        let effects = p.vgic.lock().set_level(0, UART_INTID, level);
        kick(vm, effects);
    }
}

/// Feeds console input to a VM's PL011 and raises its interrupt.
pub fn console_input(vm: &Vm, byte: u8) {
    let Some(p) = vm.platform.as_ref() else {
        return;
    };
    let level = {
        let mut uart = p.uart.lock();
        uart.push_input(byte);
        uart.irq_level()
    };
    let effects = p.vgic.lock().set_level(0, UART_INTID, level);
    kick(vm, effects);
}

/// Makes the vCPUs that gained an interrupt look at it: those loaded on another physical CPU
/// get a kick (an SGI that makes them exit and refresh their list registers). One loaded on
/// this CPU is the current vCPU, whose list registers are refreshed on the way back to it;
/// one not loaded picks the interrupt up when it is next loaded.
pub fn kick(vm: &Vm, effects: Effects) {
    let here = crate::arch::percpu::current().index();
    for (i, target) in vm.vcpus.iter().enumerate() {
        if effects.kick & (1 << i) != 0 && target.is_loaded() && target.pcpu != here {
            crate::arch::kick_cpu(target.pcpu);
        }
    }
}

/// First step of every exit that may change interrupt state: what the guest did with its list
/// registers since it was last entered (acknowledged, finished) goes into the vGIC model,
/// before anything of this exit (an injection, an emulated GIC access) changes the model.
/// Only the list registers the model filled are looked at, and only those the hardware does
/// not report empty are read.
pub fn sync_list_registers(vcpu: &Vcpu) {
    let Some(p) = vcpu.vm.platform.as_ref() else {
        return;
    };
    let mut vgic = p.vgic.lock();
    if vgic.lrs_in_use(vcpu.index) == 0 {
        return;
    }
    let empty = vcpu_if::empty_lrs();
    let effects = vgic.sync_list_registers(vcpu.index, |n| {
        (empty & (1 << n) == 0).then(|| vcpu_if::read_lr(n))
    });
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
pub fn fill_list_registers(vcpu: &Vcpu) {
    let Some(p) = vcpu.vm.platform.as_ref() else {
        return;
    };
    let filled = p
        .vgic
        .lock()
        .fill_list_registers(vcpu.index, vcpu_if::lr_count(), vcpu_if::write_lr);
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
    let mut vgic = p.vgic.lock();
    if let Some((n, entry)) =
        vgic.refire_hw(vcpu.index, VTIMER_INTID, VTIMER_INTID, vcpu_if::empty_lrs)
    {
        vcpu_if::write_lr(n, Some(&entry));
        drop(vgic);
        vcpu_if::set_hcr(vcpu_if::HCR_EN);
        return true;
    }
    drop(vgic);
    sync_list_registers(vcpu);
    // Only the vCPU that owns the timer is concerned, and it is the current one: no kick.
    let _ = p
        .vgic
        .lock()
        .inject_hw(vcpu.index, VTIMER_INTID, VTIMER_INTID);
    fill_list_registers(vcpu);
    true
}
