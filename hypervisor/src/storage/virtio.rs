//! The virtio-blk driver: finding the disk and moving sectors, on `virtio-drivers`.
//!
//! Owns: probing the device tree's `virtio,mmio` transports (highest address first, which is
//! where QEMU puts the first `-device`; empty transports have device id 0 and are skipped),
//! the first block device, and its I/O: requests of up to [`MAX_REQUEST`] bytes, up to
//! [`DEPTH`] in flight, each polled with a deadline. A buffer outside RAM goes through a
//! bounce buffer; RAM buffers (a VM's memory included) are given to the device as they are.
//!
//! Must never: spin without a deadline on a request, or touch a buffer the device may still
//! write: a request that times out resets the device (which stops its DMA) and takes it out of
//! service for good. One exception: `virtio-drivers` 0.13 has no non-blocking flush, so
//! [`VirtioDisk::flush`] waits as long as the device takes.

use core::ptr::NonNull;

use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use super::device::{check_range, whole_sectors, BlockDevice};
use super::error::DiskError;
use super::hal::{alloc_zeroed, FrameHal};
use crate::dt::hwinfo::{HwInfo, Region, MAX_MEMORY_REGIONS};
use diskfmt::SECTOR_SIZE;

/// Bytes per request: large, so that a VM's RAM streams at the device's pace, not the
/// request rate's.
pub const MAX_REQUEST: usize = 1 << 20;
/// Requests in flight at once (each uses one descriptor with indirect descriptors, three
/// without; the queue has 16).
pub const DEPTH: usize = 4;
/// How long one request may take before the device is declared broken.
const DEADLINE_SECS: u64 = 30;

#[cfg(feature = "fault-injection")]
pub static FAULT: super::fault::Countdown = super::fault::Countdown::new();

type Blk = VirtIOBlk<FrameHal, MmioTransport<'static>>;

pub struct VirtioDisk {
    /// `None` once a timeout reset the device.
    blk: Option<Blk>,
    capacity: u64,
    readonly: bool,
    /// [`MAX_REQUEST`] bytes of identity-mapped RAM, ours for good.
    bounce: u64,
    /// RAM, where buffers can be handed to the device as they are.
    ram: heapless::Vec<Region, MAX_MEMORY_REGIONS>,
}

/// Which way a request goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

/// Where a run of requests takes its bytes.
#[derive(Clone, Copy)]
enum Data {
    /// A buffer in RAM, `len` bytes from this address, each request its own part.
    Buffer(*mut u8),
    /// The bounce buffer, zeroed, the same for every request (writes only).
    Zeros,
}

fn driver_error(e: virtio_drivers::Error) -> DiskError {
    use virtio_drivers::Error as E;
    match e {
        E::IoError => DiskError::Device("I/O error"),
        E::Unsupported => DiskError::Device("request not supported"),
        E::NotReady => DiskError::Device("device not ready"),
        E::QueueFull => DiskError::Device("queue full"),
        E::DmaError => DiskError::NoMemory,
        _ => DiskError::Device("driver error"),
    }
}

impl VirtioDisk {
    /// The first virtio block device of the device tree, initialised; `Ok(None)` if there is
    /// none.
    pub fn probe(hw: &HwInfo) -> Result<Option<VirtioDisk>, DiskError> {
        for t in hw.virtio_mmio.iter().rev() {
            let Some(header) = NonNull::new(t.base.base as *mut VirtIOHeader) else {
                continue;
            };
            // SAFETY: `mmu::build_el2_map` maps every `virtio,mmio` window of the device tree
            // as device memory, identity, for good; nothing else in the hypervisor uses it.
            let transport = match unsafe { MmioTransport::new(header, t.base.size as usize) } {
                Ok(t) => t,
                Err(_) => continue, // no device behind it (id 0), or not virtio
            };
            if transport.device_type() != DeviceType::Block {
                continue;
            }
            let bounce = alloc_zeroed(MAX_REQUEST).ok_or(DiskError::NoMemory)?;
            let blk = match Blk::new(transport) {
                Ok(b) => b,
                Err(e) => {
                    let _ = crate::memory::FRAMES
                        .lock()
                        .free(bounce, MAX_REQUEST as u64);
                    return Err(driver_error(e));
                }
            };
            let mut ram = heapless::Vec::new();
            for r in hw.memory.iter() {
                let _ = ram.push(*r);
            }
            log::info!(
                "disk: virtio-blk at {:#x}, {} MiB{}",
                t.base.base,
                blk.capacity() >> 11,
                if blk.readonly() { ", read-only" } else { "" }
            );
            return Ok(Some(VirtioDisk {
                capacity: blk.capacity(),
                readonly: blk.readonly(),
                blk: Some(blk),
                bounce,
                ram,
            }));
        }
        Ok(None)
    }

