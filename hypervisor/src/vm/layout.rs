//! Where everything goes in a VM's RAM: the image, the initrd and the device tree.
//!
//! Pure logic, no allocation and no `unsafe`: it compiles for the host and is shared with
//! `xtask` (which includes this file with `#[path]` to refuse a bad `--vm` before QEMU starts),
//! so it only uses `core`.
//!
//! All offsets are from the start of the VM's RAM (`ipa_base`). For Linux guests the RAM base
//! must be 2 MiB aligned ([`LINUX_BASE_ALIGN`]; the hypervisor allocates VM RAM at 2 MiB and
//! Linux VMs use IPA `0x4000_0000`), so "a 2 MiB aligned base address" of the boot protocol is
//! the RAM base itself.
//!
//! # Linux images (`Documentation/arch/arm64/booting.rst`)
//!
//! The 64-byte `Image` header: `code0`/`code1`, `text_offset` @8, `image_size` @16, `flags` @24,
//! three reserved words, the magic `"ARM\x64"` @0x38, and the PE header offset @0x3c. A header
//! with `image_size == 0` comes from a kernel older than 3.17: its `text_offset` is then
//! `0x80000` whatever the field says, and its size is the file's.
//!
//! | what | where |
//! |---|---|
//! | kernel | `text_offset`, entered at its first byte; `max(image_size, file length)` bytes are reserved (`image_size` covers the BSS and the early page tables) |
//! | initrd | the next 2 MiB boundary after the kernel (booting.rst only asks that it lie in the same 1 GiB-aligned 32 GiB window as the kernel, which any VM RAM up to 32 GiB satisfies) |
//! | device tree | the next 64 KiB boundary after the initrd (or the kernel), at most [`DTB_MAX`] bytes (booting.rst's limit is 2 MiB, ours is smaller: the guest tree is a few KiB) |
//!
//! # Raw images (test guests)
//!
//! | what | where |
//! |---|---|
//! | image | `load_offset`, entered at `entry_offset` (inside the image) |
//! | initrd | page aligned, at least [`DTB_GAP`] after the image (room for a stack the guest may put there) |
//! | device tree | 64 KiB aligned above the initrd, or with at least [`DTB_GAP`] free after the image when there is no initrd |
//!
//! # ELF executables ([`plan_elf`])
//!
//! | what | where |
//! |---|---|
//! | segments | each `PT_LOAD` segment at its `p_paddr` (an IPA, see [`elf`]): `p_filesz` bytes from the file, the rest of `p_memsz` zero; every segment inside RAM, no two overlapping |
//! | entry | `e_entry` (see [`elf::ElfImage::entry`]), inside the file contents of an executable segment |
//! | initrd, device tree | as for raw images, above the highest segment end (`p_memsz`, so `.bss` counts) |
//!
//! Every region lies inside RAM and no two overlap; anything else is a [`LayoutError`], and all
//! arithmetic is checked, so hostile values (a `text_offset` near 2^64) are refused, not wrapped.

use core::fmt;

/// ELF executables (the same directory; a submodule so that the `#[path]` users of this file
/// get it too).
#[path = "elf.rs"]
pub mod elf;

use elf::{ElfError, ElfImage};

/// `"ARM\x64"`, little-endian at offset 0x38 of the header.
pub const IMAGE_MAGIC: [u8; 4] = *b"ARM\x64";
pub const IMAGE_MAGIC_OFFSET: usize = 0x38;
/// The size of the arm64 `Image` header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// `text_offset` of kernels whose header has `image_size == 0` (before Linux 3.17).
pub const LEGACY_TEXT_OFFSET: u64 = 0x80000;
/// The kernel's base (RAM base) and the initrd are placed at this alignment.
pub const LINUX_BASE_ALIGN: u64 = 2 << 20;
/// The device tree's alignment, and the free gap left after a raw image before it.
pub const DTB_ALIGN: u64 = 64 << 10;
pub const DTB_GAP: u64 = 64 << 10;
/// The most device tree bytes the hypervisor may write at `dtb_offset`.
pub const DTB_MAX: u64 = 64 << 10;
/// Stage-2 page size: the initrd of a raw image is placed at this alignment.
const PAGE: u64 = 4 << 10;

/// `flags` bit 0: the kernel is big-endian.
pub const FLAG_BIG_ENDIAN: u64 = 1 << 0;
/// `flags` bits 1-2: the kernel's page size (0 unspecified, 1 4K, 2 16K, 3 64K).
pub const FLAG_PAGE_SIZE_SHIFT: u32 = 1;
pub const FLAG_PAGE_SIZE_MASK: u64 = 0b11 << FLAG_PAGE_SIZE_SHIFT;
/// `flags` bit 3: the kernel may be placed anywhere in RAM (else as close to its base as
/// possible; we always place it at the RAM base, which satisfies both).
pub const FLAG_PHYS_ANYWHERE: u64 = 1 << 3;

/// The fields of an arm64 Linux `Image` header that placement needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB aligned base (`0x80000` for legacy headers).
    pub text_offset: u64,
    /// Bytes the kernel occupies from its start, BSS included (the file length for legacy
    /// headers).
    pub image_size: u64,
    pub flags: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Shorter than the 64-byte `Image` header.
    TooShort { len: u64 },
    /// No `"ARM\x64"` at offset 0x38.
    BadMagic,
    /// `flags` bit 0 set.
    BigEndian,
    /// `flags` bits 1-2: 2 (16 KiB) or 3 (64 KiB).
    UnsupportedPageSize { kib: u64 },
    /// The image (for Linux: `text_offset + image_size`) does not fit in RAM.
    ImageTooLarge { need: u64, ram: u64 },
    /// A Linux image is placed by the hypervisor: `load_offset` and `entry_offset` must be 0.
    LinuxWithOffsets,
    /// A raw image's entry point is not inside the image.
    EntryOutsideImage { entry: u64 },
    /// Not enough RAM after the image for the initrd.
    InitrdDoesNotFit { len: u64, start: u64, ram: u64 },
    /// Not enough RAM after the image (and the initrd) for the device tree.
    DtbDoesNotFit { start: u64, ram: u64 },
    /// Two regions overlap (an internal inconsistency; never expected).
    Overlap,
    /// The image is not a valid ELF executable.
    Elf(ElfError),
    /// An ELF segment (program header `index`, IPAs `start..end`) is not inside RAM
    /// (`ram_base..ram_end`).
    SegmentOutsideRam {
        index: usize,
        start: u64,
        end: u64,
        ram_base: u64,
        ram_end: u64,
    },
    /// ELF segments `a` and `b` (program header indices) overlap.
    SegmentsOverlap {
        a: (usize, u64, u64),
        b: (usize, u64, u64),
    },
    /// The ELF entry point is not inside the file contents of any segment.
    ElfEntryOutsideSegments { entry: u64 },
    /// The ELF entry point is inside segment `index`, which is not executable.
    ElfEntryNotExecutable { entry: u64, index: usize },
}

