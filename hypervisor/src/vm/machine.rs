//! The target side of VMs: creation from a boot bundle entry, stop, reset and release.

use super::layout::{self, GuestLayout, LayoutError};
use super::platform::Platform;
use super::ram::GuestRam;
use crate::arch::context::{El1SysRegs, FpRegs};
use crate::arch::vcpu_if::VcpuIfState;
use crate::arch::vectors::GuestRegs;
use crate::console::LineBuffer;
use crate::dt::guest_fdt::{build_guest_dtb, GuestDtConfig};
use crate::memory::frame_alloc::FrameError;
use crate::memory::pagetable::{Attributes, MapError, MemoryType, PageTable, Stage};
use crate::memory::FrameTables;
use alloc::boxed::Box;
use alloc::vec::Vec;
use bootbundle::VmSpec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// SPSR_EL2 for a vCPU's first instruction: EL1h (M = 0b0101) with D, A, I and F masked
/// (Arm ARM C5.2.19), as the Linux boot protocol and our guest contract require.
pub const SPSR_EL1H_DAIF_MASKED: u64 = 0b0101 | (0b1111 << 6);

/// 2 MiB: VM RAM is placed at this alignment so that stage 2 can use block mappings.
const RAM_ALIGN: u64 = 2 << 20;

/// The state of a vCPU while it is not in the CPU: everything the exit path and a switch save.
/// `regs` must stay first: the assembly reaches it through SP_EL2.
#[repr(C)]
pub struct VcpuContext {
    pub regs: GuestRegs,
    pub elr: u64,
    pub spsr: u64,
    pub sys: El1SysRegs,
    pub fp: FpRegs,
    /// The GIC virtual CPU interface (list registers...), for VMs with a vGIC.
    pub vif: VcpuIfState,
    /// Whether the physical virtual-timer interrupt was active (handed to this vCPU and not yet
    /// deactivated by it) when the vCPU was unloaded.
    pub vtimer_active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Off,
    /// CPU_ON accepted; the owning physical CPU will start it at `entry` with `x0 = context`.
    Pending {
        entry: u64,
        context: u64,
    },
    On,
}

/// A vCPU's power state, and whether it is `On` readable without the lock: the vCPU switch
/// (`sched`) asks that of every vCPU it loads. Every change goes through the guard of
/// [`PowerCell::lock`], which updates the flag before the lock is released.
pub struct PowerCell {
    state: Mutex<Power>,
    on: AtomicBool,
}

pub struct PowerGuard<'a> {
    state: spin::MutexGuard<'a, Power>,
    on: &'a AtomicBool,
}

impl PowerCell {
    pub const fn new(power: Power) -> Self {
        PowerCell {
            on: AtomicBool::new(matches!(power, Power::On)),
            state: Mutex::new(power),
        }
    }

    pub fn lock(&self) -> PowerGuard<'_> {
        PowerGuard {
            state: self.state.lock(),
            on: &self.on,
        }
    }

    /// Whether the state is `On` (as of the last guard dropped).
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }
}

impl core::ops::Deref for PowerGuard<'_> {
    type Target = Power;
    fn deref(&self) -> &Power {
        &self.state
    }
}

impl core::ops::DerefMut for PowerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Power {
        &mut self.state
    }
}

impl Drop for PowerGuard<'_> {
    fn drop(&mut self) {
        // Before the lock is released (the fields drop after this).
        self.on
            .store(matches!(*self.state, Power::On), Ordering::Release);
    }
}

/// `Vcpu::lazy_home` when no physical CPU's registers hold any of the vCPU's state.
pub const NO_CPU: usize = usize::MAX;

