//! Idle connections: server RSS per connection and connect rate.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{diff, open_fleet, sample_rss_for, OnText, Probe};
use crate::client::{Res, Target};
use crate::procfs::{self, StatusKb};
use crate::stats::{self, round1, round3, Latency};

#[derive(Clone, Debug)]
pub struct IdleOpts {
    pub connections: usize,
    pub channels: usize,
    pub concurrency: usize,
    pub hold_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct IdleResult {
    pub connections_target: usize,
    pub channels: usize,
    pub connections_ok: u64,
    pub connect_failures: u64,
    pub first_error: Option<String>,
    pub connect_secs: f64,
    pub connect_rate_per_s: f64,
    pub connect_latency: Latency,
    pub server_rss_before_bytes: Option<u64>,
    pub server_rss_loaded_bytes: Option<u64>,
    /// (loaded - before) / connections: the marginal cost of a connection.
    pub server_rss_per_conn_bytes: Option<f64>,
    /// loaded / connections: includes the server's baseline.
    pub server_rss_total_per_conn_bytes: Option<f64>,
    pub server_status_loaded_kb: Option<StatusKb>,
    pub server_rss_after_close_bytes: Option<u64>,
    pub server_cpu_connect_s: Option<f64>,
    pub server_cpu_us_per_conn: Option<f64>,
    pub client_cpu_connect_s: f64,
    /// Server CPU while the connections sit idle (timers, heartbeats), % of
    /// one core.
    pub server_cpu_idle_pct: Option<f64>,
}

pub async fn idle(t: &Target, p: &Probe, o: &IdleOpts) -> Res<IdleResult> {
    let limit = procfs::nofile_limit();
    if (o.connections as u64) + 100 > limit {
        return Err(format!(
            "{} connections need more than the open-file limit {limit} allows",
            o.connections
        ));
    }
    let rss_before = p.rss();
    let (cpu0, ccpu0) = (p.cpu(), p.client_cpu());
    let channels = o.channels.max(1);
    let fleet = open_fleet(
        t,
        o.connections,
        o.concurrency,
        |i| format!("bench-idle-{}", i % channels),
        OnText::Ignore,
    )
    .await;
    let (cpu1, ccpu1) = (p.cpu(), p.client_cpu());
    let secs = fleet.elapsed.as_secs_f64();
    let hold_start = Instant::now();
    let rss_loaded = sample_rss_for(p, o.hold_secs).await;
    let (cpu2, hold) = (p.cpu(), hold_start.elapsed().as_secs_f64());
    let status_loaded = p.status();
    let ok = fleet.ok;
    let per_conn = |rss: Option<u64>, base: u64| {
        rss.filter(|_| ok > 0)
            .map(|r| round1((r as f64 - base as f64) / ok as f64))
    };
    let res = IdleResult {
        connections_target: o.connections,
        channels,
        connections_ok: ok,
        connect_failures: fleet.failures,
        first_error: fleet.first_error.clone(),
        connect_secs: round3(secs),
        connect_rate_per_s: round1(stats::rate(ok, secs)),
        connect_latency: fleet.connect_latency.clone(),
        server_rss_before_bytes: rss_before,
        server_rss_loaded_bytes: rss_loaded,
        server_rss_per_conn_bytes: rss_before.and_then(|b| per_conn(rss_loaded, b)),
        server_rss_total_per_conn_bytes: per_conn(rss_loaded, 0),
        server_status_loaded_kb: status_loaded,
        server_rss_after_close_bytes: None,
        server_cpu_connect_s: diff(cpu0, cpu1).map(round3),
        server_cpu_us_per_conn: diff(cpu0, cpu1)
            .filter(|_| ok > 0)
            .map(|c| round1(c * 1e6 / ok as f64)),
        client_cpu_connect_s: round3(ccpu1 - ccpu0),
        server_cpu_idle_pct: diff(cpu1, cpu2).map(|c| round1(c / hold * 100.0)),
    };
    fleet.shutdown(Duration::from_secs(30)).await;
    let after = sample_rss_for(p, 3).await;
    Ok(IdleResult {
        server_rss_after_close_bytes: after,
        ..res
    })
}
