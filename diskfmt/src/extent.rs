//! A run of sectors on the disk.

use crate::SECTOR_BYTES;

/// `sectors` sectors from sector `start`. The empty extent is `(0, 0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    pub start: u64,
    pub sectors: u64,
}

impl Extent {
    pub const EMPTY: Extent = Extent {
        start: 0,
        sectors: 0,
    };

    pub const fn new(start: u64, sectors: u64) -> Extent {
        Extent { start, sectors }
    }

    pub const fn is_empty(&self) -> bool {
        self.sectors == 0
    }

    /// One past the last sector. Saturates, so that a corrupt extent that wraps is simply
    /// outside every pool (decoders refuse those anyway).
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.sectors)
    }

    /// Size in bytes (saturating).
    pub const fn bytes(&self) -> u64 {
        self.sectors.saturating_mul(SECTOR_BYTES)
    }

    /// Whether the two share a sector (empty extents share none).
    pub const fn overlaps(&self, other: &Extent) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && self.start < other.end()
            && other.start < self.end()
    }

    /// Whether every sector of `self` is inside `outer` (the empty extent is inside anything).
    pub const fn within(&self, outer: &Extent) -> bool {
        self.is_empty() || (self.start >= outer.start && self.end() <= outer.end())
    }

    /// Whether `start` and `end` fall on [`crate::POOL_ALIGN`] sector boundaries.
    pub const fn is_aligned(&self) -> bool {
        self.start.is_multiple_of(crate::POOL_ALIGN)
            && self.sectors.is_multiple_of(crate::POOL_ALIGN)
    }

    pub(crate) fn encode(&self, b: &mut [u8], at: usize) {
        crate::bytes::put_u64(b, at, self.start);
        crate::bytes::put_u64(b, at + 8, self.sectors);
    }

    /// Reads an extent; `None` if it wraps past `u64::MAX`.
    pub(crate) fn decode(b: &[u8], at: usize) -> Option<Extent> {
        let e = Extent {
            start: crate::bytes::get_u64(b, at),
            sectors: crate::bytes::get_u64(b, at + 8),
        };
        e.start.checked_add(e.sectors)?;
        Some(e)
    }
}

/// The number of sectors holding `bytes` bytes, rounded up to [`crate::POOL_ALIGN`]; `None`
/// on overflow.
pub const fn sectors_for(bytes: u64) -> Option<u64> {
    let Some(sectors) = bytes.checked_add(SECTOR_BYTES - 1) else {
        return None;
    };
    let sectors = sectors / SECTOR_BYTES;
    match sectors.checked_add(crate::POOL_ALIGN - 1) {
        Some(s) => Some(s / crate::POOL_ALIGN * crate::POOL_ALIGN),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_containment() {
        let a = Extent::new(10, 10);
        assert!(a.overlaps(&Extent::new(19, 1)));
        assert!(
            !a.overlaps(&Extent::new(20, 5)),
            "adjacent is not overlapping"
        );
        assert!(!a.overlaps(&Extent::new(0, 10)));
        assert!(!a.overlaps(&Extent::new(12, 0)), "empty overlaps nothing");
        assert!(Extent::new(12, 3).within(&a));
        assert!(!Extent::new(12, 9).within(&a));
        assert!(Extent::EMPTY.within(&a));
        assert_eq!(Extent::new(u64::MAX, 5).end(), u64::MAX);
    }

    #[test]
    fn sizes_round_to_whole_aligned_sectors() {
        assert_eq!(sectors_for(0), Some(0));
        assert_eq!(sectors_for(1), Some(8));
        assert_eq!(sectors_for(4096), Some(8));
        assert_eq!(sectors_for(4097), Some(16));
        assert_eq!(sectors_for(u64::MAX), None);
    }
}
