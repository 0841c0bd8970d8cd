//! ELF64 executables as VM images: the header and program headers, fully validated.
//!
//! Pure logic over a byte slice, no allocation, no `unsafe`, only `core`: it is a submodule of
//! `layout.rs` (`#[path]`), so the hypervisor, the harness runner and `xtask` share it, and it
//! is tested on the host. Any input, however truncated or hostile, gives an [`ElfError`] and
//! never a panic; all arithmetic on file values is checked.
//!
//! What is accepted (System V ABI, "ELF header" and "Program header"; AArch64 ELF ABI):
//!
//! - `e_ident`: magic `\x7fELF`, class ELFCLASS64 (2), data ELFDATA2LSB (1), version 1;
//! - `e_type` ET_EXEC (2): a position-dependent executable (ET_DYN would need relocating);
//! - `e_machine` EM_AARCH64 (183);
//! - `e_phentsize` 56, `1..=`[`MAX_PHNUM`] program headers, all inside the file;
//! - every `PT_LOAD` header: `p_offset + p_filesz` inside the file, `p_filesz <= p_memsz`,
//!   `p_paddr + p_memsz` not wrapping. Other program header types are ignored.
//!
//! # Why `p_paddr`
//!
//! A guest starts with its MMU off (the entry contract of every format), so it runs at the
//! addresses it was *loaded* at: the load address (LMA) of a segment is its physical address,
//! `p_paddr`, which for a VM is an IPA. `p_vaddr` is where the program sees the segment once it
//! has turned its MMU on, which may be elsewhere (a kernel linked at high virtual addresses,
//! `AT()` in a linker script). For most bare-metal images the two are equal. This is what
//! QEMU's and U-Boot's ELF loaders do too.
//!
//! The entry point `e_entry` is a virtual address; as QEMU does, if it falls in the file
//! contents of an executable segment whose `p_vaddr` differs from its `p_paddr`, it is
//! translated through that segment ([`ElfImage::entry`]).

use core::fmt;

/// `e_ident[0..4]`.
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
/// `e_type` of a position-dependent executable.
pub const ET_EXEC: u16 = 2;
/// `e_type` of a shared object or position-independent executable (refused).
pub const ET_DYN: u16 = 3;
/// `e_machine` of AArch64.
pub const EM_AARCH64: u16 = 183;
/// `p_type` of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// `p_flags` bits.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
/// The sizes of the ELF64 header and of one ELF64 program header.
pub const EHDR_SIZE: usize = 64;
pub const PHDR_SIZE: usize = 56;
/// The most program headers accepted (real images have a handful; `0xffff`, `PN_XNUM`, would
/// mean extended numbering, which no executable of ours needs).
pub const MAX_PHNUM: u16 = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than the 64-byte ELF header.
    TooShort { len: u64 },
    /// No `\x7fELF` at offset 0.
    BadMagic,
    /// `e_ident[EI_CLASS]` is not ELFCLASS64.
    NotElf64 { class: u8 },
    /// `e_ident[EI_DATA]` is not ELFDATA2LSB.
    NotLittleEndian { data: u8 },
    /// `e_ident[EI_VERSION]` or `e_version` is not 1.
    BadVersion { version: u32 },
    /// `e_type` is not ET_EXEC.
    NotExecutable { kind: u16 },
    /// `e_machine` is not EM_AARCH64.
    NotAarch64 { machine: u16 },
    /// `e_phentsize` is not 56.
    BadPhentsize { size: u16 },
    /// `e_phnum` is 0.
    NoProgramHeaders,
    /// `e_phnum` is above [`MAX_PHNUM`].
    TooManyProgramHeaders { count: u16 },
    /// The program header table does not lie inside the file.
    ProgramHeadersOutsideFile { offset: u64, count: u16, len: u64 },
    /// A `PT_LOAD` segment's file contents do not lie inside the file.
    SegmentOutsideFile {
        index: usize,
        offset: u64,
        filesz: u64,
        len: u64,
    },
    /// A `PT_LOAD` segment has more file bytes than memory bytes.
    FileSizeAboveMemSize {
        index: usize,
        filesz: u64,
        memsz: u64,
    },
    /// A `PT_LOAD` segment's `p_paddr + p_memsz` is beyond 2^64.
    SegmentWraps {
        index: usize,
        paddr: u64,
        memsz: u64,
    },
    /// No `PT_LOAD` segment with memory (`p_memsz > 0`).
    NoLoadableSegment,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ElfError::*;
        write!(f, "bad ELF file: ")?;
        match *self {
            TooShort { len } => write!(
                f,
                "{len} bytes, shorter than the {EHDR_SIZE}-byte ELF header"
            ),
            BadMagic => write!(f, "no \"\\x7fELF\" magic at offset 0"),
            NotElf64 { class } => write!(f, "class {class}, not ELF64 (2)"),
            NotLittleEndian { data } => write!(
                f,
                "data encoding {data}, not little-endian (1): big-endian images are not supported"
            ),
            BadVersion { version } => write!(f, "version {version}, not 1"),
            NotExecutable { kind: ET_DYN } => write!(
                f,
                "type ET_DYN (a shared object or position-independent executable): only \
                 ET_EXEC executables are loaded (link with -no-pie / --no-pie)"
            ),
            NotExecutable { kind } => write!(f, "type {kind}, not an executable (ET_EXEC, 2)"),
            NotAarch64 { machine } => {
                write!(f, "machine {machine}, not AArch64 ({EM_AARCH64})")
            }
            BadPhentsize { size } => {
                write!(f, "program header size {size}, not the ELF64 {PHDR_SIZE}")
            }
            NoProgramHeaders => write!(f, "no program headers"),
            TooManyProgramHeaders { count } => {
                write!(f, "{count} program headers, at most {MAX_PHNUM} supported")
            }
            ProgramHeadersOutsideFile { offset, count, len } => write!(
                f,
                "{count} program headers at offset {offset:#x} do not fit in the {len}-byte file"
            ),
            SegmentOutsideFile {
                index,
                offset,
                filesz,
                len,
            } => write!(
                f,
                "segment {index}: {filesz} bytes at file offset {offset:#x} do not fit in the \
                 {len}-byte file (truncated?)"
            ),
            FileSizeAboveMemSize {
                index,
                filesz,
                memsz,
            } => write!(
                f,
                "segment {index}: file size {filesz:#x} is larger than its memory size {memsz:#x}"
            ),
            SegmentWraps {
                index,
                paddr,
                memsz,
            } => write!(
                f,
                "segment {index}: {memsz:#x} bytes at {paddr:#x} wrap around the address space"
            ),
            NoLoadableSegment => write!(f, "no PT_LOAD segment with contents"),
        }
    }
}

