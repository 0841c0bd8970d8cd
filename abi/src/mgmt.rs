//! The management hypercalls: how the management VM (and only it) creates, deletes, powers,
//! suspends and resumes VMs, changes their resources, and manages the image store.
//!
//! Owns: the function identifiers of the management calls, the records that travel in a page of
//! the caller's RAM, and their byte encoding. Every record is encoded explicitly, little-endian at
//! fixed offsets (no `repr(C)` transmutes), so that decoding untrusted bytes is total: it either
//! gives a valid record or an error, never undefined behaviour.
//!
//! Conventions (see `docs/hypercalls.md`, "Management calls"):
//! - HVC64 fast calls `0xC600_01xx`; a caller that is not the management VM gets
//!   [`Status::Denied`](crate::Status::Denied) and nothing happens.
//! - A *page* argument is the IPA of a 4 KiB-aligned page of the caller's RAM ([`PAGE_SIZE`]).
//!   The hypervisor validates it (aligned, wholly inside the caller's RAM) before it reads or
//!   writes, and validates every field of the record it reads.
//! - VMs are named by a *handle*: a non-zero `u32` assigned by the hypervisor at create and
//!   never reused while the device runs (it survives a restart for suspended and powered-off VMs).
//! - Calls that change state are atomic: on any error the VM and the device are exactly as they
//!   were before the call.

use crate::Status;

/// The size of the page that carries records.
pub const PAGE_SIZE: usize = 4096;

/// `HV_MGMT_DEVICE_INFO(page) -> (status)`: writes a [`DeviceInfo`] to `page`.
pub const HV_MGMT_DEVICE_INFO: u32 = 0xC600_0100;
/// `HV_MGMT_VM_CREATE(page) -> (status, handle)`: `page` holds a [`VmCreate`]. The VM is created
/// powered off, or running if [`VmCreate::running`] is set.
pub const HV_MGMT_VM_CREATE: u32 = 0xC600_0101;
/// `HV_MGMT_VM_DELETE(handle) -> (status)`: from any state; the VM's RAM and its disk areas are
/// zeroed before they are reused.
pub const HV_MGMT_VM_DELETE: u32 = 0xC600_0102;
/// `HV_MGMT_VM_POWER_ON(handle) -> (status)`: PoweredOff → Running (boots the image again).
pub const HV_MGMT_VM_POWER_ON: u32 = 0xC600_0103;
/// `HV_MGMT_VM_POWER_OFF(handle) -> (status)`: Running → PoweredOff (RAM released).
pub const HV_MGMT_VM_POWER_OFF: u32 = 0xC600_0104;
/// `HV_MGMT_VM_SUSPEND(handle) -> (status)`: Running → Suspended (RAM and vCPU state written to
/// the VM's suspend area on disk, RAM released).
pub const HV_MGMT_VM_SUSPEND: u32 = 0xC600_0105;
/// `HV_MGMT_VM_RESUME(handle) -> (status)`: Suspended → Running (RAM reallocated and restored).
pub const HV_MGMT_VM_RESUME: u32 = 0xC600_0106;
/// `HV_MGMT_VM_QUERY(handle, page) -> (status)`: writes a [`VmInfo`] to `page`.
pub const HV_MGMT_VM_QUERY: u32 = 0xC600_0107;
/// `HV_MGMT_VM_LIST(page) -> (status, count)`: writes the handles of every VM (management VM
/// excluded) to `page` as little-endian `u32`s.
pub const HV_MGMT_VM_LIST: u32 = 0xC600_0108;
/// `HV_MGMT_APPLY(page) -> (status, index)`: `page` holds an [`ApplyBatch`]; all changes are
/// applied or none. On refusal `index` is the entry at fault (or `u64::MAX` for a device-wide
/// inconsistency such as a CPU sum over 100).
pub const HV_MGMT_APPLY: u32 = 0xC600_0109;
/// `HV_MGMT_IMAGE_LIST(page) -> (status, count)`: writes `count` [`ImageInfo`] records.
pub const HV_MGMT_IMAGE_LIST: u32 = 0xC600_010A;
/// `HV_MGMT_IMAGE_REMOVE(image) -> (status)`: erases the image's data from the store.
pub const HV_MGMT_IMAGE_REMOVE: u32 = 0xC600_010B;
/// `HV_MGMT_STORE_READ(offset, page, len) -> (status)`: reads `len` (≤ [`PAGE_SIZE`]) bytes of
/// the management VM's persistent area at `offset` into `page`.
pub const HV_MGMT_STORE_READ: u32 = 0xC600_010C;
/// `HV_MGMT_STORE_WRITE(offset, page, len) -> (status)`: writes `len` bytes from `page` to the
/// persistent area at `offset` (durable when the call returns).
pub const HV_MGMT_STORE_WRITE: u32 = 0xC600_010D;
/// `HV_MGMT_VM_STATS(handle) -> (status, consumed_ns, throttled_ns, throttled_periods)`: the
/// CPU accounting of a VM since it was created (handle 0: the management VM itself).
pub const HV_MGMT_VM_STATS: u32 = 0xC600_010E;
/// `HV_MGMT_FAULT_INJECT(point, countdown) -> (status)`: makes the `countdown`-th next pass
/// through fault point `point` ([`FaultPoint`]) fail. Only in hypervisors built with the
/// `fault-injection` feature (the test build); NOT_SUPPORTED otherwise.
pub const HV_MGMT_FAULT_INJECT: u32 = 0xC600_010F;

