//! Writing device trees for guests.
//!
//! Owns: [`FdtWriter`], a flattened device tree writer (DTSpec v0.4 chapter 5: header, memory
//! reservation block, structure block, deduplicated strings block), and [`build_guest_dtb`],
//! which describes one VM (its RAM, vCPUs, PSCI over HVC, command line and initrd) in terms of
//! its own IPA space.
//!
//! Must never: describe anything of the host (physical addresses, host devices, the host's
//! device tree): a guest's tree is built from its [`GuestDtConfig`] alone; panic on any input;
//! produce a blob that is not well formed (unbalanced nodes, properties after child nodes and
//! bad names are refused with an [`FdtError`]).

use alloc::vec::Vec;
use core::fmt;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
const HEADER_LEN: usize = 40;
const VERSION: u32 = 17;
const LAST_COMP_VERSION: u32 = 16;
/// DTSpec 2.2.4: property names are 1 to 31 characters.
const MAX_PROPERTY_NAME: usize = 31;

/// Why a tree could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// The root must be named "" and every other node must have a valid, non-empty name.
    BadNodeName,
    /// Property names are 1..=31 of `[0-9a-zA-Z,._+?#-]`.
    BadPropertyName,
    /// A string value holds a NUL byte.
    BadStringValue,
    /// `end_node` or a property with no node open.
    NoOpenNode,
    /// A node begun after the root node was closed.
    SecondRoot,
    /// A property after a child node of the same node (DTSpec requires them first).
    PropertyAfterChild,
    /// `finish` with nodes still open (how many).
    UnclosedNodes(usize),
    /// `finish` with no root node.
    NoRoot,
    /// The blob would not fit the header's 32-bit fields.
    TooLarge,
    /// The guest configuration is inconsistent (which field).
    BadConfig(&'static str),
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadNodeName => write!(f, "invalid device tree node name"),
            Self::BadPropertyName => write!(f, "invalid device tree property name"),
            Self::BadStringValue => write!(f, "device tree string value contains NUL"),
            Self::NoOpenNode => write!(f, "no device tree node is open"),
            Self::SecondRoot => write!(f, "a device tree has exactly one root node"),
            Self::PropertyAfterChild => write!(f, "device tree property after a child node"),
            Self::UnclosedNodes(n) => write!(f, "{n} device tree node(s) left open"),
            Self::NoRoot => write!(f, "device tree has no root node"),
            Self::TooLarge => write!(f, "device tree exceeds 4 GiB"),
            Self::BadConfig(what) => write!(f, "invalid guest device tree configuration: {what}"),
        }
    }
}

/// Builds a flattened device tree in memory, node by node.
///
/// The root is `begin_node("")`; each node's properties come before its children.
#[derive(Debug, Clone, Default)]
pub struct FdtWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
    /// Where each string of `strings` ends (its NUL), in order: a name already there ends at
    /// one of them.
    string_ends: Vec<u32>,
    reservations: Vec<(u64, u64)>,
    boot_cpuid_phys: u32,
    depth: usize,
    root_done: bool,
    /// False once a child of the innermost open node has been closed.
    props_allowed: bool,
}

/// Room reserved up front: a guest's tree (a few hundred bytes per vCPU and device) is
/// written without growing the buffers.
const STRUCTURE_CAPACITY: usize = 2048;
const STRINGS_CAPACITY: usize = 512;

impl FdtWriter {
    pub fn new() -> Self {
        FdtWriter {
            structure: Vec::with_capacity(STRUCTURE_CAPACITY),
            strings: Vec::with_capacity(STRINGS_CAPACITY),
            string_ends: Vec::with_capacity(STRINGS_CAPACITY / 8),
            ..Self::default()
        }
    }

    /// Adds a memory reservation block entry (`/memreserve/`).
    pub fn reserve_memory(&mut self, address: u64, size: u64) {
        self.reservations.push((address, size));
    }

    /// Sets the header's `boot_cpuid_phys` (default 0).
    pub fn set_boot_cpuid_phys(&mut self, id: u32) {
        self.boot_cpuid_phys = id;
    }

    /// Opens node `base@<unit in hex>` (`memory@40000000`) without formatting a string.
    pub fn begin_node_at(&mut self, base: &str, unit: u64) -> Result<(), FdtError> {
        let mut name = [0u8; 32 + 1 + 16];
        let b = base.as_bytes();
        if b.len() > 32 {
            return Err(FdtError::BadNodeName);
        }
        name[..b.len()].copy_from_slice(b);
        name[b.len()] = b'@';
        let len = b.len() + 1 + write_hex(&mut name[b.len() + 1..], unit);
        // Only ASCII was written.
        let name = core::str::from_utf8(&name[..len]).map_err(|_| FdtError::BadNodeName)?;
        self.begin_node(name)
    }

