//! Order statistics of benchmark samples: the benchmarks that measure one event at a time
//! (`bench_virq`, `bench_switch`) report the median, which an occasional preemption tick
//! landing inside one sample cannot move, and the minimum.

/// The minimum and the median of `samples` (sorted in place); `None` if there are none. For an
/// even count the median is the lower of the two middle samples, so it is always a sample.
pub fn min_median(samples: &mut [u64]) -> Option<(u64, u64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    Some((samples[0], samples[(samples.len() - 1) / 2]))
}

/// How many of `samples` differ from `value`.
pub fn count_other_than(samples: &[u64], value: u64) -> usize {
    samples.iter().filter(|&&s| s != value).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_and_median() {
        assert_eq!(min_median(&mut []), None);
        assert_eq!(min_median(&mut [7]), Some((7, 7)));
        assert_eq!(min_median(&mut [9, 3, 5]), Some((3, 5)));
        assert_eq!(min_median(&mut [9, 3, 5, 4]), Some((3, 4)));
        let mut v = [120, 120, 5000, 119, 120];
        assert_eq!(min_median(&mut v), Some((119, 120)));
        assert_eq!(count_other_than(&v, 120), 2);
    }
}
