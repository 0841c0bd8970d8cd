//! The store: the hypervisor's view of its disk, mounted from the on-disk format (`diskfmt`).
//!
//! Owns: mounting (or formatting a blank disk), the in-memory copy of the image and VM tables,
//! every update to them in a crash-safe order, extent allocation for VM records, and the byte
//! I/O into the areas (images, suspend areas, storage partitions, the management store).
//!
//! Crash safety rests on one rule: a record is one sector, written in one request (atomic on
//! virtio-blk) after the data it points to was flushed, and followed by a flush. So after a
//! crash each slot holds either its old or its new record, and each record points to data that
//! was on disk before it. Extents a new record needs are never ones a record on disk uses, so
//! no crash can leave two records sharing data (see docs/disk.md for each operation).
//!
//! Must never: change the in-memory tables before the disk write that makes the change real
//! succeeded (so on any error both stay as they were); trust a record without its checksum,
//! its field rules and the pool bounds; hand a VM storage sectors that are not its own data or
//! zeros.

use alloc::vec;
use alloc::vec::Vec;

use diskfmt::alloc::{first_fit, free_sectors};
use diskfmt::{
    Extent, ImageRecord, Name, RecordError, Resources, Slot, Superblock, SuperblockError, VmRecord,
    VmState, SECTOR_BYTES, SECTOR_SIZE,
};

use super::device::BlockDevice;
use super::error::StoreError;

/// Which table a slot belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Images,
    Vms,
}

/// Why a slot's record was not taken at mount; the slot counts as free from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Bad checksum, tag or field.
    Corrupt(RecordError),
    /// An extent lies outside the pool.
    OutsidePool,
    /// An extent overlaps one of a newer record (higher sequence).
    Overlap,
    /// A newer record has the same image id or VM handle.
    Duplicate,
}

/// A record ignored at mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub table: Table,
    pub slot: usize,
    pub why: DropReason,
}

/// What mounting found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The disk had no superblock and was formatted as an empty store.
    pub formatted: bool,
    pub dropped: Vec<Dropped>,
}

/// The two data parts of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePart {
    Kernel,
    Initrd,
}

/// The two data areas of a VM record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmArea {
    /// The header page (vCPU and device state) then the RAM.
    Suspend,
    /// The storage partition.
    Storage,
}

/// What the caller decides about a VM; the store adds the extents and the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmEntry {
    pub handle: u32,
    pub state: VmState,
    pub image: u32,
    pub resources: Resources,
    pub name: Name,
}

/// A mounted disk.
pub struct Store<D: BlockDevice> {
    dev: D,
    sb: Superblock,
    /// Slot i of each table; `None` for free (or dropped) slots.
    images: Vec<Option<ImageRecord>>,
    vms: Vec<Option<VmRecord>>,
    /// The highest sequence on the disk; the next record written gets the one after.
    sequence: u64,
}

/// One valid record met at mount, before the cross-record checks.
struct Candidate {
    table: Table,
    slot: usize,
    key: u32,
    sequence: u64,
    extents: [Extent; 2],
}

impl<D: BlockDevice> Store<D> {
    /// Mounts `dev`: reads the superblock (formatting a disk that has none) and both tables.
    /// On error the device is given back untouched (nothing was written).
    pub fn open(mut dev: D) -> Result<(Store<D>, OpenReport), (D, StoreError)> {
        let sb = match read_superblock(&mut dev) {
            Ok(sb) => Ok((sb, false)),
            Err(StoreError::Superblock(SuperblockError::NoMagic)) => {
                format(&mut dev).map(|sb| (sb, true))
            }
            Err(e) => Err(e),
        };
        let (sb, formatted) = match sb {
            Ok(v) => v,
            Err(e) => return Err((dev, e)),
        };
        let mut store = Store {
            dev,
            sb,
            images: vec![None; sb.image_slots()],
            vms: vec![None; sb.vm_slots()],
            sequence: 0,
        };
        match store.load_tables() {
            Ok(dropped) => Ok((store, OpenReport { formatted, dropped })),
            Err(e) => Err((store.dev, e)),
        }
    }

