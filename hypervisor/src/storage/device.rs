//! The block device seam: what the store needs from a disk. The virtio driver implements it on
//! the hardware (`virtio.rs`); tests implement it in memory ([`MemDisk`]), so the store's
//! logic, crash ordering and rollback are all host-tested.

use super::error::DiskError;
use diskfmt::{SECTOR_BYTES, SECTOR_SIZE};

/// A disk of 512-byte sectors. A single-sector write is atomic (virtio-blk guarantees it);
/// larger writes are not. Data is durable only after [`BlockDevice::flush`].
pub trait BlockDevice {
    /// Capacity in sectors.
    fn sectors(&self) -> u64;
    /// Reads `buf.len() / 512` sectors from `lba`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `buf.len() / 512` sectors at `lba`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), DiskError>;

    /// Writes zeros over `sectors` sectors from `lba` (devices override this with a faster
    /// way: a large zeroed DMA buffer).
    fn write_zeroes(&mut self, lba: u64, sectors: u64) -> Result<(), DiskError> {
        const CHUNK: u64 = 16;
        let zeros = [0u8; CHUNK as usize * SECTOR_SIZE];
        check_range(lba, sectors, self.sectors())?;
        let mut done = 0;
        while done < sectors {
            let n = CHUNK.min(sectors - done);
            self.write(lba + done, &zeros[..(n * SECTOR_BYTES) as usize])?;
            done += n;
        }
        Ok(())
    }
}

/// The number of sectors in `buf_len` bytes, refusing partial sectors.
pub fn whole_sectors(buf_len: usize) -> Result<u64, DiskError> {
    if !buf_len.is_multiple_of(SECTOR_SIZE) {
        return Err(DiskError::Unaligned { len: buf_len });
    }
    Ok((buf_len / SECTOR_SIZE) as u64)
}

/// Checks that `sectors` sectors from `lba` lie on a device of `capacity` sectors.
pub fn check_range(lba: u64, sectors: u64, capacity: u64) -> Result<(), DiskError> {
    match lba.checked_add(sectors) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(DiskError::OutOfRange {
            lba,
            sectors,
            capacity,
        }),
    }
}

/// A disk in memory, for tests: it can fail the n-th next I/O, and it records every write (and
/// flush) so that tests can replay any prefix of them as a crash would leave the disk.
#[cfg(test)]
pub struct MemDisk {
    pub bytes: Vec<u8>,
    pub fault: super::fault::Countdown,
    /// Every write and flush, in order: `Some((lba, data))` for a write, `None` for a flush.
    pub journal: Vec<Option<(u64, Vec<u8>)>>,
    /// Keep the journal (tests that crash at every step); off by default.
    pub journaling: bool,
}

#[cfg(test)]
impl MemDisk {
    pub fn new(bytes: u64) -> Self {
        MemDisk {
            bytes: vec![0; bytes as usize],
            fault: super::fault::Countdown::new(),
            journal: Vec::new(),
            journaling: false,
        }
    }

    fn io(&mut self, lba: u64, len: usize) -> Result<core::ops::Range<usize>, DiskError> {
        let sectors = whole_sectors(len)?;
        check_range(lba, sectors, self.sectors())?;
        if self.fault.hit() {
            return Err(DiskError::Injected);
        }
        let at = (lba * SECTOR_BYTES) as usize;
        Ok(at..at + len)
    }
}

#[cfg(test)]
impl BlockDevice for MemDisk {
    fn sectors(&self) -> u64 {
        self.bytes.len() as u64 / SECTOR_BYTES
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let r = self.io(lba, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        let r = self.io(lba, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        if self.journaling {
            self.journal.push(Some((lba, buf.to_vec())));
        }
        Ok(())
    }

    fn write_zeroes(&mut self, lba: u64, sectors: u64) -> Result<(), DiskError> {
        let len = usize::try_from(sectors.saturating_mul(SECTOR_BYTES)).unwrap_or(usize::MAX);
        let r = self.io(lba, len)?;
        self.bytes[r].fill(0);
        if self.journaling {
            self.journal.push(Some((lba, vec![0; len])));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if self.fault.hit() {
            return Err(DiskError::Injected);
        }
        if self.journaling {
            self.journal.push(None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_alignment_are_checked() {
        let mut d = MemDisk::new(4096);
        let mut buf = [0u8; 512];
        assert_eq!(d.read(7, &mut buf), Ok(()));
        assert_eq!(
            d.read(8, &mut buf),
            Err(DiskError::OutOfRange {
                lba: 8,
                sectors: 1,
                capacity: 8
            })
        );
        assert_eq!(
            d.write(0, &[0u8; 100]),
            Err(DiskError::Unaligned { len: 100 })
        );
        assert!(d.read(u64::MAX, &mut buf).is_err(), "no overflow");
        d.write(2, &[0xAA; 1024]).unwrap();
        d.write_zeroes(3, 5).unwrap();
        assert!(d.bytes[1024..1536].iter().all(|&b| b == 0xAA));
        assert!(d.bytes[1536..].iter().all(|&b| b == 0));
        assert!(d.write_zeroes(3, 6).is_err());
    }
}
