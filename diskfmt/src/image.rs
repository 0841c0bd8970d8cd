//! A slot of the image table: one image of the store, in one sector.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | tag `HVIM` |
//! | 4 | 4 | id, non-zero, unique in the table |
//! | 8 | 8 | sequence (store-wide write counter, see `docs/disk.md`) |
//! | 16 | 4 | format: 1 linux, 2 elf, 3 raw (`abi::mgmt::ImageFormat`) |
//! | 20 | 4 | flags: bit 0 = the emulated platform devices for a non-Linux image |
//! | 24 | 16 | kernel extent (start sector, sectors) |
//! | 40 | 8 | kernel size in bytes, non-zero |
//! | 48 | 16 | initrd extent (empty when the size is 0) |
//! | 64 | 8 | initrd size in bytes |
//! | 72 | 8 | default RAM in bytes (a multiple of 2 MiB) |
//! | 80 | 4 | default vCPUs, 1..=8 |
//! | 84 | 4 | command line length, ≤ 256 |
//! | 88 | 8 | IPA of the RAM |
//! | 96 | 8 | load offset (raw images; 0 otherwise) |
//! | 104 | 8 | entry offset (raw images; 0 otherwise) |
//! | 112 | 32 | name, UTF-8, zero padded |
//! | 144 | 256 | command line, UTF-8, zero padded |
//! | 400 | 108 | reserved, zero |
//! | 508 | 4 | CRC-32 of bytes 0..508 |

use crate::bytes::{check_seal, get_name, get_u32, get_u64, put_name, put_u32, put_u64, seal};
use crate::extent::sectors_for;
use crate::{Extent, ImageFormat, Name, RecordError, Slot, SECTOR_SIZE};
use abi::mgmt::{ImageInfo, MAX_VCPUS, RAM_GRANULE};

pub const TAG: [u8; 4] = *b"HVIM";
/// The longest command line of an image.
pub const CMDLINE_LEN: usize = 256;
/// [`ImageRecord::platform`] in the flags word.
const FLAG_PLATFORM: u32 = 1;
const CMDLINE_AT: usize = 144;
const RESERVED_AT: usize = CMDLINE_AT + CMDLINE_LEN;
/// The IPA space every VM gets (39 bits, docs/architecture.md).
const IPA_LIMIT: u64 = 1 << 39;

/// A command line of at most [`CMDLINE_LEN`] bytes of UTF-8 without control characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cmdline {
    bytes: [u8; CMDLINE_LEN],
    len: u16,
}

impl Cmdline {
    pub const EMPTY: Cmdline = Cmdline {
        bytes: [0; CMDLINE_LEN],
        len: 0,
    };

