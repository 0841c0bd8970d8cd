//! What the hardware is, read from the flattened device tree the bootloader passed in `x0`.
//!
//! Owns: checking a DTB blob, walking it (with the `fdt` crate) and turning it into a plain
//! [`HwInfo`]: RAM, reserved memory, CPUs (MPIDR values), the GIC, the console PL011, the
//! architected timer's interrupts, the PSCI conduit, the initrd and the command line. Every
//! `reg` address is translated through the `ranges` of all its ancestors, so what comes out is
//! a CPU physical address.
//!
//! Must never: panic or read outside the blob, whatever the bytes are (the `fdt` crate panics on
//! malformed trees, so the whole structure is checked here before the crate sees it); touch
//! hardware or registers; keep a reference into the blob (the result is owned, so the blob's
//! memory can be reused once [`HwInfo::parse`] returns).

use alloc::vec::Vec;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

/// The most RAM regions kept; more is an error ([`DtError::TooMany`]).
pub const MAX_MEMORY_REGIONS: usize = 8;
/// The most CPUs kept; more is an error ([`DtError::TooMany`]).
pub const MAX_CPUS: usize = 8;
/// The most reserved regions kept; more is an error (dropping one would hand reserved memory out).
pub const MAX_RESERVED_REGIONS: usize = 16;
/// The largest blob [`HwInfo::from_ptr`] accepts (Linux's arm64 limit).
pub const MAX_DTB_SIZE: usize = 2 << 20;
/// Deepest node nesting accepted (the `fdt` crate keeps a fixed stack of 64).
pub const MAX_DEPTH: usize = 32;
/// The most virtio-mmio transports kept (QEMU `virt` has 32); later ones are ignored.
pub const MAX_VIRTIO_MMIO: usize = 32;

const FDT_MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

/// Which GIC architecture the interrupt controller implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

/// The GIC's register frames (physical addresses) and its maintenance interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicInfo {
    pub version: GicVersion,
    /// GICD.
    pub distributor: Region,
    /// GICv3 only: the first redistributor region (GICR).
    pub redistributors: Option<Region>,
    /// GICC (GICv2, or a GICv3's optional legacy interface).
    pub cpu_interface: Option<Region>,
    /// GICH (GICv2, or a GICv3's optional legacy interface).
    pub hyp_interface: Option<Region>,
    /// GICV (GICv2, or a GICv3's optional legacy interface).
    pub vcpu_interface: Option<Region>,
    /// The virtualization maintenance interrupt as an INTID (a PPI: 16 + n, usually 25).
    pub maintenance_irq: Option<u32>,
}

/// The architected timer's interrupts, as INTIDs (PPI n is INTID 16 + n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerIrqs {
    pub secure_phys: u32,
    pub nonsecure_phys: u32,
    pub virt: u32,
    pub hyp_phys: u32,
}

/// The PSCI conduit named by `/psci/method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciMethod {
    Smc,
    Hvc,
}

/// The console PL011.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UartInfo {
    pub base: Region,
    /// Its interrupt as an INTID, when its interrupt parent is the GIC.
    pub irq: Option<u32>,
}

/// A virtio-mmio transport (`compatible = "virtio,mmio"`); what is behind it, if anything, is
/// read from its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmio {
    pub base: Region,
    /// Its interrupt as an INTID, when its interrupt parent is the GIC.
    pub irq: Option<u32>,
}

/// Everything the hypervisor learns from the boot device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwInfo {
    /// RAM: every `device_type = "memory"` node's non-empty `reg` entries, in DT order.
    pub memory: heapless::Vec<Region, MAX_MEMORY_REGIONS>,
    /// `/memreserve/` entries, then `/reserved-memory` children with a `reg`.
    pub reserved: heapless::Vec<Region, MAX_RESERVED_REGIONS>,
    /// MPIDR affinity values from `/cpus/cpu@*/reg`, in DT order.
    pub cpus: heapless::Vec<u64, MAX_CPUS>,
    pub gic: Option<GicInfo>,
    /// The PL011 named by `/chosen/stdout-path` if any, else the first enabled `arm,pl011`.
    pub uart: Option<UartInfo>,
    pub timer: Option<TimerIrqs>,
    pub psci: Option<PsciMethod>,
    /// `/chosen/linux,initrd-start` .. `linux,initrd-end` (32- or 64-bit cells).
    pub initrd: Option<Region>,
    pub bootargs: Option<heapless::String<256>>,
    /// The root `model`, cut at 64 bytes (it is only shown, never interpreted).
    pub model: heapless::String<64>,
    /// Enabled `virtio,mmio` transports, in DT order (the first [`MAX_VIRTIO_MMIO`]).
    pub virtio_mmio: heapless::Vec<VirtioMmio, MAX_VIRTIO_MMIO>,
}

