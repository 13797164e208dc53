//! Scale-out: the bridge that makes several Switchyard nodes behind a load
//! balancer one service, through Redis pub/sub (`ADAPTER_DRIVER=redis`).
//!
//! It lives in the binary crate, not in `switchyard-actors`, so the actors
//! crate stays free of Redis (and of any network client): that crate only
//! defines the seam — [`Cluster`](switchyard_actors::registry::Cluster),
//! which this bridge implements to carry what the registry relays, and
//! `Registry::fan_out_remote`, where it hands over what other nodes sent.
//!
//! - `bridge`: the connections, the relay queue and the two directions.
//! - `envelope`: what crosses Redis for one event (a small binary header
//!   and the frame bytes as local clients get them).
//! - `control`: what else nodes tell each other (heartbeats, state deltas
//!   and snapshots, requests), as JSON.
//! - `mirror`: this node's channel state as the others must know it.
//! - `peers`: the other nodes as heard here (liveness, applied changes).
//! - `stats`: connectivity and counters for `/up` and the metrics.
//!
//! Every Redis key and channel carries the cluster's prefix
//! ([`crate::config::AdapterConfig::prefix`]): clusters with different
//! prefixes share a Redis without seeing each other.

mod bridge;
mod control;
mod envelope;
pub mod members;
mod mirror;
mod peers;
mod stats;

pub use bridge::{start, Bridge, BridgeError, Link, Outbox, Target, QUEUE};
pub use stats::{BridgeStats, DropReason, LATENCY_BUCKETS};

/// How long start-up waits for the first subscription before the listeners
/// open: a node that can reach Redis delivers other nodes' events from its
/// first accepted connection; one that cannot starts anyway, saying so.
pub const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The pub/sub channel all nodes of a cluster publish events to. Not
/// Sockudo's channel names: the envelope is Switchyard's own, so a Sockudo
/// cluster on the same Redis and prefix is not disturbed by it.
pub fn events_channel(prefix: &str) -> String {
    format!("{prefix}switchyard#events")
}

/// How nodes watch each other (`cluster_health.*`, `CLUSTER_HEALTH_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Off: a silent node is never forgotten (its members stay until it
    /// comes back). Heartbeats are still sent.
    pub enabled: bool,
    pub heartbeat_interval: std::time::Duration,
    /// Silent this long: dead.
    pub node_timeout: std::time::Duration,
    /// How often silence is checked. A dead node is forgotten at most
    /// `node_timeout + cleanup_interval` after its last heartbeat.
    pub cleanup_interval: std::time::Duration,
}
