//! Building a disk image on the host (feature `std`): `xtask` makes the disk QEMU attaches.
//!
//! The image is a sparse raw file: the superblock, the two tables (zeros for free slots), the
//! management store left as a hole (zeros), and the images' data packed at the start of the
//! pool, first fit, exactly as the hypervisor would have placed them.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use crate::alloc::{first_fit, AllocError};
use crate::extent::sectors_for;
use crate::{
    Cmdline, Extent, ImageFormat, ImageRecord, Name, RecordError, Superblock, SuperblockError,
    IMAGE_SLOTS, SECTOR_BYTES, SECTOR_SIZE,
};

/// One image to put in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub format: ImageFormat,
    /// The arm64 Linux `Image`, the ELF file or the raw binary.
    pub kernel: Vec<u8>,
    /// Empty: none.
    pub initrd: Vec<u8>,
    pub cmdline: String,
    /// Bytes, a multiple of 2 MiB.
    pub default_ram: u64,
    pub default_vcpus: u32,
    /// The IPA of the VM's RAM.
    pub ipa_base: u64,
    /// Raw images only: where the image goes and where it is entered, from `ipa_base`.
    pub load_offset: u64,
    pub entry_offset: u64,
    /// A non-Linux image that wants the emulated GIC, PL011 and timer.
    pub platform: bool,
}

impl ImageSpec {
    /// An image with the defaults of `cargo xtask run --vm`: no initrd, an empty command line,
    /// 256 MiB and one vCPU, RAM at IPA 0x4000_0000, no offsets, no platform devices.
    pub fn new(name: &str, format: ImageFormat, kernel: Vec<u8>) -> ImageSpec {
        ImageSpec {
            name: name.into(),
            format,
            kernel,
            initrd: Vec::new(),
            cmdline: String::new(),
            default_ram: 256 << 20,
            default_vcpus: 1,
            ipa_base: 0x4000_0000,
            load_offset: 0,
            entry_offset: 0,
            platform: false,
        }
    }
}

