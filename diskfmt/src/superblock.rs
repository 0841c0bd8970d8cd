//! Sector 0: what the disk is and where its areas are.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `HV-DISK\0` |
//! | 8 | 4 | version, 1 |
//! | 12 | 4 | sector size, 512 |
//! | 16 | 8 | disk size in sectors, when formatted |
//! | 24 | 16 | image table extent (start sector, sectors = slots) |
//! | 40 | 16 | VM table extent (start sector, sectors = slots) |
//! | 56 | 16 | management store extent |
//! | 72 | 16 | pool extent |
//! | 88 | 420 | reserved, zero |
//! | 508 | 4 | CRC-32 of bytes 0..508 |

use crate::bytes::{check_seal, get_u32, get_u64, put_u32, put_u64, seal, CRC_AT};
use crate::{Extent, RecordError, IMAGE_SLOTS, POOL_ALIGN, SECTOR_SIZE, VM_SLOTS};

pub const MAGIC: [u8; 8] = *b"HV-DISK\0";
pub const VERSION: u32 = 2;

/// Where [`Superblock::standard`] puts the areas (sectors).
pub const IMAGE_TABLE_START: u64 = 8;
pub const VM_TABLE_START: u64 = 64;
/// The management store: 4 MiB from 1 MiB.
pub const MGMT_STORE_START: u64 = 2048;
pub const MGMT_STORE_SECTORS: u64 = 8192;
/// The pool starts at 5 MiB.
pub const POOL_START: u64 = MGMT_STORE_START + MGMT_STORE_SECTORS;
/// The smallest pool [`Superblock::standard`] accepts: 1 MiB.
pub const MIN_POOL_SECTORS: u64 = 2048;

const FIELDS_END: usize = 88;

/// The decoded superblock. Built by [`Superblock::standard`] or [`Superblock::decode`], so its
/// extents are always consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// The disk's size when it was formatted (the device may be larger, never smaller).
    pub disk_sectors: u64,
    pub image_table: Extent,
    pub vm_table: Extent,
    pub mgmt_store: Extent,
    pub pool: Extent,
}

/// Why sector 0 is not a usable superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    /// No magic: a blank disk, or one that was never ours. The only case that may be formatted.
    NoMagic,
    UnsupportedVersion(u32),
    Checksum {
        stored: u32,
        computed: u32,
    },
    /// The extents are inconsistent (named).
    Layout(&'static str),
    /// [`Superblock::standard`]: the disk is too small for the fixed areas and a 1 MiB pool.
    TooSmall {
        sectors: u64,
    },
    /// The superblock describes a disk larger than the device: truncated or swapped disk.
    LargerThanDevice {
        declared: u64,
        device: u64,
    },
}

impl core::fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMagic => write!(f, "no superblock (blank disk or not ours)"),
            Self::UnsupportedVersion(v) => write!(f, "superblock version {v} is not supported"),
            Self::Checksum { stored, computed } => write!(
                f,
                "superblock checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::Layout(what) => write!(f, "superblock layout inconsistent: {what}"),
            Self::TooSmall { sectors } => write!(
                f,
                "disk of {sectors} sectors is too small (at least {} needed)",
                POOL_START + MIN_POOL_SECTORS
            ),
            Self::LargerThanDevice { declared, device } => write!(
                f,
                "superblock says {declared} sectors but the device has {device}"
            ),
        }
    }
}

impl Superblock {
    /// The layout a new disk of `disk_sectors` sectors gets: the tables and the management
    /// store at fixed places, the pool from 5 MiB to the end (rounded down to 4 KiB).
    pub fn standard(disk_sectors: u64) -> Result<Superblock, SuperblockError> {
        let pool_end = disk_sectors / POOL_ALIGN * POOL_ALIGN;
        if pool_end < POOL_START + MIN_POOL_SECTORS {
            return Err(SuperblockError::TooSmall {
                sectors: disk_sectors,
            });
        }
        Ok(Superblock {
            disk_sectors,
            image_table: Extent::new(IMAGE_TABLE_START, IMAGE_SLOTS as u64),
            vm_table: Extent::new(VM_TABLE_START, VM_SLOTS as u64),
            mgmt_store: Extent::new(MGMT_STORE_START, MGMT_STORE_SECTORS),
            pool: Extent::new(POOL_START, pool_end - POOL_START),
        })
    }