    /// `None` if longer than [`CMDLINE_LEN`] or holding a control character.
    pub fn new(s: &str) -> Option<Cmdline> {
        if s.len() > CMDLINE_LEN || s.bytes().any(|c| c < 0x20 || c == 0x7f) {
            return None;
        }
        let mut bytes = [0; CMDLINE_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Cmdline {
            bytes,
            len: s.len() as u16,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only built from a `&str` or checked in `new`.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl core::fmt::Debug for Cmdline {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// One image of the store: where its kernel (or program) and initrd are, and how to boot it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: u32,
    pub sequence: u64,
    pub format: ImageFormat,
    /// A non-Linux image that wants the emulated platform devices (bundle flag `PLATFORM`).
    pub platform: bool,
    pub name: Name,
    pub kernel: Extent,
    pub kernel_size: u64,
    pub initrd: Extent,
    pub initrd_size: u64,
    pub default_ram: u64,
    pub default_vcpus: u32,
    /// Where the VM's RAM appears in its IPA space.
    pub ipa_base: u64,
    /// Raw images: where the image goes and where the boot vCPU starts, from `ipa_base`.
    pub load_offset: u64,
    pub entry_offset: u64,
    pub cmdline: Cmdline,
}

impl ImageRecord {
    /// The data extents (kernel, initrd) this record holds in the pool.
    pub fn extents(&self) -> [Extent; 2] {
        [self.kernel, self.initrd]
    }

    /// What `HV_MGMT_IMAGE_LIST` reports.
    pub fn info(&self) -> ImageInfo {
        ImageInfo {
            id: self.id,
            format: self.format,
            size: self.kernel_size,
            initrd_size: self.initrd_size,
            default_ram: self.default_ram,
            name: self.name,
        }
    }

    /// The sector of this record. Call [`ImageRecord::validate`] first: a record that does
    /// not validate encodes, but decodes as [`Slot::Corrupt`].
    pub fn encode(&self) -> [u8; SECTOR_SIZE] {
        let mut b = [0u8; SECTOR_SIZE];
        b[..4].copy_from_slice(&TAG);
        put_u32(&mut b, 4, self.id);
        put_u64(&mut b, 8, self.sequence);
        put_u32(&mut b, 16, self.format as u32);
        put_u32(&mut b, 20, if self.platform { FLAG_PLATFORM } else { 0 });
        self.kernel.encode(&mut b, 24);
        put_u64(&mut b, 40, self.kernel_size);
        self.initrd.encode(&mut b, 48);
        put_u64(&mut b, 64, self.initrd_size);
        put_u64(&mut b, 72, self.default_ram);
        put_u32(&mut b, 80, self.default_vcpus);
        put_u32(&mut b, 84, u32::from(self.cmdline.len));
        put_u64(&mut b, 88, self.ipa_base);
        put_u64(&mut b, 96, self.load_offset);
        put_u64(&mut b, 104, self.entry_offset);
        put_name(&mut b[112..], &self.name);
        b[CMDLINE_AT..CMDLINE_AT + CMDLINE_LEN].copy_from_slice(&self.cmdline.bytes);
        seal(&mut b);
        b
    }

    /// Decodes a slot: zeros are free, anything else is a valid record or corrupt.
    pub fn decode(b: &[u8]) -> Slot<ImageRecord> {
        if b.len() >= SECTOR_SIZE && b[..SECTOR_SIZE].iter().all(|&x| x == 0) {
            return Slot::Free;
        }
        match Self::decode_record(b) {
            Ok(r) => Slot::Used(r),
            Err(e) => Slot::Corrupt(e),
        }
    }

    fn decode_record(b: &[u8]) -> Result<ImageRecord, RecordError> {
        if b.len() < SECTOR_SIZE {
            return Err(RecordError::Short);
        }
        if b[..4] != TAG {
            return Err(RecordError::BadTag);
        }
        check_seal(b)?;
        let field = RecordError::Field;
        let flags = get_u32(b, 20);
        if flags & !FLAG_PLATFORM != 0 {
            return Err(field("flags"));
        }
        let cmdline_len = get_u32(b, 84) as usize;
        if cmdline_len > CMDLINE_LEN
            || b[CMDLINE_AT + cmdline_len..CMDLINE_AT + CMDLINE_LEN]
                .iter()
                .any(|&c| c != 0)
        {
            return Err(field("cmdline"));
        }
        let cmdline = core::str::from_utf8(&b[CMDLINE_AT..CMDLINE_AT + cmdline_len])
            .ok()
            .and_then(Cmdline::new)
            .ok_or(field("cmdline"))?;
        if b[RESERVED_AT..crate::bytes::CRC_AT].iter().any(|&c| c != 0) {
            return Err(field("reserved"));
        }
        let r = ImageRecord {
            id: get_u32(b, 4),
            sequence: get_u64(b, 8),
            format: ImageFormat::from_u32(get_u32(b, 16)).ok_or(field("format"))?,
            platform: flags & FLAG_PLATFORM != 0,
            name: get_name(&b[112..])?,
            kernel: Extent::decode(b, 24).ok_or(field("kernel extent"))?,
            kernel_size: get_u64(b, 40),
            initrd: Extent::decode(b, 48).ok_or(field("initrd extent"))?,
            initrd_size: get_u64(b, 64),
            default_ram: get_u64(b, 72),
            default_vcpus: get_u32(b, 80),
            ipa_base: get_u64(b, 88),
            load_offset: get_u64(b, 96),
            entry_offset: get_u64(b, 104),
            cmdline,
        };
        r.validate()?;
        Ok(r)
    }

    /// The rules every stored image obeys (the pool bounds are the store's to check).
    pub fn validate(&self) -> Result<(), RecordError> {
        let field = RecordError::Field;
        if self.id == 0 {
            return Err(field("id"));
        }
        if self.kernel_size == 0
            || !self.kernel.is_aligned()
            || Some(self.kernel.sectors) != sectors_for(self.kernel_size)
        {
            return Err(field("kernel"));
        }
        if !self.initrd.is_aligned()
            || Some(self.initrd.sectors) != sectors_for(self.initrd_size)
            || (self.initrd_size == 0 && self.initrd != Extent::EMPTY)
        {
            return Err(field("initrd"));
        }
        if self.kernel.overlaps(&self.initrd) {
            return Err(field("initrd"));
        }
        if self.default_ram == 0 || !self.default_ram.is_multiple_of(RAM_GRANULE) {
            return Err(field("default RAM"));
        }
        if !(1..=MAX_VCPUS).contains(&self.default_vcpus) {
            return Err(field("default vCPUs"));
        }
        let ram_end = self.ipa_base.checked_add(self.default_ram);
        if !self.ipa_base.is_multiple_of(4096) || ram_end.is_none_or(|end| end > IPA_LIMIT) {
            return Err(field("IPA base"));
        }
        let offsets_allowed = self.format == ImageFormat::Raw;
        if (!offsets_allowed && (self.load_offset != 0 || self.entry_offset != 0))
            || self.load_offset >= self.default_ram
            || self.entry_offset >= self.default_ram
        {
            return Err(field("load or entry offset"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ImageRecord {
        ImageRecord {
            id: 3,
            sequence: 42,
            format: ImageFormat::Linux,
            platform: false,
            name: Name::new("debian").unwrap(),
            kernel: Extent::new(10240, 16),
            kernel_size: 5000,
            initrd: Extent::new(10256, 8),
            initrd_size: 4096,
            default_ram: 256 << 20,
            default_vcpus: 1,
            ipa_base: 0x4000_0000,
            load_offset: 0,
            entry_offset: 0,
            cmdline: Cmdline::new("console=ttyAMA0 quiet").unwrap(),
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(ImageRecord::decode(&r.encode()), Slot::Used(r));
        let raw = ImageRecord {
            format: ImageFormat::Raw,
            platform: true,
            load_offset: 0x1_0000,
            entry_offset: 0x1_0040,
            initrd: Extent::EMPTY,
            initrd_size: 0,
            cmdline: Cmdline::new(&"x".repeat(CMDLINE_LEN)).unwrap(),
            ..r
        };
        assert_eq!(ImageRecord::decode(&raw.encode()), Slot::Used(raw));
        assert_eq!(r.info().size, 5000);
    }

    #[test]
    fn zeros_are_free_and_garbage_is_corrupt() {
        assert_eq!(ImageRecord::decode(&[0u8; 512]), Slot::Free);
        assert_eq!(
            ImageRecord::decode(&[7u8; 512]),
            Slot::Corrupt(RecordError::BadTag)
        );
        assert_eq!(
            ImageRecord::decode(&[0u8; 100]),
            Slot::Corrupt(RecordError::Short)
        );
        let mut b = sample().encode();
        b[300] ^= 0x40;
        assert!(matches!(
            ImageRecord::decode(&b),
            Slot::Corrupt(RecordError::Checksum { .. })
        ));
    }

    #[test]
    fn invalid_fields_are_refused_even_when_sealed() {
        let r = sample();
        let bad: [(&str, ImageRecord); 9] = [
            ("id", ImageRecord { id: 0, ..r }),
            (
                "kernel",
                ImageRecord {
                    kernel_size: 0,
                    ..r
                },
            ),
            (
                "kernel",
                ImageRecord {
                    kernel_size: 9000,
                    ..r
                },
            ),
            (
                "initrd",
                ImageRecord {
                    initrd_size: 0,
                    ..r
                },
            ),
            (
                "initrd",
                ImageRecord {
                    initrd: Extent::new(10248, 8),
                    ..r
                },
            ),
            (
                "default RAM",
                ImageRecord {
                    default_ram: 3 << 20,
                    ..r
                },
            ),
            (
                "default vCPUs",
                ImageRecord {
                    default_vcpus: 9,
                    ..r
                },
            ),
            (
                "IPA base",
                ImageRecord {
                    ipa_base: (1 << 39) - (2 << 20),
                    ..r
                },
            ),
            (
                "load or entry offset",
                ImageRecord {
                    entry_offset: 4,
                    ..r
                },
            ),
        ];
        for (what, rec) in bad {
            assert_eq!(rec.validate(), Err(RecordError::Field(what)), "{what}");
            assert_eq!(
                ImageRecord::decode(&rec.encode()),
                Slot::Corrupt(RecordError::Field(what))
            );
        }
        // Hand-made fields that `encode` cannot produce.
        let mut b = r.encode();
        put_u32(&mut b, 84, 300);
        seal(&mut b);
        assert_eq!(
            ImageRecord::decode(&b),
            Slot::Corrupt(RecordError::Field("cmdline"))
        );
        let mut b = r.encode();
        b[CMDLINE_AT] = b'\n';
        seal(&mut b);
        assert_eq!(
            ImageRecord::decode(&b),
            Slot::Corrupt(RecordError::Field("cmdline"))
        );
        let mut b = r.encode();
        put_u32(&mut b, 16, 4);
        seal(&mut b);
        assert_eq!(
            ImageRecord::decode(&b),
            Slot::Corrupt(RecordError::Field("format"))
        );
        let mut b = r.encode();
        put_u32(&mut b, 20, 2);
        seal(&mut b);
        assert_eq!(
            ImageRecord::decode(&b),
            Slot::Corrupt(RecordError::Field("flags"))
        );
        let mut b = r.encode();
        b[450] = 1;
        seal(&mut b);
        assert_eq!(
            ImageRecord::decode(&b),
            Slot::Corrupt(RecordError::Field("reserved"))
        );
    }
}
