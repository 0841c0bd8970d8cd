//! Physical frame allocator: which 4 KiB frames of physical RAM are free, and who may take them.
//!
//! It owns the bookkeeping only: one bitmap per RAM region (a set bit means "in use"). It hands out
//! physical addresses for VM memory and translation-table pages.
//!
//! It must never dereference a physical address (it neither zeroes nor reads the memory it
//! manages: that is the caller's job, through whatever mapping it has), and it must never change
//! anything when it reports an error: every operation either succeeds completely or leaves the
//! allocator exactly as it was.
//!
//! Frames given away by [`FrameAllocator::reserve`] (hypervisor image, DTB, boot bundle) are
//! indistinguishable from allocated ones, so the caller must not `free` them.

use alloc::vec::Vec;
use core::fmt;

/// Size of one physical frame (the 4 KiB translation granule).
pub const FRAME_SIZE: u64 = 4096;

/// How many RAM regions one allocator tracks. The device tree's `/memory` nodes rarely list more
/// than a handful; a fixed cap keeps the worst-case search cost bounded.
pub const MAX_REGIONS: usize = 16;

/// Bits per bitmap word.
const BITS_PER_WORD: u64 = u64::BITS as u64;

/// Why a frame allocator operation was refused. The allocator is unchanged whenever one of these
/// is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// No free run of frames large enough (with the requested alignment) exists.
    OutOfMemory,
    /// An address or size is not a multiple of [`FRAME_SIZE`], or an alignment is not a power of
    /// two of at least [`FRAME_SIZE`].
    Misaligned,
    /// The size (or the region, once shrunk to whole frames) is empty.
    ZeroSize,
    /// Part of the range is outside every region this allocator manages.
    NotManaged,
    /// Part of the range is already in use (or, for `add_region`, already managed).
    AlreadyInUse,
    /// Part of the range being freed is already free.
    DoubleFree,
    /// [`MAX_REGIONS`] regions are already managed.
    TooManyRegions,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FrameError::OutOfMemory => "out of physical memory",
            FrameError::Misaligned => "address, size or alignment is not frame aligned",
            FrameError::ZeroSize => "empty range",
            FrameError::NotManaged => "range is not managed physical memory",
            FrameError::AlreadyInUse => "range is already in use",
            FrameError::DoubleFree => "range is already free",
            FrameError::TooManyRegions => "too many physical memory regions",
        };
        f.write_str(text)
    }
}

/// One contiguous run of managed RAM, `[start, start + frames * FRAME_SIZE)`.
#[derive(Debug)]
struct Region {
    /// Physical address of the first frame (frame aligned).
    start: u64,
    /// Number of frames in the region (at least one).
    frames: u64,
    /// Frames not in use.
    free_frames: u64,
    /// One bit per frame, bit `i % 64` of word `i / 64`; set means in use. Bits past `frames`
    /// in the last word are never touched.
    bitmap: Vec<u64>,
    /// Summaries of `bitmap`, one bit per word of it (bit `w % 64` of word `w / 64`): `full`,
    /// the word is all used; `any`, some frame of it is used. A bitmap word covers 256 KiB of
    /// RAM, a summary word 16 MiB: the searches skip whole used or free stretches that many at
    /// a time, since a VM's RAM spans thousands of frames and its creation and resume are
    /// timed (docs/benchmarks.md). Every change of `bitmap` goes through `store` or `fill`,
    /// which keep them exact.
    full: Vec<u64>,
    any: Vec<u64>,
}

/// The highest index in `[from, to)` whose bit in `summary` is `set`, if any.
fn highest_in(summary: &[u64], from: usize, to: usize, set: bool) -> Option<usize> {
    if from >= to {
        return None;
    }
    let word_bits = BITS_PER_WORD as usize;
    let mut w = (to - 1) / word_bits;
    let first_word = from / word_bits;
    loop {
        let mut bits = if set { summary[w] } else { !summary[w] };
        if w == (to - 1) / word_bits {
            let top = (to - 1) % word_bits;
            bits &= u64::MAX >> (word_bits - 1 - top);
        }
        if w == first_word {
            bits &= u64::MAX << (from % word_bits);
        }
        if bits != 0 {
            return Some(w * word_bits + (word_bits - 1 - bits.leading_zeros() as usize));
        }
        if w == first_word {
            return None;
        }
        w -= 1;
    }
}

/// Sets (`on`) or clears the bits `[from, to)` of `summary`.
fn summary_fill(summary: &mut [u64], from: usize, to: usize, on: bool) {
    let word_bits = BITS_PER_WORD as usize;
    let mut i = from;
    while i < to {
        let w = i / word_bits;
        let bit = i % word_bits;
        let span = (to - i).min(word_bits - bit);
        let mask = if span == word_bits {
            u64::MAX
        } else {
            ((1u64 << span) - 1) << bit
        };
        if on {
            summary[w] |= mask;
        } else {
            summary[w] &= !mask;
        }
        i += span;
    }
}

impl Region {
    /// Address one past the last byte. Cannot overflow: `add_region` only builds regions whose
    /// end is at most `u64::MAX` rounded down to a frame.
    fn end(&self) -> u64 {
        self.start + self.frames * FRAME_SIZE
    }

    fn contains(&self, pa: u64) -> bool {
        pa >= self.start && pa < self.end()
    }

    fn frame_index(&self, pa: u64) -> u64 {
        (pa - self.start) / FRAME_SIZE
    }

    /// Asserts that the summaries say what the bitmap holds.
    #[cfg(test)]
    fn check_summaries(&self) {
        for (w, &word) in self.bitmap.iter().enumerate() {
            let (sw, bit) = (
                w / BITS_PER_WORD as usize,
                1u64 << (w as u64 % BITS_PER_WORD),
            );
            assert_eq!(self.full[sw] & bit != 0, word == u64::MAX, "full, word {w}");
            assert_eq!(self.any[sw] & bit != 0, word != 0, "any, word {w}");
        }
    }

