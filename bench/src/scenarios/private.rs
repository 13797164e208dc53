//! Private channels per user: N sockets, each subscribed (with a channel auth
//! signature) to its own `private-user-{i}` channel, and a backend publishing
//! over HTTP to random users at a fixed rate, open loop. Every publish has
//! exactly one recipient, so this measures what a publish costs the server
//! when fan-out does not hide it: CPU per publish, delivery latency and
//! ratio, and the RSS of N private subscriptions.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::fanout::{
    delivery_ratio, drain, event_data, open_loop_with, Deliveries, MakePost, Publishing,
};
use super::{diff, open_fleet_with, split_diff, splitmix64, OnText, Probe};
use crate::client::{self, Res, Target};
use crate::stats::{self, round1, round3, Latency};

/// Channel of user `i`.
pub const CHANNEL_PREFIX: &str = "private-user-";

/// Seed of the publish → user mapping (any constant: runs are reproducible).
const SEED: u64 = 0x5eed_0f01;

#[derive(Clone, Debug)]
pub struct PrivateOpts {
    pub users: usize,
    pub event_size: usize,
    pub rate: f64,
    pub secs: f64,
    pub publishers: usize,
    pub drain_secs: f64,
    pub concurrency: usize,
}

#[derive(Debug, Serialize)]
pub struct PrivateResult {
    pub users_target: usize,
    pub users_ok: u64,
    pub subscribe_failures: u64,
    /// Connect + signed subscribe of all users, seconds.
    pub subscribe_secs: f64,
    pub subscribe_rate_per_s: f64,
    pub subscribe_latency: Latency,
    pub server_cpu_us_per_subscribed_user: Option<f64>,
    /// Server CPU over 2 s with every user subscribed and no publishes, %
    /// of one core (part of the per-publish CPU below when not ~0).
    pub server_cpu_idle_pct: Option<f64>,
    pub event_size_bytes: usize,
    #[serde(flatten)]
    pub publishing: Publishing,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub delivery_ratio: f64,
    /// Scheduled send time to receipt.
    pub latency: Latency,
    pub publish_http_latency: Latency,
    pub http_reconnects: u64,
    pub server_cpu_s: Option<f64>,
    /// Server CPU per publish (each has one recipient), µs.
    pub server_cpu_us_per_publish: Option<f64>,
    pub server_user_cpu_us_per_publish: Option<f64>,
    pub server_sys_cpu_us_per_publish: Option<f64>,
    pub client_cpu_s: f64,
    pub server_rss_before_bytes: Option<u64>,
    /// With every user subscribed, after the publishes.
    pub server_rss_loaded_bytes: Option<u64>,
    /// (loaded − before) / users: one socket with one private subscription.
    pub server_rss_per_user_bytes: Option<f64>,
}

/// The user publish `seq` goes to.
pub fn user_of(seq: u64, users: usize) -> usize {
    (splitmix64(seq ^ SEED) % users.max(1) as u64) as usize
}

pub async fn private(t: &Target, p: &Probe, o: &PrivateOpts) -> Res<PrivateResult> {
    let users = o.users.max(1);
    let rss_before = p.rss();
    let deliveries = Arc::new(Deliveries::new());
    let cpu_sub0 = p.cpu();
    let fleet = open_fleet_with(
        t,
        users,
        o.concurrency,
        |i| format!("{CHANNEL_PREFIX}{i}"),
        true,
        OnText::Deliveries(deliveries.clone()),
    )
    .await;
    let cpu_sub1 = p.cpu();
    let fleet = fleet.or_none_subscribed("no user subscribed").await?;
    let subscribe_secs = fleet.elapsed.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // What the server spends with every user subscribed and nothing published.
    let (idle0, idle_t0) = (p.cpu(), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_pct =
        diff(idle0, p.cpu()).map(|c| round1(c / idle_t0.elapsed().as_secs_f64() * 100.0));

    let (creds, size) = (t.creds.clone(), o.event_size);
    let make: MakePost = Arc::new(move |seq, sched_ns| {
        let ch = format!("{CHANNEL_PREFIX}{}", user_of(seq, users));
        client::signed_trigger(&creds, &ch, "bench", &event_data(sched_ns, seq, size))
    });
    let (cpu0, ccpu0) = (p.cpu_split(), p.client_cpu());
    let run = open_loop_with(t, o.rate, o.secs, o.publishers, make).await;
    // One recipient per publish; failed subscriptions are spread at random
    // over users, so scale by the share that subscribed (exact without any).
    let expected = (run.attempted as f64 * fleet.ok as f64 / users as f64).round() as u64;
    drain(|| deliveries.received(), expected, o.drain_secs).await;
    let (cpu1, ccpu1) = (p.cpu_split(), p.client_cpu());
    let rss = p.rss();
    let delivered = deliveries.received();
    let (user, sys, cpu) = split_diff(cpu0, cpu1);
    let n = run.ok;
    let per_publish = |c: Option<f64>| c.filter(|_| n > 0).map(|c| round3(c * 1e6 / n as f64));
    let ok = fleet.ok;
    let res = PrivateResult {
        users_target: users,
        users_ok: ok,
        subscribe_failures: fleet.failures,
        subscribe_secs: round3(subscribe_secs),
        subscribe_rate_per_s: round1(stats::rate(ok, subscribe_secs)),
        subscribe_latency: fleet.connect_latency.clone(),
        server_cpu_us_per_subscribed_user: diff(cpu_sub0, cpu_sub1)
            .map(|c| round1(c * 1e6 / ok as f64)),
        server_cpu_idle_pct: idle_pct,
        event_size_bytes: o.event_size,
        publishing: run.publishing(o.rate, fleet.first_error.clone()),
        expected_deliveries: expected,
        delivered,
        delivery_ratio: delivery_ratio(delivered, expected),
        latency: deliveries.latency(),
        publish_http_latency: run.http_latency,
        http_reconnects: run.http_reconnects,
        server_cpu_s: cpu.map(round3),
        server_cpu_us_per_publish: per_publish(cpu),
        server_user_cpu_us_per_publish: per_publish(user),
        server_sys_cpu_us_per_publish: per_publish(sys),
        client_cpu_s: round3(ccpu1 - ccpu0),
        server_rss_before_bytes: rss_before,
        server_rss_loaded_bytes: rss,
        server_rss_per_user_bytes: rss_before
            .zip(rss)
            .map(|(b, r)| round1((r as f64 - b as f64) / ok as f64)),
    };
    fleet.shutdown(Duration::from_secs(30)).await;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_spread_over_all_users() {
        let users = 100;
        let mut hits = vec![0u32; users];
        for seq in 0..100_000 {
            hits[user_of(seq, users)] += 1;
        }
        // 1,000 expected per user; a uniform spread stays well within ±20 %.
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        assert_eq!(user_of(7, 1), 0);
    }
}
