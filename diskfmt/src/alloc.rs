//! First-fit allocation of pool extents, with free space derived from the records.
//!
//! There is no free-space bitmap on the disk that could disagree with the records: the caller
//! passes the extents of every valid record, and the free space is what lies between them.
//! Extents are [`POOL_ALIGN`] sectors aligned, so free runs are too.
//!
//! The functions sort the `used` slice in place (the caller's scratch copy); they accept any
//! extents, even overlapping or outside the pool, and never return an extent that overlaps one
//! of them or leaves the pool.

use crate::{Extent, POOL_ALIGN};

/// Why nothing was allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// A request for zero sectors (the caller should use [`Extent::EMPTY`]).
    Empty,
    /// No free run is long enough; `largest` is the longest free run, in sectors.
    NoSpace { requested: u64, largest: u64 },
}

impl core::fmt::Display for AllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AllocError::Empty => write!(f, "empty allocation"),
            AllocError::NoSpace { requested, largest } => write!(
                f,
                "no free run of {requested} sectors in the pool (largest is {largest})"
            ),
        }
    }
}

const fn align_up(x: u64) -> u64 {
    x.saturating_add(POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN
}

const fn align_down(x: u64) -> u64 {
    x / POOL_ALIGN * POOL_ALIGN
}

/// The free runs of `pool` between the `used` extents (sorted by start), lowest first.
struct Gaps<'a> {
    pool_end: u64,
    used: &'a [Extent],
    next: usize,
    /// Everything below is used or already reported.
    cursor: u64,
    done: bool,
}

impl Iterator for Gaps<'_> {
    type Item = Extent;

    fn next(&mut self) -> Option<Extent> {
        while !self.done {
            // The next obstacle: the next non-empty used extent, or the pool's end.
            let (limit, resume) = loop {
                match self.used.get(self.next) {
                    Some(e) if e.is_empty() => self.next += 1,
                    Some(e) => {
                        self.next += 1;
                        break (e.start.min(self.pool_end), e.end());
                    }
                    None => {
                        self.done = true;
                        break (self.pool_end, self.pool_end);
                    }
                }
            };
            let start = align_up(self.cursor);
            let end = align_down(limit);
            self.cursor = self.cursor.max(resume);
            if self.cursor >= self.pool_end {
                self.done = true;
            }
            if end > start {
                return Some(Extent::new(start, end - start));
            }
        }
        None
    }
}

fn gaps(pool: Extent, used: &mut [Extent]) -> Gaps<'_> {
    used.sort_unstable();
    Gaps {
        pool_end: align_down(pool.end()),
        used,
        next: 0,
        cursor: pool.start,
        done: pool.is_empty(),
    }
}

/// The lowest free run of `pool` that holds `sectors` sectors (rounded up to [`POOL_ALIGN`]).
pub fn first_fit(pool: Extent, used: &mut [Extent], sectors: u64) -> Result<Extent, AllocError> {
    if sectors == 0 {
        return Err(AllocError::Empty);
    }
    let want = align_up(sectors);
    let mut largest = 0;
    for gap in gaps(pool, used) {
        if gap.sectors >= want {
            return Ok(Extent::new(gap.start, want));
        }
        largest = largest.max(gap.sectors);
    }
    Err(AllocError::NoSpace {
        requested: want,
        largest,
    })
}

/// Sectors of `pool` covered by no `used` extent (in whole aligned runs).
pub fn free_sectors(pool: Extent, used: &mut [Extent]) -> u64 {
    gaps(pool, used).map(|g| g.sectors).sum()
}