    fn in_ram(&self, ptr: *const u8, len: usize) -> bool {
        let start = ptr as u64;
        let Some(end) = start.checked_add(len as u64) else {
            return false;
        };
        self.ram
            .iter()
            .any(|r| start >= r.base && end <= r.base.saturating_add(r.size))
    }

    fn bounce(&mut self) -> &mut [u8] {
        // SAFETY: the bounce frames were allocated for this disk alone, are identity mapped,
        // and are only reached through `&mut self`; no request is in flight between calls.
        unsafe { core::slice::from_raw_parts_mut(self.bounce as *mut u8, MAX_REQUEST) }
    }

    /// Counts one I/O request for fault injection, and refuses requests to a broken disk.
    fn start(&mut self) -> Result<(), DiskError> {
        #[cfg(feature = "fault-injection")]
        if FAULT.hit() {
            return Err(DiskError::Injected);
        }
        if self.blk.is_none() {
            return Err(DiskError::Broken);
        }
        Ok(())
    }

    /// Moves `len` bytes at sector `lba` in requests of [`MAX_REQUEST`] bytes, [`DEPTH`] at a
    /// time; returns once none is in flight.
    fn run(&mut self, lba: u64, len: usize, dir: Dir, data: Data) -> Result<(), DiskError> {
        let bounce = self.bounce as *mut u8;
        let Some(blk) = self.blk.as_mut() else {
            return Err(DiskError::Broken);
        };
        let chunks = len.div_ceil(MAX_REQUEST);
        let part = |i: usize| {
            let at = i * MAX_REQUEST;
            let n = MAX_REQUEST.min(len - at);
            let ptr = match data {
                // SAFETY (of the add): `at < len`, inside the caller's buffer.
                Data::Buffer(p) => unsafe { p.add(at) },
                Data::Zeros => bounce,
            };
            (lba + (at / SECTOR_SIZE) as u64, ptr, n)
        };
        // Request headers and status bytes stay put while the device holds them.
        let mut reqs: [BlkReq; DEPTH] = Default::default();
        let mut resps: [BlkResp; DEPTH] = Default::default();
        let mut inflight: [Option<(u16, usize)>; DEPTH] = [None; DEPTH];
        let (mut next, mut error, mut timed_out) = (0, None, false);
        loop {
            while next < chunks && error.is_none() {
                let Some(slot) = inflight.iter().position(Option::is_none) else {
                    break;
                };
                let (sector, ptr, n) = part(next);
                // SAFETY: `ptr..ptr + n` is a part of the caller's buffer that no other
                // request of this run uses (or, for writes of zeros, the bounce buffer, which
                // the device only reads); it stays borrowed until this run has collected every
                // request it submitted, or the device is reset.
                let buf = unsafe { core::slice::from_raw_parts_mut(ptr, n) };
                // SAFETY: `reqs[slot]`, `buf` and `resps[slot]` are not touched until the
                // request completes (the slot is busy until then).
                let token = unsafe {
                    match dir {
                        Dir::Read => blk.read_blocks_nb(
                            sector as usize,
                            &mut reqs[slot],
                            buf,
                            &mut resps[slot],
                        ),
                        Dir::Write => blk.write_blocks_nb(
                            sector as usize,
                            &mut reqs[slot],
                            buf,
                            &mut resps[slot],
                        ),
                    }
                };
                match token {
                    Ok(t) => {
                        inflight[slot] = Some((t, next));
                        next += 1;
                    }
                    Err(virtio_drivers::Error::QueueFull)
                        if inflight.iter().any(Option::is_some) =>
                    {
                        break
                    }
                    Err(e) => error = Some(driver_error(e)),
                }
            }
            if inflight.iter().all(Option::is_none) {
                break;
            }
            let Some(token) = wait_used(blk) else {
                timed_out = true;
                break;
            };
            let Some(slot) = inflight
                .iter()
                .position(|s| s.is_some_and(|(t, _)| t == token))
            else {
                // A completion we did not ask for: the device is not to be trusted.
                timed_out = true;
                break;
            };
            let (_, index) = inflight[slot].take().unwrap_or_default();
            let (_, ptr, n) = part(index);
            // SAFETY: the same buffers as when this request was submitted; the device is done
            // with them (it returned the token).
            let done = unsafe {
                let buf = core::slice::from_raw_parts_mut(ptr, n);
                match dir {
                    Dir::Read => {
                        blk.complete_read_blocks(token, &reqs[slot], buf, &mut resps[slot])
                    }
                    Dir::Write => {
                        blk.complete_write_blocks(token, &reqs[slot], buf, &mut resps[slot])
                    }
                }
            };
            if let Err(e) = done {
                error.get_or_insert(driver_error(e));
            }
        }
        if timed_out {
            // Dropping the driver resets the device, which stops all its DMA: the buffers of
            // the requests still in flight are never written after this returns.
            self.blk = None;
            log::error!(
                "disk: a request took over {DEADLINE_SECS} s; the disk is reset and out of service"
            );
            return Err(DiskError::Timeout);
        }
        error.map_or(Ok(()), Err)
    }

