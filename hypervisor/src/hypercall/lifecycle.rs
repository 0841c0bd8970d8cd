//! The management calls that change VMs and the disk: create, delete, power on and off,
//! suspend and resume, the image store, the management VM's persistent area, and fault
//! injection (docs/hypercalls.md, "Management calls").
//!
//! Owns: what the hypervisor knows of a VM beyond its running instance (its image, storage,
//! network share and the in-memory copy of its image), and the order of every operation so
//! that a failure leaves the VM and the disk as they were (spec 7.1). Every operation runs
//! under the life-cycle lock.

use crate::arch::pmu::Meter;
use crate::storage::{ImagePart, StoreError, VmArea, VmEntry};
use crate::vm::lifecycle;
use crate::vm::{StopReason, Vm, VmState as HvState};
use abi::mgmt::*;
use abi::Status;
use alloc::string::String;
use alloc::vec::Vec;
use bootbundle::{VmFlags, VmSpec};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use spin::Mutex;

/// What the hypervisor keeps about a VM made by the management VM.
#[derive(Clone, Copy, Debug)]
pub struct Managed {
    pub id: usize,
    pub image: u32,
    pub storage: u64,
    pub net_pct: u32,
    /// The image (and initrd) read from the store, for power on and reset: physical frames.
    staging: (u64, u64),
}

static MANAGED: Mutex<Vec<Managed>> = Mutex::new(Vec::new());
/// The next VM id to hand out: ids are never reused while the device runs.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
/// Whether `HV_MGMT_FAULT_INJECT` is served (the boot bundle asks for it: harness only).
static FAULT_INJECTION: AtomicBool = AtomicBool::new(false);

/// Where the RAM starts in a suspend area: after the header (vCPU and device state).
const SUSPEND_RAM_OFFSET: u64 = diskfmt::SUSPEND_HEADER_BYTES;

/// Boot: ids after those of the boot bundle's VMs; fault injection as the bundle says.
pub fn init(first_free_id: usize, fault_injection: bool) {
    lifecycle::init();
    NEXT_ID.store(first_free_id, Ordering::Relaxed);
    FAULT_INJECTION.store(fault_injection, Ordering::Relaxed);
}

/// The management record of VM `id`, if the management VM made it.
pub fn managed(id: usize) -> Option<Managed> {
    MANAGED.lock().iter().find(|m| m.id == id).copied()
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NoDisk | StoreError::TableFull | StoreError::NoSpace(_) => Status::NoStorage,
        StoreError::NoSuchImage(_) | StoreError::NoSuchVm(_) => Status::NotFound,
        StoreError::OutOfBounds { .. } | StoreError::Invalid(_) => Status::InvalidParameter,
        StoreError::SuspendedResize => Status::WrongState,
        StoreError::Disk(_) | StoreError::Superblock(_) => Status::IoError,
    }
}

/// Runs `f` on the store: `NoStorage` without a disk.
fn with_store<R>(
    f: impl FnOnce(&mut crate::storage::Store<crate::storage::Disk>) -> Result<R, StoreError>,
) -> Result<R, Status> {
    // Disk I/O is left out of the benchmarks' instruction counts (reported apart).
    match crate::arch::pmu::exclude(|| crate::storage::with_store(f)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) | Err(e) => Err(store_status(e)),
    }
}

fn record_state(vm: &Vm) -> VmState {
    match vm.state() {
        HvState::Running | HvState::Resetting | HvState::Suspending => VmState::Running,
        HvState::Suspended => VmState::Suspended,
        _ => VmState::PoweredOff,
    }
}

/// Writes VM `vm`'s record with its state now.
fn save_record(vm: &Vm, m: &Managed, resources: Resources) -> Result<(), Status> {
    let entry = VmEntry {
        handle: vm.id as u32,
        state: record_state(vm),
        image: m.image,
        resources,
        name: Name::new(&vm.name).unwrap_or(Name::EMPTY),
    };
    with_store(|s| s.put_vm_record(&entry)).map(|_| ())
}