/// The longest free run of `pool`, in sectors.
pub fn largest_free(pool: Extent, used: &mut [Extent]) -> u64 {
    gaps(pool, used).map(|g| g.sectors).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: Extent = Extent::new(1000, 200); // sectors 1000..1200, aligned

    fn e(start: u64, sectors: u64) -> Extent {
        Extent::new(start, sectors)
    }

    #[test]
    fn empty_pool_and_zero_requests() {
        assert_eq!(first_fit(POOL, &mut [], 200), Ok(POOL));
        assert_eq!(first_fit(POOL, &mut [], 0), Err(AllocError::Empty));
        assert_eq!(
            first_fit(POOL, &mut [], 208),
            Err(AllocError::NoSpace {
                requested: 208,
                largest: 200
            })
        );
        assert_eq!(
            first_fit(Extent::EMPTY, &mut [], 8),
            Err(AllocError::NoSpace {
                requested: 8,
                largest: 0
            })
        );
        assert_eq!(free_sectors(POOL, &mut []), 200);
    }

    #[test]
    fn requests_round_up_to_whole_pages() {
        assert_eq!(first_fit(POOL, &mut [], 1), Ok(e(1000, 8)));
        assert_eq!(first_fit(POOL, &mut [e(1000, 8)], 9), Ok(e(1008, 16)));
    }

    #[test]
    fn first_fit_takes_the_lowest_hole_that_fits() {
        // Holes: 1000..1016 (16), 1032..1080 (48), 1096..1200 (104).
        let mut used = [e(1080, 16), e(1016, 16)];
        assert_eq!(first_fit(POOL, &mut used, 16), Ok(e(1000, 16)), "exact fit");
        assert_eq!(first_fit(POOL, &mut used, 24), Ok(e(1032, 24)));
        assert_eq!(first_fit(POOL, &mut used, 48), Ok(e(1032, 48)), "exact fit");
        assert_eq!(first_fit(POOL, &mut used, 56), Ok(e(1096, 56)));
        assert_eq!(
            first_fit(POOL, &mut used, 104),
            Ok(e(1096, 104)),
            "up to the end"
        );
        assert_eq!(
            first_fit(POOL, &mut used, 112),
            Err(AllocError::NoSpace {
                requested: 112,
                largest: 104
            }),
            "fragmented: 168 free, but not in one run"
        );
        assert_eq!(free_sectors(POOL, &mut used), 168);
        assert_eq!(largest_free(POOL, &mut used), 104);
    }

    #[test]
    fn exhaustion_then_reuse_of_a_freed_hole() {
        let mut used = Vec::new();
        for i in 0..25 {
            let got = first_fit(POOL, &mut used, 8).unwrap();
            assert_eq!(got, e(1000 + 8 * i, 8));
            used.push(got);
        }
        assert_eq!(free_sectors(POOL, &mut used), 0);
        assert!(first_fit(POOL, &mut used, 8).is_err());
        used.retain(|x| x.start != 1080);
        assert_eq!(first_fit(POOL, &mut used, 8), Ok(e(1080, 8)));
        assert!(first_fit(POOL, &mut used, 16).is_err());
    }

    #[test]
    fn odd_obstacles_are_respected() {
        // Unaligned, overlapping, duplicated, empty and out-of-pool extents (a corrupt table
        // the store would refuse, but the allocator must still never overlap them).
        let mut used = [
            e(1003, 2),
            e(1003, 2),
            e(1010, 30),
            e(1020, 5),
            e(0, 0),
            e(5000, 8),
            e(900, 108),
            e(1190, 50),
        ];
        // 900..1008 and 1003..1005 cover the start; 1010..1040 next; 1190.. the end.
        // Free: 1008..1010 (too short once aligned: 1008..1008), 1040..1184 aligned.
        assert_eq!(first_fit(POOL, &mut used, 8), Ok(e(1040, 8)));
        assert_eq!(free_sectors(POOL, &mut used), 1184 - 1040);
    }

    /// A small deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random allocations and frees against a sector-by-sector model: never an overlap, never
    /// outside the pool, always aligned, always the lowest fit, and the free count matches.
    #[test]
    fn random_alloc_free_never_overlaps_and_is_first_fit() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let pool = e(64, 8 * 256); // 256 pages
            let mut used: Vec<Extent> = Vec::new();
            for step in 0..2000 {
                if used.is_empty() || rng.below(3) != 0 {
                    let want = 1 + rng.below(8 * 24);
                    let mut scratch = used.clone();
                    let got = first_fit(pool, &mut scratch, want);
                    // The model: pages in use, and the lowest run of free pages.
                    let mut taken = [false; 256];
                    for u in &used {
                        for p in (u.start - 64) / 8..(u.end() - 64) / 8 {
                            taken[p as usize] = true;
                        }
                    }
                    let pages = want.div_ceil(8) as usize;
                    let model = (0..=256 - pages.min(256))
                        .find(|&p| p + pages <= 256 && taken[p..p + pages].iter().all(|t| !t));
                    match (got, model) {
                        (Ok(x), Some(p)) => {
                            assert_eq!(
                                x,
                                e(64 + 8 * p as u64, 8 * pages as u64),
                                "seed {seed} step {step}"
                            );
                            assert!(x.within(&pool) && x.is_aligned() && x.sectors >= want);
                            assert!(
                                used.iter().all(|u| !u.overlaps(&x)),
                                "seed {seed} step {step}"
                            );
                            used.push(x);
                        }
                        (Err(AllocError::NoSpace { .. }), None) => {}
                        other => panic!("seed {seed} step {step}: {other:?}"),
                    }
                } else {
                    let i = rng.below(used.len() as u64) as usize;
                    used.swap_remove(i);
                }
                let in_use: u64 = used.iter().map(|u| u.sectors).sum();
                assert_eq!(free_sectors(pool, &mut used.clone()), pool.sectors - in_use);
            }
        }
    }
}
