//! The boot bundle: the VMs the hypervisor creates at boot, and their images, in one blob.
//!
//! `xtask` writes it ([`BundleBuilder`], feature `std`); the bootloader (QEMU's `-initrd`, or
//! U-Boot's `booti` on a board) places it in RAM and names it in the device tree's `/chosen`; the
//! hypervisor reads it ([`Bundle::parse`]). Parsing validates everything a VM's creation relies
//! on, so a corrupt or hostile bundle is refused with a [`BundleError`] before anything is
//! allocated.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `HVBUNDLE` |
//! | 8 | 4 | format version, 2 |
//! | 12 | 4 | number of VM entries, at most [`MAX_VMS`] |
//! | 16 | 8 | total length of the bundle in bytes |
//! | 24 | 4 | scheduler trace window in µs (0: no trace; see [`Bundle::sched_trace_us`]) |
//! | 28 | 4 | bundle flags ([`BundleFlags`]) |
//! | 32 | 160 × n | VM entries, see [`ENTRY_SIZE`] and `parse_entry` |
//! | … | | payloads (images, initrds, command lines), referenced by offset |
#![cfg_attr(not(any(test, feature = "std")), no_std)]

use core::fmt;

pub const MAGIC: &[u8; 8] = b"HVBUNDLE";
pub const VERSION: u32 = 2;
pub const HEADER_SIZE: usize = 32;
pub const ENTRY_SIZE: usize = 160;
pub const MAX_VMS: usize = 16;
pub const MAX_VCPUS: u32 = 8;
pub const NAME_LEN: usize = 32;
/// VM RAM and IPA placement granule (the stage-2 page size).
pub const PAGE_SIZE: u64 = 4096;
/// IPAs must fit the 39-bit IPA space every VM is given (stage-2 starting at level 1).
pub const IPA_LIMIT: u64 = 1 << 39;
/// Encodes "no dependency" in the `start_after` field.
const NO_VM: u32 = u32::MAX;
const NO_PCT: u32 = u32::MAX;

/// Per-VM options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmFlags(pub u32);

impl VmFlags {
    /// The VM may use the PMU (benchmarks only: the PMU can observe other exception levels).
    pub const PMU: u32 = 1 << 0;
    /// The image is an arm64 Linux `Image`: the hypervisor validates its header and places it,
    /// the initrd and the device tree as the Linux boot protocol says (`load_offset` and
    /// `entry_offset` must then be 0).
    pub const LINUX: u32 = 1 << 1;
    /// The VM gets the emulated platform devices (virtual GIC, PL011, timer interrupt) even
    /// though its image is not Linux. Linux VMs always get them.
    pub const PLATFORM: u32 = 1 << 2;
    /// The image is an ELF64 little-endian AArch64 executable: the hypervisor loads its
    /// `PT_LOAD` segments at their physical addresses and enters at `e_entry` (`load_offset`
    /// and `entry_offset` must then be 0). Not together with [`VmFlags::LINUX`].
    pub const ELF: u32 = 1 << 3;
    /// The management VM: it may make the management hypercalls, and its CPU share is the
    /// board's (`boards::Board::mgmt_cpu_pct`), not a VirMO percentage. At most one VM.
    pub const MANAGEMENT: u32 = 1 << 4;
    const KNOWN: u32 = Self::PMU | Self::LINUX | Self::PLATFORM | Self::ELF | Self::MANAGEMENT;

    pub fn management(self) -> bool {
        self.0 & Self::MANAGEMENT != 0
    }

    pub fn pmu(self) -> bool {
        self.0 & Self::PMU != 0
    }

    pub fn linux(self) -> bool {
        self.0 & Self::LINUX != 0
    }

    pub fn platform(self) -> bool {
        self.0 & (Self::LINUX | Self::PLATFORM) != 0
    }

    pub fn elf(self) -> bool {
        self.0 & Self::ELF != 0
    }

    /// The image format these flags say (`LINUX`: linux, `ELF`: elf, neither: raw).
    pub fn format(self) -> ImageFormat {
        if self.linux() {
            ImageFormat::Linux
        } else if self.elf() {
            ImageFormat::Elf
        } else {
            ImageFormat::Raw
        }
    }
}

