//! The hypervisor's disk: its on-disk format, shared by the hypervisor (no_std), which mounts
//! and updates it, and by `xtask` (feature `std`), which builds disk images ([`DiskBuilder`]).
//!
//! Owns: the byte layout of the superblock and of the image and VM records, their checksums,
//! and the first-fit extent allocator over the data pool. Everything is little-endian at
//! explicit offsets; decoding is total: any bytes give a value or an error, never a panic (a
//! disk is untrusted input: it may be corrupt, truncated or from another program).
//!
//! Must never: do I/O (the caller reads and writes sectors), allocate (the hypervisor calls it
//! before and outside its heap's comfort zone), or keep a second record of free space: free
//! space is derived from the records every time ([`alloc`]).
//!
//! Layout of a disk (sectors of [`SECTOR_SIZE`] bytes; `docs/disk.md` has the full tables):
//!
//! | sectors | what |
//! |---|---|
//! | 0 | the [`Superblock`]: magic, version, disk size, the extents below, CRC-32 |
//! | 8..40 | the image table: [`IMAGE_SLOTS`] slots of one sector, an [`ImageRecord`] or zeros |
//! | 64..128 | the VM table: [`VM_SLOTS`] slots of one sector, a [`VmRecord`] or zeros |
//! | 2048..10240 | the management store: 4 MiB the management VM reads and writes |
//! | 10240..end | the pool: image data, suspend areas and storage partitions (extents) |
#![cfg_attr(not(any(test, feature = "std")), no_std)]

pub mod alloc;
mod bytes;
mod extent;
mod image;
mod superblock;
mod vm;

#[cfg(any(test, feature = "std"))]
mod builder;

pub use bytes::crc32;
pub use extent::{sectors_for, Extent};
pub use image::{Cmdline, ImageRecord, CMDLINE_LEN};
pub use superblock::{Superblock, SuperblockError};
pub use vm::{suspend_sectors, VmRecord, SUSPEND_HEADER_BYTES};

#[cfg(any(test, feature = "std"))]
pub use builder::{read_images, BuildError, DiskBuilder, ImageSpec};

pub use abi::mgmt::{ImageFormat, Name, Resources, VmState, NAME_LEN};

/// Bytes per sector: the unit of every extent, and of the device's atomic writes.
pub const SECTOR_SIZE: usize = 512;
/// [`SECTOR_SIZE`] as a `u64`, for offset arithmetic.
pub const SECTOR_BYTES: u64 = SECTOR_SIZE as u64;
/// Slots of the image table.
pub const IMAGE_SLOTS: usize = 32;
/// Slots of the VM table.
pub const VM_SLOTS: usize = 64;
/// Pool extents start and end on this many sectors (4 KiB), the page size of the RAM that
/// suspend areas hold.
pub const POOL_ALIGN: u64 = 8;

/// What a table slot holds once decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot<T> {
    /// All zeros: never used, or freed.
    Free,
    Used(T),
    /// Not zeros and not a valid record (torn write, bit rot, a bug): treated as free, with a
    /// warning.
    Corrupt(RecordError),
}

/// Why a record sector is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The sector is shorter than [`SECTOR_SIZE`].
    Short,
    /// The first four bytes are not the record's tag (not a record of this table).
    BadTag,
    /// The stored CRC-32 does not match the contents.
    Checksum { stored: u32, computed: u32 },
    /// A field is out of its range (named).
    Field(&'static str),
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordError::Short => write!(f, "record shorter than a sector"),
            RecordError::BadTag => write!(f, "not a record of this table (bad tag)"),
            RecordError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            RecordError::Field(name) => write!(f, "field `{name}` out of range"),
        }
    }
}
