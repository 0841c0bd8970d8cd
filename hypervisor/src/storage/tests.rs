//! Host tests of the store on an in-memory disk: mounting and formatting, every operation, the
//! rules at mount, rollback on an I/O failure at every step, and crashes after every write.

use std::io::Cursor;

use diskfmt::{
    DiskBuilder, Extent, ImageFormat, ImageSpec, Name, Resources, SuperblockError, VmRecord,
    VmState, SECTOR_BYTES, SECTOR_SIZE,
};

use super::device::{BlockDevice, MemDisk};
use super::store::{DropReason, ImagePart, Store, Table, VmArea, VmEntry};
use super::{DiskError, StoreError};

const MIB: u64 = 1 << 20;
const DISK: u64 = 32 * MIB;

fn kernel() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7) as u8).collect()
}

/// A 64 MiB disk built by xtask's builder with two images.
fn built_disk() -> MemDisk {
    let mut linux = ImageSpec::new("debian", ImageFormat::Linux, kernel());
    linux.initrd = vec![0x5A; 70_000];
    linux.cmdline = "console=ttyAMA0".into();
    let mut raw = ImageSpec::new("counter", ImageFormat::Raw, vec![0xC3; 4000]);
    raw.default_ram = 16 * MIB;
    raw.ipa_base = 0x8000_0000;
    let mut c = Cursor::new(vec![0u8; DISK as usize]);
    DiskBuilder::new(DISK)
        .image(linux)
        .image(raw)
        .write_to(&mut c)
        .unwrap();
    let mut d = MemDisk::new(0);
    d.bytes = c.into_inner();
    d
}

fn open(d: MemDisk) -> Store<MemDisk> {
    match Store::open(d) {
        Ok((s, _)) => s,
        Err((_, e)) => panic!("open: {e}"),
    }
}

/// Unmounts and mounts again: what a restart sees.
fn reopen(s: Store<MemDisk>) -> Store<MemDisk> {
    open(into_disk(s))
}

fn into_disk(mut s: Store<MemDisk>) -> MemDisk {
    let d = s.device_mut();
    let mut out = MemDisk::new(0);
    out.bytes = core::mem::take(&mut d.bytes);
    out
}

fn res(ram_mib: u64, storage_mib: u64) -> Resources {
    Resources {
        ram: ram_mib * MIB,
        storage: storage_mib * MIB,
        cpu_pct: 10,
        net_pct: 0,
        vcpus: 1,
    }
}

fn entry(handle: u32, resources: Resources) -> VmEntry {
    VmEntry {
        handle,
        state: VmState::PoweredOff,
        image: 1,
        resources,
        name: Name::new(&format!("vm{handle}")).unwrap(),
    }
}

fn bytes_at(d: &MemDisk, e: Extent) -> &[u8] {
    &d.bytes[(e.start * SECTOR_BYTES) as usize..(e.end() * SECTOR_BYTES) as usize]
}

/// No two extents of the store overlap, all are in the pool, and the free count adds up.
fn check_invariants(s: &Store<MemDisk>) {
    let pool = s.superblock().pool;
    let mut all: Vec<Extent> = s.images().iter().flat_map(|r| r.extents()).collect();
    all.extend(s.vm_records().iter().flat_map(|r| r.extents()));
    all.retain(|e| !e.is_empty());
    for (i, a) in all.iter().enumerate() {
        assert!(a.within(&pool), "{a:?} outside the pool");
        for b in &all[i + 1..] {
            assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
        }
    }
    let used: u64 = all.iter().map(|e| e.sectors).sum();
    assert_eq!(s.free_storage(), (pool.sectors - used) * SECTOR_BYTES);
}

// ---- mounting -----------------------------------------------------------------------------------

#[test]
fn a_blank_disk_is_formatted_as_an_empty_store() {
    let mut d = MemDisk::new(DISK);
    d.bytes[3 * MIB as usize] = 0xEE; // garbage in the management store is zeroed
    let (s, report) = Store::open(d).map_err(|(_, e)| e).unwrap();
    assert!(report.formatted && report.dropped.is_empty());
    assert!(s.images().is_empty() && s.vm_records().is_empty());
    assert_eq!(s.total_storage(), DISK - 5 * MIB);
    assert_eq!(s.free_storage(), s.total_storage());
    let mut s = s;
    let mut b = [1u8; 16];
    s.mgmt_store_read(2 * MIB, &mut b).unwrap();
    assert_eq!(b, [0; 16]);
    let (_, report) = Store::open(into_disk(s)).map_err(|(_, e)| e).unwrap();
    assert!(!report.formatted, "a second mount finds the superblock");
}