impl From<ElfError> for LayoutError {
    fn from(e: ElfError) -> Self {
        LayoutError::Elf(e)
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LayoutError::*;
        match *self {
            TooShort { len } => write!(
                f,
                "not an arm64 Linux Image: {len} bytes, shorter than the {IMAGE_HEADER_SIZE}-byte header"
            ),
            BadMagic => write!(
                f,
                "not an arm64 Linux Image: bad magic (no \"ARM\\x64\" at offset 0x38)"
            ),
            BigEndian => write!(
                f,
                "big-endian arm64 kernel: only little-endian kernels are supported"
            ),
            UnsupportedPageSize { kib } => write!(
                f,
                "kernel built for {kib} KiB pages: only 4 KiB page kernels are supported \
                 (the stage-2 tables use a 4 KiB granule)"
            ),
            ImageTooLarge { need, ram } => write!(
                f,
                "image needs {} of RAM but the VM has {}",
                Size(need),
                Size(ram)
            ),
            LinuxWithOffsets => write!(
                f,
                "a Linux image is placed by the hypervisor: load and entry offsets must be 0"
            ),
            EntryOutsideImage { entry } => {
                write!(f, "entry point at offset {entry:#x} is outside the image")
            }
            InitrdDoesNotFit { len, start, ram } => write!(
                f,
                "initrd of {} does not fit: it would start at {start:#x} in a VM of {}",
                Size(len),
                Size(ram)
            ),
            DtbDoesNotFit { start, ram } => write!(
                f,
                "no room for the device tree ({} at {start:#x}) in a VM of {}",
                Size(DTB_MAX),
                Size(ram)
            ),
            Overlap => write!(f, "image, initrd and device tree overlap"),
            Elf(e) => write!(f, "{e}"),
            SegmentOutsideRam {
                index,
                start,
                end,
                ram_base,
                ram_end,
            } => write!(
                f,
                "ELF segment {index} (IPA {start:#x}..{end:#x}) lies outside the VM's RAM \
                 ({ram_base:#x}..{ram_end:#x}; set the RAM base and size to cover it)"
            ),
            SegmentsOverlap { a, b } => write!(
                f,
                "ELF segments {} (IPA {:#x}..{:#x}) and {} (IPA {:#x}..{:#x}) overlap",
                a.0, a.1, a.2, b.0, b.1, b.2
            ),
            ElfEntryOutsideSegments { entry } => write!(
                f,
                "ELF entry point {entry:#x} is not inside the file contents of any PT_LOAD segment"
            ),
            ElfEntryNotExecutable { entry, index } => write!(
                f,
                "ELF entry point {entry:#x} is in segment {index}, which is not executable"
            ),
        }
    }
}

/// A byte count for messages: `256 MiB`, `32.1 MiB`, `4 KiB`, `100 bytes`.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n >= 1 << shift {
                let whole = n >> shift;
                let tenth = ((n & ((1 << shift) - 1)) * 10) >> shift;
                return if tenth == 0 && n.is_multiple_of(1 << shift) {
                    write!(f, "{whole} {unit}")
                } else {
                    write!(f, "{whole}.{tenth} {unit} ({n} bytes)")
                };
            }
        }
        write!(f, "{n} bytes")
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(word)
}

/// Reads and checks an arm64 Linux `Image` header.
pub fn parse_image_header(image: &[u8]) -> Result<ImageHeader, LayoutError> {
    if image.len() < IMAGE_HEADER_SIZE {
        return Err(LayoutError::TooShort {
            len: image.len() as u64,
        });
    }
    if image[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4] != IMAGE_MAGIC {
        return Err(LayoutError::BadMagic);
    }
    let mut text_offset = u64_at(image, 8);
    let mut image_size = u64_at(image, 16);
    let mut flags = u64_at(image, 24);
    if image_size == 0 {
        // Before Linux 3.17 the fields were not set: text_offset was 0x80000 and the flags
        // field did not exist (little-endian, 4 KiB is what we can run anyway).
        text_offset = LEGACY_TEXT_OFFSET;
        image_size = image.len() as u64;
        flags = 0;
    }
    if flags & FLAG_BIG_ENDIAN != 0 {
        return Err(LayoutError::BigEndian);
    }
    match (flags & FLAG_PAGE_SIZE_MASK) >> FLAG_PAGE_SIZE_SHIFT {
        0 | 1 => {}
        2 => return Err(LayoutError::UnsupportedPageSize { kib: 16 }),
        _ => return Err(LayoutError::UnsupportedPageSize { kib: 64 }),
    }
    Ok(ImageHeader {
        text_offset,
        image_size,
        flags,
    })
}