/// How a VM's image is loaded: the *format* of `--vm format=` and docs/guest-images.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// An arm64 Linux `Image` (flag [`VmFlags::LINUX`]): placed as the Linux boot protocol
    /// says.
    Linux,
    /// An ELF64 AArch64 executable (flag [`VmFlags::ELF`]): its `PT_LOAD` segments at their
    /// physical addresses, entered at `e_entry`.
    Elf,
    /// Bytes copied to `load_offset`, entered at `entry_offset` (neither flag).
    Raw,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 3] = [ImageFormat::Linux, ImageFormat::Elf, ImageFormat::Raw];

    /// `linux`, `elf` or `raw`.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Linux => "linux",
            ImageFormat::Elf => "elf",
            ImageFormat::Raw => "raw",
        }
    }

    /// The format named `name` (`linux`, `elf`, `raw`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The bundle flag that says this format (0 for raw).
    pub fn flag(self) -> u32 {
        match self {
            ImageFormat::Linux => VmFlags::LINUX,
            ImageFormat::Elf => VmFlags::ELF,
            ImageFormat::Raw => 0,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One VM as the bundle describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmSpec<'a> {
    /// ASCII letters, digits, `-` and `_`; unique in the bundle.
    pub name: &'a str,
    /// Bytes of RAM, a multiple of [`PAGE_SIZE`].
    pub ram_size: u64,
    /// Where the RAM appears in the VM's IPA space.
    pub ipa_base: u64,
    /// The image, in the format its flags say ([`VmFlags::format`]): a raw image is copied
    /// into RAM at `ipa_base + load_offset`; a Linux `Image` and an ELF file are placed by the
    /// hypervisor (`hypervisor/src/vm/layout.rs`).
    pub image: &'a [u8],
    pub load_offset: u64,
    /// The first instruction of the boot vCPU, as an offset from `ipa_base`.
    pub entry_offset: u64,
    /// Passed to the guest as `/chosen/bootargs`.
    pub cmdline: &'a str,
    /// An initial RAM disk, described to the guest in `/chosen` (empty: none).
    pub initrd: &'a [u8],
    pub vcpus: u32,
    pub flags: VmFlags,
    /// Start this VM only once the VM with this index has stopped (an earlier entry).
    pub start_after: Option<usize>,
    /// Place the RAM at this physical address instead of anywhere (static partitioning, as
    /// Bao's and Jailhouse's configurations allow).
    pub fixed_pa: Option<u64>,
    /// The VirMO CPU percentage (0..=100, of what the management VM leaves:
    /// docs/scheduler.md). `None`: an equal part of what the VMs with a percentage leave.
    pub cpu_pct: Option<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    TooShort,
    BadMagic,
    UnsupportedVersion(u32),
    BadLength { declared: u64, actual: u64 },
    TooManyVms(u32),
    NoVms,
    BadName { vm: usize },
    DuplicateName { vm: usize },
    BadRamSize { vm: usize },
    BadIpaBase { vm: usize },
    PayloadOutOfBounds { vm: usize },
    ImageDoesNotFitRam { vm: usize },
    EntryOutsideImage { vm: usize },
    BadCmdline { vm: usize },
    BadVcpuCount { vm: usize, vcpus: u32 },
    UnknownFlags { vm: usize, flags: u32 },
    BadStartAfter { vm: usize },
    BadFixedPa { vm: usize },
    LinuxWithOffsets { vm: usize },
    ElfWithOffsets { vm: usize },
    LinuxAndElf { vm: usize },
    BadCpuPct { vm: usize, pct: u32 },
    CpuSumOverHundred { sum: u32 },
    TwoManagementVms { vm: usize },
    ManagementWithCpuPct { vm: usize },
    ReservedNotZero { vm: usize },
    UnknownBundleFlags(u32),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BundleError::*;
        match *self {
            TooShort => write!(f, "bundle shorter than its header"),
            BadMagic => write!(f, "not a boot bundle (bad magic)"),
            UnsupportedVersion(v) => write!(f, "unsupported bundle version {v}"),
            BadLength { declared, actual } => {
                write!(
                    f,
                    "bundle declares {declared} bytes but {actual} are present"
                )
            }
            TooManyVms(n) => write!(f, "{n} VMs in bundle, at most {MAX_VMS} supported"),
            NoVms => write!(f, "bundle holds no VM"),
            BadName { vm } => write!(f, "VM {vm}: name must be 1-31 characters [A-Za-z0-9_-]"),
            DuplicateName { vm } => write!(f, "VM {vm}: name used by an earlier VM"),
            BadRamSize { vm } => {
                write!(f, "VM {vm}: RAM size must be a non-zero multiple of 4 KiB")
            }
            BadIpaBase { vm } => {
                write!(
                    f,
                    "VM {vm}: RAM IPA range must be 4 KiB aligned and below 2^39"
                )
            }
            PayloadOutOfBounds { vm } => write!(f, "VM {vm}: image or cmdline outside the bundle"),
            ImageDoesNotFitRam { vm } => write!(f, "VM {vm}: image does not fit in the VM's RAM"),
            EntryOutsideImage { vm } => write!(f, "VM {vm}: entry point outside the loaded image"),
            BadCmdline { vm } => write!(f, "VM {vm}: cmdline is not UTF-8 or contains NUL"),
            BadVcpuCount { vm, vcpus } => {
                write!(f, "VM {vm}: {vcpus} vCPUs, must be 1 to {MAX_VCPUS}")
            }
            UnknownFlags { vm, flags } => write!(f, "VM {vm}: unknown flags {flags:#x}"),
            BadStartAfter { vm } => write!(f, "VM {vm}: start_after must name an earlier VM"),
            BadFixedPa { vm } => write!(f, "VM {vm}: fixed physical address not 2 MiB aligned"),
            LinuxWithOffsets { vm } => {
                write!(
                    f,
                    "VM {vm}: a Linux image is placed by the hypervisor: offsets must be 0"
                )
            }
            ElfWithOffsets { vm } => {
                write!(
                    f,
                    "VM {vm}: an ELF image is placed by its program headers: offsets must be 0"
                )
            }
            LinuxAndElf { vm } => {
                write!(
                    f,
                    "VM {vm}: flags LINUX and ELF together (one format per image)"
                )
            }
            BadCpuPct { vm, pct } => write!(f, "VM {vm}: CPU={pct}% is over 100%"),
            CpuSumOverHundred { sum } => {
                write!(f, "the VMs' CPU percentages add up to {sum}%, over 100%")
            }
            TwoManagementVms { vm } => {
                write!(f, "VM {vm}: a second management VM (at most one)")
            }
            ManagementWithCpuPct { vm } => write!(
                f,
                "VM {vm}: the management VM's CPU share is the board's, it takes no CPU="
            ),
            ReservedNotZero { vm } => write!(f, "VM {vm}: reserved entry bytes are not zero"),
            UnknownBundleFlags(flags) => write!(f, "unknown bundle flags {flags:#x}"),
        }
    }
}

