//! The heap: a buddy allocator (`buddy_system_allocator::Heap`, without its spin lock) over a
//! static array in `.bss`.
//!
//! Why no lock: the agent runs on one vCPU with interrupts masked, so the allocator is never
//! re-entered; and a spin lock needs exclusives, which are not guaranteed on the Device memory
//! a guest with its MMU off sees.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{addr_of_mut, NonNull};

use buddy_system_allocator::Heap;

/// 4 MiB: the tree of a few dozen VMs and its saved copy need well under 1 MiB.
const HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

struct Allocator(UnsafeCell<Heap<32>>);

// SAFETY: one vCPU, no interrupts: the cell is never reached from two places at once.
unsafe impl Sync for Allocator {}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator(UnsafeCell::new(Heap::new()));

// SAFETY: `Heap` hands out disjoint, suitably aligned blocks of the region given in `init`, and
// takes back exactly what it handed out (GlobalAlloc's contract on the caller).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see `impl Sync`: no other reference to the heap exists during the call.
        let heap = unsafe { &mut *self.0.get() };
        heap.alloc(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`; `ptr` and `layout` come from a previous `alloc` (GlobalAlloc's
        // contract), so `ptr` is not null.
        unsafe { (*self.0.get()).dealloc(NonNull::new_unchecked(ptr), layout) }
    }
}

/// Gives the heap its memory. Called once, first thing in `agent_main`.
pub fn init() {
    // SAFETY: HEAP_SPACE is used by nothing else; this runs once, before any allocation, on
    // the only vCPU.
    unsafe {
        let start = addr_of_mut!(HEAP_SPACE) as usize;
        (*ALLOCATOR.0.get()).init(start, HEAP_SIZE);
    }
}
