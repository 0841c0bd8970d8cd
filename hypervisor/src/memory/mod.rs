//! Physical memory: frame allocation and translation tables.
pub mod frame_alloc;
pub mod pagetable;

#[cfg(target_os = "none")]
mod target {
    use super::frame_alloc::{FrameAllocator, FRAME_SIZE};
    use super::pagetable::TableAllocator;
    use core::ptr::NonNull;

    /// All physical RAM not used by the hypervisor image, the device tree and the boot bundle.
    pub static FRAMES: spin::Mutex<FrameAllocator> = spin::Mutex::new(FrameAllocator::new());

    /// Translation tables taken from `FRAMES` (stage 2). RAM is identity mapped at EL2, so a
    /// table's physical address is also its pointer.
    pub struct FrameTables;

    impl TableAllocator for FrameTables {
        fn alloc_table(&mut self) -> Option<NonNull<[u64; 512]>> {
            let pa = FRAMES
                .lock()
                .alloc_contiguous(FRAME_SIZE, FRAME_SIZE)
                .ok()?;
            NonNull::new(pa as *mut [u64; 512])
        }

        /// `DC ZVA` over the page: a few dozen instructions, where writing the 512 entries
        /// one by one takes about 2,000.
        fn zero_table(&mut self, table: NonNull<[u64; 512]>) {
            crate::arch::zero_range(table.as_ptr() as u64, FRAME_SIZE);
        }

        fn free_table(&mut self, table: NonNull<[u64; 512]>) {
            let pa = table.as_ptr() as u64;
            if let Err(e) = FRAMES.lock().free(pa, FRAME_SIZE) {
                log::error!("freeing translation table {pa:#x}: {e:?}");
            }
        }
    }
}
#[cfg(target_os = "none")]
pub use target::{FrameTables, FRAMES};
