//! Reconnect storm: N sockets connected and subscribed, then all their TCP
//! connections dropped at once without a WebSocket close (as when a proxy in
//! front of the server restarts), then every client reconnects and
//! re-subscribes the way pusher-js would, all at the same time.
//!
//! pusher-js, when its connection closes without a Pusher close code,
//! reconnects after `retryIn(1000)`; a failed attempt is retried by its
//! strategy loop, and close codes 4100–4199 ask it to back off. Real clients
//! notice a dropped connection at different moments, so this models: first
//! attempt after a uniform random delay in [0, jitter); after the k-th
//! failed attempt, wait min(backoff × 2^(k−1), backoff max) × a random
//! factor in [0.5, 1.5); give up when the limit has passed since the drop.
//!
//! Reports the time until every socket is subscribed again, per-socket
//! reconnect time, attempts and failures, peak server RSS and the server's
//! CPU during the storm, and, as a check that the re-subscriptions work, the
//! delivery of one event published to every channel afterwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::fanout::{delivery_ratio, drain, event_data, Deliveries};
use super::{diff, serve, spawn_peak_rss, splitmix64, unit, OnText, Probe};
use crate::client::{self, HttpConn, Res, Target};
use crate::stats::{round1, round3, Errors, Latency, ShardedHistogram};
use crate::subscriber::Subscriber;

pub const CHANNEL_PREFIX: &str = "bench-rc-";