/// Options of the whole bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BundleFlags(pub u32);

impl BundleFlags {
    /// Serve `HV_MGMT_FAULT_INJECT` (the harness's fault-injection tests; never on a device).
    pub const FAULT_INJECTION: u32 = 1 << 0;
    /// Start the management VM (the agent embedded in the hypervisor image) before the
    /// bundle's VMs.
    pub const MANAGEMENT_VM: u32 = 1 << 1;
    /// Give the management VM the PMU (the management benchmarks; never on a device).
    pub const MANAGEMENT_PMU: u32 = 1 << 2;
    const KNOWN: u32 = Self::FAULT_INJECTION | Self::MANAGEMENT_VM | Self::MANAGEMENT_PMU;

    pub fn fault_injection(self) -> bool {
        self.0 & Self::FAULT_INJECTION != 0
    }

    pub fn management_vm(self) -> bool {
        self.0 & Self::MANAGEMENT_VM != 0
    }

    pub fn management_pmu(self) -> bool {
        self.0 & Self::MANAGEMENT_PMU != 0
    }
}

/// Sets the bundle flags of an encoded bundle, checking the result as the hypervisor will.
pub fn set_flags(bundle: &mut [u8], flags: BundleFlags) -> Result<(), BundleError> {
    if bundle.len() < HEADER_SIZE {
        return Err(BundleError::TooShort);
    }
    let old = u32_at(bundle, 28);
    bundle[28..32].copy_from_slice(&flags.0.to_le_bytes());
    let checked = Bundle::parse(bundle).map(|_| ());
    if checked.is_err() {
        bundle[28..32].copy_from_slice(&old.to_le_bytes());
    }
    checked
}