#[repr(C)]
pub struct Vcpu {
    /// Must stay first (see `from_regs`). Touched only by the physical CPU that has the vCPU
    /// (see `ctx`).
    ctx: UnsafeCell<VcpuContext>,
    pub vm: &'static Vm,
    pub index: usize,
    pub power: PowerCell,
    /// Loaded in the registers of physical CPU `running_on` right now.
    loaded: AtomicBool,
    /// The physical CPU it was last loaded on (the scheduler may move it between periods).
    running_on: AtomicUsize,
    /// The physical CPU whose registers may still hold some of its FP/SIMD state or pointer
    /// authentication keys (switched lazily, `arch::context`), or `NO_CPU`. Before another
    /// physical CPU loads or resets the vCPU, that CPU flushes them to the context.
    pub lazy_home: AtomicUsize,
    /// Its entry of the platform's `lrs_in_use` (`None` without a platform): read on every
    /// exit that may change interrupt state, so reached without going through the VM.
    pub lrs_in_use: Option<&'static core::sync::atomic::AtomicU16>,
    /// Its VM's platform (`None` without one), and its bit in `Platform::fill_hint`: the fill
    /// on the way into the vCPU checks it without going through the VM.
    pub platform: Option<&'static Platform>,
    pub fill_bit: u64,
}

// SAFETY: `ctx` is only accessed by the one physical CPU that has the vCPU (loaded, or taken
// by the scheduler with `loaded` false and `lazy_home` settled); the other fields are
// immutable, atomic or behind locks.
unsafe impl Sync for Vcpu {}

impl Vcpu {
    /// The vCPU whose register area is `regs`.
    ///
    /// # Safety
    /// `regs` must point at the `regs` field of a live `Vcpu`'s context.
    #[inline(always)]
    pub unsafe fn from_regs(regs: *mut GuestRegs) -> &'static Vcpu {
        // `Vcpu` and `VcpuContext` are `repr(C)` with the context, then the registers, first;
        // `UnsafeCell` is `repr(transparent)`: the addresses coincide.
        unsafe { &*(regs as *const Vcpu) }
    }

    /// # Safety
    /// Only the physical CPU that has the vCPU may call this: the one it is loaded on, or the
    /// one the scheduler handed it to once it is loaded nowhere and no other CPU holds its lazy
    /// state (`sched`). Not while another reference from this call is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn ctx(&self) -> &mut VcpuContext {
        unsafe { &mut *self.ctx.get() }
    }

    // `SeqCst`, both: an injector sets the VM's fill hint and then reads this, the loading CPU
    // writes this and then reads the hint (`platform::Platform::fill_hint`); one of them must
    // see the other's write.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    pub fn set_loaded(&self, loaded: bool) {
        self.loaded.store(loaded, Ordering::SeqCst);
    }

    /// The physical CPU it is (or was last) loaded on.
    pub fn running_on(&self) -> usize {
        self.running_on.load(Ordering::Acquire)
    }

    pub fn set_running_on(&self, pcpu: usize) {
        self.running_on.store(pcpu, Ordering::Release);
    }

    /// Its id in the quota scheduler.
    pub fn sched_id(&self) -> crate::quota::VcpuId {
        crate::quota::VcpuId::new(self.vm.id as u16, self.index as u16)
    }

    /// Resets the context for a start at `entry` with `x0 = x0`.
    ///
    /// # Safety
    /// As for [`Vcpu::ctx`].
    pub unsafe fn reset(&self, entry: u64, x0: u64) {
        let ctx = unsafe { self.ctx() };
        ctx.regs = GuestRegs::default();
        ctx.regs.x[0] = x0;
        ctx.elr = entry;
        ctx.spsr = SPSR_EL1H_DAIF_MASKED;
        ctx.sys = El1SysRegs::reset();
        ctx.fp = FpRegs::default();
        ctx.vif = VcpuIfState::reset(self.vm.platform.is_some());
        ctx.vtimer_active = false;
    }
}

/// A VM's stage-2 tables. Only the VM's own release path touches them after creation.
pub(super) struct Stage2(pub(super) PageTable<FrameTables>);