/// Where a VM's image, initrd and device tree go (offsets from the RAM base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestLayout {
    /// Where the image's first byte is copied.
    pub image_offset: u64,
    /// The end of the RAM the image owns: for Linux `image_offset + max(image_size, file
    /// length)`, for raw images `image_offset + length`, for ELF the highest segment end (and
    /// `image_offset` the lowest segment start).
    pub image_end: u64,
    /// The boot vCPU's first instruction.
    pub entry_offset: u64,
    /// `[start, end)` of the initrd, if there is one (`initrd_len > 0`).
    pub initrd: Option<(u64, u64)>,
    /// Where the device tree goes; at most `dtb_max` bytes.
    pub dtb_offset: u64,
    pub dtb_max: u64,
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// The device tree and initrd of a raw or ELF image whose last byte is before `after_image`:
/// the device tree 64 KiB aligned with at least [`DTB_GAP`] free before it, the initrd (page
/// aligned) after the device tree's [`DTB_MAX`] bytes.
fn place_after_image(
    after_image: u64,
    ram_size: u64,
    initrd_len: u64,
) -> Result<(Option<(u64, u64)>, u64), LayoutError> {
    let dtb_too_far = |start: u64| LayoutError::DtbDoesNotFit {
        start,
        ram: ram_size,
    };
    let initrd_too_far = |start: u64| LayoutError::InitrdDoesNotFit {
        len: initrd_len,
        start,
        ram: ram_size,
    };
    let fits = |start: u64, size: u64| start.checked_add(size).filter(|&e| e <= ram_size);
    // The guest may put its stack in the gap after the image; the initrd comes next, then the
    // device tree above both (issue 6: "the DTB above the image and its initrd").
    let above_gap = after_image.checked_add(DTB_GAP);
    let initrd = if initrd_len == 0 {
        None
    } else {
        let start = above_gap
            .and_then(|x| align_up(x, PAGE))
            .ok_or(initrd_too_far(u64::MAX))?;
        let end = fits(start, initrd_len).ok_or(initrd_too_far(start))?;
        Some((start, end))
    };
    let dtb = initrd
        .map_or(above_gap, |(_, end)| Some(end))
        .and_then(|x| align_up(x, DTB_ALIGN))
        .ok_or(dtb_too_far(u64::MAX))?;
    fits(dtb, DTB_MAX).ok_or(dtb_too_far(dtb))?;
    Ok((initrd, dtb))
}

/// Places an ELF executable (and an initrd of `initrd_len` bytes, 0 for none, and the device
/// tree) in `ram_size` bytes of RAM at IPA `ram_base`, as the module documentation says. The
/// [`GuestLayout`]'s offsets are from `ram_base`: `image_offset..image_end` spans from the
/// lowest segment start to the highest segment end (`p_memsz`), and is not copied as one
/// block: [`load_elf`] copies the segments. Checks, each with its own error, in this order:
/// the ELF file itself, every segment inside RAM, no two segments overlapping, the entry point
/// inside an executable segment's file contents, room for the device tree and the initrd.
pub fn plan_elf(
    ram_base: u64,
    ram_size: u64,
    image: &[u8],
    initrd_len: u64,
) -> Result<GuestLayout, LayoutError> {
    let elf = ElfImage::parse(image)?;
    // Saturating: a RAM range past 2^64 only makes the check below more lenient than the
    // bundle (which refuses it) anyway.
    let ram_end = ram_base.saturating_add(ram_size);
    let (mut lowest, mut highest) = (u64::MAX, 0);
    for s in elf.segments() {
        if s.ipa < ram_base || s.end() > ram_end {
            return Err(LayoutError::SegmentOutsideRam {
                index: s.index,
                start: s.ipa,
                end: s.end(),
                ram_base,
                ram_end,
            });
        }
        lowest = lowest.min(s.ipa);
        highest = highest.max(s.end());
    }
    for (i, a) in elf.segments().enumerate() {
        for b in elf.segments().skip(i + 1) {
            if overlaps((a.ipa, a.end()), (b.ipa, b.end())) {
                return Err(LayoutError::SegmentsOverlap {
                    a: (a.index, a.ipa, a.end()),
                    b: (b.index, b.ipa, b.end()),
                });
            }
        }
    }
    let entry = elf.entry();
    match elf
        .segments()
        .find(|s| entry >= s.ipa && entry - s.ipa < s.filesz)
    {
        None => return Err(LayoutError::ElfEntryOutsideSegments { entry }),
        Some(s) if !s.executable() => {
            return Err(LayoutError::ElfEntryNotExecutable {
                entry,
                index: s.index,
            })
        }
        Some(_) => {}
    }
    // Offsets from the RAM base; every segment is inside RAM, so none underflows.
    let (image_offset, image_end) = (lowest - ram_base, highest - ram_base);
    let (initrd, dtb_offset) = place_after_image(image_end, ram_size, initrd_len)?;
    // Belt and braces, as in `plan`: no segment meets the device tree or the initrd.
    let dtb_region = (dtb_offset, dtb_offset + DTB_MAX);
    for s in elf.segments() {
        let r = (s.ipa - ram_base, s.end() - ram_base);
        if overlaps(r, dtb_region) || initrd.is_some_and(|i| overlaps(r, i)) {
            return Err(LayoutError::Overlap);
        }
    }
    Ok(GuestLayout {
        image_offset,
        image_end,
        entry_offset: entry - ram_base,
        initrd,
        dtb_offset,
        dtb_max: DTB_MAX,
    })
}

/// Copies the file contents of every segment of the ELF executable `image` into `ram` (the
/// VM's RAM, at IPA `ram_base`), where [`plan_elf`] checked they go. The rest of each segment
/// (`.bss`) is left as it is: VM RAM is zeroed before an image is loaded. Refuses (copying
/// nothing more) what [`plan_elf`] would refuse, rather than writing out of bounds.
pub fn load_elf(ram: &mut [u8], ram_base: u64, image: &[u8]) -> Result<(), LayoutError> {
    load_elf_with(ram, ram_base, image, |to, from| to.copy_from_slice(from))
}