/// One `PT_LOAD` segment with memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The program header's index (as `readelf -l` counts).
    pub index: usize,
    /// `p_paddr`: where the segment goes, an IPA (see the module documentation).
    pub ipa: u64,
    pub vaddr: u64,
    pub offset: u64,
    /// Bytes copied from the file; the rest, up to `memsz`, is zero (`.bss`).
    pub filesz: u64,
    pub memsz: u64,
    pub flags: u32,
}

impl Segment {
    /// The first IPA past the segment (cannot wrap: checked when parsing).
    pub fn end(&self) -> u64 {
        self.ipa + self.memsz
    }

    pub fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
}

/// A validated ELF executable.
#[derive(Clone, Copy, Debug)]
pub struct ElfImage<'a> {
    data: &'a [u8],
    phoff: usize,
    phnum: usize,
    e_entry: u64,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// A program header's fields (`ph` is exactly [`PHDR_SIZE`] bytes).
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

fn phdr(ph: &[u8]) -> Phdr {
    Phdr {
        p_type: u32_at(ph, 0),
        flags: u32_at(ph, 4),
        offset: u64_at(ph, 8),
        vaddr: u64_at(ph, 16),
        paddr: u64_at(ph, 24),
        filesz: u64_at(ph, 32),
        memsz: u64_at(ph, 40),
    }
}

/// Whether `data` starts with the ELF magic (the format detection of `--vm`).
pub fn has_elf_magic(data: &[u8]) -> bool {
    data.starts_with(&ELF_MAGIC)
}