// SAFETY: the tables are plain memory owned by this VM; access is serialised by the VM's lock.
unsafe impl Send for Stage2 {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    SystemOff,
    Fault,
    CpuOff,
    Error,
    /// Powered off by the management VM.
    PowerOff,
    /// Deleted by the management VM.
    Deleted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::SystemOff => "system-off",
            StopReason::Fault => "fault",
            StopReason::CpuOff => "cpu-off",
            StopReason::Error => "error",
            StopReason::PowerOff => "power-off",
            StopReason::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// Created, waiting for another VM to stop (`start_after`).
    Held,
    Running,
    /// SYSTEM_RESET requested: the VM restarts once none of its vCPUs is loaded.
    Resetting,
    /// Stopped; its RAM is released once none of its vCPUs is loaded.
    Stopped(StopReason),
    /// Its RAM is being zeroed and returned (by exactly one physical CPU).
    Releasing(StopReason),
    /// Stopped and unloaded; its RAM is released by the management call that stopped it
    /// (`lifecycle::power_off`), on that call's CPU.
    ReleasePending(StopReason),
    /// Stopped and its RAM zeroed and returned: powered off.
    Released(StopReason),
    /// Being suspended: its vCPUs leave their physical CPUs, then its RAM goes to disk.
    Suspending,
    /// Suspended: its RAM is on disk and returned, its vCPU and device state kept.
    Suspended,
}

pub struct Vm {
    pub id: usize,
    pub name: heapless::String<32>,
    pub vmid: u16,
    /// Its RAM and stage-2 root: replaced only while none of its vCPUs can be loaded (powered
    /// off or suspended, under the life-cycle lock), see `ram` and `lifecycle`.
    mem: UnsafeCell<Memory>,
    pub(super) stage2: Mutex<Option<Stage2>>,
    pub vcpus: Vec<&'static Vcpu>,
    pub(super) state: Mutex<VmState>,
    /// `state == Running`, readable without the lock: checked on every guest exit.
    running: AtomicBool,
    pub console: Mutex<LineBuffer>,
    pub pmu: bool,
    /// The management VM: the only one allowed the management calls.
    pub management: bool,
    /// CNTVOFF_EL2: the physical count when the VM was created, so its virtual clock starts
    /// near zero.
    pub cntvoff: AtomicU64,
    /// A management call stopping the VM will release its RAM itself (`lifecycle`), not the
    /// CPU that unloads its last vCPU.
    pub(super) release_by_caller: AtomicBool,
    /// While suspended: its virtual count when it stopped (resume continues from there).
    pub(super) suspended_vcount: AtomicU64,
    pub start_after: Option<usize>,
    pub entry: u64,
    pub dtb_ipa: u64,
    /// The emulated GIC, console and timer interrupt of VMs that run a full OS.
    pub platform: Option<Platform>,
    /// Where the image, initrd and device tree go in RAM.
    layout: GuestLayout,
    /// The bundle entry (or the image store's, with the image read into memory), kept for
    /// SYSTEM_RESET and power on.
    pub(super) spec: VmSpec<'static>,
    dtb: Vec<u8>,
}

/// Where a VM's RAM is and the stage-2 tables that map it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Memory {
    pub ram: GuestRam,
    pub stage2_root: u64,
}

// SAFETY: `mem` is only written while no vCPU of the VM can be loaded and under the
// life-cycle lock (`lifecycle`), and read by its vCPUs (which cannot run then) and by the
// holders of that lock; every other field is immutable, atomic or behind a lock.
unsafe impl Sync for Vm {}

#[derive(Debug)]
pub enum CreateError {
    Layout(LayoutError),
    NoMemory(FrameError),
    Stage2(MapError),
    DeviceTree,
    DtbDoesNotFit,
    TooManyVms,
    /// Not in a state that allows the operation.
    WrongState,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Layout(e) => write!(f, "{e}"),
            CreateError::NoMemory(e) => write!(f, "cannot allocate RAM: {e:?}"),
            CreateError::Stage2(e) => write!(f, "cannot build stage-2 tables: {e:?}"),
            CreateError::DeviceTree => write!(f, "cannot build the guest device tree"),
            CreateError::DtbDoesNotFit => write!(f, "no room for the device tree in RAM"),
            CreateError::TooManyVms => write!(f, "too many VMs"),
            CreateError::WrongState => write!(f, "not in a state that allows it"),
        }
    }
}

