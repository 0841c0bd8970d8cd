//! Translation-table builder for the 4 KiB granule: the hypervisor's own EL2 stage-1 tables and
//! each VM's stage-2 (IPA → PA) tables.
//!
//! It owns the table pages reachable from one root and the descriptors in them: building,
//! splitting and tearing down mappings of a 39-bit input address space that starts at lookup
//! level 1 (one root table of 512 × 1 GiB entries, then 2 MiB and 4 KiB levels). Blocks (1 GiB at
//! level 1, 2 MiB at level 2) are used whenever the input address, the output address and the
//! remaining size allow it.
//!
//! It must never issue barriers or TLB maintenance, nor touch system registers: that is the arch
//! code's job. Callers therefore must:
//! - `dsb ishst` after `map`/`unmap` and before the tables are used (or relied on) by a walker;
//! - invalidate the TLBs (`tlbi` + `dsb ish` + `isb`) after `unmap` of tables that are, or were,
//!   live, and before any table page it freed is reused;
//! - only `unmap` part of a block in tables no CPU is using (a stopped VM, or before the MMU is
//!   on): splitting replaces a live block by a table without break-before-make.
//!
//! It never leaves a half-done change behind: `map` either maps the whole range or leaves every
//! table exactly as it was. Table pages are owned exclusively; dropping a [`PageTable`] without
//! [`PageTable::destroy`] leaks them on purpose, since freeing tables a CPU may still walk is
//! worse than leaking them.
//!
//! Descriptor formats: Arm ARM (DDI 0487) D8.3 "Translation table descriptor formats",
//! D8.3.1.1 (Table descriptors) and D8.3.1.2 (Block and Page descriptors, tables D8-52 stage 1 and
//! D8-53 stage 2).

use core::fmt;
use core::ptr::NonNull;

/// Size of a page, and of a translation table (the 4 KiB granule).
pub const PAGE_SIZE: u64 = 4096;

/// Width of the input address space (VA for EL2, IPA for stage 2): T0SZ = 64 - 39 = 25, which
/// with the 4 KiB granule starts the walk at level 1.
pub const INPUT_ADDRESS_BITS: u32 = 39;

/// First input address past the translated range.
const INPUT_ADDRESS_LIMIT: u64 = 1 << INPUT_ADDRESS_BITS;

/// Descriptors hold output addresses in bits[47:12] (D8.3.1.2, 4 KiB granule, TCR.DS == 0), so
/// outputs (and table addresses) must be below 2^48.
const OUTPUT_ADDRESS_LIMIT: u64 = 1 << 48;
const OUTPUT_ADDRESS_MASK: u64 = (OUTPUT_ADDRESS_LIMIT - 1) & !(PAGE_SIZE - 1);

/// Entries in one 4 KiB table of 64-bit descriptors.
const ENTRIES_PER_TABLE: usize = 512;
/// Input address bits resolved per level (log2 of [`ENTRIES_PER_TABLE`]).
const BITS_PER_LEVEL: u32 = 9;
/// Log2 of [`PAGE_SIZE`]: the input address bits resolved by the page offset.
const PAGE_SHIFT: u32 = 12;

/// The level the walk starts at for a 39-bit input address with 4 KiB granule.
const ROOT_LEVEL: usize = 1;
/// The level of page descriptors.
const PAGE_LEVEL: usize = 3;

/// One 4 KiB translation table.
type RawTable = [u64; ENTRIES_PER_TABLE];

// D8.3 Translation table descriptor formats, table D8-48: descriptor bits[1:0].
/// bit[0]: the descriptor is valid.
const DESCRIPTOR_VALID: u64 = 1 << 0;
/// bits[1:0] of every descriptor kind.
const DESCRIPTOR_TYPE_MASK: u64 = 0b11;
/// bits[1:0] of a Block descriptor (levels 1 and 2 only).
const DESCRIPTOR_BLOCK: u64 = 0b01;
/// bits[1:0] of a Table descriptor (levels below 3).
const DESCRIPTOR_TABLE: u64 = 0b11;
/// bits[1:0] of a Page descriptor (level 3; 0b01 is reserved there).
const DESCRIPTOR_PAGE: u64 = 0b11;

// D8.3.1.2 Block and Page descriptor lower attributes, common to both stages.
/// Access flag, bit[10]: set, so that the first access does not fault (no hardware AF update).
const ACCESS_FLAG: u64 = 1 << 10;
/// Shareability SH[1:0], bits[9:8] = 0b11: Inner Shareable (Normal memory; ignored for Device).
const SHAREABILITY_INNER: u64 = 0b11 << 8;
/// Every bit of a Block or Page descriptor that is an attribute, not the address or the type, so
/// splitting a block can copy them to the smaller descriptors.
const LEAF_ATTRIBUTE_MASK: u64 = !(OUTPUT_ADDRESS_MASK | DESCRIPTOR_TYPE_MASK);

// D8.3.1.2, table D8-52: stage 1 attributes, EL2 regime (one privilege level, non-VHE).
/// AttrIndx[2:0], bits[4:2]: index of the attribute byte in MAIR_EL2.
const EL2_ATTR_INDEX_SHIFT: u32 = 2;
const EL2_ATTR_INDEX_MASK: u64 = 0b111 << EL2_ATTR_INDEX_SHIFT;
/// AP[2], bit[7]: read-only.
const EL2_AP_READ_ONLY: u64 = 1 << 7;
/// Bit[6] (AP[1] in two-privilege regimes) is RES1 in a single-privilege regime like EL2.
const EL2_AP1_RES1: u64 = 1 << 6;
/// XN, bit[54]: execute-never (single privilege level).
const EL2_EXECUTE_NEVER: u64 = 1 << 54;

// MAIR_EL2 (register description, Attr<n> fields): attribute bytes selected by AttrIndx.
/// MAIR attribute index used for Normal memory.
const MAIR_INDEX_NORMAL: u64 = 0;
/// MAIR attribute index used for Device memory.
const MAIR_INDEX_DEVICE: u64 = 1;
/// Attr encoding 0b1111_1111: Normal, Outer and Inner Write-Back non-transient, Read- and
/// Write-Allocate.
const MAIR_NORMAL_WRITE_BACK: u64 = 0xff;
/// Attr encoding 0b0000_0100: Device-nGnRE.
const MAIR_DEVICE_NGNRE: u64 = 0x04;
/// Bits per attribute byte in MAIR_EL2.
const MAIR_ATTR_BITS: u64 = 8;

/// The MAIR_EL2 value the EL2 descriptors built here assume: Attr0 = Normal write-back,
/// Attr1 = Device-nGnRE.
pub const MAIR_EL2_VALUE: u64 = (MAIR_NORMAL_WRITE_BACK << (MAIR_INDEX_NORMAL * MAIR_ATTR_BITS))
    | (MAIR_DEVICE_NGNRE << (MAIR_INDEX_DEVICE * MAIR_ATTR_BITS));

// D8.3.1.2, table D8-53: stage 2 attributes (FEAT_S2FWB not used).
/// MemAttr[3:0], bits[5:2].
const S2_MEMATTR_SHIFT: u32 = 2;
const S2_MEMATTR_MASK: u64 = 0b1111 << S2_MEMATTR_SHIFT;
/// MemAttr = 0b1111: Normal, Outer Write-Back ([3:2]) and Inner Write-Back ([1:0]).
const S2_MEMATTR_NORMAL_WRITE_BACK: u64 = 0b1111;
/// MemAttr = 0b0001: Device-nGnRE.
const S2_MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
/// MemAttr[3:2] == 0b00 means Device memory.
const S2_MEMATTR_OUTER_SHIFT: u32 = 2;
/// S2AP[0], bit[6]: reads allowed.
const S2_AP_READ: u64 = 1 << 6;
/// S2AP[1], bit[7]: writes allowed.
const S2_AP_WRITE: u64 = 1 << 7;
/// XN[1:0], bits[54:53] (bit[53] is RES0 without FEAT_XNX).
const S2_XN_MASK: u64 = 0b11 << 53;
/// XN = 0b10: execute-never at EL1 and EL0 (the same encoding without FEAT_XNX).
const S2_EXECUTE_NEVER: u64 = 0b10 << 53;