impl<'a> ElfImage<'a> {
    /// Validates the header and every program header (see the module documentation).
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        let len = data.len() as u64;
        if data.len() < EHDR_SIZE {
            return Err(ElfError::TooShort { len });
        }
        if !has_elf_magic(data) {
            return Err(ElfError::BadMagic);
        }
        if data[4] != ELFCLASS64 {
            return Err(ElfError::NotElf64 { class: data[4] });
        }
        if data[5] != ELFDATA2LSB {
            return Err(ElfError::NotLittleEndian { data: data[5] });
        }
        if data[6] != EV_CURRENT {
            return Err(ElfError::BadVersion {
                version: data[6] as u32,
            });
        }
        let kind = u16_at(data, 16);
        if kind != ET_EXEC {
            return Err(ElfError::NotExecutable { kind });
        }
        let machine = u16_at(data, 18);
        if machine != EM_AARCH64 {
            return Err(ElfError::NotAarch64 { machine });
        }
        let version = u32_at(data, 20);
        if version != EV_CURRENT as u32 {
            return Err(ElfError::BadVersion { version });
        }
        let e_entry = u64_at(data, 24);
        let phoff = u64_at(data, 32);
        let phentsize = u16_at(data, 54);
        let count = u16_at(data, 56);
        if phentsize as usize != PHDR_SIZE {
            return Err(ElfError::BadPhentsize { size: phentsize });
        }
        if count == 0 {
            return Err(ElfError::NoProgramHeaders);
        }
        if count > MAX_PHNUM {
            return Err(ElfError::TooManyProgramHeaders { count });
        }
        let table_end = phoff.checked_add(count as u64 * PHDR_SIZE as u64);
        if table_end.is_none_or(|end| end > len) {
            return Err(ElfError::ProgramHeadersOutsideFile {
                offset: phoff,
                count,
                len,
            });
        }
        let image = ElfImage {
            data,
            // Both fit: the table lies inside `data`.
            phoff: phoff as usize,
            phnum: count as usize,
            e_entry,
        };
        let mut loadable = false;
        for (index, ph) in image.phdrs() {
            if ph.p_type != PT_LOAD {
                continue;
            }
            if ph.offset.checked_add(ph.filesz).is_none_or(|end| end > len) {
                return Err(ElfError::SegmentOutsideFile {
                    index,
                    offset: ph.offset,
                    filesz: ph.filesz,
                    len,
                });
            }
            if ph.filesz > ph.memsz {
                return Err(ElfError::FileSizeAboveMemSize {
                    index,
                    filesz: ph.filesz,
                    memsz: ph.memsz,
                });
            }
            if ph.paddr.checked_add(ph.memsz).is_none() {
                return Err(ElfError::SegmentWraps {
                    index,
                    paddr: ph.paddr,
                    memsz: ph.memsz,
                });
            }
            loadable |= ph.memsz > 0;
        }
        if !loadable {
            return Err(ElfError::NoLoadableSegment);
        }
        Ok(image)
    }

    /// Every program header, with its index.
    fn phdrs(&self) -> impl Iterator<Item = (usize, Phdr)> + 'a {
        let table = &self.data[self.phoff..self.phoff + self.phnum * PHDR_SIZE];
        table.chunks_exact(PHDR_SIZE).map(phdr).enumerate()
    }

    /// The `PT_LOAD` segments with memory (`p_memsz > 0`), in program header order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + 'a {
        self.phdrs()
            .filter(|(_, ph)| ph.p_type == PT_LOAD && ph.memsz > 0)
            .map(|(index, ph)| Segment {
                index,
                ipa: ph.paddr,
                vaddr: ph.vaddr,
                offset: ph.offset,
                filesz: ph.filesz,
                memsz: ph.memsz,
                flags: ph.flags,
            })
    }

    /// The file contents of `segment` (`filesz` bytes), empty for a segment of another file.
    pub fn contents(&self, segment: &Segment) -> &'a [u8] {
        let data: &'a [u8] = self.data;
        usize::try_from(segment.offset)
            .ok()
            .zip(usize::try_from(segment.filesz).ok())
            .and_then(|(start, n)| data.get(start..start.checked_add(n)?))
            .unwrap_or(&[])
    }

    /// `e_entry` as written in the header (a virtual address).
    pub fn e_entry(&self) -> u64 {
        self.e_entry
    }

    /// The IPA to enter at: `e_entry`, translated through the executable segment whose file
    /// contents hold it at its virtual address when that segment's `p_vaddr` and `p_paddr`
    /// differ (QEMU's rule); otherwise `e_entry` itself.
    pub fn entry(&self) -> u64 {
        let e = self.e_entry;
        self.segments()
            .find(|s| s.executable() && s.vaddr != s.ipa && e >= s.vaddr && e - s.vaddr < s.filesz)
            .map_or(e, |s| s.ipa + (e - s.vaddr))
    }
}

