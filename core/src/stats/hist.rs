//! A mergeable latency histogram: log-linear buckets over whole milliseconds.
//!
//! Values below 32 ms get a bucket each; above that every power of two is cut into 32 equal
//! buckets, so a bucket is never wider than 1/32 of its lower bound and a percentile read from
//! it is within about 3% of the exact one. Histograms from many isolates and minutes merge by
//! adding counts, which is what lets the stats be aggregated anywhere and summed on read. Only
//! non-empty buckets are stored (a few dozen for real traffic), as `[[bucket, count], ...]`, and
//! held in memory the same way, in bucket order: merging two histograms is one pass over both.
//!
//! This does not keep the raw values, and so cannot give a mean of latencies exactly; the sum
//! is kept beside the counts for that.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Sub-buckets per power of two: 2^5 = 32, about 3% relative width.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped to 2^31 - 1 ms (about 24 days); nothing real is slower.
const MAX_VALUE: u64 = (1 << 31) - 1;

/// The bucket holding `v` milliseconds.
fn bucket_of(v: u64) -> u16 {
    let v = v.min(MAX_VALUE);
    if v < SUB {
        return v as u16;
    }
    let exp = 63 - v.leading_zeros(); // v in [2^exp, 2^(exp+1)), exp >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    (SUB + u64::from(shift) * SUB + sub) as u16
}

/// The range `[low, high]` of values in bucket `b`.
fn bounds_of(b: u16) -> (u64, u64) {
    let b = u64::from(b);
    if b < SUB {
        return (b, b);
    }
    let shift = (b - SUB) / SUB;
    let sub = (b - SUB) % SUB;
    let low = (SUB + sub) << shift;
    (low, low + (1 << shift) - 1)
}

/// True when a bucket begins at `ms`: no bucket holds values on both sides of it, so the count
/// of values below it is exact.
pub fn is_boundary(ms: u64) -> bool {
    ms <= MAX_VALUE && bounds_of(bucket_of(ms)).0 == ms
}

/// Counts of latencies by bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// `(bucket, count)` in ascending bucket order, each bucket once.
    counts: Vec<(u16, u64)>,
    count: u64,
    sum_ms: u64,
}

impl Histogram {
    /// Records one value, in milliseconds.
    pub fn record(&mut self, ms: u64) {
        let slot = self.slot(bucket_of(ms));
        *slot = slot.saturating_add(1);
        self.count = self.count.saturating_add(1);
        self.sum_ms = self.sum_ms.saturating_add(ms.min(MAX_VALUE));
    }

    /// Records `n` values of `ms` milliseconds at once.
    pub fn record_n(&mut self, ms: u64, n: u64) {
        if n == 0 {
            return;
        }
        let slot = self.slot(bucket_of(ms));
        *slot = slot.saturating_add(n);
        self.count = self.count.saturating_add(n);
        self.sum_ms = self
            .sum_ms
            .saturating_add(ms.min(MAX_VALUE).saturating_mul(n));
    }

    /// Adds every count of `other` to this one.
    pub fn merge(&mut self, other: &Histogram) {
        let same_buckets = self.counts.len() == other.counts.len()
            && self
                .counts
                .iter()
                .zip(&other.counts)
                .all(|(a, b)| a.0 == b.0);
        if same_buckets {
            for (slot, &(_, n)) in self.counts.iter_mut().zip(&other.counts) {
                slot.1 = slot.1.saturating_add(n);
            }
        } else if self.counts.is_empty() {
            self.counts.clone_from(&other.counts);
        } else {
            self.counts = merged(&self.counts, &other.counts);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
    }

    /// The count of bucket `b`, inserted at 0 in its place when absent.
    fn slot(&mut self, b: u16) -> &mut u64 {
        let i = match self.counts.binary_search_by_key(&b, |&(bucket, _)| bucket) {
            Ok(i) => i,
            Err(i) => {
                self.counts.insert(i, (b, 0));
                i
            }
        };
        &mut self.counts[i].1
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean, or `None` when empty.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms as f64 / self.count as f64)
    }