/// Guest RAM through the identity map.
pub(super) fn ram_bytes(pa: u64, len: u64) -> &'static mut [u8] {
    // SAFETY: `pa..pa+len` is RAM owned by one VM, mapped read-write at EL2 by the identity
    // map; the hypervisor accesses it only when loading, resetting or releasing that VM, or
    // to copy hypercall buffers that `GuestRam::translate` validated.
    unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len as usize) }
}

/// The 4 KiB page of the VM's RAM at `ipa` (which must be page aligned), for a management
/// call's record.
pub fn guest_page(vm: &Vm, ipa: u64) -> Option<&'static mut [u8]> {
    if !ipa.is_multiple_of(4096) {
        return None;
    }
    let pa = vm.ram().translate(ipa, 4096).ok()?;
    Some(ram_bytes(pa, 4096))
}

/// Copies `len` bytes of guest memory at `ipa` out, if they are all the VM's RAM.
pub fn guest_bytes(vm: &Vm, ipa: u64, len: u64) -> Option<&'static [u8]> {
    let pa = vm.ram().translate(ipa, len).ok()?;
    Some(ram_bytes(pa, len))
}

impl Vm {
    /// Creates a VM from a bundle entry: allocates and zeroes its RAM, loads its image and
    /// device tree, builds its stage-2 tables and its vCPUs, all powered off (the caller
    /// registers it with the scheduler, then powers vCPU 0 on with `power_on_boot_vcpu`). On
    /// any error, everything allocated so far is released.
    pub fn create(id: usize, spec: VmSpec<'static>) -> Result<&'static Vm, CreateError> {
        Self::build(id, spec, true)
    }

    /// As `create`, but powered off: no RAM is allocated until it is powered on (a VM
    /// restored from its disk record at boot).
    pub fn create_powered_off(
        id: usize,
        spec: VmSpec<'static>,
    ) -> Result<&'static Vm, CreateError> {
        Self::build(id, spec, false)
    }

