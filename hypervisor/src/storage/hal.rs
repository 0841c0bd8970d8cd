//! DMA memory for the virtio driver, from the frame allocator.
//!
//! Owns: the `virtio_drivers::Hal` implementation. RAM and the virtio-mmio windows are
//! identity mapped at EL2 (`arch::aarch64::mmu`), so a physical address is also the pointer,
//! and sharing a buffer with the device is giving its address. The device is assumed DMA
//! coherent (QEMU's virtio-mmio transports are, and say so with `dma-coherent`).
//!
//! Must never: hand the device memory that is not RAM (the driver in `virtio.rs` bounces such
//! buffers first), or be called with `FRAMES` locked (it takes that lock).

use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::memory::FRAMES;

pub struct FrameHal;

/// Allocates `bytes` (a multiple of 4 KiB) of zeroed, physically contiguous RAM; its address.
pub fn alloc_zeroed(bytes: usize) -> Option<u64> {
    let pa = FRAMES
        .lock()
        .alloc_contiguous(bytes as u64, PAGE_SIZE as u64)
        .ok()?;
    // SAFETY: the frames were just allocated to us and RAM is identity mapped read-write.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, bytes) };
    Some(pa)
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory owned by nobody else until
// `dma_dealloc`; `share` returns the physical address of RAM the caller lends (identity map);
// `mmio_phys_to_virt` returns the identity-mapped device window.
unsafe impl Hal for FrameHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match alloc_zeroed(pages * PAGE_SIZE) {
            Some(pa) => (
                pa,
                NonNull::new(pa as *mut u8).unwrap_or(NonNull::dangling()),
            ),
            // The driver reads a 0 address as failure (`Error::DmaError`).
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        match FRAMES.lock().free(paddr, (pages * PAGE_SIZE) as u64) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Only the PCI transport calls this; device windows are identity mapped anyway.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