/// Why a device tree was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtError {
    /// [`HwInfo::from_ptr`] got a null pointer.
    NullPointer,
    /// Shorter than a header, or a block lies outside `totalsize`.
    BadHeader,
    /// The first word is not 0xd00dfeed.
    BadMagic(u32),
    /// Only version 17 (compatible back to 16) is read.
    UnsupportedVersion(u32),
    /// The header's `totalsize` is larger than the bytes given.
    Truncated { totalsize: usize, available: usize },
    /// The header's `totalsize` is above [`MAX_DTB_SIZE`].
    TooLarge(usize),
    /// The structure or strings block is malformed at this offset of the structure block.
    BadStructure { offset: usize, reason: &'static str },
    /// Nodes nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A property that matters has a malformed value.
    BadProperty(&'static str),
    /// A region that matters cannot be translated to a physical address (no `ranges` on the
    /// way up, or an address outside all of them).
    Untranslatable(&'static str),
    /// More entries than the fixed table holds.
    TooMany(&'static str),
    /// `/chosen/bootargs` is longer than 256 bytes.
    BootargsTooLong(usize),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NullPointer => write!(f, "device tree pointer is null"),
            Self::BadHeader => write!(f, "device tree header is short or its blocks overflow it"),
            Self::BadMagic(m) => write!(f, "bad device tree magic {m:#010x}"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported device tree version {v}"),
            Self::Truncated {
                totalsize,
                available,
            } => write!(
                f,
                "device tree truncated: header says {totalsize} bytes, {available} available"
            ),
            Self::TooLarge(size) => {
                write!(
                    f,
                    "device tree of {size} bytes exceeds the {MAX_DTB_SIZE} byte limit"
                )
            }
            Self::BadStructure { offset, reason } => {
                write!(
                    f,
                    "malformed device tree structure at {offset:#x}: {reason}"
                )
            }
            Self::TooDeep => write!(f, "device tree nodes nest deeper than {MAX_DEPTH}"),
            Self::BadProperty(name) => write!(f, "malformed device tree property {name}"),
            Self::Untranslatable(what) => {
                write!(
                    f,
                    "{what}: address cannot be translated through parent ranges"
                )
            }
            Self::TooMany(what) => write!(f, "too many {what} in the device tree"),
            Self::BootargsTooLong(len) => write!(f, "bootargs of {len} bytes exceed 256"),
        }
    }
}

impl HwInfo {
    /// Reads a device tree blob. `dtb` may be longer than the header's `totalsize`.
    pub fn parse(dtb: &[u8]) -> Result<HwInfo, DtError> {
        let header = Header::read(dtb)?;
        let blob = &dtb[..header.totalsize];
        let layout = check_structure(blob, &header, None)?;
        if layout.has_nops {
            // The `fdt` crate trips over NOP tokens between properties: drop them first.
            let normalised = without_nops(blob, &header)?;
            let header = Header::read(&normalised)?;
            check_structure(&normalised, &header, None)?;
            return extract(&normalised, &header);
        }
        extract(blob, &header)
    }

    /// Reads the device tree at `ptr`, whose length is taken from its header. Returns the
    /// information and the blob's total size (so the caller can protect or reuse its memory).
    ///
    /// # Safety
    /// `ptr` must be readable for 8 bytes and, if those hold an FDT magic and a `totalsize` of
    /// at most [`MAX_DTB_SIZE`], for `totalsize` bytes, with nothing writing them meanwhile.
    pub unsafe fn from_ptr(ptr: *const u8) -> Result<(HwInfo, usize), DtError> {
        if ptr.is_null() {
            return Err(DtError::NullPointer);
        }
        // SAFETY: the caller guarantees 8 readable bytes.
        let start = unsafe { core::slice::from_raw_parts(ptr, 8) };
        let magic = be32(start, 0).ok_or(DtError::BadHeader)?;
        if magic != FDT_MAGIC {
            return Err(DtError::BadMagic(magic));
        }
        let totalsize = be32(start, 4).ok_or(DtError::BadHeader)? as usize;
        if totalsize > MAX_DTB_SIZE {
            return Err(DtError::TooLarge(totalsize));
        }
        if totalsize < HEADER_LEN {
            return Err(DtError::BadHeader);
        }
        // SAFETY: the caller guarantees `totalsize` readable bytes for a valid-looking header.
        let blob = unsafe { core::slice::from_raw_parts(ptr, totalsize) };
        Ok((Self::parse(blob)?, totalsize))
    }

    /// The pages holding the virtio-mmio transports, merged into runs (sorted, disjoint), for
    /// the EL2 map: QEMU packs eight 512-byte transports in a page.
    pub fn virtio_mmio_windows(&self) -> heapless::Vec<Region, MAX_VIRTIO_MMIO> {
        let mut pages: heapless::Vec<(u64, u64), MAX_VIRTIO_MMIO> = self
            .virtio_mmio
            .iter()
            .filter(|t| t.base.size > 0)
            .map(|t| {
                let end = t
                    .base
                    .base
                    .saturating_add(t.base.size)
                    .saturating_add(0xfff)
                    & !0xfff;
                (t.base.base & !0xfff, end)
            })
            .collect();
        pages.sort_unstable();
        let mut out: heapless::Vec<Region, MAX_VIRTIO_MMIO> = heapless::Vec::new();
        for (start, end) in pages {
            match out.last_mut() {
                Some(last) if start <= last.base + last.size => {
                    last.size = last.size.max(end - last.base);
                }
                // Cannot overflow: at most as many runs as transports.
                _ => {
                    let _ = out.push(Region {
                        base: start,
                        size: end - start,
                    });
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the blob, so that the `fdt` crate never meets anything it would panic on.

fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some((u64::from(be32(bytes, offset)?) << 32) | u64::from(be32(bytes, offset.checked_add(4)?)?))
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

#[derive(Debug, Clone, Copy)]
struct Header {
    totalsize: usize,
    off_struct: usize,
    size_struct: usize,
    off_strings: usize,
    size_strings: usize,
    off_rsvmap: usize,
}

impl Header {
    fn read(dtb: &[u8]) -> Result<Header, DtError> {
        let word = |i: usize| {
            be32(dtb, i * 4)
                .map(|w| w as usize)
                .ok_or(DtError::BadHeader)
        };
        let magic = word(0)? as u32;
        if magic != FDT_MAGIC {
            return Err(DtError::BadMagic(magic));
        }
        if dtb.len() < HEADER_LEN {
            return Err(DtError::BadHeader);
        }
        let totalsize = word(1)?;
        if totalsize > dtb.len() {
            return Err(DtError::Truncated {
                totalsize,
                available: dtb.len(),
            });
        }
        let (version, last_comp) = (word(5)? as u32, word(6)? as u32);
        if version < 17 || last_comp > 17 {
            return Err(DtError::UnsupportedVersion(version));
        }
        let header = Header {
            totalsize,
            off_struct: word(2)?,
            off_strings: word(3)?,
            off_rsvmap: word(4)?,
            size_strings: word(8)?,
            size_struct: word(9)?,
        };
        let inside = |off: usize, len: usize| {
            off >= HEADER_LEN && off.checked_add(len).is_some_and(|end| end <= totalsize)
        };
        if !inside(header.off_struct, header.size_struct)
            || !inside(header.off_strings, header.size_strings)
            || !inside(header.off_rsvmap, 16)
        {
            return Err(DtError::BadHeader);
        }
        Ok(header)
    }

    fn struct_block<'a>(&self, dtb: &'a [u8]) -> &'a [u8] {
        &dtb[self.off_struct..self.off_struct + self.size_struct]
    }

    fn strings_block<'a>(&self, dtb: &'a [u8]) -> &'a [u8] {
        &dtb[self.off_strings..self.off_strings + self.size_strings]
    }
}

/// What [`check_structure`] learnt.
struct Layout {
    has_nops: bool,
    /// Bytes of the memory reservation block, terminator included.
    rsvmap_len: usize,
}

/// Walks the reservation map and every token of the structure block, checking everything the
/// `fdt` crate takes for granted. With `sink`, appends every token except NOPs to it.
fn check_structure(
    dtb: &[u8],
    h: &Header,
    mut sink: Option<&mut Vec<u8>>,
) -> Result<Layout, DtError> {
    // Reservation map: 16-byte entries up to an all-zero one, all inside the blob.
    let mut rsvmap_len = 0;
    loop {
        let at = h.off_rsvmap + rsvmap_len;
        if at + 16 > h.totalsize {
            return Err(DtError::BadHeader);
        }
        let (Some(addr), Some(size)) = (be64(dtb, at), be64(dtb, at + 8)) else {
            return Err(DtError::BadHeader);
        };
        rsvmap_len += 16;
        if addr == 0 && size == 0 {
            break;
        }
    }

    let block = h.struct_block(dtb);
    let strings = h.strings_block(dtb);
    let bad = |offset: usize, reason: &'static str| DtError::BadStructure { offset, reason };
    let mut pos = 0usize;
    let mut depth = 0usize;
    let mut root_seen = false;
    // Properties must come before a node's children: false once a child has closed.
    let mut props_allowed = false;
    let mut has_nops = false;
    loop {
        let token = be32(block, pos).ok_or(bad(pos, "structure block ends without FDT_END"))?;
        let start = pos;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && root_seen {
                    return Err(bad(pos, "second root node"));
                }
                let name_at = pos + 4;
                let rest = block.get(name_at..).unwrap_or_default();
                let len = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(bad(pos, "unterminated name"))?;
                let name = core::str::from_utf8(&rest[..len])
                    .map_err(|_| bad(pos, "node name is not UTF-8"))?;
                if depth == 0 && !name.is_empty() {
                    return Err(bad(pos, "root node has a name"));
                }
                if depth > 0 && name.is_empty() {
                    return Err(bad(pos, "node without a name"));
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DtError::TooDeep);
                }
                root_seen = true;
                props_allowed = true;
                pos = align4(name_at + len + 1).ok_or(bad(pos, "name overflow"))?;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(bad(pos, "FDT_END_NODE without a node"));
                }
                depth -= 1;
                props_allowed = false;
                pos += 4;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(bad(pos, "property outside a node"));
                }
                if !props_allowed {
                    return Err(bad(pos, "property after a child node"));
                }
                let len = be32(block, pos + 4).ok_or(bad(pos, "short property"))? as usize;
                let nameoff = be32(block, pos + 8).ok_or(bad(pos, "short property"))? as usize;
                let value_end = (pos + 12)
                    .checked_add(len)
                    .ok_or(bad(pos, "property length"))?;
                if value_end > block.len() {
                    return Err(bad(pos, "property value beyond the structure block"));
                }
                let name = strings.get(nameoff..).unwrap_or_default();
                let name_len = name
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(bad(pos, "property name outside the strings block"))?;
                let name = core::str::from_utf8(&name[..name_len])
                    .map_err(|_| bad(pos, "property name is not UTF-8"))?;
                if name.is_empty() {
                    return Err(bad(pos, "empty property name"));
                }
                pos = align4(value_end).ok_or(bad(pos, "property length"))?;
            }
            FDT_NOP => {
                has_nops = true;
                pos += 4;
                continue;
            }
            FDT_END => {
                if depth != 0 || !root_seen {
                    return Err(bad(pos, "FDT_END inside a node or before the root"));
                }
                if let Some(sink) = sink.as_deref_mut() {
                    sink.extend_from_slice(&block[pos..pos + 4]);
                }
                return Ok(Layout {
                    has_nops,
                    rsvmap_len,
                });
            }
            _ => return Err(bad(pos, "unknown token")),
        }
        if let (Some(sink), Some(bytes)) = (sink.as_deref_mut(), block.get(start..pos)) {
            sink.extend_from_slice(bytes);
        }
    }
}

/// A copy of a checked blob without NOP tokens: header, reservation map, structure, strings.
fn without_nops(dtb: &[u8], h: &Header) -> Result<Vec<u8>, DtError> {
    let mut structure = Vec::new();
    let layout = check_structure(dtb, h, Some(&mut structure))?;
    let rsvmap = &dtb[h.off_rsvmap..h.off_rsvmap + layout.rsvmap_len];
    let strings = h.strings_block(dtb);
    let off_rsvmap = HEADER_LEN; // 40: already 8-byte aligned
    let off_struct = off_rsvmap + rsvmap.len();
    let off_strings = off_struct + structure.len();
    let totalsize = off_strings + strings.len();
    let mut out = Vec::with_capacity(totalsize);
    out.extend_from_slice(&dtb[..HEADER_LEN]);
    for (index, value) in [
        (1, totalsize),
        (2, off_struct),
        (3, off_strings),
        (4, off_rsvmap),
        (8, strings.len()),
        (9, structure.len()),
    ] {
        let value = u32::try_from(value).map_err(|_| DtError::BadHeader)?;
        out[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
    }
    out.extend_from_slice(rsvmap);
    out.extend_from_slice(&structure);
    out.extend_from_slice(strings);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Walking the checked tree.

/// One node on the path from the root: how it lays out its children's addresses.
#[derive(Clone, Copy)]
struct Bus<'a> {
    address_cells: u32,
    size_cells: u32,
    /// This node's `ranges`: `None` if absent (children not translatable), empty = identity.
    ranges: Option<&'a [u8]>,
    /// The interrupt parent its children inherit.
    interrupt_parent: Option<u32>,
}

/// The properties of one node that matter here.
#[derive(Default, Clone, Copy)]
struct Props<'a> {
    compatible: Option<&'a [u8]>,
    device_type: Option<&'a [u8]>,
    status: Option<&'a [u8]>,
    reg: Option<&'a [u8]>,
    ranges: Option<&'a [u8]>,
    address_cells: Option<u32>,
    size_cells: Option<u32>,
    interrupt_cells: Option<u32>,
    interrupts: Option<&'a [u8]>,
    interrupts_extended: Option<&'a [u8]>,
    interrupt_parent: Option<u32>,
    phandle: Option<u32>,
    redistributor_regions: Option<u32>,
    method: Option<&'a [u8]>,
}

fn u32_prop(value: &[u8], name: &'static str) -> Result<u32, DtError> {
    if value.len() != 4 {
        return Err(DtError::BadProperty(name));
    }
    be32(value, 0).ok_or(DtError::BadProperty(name))
}

impl<'a> Props<'a> {
    fn read(node: FdtNode<'_, 'a>) -> Result<Props<'a>, DtError> {
        let mut p = Props::default();
        for prop in node.properties() {
            let v = prop.value;
            match prop.name {
                "compatible" => p.compatible = Some(v),
                "device_type" => p.device_type = Some(v),
                "status" => p.status = Some(v),
                "reg" => p.reg = Some(v),
                "ranges" => p.ranges = Some(v),
                "#address-cells" => p.address_cells = Some(u32_prop(v, "#address-cells")?),
                "#size-cells" => p.size_cells = Some(u32_prop(v, "#size-cells")?),
                "#interrupt-cells" => p.interrupt_cells = Some(u32_prop(v, "#interrupt-cells")?),
                "interrupts" => p.interrupts = Some(v),
                "interrupts-extended" => p.interrupts_extended = Some(v),
                "interrupt-parent" => p.interrupt_parent = Some(u32_prop(v, "interrupt-parent")?),
                "phandle" => p.phandle = Some(u32_prop(v, "phandle")?),
                "linux,phandle" if p.phandle.is_none() => {
                    p.phandle = Some(u32_prop(v, "linux,phandle")?)
                }
                "method" => p.method = Some(v),
                "#redistributor-regions" => {
                    p.redistributor_regions = Some(u32_prop(v, "#redistributor-regions")?)
                }
                _ => {}
            }
        }
        Ok(p)
    }

    fn is_compatible(&self, any_of: &[&str]) -> bool {
        self.compatible
            .is_some_and(|list| strings(list).any(|c| any_of.contains(&c)))
    }

    fn device_type_is(&self, wanted: &str) -> bool {
        self.device_type.and_then(first_string) == Some(wanted)
    }

    /// `status` absent, "okay" or "ok".
    fn available(&self) -> bool {
        self.status
            .is_none_or(|s| matches!(first_string(s), Some("okay" | "ok")))
    }
}