    /// Writes bitmap word `w`, keeping the summaries exact.
    fn store(&mut self, w: usize, value: u64) {
        self.bitmap[w] = value;
        let (sw, bit) = (
            w / BITS_PER_WORD as usize,
            1u64 << (w as u64 % BITS_PER_WORD),
        );
        if value == u64::MAX {
            self.full[sw] |= bit;
        } else {
            self.full[sw] &= !bit;
        }
        if value != 0 {
            self.any[sw] |= bit;
        } else {
            self.any[sw] &= !bit;
        }
    }

    /// Sets bitmap words `[from, to)` all used (`used`) or all free, keeping the summaries.
    fn fill(&mut self, from: usize, to: usize, used: bool) {
        if from >= to {
            return;
        }
        self.bitmap[from..to].fill(if used { u64::MAX } else { 0 });
        summary_fill(&mut self.full, from, to, used);
        summary_fill(&mut self.any, from, to, used);
    }

    fn is_used(&self, frame: u64) -> bool {
        self.bitmap[(frame / BITS_PER_WORD) as usize] & (1 << (frame % BITS_PER_WORD)) != 0
    }

    /// Bits of the word holding `first` that fall in `[first, first + count)`, and how many
    /// frames that covers.
    fn word_mask(first: u64, count: u64) -> (u64, u64) {
        let bit = first % BITS_PER_WORD;
        let span = count.min(BITS_PER_WORD - bit);
        let mask = if span == BITS_PER_WORD {
            u64::MAX
        } else {
            ((1u64 << span) - 1) << bit
        };
        (mask, span)
    }

    /// Number of used frames in `[first, first + count)`.
    fn used_in(&self, first: u64, count: u64) -> u64 {
        let mut used = 0;
        let mut frame = first;
        let end = first + count;
        while frame < end {
            let (mask, span) = Self::word_mask(frame, end - frame);
            used += u64::from((self.bitmap[(frame / BITS_PER_WORD) as usize] & mask).count_ones());
            frame += span;
        }
        used
    }

    /// The words holding `[first, first + count)` (`count` > 0): the first and last word's
    /// indices and the masks of the range's bits in them. The words between are wholly in the
    /// range: the searches below test them with one comparison each, since a VM's RAM spans
    /// thousands of frames (docs/benchmarks.md).
    fn span(first: u64, count: u64) -> (usize, usize, u64, u64) {
        let last = first + count - 1;
        (
            (first / BITS_PER_WORD) as usize,
            (last / BITS_PER_WORD) as usize,
            u64::MAX << (first % BITS_PER_WORD),
            u64::MAX >> (BITS_PER_WORD - 1 - last % BITS_PER_WORD),
        )
    }

    /// Frame index of the highest set bit of `bits` (not 0) in word `word`.
    fn top_bit(word: usize, bits: u64) -> u64 {
        word as u64 * BITS_PER_WORD + u64::from(BITS_PER_WORD as u32 - 1 - bits.leading_zeros())
    }

    /// The highest used frame in `[first, first + count)`, if any. Scans from the top so that the
    /// top-down search can jump straight below the obstacle.
    fn highest_used_in(&self, first: u64, count: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let (fw, lw, lo, hi) = Self::span(first, count);
        if fw == lw {
            let hits = self.bitmap[fw] & lo & hi;
            return (hits != 0).then(|| Self::top_bit(fw, hits));
        }
        let hits = self.bitmap[lw] & hi;
        if hits != 0 {
            return Some(Self::top_bit(lw, hits));
        }
        if let Some(w) = highest_in(&self.any, fw + 1, lw, true) {
            return Some(Self::top_bit(w, self.bitmap[w]));
        }
        let hits = self.bitmap[fw] & lo;
        (hits != 0).then(|| Self::top_bit(fw, hits))
    }

    /// Whether every frame of `[first, first + count)` (`count` > 0) is used.
    fn all_used(&self, first: u64, count: u64) -> bool {
        let (fw, lw, lo, hi) = Self::span(first, count);
        if fw == lw {
            let mask = lo & hi;
            return self.bitmap[fw] & mask == mask;
        }
        self.bitmap[fw] & lo == lo
            && self.bitmap[lw] & hi == hi
            && highest_in(&self.full, fw + 1, lw, false).is_none()
    }

    /// The first frame of the run of used frames that ends at or contains frame `used` (which
    /// is used): whole used words are skipped with one comparison each.
    fn used_run_start(&self, used: u64) -> u64 {
        let w = (used / BITS_PER_WORD) as usize;
        let bit = used % BITS_PER_WORD;
        // The bits of this word from `bit` down, shifted to the top: their run of ones.
        let ones = (self.bitmap[w] << (BITS_PER_WORD - 1 - bit)).leading_ones() as u64;
        if ones <= bit {
            return used + 1 - ones;
        }
        // The whole word up to `bit` is used: the run goes on below it, to the first word that
        // is not wholly used.
        match highest_in(&self.full, 0, w, false) {
            None => 0,
            Some(i) => (i as u64 + 1) * BITS_PER_WORD - self.bitmap[i].leading_ones() as u64,
        }
    }

    /// Marks `[first, first + count)` used (`used == true`) or free, and adjusts `free_frames`.
    /// The caller has checked that every frame changes state.
    fn set_range(&mut self, first: u64, count: u64, used: bool) {
        if count == 0 {
            return;
        }
        let (fw, lw, lo, hi) = Self::span(first, count);
        let apply = |word: u64, mask: u64| if used { word | mask } else { word & !mask };
        if fw == lw {
            self.store(fw, apply(self.bitmap[fw], lo & hi));
        } else {
            self.store(fw, apply(self.bitmap[fw], lo));
            self.fill(fw + 1, lw, used);
            self.store(lw, apply(self.bitmap[lw], hi));
        }
        if used {
            self.free_frames -= count;
        } else {
            self.free_frames += count;
        }
    }