/// The first and last management function identifiers.
pub const MGMT_FIRST: u32 = HV_MGMT_DEVICE_INFO;
pub const MGMT_LAST: u32 = HV_MGMT_FAULT_INJECT;

/// Whether `function` is a management call (and so refused to any VM but the management VM).
pub const fn is_mgmt_call(function: u32) -> bool {
    function >= MGMT_FIRST && function <= MGMT_LAST
}

/// The state of a VM, with the values of the VirMO `State` node (spec 8): NotCreated (0) and
/// Deleted (4) only exist in the management tree, never in the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum VmState {
    PoweredOff = 1,
    Running = 2,
    Suspended = 3,
}

impl VmState {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(VmState::PoweredOff),
            2 => Some(VmState::Running),
            3 => Some(VmState::Suspended),
            _ => None,
        }
    }
}

/// Points where the hypervisor can be made to fail on purpose (fault injection), to test that
/// every transition rolls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FaultPoint {
    /// Allocating a VM's RAM (create, power on, resume).
    RamAlloc = 1,
    /// Any disk read or write.
    DiskIo = 2,
    /// Reading an image from the store.
    ImageRead = 3,
}

impl FaultPoint {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(FaultPoint::RamAlloc),
            2 => Some(FaultPoint::DiskIo),
            3 => Some(FaultPoint::ImageRead),
            _ => None,
        }
    }
}

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer is shorter than the record.
    Short,
    /// A field has a value outside its range (named).
    Field(&'static str),
}

impl From<DecodeError> for Status {
    fn from(_: DecodeError) -> Status {
        Status::InvalidParameter
    }
}

/// The longest name (VM or image), in bytes, UTF-8, zero padded.
pub const NAME_LEN: usize = 32;

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A fixed-size name: UTF-8 bytes, zero padded, no interior zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_LEN],
    len: u8,
}

impl Name {
    pub const EMPTY: Name = Name {
        bytes: [0; NAME_LEN],
        len: 0,
    };