/// Builds ELF files for tests (here and in the harness).
#[cfg(test)]
pub mod testelf {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// One program header and its file contents.
    #[derive(Clone, Debug)]
    pub struct Seg {
        pub p_type: u32,
        pub flags: u32,
        pub vaddr: u64,
        pub paddr: u64,
        pub data: Vec<u8>,
        pub memsz: u64,
    }

    /// A `PT_LOAD` segment at `addr` (virtual = physical) with `data` and `memsz`.
    pub fn load(addr: u64, data: &[u8], memsz: u64, flags: u32) -> Seg {
        Seg {
            p_type: PT_LOAD,
            flags,
            vaddr: addr,
            paddr: addr,
            data: data.to_vec(),
            memsz,
        }
    }

    /// An ELF64 little-endian AArch64 ET_EXEC file: header, program headers, then the segments'
    /// contents in order.
    pub fn build(segs: &[Seg], entry: u64) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&ELF_MAGIC);
        out.extend_from_slice(&[ELFCLASS64, ELFDATA2LSB, EV_CURRENT]);
        out.resize(16, 0);
        out.extend_from_slice(&ET_EXEC.to_le_bytes());
        out.extend_from_slice(&EM_AARCH64.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        out.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        out.extend_from_slice(&(segs.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
        assert_eq!(out.len(), EHDR_SIZE);
        let mut offset = (EHDR_SIZE + PHDR_SIZE * segs.len()) as u64;
        for s in segs {
            out.extend_from_slice(&s.p_type.to_le_bytes());
            out.extend_from_slice(&s.flags.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&s.vaddr.to_le_bytes());
            out.extend_from_slice(&s.paddr.to_le_bytes());
            out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&s.memsz.to_le_bytes());
            out.extend_from_slice(&0x1000u64.to_le_bytes());
            offset += s.data.len() as u64;
        }
        for s in segs {
            out.extend_from_slice(&s.data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::testelf::{build, load, Seg};
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    const RX: u32 = PF_R | PF_X;
    const RW: u32 = PF_R | PF_W;

    /// A test guest's shape: NOBITS stacks and .bss first, then text, then rodata.
    fn guest() -> Vec<u8> {
        build(
            &[
                load(0x8000_0000, &[], 0x4_08a0, RW),
                load(0x8004_1000, &[0x14; 0x100], 0x100, RX),
                load(0x8004_1100, &[0x55; 0x40], 0x40, PF_R),
                Seg {
                    p_type: 0x6474_e551, // PT_GNU_STACK: ignored
                    ..load(0, &[], 0, RW)
                },
            ],
            0x8004_1000,
        )
    }

    fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    /// Offset of program header `i`'s field at `field`.
    fn ph(i: usize, field: usize) -> usize {
        EHDR_SIZE + i * PHDR_SIZE + field
    }

    #[test]
    fn parses_a_test_guest() {
        let data = guest();
        let elf = ElfImage::parse(&data).unwrap();
        let segs: Vec<Segment> = elf.segments().collect();
        assert_eq!(segs.len(), 3);
        assert_eq!(
            segs[0],
            Segment {
                index: 0,
                ipa: 0x8000_0000,
                vaddr: 0x8000_0000,
                offset: 288,
                filesz: 0,
                memsz: 0x4_08a0,
                flags: RW,
            }
        );
        assert_eq!(segs[0].end(), 0x8004_08a0);
        assert!(segs[1].executable() && !segs[2].executable());
        assert_eq!(elf.contents(&segs[0]), &[] as &[u8]);
        assert_eq!(elf.contents(&segs[1]), &[0x14; 0x100][..]);
        assert_eq!(elf.contents(&segs[2]), &[0x55; 0x40][..]);
        assert_eq!((elf.e_entry(), elf.entry()), (0x8004_1000, 0x8004_1000));
        assert!(has_elf_magic(&data) && !has_elf_magic(b"\x7fEL"));
    }

    #[test]
    fn paddr_is_the_load_address_and_entry_is_translated() {
        // Linked at a high virtual address, loaded at 0x4008_0000 (AT()).
        let mut text = load(0xffff_0000_0000_1000, &[1; 64], 64, RX);
        text.paddr = 0x4008_0000;
        let mut data = load(0xffff_0000_0000_2000, &[2; 8], 32, RW);
        data.paddr = 0x4008_1000;
        let file = build(&[text, data], 0xffff_0000_0000_1010);
        let elf = ElfImage::parse(&file).unwrap();
        let segs: Vec<Segment> = elf.segments().collect();
        assert_eq!((segs[0].ipa, segs[1].ipa), (0x4008_0000, 0x4008_1000));
        assert_eq!(elf.entry(), 0x4008_0010);
        // Not translated through a non-executable segment, nor past the file contents.
        let file = build(
            &[Seg {
                paddr: 0x4000_0000,
                ..load(0x1000, &[0; 16], 0x100, RW)
            }],
            0x1004,
        );
        assert_eq!(ElfImage::parse(&file).unwrap().entry(), 0x1004);
        let file = build(
            &[Seg {
                paddr: 0x4000_0000,
                ..load(0x1000, &[0; 16], 0x100, RX)
            }],
            0x1010,
        );
        assert_eq!(ElfImage::parse(&file).unwrap().entry(), 0x1010);
        // Identity segments: e_entry as is.
        let file = build(&[load(0x4000_0000, &[0; 16], 16, RX)], 0x4000_0004);
        assert_eq!(ElfImage::parse(&file).unwrap().entry(), 0x4000_0004);
    }

    #[test]
    fn refuses_bad_headers() {
        let good = guest();
        let err = |mutate: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            mutate(&mut b);
            ElfImage::parse(&b).unwrap_err()
        };
        assert_eq!(
            ElfImage::parse(&[]).unwrap_err(),
            ElfError::TooShort { len: 0 }
        );
        assert_eq!(
            ElfImage::parse(&good[..63]).unwrap_err(),
            ElfError::TooShort { len: 63 }
        );
        assert_eq!(err(&|b| b[0] = 0), ElfError::BadMagic);
        assert_eq!(err(&|b| b[3] = b'f'), ElfError::BadMagic);
        assert_eq!(err(&|b| b[4] = 1), ElfError::NotElf64 { class: 1 });
        assert_eq!(err(&|b| b[5] = 2), ElfError::NotLittleEndian { data: 2 });
        assert_eq!(err(&|b| b[6] = 0), ElfError::BadVersion { version: 0 });
        assert_eq!(
            err(&|b| put16(b, 16, ET_DYN)),
            ElfError::NotExecutable { kind: 3 }
        );
        assert_eq!(
            err(&|b| put16(b, 16, 1)),
            ElfError::NotExecutable { kind: 1 }
        );
        assert_eq!(
            err(&|b| put16(b, 18, 62)),
            ElfError::NotAarch64 { machine: 62 }
        );
        assert_eq!(err(&|b| b[20] = 2), ElfError::BadVersion { version: 2 });
        assert_eq!(
            err(&|b| put16(b, 54, 64)),
            ElfError::BadPhentsize { size: 64 }
        );
        assert_eq!(err(&|b| put16(b, 56, 0)), ElfError::NoProgramHeaders);
        assert_eq!(
            err(&|b| put16(b, 56, 0xffff)),
            ElfError::TooManyProgramHeaders { count: 0xffff }
        );
        let len = good.len() as u64;
        assert_eq!(
            err(&|b| put64(b, 32, u64::MAX - 8)),
            ElfError::ProgramHeadersOutsideFile {
                offset: u64::MAX - 8,
                count: 4,
                len
            }
        );
        assert_eq!(
            err(&|b| put64(b, 32, len - 100)),
            ElfError::ProgramHeadersOutsideFile {
                offset: len - 100,
                count: 4,
                len
            }
        );
        // The table itself truncated.
        assert_eq!(
            ElfImage::parse(&good[..EHDR_SIZE + 100]).unwrap_err(),
            ElfError::ProgramHeadersOutsideFile {
                offset: 64,
                count: 4,
                len: 164
            }
        );
    }

    #[test]
    fn refuses_bad_segments() {
        let good = guest();
        let len = good.len() as u64;
        let err = |mutate: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            mutate(&mut b);
            ElfImage::parse(&b).unwrap_err()
        };
        // Segment 1's contents past the end of the file (a truncated file).
        assert_eq!(
            ElfImage::parse(&good[..good.len() - 1]).unwrap_err(),
            ElfError::SegmentOutsideFile {
                index: 2,
                offset: 288 + 0x100,
                filesz: 0x40,
                len: len - 1
            }
        );
        assert_eq!(
            err(&|b| put64(b, ph(1, 8), u64::MAX - 0x10)),
            ElfError::SegmentOutsideFile {
                index: 1,
                offset: u64::MAX - 0x10,
                filesz: 0x100,
                len
            }
        );
        assert_eq!(
            err(&|b| put64(b, ph(1, 32), u64::MAX)),
            ElfError::SegmentOutsideFile {
                index: 1,
                offset: 288,
                filesz: u64::MAX,
                len
            }
        );
        assert_eq!(
            err(&|b| put64(b, ph(1, 40), 0xff)),
            ElfError::FileSizeAboveMemSize {
                index: 1,
                filesz: 0x100,
                memsz: 0xff
            }
        );
        assert_eq!(
            err(&|b| put64(b, ph(0, 24), u64::MAX - 0x100)),
            ElfError::SegmentWraps {
                index: 0,
                paddr: u64::MAX - 0x100,
                memsz: 0x4_08a0
            }
        );
        // Only non-loadable headers, or loadable ones without memory.
        let f = build(
            &[Seg {
                p_type: 4,
                ..load(0, &[1; 4], 4, PF_R)
            }],
            0,
        );
        assert_eq!(
            ElfImage::parse(&f).unwrap_err(),
            ElfError::NoLoadableSegment
        );
        let f = build(&[load(0x1000, &[], 0, RX)], 0x1000);
        assert_eq!(
            ElfImage::parse(&f).unwrap_err(),
            ElfError::NoLoadableSegment
        );
        // A non-PT_LOAD header may point anywhere: it is ignored.
        let mut b = good.clone();
        put64(&mut b, ph(3, 8), u64::MAX);
        assert!(ElfImage::parse(&b).is_ok());
    }

    #[test]
    fn never_panics_on_garbage() {
        // Every truncation of a good file, and many corruptions of its header and program
        // headers: an error or a valid image, never a panic.
        let good = guest();
        for n in 0..good.len() {
            let _ = ElfImage::parse(&good[..n]);
        }
        let mut x: u32 = 0x1234_5678;
        let mut rand = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..1 + rand() % 4 {
                let at = (rand() as usize) % (EHDR_SIZE + 4 * PHDR_SIZE);
                b[at] = rand() as u8;
            }
            if let Ok(elf) = ElfImage::parse(&b) {
                for s in elf.segments() {
                    assert_eq!(elf.contents(&s).len() as u64, s.filesz);
                    assert!(s.filesz <= s.memsz);
                    let _ = s.end();
                }
                let _ = elf.entry();
            }
        }
        let junk: Vec<u8> = (0..4096u32).map(|i| ((i * 7919) >> 3) as u8).collect();
        assert_eq!(ElfImage::parse(&junk).unwrap_err(), ElfError::BadMagic);
        let mut junk = junk;
        junk[..4].copy_from_slice(&ELF_MAGIC);
        assert!(ElfImage::parse(&junk).is_err());
        assert!(ElfImage::parse(&[0u8; 64]).is_err());
    }

    #[test]
    fn messages_are_clear() {
        let m = |e: ElfError| e.to_string();
        assert_eq!(
            m(ElfError::TooShort { len: 3 }),
            "bad ELF file: 3 bytes, shorter than the 64-byte ELF header"
        );
        assert_eq!(
            m(ElfError::NotAarch64 { machine: 62 }),
            "bad ELF file: machine 62, not AArch64 (183)"
        );
        assert!(m(ElfError::NotExecutable { kind: ET_DYN }).contains("position-independent"));
        assert!(m(ElfError::NotLittleEndian { data: 2 }).contains("big-endian"));
        assert_eq!(
            m(ElfError::SegmentOutsideFile {
                index: 2,
                offset: 0x1000,
                filesz: 16,
                len: 100
            }),
            "bad ELF file: segment 2: 16 bytes at file offset 0x1000 do not fit in the 100-byte \
             file (truncated?)"
        );
        assert_eq!(
            m(ElfError::FileSizeAboveMemSize {
                index: 1,
                filesz: 0x20,
                memsz: 0x10
            }),
            "bad ELF file: segment 1: file size 0x20 is larger than its memory size 0x10"
        );
        assert!(m(ElfError::NoLoadableSegment).contains("no PT_LOAD"));
        assert!(m(ElfError::BadMagic).contains("magic"));
    }
}
