//! Cluster: two nodes on one Redis. Subscribers are spread evenly over node
//! A and node B (every channel has as many on each), signed publishes go to
//! node A only, open loop. Node A delivers to its own subscribers directly
//! (same-node) and through Redis to node B's (cross-node), so both groups see
//! the same events at the same load and their latencies compare directly.
//! Reports delivery ratio, latency per group, and the CPU per delivery of
//! each node, of Redis and of all three together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::fanout::{
    attempted_on, delivery_ratio, drain, frame_bytes, open_loop, Deliveries, Publishing,
};
use super::floor::{floor, FloorOpts, FloorResult};
use super::{open_fleet, Fleet, OnText, Probe};
use crate::client::{Res, Target};
use crate::stats::{self, round1, round3, Latency};

/// Cross-node p99 may exceed same-node p99 by at most this much (issue 11).
pub const CROSS_NODE_P99_BUDGET_MS: f64 = 2.0;

#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// Node B (node A is the scenario's target).
    pub node_b: Target,
    pub subscribers: usize,
    pub channels: usize,
    pub event_size: usize,
    pub rate: f64,
    pub secs: f64,
    pub publishers: usize,
    pub drain_secs: f64,
    pub concurrency: usize,
    /// Longest wait for the nodes to deliver to each other before measuring.
    pub warmup_secs: f64,
    /// Seconds of the loopback floor measurement after the run (0 = skip).
    pub floor_secs: f64,
    /// Core the servers are pinned to: the floor's writer runs there.
    pub server_core: Option<usize>,
}

/// The processes measured: node A (publishes arrive here), node B, Redis.
#[derive(Clone, Copy, Debug)]
pub struct ClusterProbes {
    pub a: Probe,
    pub b: Probe,
    pub redis: Probe,
}

/// Subscribers of one node.
#[derive(Debug, Serialize)]
pub struct Side {
    pub port: u16,
    pub subscribers_target: usize,
    pub subscribers_ok: u64,
    pub subscribe_failures: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub delivery_ratio: f64,
    /// Scheduled send time (to node A) to receipt.
    pub latency: Latency,
}

/// CPU (user + system, from /proc/PID/stat) and RSS of one process, or of
/// several summed, over the measured window.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ProcCpu {
    pub pid: Option<i32>,
    pub cpu_s: Option<f64>,
    pub user_cpu_s: Option<f64>,
    pub sys_cpu_s: Option<f64>,
    pub cpu_s_per_million_deliveries: Option<f64>,
    pub user_cpu_s_per_million_deliveries: Option<f64>,
    pub sys_cpu_s_per_million_deliveries: Option<f64>,
    pub rss_bytes: Option<u64>,
}

impl ProcCpu {
    /// From (user, sys) CPU seconds before and after, for `delivered` deliveries.
    pub fn measure(
        pid: Option<i32>,
        before: Option<(f64, f64)>,
        after: Option<(f64, f64)>,
        delivered: u64,
        rss_bytes: Option<u64>,
    ) -> Self {
        let split = before.zip(after).map(|(a, b)| (b.0 - a.0, b.1 - a.1));
        Self::from_split(pid, split, delivered, rss_bytes)
    }

    fn from_split(
        pid: Option<i32>,
        split: Option<(f64, f64)>,
        delivered: u64,
        rss_bytes: Option<u64>,
    ) -> Self {
        let per_million = |c: f64| (delivered > 0).then(|| round3(c * 1e6 / delivered as f64));
        let (user, sys) = (split.map(|s| s.0), split.map(|s| s.1));
        let cpu = split.map(|(u, s)| u + s);
        ProcCpu {
            pid,
            cpu_s: cpu.map(round3),
            user_cpu_s: user.map(round3),
            sys_cpu_s: sys.map(round3),
            cpu_s_per_million_deliveries: cpu.and_then(per_million),
            user_cpu_s_per_million_deliveries: user.and_then(per_million),
            sys_cpu_s_per_million_deliveries: sys.and_then(per_million),
            rss_bytes,
        }
    }

    /// The sum of several processes; unknown if any part is unknown.
    pub fn total(parts: &[&ProcCpu], delivered: u64) -> Self {
        let split = parts.iter().try_fold((0.0, 0.0), |acc, p| {
            Some((acc.0 + p.user_cpu_s?, acc.1 + p.sys_cpu_s?))
        });
        let rss = parts.iter().try_fold(0, |acc, p| Some(acc + p.rss_bytes?));
        Self::from_split(None, split, delivered, rss)
    }
}