// TCR_EL2 (non-VHE) and VTCR_EL2 register descriptions: both put these fields in the same bits.
/// T0SZ, bits[5:0]: input size is 2^(64 - T0SZ).
const TCR_T0SZ: u64 = 64 - INPUT_ADDRESS_BITS as u64;
/// IRGN0, bits[9:8] = 0b01: table walks Inner Write-Back Read-Allocate Write-Allocate.
const TCR_IRGN0_WRITE_BACK_ALLOCATE: u64 = 0b01 << 8;
/// ORGN0, bits[11:10] = 0b01: table walks Outer Write-Back Read-Allocate Write-Allocate.
const TCR_ORGN0_WRITE_BACK_ALLOCATE: u64 = 0b01 << 10;
/// SH0, bits[13:12] = 0b11: table walks Inner Shareable.
const TCR_SH0_INNER_SHAREABLE: u64 = 0b11 << 12;
/// TG0, bits[15:14] = 0b00: 4 KiB granule.
const TCR_TG0_4KIB: u64 = 0b00 << 14;
/// PS, bits[18:16]: physical (output) address size.
const TCR_PS_SHIFT: u32 = 16;
/// TCR_EL2 bits 31 and 23 are RES1 when HCR_EL2.E2H == 0.
const TCR_EL2_RES1: u64 = (1 << 31) | (1 << 23);
/// VTCR_EL2.SL0, bits[7:6] = 0b01: with TG0 = 4 KiB, the stage 2 walk starts at level 1.
const VTCR_SL0_LEVEL_1: u64 = 0b01 << 6;
/// VTCR_EL2 bit 31 is RES1.
const VTCR_EL2_RES1: u64 = 1 << 31;

/// The TCR.PS / VTCR.PS encoding for a physical address size, from the register descriptions:
/// 32 → 0b000, 36 → 0b001, 40 → 0b010, 42 → 0b011, 44 → 0b100, 48 → 0b101. Sizes between are
/// rounded down. 52 bits (0b110) is deliberately capped to 48: with the 4 KiB granule it is only
/// permitted with FEAT_LPA2 and TCR.DS = 1, and the descriptors built here only hold
/// OA[47:12] anyway.
fn physical_address_size_field(pa_range_bits: u32) -> u64 {
    const ENCODINGS: [(u32, u64); 6] = [
        (48, 0b101),
        (44, 0b100),
        (42, 0b011),
        (40, 0b010),
        (36, 0b001),
        (32, 0b000),
    ];
    let encoding = ENCODINGS
        .iter()
        .find(|&&(bits, _)| pa_range_bits >= bits)
        .map_or(0b000, |&(_, encoding)| encoding);
    encoding << TCR_PS_SHIFT
}

/// TCR_EL2 for the EL2 tables built here: 39-bit VA through TTBR0_EL2, 4 KiB granule, walks
/// cached write-back and inner shareable, PS from `pa_range_bits` (the size decoded from
/// ID_AA64MMFR0_EL1.PARange; see [`physical_address_size_field`] for rounding).
pub fn el2_tcr_value(pa_range_bits: u32) -> u64 {
    TCR_EL2_RES1
        | physical_address_size_field(pa_range_bits)
        | TCR_TG0_4KIB
        | TCR_SH0_INNER_SHAREABLE
        | TCR_ORGN0_WRITE_BACK_ALLOCATE
        | TCR_IRGN0_WRITE_BACK_ALLOCATE
        | TCR_T0SZ
}

/// VTCR_EL2 for the stage 2 tables built here: 39-bit IPA, walk starting at level 1, 4 KiB
/// granule, walks cached write-back and inner shareable, PS from `pa_range_bits`. The IPA size
/// must not exceed the implemented PA size, so this needs PARange of at least 40 bits.
pub fn vtcr_value(pa_range_bits: u32) -> u64 {
    VTCR_EL2_RES1
        | physical_address_size_field(pa_range_bits)
        | TCR_TG0_4KIB
        | TCR_SH0_INNER_SHAREABLE
        | TCR_ORGN0_WRITE_BACK_ALLOCATE
        | TCR_IRGN0_WRITE_BACK_ALLOCATE
        | VTCR_SL0_LEVEL_1
        | TCR_T0SZ
}

/// Where table pages come from. On the target, tables live in identity-mapped RAM, so the
/// physical address of a table is also its pointer; host tests implement this with leaked,
/// 4 KiB-aligned boxed pages.
///
/// # Contract
///
/// The page-table code dereferences what `alloc_table` returns, so it must be a pointer to
/// 4 KiB of memory, 4 KiB aligned, below 2^48, valid for reads and writes, used by nobody else
/// until it is passed back to `free_table`; after `zero_table` it must read as zeroes, visible
/// to the table walker (`dsb ishst` on the target). `free_table` is only ever given pointers
/// this allocator returned. (Breaking this is undefined behaviour: the trait would better be `unsafe`.)
pub trait TableAllocator {
    /// A 4 KiB-aligned table (its contents need not be zero: `zero_table` clears it), or `None`
    /// when out of memory.
    fn alloc_table(&mut self) -> Option<NonNull<[u64; 512]>>;
    /// Zeroes a table `alloc_table` returned, before it is used. The default writes the 512
    /// entries one by one; an allocator with a faster way (`DC ZVA`) overrides it: a table is
    /// built at every VM creation and resume (docs/benchmarks.md).
    fn zero_table(&mut self, table: NonNull<[u64; 512]>) {
        let table = Table(table);
        for index in 0..ENTRIES_PER_TABLE {
            table.set_entry(index, 0);
        }
    }
    /// Takes back a table `alloc_table` returned.
    fn free_table(&mut self, table: NonNull<[u64; 512]>);
}

/// Which translation regime the tables are for; it decides the attribute encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stage 1 of the EL2 translation regime (the hypervisor's own map, TTBR0_EL2).
    El2,
    /// Stage 2 of the EL1&0 regime: a VM's IPA → PA map (VTTBR_EL2).
    Stage2,
}

/// Memory type of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryType {
    /// Normal memory, write-back cacheable, inner shareable.
    Normal,
    /// Device-nGnRE memory; always execute-never.
    Device,
}

/// What a mapping allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub memory: MemoryType,
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

/// Why a translation-table operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// An address or size is not a multiple of [`PAGE_SIZE`].
    Misaligned,
    /// The size is zero.
    ZeroSize,
    /// The input range passes 2^[`INPUT_ADDRESS_BITS`], or the output range 2^48.
    OutOfRange,
    /// Part of the input range is already mapped.
    AlreadyMapped,
    /// The table allocator ran out of tables (or returned an unusable one).
    NoMemory,
    /// Writable and executable at EL2 (W^X).
    WriteAndExecute,
    /// The attributes cannot be expressed in this stage (EL2 mappings are always readable).
    Unsupported,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            MapError::Misaligned => "address or size is not page aligned",
            MapError::ZeroSize => "empty range",
            MapError::OutOfRange => "address range outside the translatable space",
            MapError::AlreadyMapped => "range is already mapped",
            MapError::NoMemory => "out of translation-table memory",
            MapError::WriteAndExecute => "writable and executable mapping refused (W^X)",
            MapError::Unsupported => "attributes not expressible in this translation stage",
        };
        f.write_str(text)
    }
}

/// Log2 of the bytes one entry of a table at `level` covers.
const fn level_shift(level: usize) -> u32 {
    PAGE_SHIFT + BITS_PER_LEVEL * (PAGE_LEVEL - level) as u32
}

/// Bytes one entry of a table at `level` covers: 1 GiB, 2 MiB, 4 KiB for levels 1, 2, 3.
const fn entry_size(level: usize) -> u64 {
    1 << level_shift(level)
}