/// A validated bundle.
#[derive(Debug)]
pub struct Bundle<'a> {
    vms: heapless::Vec<VmSpec<'a>, MAX_VMS>,
    sched_trace_us: u32,
    flags: BundleFlags,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < NAME_LEN
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn payload(data: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

impl<'a> Bundle<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, BundleError> {
        if data.len() < HEADER_SIZE {
            return Err(BundleError::TooShort);
        }
        if &data[0..8] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = u32_at(data, 8);
        if version != VERSION {
            return Err(BundleError::UnsupportedVersion(version));
        }
        let count = u32_at(data, 12);
        let declared = u64_at(data, 16);
        if declared != data.len() as u64 {
            return Err(BundleError::BadLength {
                declared,
                actual: data.len() as u64,
            });
        }
        if count as usize > MAX_VMS {
            return Err(BundleError::TooManyVms(count));
        }
        let flags = u32_at(data, 28);
        if flags & !BundleFlags::KNOWN != 0 {
            return Err(BundleError::UnknownBundleFlags(flags));
        }
        let flags = BundleFlags(flags);
        if count == 0 && !flags.management_vm() {
            return Err(BundleError::NoVms);
        }
        if data.len() < HEADER_SIZE + ENTRY_SIZE * count as usize {
            return Err(BundleError::TooShort);
        }
        let mut vms = heapless::Vec::new();
        for vm in 0..count as usize {
            let e = &data[HEADER_SIZE + vm * ENTRY_SIZE..][..ENTRY_SIZE];
            let spec = parse_entry(data, e, vm)?;
            if vms.iter().any(|o: &VmSpec| o.name == spec.name) {
                return Err(BundleError::DuplicateName { vm });
            }
            if spec.flags.management() && vms.iter().any(|o: &VmSpec| o.flags.management()) {
                return Err(BundleError::TwoManagementVms { vm });
            }
            // Cannot overflow: at most MAX_VMS entries are pushed.
            let _ = vms.push(spec);
        }
        let sum: u32 = vms.iter().filter_map(|v| v.cpu_pct).map(u32::from).sum();
        if sum > 100 {
            return Err(BundleError::CpuSumOverHundred { sum });
        }
        Ok(Bundle {
            vms,
            sched_trace_us: u32_at(data, 24),
            flags,
        })
    }

    pub fn vms(&self) -> &[VmSpec<'a>] {
        &self.vms
    }

    /// Every this many microseconds the hypervisor prints each VM's CPU time in a
    /// `#HV sched-window` record (0: never). For the harness and benchmarks.
    pub fn sched_trace_us(&self) -> u32 {
        self.sched_trace_us
    }

    pub fn flags(&self) -> BundleFlags {
        self.flags
    }
}