/// Why a disk image could not be built.
#[derive(Debug)]
pub enum BuildError {
    Superblock(SuperblockError),
    TooManyImages(usize),
    DuplicateName(String),
    /// A field of the named image is refused (the record's rule is named).
    BadImage {
        name: String,
        why: RecordError,
    },
    /// The images do not fit the pool.
    NoSpace {
        name: String,
        error: AllocError,
    },
    Io(io::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Superblock(e) => write!(f, "{e}"),
            BuildError::TooManyImages(n) => {
                write!(f, "{n} images, but the store holds at most {IMAGE_SLOTS}")
            }
            BuildError::DuplicateName(n) => write!(f, "two images are named `{n}`"),
            BuildError::BadImage { name, why } => write!(f, "image `{name}`: {why}"),
            BuildError::NoSpace { name, error } => {
                write!(f, "image `{name}` does not fit the disk: {error}")
            }
            BuildError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<io::Error> for BuildError {
    fn from(e: io::Error) -> Self {
        BuildError::Io(e)
    }
}

/// Builds a disk image: `DiskBuilder::new(1 << 30).image(spec).write(path)`.
#[derive(Clone, Debug)]
pub struct DiskBuilder {
    size: u64,
    images: Vec<ImageSpec>,
}

impl DiskBuilder {
    /// A disk of `size` bytes (rounded down to whole sectors).
    pub fn new(size: u64) -> DiskBuilder {
        DiskBuilder {
            size,
            images: Vec::new(),
        }
    }

    /// Adds an image; ids are given in order from 1.
    pub fn image(mut self, spec: ImageSpec) -> DiskBuilder {
        self.images.push(spec);
        self
    }

    /// The superblock and the image records, every rule checked, before anything is written.
    pub fn plan(&self) -> Result<(Superblock, Vec<ImageRecord>), BuildError> {
        let sb = Superblock::standard(self.size / SECTOR_BYTES).map_err(BuildError::Superblock)?;
        if self.images.len() > IMAGE_SLOTS {
            return Err(BuildError::TooManyImages(self.images.len()));
        }
        let mut used = Vec::new();
        let mut records: Vec<ImageRecord> = Vec::new();
        for (i, spec) in self.images.iter().enumerate() {
            let bad = |why| BuildError::BadImage {
                name: spec.name.clone(),
                why,
            };
            let name = Name::new(&spec.name).ok_or(bad(RecordError::Field("name")))?;
            if records.iter().any(|r| r.name == name) {
                return Err(BuildError::DuplicateName(spec.name.clone()));
            }
            let mut place = |bytes: u64| -> Result<Extent, BuildError> {
                let sectors = sectors_for(bytes).unwrap_or(u64::MAX);
                if sectors == 0 {
                    return Ok(Extent::EMPTY);
                }
                let e = first_fit(sb.pool, &mut used.clone(), sectors).map_err(|error| {
                    BuildError::NoSpace {
                        name: spec.name.clone(),
                        error,
                    }
                })?;
                used.push(e);
                Ok(e)
            };
            let kernel = place(spec.kernel.len() as u64)?;
            let initrd = place(spec.initrd.len() as u64)?;
            let record = ImageRecord {
                id: i as u32 + 1,
                sequence: i as u64 + 1,
                format: spec.format,
                platform: spec.platform,
                name,
                kernel,
                kernel_size: spec.kernel.len() as u64,
                initrd,
                initrd_size: spec.initrd.len() as u64,
                default_ram: spec.default_ram,
                default_vcpus: spec.default_vcpus,
                ipa_base: spec.ipa_base,
                load_offset: spec.load_offset,
                entry_offset: spec.entry_offset,
                cmdline: Cmdline::new(&spec.cmdline).ok_or(bad(RecordError::Field("cmdline")))?,
            };
            record.validate().map_err(bad)?;
            records.push(record);
        }
        Ok((sb, records))
    }

    /// Writes the disk to `w`, which must read as zeros where nothing is written (a new file,
    /// or a zeroed buffer): free slots, the management store and the free pool are not written.
    pub fn write_to<W: Write + Seek>(&self, w: &mut W) -> Result<(), BuildError> {
        let (sb, records) = self.plan()?;
        let at = |lba: u64| SeekFrom::Start(lba * SECTOR_BYTES);
        for (record, spec) in records.iter().zip(&self.images) {
            for (extent, data) in [(record.kernel, &spec.kernel), (record.initrd, &spec.initrd)] {
                if !data.is_empty() {
                    w.seek(at(extent.start))?;
                    w.write_all(data)?;
                }
            }
        }
        for (slot, record) in records.iter().enumerate() {
            w.seek(at(sb.image_table.start + slot as u64))?;
            w.write_all(&record.encode())?;
        }
        // The superblock last: a disk whose build was cut short has none, and is formatted
        // afresh by the hypervisor rather than trusted.
        w.seek(at(0))?;
        w.write_all(&sb.encode())?;
        w.flush()?;
        Ok(())
    }

    /// Creates (or truncates) `path` as a sparse file of the disk's size and writes the disk.
    pub fn write(&self, path: &Path) -> Result<(), BuildError> {
        self.plan()?;
        let mut file: File = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(self.size / SECTOR_BYTES * SECTOR_BYTES)?;
        self.write_to(&mut file)?;
        file.sync_all()?;
        Ok(())
    }
}

/// Reads the disk image `bytes` back: the superblock and the valid image records, in slot
/// order (for tests and tools).
pub fn read_images(bytes: &[u8]) -> Result<(Superblock, Vec<ImageRecord>), SuperblockError> {
    let sb = Superblock::decode(bytes.get(..SECTOR_SIZE).unwrap_or_default())?;
    let mut out = Vec::new();
    for slot in 0..sb.image_slots() as u64 {
        let at = ((sb.image_table.start + slot) * SECTOR_BYTES) as usize;
        if let Some(sector) = bytes.get(at..at + SECTOR_SIZE) {
            if let crate::Slot::Used(r) = ImageRecord::decode(sector) {
                out.push(r);
            }
        }
    }
    Ok((sb, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const SIZE: u64 = 16 << 20;

    fn disk(builder: &DiskBuilder) -> Vec<u8> {
        let mut c = Cursor::new(vec![0u8; SIZE as usize]);
        builder.write_to(&mut c).unwrap();
        c.into_inner()
    }

    fn data(extent: Extent, size: u64, bytes: &[u8]) -> Vec<u8> {
        let at = (extent.start * SECTOR_BYTES) as usize;
        bytes[at..at + size as usize].to_vec()
    }

    #[test]
    fn images_are_packed_first_fit_and_read_back() {
        let kernel: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let initrd = vec![0xAB; 5000];
        let mut linux = ImageSpec::new("debian", ImageFormat::Linux, kernel.clone());
        linux.initrd = initrd.clone();
        linux.cmdline = "console=ttyAMA0".into();
        let mut raw = ImageSpec::new("counter", ImageFormat::Raw, vec![1, 2, 3]);
        raw.ipa_base = 0x8000_0000;
        raw.default_ram = 16 << 20;
        raw.load_offset = 0x1000;
        raw.entry_offset = 0x1000;
        let bytes = disk(&DiskBuilder::new(SIZE).image(linux).image(raw));
        let (sb, images) = read_images(&bytes).unwrap();
        assert_eq!(sb.disk_sectors, SIZE / 512);
        assert_eq!(images.len(), 2);
        let (a, b) = (&images[0], &images[1]);
        assert_eq!(
            (a.id, a.name.as_str(), a.cmdline.as_str()),
            (1, "debian", "console=ttyAMA0")
        );
        assert_eq!(a.kernel, Extent::new(sb.pool.start, 24));
        assert_eq!(a.initrd, Extent::new(sb.pool.start + 24, 16));
        assert_eq!(b.kernel, Extent::new(sb.pool.start + 40, 8));
        assert_eq!(data(a.kernel, a.kernel_size, &bytes), kernel);
        assert_eq!(data(a.initrd, a.initrd_size, &bytes), initrd);
        assert_eq!(data(b.kernel, b.kernel_size, &bytes), [1, 2, 3]);
        assert_eq!(
            (b.format, b.load_offset, b.initrd),
            (ImageFormat::Raw, 0x1000, Extent::EMPTY)
        );
    }

    #[test]
    fn an_empty_store_is_just_a_superblock() {
        let bytes = disk(&DiskBuilder::new(SIZE));
        let (sb, images) = read_images(&bytes).unwrap();
        assert!(images.is_empty());
        assert_eq!(sb, Superblock::standard(SIZE / 512).unwrap());
        assert!(bytes[512..].iter().all(|&b| b == 0));
    }

    #[test]
    fn mistakes_are_refused_before_writing() {
        let k = || vec![0u8; 100];
        let e = DiskBuilder::new(1 << 20).plan().unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
        let e = DiskBuilder::new(SIZE)
            .image(ImageSpec::new("a", ImageFormat::Elf, k()))
            .image(ImageSpec::new("a", ImageFormat::Elf, k()))
            .plan()
            .unwrap_err();
        assert_eq!(e.to_string(), "two images are named `a`");
        let e = DiskBuilder::new(SIZE)
            .image(ImageSpec::new("big", ImageFormat::Elf, vec![0; 12 << 20]))
            .plan()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("image `big` does not fit the disk"),
            "{e}"
        );
        let mut odd = ImageSpec::new("odd", ImageFormat::Elf, k());
        odd.default_ram = 3 << 20;
        let e = DiskBuilder::new(SIZE).image(odd).plan().unwrap_err();
        assert_eq!(
            e.to_string(),
            "image `odd`: field `default RAM` out of range"
        );
        let e = DiskBuilder::new(SIZE)
            .image(ImageSpec::new("empty", ImageFormat::Raw, vec![]))
            .plan()
            .unwrap_err();
        assert_eq!(e.to_string(), "image `empty`: field `kernel` out of range");
        let mut b = DiskBuilder::new(SIZE);
        for i in 0..=IMAGE_SLOTS {
            b = b.image(ImageSpec::new(&format!("i{i}"), ImageFormat::Elf, k()));
        }
        assert!(matches!(b.plan(), Err(BuildError::TooManyImages(33))));
    }

    #[test]
    fn writes_a_sparse_file() {
        let dir = std::env::temp_dir().join(format!("diskfmt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        DiskBuilder::new(64 << 20)
            .image(ImageSpec::new("x", ImageFormat::Elf, vec![7; 3000]))
            .write(&path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 64 << 20);
        let (_, images) = read_images(&bytes).unwrap();
        assert_eq!(images[0].kernel_size, 3000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