    /// Slots of the image table (at most [`IMAGE_SLOTS`]).
    pub fn image_slots(&self) -> usize {
        self.image_table.sectors as usize
    }

    /// Slots of the VM table (at most [`VM_SLOTS`]).
    pub fn vm_slots(&self) -> usize {
        self.vm_table.sectors as usize
    }

    pub fn encode(&self) -> [u8; SECTOR_SIZE] {
        let mut b = [0u8; SECTOR_SIZE];
        b[..8].copy_from_slice(&MAGIC);
        put_u32(&mut b, 8, VERSION);
        put_u32(&mut b, 12, SECTOR_SIZE as u32);
        put_u64(&mut b, 16, self.disk_sectors);
        self.image_table.encode(&mut b, 24);
        self.vm_table.encode(&mut b, 40);
        self.mgmt_store.encode(&mut b, 56);
        self.pool.encode(&mut b, 72);
        seal(&mut b);
        b
    }

    /// Decodes sector 0. Only [`SuperblockError::NoMagic`] means "not a disk of ours".
    pub fn decode(b: &[u8]) -> Result<Superblock, SuperblockError> {
        if b.len() < SECTOR_SIZE || b[..8] != MAGIC {
            return Err(SuperblockError::NoMagic);
        }
        let version = get_u32(b, 8);
        if version != VERSION {
            return Err(SuperblockError::UnsupportedVersion(version));
        }
        check_seal(b).map_err(|e| match e {
            RecordError::Checksum { stored, computed } => {
                SuperblockError::Checksum { stored, computed }
            }
            _ => SuperblockError::Layout("seal"),
        })?;
        let layout = SuperblockError::Layout;
        if get_u32(b, 12) != SECTOR_SIZE as u32 {
            return Err(layout("sector size is not 512"));
        }
        if b[FIELDS_END..CRC_AT].iter().any(|&x| x != 0) {
            return Err(layout("reserved bytes are not zero"));
        }
        let extent = |at, what| Extent::decode(b, at).ok_or(layout(what));
        let sb = Superblock {
            disk_sectors: get_u64(b, 16),
            image_table: extent(24, "image table wraps")?,
            vm_table: extent(40, "VM table wraps")?,
            mgmt_store: extent(56, "management store wraps")?,
            pool: extent(72, "pool wraps")?,
        };
        sb.check()?;
        Ok(sb)
    }