/// Frames for `len` bytes, or `NoMemory`.
fn alloc_frames(len: u64) -> Result<u64, Status> {
    let len = len.max(4096).next_multiple_of(4096);
    crate::memory::FRAMES
        .lock()
        .alloc_contiguous(len, 4096)
        .map_err(|_| Status::NoMemory)
}

fn free_frames(pa: u64, len: u64) {
    let len = len.max(4096).next_multiple_of(4096);
    let _ = crate::memory::FRAMES.lock().free(pa, len);
}

/// Bytes at a physical address of the hypervisor's own (the staging copy).
fn phys_bytes(pa: u64, len: u64) -> &'static mut [u8] {
    // SAFETY: `pa..pa+len` are frames allocated by `alloc_frames` for this VM's staging copy,
    // identity-mapped read-write at EL2, used by nothing else until `free_frames`.
    unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len as usize) }
}

/// `HV_MGMT_VM_CREATE`.
pub fn create(req: &VmCreate) -> Result<u32, Status> {
    let _guard = lifecycle::lock();
    let meter = Meter::start();
    if lifecycle::fault_hit(FaultPoint::ImageRead) {
        return Err(Status::IoError);
    }
    let id = NEXT_ID.load(Ordering::Relaxed);
    let handle = u32::try_from(id).map_err(|_| Status::NoMemory)?;
    // The record first: it reserves the suspend area and the storage partition.
    let entry = VmEntry {
        handle,
        state: VmState::PoweredOff,
        image: req.image,
        resources: req.resources,
        name: req.name,
    };
    with_store(|s| s.image(req.image))?;
    with_store(|s| s.put_vm_record(&entry))?;
    let (vm, m) = match instantiate(id, req.image, &req.resources, req.name, true) {
        Ok(v) => v,
        Err(e) => {
            let _ = with_store(|s| s.delete_vm_record(handle));
            return Err(e);
        }
    };
    NEXT_ID.store(id + 1, Ordering::Relaxed);
    let (ram, pa) = (vm.ram().size, vm.ram().pa);
    if req.running {
        if meter.is_some() {
            crate::sched::measure_first_entry(id);
        }
        vm.power_on_boot_vcpu();
    } else {
        vm.power_off(StopReason::PowerOff);
    }
    let _ = save_record(vm, &m, req.resources);
    let insns = Insns::of(meter);
    crate::hv_record!(
        "vm-create id={} name={} image={} ram={} pa={:#x} cpu={} running={}{}",
        id,
        vm.name,
        req.image,
        ram,
        pa,
        req.resources.cpu_pct,
        req.running,
        insns
    );
    Ok(handle)
}

