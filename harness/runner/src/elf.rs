//! Turning ELF executables into the flat images QEMU and the boot bundle load.

use object::elf::{EM_AARCH64, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};

/// A flat memory image: `bytes` belong at physical address `load_addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatImage {
    pub bytes: Vec<u8>,
    pub load_addr: u64,
    /// The entry point, as a physical address.
    pub entry: u64,
}

/// The arm64 Linux `Image` header magic, `ARM\x64` at offset 0x38.
pub const ARM64_IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";
pub const ARM64_IMAGE_MAGIC_OFFSET: usize = 0x38;

/// Whether `image` starts with an arm64 Linux `Image` header.
pub fn has_arm64_image_header(image: &[u8]) -> bool {
    image.get(ARM64_IMAGE_MAGIC_OFFSET..ARM64_IMAGE_MAGIC_OFFSET + 4)
        == Some(&ARM64_IMAGE_MAGIC[..])
}

fn parse(data: &[u8]) -> Result<ElfFile64<'_, Endianness>, String> {
    let elf =
        ElfFile64::<Endianness>::parse(data).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let machine = elf.elf_header().e_machine(elf.endian());
    if machine != EM_AARCH64 {
        return Err(format!(
            "ELF machine is {machine}, not AArch64 ({EM_AARCH64})"
        ));
    }
    Ok(elf)
}

/// Concatenates the `PT_LOAD` segments' file contents, ordered by physical address, with
/// zero-filled gaps, into an image starting at the lowest segment's physical address.
/// Segments without file contents (`.bss`, stacks) are left out: the program clears them.
pub fn flatten(data: &[u8]) -> Result<FlatImage, String> {
    let elf = parse(data)?;
    let endian = elf.endian();
    let mut segments = Vec::new();
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) != PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let contents = ph
            .data(endian, data)
            .map_err(|()| "PT_LOAD segment outside the file".to_string())?;
        segments.push((
            ph.p_paddr(endian),
            ph.p_vaddr(endian),
            ph.p_memsz(endian),
            contents,
        ));
    }
    segments.sort_by_key(|s| s.0);
    let Some(&(load_addr, ..)) = segments.first() else {
        return Err("no PT_LOAD segment with contents".into());
    };
    let mut bytes: Vec<u8> = Vec::new();
    for &(paddr, _, _, contents) in &segments {
        let offset = usize::try_from(paddr - load_addr).map_err(|_| "segments too far apart")?;
        if offset < bytes.len() {
            return Err(format!(
                "PT_LOAD segments overlap at physical address {paddr:#x}"
            ));
        }
        if offset.saturating_add(contents.len()) > 256 << 20 {
            return Err(format!(
                "flat image would exceed 256 MiB (segment at {paddr:#x})"
            ));
        }
        bytes.resize(offset, 0);
        bytes.extend_from_slice(contents);
    }
    // The entry point is a virtual address: translate it through the segment that holds it.
    let entry_va = elf.elf_header().e_entry(endian);
    let entry = segments
        .iter()
        .find(|&&(_, vaddr, memsz, _)| entry_va >= vaddr && entry_va - vaddr < memsz)
        .map(|&(paddr, vaddr, ..)| paddr + (entry_va - vaddr))
        .ok_or_else(|| format!("entry point {entry_va:#x} is in no loaded segment"))?;
    Ok(FlatImage {
        bytes,
        load_addr,
        entry,
    })
}

/// The address (value) of symbol `name`.
pub fn symbol_address(data: &[u8], name: &str) -> Result<u64, String> {
    let elf = parse(data)?;
    elf.symbol_by_name(name)
        .map(|s| s.address())
        .ok_or_else(|| format!("symbol `{name}` not found (is the ELF stripped?)"))
}

/// Builds small ELF files for tests.
#[cfg(test)]
pub(crate) mod testelf {
    pub struct Segment {
        pub vaddr: u64,
        pub paddr: u64,
        pub data: Vec<u8>,
        pub memsz: u64,
    }

    pub fn seg(addr: u64, data: &[u8]) -> Segment {
        Segment {
            vaddr: addr,
            paddr: addr,
            data: data.to_vec(),
            memsz: data.len() as u64,
        }
    }