    fn build(id: usize, spec: VmSpec<'static>, allocate: bool) -> Result<&'static Vm, CreateError> {
        let vmid = u16::try_from(id).map_err(|_| CreateError::TooManyVms)?;
        // Everything about the image is checked before anything is allocated.
        let layout = if spec.flags.elf() {
            layout::plan_elf(
                spec.ipa_base,
                spec.ram_size,
                spec.image,
                spec.initrd.len() as u64,
            )
        } else {
            layout::plan(
                spec.ram_size,
                spec.image,
                spec.flags.linux(),
                spec.load_offset,
                spec.entry_offset,
                spec.initrd.len() as u64,
            )
        }
        .map_err(CreateError::Layout)?;
        let with_platform = spec.flags.platform();
        let dtb = build_dtb(&spec, &layout, with_platform)?;
        if dtb.len() as u64 > layout.dtb_max {
            return Err(CreateError::DtbDoesNotFit);
        }
        let (mem, stage2) = if allocate {
            let (ram, stage2) =
                allocate_memory(spec.ipa_base, spec.ram_size, spec.fixed_pa, with_platform)?;
            let stage2_root = stage2.root_address();
            (Memory { ram, stage2_root }, Some(Stage2(stage2)))
        } else {
            let ram = GuestRam {
                ipa: spec.ipa_base,
                pa: 0,
                size: spec.ram_size,
            };
            (
                Memory {
                    ram,
                    stage2_root: 0,
                },
                None,
            )
        };
        let initial = if !allocate {
            VmState::Released(StopReason::PowerOff)
        } else if spec.start_after.is_some() {
            VmState::Held
        } else {
            VmState::Running
        };

        let vm: &'static mut Vm = Box::leak(Box::new(Vm {
            id,
            name: heapless::String::try_from(spec.name).unwrap_or_default(),
            vmid,
            mem: UnsafeCell::new(mem),
            stage2: Mutex::new(stage2),
            vcpus: Vec::new(),
            state: Mutex::new(initial),
            running: AtomicBool::new(initial == VmState::Running),
            console: Mutex::new(LineBuffer::new()),
            pmu: spec.flags.pmu(),
            management: spec.flags.management(),
            cntvoff: AtomicU64::new(crate::arch::physical_count()),
            suspended_vcount: AtomicU64::new(0),
            release_by_caller: AtomicBool::new(false),
            start_after: spec.start_after,
            entry: spec.ipa_base + layout.entry_offset,
            dtb_ipa: spec.ipa_base + layout.dtb_offset,
            platform: with_platform
                .then(|| Platform::new(spec.vcpus as usize, crate::arch::vgic_version())),
            layout,
            spec,
            dtb,
        }));
        let vm_ref: &'static Vm = unsafe { &*(vm as *const Vm) };
        for index in 0..spec.vcpus as usize {
            let vcpu = Box::leak(Box::new(Vcpu {
                ctx: UnsafeCell::new(VcpuContext {
                    regs: GuestRegs::default(),
                    elr: 0,
                    spsr: SPSR_EL1H_DAIF_MASKED,
                    sys: El1SysRegs::reset(),
                    fp: FpRegs::default(),
                    vif: VcpuIfState::reset(with_platform),
                    vtimer_active: false,
                }),
                vm: vm_ref,
                index,
                power: PowerCell::new(Power::Off),
                loaded: AtomicBool::new(false),
                running_on: AtomicUsize::new(NO_CPU),
                lazy_home: AtomicUsize::new(NO_CPU),
                lrs_in_use: vm_ref.platform.as_ref().map(|p| p.lrs_in_use_of(index)),
                platform: vm_ref.platform.as_ref(),
                fill_bit: 1 << (index % 64),
            }));
            vm.vcpus.push(vcpu);
        }
        if allocate {
            vm.load_image();
        }
        Ok(vm_ref)
    }

    /// Copies the image, the initrd and the device tree into (zeroed) RAM, where the layout
    /// says.
    pub(super) fn load_image(&self) {
        let ram = ram_bytes(self.ram().pa, self.ram().size);
        if self.spec.flags.elf() {
            // Each segment's file bytes (`.bss` is the zeroed RAM). `plan_elf` accepted them.
            let copy = crate::arch::copy_bytes;
            if let Err(e) = layout::load_elf_with(ram, self.ram().ipa, self.spec.image, copy) {
                log::error!("VM {}: loading its ELF image: {e}", self.name);
            }
        } else {
            let load = self.layout.image_offset as usize;
            crate::arch::copy_bytes(
                &mut ram[load..load + self.spec.image.len()],
                self.spec.image,
            );
        }
        if let Some((start, end)) = self.layout.initrd {
            crate::arch::copy_bytes(&mut ram[start as usize..end as usize], self.spec.initrd);
        }
        let dtb_off = self.layout.dtb_offset as usize;
        crate::arch::copy_bytes(&mut ram[dtb_off..dtb_off + self.dtb.len()], &self.dtb);
        // The guest starts with its MMU and caches off: make the image visible to
        // non-cacheable fetches and loads. (Proportional to the RAM: left out of the
        // benchmarks' counts, like zeroing.)
        crate::arch::pmu::exclude(|| {
            crate::arch::clean_dcache_range(self.ram().pa, self.ram().size)
        });
    }

    /// Marks vCPU 0 to start at the image's entry point with `x0` = the device tree.
    pub fn power_on_boot_vcpu(&self) {
        *self.vcpus[0].power.lock() = Power::Pending {
            entry: self.entry,
            context: self.dtb_ipa,
        };
        crate::sched::vcpu_powered_on(self.vcpus[0]);
    }

    /// CNTVOFF_EL2 for its vCPUs.
    #[inline]
    pub fn cntvoff(&self) -> u64 {
        self.cntvoff.load(Ordering::Relaxed)
    }

    /// Its RAM (valid while it is not powered off or suspended).
    #[inline]
    pub fn ram(&self) -> GuestRam {
        // SAFETY: see `mem`: not written while anything that can call this runs.
        unsafe { (*self.mem.get()).ram }
    }

    /// The root of its stage-2 tables (for VTTBR_EL2).
    #[inline]
    pub fn stage2_root(&self) -> u64 {
        // SAFETY: as for `ram`.
        unsafe { (*self.mem.get()).stage2_root }
    }

    /// Installs new RAM and stage-2 tables (power on, resume).
    ///
    /// # Safety
    /// No vCPU of the VM may be loaded or runnable, and the caller holds the life-cycle lock.
    pub(super) unsafe fn set_memory(&self, mem: Memory) {
        unsafe { *self.mem.get() = mem };
    }

    pub fn state(&self) -> VmState {
        *self.state.lock()
    }

    #[inline]
    // `SeqCst`, as `Vcpu::set_loaded`: a CPU loading a vCPU marks it loaded and then reads
    // this; a CPU stopping the VM writes this and then reads the vCPUs' marks
    // (`any_vcpu_loaded`). One of them sees the other's write: the loader backs off, or the
    // stopper waits for it to unload.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Whether any of its vCPUs is loaded on a physical CPU (or being loaded: `sched` marks a
    /// vCPU loaded before it checks that the VM runs).
    pub fn any_vcpu_loaded(&self) -> bool {
        self.vcpus.iter().any(|v| v.is_loaded())
    }

    /// Changes the state; the only writer of `state` and `running`.
    pub(super) fn set_state(&self, state: &mut spin::MutexGuard<VmState>, new: VmState) {
        **state = new;
        self.running
            .store(new == VmState::Running, Ordering::SeqCst);
    }

    /// Starts a VM that was held until another stopped; false if it was not held.
    pub fn release_hold(&self) -> bool {
        let mut state = self.state.lock();
        if *state != VmState::Held {
            return false;
        }
        self.set_state(&mut state, VmState::Running);
        true
    }

    /// Stops the VM (idempotent: the first reason wins) and reports it. Its vCPUs leave their
    /// physical CPUs at their next exit; the last one out releases the RAM.
    pub fn stop(&self, reason: StopReason) {
        {
            let mut state = self.state.lock();
            match *state {
                VmState::Running | VmState::Held | VmState::Resetting | VmState::Suspending => {
                    self.set_state(&mut state, VmState::Stopped(reason))
                }
                // Nothing to release: its RAM is on disk.
                VmState::Suspended => self.set_state(&mut state, VmState::Released(reason)),
                VmState::Stopped(_)
                | VmState::Releasing(_)
                | VmState::ReleasePending(_)
                | VmState::Released(_) => return,
            }
        }
        for vcpu in &self.vcpus {
            *vcpu.power.lock() = Power::Off;
        }
        self.console
            .lock()
            .flush(|line| crate::arch::console::vm_line(&self.name, line));
        crate::hv_record!(
            "vm-stopped id={} name={} reason={}",
            self.id,
            self.name,
            reason.as_str()
        );
        crate::vm_table::on_vm_stopped(self.id);
    }

    /// Requests a reset (PSCI SYSTEM_RESET).
    pub fn request_reset(&self) {
        let mut state = self.state.lock();
        if *state == VmState::Running {
            self.set_state(&mut state, VmState::Resetting);
            for vcpu in &self.vcpus {
                *vcpu.power.lock() = Power::Off;
            }
        }
    }

    /// Called by a physical CPU after it unloaded one of this VM's vCPUs: when none is loaded
    /// any more, finish a pending stop (release RAM) or reset (reload and restart).
    pub fn after_unload(&self) {
        if self.any_vcpu_loaded() {
            return;
        }
        let mut state = self.state.lock();
        match *state {
            // A management call that stops the VM releases the RAM itself, on its own CPU:
            // zeroing a large VM's RAM here would stall this CPU's other vCPUs. Decided under
            // the state lock, so exactly one CPU releases.
            VmState::Stopped(reason) if self.release_by_caller.load(Ordering::Acquire) => {
                self.set_state(&mut state, VmState::ReleasePending(reason));
            }
            VmState::Stopped(reason) => {
                self.set_state(&mut state, VmState::Releasing(reason));
                drop(state);
                self.release();
                let mut state = self.state.lock();
                self.set_state(&mut state, VmState::Released(reason));
            }
            VmState::Resetting => {
                crate::arch::zero_range(self.ram().pa, self.ram().size);
                if let Some(p) = &self.platform {
                    p.reset();
                }
                self.load_image();
                self.set_state(&mut state, VmState::Running);
                drop(state);
                crate::hv_record!("vm-reset id={} name={}", self.id, self.name);
                self.power_on_boot_vcpu();
            }
            _ => {}
        }
    }

    /// Zeroes the RAM, returns it to the frame allocator and forgets the VM's TLB entries.
    pub(super) fn release(&self) {
        crate::arch::pmu::exclude(|| {
            crate::arch::zero_range(self.ram().pa, self.ram().size);
            crate::arch::clean_dcache_range(self.ram().pa, self.ram().size);
        });
        crate::arch::invalidate_vm_tlb(self.vmid, self.stage2_root());
        if let Some(Stage2(tables)) = self.stage2.lock().take() {
            tables.destroy();
        }
        if let Err(e) = crate::memory::FRAMES
            .lock()
            .free(self.ram().pa, self.ram().size)
        {
            log::error!("VM {}: freeing its RAM failed: {e:?}", self.name);
        }
        log::debug!(
            "VM {} released {} KiB of RAM (zeroed)",
            self.name,
            self.ram().size >> 10
        );
    }
}