    /// Reads and checks both tables; keeps, of records that conflict, the newest.
    fn load_tables(&mut self) -> Result<Vec<Dropped>, StoreError> {
        let mut dropped = Vec::new();
        let mut candidates = Vec::new();
        let mut images = vec![0u8; self.images.len() * SECTOR_SIZE];
        self.dev.read(self.sb.image_table.start, &mut images)?;
        let mut vms = vec![0u8; self.vms.len() * SECTOR_SIZE];
        self.dev.read(self.sb.vm_table.start, &mut vms)?;
        for (slot, sector) in images.chunks_exact(SECTOR_SIZE).enumerate() {
            match ImageRecord::decode(sector) {
                Slot::Free => {}
                Slot::Corrupt(e) => dropped.push(Dropped {
                    table: Table::Images,
                    slot,
                    why: DropReason::Corrupt(e),
                }),
                Slot::Used(r) => {
                    candidates.push(Candidate {
                        table: Table::Images,
                        slot,
                        key: r.id,
                        sequence: r.sequence,
                        extents: r.extents(),
                    });
                    self.images[slot] = Some(r);
                }
            }
        }
        for (slot, sector) in vms.chunks_exact(SECTOR_SIZE).enumerate() {
            match VmRecord::decode(sector) {
                Slot::Free => {}
                Slot::Corrupt(e) => dropped.push(Dropped {
                    table: Table::Vms,
                    slot,
                    why: DropReason::Corrupt(e),
                }),
                Slot::Used(r) => {
                    candidates.push(Candidate {
                        table: Table::Vms,
                        slot,
                        key: r.handle,
                        sequence: r.sequence,
                        extents: r.extents(),
                    });
                    self.vms[slot] = Some(r);
                }
            }
        }
        // A later write always carries a higher sequence than anything on the disk, so that it
        // wins any conflict with a record dropped now.
        self.sequence = candidates.iter().map(|c| c.sequence).max().unwrap_or(0);
        candidates.sort_by(|a, b| b.sequence.cmp(&a.sequence).then(a.slot.cmp(&b.slot)));
        let mut kept: Vec<&Candidate> = Vec::new();
        for c in &candidates {
            let why = if c.extents.iter().any(|e| !e.within(&self.sb.pool)) {
                Some(DropReason::OutsidePool)
            } else if kept.iter().any(|k| k.table == c.table && k.key == c.key) {
                Some(DropReason::Duplicate)
            } else if kept.iter().any(|k| {
                k.extents
                    .iter()
                    .any(|a| c.extents.iter().any(|b| a.overlaps(b)))
            }) {
                Some(DropReason::Overlap)
            } else {
                None
            };
            match why {
                None => kept.push(c),
                Some(why) => {
                    match c.table {
                        Table::Images => self.images[c.slot] = None,
                        Table::Vms => self.vms[c.slot] = None,
                    }
                    dropped.push(Dropped {
                        table: c.table,
                        slot: c.slot,
                        why,
                    });
                }
            }
        }
        dropped.sort_by_key(|d| (d.table == Table::Vms, d.slot));
        Ok(dropped)
    }

    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The device, for raw sector I/O.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Makes every write so far durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        Ok(self.dev.flush()?)
    }

    // ---- images ------------------------------------------------------------------------------

    /// The images of the store, by id.
    pub fn images(&self) -> Vec<ImageRecord> {
        let mut v: Vec<ImageRecord> = self.images.iter().flatten().copied().collect();
        v.sort_by_key(|r| r.id);
        v
    }

    pub fn image(&self, id: u32) -> Result<ImageRecord, StoreError> {
        self.image_slot(id)
            .and_then(|s| self.images[s])
            .ok_or(StoreError::NoSuchImage(id))
    }

    fn image_slot(&self, id: u32) -> Option<usize> {
        self.images
            .iter()
            .position(|r| r.is_some_and(|r| r.id == id))
    }

    /// Reads `buf.len()` bytes of an image's kernel or initrd from byte `offset`.
    pub fn read_image(
        &mut self,
        id: u32,
        part: ImagePart,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), StoreError> {
        let r = self.image(id)?;
        let (extent, size) = match part {
            ImagePart::Kernel => (r.kernel, r.kernel_size),
            ImagePart::Initrd => (r.initrd, r.initrd_size),
        };
        self.read_bytes(extent, size, offset, buf)
    }

    /// Erases an image: its data is zeroed, then its slot freed.
    pub fn remove_image(&mut self, id: u32) -> Result<(), StoreError> {
        let slot = self.image_slot(id).ok_or(StoreError::NoSuchImage(id))?;
        let r = self.images[slot].ok_or(StoreError::NoSuchImage(id))?;
        for e in r.extents() {
            self.zero(e)?;
        }
        self.dev.flush()?;
        self.write_slot(self.sb.image_table.start + slot as u64, &[0; SECTOR_SIZE])?;
        self.images[slot] = None;
        Ok(())
    }

    // ---- VM records --------------------------------------------------------------------------

    /// The VM records, by handle.
    pub fn vm_records(&self) -> Vec<VmRecord> {
        let mut v: Vec<VmRecord> = self.vms.iter().flatten().copied().collect();
        v.sort_by_key(|r| r.handle);
        v
    }

    pub fn vm_record(&self, handle: u32) -> Result<VmRecord, StoreError> {
        self.vm_slot(handle)
            .and_then(|s| self.vms[s])
            .ok_or(StoreError::NoSuchVm(handle))
    }

    fn vm_slot(&self, handle: u32) -> Option<usize> {
        self.vms
            .iter()
            .position(|r| r.is_some_and(|r| r.handle == handle))
    }

    /// Creates or updates the record of VM `entry.handle`, allocating its suspend area and
    /// storage partition for its resources. When the RAM changes the suspend area moves (not
    /// for a suspended VM); when the storage changes the partition grows or shrinks in place
    /// if it can, or moves with its data. Storage the VM has not written reads as zeros.
    /// Everything the record no longer uses is zeroed once the new record is on disk.
    pub fn put_vm_record(&mut self, entry: &VmEntry) -> Result<VmRecord, StoreError> {
        let invalid = StoreError::Invalid(RecordError::Field("resources"));
        let (suspend_len, storage_len) = VmRecord::sizes_for(&entry.resources).ok_or(invalid)?;
        let existing = self.vm_slot(entry.handle);
        let old = existing.and_then(|s| self.vms[s]);
        let slot = match existing {
            Some(s) => s,
            None => self
                .vms
                .iter()
                .position(Option::is_none)
                .ok_or(StoreError::TableFull)?,
        };
        let pool = self.sb.pool;
        // New extents avoid everything on the disk, this record's current extents included.
        let mut used = self.used_extents();
        let old_suspend = old.map_or(Extent::EMPTY, |o| o.suspend);
        let suspend = match old {
            Some(o) if o.suspend.sectors == suspend_len => o.suspend,
            Some(o) if o.state == VmState::Suspended => return Err(StoreError::SuspendedResize),
            _ => {
                let e =
                    first_fit(pool, &mut used.clone(), suspend_len).map_err(StoreError::NoSpace)?;
                used.push(e);
                e
            }
        };
        let old_storage = old.map_or(Extent::EMPTY, |o| o.storage);
        let storage = if storage_len == 0 {
            Extent::EMPTY
        } else if !old_storage.is_empty() && old_storage.sectors >= storage_len {
            Extent::new(old_storage.start, storage_len)
        } else {
            let grown = Extent::new(old_storage.start, storage_len);
            let free_after = !old_storage.is_empty()
                && grown.within(&pool)
                && used
                    .iter()
                    .all(|u| *u == old_storage || !u.overlaps(&grown));
            if free_after {
                grown
            } else {
                first_fit(pool, &mut used.clone(), storage_len).map_err(StoreError::NoSpace)?
            }
        };
        let record = VmRecord {
            handle: entry.handle,
            sequence: self.sequence + 1,
            state: entry.state,
            image: entry.image,
            resources: entry.resources,
            name: entry.name,
            suspend,
            storage,
        };
        record.validate().map_err(StoreError::Invalid)?;

        // Data first: the partition's new sectors hold the old data or zeros.
        let moved = !storage.is_empty() && storage.start != old_storage.start;
        if moved {
            let keep = old_storage.sectors.min(storage.sectors);
            self.copy(old_storage.start, storage.start, keep)?;
            self.zero(Extent::new(storage.start + keep, storage.sectors - keep))?;
        } else if storage.sectors > old_storage.sectors {
            self.zero(Extent::new(
                old_storage.end(),
                storage.sectors - old_storage.sectors,
            ))?;
        }
        // Then the record, after the data it points to (and any suspend image the caller
        // wrote) is durable.
        self.dev.flush()?;
        self.write_slot(self.sb.vm_table.start + slot as u64, &record.encode())?;
        self.vms[slot] = Some(record);
        self.sequence += 1;

        // What the record released is zeroed; a failure here leaves stale data in free space
        // only, which is reported but does not undo the update.
        let mut released: heapless::Vec<Extent, 2> = heapless::Vec::new();
        if suspend != old_suspend {
            let _ = released.push(old_suspend);
        }
        if moved {
            let _ = released.push(old_storage);
        } else if old_storage.sectors > storage.sectors {
            let _ = released.push(Extent::new(
                old_storage.start + storage.sectors,
                old_storage.sectors - storage.sectors,
            ));
        }
        for e in released {
            if let Err(err) = self.zero(e).and_then(|()| Ok(self.dev.flush()?)) {
                log::warn!(
                    "disk: zeroing released sectors {}+{} of VM {}: {err}",
                    e.start,
                    e.sectors,
                    entry.handle
                );
            }
        }
        Ok(record)
    }

    /// Deletes the record of VM `handle`: its suspend area and storage partition are zeroed,
    /// then its slot freed.
    pub fn delete_vm_record(&mut self, handle: u32) -> Result<(), StoreError> {
        let slot = self.vm_slot(handle).ok_or(StoreError::NoSuchVm(handle))?;
        let r = self.vms[slot].ok_or(StoreError::NoSuchVm(handle))?;
        for e in r.extents() {
            self.zero(e)?;
        }
        self.dev.flush()?;
        self.write_slot(self.sb.vm_table.start + slot as u64, &[0; SECTOR_SIZE])?;
        self.vms[slot] = None;
        Ok(())
    }

    /// Reads from a VM's suspend area or storage partition at byte `offset`.
    pub fn vm_area_read(
        &mut self,
        handle: u32,
        area: VmArea,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), StoreError> {
        let (extent, size) = self.vm_area(handle, area)?;
        self.read_bytes(extent, size, offset, buf)
    }

    /// Writes to a VM's suspend area or storage partition at byte `offset`. Not durable until
    /// [`Store::flush`] (or the next record update, which flushes first).
    pub fn vm_area_write(
        &mut self,
        handle: u32,
        area: VmArea,
        offset: u64,
        buf: &[u8],
    ) -> Result<(), StoreError> {
        let (extent, size) = self.vm_area(handle, area)?;
        self.write_bytes(extent, size, offset, buf)
    }

    fn vm_area(&self, handle: u32, area: VmArea) -> Result<(Extent, u64), StoreError> {
        let r = self.vm_record(handle)?;
        Ok(match area {
            VmArea::Suspend => (r.suspend, r.suspend.bytes()),
            VmArea::Storage => (r.storage, r.storage_bytes()),
        })
    }

    // ---- the management store and the pool -------------------------------------------------

    /// Size of the management store in bytes.
    pub fn mgmt_store_size(&self) -> u64 {
        self.sb.mgmt_store.bytes()
    }

    pub fn mgmt_store_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let area = self.sb.mgmt_store;
        self.read_bytes(area, area.bytes(), offset, buf)
    }

    /// Writes to the management store; durable when it returns.
    pub fn mgmt_store_write(&mut self, offset: u64, buf: &[u8]) -> Result<(), StoreError> {
        let area = self.sb.mgmt_store;
        self.write_bytes(area, area.bytes(), offset, buf)?;
        Ok(self.dev.flush()?)
    }

    /// Bytes of the pool (images, suspend areas and storage partitions).
    pub fn total_storage(&self) -> u64 {
        self.sb.pool.bytes()
    }

    /// Bytes of the pool no record uses.
    pub fn free_storage(&self) -> u64 {
        free_sectors(self.sb.pool, &mut self.used_extents()) * SECTOR_BYTES
    }

    /// The extent an allocation of `sectors` sectors would get now (first fit); nothing is
    /// reserved. For checking ahead, and for scratch space no record points to (the disk
    /// benchmark).
    pub fn find_free(&self, sectors: u64) -> Result<Extent, StoreError> {
        first_fit(self.sb.pool, &mut self.used_extents(), sectors).map_err(StoreError::NoSpace)
    }

    fn used_extents(&self) -> Vec<Extent> {
        let images = self.images.iter().flatten().flat_map(|r| r.extents());
        let vms = self.vms.iter().flatten().flat_map(|r| r.extents());
        images.chain(vms).filter(|e| !e.is_empty()).collect()
    }

    // ---- sector and byte I/O ---------------------------------------------------------------

    /// Writes one record sector (atomic) and makes it durable.
    fn write_slot(&mut self, lba: u64, sector: &[u8; SECTOR_SIZE]) -> Result<(), StoreError> {
        self.dev.write(lba, sector)?;
        Ok(self.dev.flush()?)
    }

    fn zero(&mut self, e: Extent) -> Result<(), StoreError> {
        if e.is_empty() {
            return Ok(());
        }
        Ok(self.dev.write_zeroes(e.start, e.sectors)?)
    }

    /// Copies `sectors` sectors from `from` to `to` (disjoint runs), through a heap buffer.
    fn copy(&mut self, from: u64, to: u64, sectors: u64) -> Result<(), StoreError> {
        const CHUNK: u64 = 512; // 256 KiB
        let mut buf = vec![0u8; (CHUNK.min(sectors) * SECTOR_BYTES) as usize];
        let mut done = 0;
        while done < sectors {
            let n = CHUNK.min(sectors - done);
            let b = &mut buf[..(n * SECTOR_BYTES) as usize];
            self.dev.read(from + done, b)?;
            self.dev.write(to + done, b)?;
            done += n;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at byte `offset` of `area`, of which the first `size` bytes are
    /// readable. Partial sectors at either end go through a sector buffer.
    fn read_bytes(
        &mut self,
        area: Extent,
        size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), StoreError> {
        let lba = check_bounds(area, size, offset, buf.len())?;
        let mut sector = [0u8; SECTOR_SIZE];
        let (head, body, tail) = split(offset, buf.len());
        let mut lba = lba;
        if head.1 > 0 {
            self.dev.read(lba, &mut sector)?;
            buf[..head.1].copy_from_slice(&sector[head.0..head.0 + head.1]);
            lba += 1;
        }
        if body > 0 {
            self.dev.read(lba, &mut buf[head.1..head.1 + body])?;
            lba += (body / SECTOR_SIZE) as u64;
        }
        if tail > 0 {
            self.dev.read(lba, &mut sector)?;
            let at = head.1 + body;
            buf[at..].copy_from_slice(&sector[..tail]);
        }
        Ok(())
    }

    /// Writes `buf` at byte `offset` of `area` (first `size` bytes writable); partial sectors
    /// are read, patched and written back.
    fn write_bytes(
        &mut self,
        area: Extent,
        size: u64,
        offset: u64,
        buf: &[u8],
    ) -> Result<(), StoreError> {
        let lba = check_bounds(area, size, offset, buf.len())?;
        let mut sector = [0u8; SECTOR_SIZE];
        let (head, body, tail) = split(offset, buf.len());
        let mut lba = lba;
        if head.1 > 0 {
            self.dev.read(lba, &mut sector)?;
            sector[head.0..head.0 + head.1].copy_from_slice(&buf[..head.1]);
            self.dev.write(lba, &sector)?;
            lba += 1;
        }
        if body > 0 {
            self.dev.write(lba, &buf[head.1..head.1 + body])?;
            lba += (body / SECTOR_SIZE) as u64;
        }
        if tail > 0 {
            self.dev.read(lba, &mut sector)?;
            let at = head.1 + body;
            sector[..tail].copy_from_slice(&buf[at..]);
            self.dev.write(lba, &sector)?;
        }
        Ok(())
    }
}

/// Checks that `len` bytes at `offset` lie in the first `size` bytes of `area`; returns the
/// sector holding `offset`.
fn check_bounds(area: Extent, size: u64, offset: u64, len: usize) -> Result<u64, StoreError> {
    let size = size.min(area.bytes());
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(area.start + offset / SECTOR_BYTES),
        _ => Err(StoreError::OutOfBounds { offset, len, size }),
    }
}

