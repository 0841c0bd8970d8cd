//! The hypervisor's disk: a virtio-blk device and the store on it (format: `diskfmt`,
//! docs/disk.md).
//!
//! Owns: finding the disk (every `virtio,mmio` transport of the device tree, the first block
//! device), the one global disk behind a lock, raw sector I/O, and the [`Store`] mounted on it
//! at boot. Polling only: a request is spun on with a deadline, never waited on forever.
//!
//! Must never: let a guest's request reach the disk unchecked (callers validate; the store
//! checks every bound again), or hold the lock across anything but disk I/O. The lock is held
//! for the whole of an operation, so a long one (writing a VM's RAM) keeps other CPUs that want
//! the disk spinning: callers decide how much to do per call.
//!
//! Module map: `device.rs` the block-device seam, `store.rs` the store, `error.rs` the errors,
//! `fault.rs` the fault-injection countdown; on the target, `virtio.rs` the driver and
//! `hal.rs` its DMA memory.

pub mod device;
pub mod error;
pub mod fault;
pub mod store;

#[cfg(test)]
mod tests;

#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod hal;
#[cfg(target_os = "none")]
mod virtio;

pub use device::BlockDevice;
pub use error::{DiskError, StoreError};
pub use store::{DropReason, Dropped, ImagePart, OpenReport, Store, Table, VmArea, VmEntry};

#[cfg(target_os = "none")]
pub use target::*;

#[cfg(target_os = "none")]
mod target {
    use super::store::{DropReason, Store, Table};
    use super::virtio::VirtioDisk;
    use super::{BlockDevice, DiskError, StoreError};
    use crate::dt::hwinfo::HwInfo;

    /// The disk found at boot, and what became of its store.
    enum Storage {
        /// No block device (or `init` not run).
        Absent,
        /// A disk whose store could not be mounted: raw I/O only.
        Unmounted(VirtioDisk, StoreError),
        Mounted(Store<VirtioDisk>),
    }

    static STORAGE: spin::Mutex<Storage> = spin::Mutex::new(Storage::Absent);

    /// The store's disk type, for callers that name it.
    pub type Disk = VirtioDisk;

    /// Finds the disk and mounts its store (formatting a blank disk). Once, at boot, after the
    /// frame allocator is set up. Prints `#HV disk ...`.
    pub fn init(hw: &HwInfo) {
        let disk = match VirtioDisk::probe(hw) {
            Ok(Some(d)) => d,
            Ok(None) => {
                crate::hv_record!("disk none");
                return;
            }
            Err(e) => {
                log::error!("disk: virtio block device unusable: {e}");
                crate::hv_record!("disk none error=device");
                return;
            }
        };
        let capacity = disk.sectors() * diskfmt::SECTOR_BYTES;
        let mut storage = STORAGE.lock();
        match Store::open(disk) {
            Ok((mut store, report)) => {
                for d in &report.dropped {
                    let table = match d.table {
                        Table::Images => "image",
                        Table::Vms => "VM",
                    };
                    match d.why {
                        DropReason::Corrupt(e) => {
                            log::warn!("disk: {table} slot {} ignored (free): {e}", d.slot)
                        }
                        why => log::warn!("disk: {table} slot {} ignored (free): {why:?}", d.slot),
                    }
                }
                crate::hv_record!(
                    "disk capacity={} state={} images={} vms={} pool={} free={} dropped={}",
                    capacity,
                    if report.formatted {
                        "formatted"
                    } else {
                        "mounted"
                    },
                    store.images().len(),
                    store.vm_records().len(),
                    store.total_storage(),
                    store.free_storage(),
                    report.dropped.len()
                );
                if let Some(mib) = super::bench::requested(hw.bootargs.as_deref()) {
                    super::bench::run(&mut store, mib);
                }
                *storage = Storage::Mounted(store);
            }
            Err((disk, e)) => {
                log::error!("disk: store not mounted, disk left untouched: {e}");
                crate::hv_record!("disk capacity={} state=unmounted", capacity);
                *storage = Storage::Unmounted(disk, e);
            }
        }
    }

    /// Whether a disk was found (mounted or not).
    pub fn present() -> bool {
        !matches!(*STORAGE.lock(), Storage::Absent)
    }

    fn with_disk<R>(
        f: impl FnOnce(&mut VirtioDisk) -> Result<R, DiskError>,
    ) -> Result<R, DiskError> {
        match &mut *STORAGE.lock() {
            Storage::Absent => Err(DiskError::NoDisk),
            Storage::Unmounted(d, _) => f(d),
            Storage::Mounted(s) => f(s.device_mut()),
        }
    }

    /// Reads `buf.len() / 512` sectors from sector `lba` (raw: no store bounds).
    pub fn read(lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        with_disk(|d| d.read(lba, buf))
    }

    /// Writes `buf.len() / 512` sectors at sector `lba` (raw: no store bounds).
    pub fn write(lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        with_disk(|d| d.write(lba, buf))
    }

    /// Runs `f` on the mounted store, under the disk lock.
    pub fn with_store<R>(f: impl FnOnce(&mut Store<Disk>) -> R) -> Result<R, StoreError> {
        match &mut *STORAGE.lock() {
            Storage::Absent => Err(StoreError::NoDisk),
            Storage::Unmounted(_, e) => Err(*e),
            Storage::Mounted(s) => Ok(f(s)),
        }
    }

    /// Makes the `countdown`-th next disk I/O request fail with [`DiskError::Injected`]
    /// (1: the next one; 0: disarm). Test builds only.
    #[cfg(feature = "fault-injection")]
    pub fn inject_fault(countdown: u32) {
        super::virtio::FAULT.arm(countdown);
    }
}