    fn check(&self, lba: u64, len: usize) -> Result<(), DiskError> {
        check_range(lba, whole_sectors(len)?, self.capacity)
    }
}

/// Spins until the device returns a request; `None` after [`DEADLINE_SECS`].
fn wait_used(blk: &mut Blk) -> Option<u16> {
    let ticks = crate::arch::counter_frequency().saturating_mul(DEADLINE_SECS);
    let deadline = crate::arch::physical_count().saturating_add(ticks);
    loop {
        if let Some(token) = blk.peek_used() {
            return Some(token);
        }
        if crate::arch::physical_count() > deadline {
            return None;
        }
        core::hint::spin_loop();
    }
}

impl BlockDevice for VirtioDisk {
    fn sectors(&self) -> u64 {
        self.capacity
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.check(lba, buf.len())?;
        self.start()?;
        if buf.is_empty() {
            return Ok(());
        }
        if self.in_ram(buf.as_ptr(), buf.len()) {
            return self.run(lba, buf.len(), Dir::Read, Data::Buffer(buf.as_mut_ptr()));
        }
        for (i, chunk) in buf.chunks_mut(MAX_REQUEST).enumerate() {
            let bounce = self.bounce as *mut u8;
            self.run(
                lba + (i * MAX_REQUEST / SECTOR_SIZE) as u64,
                chunk.len(),
                Dir::Read,
                Data::Buffer(bounce),
            )?;
            chunk.copy_from_slice(&self.bounce()[..chunk.len()]);
        }
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.check(lba, buf.len())?;
        if self.readonly {
            return Err(DiskError::ReadOnly);
        }
        self.start()?;
        if buf.is_empty() {
            return Ok(());
        }
        if self.in_ram(buf.as_ptr(), buf.len()) {
            // The device only reads the buffer.
            return self.run(
                lba,
                buf.len(),
                Dir::Write,
                Data::Buffer(buf.as_ptr() as *mut u8),
            );
        }
        for (i, chunk) in buf.chunks(MAX_REQUEST).enumerate() {
            self.bounce()[..chunk.len()].copy_from_slice(chunk);
            let bounce = self.bounce as *mut u8;
            self.run(
                lba + (i * MAX_REQUEST / SECTOR_SIZE) as u64,
                chunk.len(),
                Dir::Write,
                Data::Buffer(bounce),
            )?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.start()?;
        let blk = self.blk.as_mut().ok_or(DiskError::Broken)?;
        blk.flush().map_err(driver_error)
    }

    fn write_zeroes(&mut self, lba: u64, sectors: u64) -> Result<(), DiskError> {
        check_range(lba, sectors, self.capacity)?;
        if self.readonly {
            return Err(DiskError::ReadOnly);
        }
        self.start()?;
        self.bounce().fill(0);
        let mut done = 0u64;
        // `run` takes a `usize` length: go 1 GiB at a time.
        const STEP: u64 = 1 << 21;
        while done < sectors {
            let n = STEP.min(sectors - done);
            self.run(
                lba + done,
                (n as usize) * SECTOR_SIZE,
                Dir::Write,
                Data::Zeros,
            )?;
            done += n;
        }
        Ok(())
    }
}