/// Allocates `size` bytes of RAM (at `fixed_pa` if given) and stage-2 tables mapping it at
/// `ipa` (and, with a GICv2 platform, the GICV frame). Everything is released on error.
pub(super) fn allocate_memory(
    ipa: u64,
    size: u64,
    fixed_pa: Option<u64>,
    with_platform: bool,
) -> Result<(GuestRam, PageTable<FrameTables>), CreateError> {
    if crate::vm::lifecycle::fault_hit(abi::mgmt::FaultPoint::RamAlloc) {
        return Err(CreateError::NoMemory(FrameError::OutOfMemory));
    }
    let pa = {
        let mut frames = crate::memory::FRAMES.lock();
        match fixed_pa {
            Some(pa) => frames.alloc_at(pa, size).map(|_| pa),
            None => frames.alloc_contiguous(size, RAM_ALIGN),
        }
        .map_err(CreateError::NoMemory)?
    };
    let ram = GuestRam { ipa, pa, size };
    let release_ram = || {
        crate::arch::zero_range(pa, size);
        let _ = crate::memory::FRAMES.lock().free(pa, size);
    };
    let mut stage2 = match PageTable::new(Stage::Stage2, FrameTables) {
        Ok(t) => t,
        Err(e) => {
            release_ram();
            return Err(CreateError::Stage2(e));
        }
    };
    let rwx = Attributes {
        memory: MemoryType::Normal,
        read: true,
        write: true,
        execute: true,
    };
    let mut mapped = stage2.map(ram.ipa, ram.pa, ram.size, rwx);
    // With a GICv2, the guest's CPU interface is the hardware's virtual CPU interface
    // (GICV), mapped at the guest's GICC address: the only device it touches directly.
    if let (Ok(()), true, Some(gicv)) = (&mapped, with_platform, crate::arch::gicv_frame()) {
        let device = Attributes {
            memory: MemoryType::Device,
            read: true,
            write: true,
            execute: false,
        };
        mapped = stage2.map(crate::vgic::GICC_BASE, gicv, crate::vgic::GICC_SIZE, device);
    }
    if let Err(e) = mapped {
        stage2.destroy();
        release_ram();
        return Err(CreateError::Stage2(e));
    }
    Ok((ram, stage2))
}

fn build_dtb(spec: &VmSpec, layout: &GuestLayout, platform: bool) -> Result<Vec<u8>, CreateError> {
    build_guest_dtb(&GuestDtConfig {
        ram_base: spec.ipa_base,
        ram_size: spec.ram_size,
        vcpus: spec.vcpus,
        bootargs: spec.cmdline,
        initrd: layout
            .initrd
            .map(|(s, e)| (spec.ipa_base + s, spec.ipa_base + e)),
        platform: platform
            .then(|| Platform::describe(spec.vcpus as usize, crate::arch::vgic_version())),
    })
    .map_err(|_| CreateError::DeviceTree)
}