    /// `None` if `s` is longer than [`NAME_LEN`] or contains a NUL or control character.
    pub fn new(s: &str) -> Option<Name> {
        if s.len() > NAME_LEN || s.bytes().any(|c| c < 0x20 || c == 0x7f) {
            return None;
        }
        let mut bytes = [0u8; NAME_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Name {
            bytes,
            len: s.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only built from a `&str` or validated in `decode`.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    fn encode(&self, b: &mut [u8]) {
        b[..NAME_LEN].copy_from_slice(&self.bytes);
    }

    fn decode(b: &[u8]) -> Result<Name, DecodeError> {
        let raw = &b[..NAME_LEN];
        let len = raw.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        if raw[len..].iter().any(|&c| c != 0) {
            return Err(DecodeError::Field("name"));
        }
        let s = core::str::from_utf8(&raw[..len]).map_err(|_| DecodeError::Field("name"))?;
        Name::new(s).ok_or(DecodeError::Field("name"))
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The resources of a VM: the VirMO `CurrentConfig`/`NewConfig` keys, plus the vCPU count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// RAM in bytes (a multiple of 2 MiB, at least 2 MiB).
    pub ram: u64,
    /// Storage partition in bytes (a multiple of 512; 0 for none).
    pub storage: u64,
    /// CPU percentage, 0..=100, of what the management VM leaves (docs/scheduler.md).
    pub cpu_pct: u32,
    /// Network bandwidth percentage, 0..=100.
    pub net_pct: u32,
    /// Virtual CPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
}

/// The most vCPUs a VM may have.
pub const MAX_VCPUS: u32 = 8;
/// RAM granule of a VM.
pub const RAM_GRANULE: u64 = 2 << 20;

impl Resources {
    pub const SIZE: usize = 32;

    /// Checks the ranges that do not depend on the device.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.ram == 0 || !self.ram.is_multiple_of(RAM_GRANULE) {
            return Err(DecodeError::Field("ram"));
        }
        if !self.storage.is_multiple_of(512) {
            return Err(DecodeError::Field("storage"));
        }
        if self.cpu_pct > 100 {
            return Err(DecodeError::Field("cpu"));
        }
        if self.net_pct > 100 {
            return Err(DecodeError::Field("network"));
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(DecodeError::Field("vcpus"));
        }
        Ok(())
    }

    pub fn encode(&self, b: &mut [u8]) {
        put_u64(b, 0, self.ram);
        put_u64(b, 8, self.storage);
        put_u32(b, 16, self.cpu_pct);
        put_u32(b, 20, self.net_pct);
        put_u32(b, 24, self.vcpus);
        put_u32(b, 28, 0);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < Self::SIZE {
            return Err(DecodeError::Short);
        }
        if get_u32(b, 28) != 0 {
            return Err(DecodeError::Field("reserved"));
        }
        let r = Resources {
            ram: get_u64(b, 0),
            storage: get_u64(b, 8),
            cpu_pct: get_u32(b, 16),
            net_pct: get_u32(b, 20),
            vcpus: get_u32(b, 24),
        };
        r.validate()?;
        Ok(r)
    }
}

/// The argument of [`HV_MGMT_VM_CREATE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmCreate {
    /// The image to boot, an [`ImageInfo::id`].
    pub image: u32,
    /// Start running (true) or stay powered off.
    pub running: bool,
    pub resources: Resources,
    /// A name for console lines and logs.
    pub name: Name,
}

impl VmCreate {
    pub const SIZE: usize = 8 + Resources::SIZE + NAME_LEN;
    const RUNNING: u32 = 1;

    pub fn encode(&self, b: &mut [u8]) {
        put_u32(b, 0, self.image);
        put_u32(b, 4, if self.running { Self::RUNNING } else { 0 });
        self.resources.encode(&mut b[8..]);
        self.name.encode(&mut b[8 + Resources::SIZE..]);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < Self::SIZE {
            return Err(DecodeError::Short);
        }
        let flags = get_u32(b, 4);
        if flags & !Self::RUNNING != 0 {
            return Err(DecodeError::Field("flags"));
        }
        Ok(VmCreate {
            image: get_u32(b, 0),
            running: flags & Self::RUNNING != 0,
            resources: Resources::decode(&b[8..])?,
            name: Name::decode(&b[8 + Resources::SIZE..])?,
        })
    }
}

/// CPU accounting of a VM (issue 4), in nanoseconds of device time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// CPU time consumed.
    pub consumed_ns: u64,
    /// Time runnable but held back because the VM had used its quota.
    pub throttled_ns: u64,
    /// Periods in which the VM was throttled at least once.
    pub throttled_periods: u64,
}

/// The answer of [`HV_MGMT_VM_QUERY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmInfo {
    pub handle: u32,
    pub state: VmState,
    pub image: u32,
    /// The real allocation (RAM is what the VM has when it is Running, and what it will get
    /// otherwise).
    pub resources: Resources,
    pub cpu: CpuStats,
    pub name: Name,
}