    /// The consistency [`Superblock::decode`] demands.
    fn check(&self) -> Result<(), SuperblockError> {
        let layout = SuperblockError::Layout;
        if !(1..=IMAGE_SLOTS as u64).contains(&self.image_table.sectors) {
            return Err(layout("image slots"));
        }
        if !(1..=VM_SLOTS as u64).contains(&self.vm_table.sectors) {
            return Err(layout("VM slots"));
        }
        if self.mgmt_store.is_empty() {
            return Err(layout("management store is empty"));
        }
        if self.pool.is_empty() || !self.pool.is_aligned() {
            return Err(layout("pool is empty or not 4 KiB aligned"));
        }
        // Everything after the superblock and inside the disk, nothing shared.
        let disk = Extent::new(1, self.disk_sectors.saturating_sub(1));
        let areas = [self.image_table, self.vm_table, self.mgmt_store, self.pool];
        if areas.iter().any(|a| !a.within(&disk)) {
            return Err(layout("an area lies outside the disk"));
        }
        for (i, a) in areas.iter().enumerate() {
            if areas[i + 1..].iter().any(|b| a.overlaps(b)) {
                return Err(layout("areas overlap"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn standard_layout_round_trips() {
        let sb = Superblock::standard(GIB / 512).unwrap();
        assert_eq!(sb.pool, Extent::new(10240, GIB / 512 - 10240));
        assert_eq!((sb.image_slots(), sb.vm_slots()), (IMAGE_SLOTS, VM_SLOTS));
        let bytes = sb.encode();
        assert_eq!(&bytes[..8], b"HV-DISK\0");
        assert_eq!(Superblock::decode(&bytes), Ok(sb));
    }

    #[test]
    fn odd_sizes_round_the_pool_down_and_tiny_disks_are_refused() {
        let sb = Superblock::standard(20_000 + 5).unwrap();
        assert_eq!(sb.pool.end(), 20_000);
        assert_eq!(sb.disk_sectors, 20_005);
        assert_eq!(
            Superblock::standard(POOL_START + MIN_POOL_SECTORS - 1),
            Err(SuperblockError::TooSmall {
                sectors: POOL_START + MIN_POOL_SECTORS - 1
            })
        );
        assert!(Superblock::standard(POOL_START + MIN_POOL_SECTORS).is_ok());
    }

    #[test]
    fn blank_foreign_and_short_sectors_have_no_magic() {
        assert_eq!(
            Superblock::decode(&[0u8; 512]),
            Err(SuperblockError::NoMagic)
        );
        assert_eq!(
            Superblock::decode(&[0xffu8; 512]),
            Err(SuperblockError::NoMagic)
        );
        let good = Superblock::standard(GIB / 512).unwrap().encode();
        assert_eq!(
            Superblock::decode(&good[..511]),
            Err(SuperblockError::NoMagic)
        );
    }

    #[test]
    fn corruption_is_an_error_not_a_format() {
        let sb = Superblock::standard(GIB / 512).unwrap();
        let mut b = sb.encode();
        b[20] ^= 1;
        assert!(matches!(
            Superblock::decode(&b),
            Err(SuperblockError::Checksum { .. })
        ));
        let mut b = sb.encode();
        put_u32(&mut b, 8, 1);
        assert_eq!(
            Superblock::decode(&b),
            Err(SuperblockError::UnsupportedVersion(1))
        );
    }

    /// Re-seals a hand-edited superblock, to reach the layout checks behind the checksum.
    fn resealed(mut sb: Superblock, edit: impl FnOnce(&mut Superblock)) -> [u8; 512] {
        edit(&mut sb);
        sb.encode()
    }

    #[test]
    fn inconsistent_layouts_are_refused() {
        let sb = Superblock::standard(GIB / 512).unwrap();
        type Edit = fn(&mut Superblock);
        let cases: [(&str, Edit); 7] = [
            ("image slots", |s| s.image_table.sectors = 33),
            ("VM slots", |s| s.vm_table.sectors = 0),
            ("management store is empty", |s| s.mgmt_store.sectors = 0),
            ("pool is empty or not 4 KiB aligned", |s| s.pool.start += 1),
            ("an area lies outside the disk", |s| s.pool.sectors += 8),
            ("an area lies outside the disk", |s| s.image_table.start = 0),
            ("areas overlap", |s| s.vm_table.start = 20),
        ];
        for (why, edit) in cases {
            assert_eq!(
                Superblock::decode(&resealed(sb, edit)),
                Err(SuperblockError::Layout(why))
            );
        }
        let mut b = sb.encode();
        b[100] = 1;
        seal(&mut b);
        assert_eq!(
            Superblock::decode(&b),
            Err(SuperblockError::Layout("reserved bytes are not zero"))
        );
        let mut b = sb.encode();
        put_u64(&mut b, 72, u64::MAX);
        seal(&mut b);
        assert_eq!(
            Superblock::decode(&b),
            Err(SuperblockError::Layout("pool wraps"))
        );
    }
}