#[test]
fn unusable_superblocks_leave_the_disk_untouched() {
    let mut d = built_disk();
    d.bytes[20] ^= 1;
    let before = d.bytes.clone();
    let Err((d, e)) = Store::open(d) else {
        panic!("mounted a corrupt superblock")
    };
    assert!(matches!(
        e,
        StoreError::Superblock(SuperblockError::Checksum { .. })
    ));
    assert!(d.bytes == before, "nothing written");

    // A disk image cut short: the superblock says more than the device has.
    let mut d = built_disk();
    d.bytes.truncate((DISK / 2) as usize);
    let Err((_, e)) = Store::open(d) else {
        panic!()
    };
    assert_eq!(
        e,
        StoreError::Superblock(SuperblockError::LargerThanDevice {
            declared: DISK / 512,
            device: DISK / 1024
        })
    );
    // Too small to format.
    let Err((_, e)) = Store::open(MemDisk::new(2 * MIB)) else {
        panic!()
    };
    assert!(matches!(
        e,
        StoreError::Superblock(SuperblockError::TooSmall { .. })
    ));
    // A read error at mount is reported, not a format.
    let d = built_disk();
    d.fault.arm(1);
    let Err((_, e)) = Store::open(d) else {
        panic!()
    };
    assert_eq!(e, StoreError::Disk(DiskError::Injected));
}

#[test]
fn images_from_the_builder_are_found_and_read() {
    let mut s = open(built_disk());
    let images = s.images();
    assert_eq!(images.len(), 2);
    let debian = s.image(1).unwrap();
    assert_eq!(
        (debian.name.as_str(), debian.kernel_size),
        ("debian", 300_000)
    );
    assert_eq!(debian.cmdline.as_str(), "console=ttyAMA0");
    assert_eq!(s.image(2).unwrap().format, ImageFormat::Raw);
    assert_eq!(s.image(3), Err(StoreError::NoSuchImage(3)));

    // Whole, and in odd pieces across sector boundaries.
    let mut k = vec![0u8; 300_000];
    s.read_image(1, ImagePart::Kernel, 0, &mut k).unwrap();
    assert!(k == kernel());
    let mut piece = [0u8; 1000];
    s.read_image(1, ImagePart::Kernel, 511, &mut piece).unwrap();
    assert_eq!(piece[..], kernel()[511..1511]);
    let mut tiny = [0u8; 3];
    s.read_image(1, ImagePart::Kernel, 299_997, &mut tiny)
        .unwrap();
    assert_eq!(tiny[..], kernel()[299_997..]);
    let mut initrd = vec![0u8; 70_000];
    s.read_image(1, ImagePart::Initrd, 0, &mut initrd).unwrap();
    assert!(initrd.iter().all(|&b| b == 0x5A));
    // Past the image's size (though inside its last sector): refused.
    assert_eq!(
        s.read_image(1, ImagePart::Kernel, 299_998, &mut tiny),
        Err(StoreError::OutOfBounds {
            offset: 299_998,
            len: 3,
            size: 300_000
        })
    );
    assert!(s
        .read_image(2, ImagePart::Initrd, 0, &mut [0u8; 1])
        .is_err());
    assert!(s
        .read_image(1, ImagePart::Kernel, u64::MAX, &mut [0u8; 2])
        .is_err());
    check_invariants(&s);
}

#[test]
fn removing_an_image_zeroes_its_data_and_frees_its_slot() {
    let mut s = open(built_disk());
    let debian = s.image(1).unwrap();
    let free = s.free_storage();
    s.remove_image(1).unwrap();
    assert_eq!(s.remove_image(1), Err(StoreError::NoSuchImage(1)));
    assert_eq!(
        s.free_storage(),
        free + (debian.kernel.sectors + debian.initrd.sectors) * SECTOR_BYTES
    );
    let s = reopen(s);
    assert_eq!(s.images().len(), 1);
    let d = into_disk(s);
    assert!(bytes_at(&d, debian.kernel).iter().all(|&b| b == 0));
    assert!(bytes_at(&d, debian.initrd).iter().all(|&b| b == 0));
    assert!(
        bytes_at(&d, Extent::new(8, 1)).iter().all(|&b| b == 0),
        "slot zeroed"
    );
}

// ---- VM records -------------------------------------------------------------------------------