/// Builds VM `id` from image `image` of the store with `resources`: the image read into
/// memory, the VM created (running, or powered off without RAM), registered with the scheduler
/// and the VM table. Undoes everything on error.
fn instantiate(
    id: usize,
    image_id: u32,
    resources: &Resources,
    name: Name,
    allocate: bool,
) -> Result<(&'static Vm, Managed), Status> {
    let image = with_store(|s| s.image(image_id))?;
    let format = ImageFormat::from_u32(image.format as u32).ok_or(Status::BadImage)?;
    // The image, read into memory: the VM boots from it now and at every reset or power on.
    let len = image.kernel_size + image.initrd_size;
    let staging = alloc_frames(len)?;
    let undo_staging = || free_frames(staging, len);
    let bytes = phys_bytes(staging, len);
    let (kernel, initrd) = bytes.split_at_mut(image.kernel_size as usize);
    let read = with_store(|s| {
        s.read_image(image_id, ImagePart::Kernel, 0, kernel)?;
        s.read_image(image_id, ImagePart::Initrd, 0, initrd)
    });
    if let Err(e) = read {
        undo_staging();
        return Err(e);
    }
    let mut flags = match format {
        ImageFormat::Linux => VmFlags::LINUX,
        ImageFormat::Elf => VmFlags::ELF,
        ImageFormat::Raw => 0,
    };
    if image.platform {
        flags |= VmFlags::PLATFORM;
    }
    let vm_name: &'static str = String::from(name.as_str()).leak();
    let cmdline: &'static str = String::from(image.cmdline.as_str()).leak();
    let spec = VmSpec {
        name: vm_name,
        ram_size: resources.ram,
        ipa_base: image.ipa_base,
        image: &*kernel,
        load_offset: image.load_offset,
        entry_offset: image.entry_offset,
        cmdline,
        initrd: &*initrd,
        vcpus: resources.vcpus,
        flags: VmFlags(flags),
        start_after: None,
        fixed_pa: None,
        cpu_pct: Some(resources.cpu_pct as u8),
    };
    let created = if allocate {
        Vm::create(id, spec)
    } else {
        Vm::create_powered_off(id, spec)
    };
    let vm = match created {
        Ok(vm) => vm,
        Err(e) => {
            log::warn!("VM {}: {e}", name.as_str());
            undo_staging();
            return Err(match e {
                crate::vm::CreateError::NoMemory(_) => Status::NoMemory,
                crate::vm::CreateError::Layout(_)
                | crate::vm::CreateError::DtbDoesNotFit
                | crate::vm::CreateError::DeviceTree => Status::BadImage,
                _ => Status::NoMemory,
            });
        }
    };
    if let Err(e) = crate::sched::add_vm(vm, Some(resources.cpu_pct as u8)) {
        log::warn!("VM {}: {e}", name.as_str());
        vm.power_off(StopReason::Deleted);
        undo_staging();
        return Err(Status::Inconsistent);
    }
    let m = Managed {
        id,
        image: image_id,
        storage: resources.storage,
        net_pct: resources.net_pct,
        staging: (staging, len),
    };
    MANAGED.lock().push(m);
    crate::vm_table::add(vm);
    Ok((vm, m))
}

/// Boot: brings back the VMs of the disk's records, powered off (a VM that was running when
/// the device stopped boots again when powered on; a suspended one cannot resume without its
/// vCPU and device state, which only survives in memory: docs/virmo.md). Ids continue after
/// the highest handle found.
pub fn restore_from_disk() {
    let records = match crate::storage::with_store(|s| s.vm_records()) {
        Ok(r) => r,
        Err(_) => return,
    };
    let _guard = lifecycle::lock();
    for r in records {
        let id = r.handle as usize;
        if id >= NEXT_ID.load(Ordering::Relaxed) {
            NEXT_ID.store(id + 1, Ordering::Relaxed);
        }
        match instantiate(id, r.image, &r.resources, r.name, false) {
            Ok((vm, m)) => {
                let now = if r.state == VmState::Suspended && restore_suspended(vm) {
                    "suspended"
                } else {
                    "off"
                };
                crate::hv_record!(
                    "vm-restore id={} name={} was={} now={}",
                    id,
                    vm.name,
                    r.state as u32,
                    now
                );
                let _ = save_record(vm, &m, r.resources);
            }
            Err(e) => log::error!(
                "VM {} ({}) of the disk not restored: {e:?}",
                id,
                r.name.as_str()
            ),
        }
    }
}

/// A VM that was suspended when the device stopped: its vCPU and device state from the
/// suspend header, so that it can be resumed. False (it stays powered off) if the header
/// cannot be read or is not a valid snapshot.
fn restore_suspended(vm: &'static Vm) -> bool {
    let mut header = alloc::vec![0u8; SUSPEND_RAM_OFFSET as usize];
    let handle = vm.id as u32;
    if let Err(e) = with_store(|s| s.vm_area_read(handle, VmArea::Suspend, 0, &mut header)) {
        log::error!("VM {}: cannot read its suspend header: {e:?}", vm.name);
        return false;
    }
    match vm.restore_suspended(&header) {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "VM {}: its suspend header is not usable ({e:?}): powered off",
                vm.name
            );
            false
        }
    }
}