    /// Opens a node: `""` for the root, else `name[@unit-address]`.
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtError> {
        if self.root_done {
            return Err(FdtError::SecondRoot);
        }
        let valid = if self.depth == 0 {
            name.is_empty()
        } else {
            valid_node_name(name)
        };
        if !valid {
            return Err(FdtError::BadNodeName);
        }
        self.token(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self.depth += 1;
        self.props_allowed = true;
        Ok(())
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::NoOpenNode);
        }
        self.token(FDT_END_NODE);
        self.depth -= 1;
        self.props_allowed = false;
        if self.depth == 0 {
            self.root_done = true;
        }
        Ok(())
    }

    /// A property with raw bytes as its value.
    pub fn prop_bytes(&mut self, name: &str, value: &[u8]) -> Result<(), FdtError> {
        self.prop_header(name, value.len())?;
        self.structure.extend_from_slice(value);
        self.pad();
        Ok(())
    }

    /// Checks a property of `len` bytes and writes its `FDT_PROP`, length and name offset; the
    /// caller writes the value, then pads.
    fn prop_header(&mut self, name: &str, len: usize) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::NoOpenNode);
        }
        if !self.props_allowed {
            return Err(FdtError::PropertyAfterChild);
        }
        if !valid_property_name(name) {
            return Err(FdtError::BadPropertyName);
        }
        let len = u32::try_from(len).map_err(|_| FdtError::TooLarge)?;
        let name_offset = self.string_offset(name)?;
        self.token(FDT_PROP);
        self.token(len);
        self.token(name_offset);
        Ok(())
    }

    /// A property without a value (a flag such as `ranges` or `interrupt-controller`).
    pub fn prop_empty(&mut self, name: &str) -> Result<(), FdtError> {
        self.prop_bytes(name, &[])
    }

    /// One big-endian 32-bit cell.
    pub fn prop_u32(&mut self, name: &str, v: u32) -> Result<(), FdtError> {
        self.prop_bytes(name, &v.to_be_bytes())
    }

    /// One big-endian 64-bit value (two cells).
    pub fn prop_u64(&mut self, name: &str, v: u64) -> Result<(), FdtError> {
        self.prop_bytes(name, &v.to_be_bytes())
    }

    /// A list of 32-bit cells.
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), FdtError> {
        self.prop_header(name, cells.len() * 4)?;
        for &c in cells {
            self.token(c);
        }
        Ok(())
    }

    /// A NUL-terminated string.
    pub fn prop_str(&mut self, name: &str, s: &str) -> Result<(), FdtError> {
        self.prop_strs(name, &[s])
    }

    /// A string list: each string NUL-terminated, one after the other.
    pub fn prop_strs(&mut self, name: &str, list: &[&str]) -> Result<(), FdtError> {
        if list.iter().any(|s| s.as_bytes().contains(&0)) {
            return Err(FdtError::BadStringValue);
        }
        let len = list.iter().map(|s| s.len() + 1).sum();
        self.prop_header(name, len)?;
        for s in list {
            self.structure.extend_from_slice(s.as_bytes());
            self.structure.push(0);
        }
        self.pad();
        Ok(())
    }

    /// Lays out the blob: header, reservations, structure (ending with `FDT_END`), strings.
    pub fn finish(mut self) -> Result<Vec<u8>, FdtError> {
        if self.depth != 0 {
            return Err(FdtError::UnclosedNodes(self.depth));
        }
        if !self.root_done {
            return Err(FdtError::NoRoot);
        }
        self.token(FDT_END);
        let off_rsvmap = HEADER_LEN; // 8-byte aligned as DTSpec requires
        let off_struct = off_rsvmap + (self.reservations.len() + 1) * 16;
        let off_strings = off_struct + self.structure.len();
        let totalsize = off_strings + self.strings.len();
        let field = |v: usize| u32::try_from(v).map_err(|_| FdtError::TooLarge);
        let header = [
            FDT_MAGIC,
            field(totalsize)?,
            field(off_struct)?,
            field(off_strings)?,
            field(off_rsvmap)?,
            VERSION,
            LAST_COMP_VERSION,
            self.boot_cpuid_phys,
            field(self.strings.len())?,
            field(self.structure.len())?,
        ];
        let mut out = Vec::with_capacity(totalsize);
        for word in header {
            out.extend_from_slice(&word.to_be_bytes());
        }
        for &(address, size) in self.reservations.iter().chain(&[(0, 0)]) {
            out.extend_from_slice(&address.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
        }
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }

    fn token(&mut self, v: u32) {
        self.structure.extend_from_slice(&v.to_be_bytes());
    }

    fn pad(&mut self) {
        let padded = self.structure.len().next_multiple_of(4);
        self.structure.resize(padded, 0);
    }

    /// The offset of `name` in the strings block, reusing any existing `name\0` (also as the
    /// tail of a longer string, as libfdt does).
    fn string_offset(&mut self, name: &str) -> Result<u32, FdtError> {
        // A match ends at a NUL: only the strings' ends are tried, in order (the first match,
        // as a search of every window would find), not every byte.
        let n = name.as_bytes();
        let strings = &self.strings;
        let found = self
            .string_ends
            .iter()
            .map(|&end| end as usize)
            .filter(|&end| end >= n.len())
            .map(|end| end - n.len())
            .find(|&start| {
                let candidate = &strings[start..start + n.len()];
                candidate.first() == n.first() && candidate == n
            });
        let offset = match found {
            Some(offset) => offset,
            None => {
                let offset = self.strings.len();
                self.strings.extend_from_slice(name.as_bytes());
                let end = u32::try_from(self.strings.len()).map_err(|_| FdtError::TooLarge)?;
                self.string_ends.push(end);
                self.strings.push(0);
                offset
            }
        };
        u32::try_from(offset).map_err(|_| FdtError::TooLarge)
    }
}

