//! A latency histogram for INFO latencystats, in the spirit of the HdrHistogram Redis uses:
//! values from 1 ns to 1 s in log-linear buckets, 32 per power of two (about 3 % precision).
//! Hand-written because commands record from several threads at once (io-threads): the
//! `hdrhistogram` crate records through `&mut`, which would put a lock on every command;
//! these buckets are statistics counters.

use super::counter::Counter;

const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Values below this have a bucket each.
const LINEAR: u64 = 2 * SUB_BUCKETS;
const MAX_VALUE: u64 = 1_000_000_000;
const BUCKETS: usize = bucket(MAX_VALUE) + 1;

const fn bucket(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros() as u64;
    let shift = exponent - SUB_BUCKET_BITS as u64;
    let top = value >> shift;
    (LINEAR + (shift - 1) * SUB_BUCKETS + (top - SUB_BUCKETS)) as usize
}

/// The highest value that falls in `index`, which percentiles report (as HdrHistogram's
/// `highest_equivalent_value`).
fn highest_value(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let shift = (index - LINEAR) / SUB_BUCKETS + 1;
    let top = (index - LINEAR) % SUB_BUCKETS + SUB_BUCKETS;
    ((top + 1) << shift) - 1
}

pub struct Histogram {
    counts: Box<[Counter]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| Counter::default()).collect(),
        }
    }
}

impl Histogram {
    /// Records a duration in nanoseconds, clamped to 1 ns .. 1 s.
    pub fn record(&self, nanos: u64) {
        let value = nanos.clamp(1, MAX_VALUE);
        self.counts[bucket(value)].add(1);
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(Counter::get).sum()
    }

    /// The value at `percentile` (0 to 100): the smallest bucket holding at least that share
    /// of the values, and at least one value.
    pub fn value_at(&self, percentile: f64) -> u64 {
        let total = self.total();
        let wanted = ((percentile / 100.0 * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count.get();
            if seen >= wanted {
                return highest_value(index);
            }
        }
        0
    }

    pub fn reset(&self) {
        for count in self.counts.iter() {
            count.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order() {
        let mut last = 0;
        for value in [1, 63, 64, 65, 100, 1000, 50_000_000, MAX_VALUE] {
            let index = bucket(value);
            assert!(index >= last && index < BUCKETS, "{value}");
            assert!(highest_value(index) >= value, "{value}");
            assert!(
                highest_value(index) as f64 <= value as f64 * 1.04,
                "{value}"
            );
            last = index;
        }
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        for nanos in 1..=100u64 {
            h.record(nanos * 1000);
        }
        let p50 = h.value_at(50.0);
        assert!((50_000..=51_800).contains(&p50), "{p50}");
        assert!(h.value_at(100.0) >= 100_000);
        assert!(h.value_at(0.0) >= 1000 && h.value_at(0.0) < 1040);
    }
}