#[derive(Clone, Debug)]
pub struct ReconnectOpts {
    pub sockets: usize,
    pub channels: usize,
    /// Concurrent handshakes while building the initial connections (the
    /// storm itself is not limited).
    pub concurrency: usize,
    /// First attempt after a uniform random delay in [0, jitter), ms.
    pub jitter_ms: u64,
    /// Wait after the first failed attempt, doubling per failure, ms.
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    /// A socket not back this long after the drop gives up, seconds.
    pub limit_secs: f64,
    /// Reset the connections (SO_LINGER 0: RST) instead of closing them (FIN).
    pub rst: bool,
    pub drain_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct ReconnectResult {
    pub sockets_target: usize,
    pub channels: usize,
    pub connected_before: u64,
    pub connect_failures_before: u64,
    /// Sockets the server closed before the drop (should be 0).
    pub lost_before_drop: u64,
    /// How the connections were dropped: "fin" or "rst".
    pub drop: &'static str,
    pub jitter_ms: u64,
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    pub sockets_back: u64,
    /// Sockets that were still not back when the limit passed.
    pub sockets_gave_up: u64,
    /// From the drop until the last socket was subscribed again; absent if
    /// some never were.
    pub secs_until_all_back: Option<f64>,
    /// From the drop to this socket's `subscription_succeeded`.
    pub time_back: Latency,
    pub attempts: u64,
    pub failed_attempts: u64,
    pub first_error: Option<String>,
    pub server_cpu_storm_s: Option<f64>,
    /// Server CPU of the storm (drop → all back) per socket back, µs.
    pub server_cpu_us_per_reconnect: Option<f64>,
    pub client_cpu_storm_s: f64,
    pub server_rss_before_drop_bytes: Option<u64>,
    /// Highest RSS sampled (every 100 ms) from the drop until all were back.
    pub server_rss_peak_bytes: Option<u64>,
    /// After the check publish, with every socket back.
    pub server_rss_after_bytes: Option<u64>,
    /// The check: one event to each channel after the storm.
    pub check_expected_deliveries: u64,
    pub check_delivered: u64,
    pub check_delivery_ratio: f64,
    pub check_latency: Latency,
}

struct Shared {
    lost_before_drop: AtomicU64,
    back: AtomicU64,
    gave_up: AtomicU64,
    last_back: std::sync::Mutex<Option<Instant>>,
    attempts: AtomicU64,
    failed: AtomicU64,
    errors: Errors,
    time_back: ShardedHistogram,
    back_on: Vec<AtomicU64>,
    deliveries: Arc<Deliveries>,
}

async fn connect_subscribe(t: &Target, channel: &str) -> Res<Subscriber> {
    let (mut sock, _) = Subscriber::connect(t).await?;
    sock.subscribe(t, &client::public_subscribe_frame(channel))
        .await?;
    Ok(sock)
}

/// Delay before attempt `k` (0 = the first) of socket `idx`, ms.
fn delay_ms(o: &ReconnectOpts, idx: usize, k: u32) -> f64 {
    let h = splitmix64(((idx as u64) << 8) ^ u64::from(k) ^ 0x7ec0_22ec);
    if k == 0 {
        o.jitter_ms as f64 * unit(h)
    } else {
        let base = (o.backoff_ms as f64 * 2f64.powi(k as i32 - 1)).min(o.backoff_max_ms as f64);
        base * (0.5 + unit(h))
    }
}

#[allow(clippy::too_many_arguments)]
async fn socket(
    t: Target,
    o: Arc<ReconnectOpts>,
    idx: usize,
    channel: usize,
    sem: Arc<Semaphore>,
    ready_tx: mpsc::UnboundedSender<Result<(), String>>,
    mut drop_rx: watch::Receiver<Option<Instant>>,
    mut stop_rx: watch::Receiver<bool>,
    s: Arc<Shared>,
) {
    let name = format!("{CHANNEL_PREFIX}{channel}");
    let permit = sem.acquire_owned().await.expect("semaphore never closed");
    let mut ws = match connect_subscribe(&t, &name).await {
        Ok(ws) => ws,
        Err(e) => {
            let _ = ready_tx.send(Err(e));
            return;
        }
    };
    drop(permit);
    let _ = ready_tx.send(Ok(()));
    drop(ready_tx);
    let dropped_at = loop {
        tokio::select! {
            m = ws.next_text() => match m {
                Ok(Some(text)) => {
                    if client::is_ping(text) {
                        ws.send_text(client::PONG).await.ok();
                    }
                }
                Ok(None) | Err(_) => {
                    s.lost_before_drop.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            changed = drop_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                if let Some(at) = *drop_rx.borrow_and_update() {
                    break at;
                }
            }
        }
    };
    if o.rst {
        ws.set_zero_linger();
    }
    drop(ws);
    let limit = dropped_at + Duration::from_secs_f64(o.limit_secs);
    let mut k = 0u32;
    let mut ws = loop {
        let wait = Duration::from_secs_f64(delay_ms(&o, idx, k) / 1000.0);
        if Instant::now() + wait >= limit {
            s.gave_up.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(wait).await;
        s.attempts.fetch_add(1, Ordering::Relaxed);
        match connect_subscribe(&t, &name).await {
            Ok(ws) => break ws,
            Err(e) => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                s.errors.record(|| e);
                k += 1;
            }
        }
    };
    let now = Instant::now();
    s.time_back
        .record(idx, (now - dropped_at).as_micros() as u64);
    s.back_on[channel].fetch_add(1, Ordering::Relaxed);
    {
        let mut last = s.last_back.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(last.map_or(now, |l| l.max(now)));
    }
    s.back.fetch_add(1, Ordering::Relaxed);
    serve(
        &mut ws,
        &mut stop_rx,
        &OnText::Deliveries(s.deliveries.clone()),
        idx,
    )
    .await;
    let _ = ws.close(Duration::from_secs(3)).await;
}

pub async fn reconnect(t: &Target, p: &Probe, o: &ReconnectOpts) -> Res<ReconnectResult> {
    let channels = o.channels.max(1);
    let o = Arc::new(o.clone());
    let s = Arc::new(Shared {
        lost_before_drop: AtomicU64::new(0),
        back: AtomicU64::new(0),
        gave_up: AtomicU64::new(0),
        last_back: std::sync::Mutex::new(None),
        attempts: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        errors: Errors::default(),
        time_back: ShardedHistogram::new(64),
        back_on: (0..channels).map(|_| AtomicU64::new(0)).collect(),
        deliveries: Arc::new(Deliveries::new()),
    });
    let sem = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let (drop_tx, drop_rx) = watch::channel(None::<Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut set = JoinSet::new();
    for i in 0..o.sockets {
        set.spawn(socket(
            t.clone(),
            o.clone(),
            i,
            i % channels,
            sem.clone(),
            ready_tx.clone(),
            drop_rx.clone(),
            stop_rx.clone(),
            s.clone(),
        ));
    }
    drop(ready_tx);
    let (mut ok, mut failures, mut first_error) = (0u64, 0u64, None);
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(()) => ok += 1,
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let shutdown = |mut set: JoinSet<()>, stop_tx: watch::Sender<bool>| async move {
        let _ = stop_tx.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::timeout_at(deadline, set.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        set.abort_all();
    };
    if ok == 0 {
        drop(drop_tx);
        shutdown(set, stop_tx).await;
        return Err(format!(
            "no socket connected: {}",
            first_error.unwrap_or_default()
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let rss_before = p.rss();
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = spawn_peak_rss(*p, Duration::from_millis(100), stop_sampler.clone());
    let (cpu0, ccpu0) = (p.cpu(), p.client_cpu());
    let dropped_at = Instant::now();
    let _ = drop_tx.send(Some(dropped_at));
    let to_come = ok - s.lost_before_drop.load(Ordering::Relaxed);
    let deadline = dropped_at + Duration::from_secs_f64(o.limit_secs + 1.0);
    loop {
        let (b, g) = (
            s.back.load(Ordering::Relaxed),
            s.gave_up.load(Ordering::Relaxed),
        );
        if b + g >= to_come || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (cpu1, ccpu1) = (p.cpu(), p.client_cpu());
    stop_sampler.store(true, Ordering::Relaxed);
    let peak = sampler.await.ok().flatten();
    let back = s.back.load(Ordering::Relaxed);
    let last_back = *s.last_back.lock().unwrap_or_else(|e| e.into_inner());
    let all_back = (back >= to_come)
        .then_some(last_back)
        .flatten()
        .map(|l| round3((l - dropped_at).as_secs_f64()));

    // The check: one event per channel reaches every socket that came back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected: u64 = s.back_on.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let mut check_error = None;
    match HttpConn::connect(t).await {
        Ok(mut http) => {
            for c in 0..channels {
                let data = event_data(client::unix_nanos(), c as u64, 100);
                let post = client::signed_trigger(
                    &t.creds,
                    &format!("{CHANNEL_PREFIX}{c}"),
                    "bench",
                    &data,
                );
                match http.post(post.uri, post.body).await {
                    Ok(200) => {}
                    other => {
                        check_error.get_or_insert(format!("check publish: {other:?}"));
                    }
                }
            }
        }
        Err(e) => check_error = Some(format!("check publish: {e}")),
    }
    drain(|| s.deliveries.received(), expected, o.drain_secs).await;
    let delivered = s.deliveries.received();
    let rss_after = p.rss();
    drop(drop_tx);
    shutdown(set, stop_tx).await;

    let cpu = diff(cpu0, cpu1);
    Ok(ReconnectResult {
        sockets_target: o.sockets,
        channels,
        connected_before: ok,
        connect_failures_before: failures,
        lost_before_drop: s.lost_before_drop.load(Ordering::Relaxed),
        drop: if o.rst { "rst" } else { "fin" },
        jitter_ms: o.jitter_ms,
        backoff_ms: o.backoff_ms,
        backoff_max_ms: o.backoff_max_ms,
        sockets_back: back,
        sockets_gave_up: s.gave_up.load(Ordering::Relaxed),
        secs_until_all_back: all_back,
        time_back: Latency::from_histogram(&s.time_back.merged()),
        attempts: s.attempts.load(Ordering::Relaxed),
        failed_attempts: s.failed.load(Ordering::Relaxed),
        first_error: first_error.or_else(|| s.errors.first()).or(check_error),
        server_cpu_storm_s: cpu.map(round3),
        server_cpu_us_per_reconnect: cpu
            .filter(|_| back > 0)
            .map(|c| round1(c * 1e6 / back as f64)),
        client_cpu_storm_s: round3(ccpu1 - ccpu0),
        server_rss_before_drop_bytes: rss_before,
        server_rss_peak_bytes: peak,
        server_rss_after_bytes: rss_after,
        check_expected_deliveries: expected,
        check_delivered: delivered,
        check_delivery_ratio: delivery_ratio(delivered, expected),
        check_latency: s.deliveries.latency(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ReconnectOpts {
        ReconnectOpts {
            sockets: 10,
            channels: 1,
            concurrency: 1,
            jitter_ms: 1000,
            backoff_ms: 1000,
            backoff_max_ms: 8000,
            limit_secs: 60.0,
            rst: false,
            drain_secs: 1.0,
        }
    }

    #[test]
    fn first_attempt_is_jittered_then_backoff_doubles_to_the_cap() {
        let o = opts();
        let first: Vec<f64> = (0..1000).map(|i| delay_ms(&o, i, 0)).collect();
        assert!(first.iter().all(|&d| (0.0..1000.0).contains(&d)));
        let mean = first.iter().sum::<f64>() / first.len() as f64;
        assert!((400.0..600.0).contains(&mean), "{mean}");
        for (k, base) in [
            (1, 1000.0),
            (2, 2000.0),
            (3, 4000.0),
            (4, 8000.0),
            (9, 8000.0),
        ] {
            let d = delay_ms(&o, 3, k);
            assert!(d >= base * 0.5 && d < base * 1.5, "k={k}: {d}");
        }
    }
}
