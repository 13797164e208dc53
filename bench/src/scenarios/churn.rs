//! Churn: connect/subscribe/unsubscribe/disconnect loops; ops/s and RSS
//! drift after warm-up (a leak check).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::{diff, Probe};
use crate::client::{self, Res, Target};
use crate::stats::{self, round1, round3, Drift, Errors, Latency, ShardedHistogram};

#[derive(Clone, Debug)]
pub struct ChurnOpts {
    pub secs: f64,
    pub concurrency: usize,
    pub channels: usize,
    pub warmup_secs: f64,
    pub sample_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct ChurnResult {
    pub secs: f64,
    pub concurrency: usize,
    pub channels: usize,
    /// connect + subscribe + unsubscribe + disconnect.
    pub cycles: u64,
    pub cycles_per_s: f64,
    /// Four protocol operations per cycle.
    pub ops_per_s: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub cycle_latency: Latency,
    pub warmup_secs: f64,
    pub rss_drift: Option<Drift>,
    pub server_rss_before_bytes: Option<u64>,
    pub server_rss_min_bytes: Option<u64>,
    pub server_rss_max_bytes: Option<u64>,
    pub server_rss_after_settle_bytes: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_cycle: Option<f64>,
    pub client_cpu_s: f64,
    /// (seconds since start, server RSS KiB).
    pub rss_samples_kb: Vec<(f64, u64)>,
}

async fn churn_cycle(t: &Target, channel: &str) -> Res<()> {
    let mut ws = client::connect(t).await?;
    client::subscribe(t, &mut ws, channel).await?;
    client::unsubscribe(&mut ws, channel).await?;
    client::close(ws, t.op_timeout).await
}

pub async fn churn(t: &Target, p: &Probe, o: &ChurnOpts) -> Res<ChurnResult> {
    let channels = o.channels.max(1);
    let rss_before = p.rss();
    let cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let lat = Arc::new(ShardedHistogram::new(o.concurrency));
    let (cpu0, ccpu0) = (p.cpu(), p.client_cpu());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);

    let probe = *p;
    let sample_every = Duration::from_millis(o.sample_ms.max(50));
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(sample_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if Instant::now() >= deadline {
                break;
            }
            if let Some(r) = probe.rss() {
                samples.push((round3(start.elapsed().as_secs_f64()), r));
            }
        }
        samples
    });

    let mut set = JoinSet::new();
    for w in 0..o.concurrency.max(1) {
        let t = t.clone();
        let (cycles, errors, lat) = (cycles.clone(), errors.clone(), lat.clone());
        set.spawn(async move {
            let mut k = w;
            while Instant::now() < deadline {
                let ch = format!("bench-churn-{}", k % channels);
                k += 7;
                let t0 = Instant::now();
                match churn_cycle(&t, &ch).await {
                    Ok(()) => {
                        lat.record(w, t0.elapsed().as_micros() as u64);
                        cycles.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.record(|| e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let secs = start.elapsed().as_secs_f64();
    let (cpu1, ccpu1) = (p.cpu(), p.client_cpu());
    let samples = sampler.await.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = p.rss();
    let n = cycles.load(Ordering::Relaxed);
    let cpu = diff(cpu0, cpu1);
    Ok(ChurnResult {
        secs: round3(secs),
        concurrency: o.concurrency,
        channels,
        cycles: n,
        cycles_per_s: round1(stats::rate(n, secs)),
        ops_per_s: round1(stats::rate(4 * n, secs)),
        errors: errors.count(),
        first_error: errors.first(),
        cycle_latency: Latency::from_histogram(&lat.merged()),
        warmup_secs: o.warmup_secs,
        rss_drift: stats::drift(&samples, o.warmup_secs, 5),
        server_rss_before_bytes: rss_before,
        server_rss_min_bytes: samples.iter().map(|s| s.1).min(),
        server_rss_max_bytes: samples.iter().map(|s| s.1).max(),
        server_rss_after_settle_bytes: after,
        server_cpu_s: cpu.map(round3),
        server_cpu_us_per_cycle: cpu.filter(|_| n > 0).map(|c| round1(c * 1e6 / n as f64)),
        client_cpu_s: round3(ccpu1 - ccpu0),
        rss_samples_kb: samples.iter().map(|(t, r)| (*t, r / 1024)).collect(),
    })
}