/// Splits `len` bytes at `offset` into a head inside the first sector (`(offset in sector,
/// bytes)`, bytes 0 when `offset` is sector aligned and `len` reaches the sector's end), whole
/// sectors (bytes), and a tail in the last sector (bytes).
fn split(offset: u64, len: usize) -> ((usize, usize), usize, usize) {
    let in_sector = (offset % SECTOR_BYTES) as usize;
    let head = if in_sector != 0 || len < SECTOR_SIZE {
        (in_sector, len.min(SECTOR_SIZE - in_sector))
    } else {
        (0, 0)
    };
    let rest = len - head.1;
    let body = rest / SECTOR_SIZE * SECTOR_SIZE;
    (head, body, rest - body)
}

fn read_superblock<D: BlockDevice>(dev: &mut D) -> Result<Superblock, StoreError> {
    let mut sector = [0u8; SECTOR_SIZE];
    dev.read(0, &mut sector)?;
    let sb = Superblock::decode(&sector).map_err(StoreError::Superblock)?;
    if sb.disk_sectors > dev.sectors() {
        return Err(StoreError::Superblock(SuperblockError::LargerThanDevice {
            declared: sb.disk_sectors,
            device: dev.sectors(),
        }));
    }
    Ok(sb)
}

/// Formats `dev` as an empty store: tables and management store zeroed and flushed, then the
/// superblock (so a format cut short leaves a disk without superblock, formatted again later).
fn format<D: BlockDevice>(dev: &mut D) -> Result<Superblock, StoreError> {
    let sb = Superblock::standard(dev.sectors()).map_err(StoreError::Superblock)?;
    for area in [sb.image_table, sb.vm_table, sb.mgmt_store] {
        dev.write_zeroes(area.start, area.sectors)?;
    }
    dev.flush()?;
    dev.write(0, &sb.encode())?;
    dev.flush()?;
    Ok(sb)
}
