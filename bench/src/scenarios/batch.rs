//! Batch publish: open-loop signed `POST /apps/{id}/batch_events`, each with
//! one event for each of `size` channels (subscribers spread evenly over
//! them); server CPU per event and per delivery, delivery ratio, latency.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::fanout::{delivery_ratio, drain, event_data, open_loop_with, Deliveries, MakePost};
use super::{open_fleet, split_diff, OnText, Probe};
use crate::client::{self, Res, Target};
use crate::stats::{self, round1, round3, Latency};

pub const CHANNEL_PREFIX: &str = "bench-batch-";

#[derive(Clone, Debug)]
pub struct BatchOpts {
    pub subscribers: usize,
    /// Events per batch, one per channel (`bench-batch-0` … `-{size-1}`).
    pub size: usize,
    pub event_size: usize,
    /// Batches per second.
    pub rate: f64,
    pub secs: f64,
    pub publishers: usize,
    pub drain_secs: f64,
    pub concurrency: usize,
}

#[derive(Debug, Serialize)]
pub struct BatchResult {
    pub subscribers_target: usize,
    pub subscribers_ok: u64,
    pub subscribe_failures: u64,
    pub events_per_batch: usize,
    pub event_size_bytes: usize,
    pub batch_rate_per_s: f64,
    pub publish_secs: f64,
    pub batches_attempted: u64,
    pub batches_ok: u64,
    pub batch_errors: u64,
    pub first_error: Option<String>,
    /// Batches sent more than 10 ms after their scheduled time.
    pub batches_late: u64,
    pub events_ok: u64,
    pub events_per_s: f64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub delivery_ratio: f64,
    pub deliveries_per_s: f64,
    /// Scheduled send time of the batch to receipt of each of its events.
    pub latency: Latency,
    pub batch_http_latency: Latency,
    pub http_reconnects: u64,
    pub server_cpu_s: Option<f64>,
    /// Server CPU per event of an accepted batch, µs.
    pub server_cpu_us_per_event: Option<f64>,
    pub server_cpu_s_per_million_deliveries: Option<f64>,
    pub server_user_cpu_s_per_million_deliveries: Option<f64>,
    pub server_sys_cpu_s_per_million_deliveries: Option<f64>,
    pub client_cpu_s: f64,
    pub server_rss_bytes: Option<u64>,
}

pub async fn batch(t: &Target, p: &Probe, o: &BatchOpts) -> Res<BatchResult> {
    let size = o.size.max(1);
    let deliveries = Arc::new(Deliveries::new());
    let fleet = open_fleet(
        t,
        o.subscribers,
        o.concurrency,
        |i| format!("{CHANNEL_PREFIX}{}", i % size),
        OnText::Deliveries(deliveries.clone()),
    )
    .await;
    let fleet = fleet.or_none_subscribed("no subscriber connected").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let channels: Arc<Vec<String>> =
        Arc::new((0..size).map(|c| format!("{CHANNEL_PREFIX}{c}")).collect());
    let (creds, event_size) = (t.creds.clone(), o.event_size);
    let make: MakePost = Arc::new(move |seq, sched_ns| {
        let data: Vec<String> = (0..size as u64)
            .map(|k| event_data(sched_ns, seq * size as u64 + k, event_size))
            .collect();
        client::signed_batch(
            &creds,
            channels
                .iter()
                .zip(&data)
                .map(|(c, d)| (c.as_str(), "bench", d.as_str())),
        )
    });
    let (cpu0, ccpu0) = (p.cpu_split(), p.client_cpu());
    let run = open_loop_with(t, o.rate, o.secs, o.publishers, make).await;
    // Every batch reaches every channel, so every subscriber once per batch.
    let expected = run.attempted * fleet.ok;
    drain(|| deliveries.received(), expected, o.drain_secs).await;
    let total_secs = run.started.elapsed().as_secs_f64();
    let (cpu1, ccpu1) = (p.cpu_split(), p.client_cpu());
    let rss = p.rss();
    let delivered = deliveries.received();
    let (user, sys, cpu) = split_diff(cpu0, cpu1);
    let per_million = |c: Option<f64>| {
        c.filter(|_| delivered > 0)
            .map(|c| round3(c * 1e6 / delivered as f64))
    };
    let events_ok = run.ok * size as u64;
    let res = BatchResult {
        subscribers_target: o.subscribers,
        subscribers_ok: fleet.ok,
        subscribe_failures: fleet.failures,
        events_per_batch: size,
        event_size_bytes: o.event_size,
        batch_rate_per_s: o.rate,
        publish_secs: round3(run.secs),
        batches_attempted: run.attempted,
        batches_ok: run.ok,
        batch_errors: run.errors,
        first_error: run.first_error.or(fleet.first_error.clone()),
        batches_late: run.late,
        events_ok,
        events_per_s: round1(stats::rate(events_ok, run.secs)),
        expected_deliveries: expected,
        delivered,
        delivery_ratio: delivery_ratio(delivered, expected),
        deliveries_per_s: round1(stats::rate(delivered, total_secs)),
        latency: deliveries.latency(),
        batch_http_latency: run.http_latency,
        http_reconnects: run.http_reconnects,
        server_cpu_s: cpu.map(round3),
        server_cpu_us_per_event: cpu
            .filter(|_| events_ok > 0)
            .map(|c| round3(c * 1e6 / events_ok as f64)),
        server_cpu_s_per_million_deliveries: per_million(cpu),
        server_user_cpu_s_per_million_deliveries: per_million(user),
        server_sys_cpu_s_per_million_deliveries: per_million(sys),
        client_cpu_s: round3(ccpu1 - ccpu0),
        server_rss_bytes: rss,
    };
    fleet.shutdown(Duration::from_secs(20)).await;
    Ok(res)
}