/// Index of the entry covering `input` in a table at `level`.
const fn entry_index(level: usize, input: u64) -> usize {
    ((input >> level_shift(level)) as usize) & (ENTRIES_PER_TABLE - 1)
}

/// Whether a valid descriptor at `level` points to a next-level table.
const fn is_table(level: usize, descriptor: u64) -> bool {
    level < PAGE_LEVEL && descriptor & DESCRIPTOR_TYPE_MASK == DESCRIPTOR_TABLE
}

/// Whether a descriptor maps memory (a Block at levels 1–2, a Page at level 3).
const fn is_leaf(level: usize, descriptor: u64) -> bool {
    if level == PAGE_LEVEL {
        descriptor & DESCRIPTOR_TYPE_MASK == DESCRIPTOR_PAGE
    } else {
        descriptor & DESCRIPTOR_TYPE_MASK == DESCRIPTOR_BLOCK
    }
}

/// A table page owned by one [`PageTable`].
///
/// Invariant: only built from pointers the table allocator returned (and checked) or from table
/// descriptors of the owning tree, so it points to a live, exclusively owned 4 KiB table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Table(NonNull<RawTable>);

impl Table {
    /// The physical address (= pointer value, tables being identity mapped).
    fn address(self) -> u64 {
        self.0.as_ptr().expose_provenance() as u64
    }

    /// The table a Table descriptor points to.
    fn from_descriptor(descriptor: u64) -> Table {
        let pointer = core::ptr::with_exposed_provenance_mut::<RawTable>(
            (descriptor & OUTPUT_ADDRESS_MASK) as usize,
        );
        Table(NonNull::new(pointer).expect("table descriptors never hold address 0"))
    }

    fn entry(self, index: usize) -> u64 {
        // SAFETY: by the type invariant the table is live and ours; index < 512 by construction
        // (entry_index masks it). Volatile: the table walker reads these behind the compiler's
        // back, and a descriptor must be one single 64-bit access.
        unsafe { self.0.as_ptr().cast::<u64>().add(index).read_volatile() }
    }

    fn set_entry(self, index: usize, descriptor: u64) {
        // SAFETY: as in `entry`.
        unsafe {
            self.0
                .as_ptr()
                .cast::<u64>()
                .add(index)
                .write_volatile(descriptor)
        }
    }

    fn is_empty(self) -> bool {
        (0..ENTRIES_PER_TABLE).all(|index| self.entry(index) & DESCRIPTOR_VALID == 0)
    }
}

/// One translation-table tree (root at level 1) for one stage. See the module documentation.
pub struct PageTable<A: TableAllocator> {
    stage: Stage,
    allocator: A,
    root: Table,
    /// The smallest range holding everything ever mapped (`[low, high)`, empty when
    /// `low >= high`): every table page lies under it, so `destroy` walks only that part of
    /// each table instead of all 512 entries of every one.
    low: u64,
    high: u64,
}

// SAFETY: the table pages are owned exclusively by the PageTable (like a Box), so moving it to
// another CPU moves that ownership along; the allocator must be Send too.
unsafe impl<A: TableAllocator + Send> Send for PageTable<A> {}

impl<A: TableAllocator> PageTable<A> {
    /// An empty tree: one zeroed root table. `NoMemory` if the allocator has none.
    pub fn new(stage: Stage, mut allocator: A) -> Result<Self, MapError> {
        let root = new_table(&mut allocator)?;
        Ok(PageTable {
            stage,
            allocator,
            root,
            low: u64::MAX,
            high: 0,
        })
    }

    /// The root table's physical address, for TTBR0_EL2 or VTTBR_EL2.BADDR.
    pub fn root_address(&self) -> u64 {
        self.root.address()
    }

    /// The stage these tables are for.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Maps `[input, input + size)` to `[output, output + size)`. Everything must be page aligned
    /// and the input range within 2^39. Refused with `AlreadyMapped` if any part is mapped; on
    /// that and every other error (including `NoMemory` half-way) the tables are left exactly as
    /// before. At EL2, writable + executable is refused (`WriteAndExecute`) and so is
    /// `read == false` (`Unsupported`). Device memory is always mapped execute-never.
    pub fn map(
        &mut self,
        input: u64,
        output: u64,
        size: u64,
        attrs: Attributes,
    ) -> Result<(), MapError> {
        let input_end = checked_input_range(input, size)?;
        if !output.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        match output.checked_add(size) {
            Some(output_end) if output_end <= OUTPUT_ADDRESS_LIMIT => {}
            _ => return Err(MapError::OutOfRange),
        }
        let leaf_attributes = self.leaf_attributes(attrs)?;
        if any_mapped(self.root, ROOT_LEVEL, input, input_end) {
            return Err(MapError::AlreadyMapped);
        }
        let result = self.map_range(
            self.root,
            ROOT_LEVEL,
            input,
            input_end,
            output,
            leaf_attributes,
        );
        if result.is_err() {
            // The whole range was unmapped before, so removing everything in it (and the tables
            // that end up empty, including any just created) restores the previous state.
            self.remove_range(self.root, ROOT_LEVEL, input, input_end);
        } else {
            self.low = self.low.min(input);
            self.high = self.high.max(input_end);
        }
        result
    }

    /// Unmaps `[input, input + size)`; parts already unmapped are ignored. Blocks straddling the
    /// range's ends are split first, keeping their attributes for the part still mapped; table
    /// pages that become empty are freed. On `NoMemory` (a split needed a table) nothing is
    /// unmapped and every translation is unchanged, though blocks may already have been split.
    pub fn unmap(&mut self, input: u64, size: u64) -> Result<(), MapError> {
        let input_end = checked_input_range(input, size)?;
        self.split_at(input)?;
        self.split_at(input_end)?;
        self.remove_range(self.root, ROOT_LEVEL, input, input_end);
        Ok(())
    }

    /// Software walk: the output address `input` translates to, and the mapping's attributes.
    /// `None` if `input` is not mapped.
    pub fn translate(&self, input: u64) -> Option<(u64, Attributes)> {
        if input >= INPUT_ADDRESS_LIMIT {
            return None;
        }
        let mut table = self.root;
        for level in ROOT_LEVEL..=PAGE_LEVEL {
            let descriptor = table.entry(entry_index(level, input));
            if descriptor & DESCRIPTOR_VALID == 0 {
                return None;
            }
            if is_table(level, descriptor) {
                table = Table::from_descriptor(descriptor);
                continue;
            }
            if !is_leaf(level, descriptor) {
                return None;
            }
            let offset_mask = entry_size(level) - 1;
            let output = (descriptor & OUTPUT_ADDRESS_MASK & !offset_mask) | (input & offset_mask);
            return Some((output, self.decode_attributes(descriptor)));
        }
        None
    }

    /// Frees every table page, root included, and gives the allocator back. The tables must no
    /// longer be in use by any CPU (and their TLB entries invalidated before the pages are reused).
    pub fn destroy(mut self) -> A {
        let root = self.root;
        let (low, high) = (self.low, self.high);
        self.free_tree(root, ROOT_LEVEL, low, high);
        self.allocator
    }

    /// Lower and upper attributes of Block and Page descriptors for `attrs` in this stage.
    fn leaf_attributes(&self, attrs: Attributes) -> Result<u64, MapError> {
        let device = attrs.memory == MemoryType::Device;
        let shareability = if device { 0 } else { SHAREABILITY_INNER };
        match self.stage {
            Stage::El2 => {
                if attrs.write && attrs.execute {
                    return Err(MapError::WriteAndExecute);
                }
                if !attrs.read {
                    return Err(MapError::Unsupported);
                }
                let index = if device {
                    MAIR_INDEX_DEVICE
                } else {
                    MAIR_INDEX_NORMAL
                };
                let mut bits =
                    ACCESS_FLAG | shareability | EL2_AP1_RES1 | (index << EL2_ATTR_INDEX_SHIFT);
                if !attrs.write {
                    bits |= EL2_AP_READ_ONLY;
                }
                if device || !attrs.execute {
                    bits |= EL2_EXECUTE_NEVER;
                }
                Ok(bits)
            }
            Stage::Stage2 => {
                let memattr = if device {
                    S2_MEMATTR_DEVICE_NGNRE
                } else {
                    S2_MEMATTR_NORMAL_WRITE_BACK
                };
                let mut bits = ACCESS_FLAG | shareability | (memattr << S2_MEMATTR_SHIFT);
                if attrs.read {
                    bits |= S2_AP_READ;
                }
                if attrs.write {
                    bits |= S2_AP_WRITE;
                }
                if device || !attrs.execute {
                    bits |= S2_EXECUTE_NEVER;
                }
                Ok(bits)
            }
        }
    }

