//! What can go wrong with the disk, at the sector level ([`DiskError`]) and at the store level
//! ([`StoreError`]).

use core::fmt;

use diskfmt::alloc::AllocError;
use diskfmt::{RecordError, SuperblockError};

/// A sector read, write or flush that did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// No virtio block device was found.
    NoDisk,
    /// The request reaches past the end of the device.
    OutOfRange {
        lba: u64,
        sectors: u64,
        capacity: u64,
    },
    /// The buffer is not a whole number of sectors.
    Unaligned { len: usize },
    /// The device answered with an error status, or the driver refused the request.
    Device(&'static str),
    /// The device did not complete a request in time; it has been reset and is not used again.
    Timeout,
    /// An earlier timeout took the device out of service.
    Broken,
    /// The device is read-only.
    ReadOnly,
    /// No memory for a DMA buffer.
    NoMemory,
    /// Fault injection (`storage::inject_fault`) failed this request on purpose.
    Injected,
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NoDisk => write!(f, "no disk"),
            DiskError::OutOfRange {
                lba,
                sectors,
                capacity,
            } => write!(
                f,
                "sectors {lba}..{} are past the end of the disk ({capacity} sectors)",
                lba.saturating_add(*sectors)
            ),
            DiskError::Unaligned { len } => {
                write!(
                    f,
                    "a buffer of {len} bytes is not a whole number of sectors"
                )
            }
            DiskError::Device(why) => write!(f, "disk error: {why}"),
            DiskError::Timeout => write!(f, "the disk did not answer in time (it was reset)"),
            DiskError::Broken => write!(f, "the disk is out of service after a timeout"),
            DiskError::ReadOnly => write!(f, "the disk is read-only"),
            DiskError::NoMemory => write!(f, "no memory for a DMA buffer"),
            DiskError::Injected => write!(f, "injected disk fault"),
        }
    }
}

/// A store operation that was refused or failed. On any error the store (on disk and in
/// memory) is as it was before the call, except where a variant says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// No disk, so no store.
    NoDisk,
    /// A sector operation failed.
    Disk(DiskError),
    /// Sector 0 is not a usable superblock (corrupt, another version, truncated disk, or the
    /// disk is too small to format): the disk is left untouched.
    Superblock(SuperblockError),
    /// `offset + len` passes the end of the area (`size` bytes).
    OutOfBounds {
        offset: u64,
        len: u64,
        size: u64,
    },
    NoSuchImage(u32),
    NoSuchVm(u32),
    /// Every slot of the table is used.
    TableFull,
    /// The pool has no free run long enough.
    NoSpace(AllocError),
    /// The record would break a rule of the format (named).
    Invalid(RecordError),
    /// A suspended VM's RAM cannot change: its suspend area holds the RAM it will resume with.
    SuspendedResize,
}

impl From<DiskError> for StoreError {
    fn from(e: DiskError) -> Self {
        match e {
            DiskError::NoDisk => StoreError::NoDisk,
            e => StoreError::Disk(e),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NoDisk => write!(f, "no disk"),
            StoreError::Disk(e) => write!(f, "{e}"),
            StoreError::Superblock(e) => write!(f, "{e}"),
            StoreError::OutOfBounds { offset, len, size } => write!(
                f,
                "{len} bytes at offset {offset} pass the end of an area of {size} bytes"
            ),
            StoreError::NoSuchImage(id) => write!(f, "no image {id} in the store"),
            StoreError::NoSuchVm(h) => write!(f, "no VM record with handle {h}"),
            StoreError::TableFull => write!(f, "every slot of the table is used"),
            StoreError::NoSpace(e) => write!(f, "{e}"),
            StoreError::Invalid(e) => write!(f, "invalid record: {e}"),
            StoreError::SuspendedResize => {
                write!(f, "the RAM of a suspended VM cannot change")
            }
        }
    }
}