/// Writes `v` in lower-case hex without leading zeros into `out` (16 bytes suffice); the
/// number of bytes written.
fn write_hex(out: &mut [u8], v: u64) -> usize {
    let digits = (64 - v.leading_zeros() as usize).div_ceil(4).max(1);
    for (i, o) in out[..digits].iter_mut().enumerate() {
        let nibble = (v >> ((digits - 1 - i) * 4)) & 0xf;
        *o = b"0123456789abcdef"[nibble as usize];
    }
    digits
}

/// DTSpec 2.2.1: `node-name[@unit-address]`, node-name 1..=31 of `[0-9a-zA-Z,._+-]`.
fn valid_node_name(name: &str) -> bool {
    let (base, unit) = match name.split_once('@') {
        Some((base, unit)) => (base, Some(unit)),
        None => (name, None),
    };
    let base_ok = (1..=31).contains(&base.len())
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b",._+-".contains(&b));
    let unit_ok = unit.is_none_or(|u| {
        !u.is_empty()
            && u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b",._+-".contains(&b))
    });
    base_ok && unit_ok
}

/// The bytes allowed in property names, one bit per ASCII code (a test checks it against the
/// DTSpec list): a guest's tree checks a few hundred of them.
const PROPERTY_NAME_CHARS: u128 = property_name_chars();

const fn property_name_chars() -> u128 {
    let mut set = 0u128;
    let mut b = 0u8;
    while b < 128 {
        if b.is_ascii_alphanumeric() || matches!(b, b',' | b'.' | b'_' | b'+' | b'?' | b'#' | b'-')
        {
            set |= 1 << b;
        }
        b += 1;
    }
    set
}

/// DTSpec 2.2.4: 1..=31 of `[0-9a-zA-Z,._+?#-]`.
fn valid_property_name(name: &str) -> bool {
    (1..=MAX_PROPERTY_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b < 128 && PROPERTY_NAME_CHARS & (1 << b) != 0)
}

/// What a guest's device tree describes, all in the guest's IPA space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestDtConfig<'a> {
    pub ram_base: u64,
    pub ram_size: u64,
    /// vCPU `i` gets MPIDR affinity `i`.
    pub vcpus: u32,
    pub bootargs: &'a str,
    /// `(start, end)` IPAs of the initrd, inside RAM.
    pub initrd: Option<(u64, u64)>,
    /// The emulated platform devices, if the VM has them (Linux guests do; bare test guests
    /// need none).
    pub platform: Option<GuestPlatform>,
}

impl GuestDtConfig<'_> {
    fn check(&self) -> Result<(), FdtError> {
        if self.vcpus == 0 {
            return Err(FdtError::BadConfig("vcpus is 0"));
        }
        let ram_end = self
            .ram_base
            .checked_add(self.ram_size)
            .filter(|_| self.ram_size != 0)
            .ok_or(FdtError::BadConfig("ram is empty or wraps"))?;
        if let Some((start, end)) = self.initrd {
            if start > end || start < self.ram_base || end > ram_end {
                return Err(FdtError::BadConfig("initrd is not inside ram"));
            }
        }
        Ok(())
    }
}

/// The interrupt controller a guest sees, at the QEMU `virt` addresses so that guests need
/// nothing special.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestGic {
    /// Distributor and the redistributor region (one 128 KiB frame pair per vCPU).
    V3 {
        distributor: (u64, u64),
        redistributors: (u64, u64),
    },
    /// Distributor and CPU interface.
    V2 {
        distributor: (u64, u64),
        cpu_interface: (u64, u64),
    },
}

/// The emulated devices of a VM: its GIC, the architected timer, and a PL011 console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPlatform {
    pub gic: GuestGic,
    /// Base IPA of the PL011 (4 KiB) and its SPI number (0-based: INTID 32 + spi).
    pub uart: (u64, u32),
}

/// Phandles of the nodes others refer to.
const PHANDLE_GIC: u32 = 1;
const PHANDLE_APB_CLOCK: u32 = 2;
/// GIC interrupt specifier (IHI 0069 / the arm,gic-v3 binding): type 0 = SPI, 1 = PPI; flags
/// 4 = level high, 8 = level low; for GICv2 PPIs bits 15:8 are a CPU mask.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
const IRQ_LEVEL_LOW: u32 = 8;
/// The architected timer's PPIs (0-based PPI numbers: INTID - 16): secure physical 13,
/// non-secure physical 14, virtual 11, hypervisor 10; the GIC maintenance interrupt is PPI 9.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
const MAINTENANCE_PPI: u32 = 9;
/// The PL011's clocks: Linux's amba-pl011 driver wants `uartclk` and `apb_pclk`; QEMU's virt
/// board uses one fixed 24 MHz clock for both.
const APB_CLOCK_HZ: u32 = 24_000_000;