/// The strings of a NUL-separated string list (non-UTF-8 entries are skipped).
fn strings(list: &[u8]) -> impl Iterator<Item = &str> {
    list.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| core::str::from_utf8(s).ok())
}

/// A string property's value up to its first NUL, if UTF-8.
fn first_string(value: &[u8]) -> Option<&str> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    core::str::from_utf8(&value[..end]).ok()
}

/// Reads a 1- or 2-cell number; other widths are not representable.
fn cells_value(bytes: &[u8], cells: u32) -> Option<u64> {
    match cells {
        1 => be32(bytes, 0).map(u64::from),
        2 => be64(bytes, 0),
        _ => None,
    }
}

/// The `(address, size)` entries of a `reg`. `Ok(None)` when the cell widths cannot be read
/// as 64-bit numbers (a PCI bus, say); an error when the length is not whole entries.
fn reg_entries(
    reg: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> Result<Option<impl Iterator<Item = (u64, u64)> + '_>, DtError> {
    if !(1..=2).contains(&address_cells) || size_cells > 2 {
        return Ok(None);
    }
    let entry = ((address_cells + size_cells) * 4) as usize;
    if reg.is_empty() || !reg.len().is_multiple_of(entry) {
        return Err(DtError::BadProperty("reg"));
    }
    Ok(Some(reg.chunks_exact(entry).map(move |e| {
        let split = address_cells as usize * 4;
        let address = cells_value(e, address_cells).unwrap_or(0);
        let size = if size_cells == 0 {
            0
        } else {
            cells_value(&e[split..], size_cells).unwrap_or(0)
        };
        (address, size)
    })))
}