#[test]
fn vm_records_get_disjoint_areas_and_survive_a_restart() {
    let mut d = built_disk();
    // Garbage in the free pool: a new storage partition must still read as zeros.
    let pool_from = (6 * MIB) as usize;
    d.bytes[pool_from..].fill(0xEE);
    let mut s = open(d);
    let a = s.put_vm_record(&entry(1, res(8, 4))).unwrap();
    let b = s.put_vm_record(&entry(2, res(4, 0))).unwrap();
    assert_eq!(a.suspend.sectors, 8 * MIB / 512 + 128);
    assert_eq!(a.storage.sectors, 4 * MIB / 512);
    assert_eq!(b.storage, Extent::EMPTY);
    assert!(b.sequence > a.sequence);
    check_invariants(&s);
    let mut part = vec![1u8; (4 * MIB) as usize];
    s.vm_area_read(1, VmArea::Storage, 0, &mut part).unwrap();
    assert!(part.iter().all(|&x| x == 0), "new storage reads as zeros");

    // Suspend image and storage data written through the areas, byte-granular.
    s.vm_area_write(1, VmArea::Suspend, 0, b"vcpu state")
        .unwrap();
    s.vm_area_write(1, VmArea::Storage, 1000, b"hello").unwrap();
    s.put_vm_record(&VmEntry {
        state: VmState::Suspended,
        ..entry(1, res(8, 4))
    })
    .unwrap();
    let mut s = reopen(s);
    assert_eq!(s.vm_records().len(), 2);
    let a2 = s.vm_record(1).unwrap();
    assert_eq!(
        (a2.state, a2.suspend, a2.storage),
        (VmState::Suspended, a.suspend, a.storage)
    );
    let mut b = [0u8; 10];
    s.vm_area_read(1, VmArea::Suspend, 0, &mut b).unwrap();
    assert_eq!(&b, b"vcpu state");
    let mut b = [0u8; 5];
    s.vm_area_read(1, VmArea::Storage, 1000, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    assert!(matches!(
        s.vm_area_write(1, VmArea::Storage, 4 * MIB - 2, b"abc"),
        Err(StoreError::OutOfBounds { .. })
    ));
    assert!(s
        .vm_area_read(2, VmArea::Storage, 0, &mut [0u8; 1])
        .is_err());
    assert_eq!(
        s.vm_area_read(9, VmArea::Suspend, 0, &mut [0u8; 1]),
        Err(StoreError::NoSuchVm(9))
    );
    // A suspended VM keeps its RAM size.
    assert_eq!(
        s.put_vm_record(&VmEntry {
            state: VmState::Suspended,
            ..entry(1, res(16, 4))
        }),
        Err(StoreError::SuspendedResize)
    );
    check_invariants(&s);
}

#[test]
fn resizing_moves_or_grows_areas_keeping_storage_data() {
    let mut s = open(built_disk());
    s.put_vm_record(&entry(1, res(4, 1))).unwrap();
    s.vm_area_write(1, VmArea::Storage, 0, &[0xAB; 512])
        .unwrap();
    s.vm_area_write(1, VmArea::Suspend, 0, &[0xCD; 512])
        .unwrap();
    let before = s.vm_record(1).unwrap();

    // Grows in place: nothing follows the partition.
    let grown = s.put_vm_record(&entry(1, res(4, 2))).unwrap();
    assert_eq!(grown.storage.start, before.storage.start);
    let mut b = vec![0u8; (2 * MIB) as usize];
    s.vm_area_read(1, VmArea::Storage, 0, &mut b).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0xAB) && b[512..].iter().all(|&x| x == 0));

    // Another VM right after it: growing again must move it, with its data.
    let other = s.put_vm_record(&entry(2, res(2, 0))).unwrap();
    assert_eq!(other.suspend.start, grown.storage.end());
    let moved = s.put_vm_record(&entry(1, res(4, 3))).unwrap();
    assert_ne!(moved.storage.start, grown.storage.start);
    let mut b = vec![0u8; (3 * MIB) as usize];
    s.vm_area_read(1, VmArea::Storage, 0, &mut b).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0xAB) && b[512..].iter().all(|&x| x == 0));
    check_invariants(&s);

    // Shrinks in place; the RAM change moves the suspend area; released sectors are zeroed.
    let shrunk = s.put_vm_record(&entry(1, res(8, 1))).unwrap();
    assert_eq!(shrunk.storage, Extent::new(moved.storage.start, 2048));
    assert_ne!(shrunk.suspend, before.suspend);
    check_invariants(&s);
    let d = into_disk(s);
    assert!(
        bytes_at(&d, before.suspend).iter().all(|&x| x == 0),
        "old suspend area zeroed"
    );
    assert!(
        bytes_at(&d, grown.storage).iter().all(|&x| x == 0),
        "old partition zeroed"
    );
    let tail = Extent::new(moved.storage.start + 2048, moved.storage.sectors - 2048);
    assert!(
        bytes_at(&d, tail).iter().all(|&x| x == 0),
        "cut tail zeroed"
    );
}

