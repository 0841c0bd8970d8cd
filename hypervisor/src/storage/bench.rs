//! The disk benchmark: `hv.diskbench=<MiB>` on the hypervisor's command line (QEMU
//! `-append`) streams that much RAM to free pool space and back at boot, and prints
//! `#HV disk-bench ...` with the rates in guest time (the counter). See docs/disk.md.
//!
//! Owns: nothing that stays: the RAM is freed, the scratch sectors zeroed again, and no record
//! points to them at any time.

use super::store::Store;
use super::virtio::VirtioDisk;
use super::BlockDevice;
use crate::memory::FRAMES;
use diskfmt::SECTOR_BYTES;

/// The `hv.diskbench=` value in `bootargs`, in MiB.
pub fn requested(bootargs: Option<&str>) -> Option<u64> {
    bootargs?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hv.diskbench="))
        .and_then(|v| v.parse().ok())
        .filter(|&mib| mib > 0)
}

/// MiB per second for `bytes` in `ticks` of the counter.
fn rate(bytes: u64, ticks: u64) -> u64 {
    let freq = crate::arch::counter_frequency();
    (bytes >> 20).saturating_mul(freq) / ticks.max(1)
}

pub fn run(store: &mut Store<VirtioDisk>, mib: u64) {
    let bytes = mib << 20;
    let Ok(extent) = store.find_free(bytes / SECTOR_BYTES) else {
        log::warn!("disk bench: no {mib} MiB free in the pool");
        return;
    };
    let Ok(pa) = FRAMES.lock().alloc_contiguous(bytes, 2 << 20) else {
        log::warn!("disk bench: no {mib} MiB of RAM");
        return;
    };
    // SAFETY: the frames were just allocated to us and RAM is identity mapped read-write.
    let ram = unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, bytes as usize) };
    for (i, word) in ram.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(i as u64).to_le_bytes());
    }
    let dev = store.device_mut();
    let now = crate::arch::physical_count;
    let t0 = now();
    let wrote = dev.write(extent.start, ram);
    let t1 = now();
    let flushed = dev.flush();
    let t2 = now();
    ram.fill(0);
    let read = dev.read(extent.start, ram);
    let t3 = now();
    let intact = ram
        .chunks_exact(8)
        .enumerate()
        .all(|(i, w)| w == (i as u64).to_le_bytes());
    let zeroed = dev.write_zeroes(extent.start, extent.sectors);
    let t4 = now();
    let _ = dev.flush();
    let _ = FRAMES.lock().free(pa, bytes);
    if let Err(e) = wrote.and(flushed).and(read).and(zeroed) {
        log::error!("disk bench: {e}");
        return;
    }
    let us = |ticks: u64| ticks.saturating_mul(1_000_000) / crate::arch::counter_frequency();
    crate::hv_record!(
        "disk-bench bytes={} write_mibps={} read_mibps={} zero_mibps={} flush_us={} intact={}",
        bytes,
        rate(bytes, t1 - t0),
        rate(bytes, t3 - t2),
        rate(bytes, t4 - t3),
        us(t2 - t1),
        intact
    );
}