/// As [`load_elf`], copying each segment with `copy(to, from)` (the target's fast copy).
pub fn load_elf_with(
    ram: &mut [u8],
    ram_base: u64,
    image: &[u8],
    copy: impl Fn(&mut [u8], &[u8]),
) -> Result<(), LayoutError> {
    let elf = ElfImage::parse(image)?;
    for s in elf.segments() {
        let outside = LayoutError::SegmentOutsideRam {
            index: s.index,
            start: s.ipa,
            end: s.end(),
            ram_base,
            ram_end: ram_base.saturating_add(ram.len() as u64),
        };
        let contents = elf.contents(&s);
        let target = s
            .ipa
            .checked_sub(ram_base)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| ram.get_mut(o..o.checked_add(contents.len())?))
            .ok_or(outside)?;
        copy(target, contents);
    }
    Ok(())
}

/// Places `image` (and an initrd of `initrd_len` bytes, 0 for none, and the device tree) in
/// `ram_size` bytes of RAM, as the module documentation says. For Linux (`linux`), the image
/// header is checked and `load_offset`/`entry_offset` must be 0; for raw images they say where
/// the image goes and where it is entered.
pub fn plan(
    ram_size: u64,
    image: &[u8],
    linux: bool,
    load_offset: u64,
    entry_offset: u64,
    initrd_len: u64,
) -> Result<GuestLayout, LayoutError> {
    let len = image.len() as u64;
    let (image_offset, image_end, entry, after_image) = if linux {
        let header = parse_image_header(image)?;
        if load_offset != 0 || entry_offset != 0 {
            return Err(LayoutError::LinuxWithOffsets);
        }
        let start = header.text_offset;
        let need =
            start
                .checked_add(header.image_size.max(len))
                .ok_or(LayoutError::ImageTooLarge {
                    need: u64::MAX,
                    ram: ram_size,
                })?;
        if need > ram_size {
            return Err(LayoutError::ImageTooLarge {
                need,
                ram: ram_size,
            });
        }
        (start, need, start, need)
    } else {
        let end = load_offset
            .checked_add(len)
            .ok_or(LayoutError::ImageTooLarge {
                need: u64::MAX,
                ram: ram_size,
            })?;
        if end > ram_size {
            return Err(LayoutError::ImageTooLarge {
                need: end,
                ram: ram_size,
            });
        }
        if entry_offset < load_offset || entry_offset >= end {
            return Err(LayoutError::EntryOutsideImage {
                entry: entry_offset,
            });
        }
        (load_offset, end, entry_offset, end)
    };

    let dtb_too_far = |start: u64| LayoutError::DtbDoesNotFit {
        start,
        ram: ram_size,
    };
    let initrd_too_far = |start: u64| LayoutError::InitrdDoesNotFit {
        len: initrd_len,
        start,
        ram: ram_size,
    };
    let fits = |start: u64, size: u64| start.checked_add(size).filter(|&e| e <= ram_size);

    let (initrd, dtb_offset) = if linux {
        let initrd = if initrd_len == 0 {
            None
        } else {
            let start = align_up(after_image, LINUX_BASE_ALIGN).ok_or(initrd_too_far(u64::MAX))?;
            let end = fits(start, initrd_len).ok_or(initrd_too_far(start))?;
            Some((start, end))
        };
        let after = initrd.map_or(after_image, |(_, end)| end);
        let dtb = align_up(after, DTB_ALIGN).ok_or(dtb_too_far(u64::MAX))?;
        fits(dtb, DTB_MAX).ok_or(dtb_too_far(dtb))?;
        (initrd, dtb)
    } else {
        place_after_image(after_image, ram_size, initrd_len)?
    };

    // Belt and braces: the placement above cannot produce overlaps, and this says so.
    let image_region = (image_offset, image_end);
    let dtb_region = (dtb_offset, dtb_offset + DTB_MAX);
    if overlaps(image_region, dtb_region)
        || initrd.is_some_and(|r| overlaps(r, image_region) || overlaps(r, dtb_region))
    {
        return Err(LayoutError::Overlap);
    }
    Ok(GuestLayout {
        image_offset,
        image_end,
        entry_offset: entry,
        initrd,
        dtb_offset,
        dtb_max: DTB_MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A Linux Image header (plus `extra` bytes) with the given fields.
    fn linux_image(text_offset: u64, image_size: u64, flags: u64, extra: usize) -> [u8; 256] {
        assert!(IMAGE_HEADER_SIZE + extra <= 256);
        let mut b = [0u8; 256];
        b[0..4].copy_from_slice(&[0x4d, 0x5a, 0x40, 0xfa]); // "MZ" + a branch, as Debian's
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&flags.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(&IMAGE_MAGIC);
        b
    }

    /// Debian 12's arm64 kernel: text_offset 0, image_size 0x2010000, flags 0xa (4K, anywhere).
    fn debian() -> [u8; 256] {
        linux_image(0, 0x0201_0000, 0xa, 0)
    }

    #[test]
    fn parses_debians_header() {
        assert_eq!(
            parse_image_header(&debian()),
            Ok(ImageHeader {
                text_offset: 0,
                image_size: 0x0201_0000,
                flags: 0xa
            })
        );
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(
            parse_image_header(&[0u8; 63]),
            Err(LayoutError::TooShort { len: 63 })
        );
        assert_eq!(
            parse_image_header(&[]),
            Err(LayoutError::TooShort { len: 0 })
        );
        let mut b = debian();
        b[0x3b] = 0x65;
        assert_eq!(parse_image_header(&b), Err(LayoutError::BadMagic));
        assert_eq!(parse_image_header(&[0u8; 64]), Err(LayoutError::BadMagic));
        // The magic at another offset (the ELF-style start of the file) does not count.
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&IMAGE_MAGIC);
        assert_eq!(parse_image_header(&b), Err(LayoutError::BadMagic));
        assert_eq!(
            parse_image_header(&linux_image(0, MIB, 0b1, 0)),
            Err(LayoutError::BigEndian)
        );
        assert_eq!(
            parse_image_header(&linux_image(0, MIB, 0b1011, 0)),
            Err(LayoutError::BigEndian)
        );
        assert_eq!(
            parse_image_header(&linux_image(0, MIB, 2 << 1, 0)),
            Err(LayoutError::UnsupportedPageSize { kib: 16 })
        );
        assert_eq!(
            parse_image_header(&linux_image(0, MIB, 3 << 1, 0)),
            Err(LayoutError::UnsupportedPageSize { kib: 64 })
        );
        // Unspecified (0) and 4 KiB (1) page sizes are fine, with or without bit 3.
        for flags in [0, 1 << 1, 1 << 3, (1 << 1) | (1 << 3)] {
            assert!(parse_image_header(&linux_image(0, MIB, flags, 0)).is_ok());
        }
    }

    #[test]
    fn legacy_header_uses_0x80000_and_the_file_size() {
        // image_size 0: text_offset and flags are ignored (they were not defined then).
        let b = linux_image(0x1234, 0, 0b111, 0);
        assert_eq!(
            parse_image_header(&b),
            Ok(ImageHeader {
                text_offset: LEGACY_TEXT_OFFSET,
                image_size: 256,
                flags: 0
            })
        );
        let l = plan(16 * MIB, &b, true, 0, 0, 0).unwrap();
        assert_eq!(
            (l.image_offset, l.image_end, l.entry_offset),
            (0x80000, 0x80100, 0x80000)
        );
        assert_eq!(l.dtb_offset, 0x90000);
    }

    #[test]
    fn linux_placement_exact_numbers() {
        // Debian's kernel with a 1.5 MiB initramfs in 256 MiB.
        let l = plan(256 * MIB, &debian(), true, 0, 0, 0x18_0000).unwrap();
        assert_eq!(
            l,
            GuestLayout {
                image_offset: 0,
                image_end: 0x0201_0000,
                entry_offset: 0,
                initrd: Some((0x0220_0000, 0x0238_0000)),
                dtb_offset: 0x0238_0000,
                dtb_max: 64 << 10,
            }
        );
        // No initrd: the device tree follows the kernel at 64 KiB.
        let l = plan(256 * MIB, &debian(), true, 0, 0, 0).unwrap();
        assert_eq!((l.initrd, l.dtb_offset), (None, 0x0201_0000));
        // An odd initrd end is rounded up to 64 KiB for the device tree.
        let l = plan(256 * MIB, &debian(), true, 0, 0, 1).unwrap();
        assert_eq!(l.initrd, Some((0x0220_0000, 0x0220_0001)));
        assert_eq!(l.dtb_offset, 0x0221_0000);
        // A text_offset is honoured; the kernel is entered at its first byte.
        let l = plan(
            64 * MIB,
            &linux_image(0x20_0000, 3 * MIB, 2, 0),
            true,
            0,
            0,
            10,
        )
        .unwrap();
        assert_eq!(
            (l.image_offset, l.image_end, l.entry_offset),
            (2 * MIB, 5 * MIB, 2 * MIB)
        );
        assert_eq!(l.initrd, Some((6 * MIB, 6 * MIB + 10)));
        assert_eq!(l.dtb_offset, 6 * MIB + 0x10000);
        // image_size smaller than the file (a broken header): the file length wins.
        let l = plan(16 * MIB, &linux_image(0, 100, 2, 0), true, 0, 0, 0).unwrap();
        assert_eq!(l.image_end, 256);
        assert_eq!(l.dtb_offset, 0x10000);
    }

    #[test]
    fn linux_exact_fit_and_one_byte_short() {
        // kernel 2 MiB, initrd 1 MiB at 2 MiB, DTB at 3 MiB: 3 MiB + 64 KiB is exactly enough.
        let img = linux_image(0, 2 * MIB, 2, 0);
        let ram = 3 * MIB + DTB_MAX;
        let l = plan(ram, &img, true, 0, 0, MIB).unwrap();
        assert_eq!(l.initrd, Some((2 * MIB, 3 * MIB)));
        assert_eq!(l.dtb_offset, 3 * MIB);
        assert_eq!(
            plan(ram - 1, &img, true, 0, 0, MIB),
            Err(LayoutError::DtbDoesNotFit {
                start: 3 * MIB,
                ram: ram - 1
            })
        );
        assert_eq!(
            plan(3 * MIB - 1, &img, true, 0, 0, MIB),
            Err(LayoutError::InitrdDoesNotFit {
                len: MIB,
                start: 2 * MIB,
                ram: 3 * MIB - 1
            })
        );
        // The kernel alone exactly filling RAM: no room for the device tree.
        assert_eq!(
            plan(2 * MIB, &img, true, 0, 0, 0),
            Err(LayoutError::DtbDoesNotFit {
                start: 2 * MIB,
                ram: 2 * MIB
            })
        );
    }

    #[test]
    fn linux_image_larger_than_ram() {
        assert_eq!(
            plan(32 * MIB, &debian(), true, 0, 0, 0),
            Err(LayoutError::ImageTooLarge {
                need: 0x0201_0000,
                ram: 32 * MIB
            })
        );
        // text_offset counts too.
        assert_eq!(
            plan(4 * MIB, &linux_image(3 * MIB, 2 * MIB, 2, 0), true, 0, 0, 0),
            Err(LayoutError::ImageTooLarge {
                need: 5 * MIB,
                ram: 4 * MIB
            })
        );
        assert_eq!(
            plan(0, &debian(), true, 0, 0, 0),
            Err(LayoutError::ImageTooLarge {
                need: 0x0201_0000,
                ram: 0
            })
        );
    }

    #[test]
    fn linux_header_errors_come_first() {
        // A bad image is refused as such, even when it would not fit either.
        assert_eq!(
            plan(0, &[0u8; 100], true, 0, 0, 0),
            Err(LayoutError::BadMagic)
        );
        assert_eq!(
            plan(256 * MIB, &debian(), true, 0x1000, 0, 0),
            Err(LayoutError::LinuxWithOffsets)
        );
        assert_eq!(
            plan(256 * MIB, &debian(), true, 0, 4, 0),
            Err(LayoutError::LinuxWithOffsets)
        );
    }

    #[test]
    fn huge_values_do_not_wrap() {
        let max = u64::MAX;
        // text_offset + image_size overflows.
        assert_eq!(
            plan(max, &linux_image(max - 10, 100, 2, 0), true, 0, 0, 0),
            Err(LayoutError::ImageTooLarge {
                need: max,
                ram: max
            })
        );
        // Image ends near 2^64 in a RAM of 2^64 - 1: the 64 KiB boundary after it exists, but
        // the device tree's end (2^64) does not.
        let img = linux_image(0, max - 0x1_fffe, 2, 0);
        assert_eq!(
            plan(max, &img, true, 0, 0, 0),
            Err(LayoutError::DtbDoesNotFit {
                start: 0xffff_ffff_ffff_0000,
                ram: max
            })
        );
        // The same for an initrd: its start exists, its end does not.
        let img = linux_image(0, max - 3 * MIB + 1, 2, 0);
        assert_eq!(
            plan(max, &img, true, 0, 0, 2 * MIB),
            Err(LayoutError::InitrdDoesNotFit {
                len: 2 * MIB,
                start: 0xffff_ffff_ffe0_0000,
                ram: max
            })
        );
        let l = plan(max, &img, true, 0, 0, 5).unwrap();
        assert_eq!(
            l.initrd,
            Some((0xffff_ffff_ffe0_0000, 0xffff_ffff_ffe0_0005))
        );
        assert_eq!(l.dtb_offset, 0xffff_ffff_ffe1_0000);
        // Aligning the end of an image that ends just below 2^64 would wrap.
        let img = linux_image(0, max - 5, 2, 0);
        assert!(matches!(
            plan(max, &img, true, 0, 0, 1),
            Err(LayoutError::InitrdDoesNotFit {
                start: u64::MAX,
                ..
            })
        ));
        assert!(matches!(
            plan(max, &img, true, 0, 0, 0),
            Err(LayoutError::DtbDoesNotFit {
                start: u64::MAX,
                ..
            })
        ));
        // A huge initrd.
        assert!(matches!(
            plan(256 * MIB, &debian(), true, 0, 0, max),
            Err(LayoutError::InitrdDoesNotFit { len: u64::MAX, .. })
        ));
        // Raw images: load_offset + length overflows, or the DTB gap does.
        assert_eq!(
            plan(max, &[0u8; 16], false, max - 4, max - 4, 0),
            Err(LayoutError::ImageTooLarge {
                need: max,
                ram: max
            })
        );
        assert!(matches!(
            plan(max, &[0u8; 16], false, max - 20, max - 20, 0),
            Err(LayoutError::DtbDoesNotFit { .. })
        ));
        assert!(matches!(
            plan(max, &[0u8; 16], false, 0, 0, max),
            Err(LayoutError::InitrdDoesNotFit { .. })
        ));
    }

    #[test]
    fn raw_placement_matches_the_test_guests() {
        // A test guest linked at 0x8000_1000 in RAM at 0x8000_0000: load 0x1000.
        let img = [0u8; 0x3000];
        let l = plan(16 * MIB, &img, false, 0x1000, 0x1008, 0).unwrap();
        assert_eq!(
            l,
            GuestLayout {
                image_offset: 0x1000,
                image_end: 0x4000,
                entry_offset: 0x1008,
                initrd: None,
                dtb_offset: 0x20000, // 0x4000 + 64 KiB, rounded up to 64 KiB
                dtb_max: DTB_MAX,
            }
        );
        // An image ending on a 64 KiB boundary still gets a full 64 KiB gap.
        let l = plan(16 * MIB, &[0u8; 0x10000], false, 0, 0, 0).unwrap();
        assert_eq!(l.dtb_offset, 0x20000);
        // The initrd takes the place after the 64 KiB gap; the device tree goes above it.
        let l = plan(16 * MIB, &img, false, 0x1000, 0x1008, 5000).unwrap();
        assert_eq!(l.initrd, Some((0x14000, 0x14000 + 5000)));
        assert_eq!(l.dtb_offset, 0x20000);
        let l = plan(16 * MIB, &img, false, 0x1000, 0x1008, 0x10000).unwrap();
        assert_eq!(l.initrd, Some((0x14000, 0x24000)));
        assert_eq!(l.dtb_offset, 0x30000);
    }

    #[test]
    fn raw_errors() {
        assert_eq!(
            plan(0x1000, &[0u8; 0x1001], false, 0, 0, 0),
            Err(LayoutError::ImageTooLarge {
                need: 0x1001,
                ram: 0x1000
            })
        );
        assert_eq!(
            plan(MIB, &[0u8; 16], false, 0x100, 0xff, 0),
            Err(LayoutError::EntryOutsideImage { entry: 0xff })
        );
        assert_eq!(
            plan(MIB, &[0u8; 16], false, 0x100, 0x110, 0),
            Err(LayoutError::EntryOutsideImage { entry: 0x110 })
        );
        assert_eq!(
            plan(MIB, &[], false, 0, 0, 0),
            Err(LayoutError::EntryOutsideImage { entry: 0 })
        );
        // 0x1000 + 16 bytes, DTB at 0x20000 needs 0x30000 bytes.
        assert_eq!(
            plan(0x2ffff, &[0u8; 16], false, 0x1000, 0x1000, 0),
            Err(LayoutError::DtbDoesNotFit {
                start: 0x20000,
                ram: 0x2ffff
            })
        );
        assert!(plan(0x30000, &[0u8; 16], false, 0x1000, 0x1000, 0).is_ok());
        // The initrd fits below the device tree (0x12000..) but pushes it out of RAM.
        assert_eq!(
            plan(0x30000, &[0u8; 16], false, 0x1000, 0x1000, 0xf000),
            Err(LayoutError::DtbDoesNotFit {
                start: 0x30000,
                ram: 0x30000
            })
        );
        assert_eq!(
            plan(0x20000, &[0u8; 16], false, 0x1000, 0x1000, 0xf000),
            Err(LayoutError::InitrdDoesNotFit {
                len: 0xf000,
                start: 0x12000,
                ram: 0x20000
            })
        );
        // A raw image needs no header at all.
        assert!(plan(MIB, b"\x00\x00\x00\x14", false, 0, 0, 0).is_ok());
    }

    mod elf_images {
        use super::super::elf::testelf::{build, load, Seg};
        use super::super::elf::{ElfError, PF_R, PF_W, PF_X};
        use super::super::*;
        use super::MIB;
        extern crate std;
        use std::string::ToString;
        use std::vec;

        const BASE: u64 = 0x8000_0000;
        const RX: u32 = PF_R | PF_X;
        const RW: u32 = PF_R | PF_W;

        /// A test guest: stacks and .bss (NOBITS) at the base, text at +0x41000, rodata after.
        fn guest() -> std::vec::Vec<u8> {
            build(
                &[
                    load(BASE, &[], 0x4_08a0, RW),
                    load(BASE + 0x4_1000, &[0x14; 0x100], 0x100, RX),
                    load(BASE + 0x4_1100, &[0x55; 0x40], 0x40, PF_R),
                ],
                BASE + 0x4_1000,
            )
        }

        #[test]
        fn places_a_test_guest() {
            let l = plan_elf(BASE, 16 * MIB, &guest(), 0).unwrap();
            assert_eq!(
                l,
                GuestLayout {
                    image_offset: 0,
                    image_end: 0x4_1140,
                    entry_offset: 0x4_1000,
                    initrd: None,
                    // 0x41140 + 64 KiB, rounded up to 64 KiB.
                    dtb_offset: 0x6_0000,
                    dtb_max: DTB_MAX,
                },
            );
            // With an initrd: it goes after the 64 KiB gap, the device tree above it.
            let l = plan_elf(BASE, 16 * MIB, &guest(), 100).unwrap();
            assert_eq!(l.initrd, Some((0x5_2000, 0x5_2000 + 100)));
            assert_eq!(l.dtb_offset, 0x6_0000);
        }

        #[test]
        fn bss_counts_for_the_device_tree() {
            // The highest segment has 16 file bytes but 1 MiB of memory: the device tree goes
            // after the memory, not after the file bytes.
            let f = build(
                &[load(0x4000_0000 + 0x1_0000, &[0xd5; 16], MIB, RX | PF_W)],
                0x4001_0000,
            );
            let l = plan_elf(0x4000_0000, 64 * MIB, &f, 0).unwrap();
            assert_eq!((l.image_offset, l.image_end), (0x1_0000, 0x11_0000));
            assert_eq!(l.dtb_offset, 0x12_0000);
            assert_eq!(l.entry_offset, 0x1_0000);
        }

        #[test]
        fn segments_must_be_inside_ram() {
            let outside = |segs: &[Seg], ram: u64| plan_elf(BASE, ram, &build(segs, BASE), 0);
            // Below RAM.
            assert_eq!(
                outside(&[load(BASE - 0x1000, &[0; 4], 0x2000, RX)], MIB),
                Err(LayoutError::SegmentOutsideRam {
                    index: 0,
                    start: BASE - 0x1000,
                    end: BASE + 0x1000,
                    ram_base: BASE,
                    ram_end: BASE + MIB
                })
            );
            // Past the end (by memsz only: file bytes fit).
            assert_eq!(
                outside(
                    &[
                        load(BASE, &[0; 4], 4, RX),
                        load(BASE + MIB - 0x10, &[0; 4], 0x11, RW)
                    ],
                    MIB
                ),
                Err(LayoutError::SegmentOutsideRam {
                    index: 1,
                    start: BASE + MIB - 0x10,
                    end: BASE + MIB + 1,
                    ram_base: BASE,
                    ram_end: BASE + MIB
                })
            );
            // Exactly filling RAM is fine for the segment, but leaves no room for the DTB.
            assert_eq!(
                outside(&[load(BASE, &[0; 4], MIB, RX)], MIB),
                Err(LayoutError::DtbDoesNotFit {
                    start: MIB + DTB_GAP,
                    ram: MIB
                })
            );
            // A segment far above (an image linked for another RAM base).
            assert!(matches!(
                plan_elf(0x4000_0000, 256 * MIB, &guest(), 0),
                Err(LayoutError::SegmentOutsideRam { index: 0, .. })
            ));
            // RAM at the top of the address space: nothing wraps.
            let top = u64::MAX - MIB + 1;
            let f = build(&[load(top, &[0; 4], 4, RX)], top);
            assert_eq!(plan_elf(top, MIB, &f, 0).unwrap().dtb_offset, 0x2_0000);
            let f = build(&[load(top, &[0; 4], MIB - 1, RX)], top);
            assert!(matches!(
                plan_elf(top, MIB, &f, 0),
                Err(LayoutError::DtbDoesNotFit { .. })
            ));
        }

        #[test]
        fn segments_must_not_overlap() {
            let f = build(
                &[
                    load(BASE, &[0; 0x100], 0x100, RX),
                    load(BASE + 0x200, &[0; 4], 4, RW),
                    load(BASE + 0xff, &[0; 4], 4, RW),
                ],
                BASE,
            );
            assert_eq!(
                plan_elf(BASE, MIB, &f, 0),
                Err(LayoutError::SegmentsOverlap {
                    a: (0, BASE, BASE + 0x100),
                    b: (2, BASE + 0xff, BASE + 0x103)
                })
            );
            // bss overlapping the next segment's file bytes counts too.
            let f = build(
                &[
                    load(BASE, &[0; 0x10], 0x1000, RX),
                    load(BASE + 0x800, &[0; 4], 4, RW),
                ],
                BASE,
            );
            assert!(matches!(
                plan_elf(BASE, MIB, &f, 0),
                Err(LayoutError::SegmentsOverlap { .. })
            ));
            // Touching is not overlapping.
            let f = build(
                &[
                    load(BASE, &[0; 0x10], 0x100, RX),
                    load(BASE + 0x100, &[0; 4], 4, RW),
                ],
                BASE,
            );
            assert!(plan_elf(BASE, MIB, &f, 0).is_ok());
        }

        #[test]
        fn entry_must_be_in_executable_contents() {
            let segs = [
                load(BASE, &[0; 0x100], 0x1000, RX),
                load(BASE + 0x1000, &[0; 0x100], 0x100, RW),
            ];
            let plan = |entry| plan_elf(BASE, MIB, &build(&segs, entry), 0);
            assert!(plan(BASE).is_ok());
            assert!(plan(BASE + 0xfc).is_ok());
            // In .bss, past the file bytes.
            assert_eq!(
                plan(BASE + 0x100),
                Err(LayoutError::ElfEntryOutsideSegments {
                    entry: BASE + 0x100
                })
            );
            assert_eq!(
                plan(BASE + 0x1004),
                Err(LayoutError::ElfEntryNotExecutable {
                    entry: BASE + 0x1004,
                    index: 1
                })
            );
            assert_eq!(
                plan(0),
                Err(LayoutError::ElfEntryOutsideSegments { entry: 0 })
            );
        }

        #[test]
        fn bad_files_and_initrds() {
            assert_eq!(
                plan_elf(BASE, MIB, b"\x7fELF", 0),
                Err(LayoutError::Elf(ElfError::TooShort { len: 4 }))
            );
            assert_eq!(
                plan_elf(BASE, MIB, &[0u8; 200], 0),
                Err(LayoutError::Elf(ElfError::BadMagic))
            );
            // An initrd that does not fit above the image and its 64 KiB gap.
            let l = plan_elf(BASE, MIB, &guest(), 0).unwrap();
            assert!(matches!(
                plan_elf(BASE, MIB, &guest(), MIB),
                Err(LayoutError::InitrdDoesNotFit { start, .. }) if start == (l.image_end + DTB_GAP).next_multiple_of(0x1000)
            ));
        }

        #[test]
        fn loads_the_file_bytes_only() {
            let f = guest();
            let mut ram = vec![0u8; MIB as usize];
            // Non-zero below: load_elf must not clear what is not its file contents.
            ram[0x100] = 0xee;
            load_elf(&mut ram, BASE, &f).unwrap();
            assert_eq!(ram[0x100], 0xee);
            assert!(ram[0x4_1000..0x4_1100].iter().all(|&b| b == 0x14));
            assert!(ram[0x4_1100..0x4_1140].iter().all(|&b| b == 0x55));
            assert!(ram[0x4_1140..].iter().all(|&b| b == 0));
            // Out of bounds: refused, no panic.
            let mut small = vec![0u8; 0x4_1100];
            assert!(matches!(
                load_elf(&mut small, BASE, &f),
                Err(LayoutError::SegmentOutsideRam { index: 2, .. })
            ));
            assert!(matches!(
                load_elf(&mut ram, BASE + 0x10_0000, &f),
                Err(LayoutError::SegmentOutsideRam { index: 0, .. })
            ));
            assert!(load_elf(&mut ram, BASE, b"junk").is_err());
        }

        #[test]
        fn messages() {
            let m = |e: LayoutError| e.to_string();
            assert_eq!(
                m(LayoutError::SegmentOutsideRam {
                    index: 1,
                    start: 0x8000_0000,
                    end: 0x8000_1000,
                    ram_base: 0x4000_0000,
                    ram_end: 0x5000_0000
                }),
                "ELF segment 1 (IPA 0x80000000..0x80001000) lies outside the VM's RAM \
                 (0x40000000..0x50000000; set the RAM base and size to cover it)"
            );
            assert_eq!(
                m(LayoutError::SegmentsOverlap {
                    a: (0, 0x1000, 0x2000),
                    b: (2, 0x1800, 0x1900)
                }),
                "ELF segments 0 (IPA 0x1000..0x2000) and 2 (IPA 0x1800..0x1900) overlap"
            );
            assert_eq!(
                m(LayoutError::ElfEntryOutsideSegments { entry: 0x10 }),
                "ELF entry point 0x10 is not inside the file contents of any PT_LOAD segment"
            );
            assert_eq!(
                m(LayoutError::ElfEntryNotExecutable {
                    entry: 0x10,
                    index: 3
                }),
                "ELF entry point 0x10 is in segment 3, which is not executable"
            );
            assert_eq!(
                m(LayoutError::Elf(ElfError::BadMagic)),
                "bad ELF file: no \"\\x7fELF\" magic at offset 0"
            );
        }
    }

    #[test]
    fn messages_are_clear() {
        extern crate std;
        use std::string::ToString;
        let m = |e: LayoutError| e.to_string();
        assert_eq!(
            m(LayoutError::BadMagic),
            "not an arm64 Linux Image: bad magic (no \"ARM\\x64\" at offset 0x38)"
        );
        assert_eq!(
            m(LayoutError::TooShort { len: 3 }),
            "not an arm64 Linux Image: 3 bytes, shorter than the 64-byte header"
        );
        assert_eq!(
            m(LayoutError::UnsupportedPageSize { kib: 64 }),
            "kernel built for 64 KiB pages: only 4 KiB page kernels are supported \
             (the stage-2 tables use a 4 KiB granule)"
        );
        assert_eq!(
            m(LayoutError::ImageTooLarge {
                need: 0x0201_0000,
                ram: 32 * MIB
            }),
            "image needs 32.0 MiB (33619968 bytes) of RAM but the VM has 32 MiB"
        );
        assert_eq!(
            m(LayoutError::InitrdDoesNotFit {
                len: 3 * MIB / 2,
                start: 0x220_0000,
                ram: 1 << 30
            }),
            "initrd of 1.5 MiB (1572864 bytes) does not fit: it would start at 0x2200000 in a VM of 1 GiB"
        );
        assert_eq!(
            m(LayoutError::DtbDoesNotFit {
                start: 0x20000,
                ram: 100
            }),
            "no room for the device tree (64 KiB at 0x20000) in a VM of 100 bytes"
        );
        assert!(m(LayoutError::BigEndian).contains("big-endian"));
        assert!(m(LayoutError::LinuxWithOffsets).contains("must be 0"));
        assert!(m(LayoutError::EntryOutsideImage { entry: 0x10 }).contains("0x10"));
        assert!(m(LayoutError::Overlap).contains("overlap"));
    }
}