    /// The attributes a Block or Page descriptor built by [`Self::leaf_attributes`] grants.
    fn decode_attributes(&self, descriptor: u64) -> Attributes {
        match self.stage {
            Stage::El2 => {
                let index = (descriptor & EL2_ATTR_INDEX_MASK) >> EL2_ATTR_INDEX_SHIFT;
                Attributes {
                    memory: if index == MAIR_INDEX_DEVICE {
                        MemoryType::Device
                    } else {
                        MemoryType::Normal
                    },
                    read: true,
                    write: descriptor & EL2_AP_READ_ONLY == 0,
                    execute: descriptor & EL2_EXECUTE_NEVER == 0,
                }
            }
            Stage::Stage2 => {
                let memattr = (descriptor & S2_MEMATTR_MASK) >> S2_MEMATTR_SHIFT;
                Attributes {
                    memory: if memattr >> S2_MEMATTR_OUTER_SHIFT == 0 {
                        MemoryType::Device
                    } else {
                        MemoryType::Normal
                    },
                    read: descriptor & S2_AP_READ != 0,
                    write: descriptor & S2_AP_WRITE != 0,
                    execute: descriptor & S2_XN_MASK == 0,
                }
            }
        }
    }

    /// Maps `[start, end)` (within the span `table` covers) to `output..`, creating tables as
    /// needed. The caller checked that nothing in the range is mapped, and cleans up on error.
    fn map_range(
        &mut self,
        table: Table,
        level: usize,
        start: u64,
        end: u64,
        output: u64,
        leaf_attributes: u64,
    ) -> Result<(), MapError> {
        let size = entry_size(level);
        let mut input = start;
        while input < end {
            let entry_end = end.min((input & !(size - 1)) + size);
            let entry_output = output + (input - start);
            let index = entry_index(level, input);
            let whole_entry = input.is_multiple_of(size) && entry_end - input == size;
            if level == PAGE_LEVEL {
                table.set_entry(index, entry_output | leaf_attributes | DESCRIPTOR_PAGE);
            } else if whole_entry && entry_output.is_multiple_of(size) {
                table.set_entry(index, entry_output | leaf_attributes | DESCRIPTOR_BLOCK);
            } else {
                let descriptor = table.entry(index);
                let child = if descriptor & DESCRIPTOR_VALID == 0 {
                    let child = new_table(&mut self.allocator)?;
                    table.set_entry(index, child.address() | DESCRIPTOR_TABLE);
                    child
                } else {
                    debug_assert!(is_table(level, descriptor), "checked unmapped before");
                    Table::from_descriptor(descriptor)
                };
                self.map_range(
                    child,
                    level + 1,
                    input,
                    entry_end,
                    entry_output,
                    leaf_attributes,
                )?;
            }
            input = entry_end;
        }
        Ok(())
    }

    /// Makes `boundary` fall on a descriptor edge by splitting any block that straddles it.
    fn split_at(&mut self, boundary: u64) -> Result<(), MapError> {
        if boundary >= INPUT_ADDRESS_LIMIT {
            return Ok(());
        }
        let mut table = self.root;
        for level in ROOT_LEVEL..PAGE_LEVEL {
            let index = entry_index(level, boundary);
            let descriptor = table.entry(index);
            if descriptor & DESCRIPTOR_VALID == 0 || boundary.is_multiple_of(entry_size(level)) {
                return Ok(());
            }
            if is_leaf(level, descriptor) {
                let child = self.split_block(level, descriptor)?;
                table.set_entry(index, child.address() | DESCRIPTOR_TABLE);
                table = child;
            } else {
                table = Table::from_descriptor(descriptor);
            }
        }
        Ok(())
    }

    /// A new table at `level + 1` mapping exactly what the Block `descriptor` at `level` maps,
    /// with the same attributes.
    fn split_block(&mut self, level: usize, descriptor: u64) -> Result<Table, MapError> {
        let child = new_table(&mut self.allocator)?;
        let child_level = level + 1;
        let child_type = if child_level == PAGE_LEVEL {
            DESCRIPTOR_PAGE
        } else {
            DESCRIPTOR_BLOCK
        };
        let base = descriptor & OUTPUT_ADDRESS_MASK;
        let attributes = descriptor & LEAF_ATTRIBUTE_MASK;
        for index in 0..ENTRIES_PER_TABLE {
            let output = base + index as u64 * entry_size(child_level);
            child.set_entry(index, output | attributes | child_type);
        }
        Ok(child)
    }

    /// Invalidates every descriptor in `[start, end)` and frees the tables left empty. Blocks in
    /// the range must lie entirely inside it (split first).
    fn remove_range(&mut self, table: Table, level: usize, start: u64, end: u64) {
        let size = entry_size(level);
        let mut input = start;
        while input < end {
            let entry_end = end.min((input & !(size - 1)) + size);
            let index = entry_index(level, input);
            let descriptor = table.entry(index);
            if is_table(level, descriptor) {
                let child = Table::from_descriptor(descriptor);
                self.remove_range(child, level + 1, input, entry_end);
                if child.is_empty() {
                    table.set_entry(index, 0);
                    self.allocator.free_table(child.0);
                }
            } else if descriptor & DESCRIPTOR_VALID != 0 {
                debug_assert!(
                    input.is_multiple_of(size) && entry_end - input == size,
                    "blocks straddling the range are split before removal"
                );
                table.set_entry(index, 0);
            }
            input = entry_end;
        }
    }

    /// Frees `table` and every table below it.
    /// Frees `table` and the tables under its entries that cover `[start, end)`.
    fn free_tree(&mut self, table: Table, level: usize, start: u64, end: u64) {
        let size = entry_size(level);
        let mut input = start;
        while input < end {
            let entry_end = end.min((input & !(size - 1)) + size);
            let descriptor = table.entry(entry_index(level, input));
            if descriptor & DESCRIPTOR_VALID != 0 && is_table(level, descriptor) {
                self.free_tree(
                    Table::from_descriptor(descriptor),
                    level + 1,
                    input,
                    entry_end,
                );
            }
            input = entry_end;
        }
        self.allocator.free_table(table.0);
    }
}

/// Whether any part of `[start, end)` (within the span `table` covers) is mapped.
fn any_mapped(table: Table, level: usize, start: u64, end: u64) -> bool {
    let size = entry_size(level);
    let mut input = start;
    while input < end {
        let entry_end = end.min((input & !(size - 1)) + size);
        let descriptor = table.entry(entry_index(level, input));
        if is_table(level, descriptor) {
            if any_mapped(
                Table::from_descriptor(descriptor),
                level + 1,
                input,
                entry_end,
            ) {
                return true;
            }
        } else if descriptor & DESCRIPTOR_VALID != 0 {
            return true;
        }
        input = entry_end;
    }
    false
}

/// Checks an input range: non-empty, page aligned, inside the 39-bit space. Returns its end.
fn checked_input_range(input: u64, size: u64) -> Result<u64, MapError> {
    if size == 0 {
        return Err(MapError::ZeroSize);
    }
    if !input.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    match input.checked_add(size) {
        Some(end) if end <= INPUT_ADDRESS_LIMIT => Ok(end),
        _ => Err(MapError::OutOfRange),
    }
}