/// `HV_MGMT_VM_DELETE`: from any state. The VM is powered off (its RAM zeroed and freed),
/// then its disk areas are zeroed and its record removed.
pub fn delete(vm: &'static Vm) -> Result<(), Status> {
    let _guard = lifecycle::lock();
    let m = managed(vm.id);
    vm.power_off(StopReason::Deleted);
    let _ = crate::sched::remove_vm(vm);
    crate::vm_table::remove(vm.id);
    MANAGED.lock().retain(|x| x.id != vm.id);
    if let Some(m) = m {
        free_frames(m.staging.0, m.staging.1);
    }
    crate::hv_record!("vm-delete id={} name={}", vm.id, vm.name);
    match with_store(|s| s.delete_vm_record(vm.id as u32)) {
        Ok(()) | Err(Status::NotFound) | Err(Status::NoStorage) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `HV_MGMT_VM_POWER_ON`: PoweredOff → Running.
pub fn power_on(vm: &'static Vm) -> Result<(), Status> {
    let _guard = lifecycle::lock();
    if !matches!(vm.state(), HvState::Released(_)) {
        return Err(Status::WrongState);
    }
    vm.power_on().map_err(|e| match e {
        crate::vm::CreateError::WrongState => Status::WrongState,
        _ => Status::NoMemory,
    })?;
    crate::hv_record!(
        "vm-power-on id={} name={} pa={:#x}",
        vm.id,
        vm.name,
        vm.ram().pa
    );
    update_record(vm);
    Ok(())
}

/// `HV_MGMT_VM_POWER_OFF`: Running → PoweredOff.
pub fn power_off(vm: &'static Vm) -> Result<(), Status> {
    let _guard = lifecycle::lock();
    if !matches!(vm.state(), HvState::Running | HvState::Resetting) {
        return Err(Status::WrongState);
    }
    vm.power_off(StopReason::PowerOff);
    update_record(vm);
    Ok(())
}

/// `HV_MGMT_VM_SUSPEND`: Running → Suspended, the RAM written to the VM's suspend area.
pub fn suspend(vm: &'static Vm) -> Result<(), Status> {
    let _guard = lifecycle::lock();
    let handle = vm.id as u32;
    if managed(vm.id).is_none() {
        // A VM of the boot bundle has no suspend area.
        return Err(Status::NoStorage);
    }
    let meter = Meter::start();
    let mut ram_ticks = 0;
    vm.suspend(|header, ram| {
        if header.len() as u64 > SUSPEND_RAM_OFFSET {
            log::error!(
                "VM {}: its state ({} bytes) does not fit the suspend header",
                vm.name,
                header.len()
            );
            return Err(Status::NoStorage);
        }
        with_store(|s| s.vm_area_write(handle, VmArea::Suspend, 0, header))?;
        let t = crate::arch::physical_count();
        let written = with_store(|s| {
            s.vm_area_write(handle, VmArea::Suspend, SUSPEND_RAM_OFFSET, ram)?;
            s.flush()
        });
        ram_ticks = crate::arch::physical_count() - t;
        written
    })?;
    let insns = Insns::of(meter);
    crate::hv_record!(
        "vm-suspend id={} name={} bytes={}{}{}",
        vm.id,
        vm.name,
        vm.ram().size,
        Rate(vm.ram().size, ram_ticks),
        insns
    );
    update_record(vm);
    Ok(())
}

/// `HV_MGMT_VM_RESUME`: Suspended → Running, in RAM allocated anew.
pub fn resume(vm: &'static Vm) -> Result<(), Status> {
    let _guard = lifecycle::lock();
    let handle = vm.id as u32;
    let meter = Meter::start();
    let mut ram_ticks = 0;
    vm.resume(|ram| {
        let t = crate::arch::physical_count();
        let read = with_store(|s| s.vm_area_read(handle, VmArea::Suspend, SUSPEND_RAM_OFFSET, ram));
        ram_ticks = crate::arch::physical_count() - t;
        read
    })?;
    let insns = Insns::of(meter);
    crate::hv_record!(
        "vm-resume id={} name={} pa={:#x}{}{}",
        vm.id,
        vm.name,
        vm.ram().pa,
        Rate(vm.ram().size, ram_ticks),
        insns
    );
    update_record(vm);
    Ok(())
}

/// ` el2_insns=N excluded_insns=M` of a meter (benchmarks), or nothing without one. Read
/// when made, before the record is formatted and printed (logging is not the operation).
struct Insns(Option<(u64, u64)>);

impl Insns {
    fn of(meter: Option<Meter>) -> Insns {
        Insns(meter.map(Meter::finish))
    }
}

impl core::fmt::Display for Insns {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some((insns, excluded)) = self.0 {
            write!(f, " el2_insns={insns} excluded_insns={excluded}")?;
        }
        Ok(())
    }
}

/// ` ram_us=T mib_per_s=R`: `bytes` moved in `ticks` of the counter.
struct Rate(u64, u64);

impl core::fmt::Display for Rate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let freq = crate::arch::counter_frequency().max(1) as u128;
        let us = self.1 as u128 * 1_000_000 / freq;
        let mib_per_s = (self.0 as u128 * freq)
            .checked_div(self.1 as u128)
            .unwrap_or(0)
            >> 20;
        write!(f, " ram_us={us} mib_per_s={mib_per_s}")
    }
}

