//! HTTP publish throughput with no subscribers over keep-alive connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::fanout::event_data;
use super::floor::{http_floor, HttpFloorResult};
use super::{diff, Probe};
use crate::client::{self, HttpConn, Res, Target};
use crate::stats::{self, round1, round3, Errors, Latency, ShardedHistogram};

#[derive(Clone, Debug)]
pub struct PublishOpts {
    pub connections: usize,
    pub secs: f64,
    pub event_size: usize,
    /// Also measure the HTTP floor, this many seconds (0 = skip).
    pub floor_secs: f64,
    /// Core the server is pinned to: the floor's server runs there.
    pub server_core: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct PublishResult {
    pub connections: usize,
    pub secs: f64,
    pub publishes_ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub publishes_per_s: f64,
    pub latency: Latency,
    /// New connections opened because the server closed one (0 when
    /// keep-alive works; one per request when it answers `Connection: close`).
    pub http_reconnects: u64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_publish: Option<f64>,
    pub client_cpu_s: f64,
    /// Client CPU over wall time: near 1.0 per client core means the load
    /// generator, not the server, limited the rate.
    pub client_cpu_utilisation: f64,
    /// The same client against a server that answers `200 {}` and does nothing else.
    pub http_floor: Option<HttpFloorResult>,
    /// Server CPU per publish minus the floor's per request: the server's own cost.
    pub server_cpu_us_per_publish_above_floor: Option<f64>,
}

/// What one load run saw.
struct Load {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Latency,
    http_reconnects: u64,
    secs: f64,
}

pub async fn publish(t: &Target, p: &Probe, o: &PublishOpts) -> Res<PublishResult> {
    let (cpu0, ccpu0) = (p.cpu(), p.client_cpu());
    let run = load(t, o.connections, o.secs, o.event_size).await?;
    let (cpu1, ccpu1) = (p.cpu(), p.client_cpu());
    let n = run.ok;
    let cpu = diff(cpu0, cpu1);
    let per_publish = cpu.filter(|_| n > 0).map(|c| round3(c * 1e6 / n as f64));
    let http_floor = if o.floor_secs > 0.0 {
        let (conns, size, secs) = (o.connections, o.event_size, o.floor_secs);
        Some(
            http_floor(o.server_core, |addr| async move {
                let t = Target { addr, ..t.clone() };
                Ok(load(&t, conns, secs, size).await?.ok)
            })
            .await?,
        )
    } else {
        None
    };
    Ok(PublishResult {
        connections: o.connections.max(1),
        secs: round3(run.secs),
        publishes_ok: n,
        errors: run.errors,
        first_error: run.first_error,
        publishes_per_s: round1(stats::rate(n, run.secs)),
        latency: run.latency,
        http_reconnects: run.http_reconnects,
        server_cpu_s: cpu.map(round3),
        server_cpu_us_per_publish: per_publish,
        client_cpu_s: round3(ccpu1 - ccpu0),
        client_cpu_utilisation: round3((ccpu1 - ccpu0) / run.secs),
        server_cpu_us_per_publish_above_floor: per_publish
            .zip(http_floor.as_ref())
            .map(|(c, f)| round3(c - f.cpu_us_per_request)),
        http_floor,
    })
}

/// `conns` keep-alive connections publishing back to back for `secs`.
async fn load(t: &Target, conns: usize, secs: f64, event_size: usize) -> Res<Load> {
    let conns = conns.max(1);
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let lat = Arc::new(ShardedHistogram::new(conns));
    let mut http = Vec::with_capacity(conns);
    for _ in 0..conns {
        http.push(HttpConn::connect(t).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut set = JoinSet::new();
    for (w, mut c) in http.into_iter().enumerate() {
        let (ok, errors, lat, t) = (ok.clone(), errors.clone(), lat.clone(), t.clone());
        let data = event_data(client::unix_nanos(), w as u64, event_size);
        set.spawn(async move {
            // Signed once and re-signed every minute (timestamps are valid
            // for ±600 s), so signing costs nothing per request.
            let mut post = client::signed_trigger(&t.creds, "bench-pub-nosub", "bench", &data);
            let mut signed_at = Instant::now();
            while Instant::now() < deadline {
                if signed_at.elapsed() > Duration::from_secs(60) {
                    post = client::signed_trigger(&t.creds, "bench-pub-nosub", "bench", &data);
                    signed_at = Instant::now();
                }
                let t0 = Instant::now();
                let r = c.post(post.uri.clone(), post.body.clone()).await;
                lat.record(w, t0.elapsed().as_micros() as u64);
                match r {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        errors.record(|| format!("{other:?}"));
                        if other.is_err() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
            c.reconnects
        });
    }
    let mut http_reconnects = 0;
    while let Some(r) = set.join_next().await {
        http_reconnects += r.unwrap_or(0);
    }
    Ok(Load {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.count(),
        first_error: errors.first(),
        latency: Latency::from_histogram(&lat.merged()),
        http_reconnects,
        secs: start.elapsed().as_secs_f64(),
    })
}