    /// Marks `[first, first + count)` used, whatever its current state (for `reserve`).
    fn force_used(&mut self, first: u64, count: u64) {
        let already = self.used_in(first, count);
        let mut frame = first;
        let end = first + count;
        while frame < end {
            let (mask, span) = Self::word_mask(frame, end - frame);
            let w = (frame / BITS_PER_WORD) as usize;
            self.store(w, self.bitmap[w] | mask);
            frame += span;
        }
        self.free_frames -= count - already;
    }

    /// Highest `align`-aligned frame-run start of `frames` frames that is entirely free.
    fn find_highest_free(&self, frames: u64, align: u64) -> Option<u64> {
        if self.free_frames < frames || self.frames < frames {
            return None;
        }
        let size = frames * FRAME_SIZE;
        // Candidate run start addresses go from the top of the region downward; after a used frame
        // the next candidate must end at or below that frame.
        let mut candidate_end = self.end();
        loop {
            let room = candidate_end.checked_sub(self.start)?;
            if room < size {
                return None;
            }
            let base = align_down(candidate_end - size, align);
            if base < self.start {
                return None;
            }
            let first = self.frame_index(base);
            match self.highest_used_in(first, frames) {
                None => return Some(base),
                // The next candidate ends below the whole run of used frames this one ends
                // in: stepping one frame at a time through a large used block would make
                // the search linear in its size.
                Some(used) => candidate_end = self.start + self.used_run_start(used) * FRAME_SIZE,
            }
        }
    }
}

/// Rounds `value` down to a multiple of `align` (a power of two).
const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Rounds `value` up to a multiple of `align` (a power of two), or `None` on overflow.
fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// Checks an `(address, size)` pair: non-empty, frame aligned, not wrapping the address space.
/// Returns the exclusive end address.
fn checked_frame_range(pa: u64, size: u64) -> Result<u64, FrameError> {
    if size == 0 {
        return Err(FrameError::ZeroSize);
    }
    if !pa.is_multiple_of(FRAME_SIZE) || !size.is_multiple_of(FRAME_SIZE) {
        return Err(FrameError::Misaligned);
    }
    // A range running past the top of the address space cannot be managed RAM.
    pa.checked_add(size).ok_or(FrameError::NotManaged)
}

/// The physical frame allocator. See the module documentation.
#[derive(Debug, Default)]
pub struct FrameAllocator {
    /// Managed regions, sorted by start address, never overlapping.
    regions: Vec<Region>,
}

impl FrameAllocator {
    /// An allocator managing no memory. `const` so that it can live in a `static` before the heap
    /// exists; the bitmaps are only allocated by [`FrameAllocator::add_region`].
    pub const fn new() -> Self {
        FrameAllocator {
            regions: Vec::new(),
        }
    }

    /// Adds RAM `[start, end)` to the managed memory, all of it free. The range is shrunk inward
    /// to whole frames; it is refused with `ZeroSize` if nothing is left, with `AlreadyInUse` if
    /// it overlaps a managed region, with `TooManyRegions` past [`MAX_REGIONS`] and with
    /// `OutOfMemory` if the heap cannot hold its bitmap.
    pub fn add_region(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let start = align_up(start, FRAME_SIZE).ok_or(FrameError::ZeroSize)?;
        let end = align_down(end, FRAME_SIZE);
        if end <= start {
            return Err(FrameError::ZeroSize);
        }
        if self
            .regions
            .iter()
            .any(|region| start < region.end() && region.start < end)
        {
            return Err(FrameError::AlreadyInUse);
        }
        if self.regions.len() >= MAX_REGIONS {
            return Err(FrameError::TooManyRegions);
        }
        let frames = (end - start) / FRAME_SIZE;
        let words = frames.div_ceil(BITS_PER_WORD);
        let words = usize::try_from(words).map_err(|_| FrameError::OutOfMemory)?;
        // The heap may be small; a huge region must fail cleanly rather than abort.
        let mut bitmap = Vec::new();
        bitmap
            .try_reserve_exact(words)
            .map_err(|_| FrameError::OutOfMemory)?;
        self.regions
            .try_reserve(1)
            .map_err(|_| FrameError::OutOfMemory)?;
        bitmap.resize(words, 0);
        let summary_words = words.div_ceil(BITS_PER_WORD as usize);
        let mut full = Vec::new();
        let mut any = Vec::new();
        full.try_reserve_exact(summary_words)
            .map_err(|_| FrameError::OutOfMemory)?;
        any.try_reserve_exact(summary_words)
            .map_err(|_| FrameError::OutOfMemory)?;
        full.resize(summary_words, 0);
        any.resize(summary_words, 0);
        let position = self.regions.partition_point(|region| region.start < start);
        self.regions.insert(
            position,
            Region {
                start,
                frames,
                free_frames: frames,
                bitmap,
                full,
                any,
            },
        );
        Ok(())
    }

    /// Marks `[start, end)`, grown outward to whole frames, as in use wherever it is managed
    /// (the hypervisor image, the DTB, the boot bundle). Unmanaged parts and frames already in use
    /// are ignored, so it can be called with any range, in any order relative to `add_region`'s
    /// of other regions.
    pub fn reserve(&mut self, start: u64, end: u64) {
        let start = align_down(start, FRAME_SIZE);
        // Every managed frame ends at or below `u64::MAX` rounded down, so clamping the top is
        // exact.
        let end = align_up(end, FRAME_SIZE).unwrap_or(align_down(u64::MAX, FRAME_SIZE));
        for region in &mut self.regions {
            let low = start.max(region.start);
            let high = end.min(region.end());
            if low < high {
                let first = region.frame_index(low);
                region.force_used(first, (high - low) / FRAME_SIZE);
            }
        }
    }