/// One target of the issue, evaluated.
#[derive(Debug, Serialize, PartialEq)]
pub struct Check {
    pub target: String,
    pub value: f64,
    pub met: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ClusterTargets {
    /// Exactly every expected delivery, on both nodes (not rounded).
    pub delivery_ratio: Check,
    /// Cross-node p99 minus same-node p99, ms.
    pub cross_node_p99_minus_same_node_ms: Check,
    // The third target (total CPU per delivery at most half of Sockudo's)
    // compares two runs: `switchyard-bench compare` evaluates it.
}

/// Evaluates the two targets one run can judge by itself.
pub fn targets(delivered: u64, expected: u64, same: &Latency, cross: &Latency) -> ClusterTargets {
    let diff = round3(cross.p99_ms - same.p99_ms);
    ClusterTargets {
        delivery_ratio: Check {
            target: "1.0 (received = expected on both nodes)".into(),
            value: delivery_ratio(delivered, expected),
            met: expected > 0 && delivered == expected,
        },
        cross_node_p99_minus_same_node_ms: Check {
            target: format!("<= {CROSS_NODE_P99_BUDGET_MS}"),
            value: diff,
            met: same.count > 0 && cross.count > 0 && diff <= CROSS_NODE_P99_BUDGET_MS,
        },
    }
}

#[derive(Debug, Serialize)]
pub struct ClusterResult {
    pub subscribers_target: usize,
    pub channels: usize,
    pub event_size_bytes: usize,
    #[serde(flatten)]
    pub publishing: Publishing,
    /// Warm-up rounds (one publish per channel each) until both nodes
    /// delivered a whole round; `cluster_ready` false if that never happened.
    pub warmup_rounds: u64,
    pub warmup_secs: f64,
    pub cluster_ready: bool,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub delivery_ratio: f64,
    pub deliveries_per_s: f64,
    /// Subscribers on node A, where the publishes arrive.
    pub same_node: Side,
    /// Subscribers on node B: every event crossed Redis.
    pub cross_node: Side,
    pub publish_http_latency: Latency,
    pub http_reconnects: u64,
    pub node_a: ProcCpu,
    pub node_b: ProcCpu,
    pub redis: ProcCpu,
    /// Node A + node B + Redis, per delivery of both nodes.
    pub total: ProcCpu,
    /// What one plain write per delivery costs on this machine, same traffic.
    pub loopback_floor: Option<FloorResult>,
    /// Total CPU per million deliveries minus the floor.
    pub total_cpu_s_per_million_above_floor: Option<f64>,
    pub client_cpu_s: f64,
    pub targets: ClusterTargets,
}

/// Subscribers of a node given `total` spread over two: node A takes the
/// even-numbered, node B the odd-numbered ones.
pub fn split_subscribers(total: usize) -> (usize, usize) {
    (total.div_ceil(2), total / 2)
}

/// Subscribers per channel of a fleet of `n` whose socket `j` is on channel
/// `j % channels`.
pub fn per_channel(n: usize, channels: usize) -> Vec<u64> {
    let mut subs = vec![0u64; channels.max(1)];
    for j in 0..n {
        subs[j % channels.max(1)] += 1;
    }
    subs
}

/// Deliveries expected on one node: every attempted publish of a channel
/// times that node's subscribers on it, scaled by the share that subscribed.
pub fn expected_deliveries(attempted: u64, subs: &[u64], subscribed: u64, target: usize) -> u64 {
    if target == 0 {
        return 0;
    }
    let scale = subscribed as f64 / target as f64;
    let channels = subs.len();
    (0..channels)
        .map(|c| attempted_on(attempted, channels, c) as f64 * subs[c] as f64 * scale)
        .sum::<f64>()
        .round() as u64
}

const CHANNEL_PREFIX: &str = "bench-cluster-";

pub async fn cluster(t: &Target, p: &ClusterProbes, o: &ClusterOpts) -> Res<ClusterResult> {
    let channels = o.channels.max(1);
    let (n_a, n_b) = split_subscribers(o.subscribers);
    let (on_a, on_b) = (Arc::new(Deliveries::new()), Arc::new(Deliveries::new()));
    let channel = |j: usize| format!("{CHANNEL_PREFIX}{}", j % channels);
    let fleet_a = open_fleet(
        t,
        n_a,
        o.concurrency,
        channel,
        OnText::Deliveries(on_a.clone()),
    )
    .await;
    let fleet_b = open_fleet(
        &o.node_b,
        n_b,
        o.concurrency,
        channel,
        OnText::Deliveries(on_b.clone()),
    )
    .await;
    if fleet_a.ok == 0 || fleet_b.ok == 0 {
        let e = fleet_a
            .first_error
            .clone()
            .or(fleet_b.first_error.clone())
            .unwrap_or_default();
        let msg = format!(
            "subscribers connected: {} on node A, {} on node B: {e}",
            fleet_a.ok, fleet_b.ok
        );
        fleet_a.shutdown(Duration::from_secs(10)).await;
        fleet_b.shutdown(Duration::from_secs(10)).await;
        return Err(msg);
    }

    // Warm-up: one publish per channel to node A per round until a round
    // reaches every subscriber of both nodes (node B has learnt of the
    // subscriptions and the bridge carries events); then forget it all.
    let warm_start = Instant::now();
    let mut warmup_rounds = 0;
    let mut cluster_ready = false;
    while warm_start.elapsed().as_secs_f64() < o.warmup_secs {
        warmup_rounds += 1;
        let (a0, b0) = (on_a.received(), on_b.received());
        let rate = channels as f64 * 10.0;
        open_loop(t, CHANNEL_PREFIX, channels, rate, 0.1, 1, o.event_size).await;
        let round_done = || {
            let done_a = on_a.received() - a0 >= fleet_a.ok;
            let done_b = on_b.received() - b0 >= fleet_b.ok;
            u64::from(done_a && done_b)
        };
        drain(round_done, 1, 2.0).await;
        if round_done() == 1 {
            cluster_ready = true;
            break;
        }
    }
    let warmup_secs = warm_start.elapsed().as_secs_f64();
    if !cluster_ready {
        eprintln!(
            "[cluster] warning: no warm-up round reached every subscriber within {} s",
            o.warmup_secs
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    on_a.reset();
    on_b.reset();

    let cpu0 = (p.a.cpu_split(), p.b.cpu_split(), p.redis.cpu_split());
    let ccpu0 = p.a.client_cpu();
    let run = open_loop(
        t,
        CHANNEL_PREFIX,
        channels,
        o.rate,
        o.secs,
        o.publishers,
        o.event_size,
    )
    .await;
    let expected_a =
        expected_deliveries(run.attempted, &per_channel(n_a, channels), fleet_a.ok, n_a);
    let expected_b =
        expected_deliveries(run.attempted, &per_channel(n_b, channels), fleet_b.ok, n_b);
    let expected = expected_a + expected_b;
    drain(|| on_a.received() + on_b.received(), expected, o.drain_secs).await;
    let total_secs = run.started.elapsed().as_secs_f64();
    let cpu1 = (p.a.cpu_split(), p.b.cpu_split(), p.redis.cpu_split());
    let ccpu1 = p.a.client_cpu();
    let (delivered_a, delivered_b) = (on_a.received(), on_b.received());
    let delivered = delivered_a + delivered_b;
    let node_a = ProcCpu::measure(p.a.server_pid, cpu0.0, cpu1.0, delivered, p.a.rss());
    let node_b = ProcCpu::measure(p.b.server_pid, cpu0.1, cpu1.1, delivered, p.b.rss());
    let redis = ProcCpu::measure(p.redis.server_pid, cpu0.2, cpu1.2, delivered, p.redis.rss());
    let total = ProcCpu::total(&[&node_a, &node_b, &redis], delivered);

    let side = |port: u16, target: usize, f: &Fleet, exp: u64, got: u64, d: &Deliveries| Side {
        port,
        subscribers_target: target,
        subscribers_ok: f.ok,
        subscribe_failures: f.failures,
        expected_deliveries: exp,
        delivered: got,
        delivery_ratio: delivery_ratio(got, exp),
        latency: d.latency(),
    };
    let same_node = side(t.addr.port(), n_a, &fleet_a, expected_a, delivered_a, &on_a);
    let cross_node = side(
        o.node_b.addr.port(),
        n_b,
        &fleet_b,
        expected_b,
        delivered_b,
        &on_b,
    );
    let fleet_error = fleet_a.first_error.clone().or(fleet_b.first_error.clone());
    let subscribed = (fleet_a.ok + fleet_b.ok) as usize;
    fleet_a.shutdown(Duration::from_secs(20)).await;
    fleet_b.shutdown(Duration::from_secs(20)).await;

    let loopback_floor = if o.floor_secs > 0.0 {
        let opts = FloorOpts {
            sockets: subscribed,
            channels,
            frame_bytes: frame_bytes(o.event_size),
            rate: o.rate,
            secs: o.floor_secs,
            writer_core: o.server_core,
        };
        Some(floor(&opts).await?)
    } else {
        None
    };
    Ok(ClusterResult {
        subscribers_target: o.subscribers,
        channels,
        event_size_bytes: o.event_size,
        publishing: run.publishing(o.rate, fleet_error),
        warmup_rounds,
        warmup_secs: round3(warmup_secs),
        cluster_ready,
        expected_deliveries: expected,
        delivered,
        delivery_ratio: delivery_ratio(delivered, expected),
        deliveries_per_s: round1(stats::rate(delivered, total_secs)),
        targets: targets(delivered, expected, &same_node.latency, &cross_node.latency),
        same_node,
        cross_node,
        publish_http_latency: run.http_latency,
        http_reconnects: run.http_reconnects,
        total_cpu_s_per_million_above_floor: total
            .cpu_s_per_million_deliveries
            .zip(loopback_floor.as_ref())
            .map(|(c, f)| round3(c - f.cpu_s_per_million_writes)),
        node_a,
        node_b,
        redis,
        total,
        loopback_floor,
        client_cpu_s: round3(ccpu1 - ccpu0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_split_evenly_over_nodes_and_channels() {
        assert_eq!(split_subscribers(2000), (1000, 1000));
        assert_eq!(split_subscribers(7), (4, 3));
        assert_eq!(per_channel(1000, 10), vec![100; 10]);
        assert_eq!(per_channel(7, 3), vec![3, 2, 2]);
    }

    #[test]
    fn expected_counts_every_attempt_times_subscribers() {
        // 4000 publishes over 10 channels, 100 subscribers on each.
        let subs = per_channel(1000, 10);
        assert_eq!(expected_deliveries(4000, &subs, 1000, 1000), 400_000);
        // Uneven: 7 publishes over 3 channels go 3/2/2; subscribers 3/2/2.
        assert_eq!(expected_deliveries(7, &[3, 2, 2], 7, 7), 9 + 4 + 4);
        // Half subscribed: half expected.
        assert_eq!(expected_deliveries(4000, &subs, 500, 1000), 200_000);
        assert_eq!(expected_deliveries(4000, &subs, 0, 0), 0);
    }

    #[test]
    fn cpu_per_million_and_totals() {
        let a = ProcCpu::measure(
            Some(1),
            Some((1.0, 2.0)),
            Some((3.0, 5.0)),
            1_000_000,
            Some(10),
        );
        assert_eq!(a.user_cpu_s, Some(2.0));
        assert_eq!(a.sys_cpu_s, Some(3.0));
        assert_eq!(a.cpu_s_per_million_deliveries, Some(5.0));
        let b = ProcCpu::measure(Some(2), Some((0.0, 0.0)), Some((0.5, 0.25)), 500_000, None);
        assert_eq!(b.cpu_s_per_million_deliveries, Some(1.5));
        assert_eq!(b.user_cpu_s_per_million_deliveries, Some(1.0));
        let r = ProcCpu::measure(
            Some(3),
            Some((0.0, 0.0)),
            Some((1.0, 1.0)),
            2_000_000,
            Some(5),
        );
        let t = ProcCpu::total(&[&a, &r], 2_000_000);
        assert_eq!(t.pid, None);
        assert_eq!(t.cpu_s, Some(7.0));
        assert_eq!(t.user_cpu_s_per_million_deliveries, Some(1.5));
        assert_eq!(t.sys_cpu_s_per_million_deliveries, Some(2.0));
        assert_eq!(t.rss_bytes, Some(15));
        // An unknown part makes the total unknown, not smaller.
        let unknown = ProcCpu::measure(None, None, Some((1.0, 1.0)), 10, None);
        assert_eq!(unknown.cpu_s, None);
        assert_eq!(ProcCpu::total(&[&a, &unknown], 10).cpu_s, None);
        // No deliveries: no per-delivery cost.
        let none = ProcCpu::measure(Some(1), Some((0.0, 0.0)), Some((1.0, 1.0)), 0, None);
        assert_eq!(none.cpu_s, Some(2.0));
        assert_eq!(none.cpu_s_per_million_deliveries, None);
    }

    fn p99(ms: f64) -> Latency {
        Latency {
            count: 100,
            p99_ms: ms,
            ..Latency::default()
        }
    }

    #[test]
    fn targets_are_judged_on_exact_counts_and_the_p99_budget() {
        let t = targets(400_000, 400_000, &p99(3.0), &p99(4.999));
        assert!(t.delivery_ratio.met && t.delivery_ratio.value == 1.0);
        assert!(t.cross_node_p99_minus_same_node_ms.met);
        assert_eq!(t.cross_node_p99_minus_same_node_ms.value, 1.999);
        // One lost delivery in 400,000 rounds to 1.0 but is not met.
        let t = targets(399_999, 400_000, &p99(3.0), &p99(5.5));
        assert_eq!(t.delivery_ratio.value, 1.0);
        assert!(!t.delivery_ratio.met);
        assert!(!t.cross_node_p99_minus_same_node_ms.met);
        // Duplicates are not met either.
        assert!(
            !targets(400_001, 400_000, &p99(1.0), &p99(1.0))
                .delivery_ratio
                .met
        );
        // Nothing measured: nothing met.
        let t = targets(0, 0, &Latency::default(), &Latency::default());
        assert!(!t.delivery_ratio.met && !t.cross_node_p99_minus_same_node_ms.met);
    }
}