    /// An AArch64 ELF64 executable with the given PT_LOAD segments and absolute symbols.
    pub fn build(segments: &[Segment], entry: u64, symbols: &[(&str, u64)]) -> Vec<u8> {
        let p64 = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&x.to_le_bytes());
        let p32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        let p16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
        let phoff = 64u64;
        let mut data_off = phoff + 56 * segments.len() as u64;
        let mut body = Vec::new();
        let mut phdrs = Vec::new();
        for s in segments {
            p32(&mut phdrs, 1); // PT_LOAD
            p32(&mut phdrs, 5);
            p64(&mut phdrs, data_off);
            p64(&mut phdrs, s.vaddr);
            p64(&mut phdrs, s.paddr);
            p64(&mut phdrs, s.data.len() as u64);
            p64(&mut phdrs, s.memsz);
            p64(&mut phdrs, 16);
            body.extend_from_slice(&s.data);
            data_off += s.data.len() as u64;
        }
        // .symtab, .strtab, .shstrtab
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for (name, value) in symbols {
            p32(&mut symtab, strtab.len() as u32);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            symtab.push(0x10); // STB_GLOBAL, STT_NOTYPE
            symtab.push(0);
            p16(&mut symtab, 0xfff1); // SHN_ABS
            p64(&mut symtab, *value);
            p64(&mut symtab, 0);
        }
        let shstrtab = b"\0.symtab\0.strtab\0.shstrtab\0".to_vec();
        let symtab_off = data_off;
        let strtab_off = symtab_off + symtab.len() as u64;
        let shstrtab_off = strtab_off + strtab.len() as u64;
        let shoff = (shstrtab_off + shstrtab.len() as u64).next_multiple_of(8);
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        p16(&mut out, 2); // ET_EXEC
        p16(&mut out, 183); // EM_AARCH64
        p32(&mut out, 1);
        p64(&mut out, entry);
        p64(&mut out, phoff);
        p64(&mut out, shoff);
        p32(&mut out, 0);
        p16(&mut out, 64);
        p16(&mut out, 56);
        p16(&mut out, segments.len() as u16);
        p16(&mut out, 64);
        p16(&mut out, 4);
        p16(&mut out, 3);
        out.extend_from_slice(&phdrs);
        out.extend_from_slice(&body);
        out.extend_from_slice(&symtab);
        out.extend_from_slice(&strtab);
        out.extend_from_slice(&shstrtab);
        out.resize(shoff as usize, 0);
        let mut sh =
            |name: u32, ty: u32, off: u64, size: u64, link: u32, info: u32, entsize: u64| {
                p32(&mut out, name);
                p32(&mut out, ty);
                p64(&mut out, 0);
                p64(&mut out, 0);
                p64(&mut out, off);
                p64(&mut out, size);
                p32(&mut out, link);
                p32(&mut out, info);
                p64(&mut out, 1);
                p64(&mut out, entsize);
            };
        sh(0, 0, 0, 0, 0, 0, 0);
        sh(1, 2, symtab_off, symtab.len() as u64, 2, 1, 24);
        sh(9, 3, strtab_off, strtab.len() as u64, 0, 0, 0);
        sh(17, 3, shstrtab_off, shstrtab.len() as u64, 0, 0, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::{build, seg, Segment};
    use super::*;

    #[test]
    fn flattens_segments_in_physical_order_with_zero_gaps() {
        let elf = build(
            &[
                seg(0x4020_2000, &[3, 4]),
                seg(0x4020_0000, &[1, 2, 3]),
                // .bss only: left out
                Segment {
                    vaddr: 0x4030_0000,
                    paddr: 0x4030_0000,
                    data: vec![],
                    memsz: 0x1000,
                },
            ],
            0x4020_0001,
            &[],
        );
        let img = flatten(&elf).unwrap();
        assert_eq!(img.load_addr, 0x4020_0000);
        assert_eq!(img.entry, 0x4020_0001);
        assert_eq!(img.bytes.len(), 0x2002);
        assert_eq!(&img.bytes[..4], &[1, 2, 3, 0]);
        assert!(img.bytes[3..0x2000].iter().all(|&b| b == 0));
        assert_eq!(&img.bytes[0x2000..], &[3, 4]);
    }

    #[test]
    fn entry_is_translated_to_physical() {
        let elf = build(
            &[Segment {
                vaddr: 0xffff_0000_0000_0000,
                paddr: 0x8000_0000,
                data: vec![0; 16],
                memsz: 16,
            }],
            0xffff_0000_0000_0008,
            &[],
        );
        let img = flatten(&elf).unwrap();
        assert_eq!((img.load_addr, img.entry), (0x8000_0000, 0x8000_0008));
    }

    #[test]
    fn refuses_bad_files() {
        assert!(flatten(b"not an elf")
            .unwrap_err()
            .contains("not a 64-bit ELF"));
        assert!(flatten(&build(&[], 0, &[]))
            .unwrap_err()
            .contains("no PT_LOAD"));
        let overlap = build(&[seg(0x1000, &[1; 32]), seg(0x1010, &[2])], 0x1000, &[]);
        assert!(flatten(&overlap).unwrap_err().contains("overlap"));
        let outside = build(&[seg(0x1000, &[1; 4])], 0x9000, &[]);
        assert!(flatten(&outside).unwrap_err().contains("entry point"));
        let mut x86 = build(&[seg(0x1000, &[1; 4])], 0x1000, &[]);
        x86[18] = 62;
        assert!(flatten(&x86).unwrap_err().contains("not AArch64"));
    }

    #[test]
    fn finds_symbols() {
        let elf = build(
            &[seg(0x1000, &[0; 8])],
            0x1000,
            &[("VICTIM_PATTERN", 0x8000_2040), ("__data_start", 7)],
        );
        assert_eq!(symbol_address(&elf, "VICTIM_PATTERN").unwrap(), 0x8000_2040);
        assert_eq!(symbol_address(&elf, "__data_start").unwrap(), 7);
        assert!(symbol_address(&elf, "nope")
            .unwrap_err()
            .contains("`nope` not found"));
    }

    #[test]
    fn image_magic() {
        let mut img = vec![0u8; 0x40];
        assert!(!has_arm64_image_header(&img));
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert!(has_arm64_image_header(&img));
        assert!(!has_arm64_image_header(&img[..0x3b]));
    }
}