    /// Allocates `size` bytes of physically contiguous frames whose start is a multiple of
    /// `align`, and returns the start address. The search is first fit from the highest address
    /// downward (so RAM near the hypervisor, at the bottom, stays free longest) and is
    /// deterministic. A run never spans two regions, even adjacent ones.
    pub fn alloc_contiguous(&mut self, size: u64, align: u64) -> Result<u64, FrameError> {
        if size == 0 {
            return Err(FrameError::ZeroSize);
        }
        if !size.is_multiple_of(FRAME_SIZE) || !align.is_power_of_two() || align < FRAME_SIZE {
            return Err(FrameError::Misaligned);
        }
        let frames = size / FRAME_SIZE;
        for region in self.regions.iter_mut().rev() {
            if let Some(base) = region.find_highest_free(frames, align) {
                let first = region.frame_index(base);
                region.set_range(first, frames, true);
                return Ok(base);
            }
        }
        Err(FrameError::OutOfMemory)
    }

    /// Allocates exactly `[pa, pa + size)` (static partitioning). Every frame must be managed
    /// (`NotManaged`) and free (`AlreadyInUse`); on error nothing changes.
    pub fn alloc_at(&mut self, pa: u64, size: u64) -> Result<(), FrameError> {
        let end = checked_frame_range(pa, size)?;
        let mut any_used = false;
        self.for_each_piece(pa, end, |region, first, count| {
            any_used |= region.highest_used_in(first, count).is_some();
        })?;
        if any_used {
            return Err(FrameError::AlreadyInUse);
        }
        self.for_each_piece_mut(pa, end, |region, first, count| {
            region.set_range(first, count, true)
        });
        Ok(())
    }

    /// Frees `[pa, pa + size)`. Every frame must be managed (`NotManaged`) and in use
    /// (`DoubleFree`); on error nothing changes, never a partial free.
    pub fn free(&mut self, pa: u64, size: u64) -> Result<(), FrameError> {
        let end = checked_frame_range(pa, size)?;
        let mut all_used = true;
        self.for_each_piece(pa, end, |region, first, count| {
            all_used &= region.all_used(first, count);
        })?;
        if !all_used {
            return Err(FrameError::DoubleFree);
        }
        self.for_each_piece_mut(pa, end, |region, first, count| {
            region.set_range(first, count, false)
        });
        Ok(())
    }

    /// Whether the frame containing `pa` is in use (allocated or reserved). Unmanaged addresses
    /// are reported as not allocated.
    pub fn is_allocated(&self, pa: u64) -> bool {
        self.region_containing(pa)
            .is_some_and(|region| region.is_used(region.frame_index(pa)))
    }

    /// Bytes of managed memory that are free.
    pub fn free_bytes(&self) -> u64 {
        self.regions
            .iter()
            .map(|region| region.free_frames * FRAME_SIZE)
            .sum()
    }

    /// Bytes of managed memory, free or not.
    pub fn total_bytes(&self) -> u64 {
        self.regions
            .iter()
            .map(|region| region.frames * FRAME_SIZE)
            .sum()
    }

    fn region_containing(&self, pa: u64) -> Option<&Region> {
        // Regions are sorted and disjoint: the candidate is the last one starting at or below pa.
        let index = self.regions.partition_point(|region| region.start <= pa);
        let region = self.regions.get(index.checked_sub(1)?)?;
        region.contains(pa).then_some(region)
    }

    /// Calls `visit(region, first_frame, frame_count)` for each piece of the frame-aligned range
    /// `[pa, end)` in the (possibly several, adjacent) regions covering it. Fails with
    /// `NotManaged`, before any visit, if part of the range is unmanaged.
    fn for_each_piece(
        &self,
        pa: u64,
        end: u64,
        mut visit: impl FnMut(&Region, u64, u64),
    ) -> Result<(), FrameError> {
        let mut cursor = pa;
        while cursor < end {
            let region = self
                .region_containing(cursor)
                .ok_or(FrameError::NotManaged)?;
            cursor = end.min(region.end());
        }
        let mut cursor = pa;
        while cursor < end {
            let region = self
                .region_containing(cursor)
                .expect("coverage checked above");
            let piece_end = end.min(region.end());
            visit(
                region,
                region.frame_index(cursor),
                (piece_end - cursor) / FRAME_SIZE,
            );
            cursor = piece_end;
        }
        Ok(())
    }