/// The device tree of one guest: root, `/memory`, `/cpus`, `/psci` (HVC), `/chosen`, and when
/// it has them, its GIC, timer and PL011.
pub fn build_guest_dtb(cfg: &GuestDtConfig) -> Result<Vec<u8>, FdtError> {
    cfg.check()?;
    let mut w = FdtWriter::new();
    w.begin_node("")?;
    w.prop_u32("#address-cells", 2)?;
    w.prop_u32("#size-cells", 2)?;
    w.prop_str("compatible", "linux,dummy-virt")?;
    w.prop_str("model", "hypervisor-guest")?;
    if cfg.platform.is_some() {
        w.prop_u32("interrupt-parent", PHANDLE_GIC)?;
    }
    write_memory(&mut w, cfg)?;
    write_cpus(&mut w, cfg)?;
    write_psci(&mut w)?;
    if let Some(p) = cfg.platform {
        write_gic(&mut w, &p.gic)?;
        write_timer(&mut w, &p.gic, cfg.vcpus)?;
        write_uart(&mut w, p.uart)?;
    }
    write_chosen(&mut w, cfg)?;
    w.end_node()?;
    w.finish()
}

fn reg_pairs(w: &mut FdtWriter, pairs: &[(u64, u64); 2]) -> Result<(), FdtError> {
    let mut cells = [0u32; 8];
    for (c, &(a, s)) in cells.chunks_exact_mut(4).zip(pairs) {
        c.copy_from_slice(&[(a >> 32) as u32, a as u32, (s >> 32) as u32, s as u32]);
    }
    w.prop_cells("reg", &cells)
}

fn write_gic(w: &mut FdtWriter, gic: &GuestGic) -> Result<(), FdtError> {
    let (name, compatible, regs) = match *gic {
        GuestGic::V3 {
            distributor,
            redistributors,
        } => ("intc", "arm,gic-v3", [distributor, redistributors]),
        GuestGic::V2 {
            distributor,
            cpu_interface,
        } => ("intc", "arm,cortex-a15-gic", [distributor, cpu_interface]),
    };
    w.begin_node_at(name, regs[0].0)?;
    w.prop_str("compatible", compatible)?;
    w.prop_u32("#interrupt-cells", 3)?;
    w.prop_u32("#address-cells", 2)?;
    w.prop_u32("#size-cells", 2)?;
    w.prop_empty("interrupt-controller")?;
    reg_pairs(w, &regs)?;
    if let GuestGic::V3 { .. } = gic {
        w.prop_u32("#redistributor-regions", 1)?;
    }
    w.prop_cells("interrupts", &[GIC_PPI, MAINTENANCE_PPI, IRQ_LEVEL_HIGH])?;
    w.prop_u32("phandle", PHANDLE_GIC)?;
    w.end_node()
}

fn write_timer(w: &mut FdtWriter, gic: &GuestGic, vcpus: u32) -> Result<(), FdtError> {
    // GICv2 PPI specifiers carry a mask of the CPUs the interrupt goes to (bits 15:8).
    let flags = match gic {
        GuestGic::V3 { .. } => IRQ_LEVEL_LOW,
        GuestGic::V2 { .. } => IRQ_LEVEL_LOW | (((1u32 << vcpus.min(8)) - 1) << 8),
    };
    w.begin_node("timer")?;
    w.prop_strs("compatible", &["arm,armv8-timer", "arm,armv7-timer"])?;
    let mut cells = [0u32; 3 * TIMER_PPIS.len()];
    for (c, ppi) in cells.chunks_exact_mut(3).zip(TIMER_PPIS) {
        c.copy_from_slice(&[GIC_PPI, ppi, flags]);
    }
    w.prop_cells("interrupts", &cells)?;
    w.prop_empty("always-on")?;
    w.end_node()
}

fn write_uart(w: &mut FdtWriter, (base, spi): (u64, u32)) -> Result<(), FdtError> {
    w.begin_node("apb-pclk")?;
    w.prop_str("compatible", "fixed-clock")?;
    w.prop_u32("#clock-cells", 0)?;
    w.prop_u32("clock-frequency", APB_CLOCK_HZ)?;
    w.prop_str("clock-output-names", "clk24mhz")?;
    w.prop_u32("phandle", PHANDLE_APB_CLOCK)?;
    w.end_node()?;
    w.begin_node_at("pl011", base)?;
    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"])?;
    reg64(w, base, 0x1000)?;
    w.prop_cells("interrupts", &[GIC_SPI, spi, IRQ_LEVEL_HIGH])?;
    w.prop_cells("clocks", &[PHANDLE_APB_CLOCK, PHANDLE_APB_CLOCK])?;
    w.prop_strs("clock-names", &["uartclk", "apb_pclk"])?;
    w.end_node()
}

/// A `reg` of one `(address, size)` pair in the root's 2+2 cells.
fn reg64(w: &mut FdtWriter, address: u64, size: u64) -> Result<(), FdtError> {
    let cell = |v: u64, high: bool| if high { (v >> 32) as u32 } else { v as u32 };
    w.prop_cells(
        "reg",
        &[
            cell(address, true),
            cell(address, false),
            cell(size, true),
            cell(size, false),
        ],
    )
}

fn write_memory(w: &mut FdtWriter, cfg: &GuestDtConfig) -> Result<(), FdtError> {
    w.begin_node_at("memory", cfg.ram_base)?;
    w.prop_str("device_type", "memory")?;
    reg64(w, cfg.ram_base, cfg.ram_size)?;
    w.end_node()
}