    /// The `q`-quantile (0 < q ≤ 1) by nearest rank: the smallest recorded value with at least
    /// `ceil(q × count)` values at or below it, reported as the middle of its bucket. `None`
    /// when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(b, n) in &self.counts {
            seen = seen.saturating_add(n);
            if seen >= rank {
                let (low, high) = bounds_of(b);
                return Some(low + (high - low) / 2);
            }
        }
        // Unreachable while `count` equals the sum of the buckets; answer the top bucket.
        self.counts.last().map(|&(b, _)| bounds_of(b).1)
    }

    /// The sum of the recorded values, in milliseconds (saturating).
    pub fn sum_ms(&self) -> u64 {
        self.sum_ms
    }

    /// How many recorded values are below each of `edges_ms` (ascending): cumulative counts, as
    /// a Prometheus histogram's buckets. Exact at an edge that is a bucket boundary
    /// ([`is_boundary`]); a bucket straddling any other edge counts as above it.
    pub fn counts_below(&self, edges_ms: &[u64]) -> Vec<u64> {
        let mut buckets = self.counts.iter().peekable();
        let mut below = 0u64;
        edges_ms
            .iter()
            .map(|&edge| {
                while let Some(&&(b, n)) = buckets.peek() {
                    if bounds_of(b).1 >= edge {
                        break;
                    }
                    below = below.saturating_add(n);
                    buckets.next();
                }
                below
            })
            .collect()
    }

    /// How many recorded values are above `ms`, counting a bucket that straddles `ms` as above
    /// when its middle is. Used to count "slow" requests against a reference latency.
    pub fn count_above(&self, ms: u64) -> u64 {
        self.counts
            .iter()
            .filter(|&&(b, _)| {
                let (low, high) = bounds_of(b);
                low + (high - low) / 2 > ms
            })
            .map(|&(_, n)| n)
            .fold(0, u64::saturating_add)
    }
}

