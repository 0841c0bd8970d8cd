//! A slot of the VM table: one VM that outlives a restart, in one sector.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | tag `HVVM` |
//! | 4 | 4 | handle, non-zero, unique in the table |
//! | 8 | 8 | sequence (store-wide write counter, see `docs/disk.md`) |
//! | 16 | 4 | state: 1 off, 2 running, 3 suspended (`abi::mgmt::VmState`) |
//! | 20 | 4 | image id |
//! | 24 | 32 | resources (`abi::mgmt::Resources` encoding) |
//! | 56 | 32 | name, UTF-8, zero padded |
//! | 88 | 16 | suspend area extent: [`suspend_sectors`] of the RAM |
//! | 104 | 16 | storage partition extent (empty when the storage is 0) |
//! | 120 | 388 | reserved, zero |
//! | 508 | 4 | CRC-32 of bytes 0..508 |

use crate::bytes::{check_seal, get_name, get_u32, get_u64, put_name, put_u32, put_u64, seal};
use crate::extent::sectors_for;
use crate::{Extent, Name, RecordError, Resources, Slot, VmState, SECTOR_BYTES, SECTOR_SIZE};

pub const TAG: [u8; 4] = *b"HVVM";
/// The header at the start of a suspend area that holds the vCPU and device state (up to 8
/// vCPUs and the vGIC fit with room to spare); the RAM follows it.
pub const SUSPEND_HEADER_BYTES: u64 = 64 << 10;
const RESERVED_AT: usize = 120;

/// The size of the suspend area of a VM with `ram` bytes of RAM: the header page, then the
/// RAM. `None` on overflow.
pub const fn suspend_sectors(ram: u64) -> Option<u64> {
    match ram.checked_add(SUSPEND_HEADER_BYTES) {
        Some(bytes) => sectors_for(bytes),
        None => None,
    }
}

/// A VM of the device as the disk keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmRecord {
    pub handle: u32,
    pub sequence: u64,
    pub state: VmState,
    pub image: u32,
    pub resources: Resources,
    pub name: Name,
    /// Where the VM's RAM and vCPU state go when it is suspended (always reserved, so that a
    /// suspend never fails for lack of space).
    pub suspend: Extent,
    /// The VM's storage partition.
    pub storage: Extent,
}

impl VmRecord {
    /// The data extents (suspend area, storage partition) this record holds in the pool.
    pub fn extents(&self) -> [Extent; 2] {
        [self.suspend, self.storage]
    }

    /// The extent sizes `resources` need: (suspend area, storage partition), in sectors.
    pub fn sizes_for(resources: &Resources) -> Option<(u64, u64)> {
        Some((
            suspend_sectors(resources.ram)?,
            sectors_for(resources.storage)?,
        ))
    }

    /// The sector of this record. Call [`VmRecord::validate`] first: a record that does not
    /// validate encodes, but decodes as [`Slot::Corrupt`].
    pub fn encode(&self) -> [u8; SECTOR_SIZE] {
        let mut b = [0u8; SECTOR_SIZE];
        b[..4].copy_from_slice(&TAG);
        put_u32(&mut b, 4, self.handle);
        put_u64(&mut b, 8, self.sequence);
        put_u32(&mut b, 16, self.state as u32);
        put_u32(&mut b, 20, self.image);
        self.resources.encode(&mut b[24..56]);
        put_name(&mut b[56..], &self.name);
        self.suspend.encode(&mut b, 88);
        self.storage.encode(&mut b, 104);
        seal(&mut b);
        b
    }

    /// Decodes a slot: zeros are free, anything else is a valid record or corrupt.
    pub fn decode(b: &[u8]) -> Slot<VmRecord> {
        if b.len() >= SECTOR_SIZE && b[..SECTOR_SIZE].iter().all(|&x| x == 0) {
            return Slot::Free;
        }
        match Self::decode_record(b) {
            Ok(r) => Slot::Used(r),
            Err(e) => Slot::Corrupt(e),
        }
    }

    fn decode_record(b: &[u8]) -> Result<VmRecord, RecordError> {
        if b.len() < SECTOR_SIZE {
            return Err(RecordError::Short);
        }
        if b[..4] != TAG {
            return Err(RecordError::BadTag);
        }
        check_seal(b)?;
        let field = RecordError::Field;
        if b[RESERVED_AT..crate::bytes::CRC_AT].iter().any(|&c| c != 0) {
            return Err(field("reserved"));
        }
        let r = VmRecord {
            handle: get_u32(b, 4),
            sequence: get_u64(b, 8),
            state: VmState::from_u32(get_u32(b, 16)).ok_or(field("state"))?,
            image: get_u32(b, 20),
            resources: Resources::decode(&b[24..56]).map_err(|e| match e {
                abi::mgmt::DecodeError::Field(name) => field(name),
                abi::mgmt::DecodeError::Short => field("resources"),
            })?,
            name: get_name(&b[56..])?,
            suspend: Extent::decode(b, 88).ok_or(field("suspend extent"))?,
            storage: Extent::decode(b, 104).ok_or(field("storage extent"))?,
        };
        r.validate()?;
        Ok(r)
    }