/// A fresh, zeroed table from `allocator`. Tables the hardware cannot point to (misaligned, or
/// above the 48-bit output range) are handed back and reported as `NoMemory`.
fn new_table<A: TableAllocator>(allocator: &mut A) -> Result<Table, MapError> {
    let pointer = allocator.alloc_table().ok_or(MapError::NoMemory)?;
    let table = Table(pointer);
    if table.address() & !OUTPUT_ADDRESS_MASK != 0 {
        allocator.free_table(pointer);
        return Err(MapError::NoMemory);
    }
    // Zeroed here, whatever the allocator handed out: stale contents can never turn into stray
    // mappings.
    allocator.zero_table(pointer);
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::collections::BTreeSet;
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    const KIB4: u64 = 4096;
    const MIB2: u64 = 2 << 20;
    const GIB: u64 = 1 << 30;

    const NORMAL_RW: Attributes = Attributes {
        memory: MemoryType::Normal,
        read: true,
        write: true,
        execute: false,
    };
    const NORMAL_RX: Attributes = Attributes {
        memory: MemoryType::Normal,
        read: true,
        write: false,
        execute: true,
    };
    const NORMAL_RWX: Attributes = Attributes {
        memory: MemoryType::Normal,
        read: true,
        write: true,
        execute: true,
    };
    const DEVICE_RW: Attributes = Attributes {
        memory: MemoryType::Device,
        read: true,
        write: true,
        execute: false,
    };

    /// A 4 KiB-aligned table page for the host.
    #[repr(C, align(4096))]
    struct TestPage([u64; 512]);

    #[derive(Default)]
    struct AllocatorState {
        /// Addresses of tables handed out and not yet freed.
        live: BTreeSet<usize>,
        /// How many more tables may be handed out (`None`: unlimited).
        budget: Option<usize>,
        /// Fill new tables with garbage instead of zeroes (breaking the contract on purpose).
        garbage: bool,
    }

    /// A TableAllocator whose state the test keeps a handle on after moving it into a PageTable.
    #[derive(Clone, Default)]
    struct TestAllocator(Rc<RefCell<AllocatorState>>);

    impl TestAllocator {
        fn with_budget(budget: usize) -> Self {
            let allocator = TestAllocator::default();
            allocator.set_budget(Some(budget));
            allocator
        }
        fn live(&self) -> usize {
            self.0.borrow().live.len()
        }
        fn set_budget(&self, budget: Option<usize>) {
            self.0.borrow_mut().budget = budget;
        }
    }

    // Tables are leaked, 4 KiB-aligned boxes, zeroed unless `garbage` (which tests that the
    // PageTable does not rely on it), and only freed once (checked).
    impl TableAllocator for TestAllocator {
        fn alloc_table(&mut self) -> Option<NonNull<[u64; 512]>> {
            let mut state = self.0.borrow_mut();
            if let Some(budget) = state.budget.as_mut() {
                *budget = budget.checked_sub(1)?;
            }
            let fill = if state.garbage { u64::MAX } else { 0 };
            let page = Box::into_raw(Box::new(TestPage([fill; 512])));
            state.live.insert(page as usize);
            NonNull::new(page.cast::<[u64; 512]>())
        }
        fn free_table(&mut self, table: NonNull<[u64; 512]>) {
            let address = table.as_ptr() as usize;
            assert!(
                self.0.borrow_mut().live.remove(&address),
                "freeing a table that is not live: {address:#x}"
            );
            // SAFETY: allocated above by Box::into_raw of a TestPage, freed only once.
            drop(unsafe { Box::from_raw(table.as_ptr().cast::<TestPage>()) });
        }
    }

    fn new_table_pair(stage: Stage) -> (PageTable<TestAllocator>, TestAllocator) {
        let allocator = TestAllocator::default();
        let tables = PageTable::new(stage, allocator.clone()).unwrap();
        (tables, allocator)
    }

    /// Every table reachable from the root with its level and full contents.
    fn dump(tables: &PageTable<TestAllocator>) -> Vec<(u64, usize, Vec<u64>)> {
        fn walk(table: Table, level: usize, out: &mut Vec<(u64, usize, Vec<u64>)>) {
            let entries: Vec<u64> = (0..ENTRIES_PER_TABLE).map(|i| table.entry(i)).collect();
            out.push((table.address(), level, entries.clone()));
            for descriptor in entries {
                if descriptor & DESCRIPTOR_VALID != 0 && is_table(level, descriptor) {
                    walk(Table::from_descriptor(descriptor), level + 1, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(tables.root, ROOT_LEVEL, &mut out);
        out
    }

    /// The level and descriptor of the Block or Page that maps `input`, by walking by hand.
    fn leaf(tables: &PageTable<TestAllocator>, input: u64) -> Option<(usize, u64)> {
        let mut table = tables.root;
        for level in ROOT_LEVEL..=PAGE_LEVEL {
            let descriptor = table.entry(entry_index(level, input));
            if descriptor & DESCRIPTOR_VALID == 0 {
                return None;
            }
            if is_table(level, descriptor) {
                table = Table::from_descriptor(descriptor);
            } else {
                return Some((level, descriptor));
            }
        }
        unreachable!("level 3 descriptors are never tables")
    }

    #[test]
    fn new_gives_an_empty_aligned_root() {
        let (tables, allocator) = new_table_pair(Stage::Stage2);
        assert_eq!(allocator.live(), 1);
        assert_eq!(tables.root_address() % PAGE_SIZE, 0);
        assert_eq!(tables.root_address(), tables.root.0.as_ptr() as u64);
        assert_eq!(tables.translate(0), None);
        assert!(matches!(
            PageTable::new(Stage::El2, TestAllocator::with_budget(0)),
            Err(MapError::NoMemory)
        ));
    }

    #[test]
    fn uses_2mib_blocks_when_aligned_and_pages_otherwise() {
        let (mut tables, _allocator) = new_table_pair(Stage::Stage2);
        // Two pages below a 2 MiB boundary, one whole 2 MiB, two pages above.
        let input = 0x8000_0000 + MIB2 - 2 * KIB4;
        let output = 0x4000_0000 + MIB2 - 2 * KIB4;
        tables
            .map(input, output, MIB2 + 4 * KIB4, NORMAL_RW)
            .unwrap();
        for (offset, level) in [
            (0, 3),
            (KIB4, 3),
            (2 * KIB4, 2),
            (2 * KIB4 + MIB2 - KIB4, 2),
            (2 * KIB4 + MIB2, 3),
            (3 * KIB4 + MIB2, 3),
        ] {
            let (found_level, descriptor) = leaf(&tables, input + offset).unwrap();
            assert_eq!(found_level, level, "offset {offset:#x}");
            let expected_type = if level == 3 {
                DESCRIPTOR_PAGE
            } else {
                DESCRIPTOR_BLOCK
            };
            assert_eq!(descriptor & DESCRIPTOR_TYPE_MASK, expected_type);
        }
        assert_eq!(leaf(&tables, input - KIB4), None);
        assert_eq!(leaf(&tables, input + MIB2 + 4 * KIB4), None);
    }

    #[test]
    fn uses_pages_when_output_alignment_differs() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        // Input 2 MiB aligned, output only 4 KiB aligned: no block is possible.
        tables
            .map(0x8000_0000, 0x4000_1000, MIB2, NORMAL_RW)
            .unwrap();
        for offset in (0..MIB2).step_by(KIB4 as usize) {
            assert_eq!(leaf(&tables, 0x8000_0000 + offset).unwrap().0, 3);
        }
        assert_eq!(
            allocator.live(),
            3,
            "root, one level 2 and one level 3 table"
        );
    }

    #[test]
    fn uses_1gib_blocks() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        tables.map(GIB, 0x4000_0000, GIB, NORMAL_RW).unwrap();
        assert_eq!(leaf(&tables, GIB).unwrap().0, 1);
        assert_eq!(leaf(&tables, 2 * GIB - KIB4).unwrap().0, 1);
        assert_eq!(allocator.live(), 1, "a level 1 block needs no table");
        // 2 MiB, then 1 GiB, then 2 MiB: levels 2, 1, 2.
        tables
            .map(
                3 * GIB - MIB2,
                0x1_0000_0000 - MIB2,
                GIB + 2 * MIB2,
                NORMAL_RW,
            )
            .unwrap();
        assert_eq!(leaf(&tables, 3 * GIB - MIB2).unwrap().0, 2);
        assert_eq!(leaf(&tables, 3 * GIB).unwrap().0, 1);
        assert_eq!(leaf(&tables, 4 * GIB).unwrap().0, 2);
        assert_eq!(allocator.live(), 3);
        assert_eq!(
            tables.translate(3 * GIB + 0x1234_5678).unwrap().0,
            0x1_0000_0000 + 0x1234_5678
        );
    }

    #[test]
    fn translate_pages_and_blocks_at_both_stages() {
        let (mut stage2, _a) = new_table_pair(Stage::Stage2);
        stage2
            .map(0x8000_0000, 0x4000_0000, GIB, NORMAL_RW)
            .unwrap();
        stage2
            .map(0x40_0000, 0x4800_0000, MIB2, NORMAL_RWX)
            .unwrap();
        stage2.map(0x9000, 0x0900_0000, KIB4, DEVICE_RW).unwrap();
        let read_only = Attributes {
            write: false,
            ..NORMAL_RW
        };
        let none = Attributes {
            read: false,
            write: false,
            ..NORMAL_RW
        };
        stage2.map(0xA000, 0x5000_0000, KIB4, read_only).unwrap();
        stage2.map(0xB000, 0x5000_1000, KIB4, none).unwrap();

        assert_eq!(
            stage2.translate(0x8000_0000 + 0x123_4567),
            Some((0x4123_4567, NORMAL_RW))
        );
        assert_eq!(
            stage2.translate(0x40_0000 + 0x1F_FFFF),
            Some((0x481F_FFFF, NORMAL_RWX))
        );
        assert_eq!(stage2.translate(0x9ABC), Some((0x0900_0ABC, DEVICE_RW)));
        assert_eq!(stage2.translate(0xA008), Some((0x5000_0008, read_only)));
        assert_eq!(stage2.translate(0xB000), Some((0x5000_1000, none)));
        assert_eq!(stage2.translate(0x8000), None);
        assert_eq!(stage2.translate(0x7FFF_FFFF), None);
        assert_eq!(stage2.translate(INPUT_ADDRESS_LIMIT), None);
        assert_eq!(stage2.translate(u64::MAX), None);

        let (mut el2, _b) = new_table_pair(Stage::El2);
        el2.map(0x4020_0000, 0x4020_0000, MIB2, NORMAL_RX).unwrap();
        el2.map(0x4040_0000, 0x4040_0000, KIB4, read_only).unwrap();
        el2.map(0x4041_0000, 0x4041_0000, KIB4, NORMAL_RW).unwrap();
        el2.map(0x0900_0000, 0x0900_0000, KIB4, DEVICE_RW).unwrap();
        assert_eq!(el2.translate(0x4020_0010), Some((0x4020_0010, NORMAL_RX)));
        assert_eq!(el2.translate(0x4040_0FFF), Some((0x4040_0FFF, read_only)));
        assert_eq!(el2.translate(0x4041_0000), Some((0x4041_0000, NORMAL_RW)));
        assert_eq!(el2.translate(0x0900_0004), Some((0x0900_0004, DEVICE_RW)));
        assert_eq!(el2.translate(0x4042_0000), None);
    }

    #[test]
    fn device_memory_is_always_execute_never() {
        let device_rx = Attributes {
            execute: true,
            write: false,
            ..DEVICE_RW
        };
        for stage in [Stage::El2, Stage::Stage2] {
            let (mut tables, _a) = new_table_pair(stage);
            tables
                .map(0x0900_0000, 0x0900_0000, KIB4, device_rx)
                .unwrap();
            let (_, attrs) = tables.translate(0x0900_0000).unwrap();
            assert!(!attrs.execute, "{stage:?}");
        }
    }

    #[test]
    fn unaligned_and_empty_arguments_are_refused() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        assert_eq!(
            tables.map(0x1001, 0x4000_0000, KIB4, NORMAL_RW),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            tables.map(0x1000, 0x4000_0800, KIB4, NORMAL_RW),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            tables.map(0x1000, 0x4000_0000, KIB4 + 1, NORMAL_RW),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            tables.map(0x1000, 0x4000_0000, 0, NORMAL_RW),
            Err(MapError::ZeroSize)
        );
        assert_eq!(tables.unmap(0x1800, KIB4), Err(MapError::Misaligned));
        assert_eq!(tables.unmap(0x1000, 12), Err(MapError::Misaligned));
        assert_eq!(tables.unmap(0x1000, 0), Err(MapError::ZeroSize));
        assert_eq!(allocator.live(), 1);
        assert!(dump(&tables)[0].2.iter().all(|&d| d == 0));
    }

    #[test]
    fn out_of_range_is_refused() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        let limit = INPUT_ADDRESS_LIMIT;
        assert_eq!(
            tables.map(limit - KIB4, 0, 2 * KIB4, NORMAL_RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            tables.map(limit, 0, KIB4, NORMAL_RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            tables.map(u64::MAX - KIB4 + 1, 0, KIB4, NORMAL_RW),
            Err(MapError::OutOfRange),
            "input + size overflows"
        );
        assert_eq!(
            tables.map(0, (1 << 48) - KIB4, 2 * KIB4, NORMAL_RW),
            Err(MapError::OutOfRange),
            "output beyond 48 bits"
        );
        assert_eq!(
            tables.map(0, u64::MAX - KIB4 + 1, KIB4, NORMAL_RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(tables.unmap(limit, KIB4), Err(MapError::OutOfRange));
        assert_eq!(allocator.live(), 1);
        // The very last page of both spaces is fine.
        tables
            .map(limit - KIB4, (1 << 48) - KIB4, KIB4, NORMAL_RW)
            .unwrap();
        assert_eq!(tables.translate(limit - 1).unwrap().0, (1 << 48) - 1);
    }

    #[test]
    fn overlapping_map_is_refused_with_tables_unchanged() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        tables
            .map(0x8020_0000, 0x4000_0000, MIB2, NORMAL_RW)
            .unwrap();
        tables
            .map(0x8060_3000, 0x4100_0000, KIB4, NORMAL_RW)
            .unwrap();
        let before = dump(&tables);
        let live = allocator.live();
        for (input, size) in [
            // Runs into the 2 MiB block from below, through fresh tables.
            (0x4000_0000, 0x4020_1000),
            // A page inside the block.
            (0x8030_0000, KIB4),
            // Ends on the single page.
            (0x8060_0000, 4 * KIB4),
            // Covers everything.
            (0, INPUT_ADDRESS_LIMIT),
        ] {
            assert_eq!(
                tables.map(input, 0x1000_0000, size, NORMAL_RW),
                Err(MapError::AlreadyMapped),
                "{input:#x}+{size:#x}"
            );
            assert_eq!(dump(&tables), before);
            assert_eq!(allocator.live(), live);
        }
        // Adjacent ranges are not overlaps.
        tables
            .map(0x8060_2000, 0x4200_0000, KIB4, NORMAL_RW)
            .unwrap();
        tables
            .map(0x8040_0000, 0x4400_0000, MIB2, NORMAL_RW)
            .unwrap();
    }

    #[test]
    fn no_memory_midway_leaves_no_partial_mapping_and_no_leak() {
        // [1 GiB - 2 MiB - 12 KiB, 1.5 GiB + 2 MiB + 20 KiB) needs, in order: a level 3 table for
        // the 3-page head (under the level 2 table the existing mapping already uses), a level 2
        // table for the second GiB (filled with 257 blocks), and a level 3 table for the 5-page
        // tail. Failing at each of those must roll back what came before.
        let input = GIB - MIB2 - 3 * KIB4;
        let size = 2 * MIB2 + 3 * KIB4 + GIB / 2 + 5 * KIB4;
        let output = 0x4_0000_0000 - MIB2 - 3 * KIB4;
        let mut failures = 0;
        for budget in 0.. {
            let allocator = TestAllocator::default();
            let mut tables = PageTable::new(Stage::Stage2, allocator.clone()).unwrap();
            // Something already there, sharing the level 2 table of the new range.
            tables.map(0x1000, 0x9000_0000, KIB4, NORMAL_RW).unwrap();
            let before = dump(&tables);
            let live = allocator.live();
            allocator.set_budget(Some(budget));
            match tables.map(input, output, size, NORMAL_RW) {
                Err(MapError::NoMemory) => {
                    failures += 1;
                    assert_eq!(dump(&tables), before, "budget {budget}");
                    assert_eq!(allocator.live(), live, "budget {budget}");
                    assert_eq!(tables.translate(input), None);
                    assert_eq!(tables.translate(input + size - KIB4), None);
                }
                Ok(()) => {
                    assert_eq!(
                        tables.translate(input + size - 1).unwrap().0,
                        output + size - 1
                    );
                    tables.destroy();
                    assert_eq!(allocator.live(), 0);
                    break;
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
            tables.destroy();
            assert_eq!(allocator.live(), 0);
        }
        assert_eq!(failures, 3, "three tables needed, so three failure points");

        // A table created and linked, then left empty because its child could not be allocated.
        let allocator = TestAllocator::default();
        let mut tables = PageTable::new(Stage::Stage2, allocator.clone()).unwrap();
        allocator.set_budget(Some(1));
        assert_eq!(
            tables.map(5 * GIB + KIB4, 0x4000_0000, KIB4, NORMAL_RW),
            Err(MapError::NoMemory)
        );
        assert_eq!(allocator.live(), 1);
        assert!(dump(&tables)[0].2.iter().all(|&d| d == 0));
    }

    #[test]
    fn unmap_splits_a_2mib_block_keeping_the_rest() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        let block = 0x8020_0000;
        let output = 0x4060_0000;
        tables.map(block, output, MIB2, NORMAL_RWX).unwrap();
        assert_eq!(leaf(&tables, block).unwrap().0, 2);
        let live = allocator.live();
        let hole = block + 0x10_0000;
        tables.unmap(hole, KIB4).unwrap();
        assert_eq!(allocator.live(), live + 1, "one level 3 table");
        for offset in (0..MIB2).step_by(KIB4 as usize) {
            let input = block + offset;
            if input == hole {
                assert_eq!(tables.translate(input), None);
            } else {
                assert_eq!(
                    tables.translate(input + 8),
                    Some((output + offset + 8, NORMAL_RWX))
                );
                assert_eq!(leaf(&tables, input).unwrap().0, 3);
            }
        }
    }

    #[test]
    fn unmap_splits_a_1gib_block_down_to_pages() {
        let (mut tables, allocator) = new_table_pair(Stage::El2);
        tables.map(GIB, GIB, GIB, NORMAL_RX).unwrap();
        let hole = GIB + 3 * MIB2 + 5 * KIB4;
        tables.unmap(hole, 2 * KIB4).unwrap();
        assert_eq!(allocator.live(), 3);
        assert_eq!(tables.translate(hole), None);
        assert_eq!(tables.translate(hole + KIB4), None);
        assert_eq!(tables.translate(hole - 1), Some((hole - 1, NORMAL_RX)));
        assert_eq!(
            tables.translate(hole + 2 * KIB4),
            Some((hole + 2 * KIB4, NORMAL_RX))
        );
        assert_eq!(leaf(&tables, hole - KIB4).unwrap().0, 3);
        assert_eq!(leaf(&tables, GIB).unwrap().0, 2);
        assert_eq!(leaf(&tables, 2 * GIB - 1).unwrap().0, 2);
        assert_eq!(
            tables.translate(2 * GIB - 1),
            Some((2 * GIB - 1, NORMAL_RX))
        );
    }

    #[test]
    fn unmap_frees_emptied_tables() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        tables
            .map(0x8000_1000, 0x4000_1000, 3 * KIB4, NORMAL_RW)
            .unwrap();
        tables
            .map(0x8000_8000, 0x4000_8000, KIB4, NORMAL_RW)
            .unwrap();
        assert_eq!(allocator.live(), 3);
        tables.unmap(0x8000_1000, 3 * KIB4).unwrap();
        assert_eq!(allocator.live(), 3, "level 3 table still holds a page");
        assert_eq!(tables.translate(0x8000_2000), None);
        tables.unmap(0x8000_8000, KIB4).unwrap();
        assert_eq!(allocator.live(), 1, "only the root is left");
        assert!(dump(&tables)[0].2.iter().all(|&d| d == 0));
        // Unmapping what is not mapped is a no-op.
        tables.unmap(0, INPUT_ADDRESS_LIMIT).unwrap();
        assert_eq!(allocator.live(), 1);
    }

    #[test]
    fn unmap_across_several_blocks_and_tables() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        tables.map(0, 0x4000_0000, 2 * GIB, NORMAL_RW).unwrap();
        // From the middle of the first 1 GiB block to the middle of the second one.
        tables
            .unmap(GIB - MIB2 - KIB4, MIB2 + 2 * KIB4 + MIB2)
            .unwrap();
        assert_eq!(
            tables.translate(GIB - MIB2 - KIB4 - 1).unwrap().0,
            0x4000_0000 + GIB - MIB2 - KIB4 - 1
        );
        assert_eq!(tables.translate(GIB - MIB2 - KIB4), None);
        assert_eq!(tables.translate(GIB + MIB2), None);
        assert_eq!(
            tables.translate(GIB + MIB2 + KIB4).unwrap().0,
            0x4000_0000 + GIB + MIB2 + KIB4
        );
        tables.unmap(0, 2 * GIB).unwrap();
        assert_eq!(allocator.live(), 1);
    }

    #[test]
    fn unmap_out_of_tables_keeps_every_translation() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        tables.map(GIB, 0x4000_0000, GIB, NORMAL_RW).unwrap();
        // Enough for the level 2 split but not the level 3 one.
        allocator.set_budget(Some(1));
        assert_eq!(tables.unmap(GIB + KIB4, KIB4), Err(MapError::NoMemory));
        for input in [GIB, GIB + KIB4, GIB + MIB2, 2 * GIB - 1] {
            assert_eq!(
                tables.translate(input),
                Some((0x4000_0000 + input - GIB, NORMAL_RW))
            );
        }
        allocator.set_budget(None);
        tables.unmap(GIB + KIB4, KIB4).unwrap();
        assert_eq!(tables.translate(GIB + KIB4), None);
    }

    #[test]
    fn el2_refuses_write_and_execute_and_unreadable() {
        let (mut tables, allocator) = new_table_pair(Stage::El2);
        assert_eq!(
            tables.map(0x4000_0000, 0x4000_0000, MIB2, NORMAL_RWX),
            Err(MapError::WriteAndExecute)
        );
        let execute_only = Attributes {
            read: false,
            write: false,
            ..NORMAL_RX
        };
        assert_eq!(
            tables.map(0x4000_0000, 0x4000_0000, MIB2, execute_only),
            Err(MapError::Unsupported)
        );
        assert_eq!(tables.translate(0x4000_0000), None);
        assert_eq!(allocator.live(), 1);
        // Stage 2 leaves that choice to the guest.
        let (mut stage2, _b) = new_table_pair(Stage::Stage2);
        stage2.map(0, 0x4000_0000, KIB4, NORMAL_RWX).unwrap();
        stage2.map(KIB4, 0x4000_1000, KIB4, execute_only).unwrap();
        assert_eq!(stage2.translate(KIB4), Some((0x4000_1000, execute_only)));
    }

    #[test]
    fn exact_descriptor_bits() {
        let pa = 0x4567_8000;
        let xn = 1 << 54;
        let (mut stage2, _a) = new_table_pair(Stage::Stage2);
        stage2.map(0x1000, pa, KIB4, NORMAL_RW).unwrap();
        stage2.map(0x2000, 0x0900_0000, KIB4, DEVICE_RW).unwrap();
        // Page | MemAttr 0b1111 | S2AP 0b11 | SH 0b11 | AF | XN 0b10.
        assert_eq!(leaf(&stage2, 0x1000), Some((3, pa | 0x7FF | xn)));
        // Page | MemAttr 0b0001 | S2AP 0b11 | SH 0b00 | AF | XN 0b10.
        assert_eq!(leaf(&stage2, 0x2000), Some((3, 0x0900_0000 | 0x4C7 | xn)));

        let (mut el2, _b) = new_table_pair(Stage::El2);
        el2.map(0x1000, pa, KIB4, NORMAL_RX).unwrap();
        el2.map(0x2000, pa + KIB4, KIB4, NORMAL_RW).unwrap();
        el2.map(0x3000, 0x0900_0000, KIB4, DEVICE_RW).unwrap();
        // Page | AttrIndx 0 | AP[2] read-only | AP[1] RES1 | SH 0b11 | AF, executable.
        assert_eq!(leaf(&el2, 0x1000), Some((3, pa | 0x7C3)));
        // Page | AttrIndx 0 | AP[1] RES1 | SH 0b11 | AF | XN.
        assert_eq!(leaf(&el2, 0x2000), Some((3, (pa + KIB4) | 0x743 | xn)));
        // Page | AttrIndx 1 | AP[1] RES1 | SH 0b00 | AF | XN.
        assert_eq!(leaf(&el2, 0x3000), Some((3, 0x0900_0000 | 0x447 | xn)));

        // A 2 MiB block has the same attributes with bits[1:0] = 0b01, and the table
        // descriptors above it point at the next table with bits[1:0] = 0b11.
        el2.map(0x4000_0000, 0x4000_0000, MIB2, NORMAL_RW).unwrap();
        assert_eq!(leaf(&el2, 0x4000_0000), Some((2, 0x4000_0000 | 0x741 | xn)));
        let root_entry = el2.root.entry(1);
        assert_eq!(root_entry & 0b11, 0b11);
        assert_eq!(
            root_entry & !OUTPUT_ADDRESS_MASK,
            0b11,
            "no attributes in tables"
        );
    }

    #[test]
    fn mair_value() {
        assert_eq!(MAIR_EL2_VALUE, 0x04FF);
    }

    #[test]
    fn el2_tcr_fields() {
        let tcr = el2_tcr_value(48);
        assert_eq!(tcr & 0x3F, 25, "T0SZ");
        assert_eq!((tcr >> 8) & 0b11, 0b01, "IRGN0");
        assert_eq!((tcr >> 10) & 0b11, 0b01, "ORGN0");
        assert_eq!((tcr >> 12) & 0b11, 0b11, "SH0");
        assert_eq!((tcr >> 14) & 0b11, 0b00, "TG0");
        assert_eq!((tcr >> 16) & 0b111, 0b101, "PS");
        assert_eq!(tcr, 0x8085_3519, "RES1 bits 31 and 23, nothing else");
        for (bits, ps) in [
            (32, 0b000),
            (36, 0b001),
            (40, 0b010),
            (42, 0b011),
            (44, 0b100),
            (48, 0b101),
            (52, 0b101),
            (39, 0b001),
            (20, 0b000),
        ] {
            assert_eq!((el2_tcr_value(bits) >> 16) & 0b111, ps, "{bits} bits");
        }
    }

    #[test]
    fn vtcr_fields() {
        let vtcr = vtcr_value(40);
        assert_eq!(vtcr & 0x3F, 25, "T0SZ");
        assert_eq!((vtcr >> 6) & 0b11, 0b01, "SL0: start at level 1");
        assert_eq!((vtcr >> 8) & 0b11, 0b01, "IRGN0");
        assert_eq!((vtcr >> 10) & 0b11, 0b01, "ORGN0");
        assert_eq!((vtcr >> 12) & 0b11, 0b11, "SH0");
        assert_eq!((vtcr >> 14) & 0b11, 0b00, "TG0");
        assert_eq!((vtcr >> 16) & 0b111, 0b010, "PS");
        assert_eq!(vtcr, 0x8002_3559, "RES1 bit 31, nothing else");
        assert_eq!((vtcr_value(44) >> 16) & 0b111, 0b100);
    }

    #[test]
    fn destroy_frees_every_table() {
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        tables.map(0, 0x4000_0000, 3 * KIB4, NORMAL_RW).unwrap();
        tables
            .map(5 * GIB + MIB2, 0x5000_0000, 3 * MIB2, NORMAL_RW)
            .unwrap();
        tables
            .map(100 * GIB + KIB4, 0x6000_0000, MIB2, NORMAL_RW)
            .unwrap();
        // Root; level 2 + 3 for the pages at 0; level 2 for the blocks at 5 GiB; level 2 and two
        // level 3 for the unaligned 2 MiB at 100 GiB.
        assert_eq!(allocator.live(), 7);
        let returned = tables.destroy();
        assert_eq!(allocator.live(), 0);
        assert!(Rc::ptr_eq(&returned.0, &allocator.0));
    }

    #[test]
    fn garbage_from_the_allocator_never_becomes_a_mapping() {
        let allocator = TestAllocator::default();
        allocator.0.borrow_mut().garbage = true;
        let mut tables = PageTable::new(Stage::Stage2, allocator.clone()).unwrap();
        tables.map(0x1000, 0x4000_0000, KIB4, NORMAL_RW).unwrap();
        assert_eq!(tables.translate(0x2000), None);
        assert_eq!(tables.translate(GIB), None);
        tables.destroy();
        assert_eq!(allocator.live(), 0);
    }

    #[test]
    fn matches_a_page_by_page_model() {
        use std::collections::BTreeMap;
        // Deterministic pseudo-random maps and unmaps in a 16 MiB window straddling a 1 GiB
        // boundary, checked page by page against a plain map.
        let window = GIB - 8 * MIB2;
        let pages = 8 * MIB2 / KIB4 * 2;
        let mut model: BTreeMap<u64, (u64, Attributes)> = BTreeMap::new();
        let (mut tables, allocator) = new_table_pair(Stage::Stage2);
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for round in 0..300 {
            // Page-granular or 2 MiB-granular, so that blocks appear.
            let unit = if next(2) == 0 { KIB4 } else { MIB2 };
            let units = pages * KIB4 / unit;
            let first = next(units);
            let count = 1 + next((units - first).min(4));
            let input = window + first * unit;
            let size = count * unit;
            let page_numbers = (input / KIB4)..((input + size) / KIB4);
            if next(3) == 0 {
                tables.unmap(input, size).unwrap();
                for page in page_numbers {
                    model.remove(&page);
                }
            } else {
                let output = 0x4000_0000 + next(64) * unit;
                let attrs = if next(2) == 0 { NORMAL_RW } else { NORMAL_RX };
                let overlaps = page_numbers.clone().any(|page| model.contains_key(&page));
                let result = tables.map(input, output, size, attrs);
                if overlaps {
                    assert_eq!(result, Err(MapError::AlreadyMapped), "round {round}");
                } else {
                    assert_eq!(result, Ok(()), "round {round}");
                    for page in page_numbers {
                        let out = output + (page * KIB4 - input);
                        model.insert(page, (out, attrs));
                    }
                }
            }
            for page in (window / KIB4)..(window / KIB4 + pages) {
                assert_eq!(
                    tables.translate(page * KIB4 + 0x10),
                    model.get(&page).map(|&(out, attrs)| (out + 0x10, attrs)),
                    "round {round}, page {page:#x}"
                );
            }
        }
        tables.unmap(window, pages * KIB4).unwrap();
        assert_eq!(allocator.live(), 1);
    }

    #[test]
    fn errors_display_text() {
        assert_eq!(
            alloc::format!("{}", MapError::WriteAndExecute),
            "writable and executable mapping refused (W^X)"
        );
        assert_eq!(
            alloc::format!("{}", MapError::AlreadyMapped),
            "range is already mapped"
        );
    }
}