/// The bucket counts of `a` and `b` (each in ascending bucket order) added up, in order.
fn merged(a: &[(u16, u64)], b: &[(u16, u64)]) -> Vec<(u16, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        if x.0 == y.0 {
            out.push((x.0, x.1.saturating_add(y.1)));
            i += 1;
            j += 1;
        } else if x.0 < y.0 {
            out.push(x);
            i += 1;
        } else {
            out.push(y);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The stored form: `{"n": count, "sum": ms, "b": [[bucket, count], ...]}`.
#[derive(Serialize, Deserialize)]
struct Stored {
    n: u64,
    sum: u64,
    b: Vec<(u16, u64)>,
}

impl Serialize for Histogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            n: self.count,
            sum: self.sum_ms,
            b: self.counts.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(d)?;
        let max_bucket = bucket_of(MAX_VALUE);
        // Each bucket into its place, as recording does (at most a few hundred buckets exist,
        // and what was stored is already in order).
        let mut h = Histogram::default();
        let mut total = 0u64;
        for (bucket, n) in stored.b {
            if bucket > max_bucket {
                return Err(serde::de::Error::custom(format!(
                    "no histogram bucket {bucket}"
                )));
            }
            let slot = h.slot(bucket);
            *slot = slot.saturating_add(n);
            // Saturating, as recording is: a histogram held at its maximum count still loads.
            total = total.saturating_add(n);
        }
        if total != stored.n {
            return Err(serde::de::Error::custom(format!(
                "histogram buckets hold {total} values but its count says {}",
                stored.n
            )));
        }
        Ok(Histogram {
            count: stored.n,
            sum_ms: stored.sum,
            ..h
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank quantile of sorted values, the reference the histogram must match.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    /// A deterministic spread of latencies: xorshift, shaped log-uniform from 1 ms to ~65 s.
    fn values(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                (2f64.powf(u * 16.0)) as u64
            })
            .collect()
    }

    /// A histogram of `vals`, recorded one by one.
    fn recorded(vals: &[u64]) -> Histogram {
        let mut h = Histogram::default();
        vals.iter().for_each(|&v| h.record(v));
        h
    }

    #[test]
    fn buckets_cover_values_without_gaps() {
        // Every value up to 2^20 falls in a bucket whose bounds contain it, buckets are in
        // order, and each is at most 1/32 of its lower bound wide.
        let mut last = 0;
        for v in 0..(1u64 << 20) {
            let b = bucket_of(v);
            let (low, high) = bounds_of(b);
            assert!(low <= v && v <= high, "{v} in bucket {b} [{low}, {high}]");
            assert!(b >= last);
            last = b;
            assert!((high - low + 1) * 32 <= low.max(32), "bucket {b} too wide");
        }
        assert_eq!(bucket_of(u64::MAX), bucket_of(MAX_VALUE));
    }

    #[test]
    fn quantiles_match_a_sorted_reference() {
        for seed in [1, 2, 3] {
            let vals = values(seed, 5000);
            let mut h = Histogram::default();
            vals.iter().for_each(|&v| h.record(v));
            let mut sorted = vals.clone();
            sorted.sort_unstable();
            for q in [0.5, 0.9, 0.95, 0.99, 1.0] {
                let (got, want) = (h.quantile_ms(q).unwrap(), exact(&sorted, q));
                // Same bucket, reported at its middle: off by at most half a bucket width,
                // i.e. 1/64 of the value, and exact below 32 ms.
                let tolerance = want / 64 + 1;
                assert!(got.abs_diff(want) <= tolerance, "q{q}: {got} vs {want}");
            }
            let mean = vals.iter().sum::<u64>() as f64 / vals.len() as f64;
            assert!((h.mean_ms().unwrap() - mean).abs() < 1e-6);
        }
    }

    #[test]
    fn small_cases_by_hand() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for v in [10, 20, 30, 40] {
            h.record(v);
        }
        // Nearest rank: p50 is the 2nd of 4 values, p95 and p99 the 4th.
        assert_eq!(h.quantile_ms(0.5), Some(20));
        assert_eq!(h.quantile_ms(0.95), Some(40));
        // 40 is in bucket [40, 40]: 32..64 has width 1.
        assert_eq!(h.quantile_ms(0.99), Some(40));
        // 1000 falls in [992, 1007] (width 16 from 512 up): reported as 992 + 15/2 = 999.
        h.record(1000);
        assert_eq!(h.quantile_ms(1.0), Some(999));
        assert_eq!(h.count_above(30), 2);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (a, b) = (values(7, 3000), values(8, 2000));
        let mut ha = recorded(&a);
        ha.merge(&recorded(&b));
        assert_eq!(ha, recorded(&[a.as_slice(), &b].concat()));
        let mut sorted: Vec<u64> = a.iter().chain(&b).copied().collect();
        sorted.sort_unstable();
        let (got, want) = (ha.quantile_ms(0.95).unwrap(), exact(&sorted, 0.95));
        assert!(got.abs_diff(want) <= want / 64 + 1);
    }

    #[test]
    fn counts_below_a_boundary_are_exact() {
        // Boundaries: every value below 64, then every 2nd to 128, every 4th to 256, ...
        assert!([0, 31, 63, 64, 66, 100, 128, 200, 1600, 409_600].map(is_boundary) == [true; 10]);
        assert!(![65, 101, 130, 250, 1000].into_iter().any(is_boundary));
        let vals = values(4, 5000);
        let mut h = Histogram::default();
        vals.iter().for_each(|&v| h.record(v));
        let edges = [10, 100, 1600, 25_600];
        let got = h.counts_below(&edges);
        let want: Vec<u64> = edges
            .iter()
            .map(|&e| vals.iter().filter(|&&v| v < e).count() as u64)
            .collect();
        assert_eq!(got, want);
        // 1000 is not a boundary: [992, 1007] straddles it and counts above.
        let mut h = Histogram::default();
        h.record(999);
        h.record(1003);
        assert_eq!(h.counts_below(&[992, 1000, 1008]), [0, 0, 2]);
        assert_eq!(h.sum_ms(), 2002);
    }

    #[test]
    fn stored_form_round_trips_and_is_checked() {
        let mut h = Histogram::default();
        for v in [3, 3, 700, 120_000] {
            h.record(v);
        }
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Histogram>(r#"{"n":2,"sum":0,"b":[[1,1]]}"#).is_err());
        assert!(serde_json::from_str::<Histogram>(r#"{"n":1,"sum":0,"b":[[60000,1]]}"#).is_err());
        // Buckets out of order, or one listed twice, load as the same counts in order.
        let odd: Histogram =
            serde_json::from_str(r#"{"n":6,"sum":0,"b":[[9,1],[3,2],[9,3]]}"#).unwrap();
        assert_eq!(odd.counts, [(3, 2), (9, 4)]);
        assert_eq!(
            serde_json::to_string(&odd).unwrap(),
            r#"{"n":6,"sum":0,"b":[[3,2],[9,4]]}"#
        );
    }

    /// Every shape of merge: into an empty histogram, of one with the same buckets, of disjoint
    /// and interleaved ones, of an empty one; each equals recording all the values in one.
    #[test]
    fn merges_of_every_shape_equal_recording_in_one() {
        let sets: [&[u64]; 6] = [
            &[],
            &[5, 700, 700, 90_000],
            &[5, 700, 90_000],
            &[1, 40, 41_000],
            &[6, 700, 800, 1 << 40],
            &[0, 5, 31, 32, 33, 700, 90_000, 2_000_000],
        ];
        for a in sets {
            for b in sets {
                let mut ha = recorded(a);
                ha.merge(&recorded(b));
                assert_eq!(ha, recorded(&[a, b].concat()), "{a:?} + {b:?}");
                assert!(ha.counts.windows(2).all(|w| w[0].0 < w[1].0));
            }
        }
    }
}
