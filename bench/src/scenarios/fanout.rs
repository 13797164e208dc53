//! Fan-out: open-loop signed publishes to subscribed sockets; delivery
//! rate, ratio, end-to-end latency and server CPU per delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memchr::memmem;
use serde::Serialize;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;

use super::floor::{floor, FloorOpts, FloorResult};
use super::{open_fleet, OnText, Probe};
use crate::client::{self, HttpConn, Res, Target};
use crate::stats::{self, round1, round3, Errors, Latency, ShardedHistogram};

/// Receiver-side accounting of benchmark events.
pub(super) struct Deliveries {
    received: AtomicU64,
    latency: ShardedHistogram,
    marker: memmem::Finder<'static>,
}

impl Deliveries {
    fn new() -> Self {
        Deliveries {
            received: AtomicU64::new(0),
            latency: ShardedHistogram::new(64),
            // `"t":` as it appears inside the JSON-encoded `data` string.
            marker: memmem::Finder::new(br#"\"t\":"#),
        }
    }

    /// Records a frame if it carries a benchmark timestamp; true if it did.
    pub(super) fn record(&self, frame: &[u8], shard: usize) -> bool {
        let Some(sent) = parse_sent_ns(&self.marker, frame) else {
            return false;
        };
        let now = client::unix_nanos();
        self.latency.record(shard, now.saturating_sub(sent) / 1000);
        self.received.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// Extracts the send timestamp (unix nanos) after `marker` in `frame`.
fn parse_sent_ns(marker: &memmem::Finder<'_>, frame: &[u8]) -> Option<u64> {
    let at = marker.find(frame)? + marker.needle().len();
    let digits = frame[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut v: u64 = 0;
    let mut n = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        n += 1;
    }
    (n > 0).then_some(v)
}

/// Event `data` of exactly `size` bytes (when size allows) carrying the
/// scheduled send time and sequence number: `{"t":…,"s":…,"p":"xxx…"}`.
pub fn event_data(sent_ns: u64, seq: u64, size: usize) -> String {
    let head = format!(r#"{{"t":{sent_ns},"s":{seq},"p":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

#[derive(Clone, Debug)]
pub struct FanoutOpts {
    pub subscribers: usize,
    pub channels: usize,
    pub event_size: usize,
    pub rate: f64,
    pub secs: f64,
    pub publishers: usize,
    pub drain_secs: f64,
    pub concurrency: usize,
    /// Seconds of the loopback floor measurement after the run (0 = skip).
    pub floor_secs: f64,
    /// Core the server is pinned to: the floor's writer runs there.
    pub server_core: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct FanoutResult {
    pub subscribers_target: usize,
    pub subscribers_ok: u64,
    pub subscribe_failures: u64,
    pub channels: usize,
    pub event_size_bytes: usize,
    pub publish_rate_per_s: f64,
    pub publish_secs: f64,
    pub publishes_attempted: u64,
    pub publishes_ok: u64,
    pub publish_errors: u64,
    pub first_error: Option<String>,
    /// Publishes sent later than scheduled by more than 10 ms (the load
    /// generator or the server falling behind the open-loop schedule).
    pub publishes_late: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub delivery_ratio: f64,
    pub deliveries_per_s: f64,
    /// Scheduled send time to receipt, so queueing at the sender counts.
    pub latency: Latency,
    pub publish_http_latency: Latency,
    /// Times a publisher had to open a new HTTP connection because the
    /// server closed the previous one (0 with working keep-alive).
    pub http_reconnects: u64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_s_per_million_deliveries: Option<f64>,
    /// The user-space part: the server's own code, allocator and runtime.
    pub server_user_cpu_s_per_million_deliveries: Option<f64>,
    /// The kernel part, which over loopback includes the receivers' TCP stack.
    pub server_sys_cpu_s_per_million_deliveries: Option<f64>,
    /// What one plain write per delivery costs on this machine, same traffic.
    pub loopback_floor: Option<FloorResult>,
    /// Server CPU per million deliveries minus the floor: the server's own cost.
    pub server_cpu_s_per_million_above_floor: Option<f64>,
    pub client_cpu_s: f64,
    pub server_rss_bytes: Option<u64>,
}

struct Job {
    seq: u64,
    sched_ns: u64,
}

pub async fn fanout(t: &Target, p: &Probe, o: &FanoutOpts) -> Res<FanoutResult> {
    let channels = o.channels.max(1);
    let deliveries = Arc::new(Deliveries::new());
    let fleet = open_fleet(
        t,
        o.subscribers,
        o.concurrency,
        |i| format!("bench-fan-{}", i % channels),
        OnText::Deliveries(deliveries.clone()),
    )
    .await;
    if fleet.ok == 0 {
        let e = fleet.first_error.clone().unwrap_or_default();
        fleet.shutdown(Duration::from_secs(10)).await;
        return Err(format!("no subscriber connected: {e}"));
    }
    // Subscribers per channel, for the expected delivery count.
    let mut subs = vec![0u64; channels];
    for i in 0..o.subscribers {
        subs[i % channels] += 1;
    }
    // Failed subscribers are spread evenly enough; count only the ones that
    // subscribed by scaling (exact when nothing failed).
    let scale = fleet.ok as f64 / o.subscribers as f64;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let total = (o.rate * o.secs).round() as u64;
    let period_ns = (1e9 / o.rate.max(0.001)) as u64;
    let (job_tx, job_rx) = mpsc::channel::<Job>(1_000_000);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let ok_per_ch: Arc<Vec<AtomicU64>> =
        Arc::new((0..channels).map(|_| AtomicU64::new(0)).collect());
    let errors = Arc::new(Errors::default());
    let late = Arc::new(AtomicU64::new(0));
    let http_lat = Arc::new(ShardedHistogram::new(o.publishers));

    let (cpu0, ccpu0) = (p.cpu_split(), p.client_cpu());
    let start = Instant::now();
    let start_ns = client::unix_nanos();
    let mut workers = JoinSet::new();
    for w in 0..o.publishers.max(1) {
        let t = t.clone();
        let job_rx = job_rx.clone();
        let (ok_per_ch, errors, late, http_lat) = (
            ok_per_ch.clone(),
            errors.clone(),
            late.clone(),
            http_lat.clone(),
        );
        let size = o.event_size;
        workers.spawn(async move {
            let mut conn: Option<HttpConn> = None;
            loop {
                let job = { job_rx.lock().await.recv().await };
                let Some(job) = job else { break };
                let ch = (job.seq % channels as u64) as usize;
                let data = event_data(job.sched_ns, job.seq, size);
                let post =
                    client::signed_trigger(&t.creds, &format!("bench-fan-{ch}"), "bench", &data);
                if client::unix_nanos() > job.sched_ns + 10_000_000 {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let t0 = Instant::now();
                if conn.is_none() {
                    conn = HttpConn::connect(&t).await.ok();
                }
                let r = match conn.as_mut() {
                    Some(c) => c.post(post.uri, post.body).await,
                    None => Err("http connect failed".to_string()),
                };
                http_lat.record(w, t0.elapsed().as_micros() as u64);
                match r {
                    Ok(200) => {
                        ok_per_ch[ch].fetch_add(1, Ordering::Relaxed);
                    }
                    other => errors.record(|| format!("{other:?}")),
                }
            }
            conn.map_or(0, |c| c.reconnects)
        });
    }
    // Open-loop schedule: job i is due at start + i * period regardless of
    // how earlier requests fared.
    let t_start = tokio::time::Instant::from_std(start);
    for seq in 0..total {
        let due = t_start + Duration::from_nanos(seq * period_ns);
        tokio::time::sleep_until(due).await;
        let job = Job {
            seq,
            sched_ns: start_ns + seq * period_ns,
        };
        if job_tx.send(job).await.is_err() {
            break;
        }
    }
    drop(job_tx);
    let mut http_reconnects = 0;
    while let Some(r) = workers.join_next().await {
        http_reconnects += r.unwrap_or(0);
    }
    let publish_secs = start.elapsed().as_secs_f64();

    let published_ok: Vec<u64> = ok_per_ch
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let publishes_ok: u64 = published_ok.iter().sum();
    let expected_attempted: f64 = (0..channels)
        .map(|c| {
            let attempted =
                total / channels as u64 + u64::from((c as u64) < total % channels as u64);
            attempted as f64 * subs[c] as f64 * scale
        })
        .sum();
    let expected = expected_attempted.round() as u64;
    // Drain: wait for in-flight deliveries.
    let drain_deadline = Instant::now() + Duration::from_secs_f64(o.drain_secs);
    let mut last = deliveries.received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while Instant::now() < drain_deadline {
        let now = deliveries.received.load(Ordering::Relaxed);
        if now >= expected {
            break;
        }
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_secs = start.elapsed().as_secs_f64();
    let (cpu1, ccpu1) = (p.cpu_split(), p.client_cpu());
    let rss = p.rss();
    let delivered = deliveries.received.load(Ordering::Relaxed);
    let (user, sys) = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (Some(b.0 - a.0), Some(b.1 - a.1)),
        _ => (None, None),
    };
    let cpu = user.zip(sys).map(|(u, s)| u + s);
    let per_million = |c: Option<f64>| {
        c.filter(|_| delivered > 0)
            .map(|c| round3(c * 1e6 / delivered as f64))
    };
    let (subscribers_ok, subscribe_failures) = (fleet.ok, fleet.failures);
    let fleet_error = fleet.first_error.clone();
    fleet.shutdown(Duration::from_secs(20)).await;
    let loopback_floor = if o.floor_secs > 0.0 {
        let opts = FloorOpts {
            sockets: subscribers_ok as usize,
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
    let res = FanoutResult {
        subscribers_target: o.subscribers,
        subscribers_ok,
        subscribe_failures,
        channels,
        event_size_bytes: o.event_size,
        publish_rate_per_s: o.rate,
        publish_secs: round3(publish_secs),
        publishes_attempted: total,
        publishes_ok,
        publish_errors: errors.count(),
        first_error: errors.first().or(fleet_error),
        publishes_late: late.load(Ordering::Relaxed),
        expected_deliveries: expected,
        delivered,
        delivery_ratio: if expected > 0 {
            (delivered as f64 / expected as f64 * 10_000.0).round() / 10_000.0
        } else {
            0.0
        },
        deliveries_per_s: round1(stats::rate(delivered, total_secs)),
        latency: Latency::from_histogram(&deliveries.latency.merged()),
        publish_http_latency: Latency::from_histogram(&http_lat.merged()),
        http_reconnects,
        server_cpu_s: cpu.map(round3),
        server_cpu_s_per_million_deliveries: per_million(cpu),
        server_user_cpu_s_per_million_deliveries: per_million(user),
        server_sys_cpu_s_per_million_deliveries: per_million(sys),
        server_cpu_s_per_million_above_floor: per_million(cpu)
            .zip(loopback_floor.as_ref())
            .map(|(c, f)| round3(c - f.cpu_s_per_million_writes)),
        loopback_floor,
        client_cpu_s: round3(ccpu1 - ccpu0),
        server_rss_bytes: rss,
    };
    Ok(res)
}

/// Size on the wire of one fan-out frame as a server sends it: the event
/// JSON (`data` JSON-encoded inside it) plus the unmasked WebSocket header.
pub fn frame_bytes(event_size: usize) -> usize {
    let data = event_data(u64::MAX / 2, 1_000_000, event_size);
    let json = format!(
        r#"{{"event":"bench","channel":"bench-fan-0","data":{}}}"#,
        serde_json::to_string(&data).unwrap_or_default()
    );
    let header = match json.len() {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    };
    json.len() + header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_has_requested_size_and_parses_back() {
        let d = event_data(1_700_000_000_123_456_789, 42, 100);
        assert_eq!(d.len(), 100);
        assert!(serde_json::from_str::<serde_json::Value>(&d).is_ok());
        // As delivered: the data string JSON-encoded inside the frame.
        let frame = format!(
            r#"{{"event":"bench","channel":"c","data":{}}}"#,
            serde_json::to_string(&d).unwrap()
        );
        let m = memmem::Finder::new(br#"\"t\":"#);
        assert_eq!(
            parse_sent_ns(&m, frame.as_bytes()),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(parse_sent_ns(&m, br#"{"event":"pusher:ping"}"#), None);
    }

    #[test]
    fn frame_bytes_counts_escaped_data_and_ws_header() {
        // 100-byte data: 8 quotes escaped inside the frame's JSON string.
        let d = event_data(u64::MAX / 2, 1_000_000, 100);
        let json = format!(
            r#"{{"event":"bench","channel":"bench-fan-0","data":{}}}"#,
            serde_json::to_string(&d).unwrap()
        );
        assert!(json.len() > 125);
        assert_eq!(frame_bytes(100), json.len() + 4);
        assert!(frame_bytes(10) < frame_bytes(100));
        assert!(frame_bytes(70_000) > 70_000 + 10);
    }

    #[test]
    fn event_data_never_shorter_than_header() {
        let d = event_data(1, 2, 5);
        assert!(d.starts_with(r#"{"t":1,"s":2,"p":""#));
    }
}
