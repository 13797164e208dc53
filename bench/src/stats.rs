//! Latency histograms (hdrhistogram) and the arithmetic behind the reports:
//! percentiles, rates and RSS drift.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Errors seen by a scenario's tasks: how many, and the first one's text
/// (enough to tell what went wrong without flooding the report).
#[derive(Default)]
pub struct Errors {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Errors {
    /// Counts an error; `describe` runs only for the first one.
    pub fn record(&self, describe: impl FnOnce() -> String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(describe);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn first(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Highest latency recorded, in microseconds (values above are clamped).
const MAX_US: u64 = 120_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records `us` microseconds, clamping into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// Latency distribution in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Latency {
            count: h.len(),
            mean_ms: round3(h.mean() / 1000.0),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// A histogram split into shards so that many tasks on several threads can
/// record without contending on one lock.
pub struct ShardedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    pub fn new(shards: usize) -> Self {
        ShardedHistogram {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    pub fn record(&self, shard: usize, us: u64) {
        let mut h = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        record(&mut h, us);
    }

    /// Empties every shard.
    pub fn reset(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|e| e.into_inner()).reset();
        }
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(|e| e.into_inner());
            out.add(&*h).expect("same bounds");
        }
        out
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `n / secs`, 0 when no time passed.
pub fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// RSS drift over a run sampled as `(seconds since start, rss bytes)`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Drift {
    /// Samples at or after the warm-up that the drift is computed from.
    pub samples_after_warmup: usize,
    /// Mean RSS of the first `window` samples after warm-up, bytes.
    pub rss_start_bytes: u64,
    /// Mean RSS of the last `window` samples, bytes.
    pub rss_end_bytes: u64,
    /// (end - start) / start, percent.
    pub drift_pct: f64,
    /// Least-squares slope over all samples after warm-up, percent of the
    /// start value per minute.
    pub slope_pct_per_min: f64,
}

/// Computes drift from samples taken after `warmup_s`, averaging `window`
/// samples at each end to smooth allocator noise. `None` if fewer than two
/// samples remain after warm-up.
pub fn drift(samples: &[(f64, u64)], warmup_s: f64, window: usize) -> Option<Drift> {
    let after: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warmup_s)
        .collect();
    if after.len() < 2 {
        return None;
    }
    let w = window.clamp(1, after.len() / 2);
    let mean = |s: &[(f64, u64)]| s.iter().map(|(_, r)| *r as f64).sum::<f64>() / s.len() as f64;
    let start = mean(&after[..w]);
    let end = mean(&after[after.len() - w..]);
    let drift_pct = if start > 0.0 {
        (end - start) / start * 100.0
    } else {
        0.0
    };
    let slope = slope_per_s(&after);
    let slope_pct_per_min = if start > 0.0 {
        slope * 60.0 / start * 100.0
    } else {
        0.0
    };
    Some(Drift {
        samples_after_warmup: after.len(),
        rss_start_bytes: start.round() as u64,
        rss_end_bytes: end.round() as u64,
        drift_pct: round3(drift_pct),
        slope_pct_per_min: round3(slope_pct_per_min),
    })
}

/// Least-squares slope (bytes per second) of `(t, y)` points.
fn slope_per_s(points: &[(f64, u64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, y) in points {
        num += (t - mx) * (*y as f64 - my);
        den += (t - mx) * (t - mx);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_all_and_keep_the_first() {
        let e = Errors::default();
        assert_eq!((e.count(), e.first()), (0, None));
        e.record(|| "first".into());
        e.record(|| panic!("only the first error is described"));
        assert_eq!((e.count(), e.first().as_deref()), (2, Some("first")));
    }

    #[test]
    fn percentiles_of_uniform_1_to_1000_ms() {
        let mut h = new_histogram();
        for ms in 1..=1000u64 {
            record(&mut h, ms * 1000);
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 500.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99_ms - 990.0).abs() <= 1.0, "{l:?}");
        assert!((l.p999_ms - 999.0).abs() <= 1.0, "{l:?}");
        assert!((l.max_ms - 1000.0).abs() <= 1.0, "{l:?}");
        assert!((l.mean_ms - 500.5).abs() <= 1.0, "{l:?}");
    }

    #[test]
    fn empty_histogram_gives_zeroes() {
        assert_eq!(
            Latency::from_histogram(&new_histogram()),
            Latency::default()
        );
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut h = new_histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn sharded_merge_counts_everything() {
        let s = ShardedHistogram::new(4);
        for i in 0..100 {
            s.record(i, 10 + i as u64);
        }
        let m = s.merged();
        assert_eq!(m.len(), 100);
        assert_eq!(m.min(), 10);
        s.reset();
        assert_eq!(s.merged().len(), 0);
    }

    #[test]
    fn flat_rss_has_zero_drift() {
        let s: Vec<(f64, u64)> = (0..60).map(|t| (t as f64, 100_000_000)).collect();
        let d = drift(&s, 10.0, 3).unwrap();
        assert_eq!(d.samples_after_warmup, 50);
        assert_eq!(d.drift_pct, 0.0);
        assert_eq!(d.slope_pct_per_min, 0.0);
    }

    #[test]
    fn warmup_growth_is_ignored_and_leak_is_seen() {
        // Fast growth during the first 10 s, then +1000 bytes/s on 1 MB.
        let s: Vec<(f64, u64)> = (0..=60)
            .map(|t| {
                let rss = if t < 10 {
                    100_000 * t as u64
                } else {
                    1_000_000 + 1000 * (t as u64 - 10)
                };
                (t as f64, rss)
            })
            .collect();
        let d = drift(&s, 10.0, 1).unwrap();
        assert_eq!(d.rss_start_bytes, 1_000_000);
        assert_eq!(d.rss_end_bytes, 1_050_000);
        assert!((d.drift_pct - 5.0).abs() < 1e-9);
        assert!((d.slope_pct_per_min - 6.0).abs() < 1e-6);
    }

    #[test]
    fn too_few_samples() {
        assert!(drift(&[(0.0, 1), (1.0, 2)], 5.0, 3).is_none());
    }

    #[test]
    fn rate_handles_zero_time() {
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(rate(10, 2.0), 5.0);
    }
}
