//! What the bridge reports: whether it is connected (for `/up` and the
//! metrics) and relaxed-atomic counters, rendered at scrape time like the
//! actors' counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Why an event did not cross between this node and the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Outbound: the relay queue was full (Redis slower than the publishers).
    QueueFull,
    /// Outbound: Redis was not connected; the event reached local clients only.
    Disconnected,
    /// Outbound: the PUBLISH failed (the connection broke under it). Never
    /// retried: it may have reached Redis, and an event is never delivered twice.
    PublishFailed,
    /// Inbound: not an envelope this version reads.
    Malformed,
    /// Inbound: for an app this node does not serve.
    UnknownApp,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::Disconnected,
        DropReason::PublishFailed,
        DropReason::Malformed,
        DropReason::UnknownApp,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Disconnected => "disconnected",
            DropReason::PublishFailed => "publish_failed",
            DropReason::Malformed => "malformed",
            DropReason::UnknownApp => "unknown_app",
        }
    }
}

/// Upper bounds of the relay-latency histogram's buckets, seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
pub struct BridgeStats {
    connected: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Per bucket (not cumulative), then one for `+Inf`.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    /// Other nodes heard from and not (yet) declared dead.
    peers: AtomicU64,
    dead_nodes: AtomicU64,
    resyncs: AtomicU64,
}

impl BridgeStats {
    /// Connected to Redis and subscribed: events cross in both directions.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }

    /// Events published to the other nodes.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(super) fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Events received from the other nodes (this node's own echo excluded).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    pub(super) fn add_dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Other nodes currently known (heard from, not declared dead).
    pub fn peers(&self) -> u64 {
        self.peers.load(Ordering::Relaxed)
    }

    pub(super) fn set_peers(&self, n: u64) {
        self.peers.store(n, Ordering::Relaxed);
    }

    /// Nodes declared dead (silent for the node timeout) since start.
    pub fn dead_nodes(&self) -> u64 {
        self.dead_nodes.load(Ordering::Relaxed)
    }

    pub(super) fn add_dead_nodes(&self, n: u64) {
        self.dead_nodes.fetch_add(n, Ordering::Relaxed);
    }

    /// Other nodes' snapshots applied (a node joined or rejoined, or a
    /// missed change was repaired).
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    pub(super) fn add_resync(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// One event received from another node, `latency` after it was sent.
    pub(super) fn observe_received(&self, latency: Duration) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`], then the total
    /// (`+Inf`), and the sum in seconds: the Prometheus histogram.
    pub fn latency(&self) -> ([u64; LATENCY_BUCKETS.len() + 1], f64) {
        let mut cumulative = [0; LATENCY_BUCKETS.len() + 1];
        let mut total = 0;
        for (out, bucket) in cumulative.iter_mut().zip(&self.latency_buckets) {
            total += bucket.load(Ordering::Relaxed);
            *out = total;
        }
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (cumulative, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_cumulative_buckets() {
        let s = BridgeStats::default();
        s.observe_received(Duration::from_micros(300));
        s.observe_received(Duration::from_micros(500));
        s.observe_received(Duration::from_millis(20));
        s.observe_received(Duration::from_secs(9));
        let (buckets, sum) = s.latency();
        assert_eq!(buckets[0], 2, "<= 0.5 ms: {buckets:?}");
        assert_eq!(buckets[4], 2, "<= 10 ms: {buckets:?}");
        assert_eq!(buckets[5], 3, "<= 25 ms: {buckets:?}");
        assert_eq!(buckets[LATENCY_BUCKETS.len() - 1], 3, "<= 5 s");
        assert_eq!(buckets[LATENCY_BUCKETS.len()], 4, "+Inf");
        assert!((sum - 9.0208).abs() < 1e-9, "{sum}");
        assert_eq!(s.received(), 4);
    }
}