    /// Like [`Self::for_each_piece`] but mutating; the caller has already checked coverage.
    fn for_each_piece_mut(
        &mut self,
        pa: u64,
        end: u64,
        mut visit: impl FnMut(&mut Region, u64, u64),
    ) {
        for region in &mut self.regions {
            let low = pa.max(region.start);
            let high = end.min(region.end());
            if low < high {
                let first = region.frame_index(low);
                visit(region, first, (high - low) / FRAME_SIZE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const RAM_BASE: u64 = 0x4000_0000;

    fn allocator_with(regions: &[(u64, u64)]) -> FrameAllocator {
        let mut allocator = FrameAllocator::new();
        for &(start, end) in regions {
            allocator.add_region(start, end).unwrap();
        }
        allocator
    }

    /// Every frame's state, for "nothing changed" checks.
    fn snapshot(allocator: &FrameAllocator) -> Vec<(u64, u64, Vec<u64>)> {
        allocator
            .regions
            .iter()
            .map(|r| (r.start, r.free_frames, r.bitmap.clone()))
            .collect()
    }

    #[test]
    fn new_allocator_is_empty() {
        let mut allocator = FrameAllocator::new();
        assert_eq!(allocator.total_bytes(), 0);
        assert_eq!(allocator.free_bytes(), 0);
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Err(FrameError::OutOfMemory)
        );
    }

    #[test]
    fn usable_as_a_static() {
        static ALLOCATOR: spin::Mutex<FrameAllocator> = spin::Mutex::new(FrameAllocator::new());
        let mut allocator = ALLOCATOR.lock();
        allocator.add_region(RAM_BASE, RAM_BASE + MIB).unwrap();
        assert_eq!(allocator.total_bytes(), MIB);
    }

    #[test]
    fn add_region_shrinks_inward_to_frames() {
        let allocator = allocator_with(&[(RAM_BASE + 1, RAM_BASE + 3 * FRAME_SIZE + 5)]);
        assert_eq!(allocator.total_bytes(), 2 * FRAME_SIZE);
        assert_eq!(allocator.regions[0].start, RAM_BASE + FRAME_SIZE);
    }

    #[test]
    fn add_region_refuses_empty_and_inverted_ranges() {
        let mut allocator = FrameAllocator::new();
        assert_eq!(
            allocator.add_region(RAM_BASE, RAM_BASE),
            Err(FrameError::ZeroSize)
        );
        assert_eq!(
            allocator.add_region(RAM_BASE + 1, RAM_BASE + FRAME_SIZE + 1),
            Err(FrameError::ZeroSize),
            "less than one whole frame inside"
        );
        assert_eq!(
            allocator.add_region(RAM_BASE + MIB, RAM_BASE),
            Err(FrameError::ZeroSize)
        );
        assert_eq!(allocator.total_bytes(), 0);
    }

    #[test]
    fn add_region_refuses_overlap() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        assert_eq!(
            allocator.add_region(RAM_BASE + MIB - FRAME_SIZE, RAM_BASE + 2 * MIB),
            Err(FrameError::AlreadyInUse)
        );
        assert_eq!(
            allocator.add_region(RAM_BASE - MIB, RAM_BASE + FRAME_SIZE),
            Err(FrameError::AlreadyInUse)
        );
        // Adjacent is fine.
        allocator
            .add_region(RAM_BASE + MIB, RAM_BASE + 2 * MIB)
            .unwrap();
        assert_eq!(allocator.total_bytes(), 2 * MIB);
    }

    #[test]
    fn add_region_refuses_a_seventeenth_region() {
        let mut allocator = FrameAllocator::new();
        for i in 0..MAX_REGIONS as u64 {
            allocator
                .add_region(RAM_BASE + i * MIB, RAM_BASE + i * MIB + FRAME_SIZE)
                .unwrap();
        }
        let extra = RAM_BASE + 100 * MIB;
        assert_eq!(
            allocator.add_region(extra, extra + FRAME_SIZE),
            Err(FrameError::TooManyRegions)
        );
        assert_eq!(allocator.total_bytes(), MAX_REGIONS as u64 * FRAME_SIZE);
    }

    #[test]
    fn allocates_from_the_top_down_deterministically() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        let top = RAM_BASE + MIB;
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Ok(top - FRAME_SIZE)
        );
        assert_eq!(
            allocator.alloc_contiguous(2 * FRAME_SIZE, FRAME_SIZE),
            Ok(top - 3 * FRAME_SIZE)
        );
        assert!(allocator.is_allocated(top - 3 * FRAME_SIZE));
        assert!(allocator.is_allocated(top - 2 * FRAME_SIZE + 17));
        assert!(!allocator.is_allocated(top - 4 * FRAME_SIZE));
        // A freed hole at the top is reused first.
        allocator.free(top - FRAME_SIZE, FRAME_SIZE).unwrap();
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Ok(top - FRAME_SIZE)
        );
    }

    #[test]
    fn a_request_below_a_large_used_block_skips_it_whole() {
        // 64 MiB used near the top (a VM's RAM), 1 MiB free above it: a 2 MiB request must
        // land below the block, found by skipping the block as a whole.
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + 128 * MIB)]);
        let top = RAM_BASE + 128 * MIB;
        allocator.alloc_at(top - 65 * MIB, 64 * MIB).unwrap();
        let below = allocator.alloc_contiguous(2 * MIB, FRAME_SIZE).unwrap();
        assert_eq!(below, top - 67 * MIB);
        // Runs that start in the middle of a word, and one that reaches frame 0.
        let r = &allocator.regions[0];
        let first_used = r.frame_index(top - 67 * MIB);
        assert_eq!(r.used_run_start(first_used + 300), first_used);
        let mut all = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        all.alloc_at(RAM_BASE, MIB).unwrap();
        assert_eq!(all.regions[0].used_run_start(255), 0);
        assert_eq!(
            all.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Err(FrameError::OutOfMemory)
        );
    }

    #[test]
    fn exhaustion_then_success_after_free() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + 4 * FRAME_SIZE)]);
        let mut taken = Vec::new();
        for _ in 0..4 {
            taken.push(allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE).unwrap());
        }
        assert_eq!(allocator.free_bytes(), 0);
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Err(FrameError::OutOfMemory)
        );
        allocator.free(taken[2], FRAME_SIZE).unwrap();
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Ok(taken[2])
        );
    }

    #[test]
    fn contiguous_request_skips_fragmented_space() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + 8 * FRAME_SIZE)]);
        // Used frames at 1 and 5 (counting from the bottom): free runs are 0, 2..5 and 6..8.
        allocator
            .alloc_at(RAM_BASE + FRAME_SIZE, FRAME_SIZE)
            .unwrap();
        allocator
            .alloc_at(RAM_BASE + 5 * FRAME_SIZE, FRAME_SIZE)
            .unwrap();
        assert_eq!(
            allocator.alloc_contiguous(3 * FRAME_SIZE, FRAME_SIZE),
            Ok(RAM_BASE + 2 * FRAME_SIZE)
        );
        assert_eq!(
            allocator.alloc_contiguous(3 * FRAME_SIZE, FRAME_SIZE),
            Err(FrameError::OutOfMemory),
            "3 frames are free in total but not contiguously"
        );
        assert_eq!(allocator.free_bytes(), 3 * FRAME_SIZE);
    }

    #[test]
    fn two_mib_aligned_allocations() {
        // 5 MiB starting 4 KiB past a 2 MiB boundary: 2 MiB-aligned starts inside are
        // RAM_BASE + 2 MiB and RAM_BASE + 4 MiB (the latter only fits up to RAM_BASE + 5 MiB + 4K,
        // so not a full 2 MiB).
        let mut allocator =
            allocator_with(&[(RAM_BASE + FRAME_SIZE, RAM_BASE + 5 * MIB + FRAME_SIZE)]);
        let first = allocator.alloc_contiguous(2 * MIB, 2 * MIB).unwrap();
        assert_eq!(first, RAM_BASE + 2 * MIB);
        assert_eq!(
            allocator.alloc_contiguous(2 * MIB, 2 * MIB),
            Err(FrameError::OutOfMemory),
            "[RAM_BASE+4K, RAM_BASE+2M) holds no aligned 2 MiB run"
        );
        // A 2 MiB-aligned single frame can still be found at RAM_BASE + 4 MiB.
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, 2 * MIB),
            Ok(RAM_BASE + 4 * MIB)
        );
        assert_eq!(allocator.free_bytes(), 5 * MIB - 2 * MIB - FRAME_SIZE);
    }

    #[test]
    fn alignment_search_jumps_below_obstacles() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + 8 * MIB)]);
        // One used frame in each of the top two 2 MiB blocks.
        allocator.alloc_at(RAM_BASE + 7 * MIB, FRAME_SIZE).unwrap();
        allocator.alloc_at(RAM_BASE + 4 * MIB, FRAME_SIZE).unwrap();
        assert_eq!(
            allocator.alloc_contiguous(2 * MIB, 2 * MIB),
            Ok(RAM_BASE + 2 * MIB)
        );
        assert_eq!(allocator.alloc_contiguous(2 * MIB, 2 * MIB), Ok(RAM_BASE));
        assert_eq!(
            allocator.alloc_contiguous(2 * MIB, 2 * MIB),
            Err(FrameError::OutOfMemory)
        );
    }

    #[test]
    fn misaligned_and_zero_size_arguments() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        let before = snapshot(&allocator);
        assert_eq!(
            allocator.alloc_contiguous(0, FRAME_SIZE),
            Err(FrameError::ZeroSize)
        );
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE + 1, FRAME_SIZE),
            Err(FrameError::Misaligned)
        );
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, 3 * FRAME_SIZE),
            Err(FrameError::Misaligned),
            "alignment must be a power of two"
        );
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, 2048),
            Err(FrameError::Misaligned),
            "alignment below a frame"
        );
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, 0),
            Err(FrameError::Misaligned)
        );
        assert_eq!(allocator.alloc_at(RAM_BASE, 0), Err(FrameError::ZeroSize));
        assert_eq!(
            allocator.alloc_at(RAM_BASE + 1, FRAME_SIZE),
            Err(FrameError::Misaligned)
        );
        assert_eq!(
            allocator.alloc_at(RAM_BASE, FRAME_SIZE - 1),
            Err(FrameError::Misaligned)
        );
        assert_eq!(allocator.free(RAM_BASE, 0), Err(FrameError::ZeroSize));
        assert_eq!(
            allocator.free(RAM_BASE + 8, FRAME_SIZE),
            Err(FrameError::Misaligned)
        );
        assert_eq!(snapshot(&allocator), before);
    }

    #[test]
    fn double_free_is_refused_and_changes_nothing() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        let pa = allocator
            .alloc_contiguous(2 * FRAME_SIZE, FRAME_SIZE)
            .unwrap();
        allocator.free(pa, 2 * FRAME_SIZE).unwrap();
        let before = snapshot(&allocator);
        assert_eq!(allocator.free(pa, FRAME_SIZE), Err(FrameError::DoubleFree));
        assert_eq!(snapshot(&allocator), before);
        assert_eq!(allocator.free_bytes(), MIB);
    }

    #[test]
    fn partially_free_range_is_refused_atomically() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        let pa = allocator
            .alloc_contiguous(4 * FRAME_SIZE, FRAME_SIZE)
            .unwrap();
        // Free the last two frames, then try to free all four: two are already free.
        allocator.free(pa + 2 * FRAME_SIZE, 2 * FRAME_SIZE).unwrap();
        let before = snapshot(&allocator);
        assert_eq!(
            allocator.free(pa, 4 * FRAME_SIZE),
            Err(FrameError::DoubleFree)
        );
        assert_eq!(snapshot(&allocator), before);
        assert!(allocator.is_allocated(pa));
        assert!(allocator.is_allocated(pa + FRAME_SIZE));
    }

    #[test]
    fn free_of_unmanaged_range_is_refused_atomically() {
        let top = RAM_BASE + MIB;
        let mut allocator = allocator_with(&[(RAM_BASE, top)]);
        let pa = allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE).unwrap();
        assert_eq!(pa, top - FRAME_SIZE);
        let before = snapshot(&allocator);
        assert_eq!(
            allocator.free(0x1000_0000, FRAME_SIZE),
            Err(FrameError::NotManaged)
        );
        // Straddles the top of the region: the managed part is in use but must stay so.
        assert_eq!(
            allocator.free(pa, 2 * FRAME_SIZE),
            Err(FrameError::NotManaged)
        );
        assert_eq!(
            allocator.free(u64::MAX - FRAME_SIZE + 1, FRAME_SIZE),
            Err(FrameError::NotManaged),
            "range wrapping the address space"
        );
        assert_eq!(snapshot(&allocator), before);
        assert!(allocator.is_allocated(pa));
    }

    #[test]
    fn alloc_at_conflicts_change_nothing() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        allocator
            .alloc_at(RAM_BASE + 4 * FRAME_SIZE, FRAME_SIZE)
            .unwrap();
        let before = snapshot(&allocator);
        assert_eq!(
            allocator.alloc_at(RAM_BASE, 8 * FRAME_SIZE),
            Err(FrameError::AlreadyInUse)
        );
        assert_eq!(
            allocator.alloc_at(RAM_BASE + MIB - FRAME_SIZE, 2 * FRAME_SIZE),
            Err(FrameError::NotManaged)
        );
        assert_eq!(
            allocator.alloc_at(RAM_BASE - FRAME_SIZE, 2 * FRAME_SIZE),
            Err(FrameError::NotManaged)
        );
        assert_eq!(snapshot(&allocator), before);
        allocator.alloc_at(RAM_BASE, 4 * FRAME_SIZE).unwrap();
        assert_eq!(allocator.free_bytes(), MIB - 5 * FRAME_SIZE);
    }

    #[test]
    fn alloc_at_and_free_may_span_adjacent_regions() {
        let mut allocator = allocator_with(&[
            (RAM_BASE + MIB, RAM_BASE + 2 * MIB),
            (RAM_BASE, RAM_BASE + MIB),
        ]);
        let pa = RAM_BASE + MIB - FRAME_SIZE;
        allocator.alloc_at(pa, 2 * FRAME_SIZE).unwrap();
        assert!(allocator.is_allocated(pa));
        assert!(allocator.is_allocated(pa + FRAME_SIZE));
        assert_eq!(allocator.free_bytes(), 2 * MIB - 2 * FRAME_SIZE);
        allocator.free(pa, 2 * FRAME_SIZE).unwrap();
        assert_eq!(allocator.free_bytes(), 2 * MIB);
    }

    #[test]
    fn reserve_carves_holes_and_ignores_unmanaged_parts() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + MIB)]);
        // Grown outward: [base+0x1800, base+0x2001) covers frames 1 and 2.
        allocator.reserve(RAM_BASE + 0x1800, RAM_BASE + 0x2001);
        assert!(!allocator.is_allocated(RAM_BASE));
        assert!(allocator.is_allocated(RAM_BASE + FRAME_SIZE));
        assert!(allocator.is_allocated(RAM_BASE + 2 * FRAME_SIZE));
        assert!(!allocator.is_allocated(RAM_BASE + 3 * FRAME_SIZE));
        assert_eq!(allocator.free_bytes(), MIB - 2 * FRAME_SIZE);
        // Overlapping an existing reservation and running off the region's top.
        allocator.reserve(RAM_BASE + 2 * FRAME_SIZE, RAM_BASE + 2 * MIB);
        assert_eq!(allocator.free_bytes(), FRAME_SIZE);
        // Entirely unmanaged, empty and inverted ranges change nothing.
        allocator.reserve(0, RAM_BASE);
        allocator.reserve(RAM_BASE, RAM_BASE);
        allocator.reserve(RAM_BASE + MIB, RAM_BASE);
        allocator.reserve(u64::MAX - 5, u64::MAX);
        assert_eq!(allocator.free_bytes(), FRAME_SIZE);
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Ok(RAM_BASE)
        );
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Err(FrameError::OutOfMemory)
        );
    }

    #[test]
    fn allocation_avoids_a_reserved_image() {
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + 8 * MIB)]);
        // A "boot bundle" at the top of RAM.
        allocator.reserve(RAM_BASE + 7 * MIB, RAM_BASE + 8 * MIB);
        assert_eq!(
            allocator.alloc_contiguous(2 * MIB, 2 * MIB),
            Ok(RAM_BASE + 4 * MIB)
        );
    }

    #[test]
    fn multiple_regions_highest_first() {
        let mut allocator = allocator_with(&[
            (RAM_BASE, RAM_BASE + 4 * FRAME_SIZE),
            (2 * GIB, 2 * GIB + 2 * FRAME_SIZE),
            (GIB + GIB / 2, GIB + GIB / 2 + FRAME_SIZE),
        ]);
        assert_eq!(allocator.total_bytes(), 7 * FRAME_SIZE);
        let order: Vec<u64> = (0..7)
            .map(|_| allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE).unwrap())
            .collect();
        assert_eq!(
            order,
            [
                2 * GIB + FRAME_SIZE,
                2 * GIB,
                GIB + GIB / 2,
                RAM_BASE + 3 * FRAME_SIZE,
                RAM_BASE + 2 * FRAME_SIZE,
                RAM_BASE + FRAME_SIZE,
                RAM_BASE,
            ]
        );
        // A run larger than the higher regions comes from the lowest one.
        for pa in order {
            allocator.free(pa, FRAME_SIZE).unwrap();
        }
        assert_eq!(
            allocator.alloc_contiguous(3 * FRAME_SIZE, FRAME_SIZE),
            Ok(RAM_BASE + FRAME_SIZE)
        );
    }

    #[test]
    fn free_bytes_accounting() {
        let mut allocator =
            allocator_with(&[(RAM_BASE, RAM_BASE + 2 * MIB), (2 * GIB, 2 * GIB + MIB)]);
        assert_eq!(allocator.total_bytes(), 3 * MIB);
        assert_eq!(allocator.free_bytes(), 3 * MIB);
        let a = allocator
            .alloc_contiguous(64 * FRAME_SIZE, FRAME_SIZE)
            .unwrap();
        let b = allocator.alloc_contiguous(MIB, MIB).unwrap();
        allocator.alloc_at(RAM_BASE, 3 * FRAME_SIZE).unwrap();
        allocator.reserve(RAM_BASE, RAM_BASE + 5 * FRAME_SIZE);
        assert_eq!(
            allocator.free_bytes(),
            3 * MIB - 64 * FRAME_SIZE - MIB - 5 * FRAME_SIZE
        );
        allocator.free(a, 64 * FRAME_SIZE).unwrap();
        allocator.free(b, MIB).unwrap();
        assert_eq!(allocator.free_bytes(), 3 * MIB - 5 * FRAME_SIZE);
        assert_eq!(allocator.total_bytes(), 3 * MIB);
    }

    #[test]
    fn region_at_the_top_of_the_address_space() {
        let top_frame = u64::MAX - FRAME_SIZE + 1;
        let mut allocator = FrameAllocator::new();
        // Ends at u64::MAX (exclusive): the last, partial frame is dropped.
        allocator
            .add_region(top_frame - 4 * FRAME_SIZE, u64::MAX)
            .unwrap();
        assert_eq!(allocator.total_bytes(), 4 * FRAME_SIZE);
        // A start that would round past the top is empty, not a panic.
        assert_eq!(
            allocator.add_region(u64::MAX - 10, u64::MAX),
            Err(FrameError::ZeroSize)
        );
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, FRAME_SIZE),
            Ok(top_frame - FRAME_SIZE)
        );
        assert!(allocator.is_allocated(u64::MAX - FRAME_SIZE - 1));
        assert!(!allocator.is_allocated(u64::MAX), "unmanaged last frame");
        assert_eq!(
            allocator.alloc_contiguous(FRAME_SIZE, 1 << 63),
            Err(FrameError::OutOfMemory)
        );
        assert_eq!(
            allocator.alloc_at(top_frame - FRAME_SIZE, 2 * FRAME_SIZE),
            Err(FrameError::NotManaged)
        );
        assert_eq!(
            allocator.alloc_at(top_frame, FRAME_SIZE),
            Err(FrameError::NotManaged)
        );
        allocator.reserve(top_frame - 2 * FRAME_SIZE, u64::MAX);
        assert_eq!(allocator.free_bytes(), 2 * FRAME_SIZE);
        allocator.free(top_frame - FRAME_SIZE, FRAME_SIZE).unwrap();
        assert_eq!(allocator.free_bytes(), 3 * FRAME_SIZE);
    }

    #[test]
    fn large_sparse_bitmap_search() {
        // 1 GiB = 262144 frames: a 2 MiB request with obstacles every 1 MiB except in the bottom
        // 4 MiB must land at the single aligned run there.
        let mut allocator = allocator_with(&[(RAM_BASE, RAM_BASE + GIB)]);
        let mut pa = RAM_BASE + 4 * MIB;
        while pa < RAM_BASE + GIB {
            allocator.alloc_at(pa, FRAME_SIZE).unwrap();
            pa += MIB;
        }
        assert_eq!(
            allocator.alloc_contiguous(2 * MIB, 2 * MIB),
            Ok(RAM_BASE + 2 * MIB)
        );
        assert_eq!(allocator.alloc_contiguous(2 * MIB, 2 * MIB), Ok(RAM_BASE));
    }

    #[test]
    fn errors_display_text() {
        assert_eq!(
            alloc::format!("{}", FrameError::DoubleFree),
            "range is already free"
        );
        assert_eq!(
            alloc::format!("{}", FrameError::OutOfMemory),
            "out of physical memory"
        );
    }

    /// Drives `steps` random allocations and frees of `sizes` frames at `aligns` (in frames) in
    /// a region of `frames` frames (with `reserved` frames reserved) and checks every answer
    /// against a frame-per-bool model (the highest aligned start of a free run of the size),
    /// the summaries against the bitmap, and that a double free is refused, after every step.
    fn run_against_a_model(
        frames: usize,
        reserved: core::ops::Range<usize>,
        sizes: &[u64],
        aligns: &[u64],
        steps: usize,
        mut seed: u64,
    ) {
        let base = 0x8000_0000u64;
        let pa_of = |f: usize| base + f as u64 * FRAME_SIZE;
        let mut a = FrameAllocator::new();
        a.add_region(base, pa_of(frames)).unwrap();
        a.reserve(pa_of(reserved.start), pa_of(reserved.end));
        let mut model = std::vec![false; frames];
        model[reserved].fill(true);
        let mut live: Vec<(u64, u64)> = Vec::new();
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..steps {
            if rand(3) != 0 || live.is_empty() {
                let size = sizes[rand(sizes.len() as u64) as usize];
                let align = aligns[rand(aligns.len() as u64) as usize];
                let mut run = std::vec![0u64; frames + 1];
                for f in (0..frames).rev() {
                    run[f] = if model[f] { 0 } else { run[f + 1] + 1 };
                }
                let expect = (0..frames)
                    .rev()
                    .find(|&f| (f as u64).is_multiple_of(align) && run[f] >= size)
                    .map(pa_of);
                let got = a
                    .alloc_contiguous(size * FRAME_SIZE, align * FRAME_SIZE)
                    .ok();
                assert_eq!(got, expect, "step {step}: {size} frames, align {align}");
                if let Some(pa) = got {
                    let f = ((pa - base) / FRAME_SIZE) as usize;
                    model[f..f + size as usize].fill(true);
                    live.push((pa, size));
                }
            } else {
                let (pa, size) = live.swap_remove(rand(live.len() as u64) as usize);
                a.free(pa, size * FRAME_SIZE).unwrap();
                // Freed again: refused, nothing changes.
                assert_eq!(a.free(pa, FRAME_SIZE), Err(FrameError::DoubleFree));
                let f = ((pa - base) / FRAME_SIZE) as usize;
                model[f..f + size as usize].fill(false);
            }
            a.regions[0].check_summaries();
            let free = model.iter().filter(|u| !**u).count() as u64;
            assert_eq!(a.free_bytes(), free * FRAME_SIZE, "step {step}");
        }
        for (f, used) in model.iter().enumerate() {
            assert_eq!(a.is_allocated(pa_of(f)), *used, "frame {f}");
        }
    }

    /// Sizes and alignments that cross word boundaries, whole words and 2 MiB runs, in a
    /// region whose last bitmap word is partial (3,000 frames).
    #[test]
    fn matches_a_plain_model_under_random_use() {
        let sizes = [1, 3, 63, 64, 65, 130, 512, 700];
        run_against_a_model(
            3000,
            0..0,
            &sizes,
            &[1, 1, 16, 512],
            4000,
            0x2545_f491_4f6c_dd1d,
        );
    }

    /// A region whose summaries span several words (40,000 frames: 625 bitmap words, 10
    /// summary words), a reserved range inside it, runs of up to 9,000 frames.
    #[test]
    fn summaries_stay_exact_on_a_large_region() {
        let sizes = [1, 63, 64, 65, 700, 4096, 9000];
        run_against_a_model(
            40_000,
            1000..1100,
            &sizes,
            &[1, 16, 512],
            600,
            0x9e37_79b9_7f4a_7c15,
        );
    }
}