    /// The rules every stored VM obeys (the pool bounds are the store's to check).
    pub fn validate(&self) -> Result<(), RecordError> {
        let field = RecordError::Field;
        if self.handle == 0 {
            return Err(field("handle"));
        }
        self.resources.validate().map_err(|e| match e {
            abi::mgmt::DecodeError::Field(name) => field(name),
            abi::mgmt::DecodeError::Short => field("resources"),
        })?;
        let (suspend, storage) = Self::sizes_for(&self.resources).ok_or(field("resources"))?;
        if self.suspend.sectors != suspend || !self.suspend.is_aligned() {
            return Err(field("suspend extent"));
        }
        if self.storage.sectors != storage
            || !self.storage.is_aligned()
            || (storage == 0 && self.storage != Extent::EMPTY)
        {
            return Err(field("storage extent"));
        }
        if self.suspend.overlaps(&self.storage) {
            return Err(field("storage extent"));
        }
        Ok(())
    }

    /// Bytes of the storage partition the VM sees (the extent may be up to 7 sectors longer).
    pub fn storage_bytes(&self) -> u64 {
        self.resources
            .storage
            .min(self.storage.sectors * SECTOR_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VmRecord {
        let resources = Resources {
            ram: 64 << 20,
            storage: 1 << 20,
            cpu_pct: 20,
            net_pct: 0,
            vcpus: 2,
        };
        let (s, p) = VmRecord::sizes_for(&resources).unwrap();
        VmRecord {
            handle: 7,
            sequence: 9,
            state: VmState::Suspended,
            image: 1,
            resources,
            name: Name::new("web").unwrap(),
            suspend: Extent::new(10240, s),
            storage: Extent::new(10240 + s, p),
        }
    }

    #[test]
    fn suspend_area_is_the_header_page_and_the_ram() {
        assert_eq!(suspend_sectors(64 << 20), Some((64 << 20) / 512 + 128));
        assert_eq!(suspend_sectors(u64::MAX), None);
        assert_eq!(sample().storage.sectors, 2048);
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(VmRecord::decode(&r.encode()), Slot::Used(r));
        let none = VmRecord {
            resources: Resources {
                storage: 0,
                ..r.resources
            },
            storage: Extent::EMPTY,
            state: VmState::PoweredOff,
            ..r
        };
        assert_eq!(VmRecord::decode(&none.encode()), Slot::Used(none));
        assert_eq!(none.storage_bytes(), 0);
        assert_eq!(r.storage_bytes(), 1 << 20);
    }

    #[test]
    fn invalid_records_are_corrupt() {
        let r = sample();
        assert_eq!(VmRecord::decode(&[0u8; 512]), Slot::Free);
        let bad: [(&str, VmRecord); 5] = [
            ("handle", VmRecord { handle: 0, ..r }),
            (
                "suspend extent",
                VmRecord {
                    suspend: Extent::new(10240, 8),
                    ..r
                },
            ),
            (
                "storage extent",
                VmRecord {
                    storage: Extent::new(0, 8),
                    ..r
                },
            ),
            (
                "storage extent",
                VmRecord {
                    storage: r.suspend,
                    ..r
                },
            ),
            (
                "ram",
                VmRecord {
                    resources: Resources {
                        ram: 0,
                        ..r.resources
                    },
                    ..r
                },
            ),
        ];
        for (what, rec) in bad {
            assert_eq!(
                VmRecord::decode(&rec.encode()),
                Slot::Corrupt(RecordError::Field(what)),
                "{what}"
            );
        }
        let mut b = r.encode();
        put_u32(&mut b, 16, 4);
        seal(&mut b);
        assert_eq!(
            VmRecord::decode(&b),
            Slot::Corrupt(RecordError::Field("state"))
        );
        let mut b = r.encode();
        b[200] = 1;
        seal(&mut b);
        assert_eq!(
            VmRecord::decode(&b),
            Slot::Corrupt(RecordError::Field("reserved"))
        );
        let mut b = r.encode();
        b[60] ^= 1;
        assert!(matches!(
            VmRecord::decode(&b),
            Slot::Corrupt(RecordError::Checksum { .. })
        ));
        // An image record in a VM slot is not a VM.
        let mut b = r.encode();
        b[..4].copy_from_slice(b"HVIM");
        assert_eq!(VmRecord::decode(&b), Slot::Corrupt(RecordError::BadTag));
    }
}