impl VmInfo {
    pub const SIZE: usize = 12 + Resources::SIZE + 24 + NAME_LEN;

    pub fn encode(&self, b: &mut [u8]) {
        put_u32(b, 0, self.handle);
        put_u32(b, 4, self.state as u32);
        put_u32(b, 8, self.image);
        self.resources.encode(&mut b[12..]);
        let c = 12 + Resources::SIZE;
        put_u64(b, c, self.cpu.consumed_ns);
        put_u64(b, c + 8, self.cpu.throttled_ns);
        put_u64(b, c + 16, self.cpu.throttled_periods);
        self.name.encode(&mut b[c + 24..]);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < Self::SIZE {
            return Err(DecodeError::Short);
        }
        let c = 12 + Resources::SIZE;
        Ok(VmInfo {
            handle: get_u32(b, 0),
            state: VmState::from_u32(get_u32(b, 4)).ok_or(DecodeError::Field("state"))?,
            image: get_u32(b, 8),
            resources: Resources::decode(&b[12..])?,
            cpu: CpuStats {
                consumed_ns: get_u64(b, c),
                throttled_ns: get_u64(b, c + 8),
                throttled_periods: get_u64(b, c + 16),
            },
            name: Name::decode(&b[c + 24..])?,
        })
    }
}

/// The answer of [`HV_MGMT_DEVICE_INFO`]: totals and what is free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub pcpus: u32,
    /// The management VM's own CPU share (board configuration), percent of the device.
    pub mgmt_cpu_pct: u32,
    /// The sum of the VirMO CPU percentages in force (≤ 100).
    pub cpu_allocated_pct: u32,
    /// The scheduling period in microseconds.
    pub period_us: u32,
    /// RAM of the device in bytes, and what is free for VMs.
    pub ram_total: u64,
    pub ram_free: u64,
    /// Storage for VMs (the disk's VM pool) in bytes, and what is free.
    pub storage_total: u64,
    pub storage_free: u64,
    /// Network bandwidth allocated, percent (sum over VMs).
    pub net_allocated_pct: u32,
    /// Number of VMs (management VM excluded) and images.
    pub vms: u32,
    pub images: u32,
    /// Whether a disk is present (suspend and persistence need one).
    pub disk: u32,
}

impl DeviceInfo {
    pub const SIZE: usize = 16 + 32 + 16;

    pub fn encode(&self, b: &mut [u8]) {
        put_u32(b, 0, self.pcpus);
        put_u32(b, 4, self.mgmt_cpu_pct);
        put_u32(b, 8, self.cpu_allocated_pct);
        put_u32(b, 12, self.period_us);
        put_u64(b, 16, self.ram_total);
        put_u64(b, 24, self.ram_free);
        put_u64(b, 32, self.storage_total);
        put_u64(b, 40, self.storage_free);
        put_u32(b, 48, self.net_allocated_pct);
        put_u32(b, 52, self.vms);
        put_u32(b, 56, self.images);
        put_u32(b, 60, self.disk);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < Self::SIZE {
            return Err(DecodeError::Short);
        }
        Ok(DeviceInfo {
            pcpus: get_u32(b, 0),
            mgmt_cpu_pct: get_u32(b, 4),
            cpu_allocated_pct: get_u32(b, 8),
            period_us: get_u32(b, 12),
            ram_total: get_u64(b, 16),
            ram_free: get_u64(b, 24),
            storage_total: get_u64(b, 32),
            storage_free: get_u64(b, 40),
            net_allocated_pct: get_u32(b, 48),
            vms: get_u32(b, 52),
            images: get_u32(b, 56),
            disk: get_u32(b, 60),
        })
    }
}

/// The kind of an image, how the hypervisor boots it (docs/guest-images.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ImageFormat {
    Linux = 1,
    Elf = 2,
    Raw = 3,
}