/// Entry layout: name[32] @0, ram_size @32, ipa_base @40, image_offset @48, image_len @56,
/// load_offset @64, entry_offset @72, cmdline_offset @80, cmdline_len u32 @88, vcpus u32 @92,
/// flags u32 @96, start_after u32 @100 (`u32::MAX` for none), fixed_pa @104 (0 for none),
/// initrd_offset @112, initrd_len @120, cpu_pct u32 @128 (`u32::MAX`: none), reserved (0) to
/// the end.
fn parse_entry<'a>(data: &'a [u8], e: &'a [u8], vm: usize) -> Result<VmSpec<'a>, BundleError> {
    let name_bytes = &e[0..NAME_LEN];
    let name_len = name_bytes.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
    if name_bytes[name_len..].iter().any(|&c| c != 0) {
        return Err(BundleError::BadName { vm });
    }
    let name =
        core::str::from_utf8(&name_bytes[..name_len]).map_err(|_| BundleError::BadName { vm })?;
    if !valid_name(name) {
        return Err(BundleError::BadName { vm });
    }
    let ram_size = u64_at(e, 32);
    if ram_size == 0 || !ram_size.is_multiple_of(PAGE_SIZE) {
        return Err(BundleError::BadRamSize { vm });
    }
    let ipa_base = u64_at(e, 40);
    if !ipa_base.is_multiple_of(PAGE_SIZE)
        || ipa_base
            .checked_add(ram_size)
            .is_none_or(|end| end > IPA_LIMIT)
    {
        return Err(BundleError::BadIpaBase { vm });
    }
    let image = payload(data, u64_at(e, 48), u64_at(e, 56))
        .ok_or(BundleError::PayloadOutOfBounds { vm })?;
    let load_offset = u64_at(e, 64);
    let entry_offset = u64_at(e, 72);
    let flags = u32_at(e, 96);
    let is_linux = flags & VmFlags::LINUX != 0;
    let is_elf = flags & VmFlags::ELF != 0;
    if is_linux && is_elf {
        return Err(BundleError::LinuxAndElf { vm });
    }
    if is_elf && (load_offset != 0 || entry_offset != 0) {
        return Err(BundleError::ElfWithOffsets { vm });
    }
    // An ELF file is not copied whole (its segments are, checked by the hypervisor's layout),
    // and may be larger than RAM (symbols, debug information).
    let image_end = load_offset.checked_add(image.len() as u64);
    if !is_elf && image_end.is_none_or(|end| end > ram_size) {
        return Err(BundleError::ImageDoesNotFitRam { vm });
    }
    if !is_linux
        && !is_elf
        && (entry_offset < load_offset || entry_offset >= load_offset + image.len() as u64)
    {
        return Err(BundleError::EntryOutsideImage { vm });
    }
    let cmdline = payload(data, u64_at(e, 80), u32_at(e, 88) as u64)
        .ok_or(BundleError::PayloadOutOfBounds { vm })?;
    let cmdline = core::str::from_utf8(cmdline).map_err(|_| BundleError::BadCmdline { vm })?;
    if cmdline.contains('\0') {
        return Err(BundleError::BadCmdline { vm });
    }
    let vcpus = u32_at(e, 92);
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(BundleError::BadVcpuCount { vm, vcpus });
    }
    if flags & !VmFlags::KNOWN != 0 {
        return Err(BundleError::UnknownFlags { vm, flags });
    }
    let start_after = match u32_at(e, 100) {
        NO_VM => None,
        i if (i as usize) < vm => Some(i as usize),
        _ => return Err(BundleError::BadStartAfter { vm }),
    };
    let fixed_pa = match u64_at(e, 104) {
        0 => None,
        pa if pa.is_multiple_of(2 << 20) => Some(pa),
        _ => return Err(BundleError::BadFixedPa { vm }),
    };
    let initrd = payload(data, u64_at(e, 112), u64_at(e, 120))
        .ok_or(BundleError::PayloadOutOfBounds { vm })?;
    if flags & VmFlags::LINUX != 0 && (load_offset != 0 || entry_offset != 0) {
        return Err(BundleError::LinuxWithOffsets { vm });
    }
    let cpu_pct = match u32_at(e, 128) {
        NO_PCT => None,
        p if p <= 100 => Some(p as u8),
        pct => return Err(BundleError::BadCpuPct { vm, pct }),
    };
    if cpu_pct.is_some() && flags & VmFlags::MANAGEMENT != 0 {
        return Err(BundleError::ManagementWithCpuPct { vm });
    }
    if e[132..].iter().any(|&b| b != 0) {
        return Err(BundleError::ReservedNotZero { vm });
    }
    Ok(VmSpec {
        name,
        ram_size,
        ipa_base,
        image,
        load_offset,
        entry_offset,
        cmdline,
        initrd,
        vcpus,
        flags: VmFlags(flags),
        start_after,
        fixed_pa,
        cpu_pct,
    })
}

#[cfg(any(test, feature = "std"))]
mod builder;
#[cfg(any(test, feature = "std"))]
pub use builder::{BundleBuilder, OwnedVmSpec};

#[cfg(test)]
mod tests;