#[test]
fn deleting_a_vm_zeroes_its_areas_first() {
    let mut s = open(built_disk());
    let free = s.free_storage();
    let r = s.put_vm_record(&entry(5, res(4, 1))).unwrap();
    s.vm_area_write(5, VmArea::Storage, 0, &[9; 4096]).unwrap();
    s.vm_area_write(5, VmArea::Suspend, 4096, &[8; 4096])
        .unwrap();
    s.delete_vm_record(5).unwrap();
    assert_eq!(s.delete_vm_record(5), Err(StoreError::NoSuchVm(5)));
    assert_eq!(s.free_storage(), free);
    let d = into_disk(reopen(s));
    for e in r.extents() {
        assert!(bytes_at(&d, e).iter().all(|&x| x == 0));
    }
}

#[test]
fn refusals_change_nothing() {
    let mut s = open(built_disk());
    let free = s.free_storage();
    // Bigger than the pool.
    assert!(matches!(
        s.put_vm_record(&entry(1, res(32, 0))),
        Err(StoreError::NoSpace(_))
    ));
    let bad_name = VmEntry {
        handle: 0,
        ..entry(1, res(2, 0))
    };
    assert!(matches!(
        s.put_vm_record(&bad_name),
        Err(StoreError::Invalid(_))
    ));
    let bad_ram = entry(
        1,
        Resources {
            ram: 3 * MIB,
            ..res(2, 0)
        },
    );
    assert!(matches!(
        s.put_vm_record(&bad_ram),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.free_storage(), free);
    assert!(s.vm_records().is_empty());
}

#[test]
fn the_vm_table_fills_up() {
    let mut s = open(MemDisk::new(160 * MIB));
    for h in 1..=64 {
        s.put_vm_record(&entry(h, res(2, 0))).unwrap();
    }
    assert_eq!(
        s.put_vm_record(&entry(65, res(2, 0))),
        Err(StoreError::TableFull)
    );
    // Updating an existing record needs no new slot.
    s.put_vm_record(&entry(64, res(2, 1))).unwrap();
    check_invariants(&s);
}

#[test]
fn the_management_store_is_bounded_and_byte_granular() {
    let mut s = open(built_disk());
    let size = s.mgmt_store_size();
    assert_eq!(size, 4 * MIB);
    s.mgmt_store_write(100, b"tree v1").unwrap();
    s.mgmt_store_write(size - 3, b"end").unwrap();
    assert!(matches!(
        s.mgmt_store_write(size - 2, b"end"),
        Err(StoreError::OutOfBounds { .. })
    ));
    assert!(s.mgmt_store_read(size, &mut [0u8; 1]).is_err());
    s.mgmt_store_read(size, &mut []).unwrap();
    let mut s = reopen(s);
    let mut b = [0u8; 9];
    s.mgmt_store_read(99, &mut b).unwrap();
    assert_eq!(&b, b"\0tree v1\0");
    let mut e = [0u8; 3];
    s.mgmt_store_read(size - 3, &mut e).unwrap();
    assert_eq!(&e, b"end");
}

// ---- what mounting refuses ------------------------------------------------------------------

fn vm_slot_lba(slot: u64) -> usize {
    ((64 + slot) * SECTOR_BYTES) as usize
}

#[test]
fn corrupt_and_conflicting_records_are_dropped_newest_wins() {
    let mut s = open(built_disk());
    let a = s.put_vm_record(&entry(1, res(2, 0))).unwrap();
    let b = s.put_vm_record(&entry(2, res(2, 0))).unwrap();
    let c = s.put_vm_record(&entry(3, res(2, 0))).unwrap();
    let mut d = into_disk(s);
    // Slot 0 (VM 1): a flipped bit.
    d.bytes[vm_slot_lba(0) + 40] ^= 1;
    // Slot 5: an older copy of VM 2 (same handle, lower sequence) pointing at VM 3's area.
    let stale = VmRecord {
        sequence: 1,
        suspend: c.suspend,
        ..b
    };
    d.bytes[vm_slot_lba(5)..vm_slot_lba(6)].copy_from_slice(&stale.encode());
    // Slot 6: a newer VM 9 whose area overlaps VM 3's: it wins, VM 3 is dropped.
    let newer = VmRecord {
        handle: 9,
        sequence: 100,
        suspend: Extent::new(c.suspend.start, c.suspend.sectors),
        ..c
    };
    d.bytes[vm_slot_lba(6)..vm_slot_lba(7)].copy_from_slice(&newer.encode());
    // Slot 7: an extent past the pool.
    let outside = VmRecord {
        handle: 10,
        sequence: 101,
        suspend: Extent::new(DISK / 512, a.suspend.sectors),
        ..a
    };
    d.bytes[vm_slot_lba(7)..vm_slot_lba(8)].copy_from_slice(&outside.encode());

    let (mut s, report) = Store::open(d).map_err(|(_, e)| e).unwrap();
    let why = |slot| {
        report
            .dropped
            .iter()
            .find(|x| x.table == Table::Vms && x.slot == slot)
            .map(|x| x.why)
    };
    assert!(matches!(why(0), Some(DropReason::Corrupt(_))));
    assert_eq!(why(5), Some(DropReason::Duplicate));
    assert_eq!(why(2), Some(DropReason::Overlap));
    assert_eq!(why(7), Some(DropReason::OutsidePool));
    assert_eq!(report.dropped.len(), 4);
    let handles: Vec<u32> = s.vm_records().iter().map(|r| r.handle).collect();
    assert_eq!(handles, [2, 9]);
    check_invariants(&s);
    // Dropped slots are free; the next record outranks everything on the disk.
    let next = s.put_vm_record(&entry(4, res(2, 0))).unwrap();
    assert!(next.sequence > 101);
    let s = reopen(s);
    assert_eq!(s.vm_records().len(), 3);
}

// ---- failures and crashes -------------------------------------------------------------------

/// The operations the failure tests run, each on a fresh store with one VM (handle 1, with a
/// storage partition and data) and the two images.
/// A store operation under test.
type Op = fn(&mut Store<MemDisk>) -> Result<(), StoreError>;

fn operations() -> Vec<(&'static str, Op)> {
    vec![
        ("create", |s| {
            s.put_vm_record(&entry(2, res(2, 1))).map(drop)
        }),
        ("update state", |s| {
            s.put_vm_record(&VmEntry {
                state: VmState::Running,
                ..entry(1, res(4, 2))
            })
            .map(drop)
        }),
        ("change ram", |s| {
            s.put_vm_record(&entry(1, res(8, 2))).map(drop)
        }),
        ("grow storage", |s| {
            s.put_vm_record(&entry(1, res(4, 3))).map(drop)
        }),
        ("shrink storage", |s| {
            s.put_vm_record(&entry(1, res(4, 1))).map(drop)
        }),
        ("delete", |s| s.delete_vm_record(1)),
        ("remove image", |s| s.remove_image(1)),
        ("mgmt write", |s| s.mgmt_store_write(1000, &[7u8; 2000])),
    ]
}

fn base_store() -> Store<MemDisk> {
    let mut s = open(built_disk());
    s.put_vm_record(&entry(1, res(4, 2))).unwrap();
    s.vm_area_write(1, VmArea::Storage, 0, &[0xAB; 4096])
        .unwrap();
    // Something after the partition, so that growing moves it.
    s.put_vm_record(&entry(3, res(2, 0))).unwrap();
    s
}

/// The tables as a restart would see them.
fn tables(s: &Store<MemDisk>) -> (Vec<diskfmt::ImageRecord>, Vec<VmRecord>) {
    (s.images(), s.vm_records())
}

#[test]
fn an_io_failure_at_any_step_leaves_memory_as_it_was_and_the_disk_mountable() {
    for (name, op) in operations() {
        let mut done = base_store();
        op(&mut done).unwrap();
        let after = tables(&done);
        let mut n = 1;
        loop {
            let mut s = base_store();
            let before = tables(&s);
            s.device_mut().fault.arm(n);
            let result = op(&mut s);
            s.device_mut().fault.arm(0);
            match result {
                Err(StoreError::Disk(DiskError::Injected)) => {
                    assert_eq!(tables(&s), before, "{name}: I/O {n} failed, memory changed");
                    // On the disk: the old tables, or the new ones if only the flush after
                    // the record's write failed (the outcome of a failed flush is unknown).
                    let s = reopen(s);
                    check_invariants(&s);
                    let found = tables(&s);
                    assert!(
                        found == before || found == after,
                        "{name}: I/O {n}: {found:?}"
                    );
                    n += 1;
                }
                Ok(()) => {
                    assert!(n > 2, "{name}: the fault never hit");
                    break;
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
}

/// Replays the first `writes` journal entries onto `base`: the disk as a crash after them
/// leaves it (writes after the last flush may be lost in any order; here, in order).
fn crashed(base: &[u8], journal: &[Option<(u64, Vec<u8>)>], writes: usize) -> MemDisk {
    let mut d = MemDisk::new(0);
    d.bytes = base.to_vec();
    for (lba, data) in journal[..writes].iter().flatten() {
        let at = (*lba * SECTOR_BYTES) as usize;
        d.bytes[at..at + data.len()].copy_from_slice(data);
    }
    d
}

#[test]
fn a_crash_after_any_write_leaves_old_or_new_records_with_their_data() {
    for (name, op) in operations() {
        let s = base_store();
        let old = tables(&s);
        let base = into_disk(s).bytes;
        let mut d = MemDisk::new(0);
        d.bytes = base.clone();
        d.journaling = true;
        let mut s = open(d);
        s.device_mut().journal.clear();
        op(&mut s).unwrap();
        let new = tables(&s);
        let journal = core::mem::take(&mut s.device_mut().journal);
        for cut in 0..=journal.len() {
            let mut s = open(crashed(&base, &journal, cut));
            check_invariants(&s);
            let (images, vms) = tables(&s);
            for r in &vms {
                let was = old.1.iter().find(|o| o.handle == r.handle);
                let now = new.1.iter().find(|o| o.handle == r.handle);
                assert!(Some(r) == was || Some(r) == now, "{name} cut {cut}: {r:?}");
                // A record's storage holds its data: the 0xAB page if it is VM 1's (except
                // while it is being deleted: its data is zeroed before its slot is freed).
                if r.handle == 1 && !r.storage.is_empty() && name != "delete" {
                    let mut b = [0u8; 4096];
                    s.vm_area_read(1, VmArea::Storage, 0, &mut b).unwrap();
                    assert!(b.iter().all(|&x| x == 0xAB), "{name} cut {cut}: data lost");
                }
            }
            for r in &images {
                assert!(old.0.contains(r) || new.0.contains(r), "{name} cut {cut}");
            }
        }
    }
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn random_operations_keep_the_store_consistent_across_restarts() {
    let mut s = open(MemDisk::new(96 * MIB));
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for step in 0..300 {
        let handle = 1 + rng.below(12) as u32;
        match rng.below(4) {
            0 => {
                let _ = s.delete_vm_record(handle);
            }
            _ => {
                let r = res(2 * (1 + rng.below(4)), rng.below(4));
                match s.put_vm_record(&entry(handle, r)) {
                    Ok(rec) => {
                        let mark = [handle as u8; SECTOR_SIZE];
                        if !rec.storage.is_empty() {
                            s.vm_area_write(handle, VmArea::Storage, 0, &mark).unwrap();
                        }
                    }
                    Err(StoreError::NoSpace(_)) => {}
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
        }
        check_invariants(&s);
        if step % 25 == 0 {
            let before = tables(&s);
            s = reopen(s);
            assert_eq!(tables(&s), before, "step {step}");
        }
    }
    for r in s.vm_records() {
        if !r.storage.is_empty() {
            let mut b = [0u8; SECTOR_SIZE];
            s.vm_area_read(r.handle, VmArea::Storage, 0, &mut b)
                .unwrap();
            assert!(b.iter().all(|&x| x == r.handle as u8), "VM {}", r.handle);
        }
    }
}

#[test]
fn raw_device_errors_read_clearly() {
    assert_eq!(
        DiskError::OutOfRange {
            lba: 10,
            sectors: 4,
            capacity: 12
        }
        .to_string(),
        "sectors 10..14 are past the end of the disk (12 sectors)"
    );
    assert_eq!(StoreError::from(DiskError::NoDisk), StoreError::NoDisk);
    assert_eq!(
        StoreError::OutOfBounds {
            offset: 5,
            len: 10,
            size: 8
        }
        .to_string(),
        "10 bytes at offset 5 pass the end of an area of 8 bytes"
    );
    let mut d = MemDisk::new(MIB);
    assert!(d.write_zeroes(2040, 9).is_err());
}