/// The disk record follows the state (best effort: the state in memory is the truth while
/// the device runs; the record matters after a restart).
fn update_record(vm: &Vm) {
    if let Some(m) = managed(vm.id) {
        let resources = Resources {
            ram: vm.ram().size,
            storage: m.storage,
            cpu_pct: crate::sched::next_quota(vm.id).unwrap_or(0) as u32,
            net_pct: m.net_pct,
            vcpus: vm.vcpus.len() as u32,
        };
        if let Err(e) = save_record(vm, &m, resources) {
            log::warn!("VM {}: its disk record was not updated: {e:?}", vm.name);
        }
    }
}

/// `HV_MGMT_IMAGE_LIST` into `page`; returns the count.
pub fn image_list(page: &mut [u8]) -> Result<usize, Status> {
    let images = with_store(|s| Ok(s.images()))?;
    let n = images.len().min(PAGE_SIZE / ImageInfo::SIZE);
    for (i, r) in images.iter().take(n).enumerate() {
        r.info().encode(&mut page[i * ImageInfo::SIZE..]);
    }
    Ok(n)
}

/// `HV_MGMT_IMAGE_REMOVE`: its data zeroed, then its record freed. VMs made from it keep
/// their own copy while the device runs.
pub fn image_remove(id: u32) -> Result<(), Status> {
    let _guard = lifecycle::lock();
    with_store(|s| s.remove_image(id))
}

/// `HV_MGMT_STORE_READ` / `HV_MGMT_STORE_WRITE`.
pub fn store_io(write: bool, offset: u64, page: &mut [u8], len: u64) -> Result<(), Status> {
    if len > PAGE_SIZE as u64 {
        return Err(Status::InvalidParameter);
    }
    let buf = &mut page[..len as usize];
    if write {
        with_store(|s| s.mgmt_store_write(offset, buf))
    } else {
        with_store(|s| s.mgmt_store_read(offset, buf))
    }
}

/// `HV_MGMT_FAULT_INJECT`.
pub fn fault_inject(point: u64, countdown: u64) -> Result<(), Status> {
    if !FAULT_INJECTION.load(Ordering::Relaxed) {
        return Err(Status::NotSupported);
    }
    let point = u32::try_from(point)
        .ok()
        .and_then(FaultPoint::from_u32)
        .ok_or(Status::InvalidParameter)?;
    let countdown = u32::try_from(countdown).map_err(|_| Status::InvalidParameter)?;
    match point {
        FaultPoint::DiskIo => crate::storage::inject_fault(countdown),
        p => lifecycle::arm_fault(p, countdown),
    }
    Ok(())
}

/// Storage totals for `HV_MGMT_DEVICE_INFO`: (present, total, free, images).
pub fn storage_totals() -> (bool, u64, u64, u32) {
    match crate::storage::with_store(|s| (s.total_storage(), s.free_storage(), s.images().len())) {
        Ok((t, f, n)) => (true, t, f, n as u32),
        Err(_) => (crate::storage::present(), 0, 0, 0),
    }
}