fn write_cpus(w: &mut FdtWriter, cfg: &GuestDtConfig) -> Result<(), FdtError> {
    w.begin_node("cpus")?;
    w.prop_u32("#address-cells", 1)?;
    w.prop_u32("#size-cells", 0)?;
    for index in 0..cfg.vcpus {
        w.begin_node_at("cpu", index as u64)?;
        w.prop_str("device_type", "cpu")?;
        w.prop_str("compatible", "arm,armv8")?;
        w.prop_u32("reg", index)?;
        w.prop_str("enable-method", "psci")?;
        w.end_node()?;
    }
    w.end_node()
}

fn write_psci(w: &mut FdtWriter) -> Result<(), FdtError> {
    w.begin_node("psci")?;
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"])?;
    w.prop_str("method", "hvc")?;
    w.end_node()
}

fn write_chosen(w: &mut FdtWriter, cfg: &GuestDtConfig) -> Result<(), FdtError> {
    w.begin_node("chosen")?;
    w.prop_str("bootargs", cfg.bootargs)?;
    if let Some(p) = cfg.platform {
        let mut path = *b"/pl011@0000000000000000";
        let len = 7 + write_hex(&mut path[7..], p.uart.0);
        // Only ASCII was written.
        let path = core::str::from_utf8(&path[..len]).map_err(|_| FdtError::BadStringValue)?;
        w.prop_str("stdout-path", path)?;
    }
    if let Some((start, end)) = cfg.initrd {
        w.prop_u64("linux,initrd-start", start)?;
        w.prop_u64("linux,initrd-end", end)?;
    }
    w.end_node()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::hwinfo::{HwInfo, PsciMethod, Region};

    fn be32(b: &[u8], word: usize) -> u32 {
        u32::from_be_bytes(b[word * 4..word * 4 + 4].try_into().unwrap())
    }

    const CFG: GuestDtConfig<'static> = GuestDtConfig {
        ram_base: 0x8000_0000,
        ram_size: 0x1000_0000,
        vcpus: 3,
        bootargs: "console=hvc0 test=isolation",
        initrd: Some((0x8800_0000, 0x8812_3456)),
        platform: None,
    };

    #[test]
    fn guest_tree_read_back_with_the_fdt_crate() {
        let dtb = build_guest_dtb(&CFG).unwrap();
        let fdt = fdt::Fdt::new(&dtb).unwrap();
        let root = fdt.root();
        assert_eq!(root.cell_sizes().address_cells, 2);
        assert_eq!(root.cell_sizes().size_cells, 2);
        assert_eq!(
            root.compatible().all().collect::<Vec<_>>(),
            ["linux,dummy-virt"]
        );
        assert_eq!(root.model(), "hypervisor-guest");

        let memory = fdt.find_node("/memory@80000000").unwrap();
        assert_eq!(
            memory.property("device_type").unwrap().as_str(),
            Some("memory")
        );
        let regions: Vec<_> = memory.reg().unwrap().collect();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].starting_address as usize, 0x8000_0000);
        assert_eq!(regions[0].size, Some(0x1000_0000));

        let cpus = fdt.find_node("/cpus").unwrap();
        assert_eq!(cpus.cell_sizes().address_cells, 1);
        assert_eq!(cpus.cell_sizes().size_cells, 0);
        let cpu_nodes: Vec<_> = cpus.children().collect();
        assert_eq!(
            cpu_nodes.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["cpu@0", "cpu@1", "cpu@2"]
        );
        for (i, cpu) in cpu_nodes.iter().enumerate() {
            assert_eq!(cpu.property("device_type").unwrap().as_str(), Some("cpu"));
            assert_eq!(
                cpu.compatible().unwrap().all().collect::<Vec<_>>(),
                ["arm,armv8"]
            );
            assert_eq!(cpu.property("reg").unwrap().as_usize(), Some(i));
            assert_eq!(
                cpu.property("enable-method").unwrap().as_str(),
                Some("psci")
            );
        }
        assert_eq!(fdt.cpus().count(), 3);

        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(
            psci.compatible().unwrap().all().collect::<Vec<_>>(),
            ["arm,psci-1.0", "arm,psci-0.2"]
        );
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));

        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").unwrap().as_str(),
            Some(CFG.bootargs)
        );
        let start = chosen.property("linux,initrd-start").unwrap();
        assert_eq!(start.value.len(), 8);
        assert_eq!(start.as_usize(), Some(0x8800_0000));
        assert_eq!(
            chosen.property("linux,initrd-end").unwrap().as_usize(),
            Some(0x8812_3456)
        );
        assert_eq!(fdt.memory_reservations().count(), 0);
    }

    #[test]
    fn guest_tree_read_back_with_hwinfo() {
        let hw = HwInfo::parse(&build_guest_dtb(&CFG).unwrap()).unwrap();
        assert_eq!(
            hw.memory[..],
            [Region {
                base: 0x8000_0000,
                size: 0x1000_0000
            }]
        );
        assert_eq!(hw.cpus[..], [0, 1, 2]);
        assert_eq!(hw.psci, Some(PsciMethod::Hvc));
        assert_eq!(hw.bootargs.as_deref(), Some(CFG.bootargs));
        assert_eq!(
            hw.initrd,
            Some(Region {
                base: 0x8800_0000,
                size: 0x12_3456
            })
        );
        assert_eq!(hw.model.as_str(), "hypervisor-guest");
        assert!(hw.reserved.is_empty());
        assert_eq!((hw.gic, hw.uart, hw.timer), (None, None, None));

        let plain = GuestDtConfig {
            initrd: None,
            bootargs: "",
            vcpus: 1,
            ..CFG
        };
        let hw = HwInfo::parse(&build_guest_dtb(&plain).unwrap()).unwrap();
        assert_eq!(hw.initrd, None);
        assert_eq!(hw.bootargs.as_deref(), Some(""));
        assert_eq!(hw.cpus[..], [0]);
        let fdt_dtb = build_guest_dtb(&plain).unwrap();
        let fdt = fdt::Fdt::new(&fdt_dtb).unwrap();
        assert!(fdt
            .find_node("/chosen")
            .unwrap()
            .property("linux,initrd-start")
            .is_none());
    }

    #[test]
    fn cpu_unit_addresses_are_hex() {
        let dtb = build_guest_dtb(&GuestDtConfig { vcpus: 12, ..CFG }).unwrap();
        let fdt = fdt::Fdt::new(&dtb).unwrap();
        let cpu = fdt.find_node("/cpus/cpu@a").unwrap();
        assert_eq!(cpu.property("reg").unwrap().as_usize(), Some(10));
        assert_eq!(fdt.cpus().count(), 12);
    }

    #[test]
    fn describes_the_platform_devices_as_linux_expects() {
        for gic in [
            GuestGic::V3 {
                distributor: (0x0800_0000, 0x1_0000),
                redistributors: (0x080a_0000, 0x4_0000),
            },
            GuestGic::V2 {
                distributor: (0x0800_0000, 0x1_0000),
                cpu_interface: (0x0801_0000, 0x1_0000),
            },
        ] {
            let cfg = GuestDtConfig {
                vcpus: 2,
                platform: Some(GuestPlatform {
                    gic,
                    uart: (0x0900_0000, 1),
                }),
                ..CFG
            };
            let dtb = build_guest_dtb(&cfg).unwrap();
            let hw = HwInfo::parse(&dtb).unwrap();
            let g = hw.gic.unwrap();
            assert_eq!(
                g.distributor,
                Region {
                    base: 0x0800_0000,
                    size: 0x1_0000
                }
            );
            assert_eq!(g.maintenance_irq, Some(25));
            match gic {
                GuestGic::V3 { .. } => {
                    assert_eq!(
                        g.redistributors,
                        Some(Region {
                            base: 0x080a_0000,
                            size: 0x4_0000
                        })
                    )
                }
                GuestGic::V2 { .. } => {
                    assert_eq!(
                        g.cpu_interface,
                        Some(Region {
                            base: 0x0801_0000,
                            size: 0x1_0000
                        })
                    )
                }
            }
            let t = hw.timer.unwrap();
            assert_eq!(
                (t.secure_phys, t.nonsecure_phys, t.virt, t.hyp_phys),
                (29, 30, 27, 26)
            );
            let uart = hw.uart.unwrap();
            assert_eq!(uart.base.base, 0x0900_0000);
            assert_eq!(uart.irq, Some(33));
            let fdt = fdt::Fdt::new(&dtb).unwrap();
            let chosen = fdt.find_node("/chosen").unwrap();
            assert_eq!(
                chosen.property("stdout-path").unwrap().as_str(),
                Some("/pl011@9000000")
            );
            let uart_node = fdt.find_node("/pl011@9000000").unwrap();
            assert_eq!(uart_node.property("clocks").unwrap().value.len(), 8);
        }
    }

    #[test]
    fn header_and_blocks_are_laid_out_per_dtspec() {
        let mut w = FdtWriter::new();
        w.reserve_memory(0x4000_0000, 0x20_0000);
        w.set_boot_cpuid_phys(2);
        w.begin_node("").unwrap();
        w.prop_str("model", "m").unwrap();
        w.end_node().unwrap();
        let dtb = w.finish().unwrap();

        assert_eq!(be32(&dtb, 0), 0xd00d_feed);
        let (totalsize, off_struct, off_strings, off_rsvmap) =
            (be32(&dtb, 1), be32(&dtb, 2), be32(&dtb, 3), be32(&dtb, 4));
        assert_eq!((be32(&dtb, 5), be32(&dtb, 6), be32(&dtb, 7)), (17, 16, 2));
        let (size_strings, size_struct) = (be32(&dtb, 8), be32(&dtb, 9));
        assert_eq!(totalsize as usize, dtb.len());
        assert_eq!(off_rsvmap, 40);
        assert_eq!(off_rsvmap % 8, 0);
        assert_eq!(off_struct, off_rsvmap + 32, "one entry and the terminator");
        assert_eq!(off_struct % 4, 0);
        assert_eq!(off_strings, off_struct + size_struct);
        assert_eq!(totalsize, off_strings + size_strings);
        assert_eq!(&dtb[off_strings as usize..], b"model\0");
        // BEGIN_NODE "" (2 words), PROP len nameoff "m\0" padded (4 words), END_NODE, END.
        let words: Vec<u32> = (0..size_struct as usize / 4)
            .map(|i| be32(&dtb, off_struct as usize / 4 + i))
            .collect();
        assert_eq!(words, [1, 0, 3, 2, 0, 0x6d00_0000, 2, 9]);
        let rsv = &dtb[40..72];
        assert_eq!(
            rsv[..16],
            [0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0]
        );
        assert_eq!(rsv[16..], [0; 16]);

        let fdt = fdt::Fdt::new(&dtb).unwrap();
        let reservations: Vec<_> = fdt.memory_reservations().collect();
        assert_eq!(reservations.len(), 1);
        assert_eq!(reservations[0].address() as usize, 0x4000_0000);
        assert_eq!(reservations[0].size(), 0x20_0000);
        assert_eq!(fdt.total_size(), dtb.len());
        let hw = HwInfo::parse(&dtb).unwrap();
        assert_eq!(
            hw.reserved[..],
            [Region {
                base: 0x4000_0000,
                size: 0x20_0000
            }]
        );
    }

    #[test]
    fn strings_are_deduplicated() {
        let dtb = build_guest_dtb(&GuestDtConfig { vcpus: 4, ..CFG }).unwrap();
        let (off, size) = (be32(&dtb, 3) as usize, be32(&dtb, 8) as usize);
        let strings: Vec<&[u8]> = dtb[off..off + size]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        let mut sorted = strings.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), strings.len(), "each name stored once");
        // device_type, compatible, reg: on memory and on every cpu, stored once each.
        for name in [
            &b"device_type"[..],
            b"compatible",
            b"reg",
            b"#address-cells",
        ] {
            assert_eq!(strings.iter().filter(|s| **s == name).count(), 1);
        }
        // "method" (of /psci) is the tail of "enable-method": no bytes of its own.
        let expected = [
            "#address-cells",
            "#size-cells",
            "compatible",
            "model",
            "device_type",
            "reg",
            "enable-method",
            "bootargs",
            "linux,initrd-start",
            "linux,initrd-end",
        ];
        assert_eq!(size, expected.iter().map(|s| s.len() + 1).sum::<usize>());

        // A name that is the tail of a stored one reuses it.
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.prop_u32("linux,phandle", 1).unwrap();
        w.prop_u32("phandle", 1).unwrap();
        w.end_node().unwrap();
        let dtb = w.finish().unwrap();
        assert_eq!(be32(&dtb, 8) as usize, "linux,phandle\0".len());
        let fdt = fdt::Fdt::new(&dtb).unwrap();
        let names: Vec<_> = fdt.root().properties().map(|p| p.name).collect();
        assert_eq!(names, ["linux,phandle", "phandle"]);
    }

    #[test]
    fn names_with_unit_addresses_and_values() {
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.begin_node("uart@9000000").unwrap();
        w.prop_cells("interrupts", &[0, 1, 4]).unwrap();
        w.prop_empty("dma-coherent").unwrap();
        w.prop_strs("clock-names", &["uartclk", "apb_pclk"])
            .unwrap();
        w.prop_u64("x,big", 0x1122_3344_5566_7788).unwrap();
        w.begin_node("child@0,1").unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        let dtb = w.finish().unwrap();
        let fdt = fdt::Fdt::new(&dtb).unwrap();
        let uart = fdt.find_node("/uart@9000000").unwrap();
        assert_eq!(uart.name, "uart@9000000");
        assert_eq!(
            uart.property("interrupts").unwrap().value,
            [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4]
        );
        assert!(uart.property("dma-coherent").unwrap().value.is_empty());
        assert_eq!(
            uart.property("clock-names").unwrap().value,
            b"uartclk\0apb_pclk\0"
        );
        assert_eq!(
            uart.property("x,big").unwrap().as_usize(),
            Some(0x1122_3344_5566_7788)
        );
        assert_eq!(
            uart.children().map(|c| c.name).collect::<Vec<_>>(),
            ["child@0,1"]
        );
    }

    #[test]
    fn misuse_is_refused() {
        let open = |names: &[&str]| {
            let mut w = FdtWriter::new();
            for n in names {
                w.begin_node(n).unwrap();
            }
            w
        };
        assert_eq!(open(&["", "a"]).finish(), Err(FdtError::UnclosedNodes(2)));
        assert_eq!(FdtWriter::new().finish(), Err(FdtError::NoRoot));
        assert_eq!(FdtWriter::new().end_node(), Err(FdtError::NoOpenNode));
        assert_eq!(FdtWriter::new().prop_u32("a", 1), Err(FdtError::NoOpenNode));

        let mut w = open(&[""]);
        w.end_node().unwrap();
        assert_eq!(w.end_node(), Err(FdtError::NoOpenNode));
        assert_eq!(w.begin_node(""), Err(FdtError::SecondRoot));
        assert_eq!(w.prop_u32("a", 1), Err(FdtError::NoOpenNode));
        assert!(w.finish().is_ok());

        let mut w = open(&["", "a"]);
        w.end_node().unwrap();
        assert_eq!(w.prop_u32("late", 1), Err(FdtError::PropertyAfterChild));
        w.begin_node("b").unwrap();
        w.prop_u32("fine", 1).unwrap(); // properties of the new child are fine
        w.end_node().unwrap();
        w.end_node().unwrap();
        assert!(w.finish().is_ok());

        assert_eq!(
            FdtWriter::new().begin_node("root"),
            Err(FdtError::BadNodeName)
        );
        let mut w = open(&[""]);
        for bad in ["", "a/b", "a b", "@1", "a@", "é", "a\0", &"n".repeat(32)] {
            assert_eq!(w.begin_node(bad), Err(FdtError::BadNodeName), "{bad:?}");
        }
        for bad in ["", "a b", "a@b", "a\0", &"p".repeat(32)] {
            assert_eq!(w.prop_empty(bad), Err(FdtError::BadPropertyName), "{bad:?}");
        }
        w.prop_empty(&"p".repeat(31)).unwrap();
        assert_eq!(w.prop_str("s", "a\0b"), Err(FdtError::BadStringValue));
        assert_eq!(
            w.prop_strs("s", &["a", "b\0"]),
            Err(FdtError::BadStringValue)
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = |cfg: GuestDtConfig| build_guest_dtb(&cfg).unwrap_err();
        assert_eq!(
            bad(GuestDtConfig { vcpus: 0, ..CFG }),
            FdtError::BadConfig("vcpus is 0")
        );
        assert_eq!(
            bad(GuestDtConfig { ram_size: 0, ..CFG }),
            FdtError::BadConfig("ram is empty or wraps")
        );
        assert_eq!(
            bad(GuestDtConfig {
                ram_base: u64::MAX,
                ..CFG
            }),
            FdtError::BadConfig("ram is empty or wraps")
        );
        let outside = FdtError::BadConfig("initrd is not inside ram");
        assert_eq!(
            bad(GuestDtConfig {
                initrd: Some((0x8000_1000, 0x8000_0000)),
                ..CFG
            }),
            outside
        );
        assert_eq!(
            bad(GuestDtConfig {
                initrd: Some((0x7fff_f000, 0x8000_1000)),
                ..CFG
            }),
            outside
        );
        assert_eq!(
            bad(GuestDtConfig {
                initrd: Some((0x8fff_f000, 0x9000_1000)),
                ..CFG
            }),
            outside
        );
        assert_eq!(
            bad(GuestDtConfig {
                bootargs: "a\0b",
                ..CFG
            }),
            FdtError::BadStringValue
        );
        // The initrd may end exactly at the end of RAM, and be empty.
        build_guest_dtb(&GuestDtConfig {
            initrd: Some((0x8fff_f000, 0x9000_0000)),
            ..CFG
        })
        .unwrap();
        build_guest_dtb(&GuestDtConfig {
            initrd: Some((0x8000_0000, 0x8000_0000)),
            ..CFG
        })
        .unwrap();
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            std::format!("{}", FdtError::UnclosedNodes(2)),
            "2 device tree node(s) left open"
        );
        assert_eq!(
            std::format!("{}", FdtError::BadConfig("vcpus is 0")),
            "invalid guest device tree configuration: vcpus is 0"
        );
    }

    /// FNV-1a, for comparing whole blobs with those the first writer produced.
    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// The blobs of a few shapes, byte for byte as the first (slow, general) writer made
    /// them: the fast paths must not change a bit of the output.
    #[test]
    fn blobs_are_those_of_the_first_writer() {
        let v3 = GuestPlatform {
            gic: GuestGic::V3 {
                distributor: (0x0800_0000, 0x1_0000),
                redistributors: (0x080a_0000, 0x4_0000),
            },
            uart: (0x0900_0000, 1),
        };
        let v2 = GuestPlatform {
            gic: GuestGic::V2 {
                distributor: (0x0800_0000, 0x1_0000),
                cpu_interface: (0x0801_0000, 0x1_0000),
            },
            uart: (0x0900_0000, 1),
        };
        let cfgs = [
            CFG,
            GuestDtConfig {
                vcpus: 1,
                initrd: None,
                bootargs: "",
                ..CFG
            },
            GuestDtConfig {
                vcpus: 4,
                platform: Some(v3),
                ram_base: 0x4000_0000,
                initrd: Some((0x4800_0000, 0x4812_3456)),
                ..CFG
            },
            GuestDtConfig {
                vcpus: 17,
                platform: Some(v2),
                initrd: None,
                ..CFG
            },
        ];
        let got: Vec<(usize, u64)> = cfgs
            .iter()
            .map(|c| {
                let b = build_guest_dtb(c).unwrap();
                (b.len(), fnv(&b))
            })
            .collect();
        let golden = [
            (0x353, 0xeeaa_98a4_ae9d_8c70),
            (0x237, 0x95f2_b590_af9b_4d0a),
            (0x701, 0x8714_c475_a7d9_a2b7),
            (0xb42, 0x703e_bf1f_b0c7_64b2),
        ];
        assert_eq!(got, golden);
    }

    #[test]
    fn property_name_chars_are_those_of_dtspec() {
        for b in 0..=255u8 {
            let spec = b.is_ascii_alphanumeric() || b",._+?#-".contains(&b);
            let name = [b];
            let name = core::str::from_utf8(&name).unwrap_or("\u{80}");
            assert_eq!(valid_property_name(name), spec, "byte {b:#x}");
        }
    }

    #[test]
    fn hex_unit_addresses() {
        let mut out = [0u8; 16];
        for (v, text) in [
            (0u64, "0"),
            (0x9, "9"),
            (0x4000_0000, "40000000"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            let n = write_hex(&mut out, v);
            assert_eq!(&out[..n], text.as_bytes());
        }
    }
}