impl ImageFormat {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(ImageFormat::Linux),
            2 => Some(ImageFormat::Elf),
            3 => Some(ImageFormat::Raw),
            _ => None,
        }
    }

    /// The MIME media type reported in `VMImgMO/<x>/MediaType`.
    pub const fn media_type(self) -> &'static str {
        match self {
            ImageFormat::Linux => "application/vnd.arm64-linux-image",
            ImageFormat::Elf => "application/x-elf",
            ImageFormat::Raw => "application/octet-stream",
        }
    }
}

/// One entry of [`HV_MGMT_IMAGE_LIST`]: an image of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Non-zero, unique in the store.
    pub id: u32,
    pub format: ImageFormat,
    /// Bytes of the kernel (or program) and of its initrd (0 for none).
    pub size: u64,
    pub initrd_size: u64,
    /// The RAM the image wants by default, in bytes.
    pub default_ram: u64,
    pub name: Name,
}

impl ImageInfo {
    pub const SIZE: usize = 8 + 24 + NAME_LEN;

    pub fn encode(&self, b: &mut [u8]) {
        put_u32(b, 0, self.id);
        put_u32(b, 4, self.format as u32);
        put_u64(b, 8, self.size);
        put_u64(b, 16, self.initrd_size);
        put_u64(b, 24, self.default_ram);
        self.name.encode(&mut b[32..]);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < Self::SIZE {
            return Err(DecodeError::Short);
        }
        Ok(ImageInfo {
            id: get_u32(b, 0),
            format: ImageFormat::from_u32(get_u32(b, 4)).ok_or(DecodeError::Field("format"))?,
            size: get_u64(b, 8),
            initrd_size: get_u64(b, 16),
            default_ram: get_u64(b, 24),
            name: Name::decode(&b[32..])?,
        })
    }
}

/// One change of an [`ApplyBatch`]: the new resources of VM `handle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub handle: u32,
    pub resources: Resources,
}

impl Change {
    pub const SIZE: usize = 8 + Resources::SIZE;
}

/// The argument of [`HV_MGMT_APPLY`]: `count` changes, at most [`ApplyBatch::MAX`].
pub struct ApplyBatch;

impl ApplyBatch {
    pub const MAX: usize = (PAGE_SIZE - 8) / Change::SIZE;

    /// Encodes `changes` into `b` (a page).
    pub fn encode(changes: &[Change], b: &mut [u8]) -> Result<(), DecodeError> {
        if changes.len() > Self::MAX || b.len() < 8 + changes.len() * Change::SIZE {
            return Err(DecodeError::Short);
        }
        put_u32(b, 0, changes.len() as u32);
        put_u32(b, 4, 0);
        for (i, c) in changes.iter().enumerate() {
            let at = 8 + i * Change::SIZE;
            put_u32(b, at, c.handle);
            put_u32(b, at + 4, 0);
            c.resources.encode(&mut b[at + 8..]);
        }
        Ok(())
    }

    /// The number of changes in `b`, checked against the page size.
    pub fn count(b: &[u8]) -> Result<usize, DecodeError> {
        if b.len() < 8 {
            return Err(DecodeError::Short);
        }
        let n = get_u32(b, 0) as usize;
        if n > Self::MAX || get_u32(b, 4) != 0 || b.len() < 8 + n * Change::SIZE {
            return Err(DecodeError::Field("count"));
        }
        Ok(n)
    }

