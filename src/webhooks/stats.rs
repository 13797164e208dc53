//! Webhook counters for the metrics endpoint: relaxed atomics bumped where
//! things happen, read at scrape time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the delivery-latency histogram: from the event
/// to the receiver's 2xx, batching and retries included.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
pub struct WebhookStats {
    /// Events delivered (a 2xx for their request).
    sent: AtomicU64,
    /// Requests refused for good by the receiver (4xx other than
    /// 408/409/425/429): their events are dead-lettered.
    failed: AtomicU64,
    /// Attempts after the first.
    retried: AtomicU64,
    /// Events not delivered (permanent refusal, retry budget spent, a full
    /// queue, shutdown deadline): each is dead-lettered.
    dropped: AtomicU64,
    /// Events waiting: queued for a webhook or in a batch being delivered.
    queued: AtomicI64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl WebhookStats {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed).max(0) as u64
    }

    pub(super) fn add_queued(&self, n: i64) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }
    pub(super) fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
    pub(super) fn add_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn add_retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative bucket counts (Prometheus `le` semantics), count, sum (s).
    pub fn latency(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
            .collect();
        (
            buckets,
            self.latency_count.load(Ordering::Relaxed),
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}