/// Translates `address`, in the address space of the children of `path.last()`, to a CPU
/// physical address by applying the `ranges` of every ancestor below the root.
fn translate(address: u64, path: &[Bus<'_>]) -> Option<u64> {
    let mut address = address;
    for level in (1..path.len()).rev() {
        let (bus, parent) = (&path[level], &path[level - 1]);
        let ranges = bus.ranges?;
        if ranges.is_empty() {
            continue;
        }
        let (child_cells, parent_cells, size_cells) =
            (bus.address_cells, parent.address_cells, bus.size_cells);
        if !(1..=2).contains(&child_cells)
            || !(1..=2).contains(&parent_cells)
            || !(1..=2).contains(&size_cells)
        {
            return None;
        }
        let entry = ((child_cells + parent_cells + size_cells) * 4) as usize;
        if !ranges.len().is_multiple_of(entry) {
            return None;
        }
        address = ranges.chunks_exact(entry).find_map(|e| {
            let child = cells_value(e, child_cells)?;
            let parent_base = cells_value(&e[child_cells as usize * 4..], parent_cells)?;
            let len = cells_value(&e[(child_cells + parent_cells) as usize * 4..], size_cells)?;
            let offset = address.checked_sub(child)?;
            (offset < len)
                .then(|| parent_base.checked_add(offset))
                .flatten()
        })?;
    }
    Some(address)
}

/// The `i`-th `reg` entry of a node whose ancestors are `path`, translated.
fn translated_reg(
    props: &Props<'_>,
    path: &[Bus<'_>],
    i: usize,
) -> Result<Option<Region>, DtError> {
    let (Some(reg), Some(parent)) = (props.reg, path.last()) else {
        return Ok(None);
    };
    let Some(mut entries) = reg_entries(reg, parent.address_cells, parent.size_cells)? else {
        return Ok(None);
    };
    let Some((address, size)) = entries.nth(i) else {
        return Ok(None);
    };
    Ok(translate(address, path).map(|base| Region { base, size }))
}

/// The interrupt controller the interrupts are decoded for: the first enabled GIC.
#[derive(Clone, Copy)]
struct Gic {
    info: GicInfo,
    phandle: Option<u32>,
    interrupt_cells: u32,
}

impl Gic {
    /// One GIC interrupt specifier (type, number, flags[, ...]) as an INTID.
    fn intid(&self, spec: &[u8]) -> Result<u32, DtError> {
        let bad = DtError::BadProperty("interrupts");
        let (kind, number) = (be32(spec, 0).ok_or(bad)?, be32(spec, 4).ok_or(bad)?);
        match kind {
            0 if number < 988 => Ok(32 + number),    // SPI
            1 if number < 16 => Ok(16 + number),     // PPI
            2 if number < 1024 => Ok(4096 + number), // extended SPI
            3 if number < 64 => Ok(1056 + number),   // extended PPI
            _ => Err(bad),
        }
    }

    /// The INTIDs of a node whose interrupt parent is `interrupt_parent`; `None` if the
    /// interrupts go to another controller.
    fn intids(
        &self,
        interrupts: &[u8],
        interrupt_parent: Option<u32>,
    ) -> Result<Option<Vec<u32>>, DtError> {
        if interrupt_parent.is_none() || interrupt_parent != self.phandle {
            return Ok(None);
        }
        let stride = self.interrupt_cells as usize * 4;
        if !interrupts.len().is_multiple_of(stride) {
            return Err(DtError::BadProperty("interrupts"));
        }
        interrupts
            .chunks_exact(stride)
            .map(|spec| self.intid(spec))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// `interrupts-extended`: `<phandle specifier>...`, all of which must name this GIC.
    fn intids_extended(&self, value: &[u8]) -> Result<Option<Vec<u32>>, DtError> {
        let stride = (self.interrupt_cells as usize + 1) * 4;
        if !value.len().is_multiple_of(stride) {
            return Ok(None);
        }
        let mut out = Vec::new();
        for entry in value.chunks_exact(stride) {
            if be32(entry, 0) != self.phandle {
                return Ok(None);
            }
            out.push(self.intid(&entry[4..])?);
        }
        Ok(Some(out))
    }

    /// A node's INTIDs from `interrupts-extended` or `interrupts`.
    fn node_intids(&self, dev: &Device<'_>) -> Result<Option<Vec<u32>>, DtError> {
        if self.phandle.is_none() {
            return Ok(None);
        }
        match (dev.interrupts_extended, dev.interrupts) {
            (Some(ext), _) => self.intids_extended(ext),
            (None, Some(irqs)) => self.intids(irqs, dev.interrupt_parent),
            (None, None) => Ok(None),
        }
    }
}

/// A device found during the walk whose interrupts are decoded once the GIC is known.
#[derive(Clone, Copy)]
struct Device<'a> {
    region: Option<Region>,
    interrupts: Option<&'a [u8]>,
    interrupts_extended: Option<&'a [u8]>,
    interrupt_parent: Option<u32>,
}

#[derive(Default)]
struct Scan<'a> {
    memory: heapless::Vec<Region, MAX_MEMORY_REGIONS>,
    reserved: heapless::Vec<Region, MAX_RESERVED_REGIONS>,
    cpus: heapless::Vec<u64, MAX_CPUS>,
    gic: Option<Gic>,
    timer: Option<Device<'a>>,
    stdout_uart: Option<Device<'a>>,
    first_uart: Option<Device<'a>>,
    psci: Option<PsciMethod>,
    virtio_mmio: heapless::Vec<Device<'a>, MAX_VIRTIO_MMIO>,
    /// `/chosen/stdout-path` resolved through `/aliases`, options stripped.
    stdout_path: Option<&'a str>,
}

fn push<T, const N: usize>(
    v: &mut heapless::Vec<T, N>,
    x: T,
    what: &'static str,
) -> Result<(), DtError> {
    v.push(x).map_err(|_| DtError::TooMany(what))
}

/// Whether the node at `names` (root excluded) is the one `target` names. A target component
/// without a unit address matches a node name with one, as in Linux's `of_find_node_by_path`.
fn path_matches(names: &[&str], target: &str) -> bool {
    let mut wanted = target.split('/').filter(|c| !c.is_empty());
    let mut names = names.iter();
    loop {
        match (wanted.next(), names.next()) {
            (None, None) => return true,
            (Some(w), Some(n)) => {
                let same = *n == w || (!w.contains('@') && n.split('@').next() == Some(w));
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn walk<'a>(
    node: FdtNode<'_, 'a>,
    path: &mut Vec<Bus<'a>>,
    names: &mut Vec<&'a str>,
    scan: &mut Scan<'a>,
) -> Result<(), DtError> {
    if path.len() > MAX_DEPTH {
        return Err(DtError::TooDeep);
    }
    let props = Props::read(node)?;
    let inherited_parent = path.last().and_then(|b| b.interrupt_parent);
    let interrupt_parent = props.interrupt_parent.or(inherited_parent);
    if !path.is_empty() {
        visit(&props, path, names, interrupt_parent, scan)?;
    }
    path.push(Bus {
        address_cells: props.address_cells.unwrap_or(2),
        size_cells: props.size_cells.unwrap_or(1),
        ranges: props.ranges,
        interrupt_parent,
    });
    for child in node.children() {
        names.push(child.name);
        walk(child, path, names, scan)?;
        names.pop();
    }
    path.pop();
    Ok(())
}

/// Looks at one non-root node; `path` holds its ancestors, `names` its path from the root.
fn visit<'a>(
    props: &Props<'a>,
    path: &[Bus<'a>],
    names: &[&'a str],
    interrupt_parent: Option<u32>,
    scan: &mut Scan<'a>,
) -> Result<(), DtError> {
    let available = props.available();
    let parent = path.last().copied().ok_or(DtError::TooDeep)?;
    let base_name = names.last().and_then(|n| n.split('@').next()).unwrap_or("");

    if props.device_type_is("memory") && available {
        if let Some(reg) = props.reg {
            if let Some(entries) = reg_entries(reg, parent.address_cells, parent.size_cells)? {
                for (address, size) in entries.filter(|&(_, size)| size != 0) {
                    address
                        .checked_add(size)
                        .ok_or(DtError::BadProperty("reg"))?;
                    if let Some(base) = translate(address, path) {
                        push(&mut scan.memory, Region { base, size }, "memory regions")?;
                    }
                }
            }
        }
    }

    if names.len() == 2 && names[0] == "reserved-memory" && available {
        if let Some(reg) = props.reg {
            let entries = reg_entries(reg, parent.address_cells, parent.size_cells)?
                .ok_or(DtError::Untranslatable("reserved-memory"))?;
            for (address, size) in entries.filter(|&(_, size)| size != 0) {
                let base =
                    translate(address, path).ok_or(DtError::Untranslatable("reserved-memory"))?;
                push(
                    &mut scan.reserved,
                    Region { base, size },
                    "reserved regions",
                )?;
            }
        }
    }

    let failed = props
        .status
        .and_then(first_string)
        .is_some_and(|s| s.starts_with("fail"));
    if names.len() == 2 && names[0] == "cpus" && props.device_type_is("cpu") && !failed {
        // "disabled" CPUs are parked secondaries, still there to be started.
        let reg = props.reg.ok_or(DtError::BadProperty("cpu reg"))?;
        let cells = parent.address_cells;
        if !(1..=2).contains(&cells) || reg.len() < cells as usize * 4 {
            return Err(DtError::BadProperty("cpu reg"));
        }
        let mpidr = cells_value(reg, cells).ok_or(DtError::BadProperty("cpu reg"))?;
        push(&mut scan.cpus, mpidr, "cpus")?;
    }

    if scan.gic.is_none() && available {
        let version = if props.is_compatible(&["arm,gic-v3"]) {
            Some(GicVersion::V3)
        } else if props.is_compatible(&["arm,cortex-a15-gic", "arm,gic-400"]) {
            Some(GicVersion::V2)
        } else {
            None
        };
        if let Some(version) = version {
            scan.gic = Some(read_gic(version, props, path, interrupt_parent)?);
        }
    }

    let device = |region| Device {
        region,
        interrupts: props.interrupts,
        interrupts_extended: props.interrupts_extended,
        interrupt_parent,
    };

    if scan.timer.is_none()
        && available
        && props.is_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
    {
        scan.timer = Some(device(None));
    }

    if available && props.is_compatible(&["arm,pl011"]) {
        if let Some(region) = translated_reg(props, path, 0)? {
            let uart = device(Some(region));
            if scan.stdout_uart.is_none()
                && scan.stdout_path.is_some_and(|p| path_matches(names, p))
            {
                scan.stdout_uart = Some(uart);
            }
            if scan.first_uart.is_none() {
                scan.first_uart = Some(uart);
            }
        }
    }

    if available && props.is_compatible(&["virtio,mmio"]) {
        if let Some(region) = translated_reg(props, path, 0)? {
            // Past the table's capacity, transports are ignored rather than refused: a disk
            // on one of them is merely not found.
            let _ = scan.virtio_mmio.push(device(Some(region)));
        }
    }

    if names.len() == 1 && base_name == "psci" {
        scan.psci = match props.method.and_then(first_string) {
            Some("smc") => Some(PsciMethod::Smc),
            Some("hvc") => Some(PsciMethod::Hvc),
            _ => None,
        };
    }
    Ok(())
}

fn read_gic(
    version: GicVersion,
    props: &Props<'_>,
    path: &[Bus<'_>],
    interrupt_parent: Option<u32>,
) -> Result<Gic, DtError> {
    let reg =
        |i: usize| translated_reg(props, path, i).map_err(|_| DtError::BadProperty("gic reg"));
    let distributor = reg(0)?.ok_or(DtError::Untranslatable("gic"))?;
    let (redistributors, legacy) = match version {
        GicVersion::V3 => {
            let count = props.redistributor_regions.unwrap_or(1).max(1) as usize;
            (
                Some(reg(1)?.ok_or(DtError::Untranslatable("gic redistributors"))?),
                1 + count,
            )
        }
        GicVersion::V2 => (None, 1),
    };
    let cpu_interface = reg(legacy)?;
    if version == GicVersion::V2 && cpu_interface.is_none() {
        return Err(DtError::Untranslatable("gic cpu interface"));
    }
    let interrupt_cells = props.interrupt_cells.unwrap_or(3);
    if !(3..=16).contains(&interrupt_cells) {
        return Err(DtError::BadProperty("#interrupt-cells"));
    }
    let mut gic = Gic {
        info: GicInfo {
            version,
            distributor,
            redistributors,
            cpu_interface,
            hyp_interface: reg(legacy + 1)?,
            vcpu_interface: reg(legacy + 2)?,
            maintenance_irq: None,
        },
        phandle: props.phandle,
        interrupt_cells,
    };
    // The GIC's own interrupt goes to itself (or to no declared parent at all).
    if let Some(irqs) = props.interrupts {
        if interrupt_parent.is_none() || interrupt_parent == props.phandle {
            let spec = irqs
                .get(..interrupt_cells as usize * 4)
                .ok_or(DtError::BadProperty("interrupts"))?;
            gic.info.maintenance_irq = Some(gic.intid(spec)?);
        }
    }
    Ok(gic)
}

/// Turns a checked blob into [`HwInfo`].
fn extract(dtb: &[u8], h: &Header) -> Result<HwInfo, DtError> {
    let fdt = Fdt::new(dtb).map_err(|_| DtError::BadHeader)?;
    let root = fdt.find_node("/").ok_or(DtError::BadStructure {
        offset: 0,
        reason: "no root node",
    })?;
    let mut scan = Scan::default();

    // `/memreserve/` entries (checked to end with a terminator inside the blob).
    let mut at = h.off_rsvmap;
    while let (Some(base), Some(size)) = (be64(dtb, at), be64(dtb, at + 8)) {
        if base == 0 && size == 0 {
            break;
        }
        if size != 0 {
            push(
                &mut scan.reserved,
                Region { base, size },
                "reserved regions",
            )?;
        }
        at += 16;
    }

    let mut model = heapless::String::new();
    if let Some(m) = root.property("model").and_then(|p| first_string(p.value)) {
        for c in m.chars() {
            if model.push(c).is_err() {
                break;
            }
        }
    }

    let (mut chosen, mut aliases) = (None, None);
    for child in root.children() {
        match child.name.split('@').next() {
            Some("chosen") if chosen.is_none() => chosen = Some(child),
            Some("aliases") if aliases.is_none() => aliases = Some(child),
            _ => {}
        }
    }
    let (mut bootargs, mut initrd) = (None, None);
    if let Some(chosen) = chosen {
        scan.stdout_path = stdout_path(chosen, aliases);
        bootargs = read_bootargs(chosen)?;
        initrd = read_initrd(chosen)?;
    }

    walk(root, &mut Vec::new(), &mut Vec::new(), &mut scan)?;

    let gic = scan.gic;
    let mut timer = None;
    if let (Some(gic), Some(dev)) = (gic, scan.timer) {
        if let Some(ids) = gic.node_intids(&dev)? {
            let [secure_phys, nonsecure_phys, virt, hyp_phys, ..] = ids[..] else {
                return Err(DtError::BadProperty("timer interrupts"));
            };
            timer = Some(TimerIrqs {
                secure_phys,
                nonsecure_phys,
                virt,
                hyp_phys,
            });
        }
    }
    let mut uart = None;
    if let Some(dev) = scan.stdout_uart.or(scan.first_uart) {
        if let Some(base) = dev.region {
            let irq = match gic {
                Some(gic) => gic.node_intids(&dev)?.and_then(|ids| ids.first().copied()),
                None => None,
            };
            uart = Some(UartInfo { base, irq });
        }
    }

    let mut virtio_mmio = heapless::Vec::new();
    for dev in &scan.virtio_mmio {
        if let Some(base) = dev.region {
            let irq = match gic {
                Some(gic) => gic.node_intids(dev)?.and_then(|ids| ids.first().copied()),
                None => None,
            };
            // Cannot fail: as many entries as `scan.virtio_mmio` holds.
            let _ = virtio_mmio.push(VirtioMmio { base, irq });
        }
    }

    Ok(HwInfo {
        memory: scan.memory,
        reserved: scan.reserved,
        cpus: scan.cpus,
        gic: gic.map(|g| g.info),
        uart,
        timer,
        psci: scan.psci,
        initrd,
        bootargs,
        model,
        virtio_mmio,
    })
}

/// `/chosen/stdout-path` as an absolute node path: options after ':' dropped, an alias resolved.
fn stdout_path<'a>(chosen: FdtNode<'_, 'a>, aliases: Option<FdtNode<'_, 'a>>) -> Option<&'a str> {
    let value = chosen
        .property("stdout-path")
        .or_else(|| chosen.property("linux,stdout-path"))?;
    let path = first_string(value.value)?.split(':').next()?;
    if path.starts_with('/') {
        return Some(path);
    }
    let target = aliases?.property(path)?;
    first_string(target.value).filter(|p| p.starts_with('/'))
}

fn read_bootargs(chosen: FdtNode<'_, '_>) -> Result<Option<heapless::String<256>>, DtError> {
    let Some(prop) = chosen.property("bootargs") else {
        return Ok(None);
    };
    let text = first_string(prop.value).ok_or(DtError::BadProperty("bootargs"))?;
    let mut out = heapless::String::new();
    out.push_str(text)
        .map_err(|_| DtError::BootargsTooLong(text.len()))?;
    Ok(Some(out))
}

fn read_initrd(chosen: FdtNode<'_, '_>) -> Result<Option<Region>, DtError> {
    let number = |name: &'static str| -> Result<Option<u64>, DtError> {
        let Some(prop) = chosen.property(name) else {
            return Ok(None);
        };
        match prop.value.len() {
            4 => Ok(be32(prop.value, 0).map(u64::from)),
            8 => Ok(be64(prop.value, 0)),
            _ => Err(DtError::BadProperty(name)),
        }
    };
    match (number("linux,initrd-start")?, number("linux,initrd-end")?) {
        (None, None) => Ok(None),
        (Some(start), Some(end)) if end >= start => Ok(Some(Region {
            base: start,
            size: end - start,
        })),
        (Some(_), Some(_)) | (None, Some(_)) => Err(DtError::BadProperty("linux,initrd-start")),
        (Some(_), None) => Err(DtError::BadProperty("linux,initrd-end")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::guest_fdt::{FdtError, FdtWriter};
    use std::string::String;
    use std::vec;

    // ---- fixtures ----------------------------------------------------------------------------

    /// A real DTB fetched by `scripts/fetch-dtbs.sh`, or `None` (with a note) when it is absent
    /// and `HV_REQUIRE_DTBS` is unset.
    fn fixture(name: &str) -> Option<Vec<u8>> {
        let path = std::format!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../target/dtbs/{}"),
            name
        );
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(err) if std::env::var_os("HV_REQUIRE_DTBS").is_some() => {
                panic!("{path}: {err}; run scripts/fetch-dtbs.sh")
            }
            Err(err) => {
                // Straight to stderr, past the test harness's capture, so the skip shows.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIP: {path} missing ({err}); run scripts/fetch-dtbs.sh to test real DTBs"
                );
                None
            }
        }
    }

    fn region(base: u64, size: u64) -> Region {
        Region { base, size }
    }

    #[test]
    fn qemu_virt_gicv3() {
        let Some(dtb) = fixture("qemu-virt-gicv3.dtb") else {
            return;
        };
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(hw.memory[..], [region(0x4000_0000, 1 << 30)]);
        assert!(hw.reserved.is_empty());
        assert_eq!(hw.cpus[..], [0, 1]);
        assert_eq!(
            hw.gic,
            Some(GicInfo {
                version: GicVersion::V3,
                distributor: region(0x0800_0000, 0x1_0000),
                redistributors: Some(region(0x080a_0000, 0xf6_0000)),
                cpu_interface: None,
                hyp_interface: None,
                vcpu_interface: None,
                maintenance_irq: Some(25),
            })
        );
        assert_eq!(
            hw.uart,
            Some(UartInfo {
                base: region(0x0900_0000, 0x1000),
                irq: Some(33)
            })
        );
        assert_eq!(
            hw.timer,
            Some(TimerIrqs {
                secure_phys: 29,
                nonsecure_phys: 30,
                virt: 27,
                hyp_phys: 26
            })
        );
        assert_eq!(hw.psci, Some(PsciMethod::Smc));
        assert_eq!(hw.initrd, None);
        assert_eq!(hw.bootargs, None);
        assert_eq!(hw.model.as_str(), "linux,dummy-virt");
    }

    #[test]
    fn qemu_virt_gicv2() {
        let Some(dtb) = fixture("qemu-virt-gicv2.dtb") else {
            return;
        };
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(hw.memory[..], [region(0x4000_0000, 1 << 30)]);
        assert_eq!(hw.cpus[..], [0, 1]);
        assert_eq!(
            hw.gic,
            Some(GicInfo {
                version: GicVersion::V2,
                distributor: region(0x0800_0000, 0x1_0000),
                redistributors: None,
                cpu_interface: Some(region(0x0801_0000, 0x1_0000)),
                hyp_interface: Some(region(0x0803_0000, 0x1_0000)),
                vcpu_interface: Some(region(0x0804_0000, 0x1_0000)),
                maintenance_irq: Some(25),
            })
        );
        assert_eq!(
            hw.uart,
            Some(UartInfo {
                base: region(0x0900_0000, 0x1000),
                irq: Some(33)
            })
        );
        assert_eq!(
            hw.timer,
            Some(TimerIrqs {
                secure_phys: 29,
                nonsecure_phys: 30,
                virt: 27,
                hyp_phys: 26
            })
        );
        assert_eq!(hw.psci, Some(PsciMethod::Smc));
    }

    #[test]
    fn raspberry_pi_4b() {
        let Some(dtb) = fixture("bcm2711-rpi-4-b.dtb") else {
            return;
        };
        let hw = HwInfo::parse(&dtb).unwrap();
        // The firmware fills /memory in: the blob has `reg = <0 0 0>`.
        assert!(hw.memory.is_empty());
        // `/memreserve/ 0 0x1000` (spin tables); /reserved-memory has no usable reg.
        assert_eq!(hw.reserved[..], [region(0, 0x1000)]);
        assert_eq!(hw.cpus[..], [0, 1, 2, 3]);
        // The GIC-400 sits under /soc at 0x40041000: translated by /soc's ranges.
        assert_eq!(
            hw.gic,
            Some(GicInfo {
                version: GicVersion::V2,
                distributor: region(0xff84_1000, 0x1000),
                redistributors: None,
                cpu_interface: Some(region(0xff84_2000, 0x2000)),
                hyp_interface: Some(region(0xff84_4000, 0x2000)),
                vcpu_interface: Some(region(0xff84_6000, 0x2000)),
                maintenance_irq: Some(25),
            })
        );
        // stdout-path is serial1, the mini UART: the first enabled PL011 (uart0) is taken,
        // 0x7e201000 on the VideoCore bus, SPI 121.
        assert_eq!(
            hw.uart,
            Some(UartInfo {
                base: region(0xfe20_1000, 0x200),
                irq: Some(153)
            })
        );
        assert_eq!(
            hw.timer,
            Some(TimerIrqs {
                secure_phys: 29,
                nonsecure_phys: 30,
                virt: 27,
                hyp_phys: 26
            })
        );
        // Upstream's tree starts CPUs with spin-table: PSCI only appears with TF-A.
        assert_eq!(hw.psci, None);
        assert_eq!(hw.initrd, None);
        assert_eq!(hw.model.as_str(), "Raspberry Pi 4 Model B");
    }

    #[test]
    fn from_ptr_reads_totalsize_from_the_header() {
        let mut dtb = tree(|w| memory(w, 0x8000_0000, 0x1000_0000));
        let totalsize = dtb.len();
        dtb.extend_from_slice(&[0xff; 64]); // whatever follows the blob is not read as DT
        let (hw, size) = unsafe { HwInfo::from_ptr(dtb.as_ptr()) }.unwrap();
        assert_eq!(size, totalsize);
        assert_eq!(hw.memory[..], [region(0x8000_0000, 0x1000_0000)]);
        assert_eq!(
            unsafe { HwInfo::from_ptr(core::ptr::null()) },
            Err(DtError::NullPointer)
        );
        dtb[4..8].copy_from_slice(&(MAX_DTB_SIZE as u32 + 1).to_be_bytes());
        assert_eq!(
            unsafe { HwInfo::from_ptr(dtb.as_ptr()) },
            Err(DtError::TooLarge(MAX_DTB_SIZE + 1))
        );
        let zeros = [0u8; 8];
        assert_eq!(
            unsafe { HwInfo::from_ptr(zeros.as_ptr()) },
            Err(DtError::BadMagic(0))
        );
    }

    // ---- synthetic trees ---------------------------------------------------------------------

    type Body<'a> = &'a dyn Fn(&mut FdtWriter) -> Result<(), FdtError>;

    /// A root with 2+2 cells and `interrupt-parent = <1>` holding what `body` writes.
    fn tree(body: impl FnOnce(&mut FdtWriter) -> Result<(), FdtError>) -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.prop_u32("#address-cells", 2).unwrap();
        w.prop_u32("#size-cells", 2).unwrap();
        w.prop_u32("interrupt-parent", 1).unwrap();
        body(&mut w).unwrap();
        w.end_node().unwrap();
        w.finish().unwrap()
    }

    fn node(w: &mut FdtWriter, name: &str, body: Body) -> Result<(), FdtError> {
        w.begin_node(name)?;
        body(w)?;
        w.end_node()
    }

    fn memory(w: &mut FdtWriter, base: u64, size: u64) -> Result<(), FdtError> {
        node(w, &std::format!("memory@{base:x}"), &|w| {
            w.prop_str("device_type", "memory")?;
            w.prop_cells("reg", &cells64(&[base, size]))
        })
    }

    fn cells64(values: &[u64]) -> Vec<u32> {
        values
            .iter()
            .flat_map(|&v| [(v >> 32) as u32, v as u32])
            .collect()
    }

    /// A GICv2 at 0x8000000 (phandle 1) with maintenance PPI 9.
    fn gic_v2(w: &mut FdtWriter) -> Result<(), FdtError> {
        node(w, "intc@8000000", &|w| {
            w.prop_str("compatible", "arm,cortex-a15-gic")?;
            w.prop_u32("#interrupt-cells", 3)?;
            w.prop_empty("interrupt-controller")?;
            w.prop_u32("phandle", 1)?;
            w.prop_cells(
                "reg",
                &cells64(&[
                    0x800_0000, 0x1000, 0x801_0000, 0x2000, 0x803_0000, 0x2000, 0x804_0000, 0x2000,
                ]),
            )?;
            w.prop_cells("interrupts", &[1, 9, 4])
        })
    }

    /// A PL011 with a one-cell-per-number reg under a 1+1 bus, SPI `spi`.
    fn pl011(w: &mut FdtWriter, address: u32, spi: u32, status: &str) -> Result<(), FdtError> {
        node(w, &std::format!("serial@{address:x}"), &|w| {
            w.prop_strs("compatible", &["arm,pl011", "arm,primecell"])?;
            w.prop_cells("reg", &[address, 0x100])?;
            w.prop_cells("interrupts", &[0, spi, 4])?;
            w.prop_str("status", status)
        })
    }

    fn bus(
        w: &mut FdtWriter,
        name: &str,
        ranges: Option<&[u32]>,
        body: Body,
    ) -> Result<(), FdtError> {
        node(w, name, &|w| {
            w.prop_str("compatible", "simple-bus")?;
            w.prop_u32("#address-cells", 1)?;
            w.prop_u32("#size-cells", 1)?;
            match ranges {
                Some([]) => w.prop_empty("ranges")?,
                Some(r) => w.prop_cells("ranges", r)?,
                None => {}
            }
            body(w)
        })
    }

    #[test]
    fn reg_is_translated_through_every_ancestor() {
        let dtb = tree(|w| {
            gic_v2(w)?;
            // No ranges: children are not CPU-addressable, this PL011 is skipped.
            bus(w, "isolated", None, &|w| pl011(w, 0x1000, 1, "okay"))?;
            // child 0x0.. -> 0x8000_0000.., then 0x1000.. -> 0x2000.., then identity.
            bus(
                w,
                "outer@80000000",
                Some(&[0, 0, 0x8000_0000, 0x10_0000]),
                &|w| {
                    bus(w, "inner@2000", Some(&[0x1000, 0x2000, 0x1000]), &|w| {
                        bus(w, "flat", Some(&[]), &|w| pl011(w, 0x1010, 7, "okay"))
                    })
                },
            )
        });
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(
            hw.uart,
            Some(UartInfo {
                base: region(0x8000_2010, 0x100),
                irq: Some(39)
            })
        );
        assert_eq!(hw.gic.unwrap().distributor, region(0x800_0000, 0x1000));
    }

    #[test]
    fn translate_maps_only_inside_a_range() {
        let root = Bus {
            address_cells: 2,
            size_cells: 2,
            ranges: None,
            interrupt_parent: None,
        };
        let ranges: Vec<u8> = [0x7e00_0000u32, 0, 0xfe00_0000, 0x180_0000]
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        let soc = Bus {
            address_cells: 1,
            size_cells: 1,
            ranges: Some(&ranges),
            interrupt_parent: None,
        };
        assert_eq!(translate(0x7e00_0000, &[root, soc]), Some(0xfe00_0000));
        assert_eq!(translate(0x7f7f_ffff, &[root, soc]), Some(0xff7f_ffff));
        assert_eq!(translate(0x7f80_0000, &[root, soc]), None);
        assert_eq!(translate(0x7dff_ffff, &[root, soc]), None);
        assert_eq!(translate(0x1234, &[root]), Some(0x1234));
        let opaque = Bus {
            ranges: None,
            ..soc
        };
        assert_eq!(translate(0x7e00_0000, &[root, opaque]), None);
    }

    #[test]
    fn gic_outside_parent_ranges_is_an_error() {
        let dtb = tree(|w| {
            bus(w, "soc", Some(&[0, 0, 0x1000_0000, 0x1000]), &|w| {
                node(w, "intc@8000000", &|w| {
                    w.prop_str("compatible", "arm,gic-400")?;
                    w.prop_cells("reg", &[0x800_0000, 0x1000, 0x801_0000, 0x2000])
                })
            })
        });
        assert_eq!(HwInfo::parse(&dtb), Err(DtError::Untranslatable("gic")));
    }

    #[test]
    fn stdout_path_picks_the_uart() {
        let uarts = |w: &mut FdtWriter| {
            pl011(w, 0x1000, 1, "disabled")?;
            pl011(w, 0x2000, 2, "okay")?;
            pl011(w, 0x3000, 3, "okay")
        };
        let with_stdout = |stdout: &str| {
            tree(|w| {
                node(w, "aliases", &|w| w.prop_str("serial1", "/soc/serial@3000"))?;
                node(w, "chosen", &|w| w.prop_str("stdout-path", stdout))?;
                gic_v2(w)?;
                bus(w, "soc", Some(&[]), &|w| uarts(w))
            })
        };
        let base = |stdout: &str| HwInfo::parse(&with_stdout(stdout)).unwrap().uart.unwrap();
        assert_eq!(
            base("serial1:115200n8"),
            UartInfo {
                base: region(0x3000, 0x100),
                irq: Some(35)
            }
        );
        assert_eq!(base("/soc/serial@3000").base.base, 0x3000);
        // Names a disabled or unknown node: the first enabled PL011.
        assert_eq!(base("/soc/serial@1000").base.base, 0x2000);
        assert_eq!(base("serial9").base.base, 0x2000);
        assert_eq!(base("").base.base, 0x2000);
    }

    #[test]
    fn path_matching_follows_unit_addresses() {
        assert!(path_matches(&["soc", "serial@3000"], "/soc/serial@3000"));
        assert!(path_matches(&["soc@0", "serial@3000"], "/soc/serial"));
        assert!(!path_matches(&["soc", "serial@3000"], "/soc/serial@30"));
        assert!(!path_matches(&["soc", "serial@3000"], "/soc"));
        assert!(!path_matches(&["soc"], "/soc/serial"));
    }

    #[test]
    fn memory_nodes_skip_empty_entries() {
        let dtb = tree(|w| {
            node(w, "memory@0", &|w| {
                w.prop_str("device_type", "memory")?;
                w.prop_cells(
                    "reg",
                    &cells64(&[0, 0, 0x4000_0000, 0x1000_0000, 0x1_0000_0000, 1 << 32]),
                )
            })?;
            node(w, "ram@0", &|w| {
                w.prop_str("device_type", "memory")?;
                w.prop_str("status", "disabled")?;
                w.prop_cells("reg", &cells64(&[0x9000_0000, 0x1000]))
            })?;
            memory(w, 0x2_0000_0000, 0x1000)
        });
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(
            hw.memory[..],
            [
                region(0x4000_0000, 0x1000_0000),
                region(0x1_0000_0000, 1 << 32),
                region(0x2_0000_0000, 0x1000)
            ]
        );
    }

    #[test]
    fn reserved_memory_and_memreserve() {
        let mut w = FdtWriter::new();
        w.reserve_memory(0x4800_0000, 0x2000);
        w.reserve_memory(0x5000_0000, 0); // nothing reserved
        w.begin_node("").unwrap();
        w.prop_u32("#address-cells", 2).unwrap();
        w.prop_u32("#size-cells", 2).unwrap();
        node(&mut w, "reserved-memory", &|w| {
            w.prop_u32("#address-cells", 2)?;
            w.prop_u32("#size-cells", 2)?;
            w.prop_empty("ranges")?;
            node(w, "tee@4e000000", &|w| {
                w.prop_cells("reg", &cells64(&[0x4e00_0000, 0x20_0000]))
            })?;
            node(w, "pool", &|w| w.prop_u64("size", 0x100_0000))?;
            node(w, "off@0", &|w| {
                w.prop_cells("reg", &cells64(&[0x4f00_0000, 0x1000]))?;
                w.prop_str("status", "disabled")
            })
        })
        .unwrap();
        w.end_node().unwrap();
        let hw = HwInfo::parse(&w.finish().unwrap()).unwrap();
        assert_eq!(
            hw.reserved[..],
            [region(0x4800_0000, 0x2000), region(0x4e00_0000, 0x20_0000)]
        );
    }

    #[test]
    fn cpus_with_two_cell_reg_and_too_many() {
        let cpus = |n: u32, cells: u32| {
            tree(move |w| {
                node(w, "cpus", &|w| {
                    w.prop_u32("#address-cells", cells)?;
                    w.prop_u32("#size-cells", 0)?;
                    node(w, "cpu-map", &|_| Ok(()))?;
                    for i in 0..n {
                        node(w, &std::format!("cpu@{i:x}"), &|w| {
                            w.prop_str("device_type", "cpu")?;
                            let mpidr = (u64::from(i) << 32) | 0x100 | u64::from(i);
                            match cells {
                                2 => w.prop_u64("reg", mpidr),
                                _ => w.prop_u32("reg", i),
                            }
                        })?;
                    }
                    Ok(())
                })
            })
        };
        let hw = HwInfo::parse(&cpus(3, 2)).unwrap();
        assert_eq!(hw.cpus[..], [0x100, 0x1_0000_0101, 0x2_0000_0102]);
        assert_eq!(HwInfo::parse(&cpus(8, 1)).unwrap().cpus.len(), 8);
        assert_eq!(HwInfo::parse(&cpus(9, 1)), Err(DtError::TooMany("cpus")));
    }

    #[test]
    fn chosen_initrd_and_bootargs() {
        let chosen = |body: Body| tree(|w| node(w, "chosen", body));
        let hw = HwInfo::parse(&chosen(&|w| {
            w.prop_str("bootargs", "console=ttyAMA0 earlycon")?;
            w.prop_u32("linux,initrd-start", 0x4800_0000)?;
            w.prop_u32("linux,initrd-end", 0x4810_0000)
        }))
        .unwrap();
        assert_eq!(hw.bootargs.as_deref(), Some("console=ttyAMA0 earlycon"));
        assert_eq!(hw.initrd, Some(region(0x4800_0000, 0x10_0000)));

        let hw = HwInfo::parse(&chosen(&|w| {
            w.prop_u64("linux,initrd-start", 0x1_4800_0000)?;
            w.prop_u32("linux,initrd-end", 0x4810_0000) // mixed widths are fine, order is not
        }));
        assert_eq!(hw, Err(DtError::BadProperty("linux,initrd-start")));
        let hw = HwInfo::parse(&chosen(&|w| {
            w.prop_u64("linux,initrd-start", 0x1_4800_0000)?;
            w.prop_u64("linux,initrd-end", 0x1_4800_1000)
        }))
        .unwrap();
        assert_eq!(hw.initrd, Some(region(0x1_4800_0000, 0x1000)));
        let only_start = chosen(&|w| w.prop_u32("linux,initrd-start", 0x4800_0000));
        assert_eq!(
            HwInfo::parse(&only_start),
            Err(DtError::BadProperty("linux,initrd-end"))
        );
        let odd = chosen(&|w| {
            w.prop_cells("linux,initrd-start", &[0, 0, 1])?;
            w.prop_u32("linux,initrd-end", 2)
        });
        assert_eq!(
            HwInfo::parse(&odd),
            Err(DtError::BadProperty("linux,initrd-start"))
        );

        let long: String = "x".repeat(257);
        let too_long = chosen(&|w| w.prop_str("bootargs", &long));
        assert_eq!(HwInfo::parse(&too_long), Err(DtError::BootargsTooLong(257)));
        let fits = chosen(&|w| w.prop_str("bootargs", &long[..256]));
        assert_eq!(HwInfo::parse(&fits).unwrap().bootargs.unwrap().len(), 256);
    }

    #[test]
    fn gic_v3_with_two_redistributor_regions_and_legacy_interfaces() {
        let dtb = tree(|w| {
            node(w, "interrupt-controller@2f000000", &|w| {
                w.prop_str("compatible", "arm,gic-v3")?;
                w.prop_u32("#interrupt-cells", 3)?;
                w.prop_u32("#redistributor-regions", 2)?;
                w.prop_u32("phandle", 1)?;
                w.prop_cells(
                    "reg",
                    &cells64(&[
                        0x2f00_0000,
                        0x1_0000, // GICD
                        0x2f10_0000,
                        0x10_0000, // GICR 0
                        0x3f10_0000,
                        0x10_0000, // GICR 1
                        0x2c00_0000,
                        0x2000, // GICC
                        0x2c01_0000,
                        0x2000, // GICH
                        0x2c02_f000,
                        0x2000, // GICV
                    ]),
                )?;
                w.prop_cells("interrupts", &[1, 9, 4])
            })?;
            node(w, "timer", &|w| {
                w.prop_strs("compatible", &["arm,armv8-timer", "arm,armv7-timer"])?;
                // Via interrupts-extended this time, with a fifth (hyp virtual) timer.
                w.prop_cells(
                    "interrupts-extended",
                    &[
                        1, 1, 13, 8, 1, 1, 14, 8, 1, 1, 11, 8, 1, 1, 10, 8, 1, 1, 12, 8,
                    ],
                )
            })
        });
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(
            hw.gic,
            Some(GicInfo {
                version: GicVersion::V3,
                distributor: region(0x2f00_0000, 0x1_0000),
                redistributors: Some(region(0x2f10_0000, 0x10_0000)),
                cpu_interface: Some(region(0x2c00_0000, 0x2000)),
                hyp_interface: Some(region(0x2c01_0000, 0x2000)),
                vcpu_interface: Some(region(0x2c02_f000, 0x2000)),
                maintenance_irq: Some(25),
            })
        );
        assert_eq!(
            hw.timer,
            Some(TimerIrqs {
                secure_phys: 29,
                nonsecure_phys: 30,
                virt: 27,
                hyp_phys: 26
            })
        );
    }

    #[test]
    fn interrupts_of_another_controller_are_not_decoded() {
        let dtb = tree(|w| {
            gic_v2(w)?;
            node(w, "intc2", &|w| {
                w.prop_u32("phandle", 2)?;
                w.prop_u32("#interrupt-cells", 1)?;
                w.prop_empty("interrupt-controller")
            })?;
            node(w, "timer", &|w| {
                w.prop_str("compatible", "arm,armv8-timer")?;
                w.prop_u32("interrupt-parent", 2)?;
                w.prop_cells("interrupts", &[1, 2, 3, 4])
            })?;
            bus(w, "soc", Some(&[]), &|w| {
                w.prop_u32("interrupt-parent", 2)?; // inherited by the PL011
                pl011(w, 0x1000, 1, "okay")
            })
        });
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(hw.timer, None);
        assert_eq!(
            hw.uart,
            Some(UartInfo {
                base: region(0x1000, 0x100),
                irq: None
            })
        );
    }

    #[test]
    fn bad_interrupt_specifiers_are_errors() {
        let timer = |irqs: &'static [u32]| {
            tree(move |w| {
                gic_v2(w)?;
                node(w, "timer", &|w| {
                    w.prop_str("compatible", "arm,armv8-timer")?;
                    w.prop_cells("interrupts", irqs)
                })
            })
        };
        let bad = Err(DtError::BadProperty("interrupts"));
        assert_eq!(
            HwInfo::parse(&timer(&[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10])),
            bad
        );
        assert_eq!(
            HwInfo::parse(&timer(&[1, 16, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])),
            bad
        );
        assert_eq!(
            HwInfo::parse(&timer(&[7, 1, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])),
            bad
        );
        assert_eq!(
            HwInfo::parse(&timer(&[1, 13, 4, 1, 14, 4])),
            Err(DtError::BadProperty("timer interrupts"))
        );
        let spis = HwInfo::parse(&timer(&[0, 0, 4, 0, 987, 4, 2, 0, 4, 3, 1, 4])).unwrap();
        assert_eq!(
            spis.timer,
            Some(TimerIrqs {
                secure_phys: 32,
                nonsecure_phys: 1019,
                virt: 4096,
                hyp_phys: 1057
            })
        );
    }

    #[test]
    fn psci_method() {
        let psci = |method: &'static str| {
            HwInfo::parse(&tree(|w| {
                node(w, "psci", &|w| w.prop_str("method", method))
            }))
            .unwrap()
            .psci
        };
        assert_eq!(psci("hvc"), Some(PsciMethod::Hvc));
        assert_eq!(psci("smc"), Some(PsciMethod::Smc));
        assert_eq!(psci("magic"), None);
    }

    #[test]
    fn long_model_is_cut_at_a_char_boundary() {
        let model: String = "é".repeat(40); // 80 bytes
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.prop_str("model", &model).unwrap();
        w.end_node().unwrap();
        let hw = HwInfo::parse(&w.finish().unwrap()).unwrap();
        assert_eq!(hw.model.as_str(), &model[..64]);
    }

    /// Inserts a NOP token at `at` (an offset in the structure block).
    fn insert_nop(dtb: &[u8], at: usize) -> Vec<u8> {
        let h = Header::read(dtb).unwrap();
        let mut out = dtb.to_vec();
        out.splice(h.off_struct + at..h.off_struct + at, FDT_NOP.to_be_bytes());
        let bump = |out: &mut Vec<u8>, word: usize| {
            let v = be32(out, word * 4).unwrap() + 4;
            out[word * 4..word * 4 + 4].copy_from_slice(&v.to_be_bytes());
        };
        bump(&mut out, 1); // totalsize
        bump(&mut out, 3); // off_dt_strings
        bump(&mut out, 9); // size_dt_struct
        out
    }

    /// Offsets of every token boundary of a NOP-free structure block.
    fn token_offsets(dtb: &[u8]) -> Vec<usize> {
        let h = Header::read(dtb).unwrap();
        let mut sink = Vec::new();
        check_structure(dtb, &h, Some(&mut sink)).unwrap();
        assert_eq!(
            sink,
            h.struct_block(dtb),
            "sink copies a NOP-free block verbatim"
        );
        let (mut offsets, mut pos) = (vec![], 0);
        while pos < sink.len() {
            offsets.push(pos);
            pos += match be32(&sink, pos).unwrap() {
                FDT_BEGIN_NODE => {
                    let len = sink[pos + 4..].iter().position(|&b| b == 0).unwrap();
                    align4(4 + len + 1).unwrap()
                }
                FDT_PROP => align4(12 + be32(&sink, pos + 4).unwrap() as usize).unwrap(),
                _ => 4,
            };
        }
        offsets
    }

    #[test]
    fn nop_tokens_anywhere_are_ignored() {
        let dtb = tree(|w| {
            gic_v2(w)?;
            node(w, "chosen", &|w| w.prop_str("bootargs", "quiet"))?;
            bus(w, "soc", Some(&[]), &|w| pl011(w, 0x1000, 1, "okay"))
        });
        let expected = HwInfo::parse(&dtb).unwrap();
        let offsets = token_offsets(&dtb);
        assert!(offsets.len() > 20);
        // One NOP before each token, and NOPs before every token at once.
        let mut all = dtb.clone();
        for &at in offsets.iter().rev() {
            assert_eq!(
                HwInfo::parse(&insert_nop(&dtb, at)).as_ref(),
                Ok(&expected),
                "NOP at {at}"
            );
            all = insert_nop(&all, at);
        }
        assert_eq!(HwInfo::parse(&all), Ok(expected));
    }

    /// A blob with the given structure words and strings block.
    fn raw_blob(structure: &[u32], strings: &[u8]) -> Vec<u8> {
        let off_struct = HEADER_LEN + 16;
        let off_strings = off_struct + structure.len() * 4;
        let totalsize = off_strings + strings.len();
        let header = [
            FDT_MAGIC,
            totalsize as u32,
            off_struct as u32,
            off_strings as u32,
            HEADER_LEN as u32,
            17,
            16,
            0,
            strings.len() as u32,
            structure.len() as u32 * 4,
        ];
        let mut out: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
        out.extend_from_slice(&[0; 16]);
        out.extend(structure.iter().flat_map(|w| w.to_be_bytes()));
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn malformed_structures_are_refused() {
        const A: u32 = 0x6100_0000; // node name "a"
        let reason = |words: &[u32], strings: &[u8]| match HwInfo::parse(&raw_blob(words, strings))
        {
            Err(DtError::BadStructure { reason, .. }) => reason,
            other => panic!("{words:x?}: {other:?}"),
        };
        let ok = [FDT_BEGIN_NODE, 0, FDT_PROP, 0, 0, FDT_END_NODE, FDT_END];
        assert!(HwInfo::parse(&raw_blob(&ok, b"x\0")).is_ok());
        assert_eq!(reason(&ok, b"x"), "property name outside the strings block");
        assert_eq!(
            reason(
                &[FDT_BEGIN_NODE, 0, FDT_PROP, 0, 2, FDT_END_NODE, FDT_END],
                b"x\0"
            ),
            "property name outside the strings block"
        );
        assert_eq!(
            reason(
                &[FDT_BEGIN_NODE, 0, FDT_PROP, 0, 0, FDT_END_NODE, FDT_END],
                b"\xff\0"
            ),
            "property name is not UTF-8"
        );
        assert_eq!(
            reason(&[FDT_BEGIN_NODE, 0, FDT_PROP, 9, 0, FDT_END_NODE], b"x\0"),
            "property value beyond the structure block"
        );
        assert_eq!(
            reason(&[FDT_BEGIN_NODE, 0, FDT_END_NODE], b""),
            "structure block ends without FDT_END"
        );
        assert_eq!(
            reason(&[FDT_END_NODE, FDT_END], b""),
            "FDT_END_NODE without a node"
        );
        assert_eq!(
            reason(&[FDT_BEGIN_NODE, 0, FDT_END], b""),
            "FDT_END inside a node or before the root"
        );
        assert_eq!(
            reason(&[FDT_END], b""),
            "FDT_END inside a node or before the root"
        );
        assert_eq!(
            reason(&[FDT_BEGIN_NODE, 0, 7, FDT_END_NODE, FDT_END], b""),
            "unknown token"
        );
        assert_eq!(
            reason(&[FDT_PROP, 0, 0, FDT_END], b"x\0"),
            "property outside a node"
        );
        assert_eq!(
            reason(
                &[
                    FDT_BEGIN_NODE,
                    0,
                    FDT_END_NODE,
                    FDT_BEGIN_NODE,
                    0,
                    FDT_END_NODE,
                    FDT_END
                ],
                b""
            ),
            "second root node"
        );
        assert_eq!(
            reason(&[FDT_BEGIN_NODE, A, FDT_END_NODE, FDT_END], b""),
            "root node has a name"
        );
        assert_eq!(
            reason(
                &[
                    FDT_BEGIN_NODE,
                    0,
                    FDT_BEGIN_NODE,
                    0,
                    FDT_END_NODE,
                    FDT_END_NODE,
                    FDT_END
                ],
                b""
            ),
            "node without a name"
        );
        assert_eq!(
            reason(
                &[
                    FDT_BEGIN_NODE,
                    0,
                    FDT_BEGIN_NODE,
                    A,
                    FDT_END_NODE,
                    FDT_PROP,
                    0,
                    0,
                    FDT_END_NODE,
                    FDT_END
                ],
                b"x\0"
            ),
            "property after a child node"
        );
        assert_eq!(
            reason(&[FDT_BEGIN_NODE, 0x6161_6161], b""),
            "unterminated name"
        );
        let mut deep = vec![FDT_BEGIN_NODE, 0];
        for _ in 0..MAX_DEPTH {
            deep.extend([FDT_BEGIN_NODE, A]);
        }
        assert_eq!(HwInfo::parse(&raw_blob(&deep, b"")), Err(DtError::TooDeep));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = tree(|_| Ok(()));
        let with = |word: usize, value: u32| {
            let mut b = good.clone();
            b[word * 4..word * 4 + 4].copy_from_slice(&value.to_be_bytes());
            HwInfo::parse(&b)
        };
        assert!(HwInfo::parse(&good).is_ok());
        assert_eq!(with(0, 0xedfe0dd0), Err(DtError::BadMagic(0xedfe0dd0)));
        assert_eq!(with(5, 16), Err(DtError::UnsupportedVersion(16)));
        assert_eq!(with(2, 8), Err(DtError::BadHeader)); // structure inside the header
        assert_eq!(with(9, u32::MAX), Err(DtError::BadHeader));
        assert_eq!(with(4, good.len() as u32 - 8), Err(DtError::BadHeader)); // rsvmap past the end
        assert_eq!(
            HwInfo::parse(&good[..good.len() - 1]),
            Err(DtError::Truncated {
                totalsize: good.len(),
                available: good.len() - 1
            })
        );
        assert_eq!(HwInfo::parse(&good[..20]), Err(DtError::BadHeader));
        assert_eq!(HwInfo::parse(&[]), Err(DtError::BadHeader));
        // The reservation map must end before totalsize.
        let mut w = FdtWriter::new();
        w.reserve_memory(1, 1);
        w.begin_node("").unwrap();
        w.end_node().unwrap();
        let mut b = w.finish().unwrap();
        b[HEADER_LEN + 16..HEADER_LEN + 32].fill(0xee); // terminator gone, struct follows
        assert!(HwInfo::parse(&b).is_err());
    }

    // ---- robustness ------------------------------------------------------------------------

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Real DTBs if fetched, and synthetic ones always, cut to their used size.
    fn corpus() -> Vec<Vec<u8>> {
        let mut blobs = vec![
            tree(|w| {
                node(w, "aliases", &|w| w.prop_str("serial0", "/soc/serial@2000"))?;
                node(w, "chosen", &|w| {
                    w.prop_str("stdout-path", "serial0:115200")?;
                    w.prop_str("bootargs", "console=hvc0")?;
                    w.prop_u64("linux,initrd-start", 0x4800_0000)?;
                    w.prop_u64("linux,initrd-end", 0x4900_0000)
                })?;
                memory(w, 0x4000_0000, 0x4000_0000)?;
                gic_v2(w)?;
                node(w, "timer", &|w| {
                    w.prop_str("compatible", "arm,armv8-timer")?;
                    w.prop_cells("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
                })?;
                bus(w, "soc", Some(&[0, 0, 0x1000_0000, 0x10_0000]), &|w| {
                    pl011(w, 0x2000, 1, "okay")
                })
            }),
            crate::dt::guest_fdt::build_guest_dtb(&crate::dt::guest_fdt::GuestDtConfig {
                ram_base: 0x8000_0000,
                ram_size: 0x1000_0000,
                vcpus: 4,
                bootargs: "console=hvc0",
                initrd: Some((0x8800_0000, 0x8900_0000)),
                platform: Some(crate::dt::guest_fdt::GuestPlatform {
                    gic: crate::dt::guest_fdt::GuestGic::V3 {
                        distributor: (0x0800_0000, 0x1_0000),
                        redistributors: (0x080a_0000, 0x8_0000),
                    },
                    uart: (0x0900_0000, 1),
                }),
            })
            .unwrap(),
        ];
        for name in [
            "qemu-virt-gicv3.dtb",
            "qemu-virt-gicv2.dtb",
            "bcm2711-rpi-4-b.dtb",
        ] {
            if let Some(mut dtb) = fixture(name) {
                // QEMU pads its blob to 1 MiB: keep the parsing quick by dropping the padding.
                let h = Header::read(&dtb).unwrap();
                let used = h.off_strings + h.size_strings;
                dtb.truncate(used);
                dtb[4..8].copy_from_slice(&(used as u32).to_be_bytes());
                blobs.push(dtb);
            }
        }
        for dtb in &blobs {
            HwInfo::parse(dtb).expect("corpus blobs are valid");
        }
        blobs
    }

    #[test]
    fn every_shortened_structure_block_is_refused() {
        for dtb in corpus() {
            let h = Header::read(&dtb).unwrap();
            for size in 0..h.size_struct {
                let mut b = dtb.clone();
                b[36..40].copy_from_slice(&(size as u32).to_be_bytes());
                assert!(
                    HwInfo::parse(&b).is_err(),
                    "size_dt_struct {size} of {}",
                    h.size_struct
                );
                // And the blob itself cut there (header consistent with the cut).
                let cut = h.off_struct + size;
                let mut c = dtb[..cut.max(HEADER_LEN)].to_vec();
                let len = c.len() as u32;
                c[4..8].copy_from_slice(&len.to_be_bytes());
                assert!(HwInfo::parse(&c).is_err());
            }
        }
    }

    #[test]
    fn corrupted_blobs_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut ok, mut err) = (0, 0);
        for dtb in corpus() {
            let h = Header::read(&dtb).unwrap();
            for _ in 0..10_000 {
                let mut b = dtb.clone();
                for _ in 0..1 + rng.below(3) {
                    match rng.below(4) {
                        // Any byte anywhere.
                        0 if !b.is_empty() => {
                            let i = rng.below(b.len());
                            b[i] = rng.next() as u8;
                        }
                        // A token or a small number in place of an aligned structure word.
                        1 => {
                            let i = h.off_struct + 4 * rng.below(h.size_struct / 4);
                            let v =
                                [1, 2, 3, 4, 9, 0, 7, 0xffff_ffff, rng.next() as u32][rng.below(9)];
                            if let Some(word) = b.get_mut(i..i + 4) {
                                word.copy_from_slice(&u32::to_be_bytes(v));
                            }
                        }
                        // A byte of the header or of the strings block.
                        2 => {
                            let i = if rng.below(2) == 0 {
                                rng.below(HEADER_LEN)
                            } else {
                                h.off_strings + rng.below(h.size_strings.max(1))
                            };
                            if let Some(byte) = b.get_mut(i) {
                                *byte = rng.next() as u8;
                            }
                        }
                        // Truncation.
                        _ => b.truncate(rng.below(b.len() + 1)),
                    }
                }
                match HwInfo::parse(&b) {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        let _ = std::format!("{e}");
                        err += 1
                    }
                }
            }
        }
        assert!(ok > 0 && err > 0, "ok {ok} err {err}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..50_000 {
            let len = rng.below(512);
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 2 == 0 && len >= 56 {
                // A plausible header so that the structure walk is reached.
                let words = [
                    FDT_MAGIC,
                    len as u32,
                    56,
                    56 + rng.below(len) as u32,
                    40,
                    17,
                    16,
                ];
                for (i, w) in words.iter().enumerate() {
                    b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
                }
                b[40..56].fill(0);
                let size_struct = rng.below(len - 40) as u32;
                b[36..40].copy_from_slice(&size_struct.to_be_bytes());
            }
            let _ = HwInfo::parse(&b);
        }
    }

    #[test]
    fn errors_display() {
        let text = std::format!(
            "{}",
            DtError::BadStructure {
                offset: 0x10,
                reason: "unknown token"
            }
        );
        assert_eq!(
            text,
            "malformed device tree structure at 0x10: unknown token"
        );
        assert_eq!(
            std::format!("{}", DtError::BadMagic(1)),
            "bad device tree magic 0x00000001"
        );
        assert_eq!(
            std::format!("{}", DtError::TooMany("cpus")),
            "too many cpus in the device tree"
        );
    }

    // ---- virtio-mmio transports --------------------------------------------------------------

    #[test]
    fn qemu_virt_virtio_mmio_transports() {
        let Some(dtb) = fixture("qemu-virt-gicv3.dtb") else {
            return;
        };
        let hw = HwInfo::parse(&dtb).unwrap();
        // QEMU `virt`: 32 transports of 0x200 bytes from 0xa000000, SPIs 16..48.
        assert_eq!(hw.virtio_mmio.len(), 32);
        for (i, t) in hw.virtio_mmio.iter().enumerate() {
            let i = i as u64;
            assert_eq!(t.base, region(0x0a00_0000 + 0x200 * i, 0x200));
            assert_eq!(t.irq, Some(48 + i as u32));
        }
        assert_eq!(hw.virtio_mmio_windows()[..], [region(0x0a00_0000, 0x4000)]);
    }

    fn virtio(w: &mut FdtWriter, address: u64, size: u64, status: &str) -> Result<(), FdtError> {
        node(w, &std::format!("virtio_mmio@{address:x}"), &|w| {
            w.prop_str("compatible", "virtio,mmio")?;
            w.prop_cells("reg", &cells64(&[address, size]))?;
            w.prop_cells("interrupts", &[0, 0x10, 1])?;
            w.prop_str("status", status)
        })
    }

    #[test]
    fn virtio_mmio_transports_skip_disabled_ones_and_merge_their_pages() {
        let dtb = tree(|w| {
            gic_v2(w)?;
            virtio(w, 0x1000_0200, 0x200, "okay")?;
            virtio(w, 0x1000_0000, 0x200, "okay")?;
            virtio(w, 0x1000_0400, 0x200, "disabled")?;
            virtio(w, 0x1000_1e00, 0x400, "okay")?; // straddles two pages
            virtio(w, 0x2000_0000, 0x200, "okay")
        });
        let hw = HwInfo::parse(&dtb).unwrap();
        let bases: Vec<u64> = hw.virtio_mmio.iter().map(|t| t.base.base).collect();
        assert_eq!(bases, [0x1000_0200, 0x1000_0000, 0x1000_1e00, 0x2000_0000]);
        assert_eq!(hw.virtio_mmio[0].irq, Some(48));
        assert_eq!(
            hw.virtio_mmio_windows()[..],
            [region(0x1000_0000, 0x3000), region(0x2000_0000, 0x1000)]
        );
    }

    #[test]
    fn more_virtio_transports_than_kept_are_ignored() {
        let dtb = tree(|w| {
            for i in 0..MAX_VIRTIO_MMIO as u64 + 3 {
                virtio(w, 0x1000_0000 + 0x200 * i, 0x200, "okay")?;
            }
            Ok(())
        });
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(hw.virtio_mmio.len(), MAX_VIRTIO_MMIO);
        assert_eq!(
            hw.virtio_mmio[0].irq, None,
            "no GIC: interrupts not decoded"
        );
    }
}