    /// Change `i` of `b` (`i < count(b)`).
    pub fn get(b: &[u8], i: usize) -> Result<Change, DecodeError> {
        let at = 8 + i * Change::SIZE;
        if b.len() < at + Change::SIZE {
            return Err(DecodeError::Short);
        }
        if get_u32(b, at + 4) != 0 {
            return Err(DecodeError::Field("reserved"));
        }
        Ok(Change {
            handle: get_u32(b, at),
            resources: Resources::decode(&b[at + 8..])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res() -> Resources {
        Resources {
            ram: 64 << 20,
            storage: 1 << 20,
            cpu_pct: 30,
            net_pct: 10,
            vcpus: 2,
        }
    }

    #[test]
    fn create_round_trips_and_rejects_bad_fields() {
        let c = VmCreate {
            image: 3,
            running: true,
            resources: res(),
            name: Name::new("web").unwrap(),
        };
        let mut page = [0u8; PAGE_SIZE];
        c.encode(&mut page);
        assert_eq!(VmCreate::decode(&page), Ok(c));

        let mut bad = page;
        bad[4] = 3; // unknown flag
        assert_eq!(VmCreate::decode(&bad), Err(DecodeError::Field("flags")));
        let mut bad = page;
        put_u32(&mut bad, 8 + 16, 101); // cpu over 100
        assert_eq!(VmCreate::decode(&bad), Err(DecodeError::Field("cpu")));
        let mut bad = page;
        put_u64(&mut bad, 8, (2 << 20) + 4096); // RAM not a multiple of 2 MiB
        assert_eq!(VmCreate::decode(&bad), Err(DecodeError::Field("ram")));
        let mut bad = page;
        put_u32(&mut bad, 8 + 24, 0); // no vCPU
        assert_eq!(VmCreate::decode(&bad), Err(DecodeError::Field("vcpus")));
        let mut bad = page;
        bad[8 + Resources::SIZE + 10] = b'x'; // byte after the terminating NUL
        assert_eq!(VmCreate::decode(&bad), Err(DecodeError::Field("name")));
        assert_eq!(VmCreate::decode(&page[..20]), Err(DecodeError::Short));
    }

    #[test]
    fn info_records_round_trip() {
        let v = VmInfo {
            handle: 7,
            state: VmState::Suspended,
            image: 1,
            resources: res(),
            cpu: CpuStats {
                consumed_ns: 1,
                throttled_ns: 2,
                throttled_periods: 3,
            },
            name: Name::new("a").unwrap(),
        };
        let mut b = [0u8; VmInfo::SIZE];
        v.encode(&mut b);
        assert_eq!(VmInfo::decode(&b), Ok(v));
        put_u32(&mut b, 4, 4);
        assert_eq!(VmInfo::decode(&b), Err(DecodeError::Field("state")));

        let d = DeviceInfo {
            pcpus: 2,
            mgmt_cpu_pct: 10,
            ram_total: 1 << 30,
            ram_free: 1 << 29,
            disk: 1,
            ..Default::default()
        };
        let mut b = [0u8; DeviceInfo::SIZE];
        d.encode(&mut b);
        assert_eq!(DeviceInfo::decode(&b), Ok(d));

        let i = ImageInfo {
            id: 2,
            format: ImageFormat::Linux,
            size: 10,
            initrd_size: 20,
            default_ram: 128 << 20,
            name: Name::new("debian").unwrap(),
        };
        let mut b = [0u8; ImageInfo::SIZE];
        i.encode(&mut b);
        assert_eq!(ImageInfo::decode(&b), Ok(i));
    }

    #[test]
    fn apply_batch_round_trips_and_bounds_count() {
        let changes = [
            Change {
                handle: 1,
                resources: res(),
            },
            Change {
                handle: 2,
                resources: Resources {
                    cpu_pct: 70,
                    ..res()
                },
            },
        ];
        let mut page = [0u8; PAGE_SIZE];
        ApplyBatch::encode(&changes, &mut page).unwrap();
        assert_eq!(ApplyBatch::count(&page), Ok(2));
        assert_eq!(ApplyBatch::get(&page, 1), Ok(changes[1]));
        put_u32(&mut page, 0, (ApplyBatch::MAX + 1) as u32);
        assert_eq!(ApplyBatch::count(&page), Err(DecodeError::Field("count")));
    }

    #[test]
    fn names_refuse_control_characters_and_overlong_strings() {
        assert!(Name::new("ok-name").is_some());
        assert!(Name::new("bad\nname").is_none());
        assert!(Name::new(&"x".repeat(NAME_LEN + 1)).is_none());
        assert_eq!(
            Name::new(&"x".repeat(NAME_LEN)).unwrap().as_str().len(),
            NAME_LEN
        );
    }

    #[test]
    fn management_range_is_contiguous() {
        assert!(is_mgmt_call(HV_MGMT_VM_CREATE));
        assert!(is_mgmt_call(HV_MGMT_FAULT_INJECT));
        assert!(!is_mgmt_call(crate::ids::HV_YIELD));
        assert!(!is_mgmt_call(MGMT_LAST + 1));
    }
}
