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
use super::{open_fleet, split_diff, OnText, Probe};
use crate::client::{self, HttpConn, Res, Target};
use crate::stats::{self, round1, round3, Errors, Latency, ShardedHistogram};

/// Receiver-side accounting of benchmark events.
pub(super) struct Deliveries {
    received: AtomicU64,
    latency: ShardedHistogram,
    marker: memmem::Finder<'static>,
}

impl Deliveries {
    pub(super) fn new() -> Self {
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

    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub(super) fn latency(&self) -> Latency {
        Latency::from_histogram(&self.latency.merged())
    }

    /// Forgets everything recorded so far (after a warm-up).
    pub(super) fn reset(&self) {
        self.latency.reset();
        self.received.store(0, Ordering::Relaxed);
    }
}

/// Waits for in-flight deliveries: until `received()` reaches `expected`,
/// stops moving for 2 s, or `limit_secs` pass.
pub(super) async fn drain(received: impl Fn() -> u64, expected: u64, limit_secs: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(limit_secs);
    let mut last = received();
    let mut last_change = Instant::now();
    while Instant::now() < deadline {
        let now = received();
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
}

/// received / expected, rounded to 4 decimals (0 when nothing was expected).
pub(super) fn delivery_ratio(delivered: u64, expected: u64) -> f64 {
    if expected > 0 {
        (delivered as f64 / expected as f64 * 10_000.0).round() / 10_000.0
    } else {
        0.0
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
    #[serde(flatten)]
    pub publishing: Publishing,
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
    /// The kernel part of `client_cpu_s`. Over loopback it includes, besides
    /// the reads, the ACK each read that empties a socket sends and that
    /// ACK's processing for the server's socket, both run in this process.
    pub client_sys_cpu_s: f64,
    pub server_rss_bytes: Option<u64>,
}

struct Job {
    seq: u64,
    sched_ns: u64,
}

/// What an open-loop publishing run did.
pub(super) struct OpenLoop {
    /// When the schedule started (just before the first publish).
    pub started: Instant,
    /// Publishes scheduled; publish `seq` went to channel `seq % channels`.
    pub attempted: u64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub late: u64,
    pub http_latency: Latency,
    pub http_reconnects: u64,
    /// From the first publish until the last one was answered.
    pub secs: f64,
}

/// The publishing side of an open-loop run as the fanout, private and
/// cluster results report it (flattened into each: the JSON keys are the
/// same in all three).
#[derive(Debug, Serialize)]
pub struct Publishing {
    pub publish_rate_per_s: f64,
    pub publish_secs: f64,
    pub publishes_attempted: u64,
    pub publishes_ok: u64,
    pub publish_errors: u64,
    /// The first publish error, else the first error of the subscribers.
    pub first_error: Option<String>,
    /// Publishes sent later than scheduled by more than 10 ms (the load
    /// generator or the server falling behind the open-loop schedule).
    pub publishes_late: u64,
}

impl OpenLoop {
    /// What this run reports about its publishing at `rate` per second;
    /// `fleet_error` is reported when no publish failed.
    pub(super) fn publishing(&self, rate: f64, fleet_error: Option<String>) -> Publishing {
        Publishing {
            publish_rate_per_s: rate,
            publish_secs: round3(self.secs),
            publishes_attempted: self.attempted,
            publishes_ok: self.ok,
            publish_errors: self.errors,
            first_error: self.first_error.clone().or(fleet_error),
            publishes_late: self.late,
        }
    }
}

/// Publishes `rate × secs` events open loop (publish `i` is due at start +
/// i / rate regardless of how earlier requests fared) over `publishers`
/// keep-alive connections, round robin over the channels `{prefix}{0..channels}`;
/// each event's data carries its scheduled send time (see [`event_data`]).
pub(super) async fn open_loop(
    t: &Target,
    prefix: &str,
    channels: usize,
    rate: f64,
    secs: f64,
    publishers: usize,
    event_size: usize,
) -> OpenLoop {
    let channels = channels.max(1) as u64;
    let (creds, prefix) = (t.creds.clone(), prefix.to_string());
    let make: MakePost = Arc::new(move |seq, sched_ns| {
        let data = event_data(sched_ns, seq, event_size);
        client::signed_trigger(
            &creds,
            &format!("{prefix}{}", seq % channels),
            "bench",
            &data,
        )
    });
    open_loop_with(t, rate, secs, publishers, make).await
}

/// Builds the signed request of publish `seq` scheduled at `sched_ns`
/// (unix nanos), which its events' data should carry (see [`event_data`]).
pub(super) type MakePost = Arc<dyn Fn(u64, u64) -> client::SignedPost + Send + Sync>;

/// [`open_loop`] with any request: `make(seq, sched_ns)` builds publish `seq`.
pub(super) async fn open_loop_with(
    t: &Target,
    rate: f64,
    secs: f64,
    publishers: usize,
    make: MakePost,
) -> OpenLoop {
    let total = (rate * secs).round() as u64;
    let period_ns = (1e9 / rate.max(0.001)) as u64;
    let (job_tx, job_rx) = mpsc::channel::<Job>(1_000_000);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let late = Arc::new(AtomicU64::new(0));
    let http_lat = Arc::new(ShardedHistogram::new(publishers));

    let start = Instant::now();
    let start_ns = client::unix_nanos();
    let mut workers = JoinSet::new();
    for w in 0..publishers.max(1) {
        let t = t.clone();
        let job_rx = job_rx.clone();
        let (ok, errors, late, http_lat) =
            (ok.clone(), errors.clone(), late.clone(), http_lat.clone());
        let make = make.clone();
        workers.spawn(async move {
            let mut conn: Option<HttpConn> = None;
            loop {
                let job = { job_rx.lock().await.recv().await };
                let Some(job) = job else { break };
                let post = make(job.seq, job.sched_ns);
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
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => errors.record(|| format!("{other:?}")),
                }
            }
            conn.map_or(0, |c| c.reconnects)
        });
    }
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
    let secs = start.elapsed().as_secs_f64();
    OpenLoop {
        started: start,
        attempted: total,
        ok: ok.load(Ordering::Relaxed),
        errors: errors.count(),
        first_error: errors.first(),
        late: late.load(Ordering::Relaxed),
        http_latency: Latency::from_histogram(&http_lat.merged()),
        http_reconnects,
        secs,
    }
}

/// Publishes of an open loop of `total` that went to channel `c` of `channels`.
pub(super) fn attempted_on(total: u64, channels: usize, c: usize) -> u64 {
    let channels = channels.max(1) as u64;
    total / channels + u64::from((c as u64) < total % channels)
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
    let fleet = fleet.or_none_subscribed("no subscriber connected").await?;
    // Subscribers per channel, for the expected delivery count.
    let mut subs = vec![0u64; channels];
    for i in 0..o.subscribers {
        subs[i % channels] += 1;
    }
    // Failed subscribers are spread evenly enough; count only the ones that
    // subscribed by scaling (exact when nothing failed).
    let scale = fleet.ok as f64 / o.subscribers as f64;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (cpu0, ccpu0) = (p.cpu_split(), p.client_cpu_split());
    let run = open_loop(
        t,
        "bench-fan-",
        channels,
        o.rate,
        o.secs,
        o.publishers,
        o.event_size,
    )
    .await;
    let (start, total) = (run.started, run.attempted);
    let expected_attempted: f64 = (0..channels)
        .map(|c| attempted_on(total, channels, c) as f64 * subs[c] as f64 * scale)
        .sum();
    let expected = expected_attempted.round() as u64;
    drain(|| deliveries.received(), expected, o.drain_secs).await;
    let total_secs = start.elapsed().as_secs_f64();
    let (cpu1, ccpu1) = (p.cpu_split(), p.client_cpu_split());
    let rss = p.rss();
    let delivered = deliveries.received();
    let (user, sys, cpu) = split_diff(cpu0, cpu1);
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
        publishing: run.publishing(o.rate, fleet_error),
        expected_deliveries: expected,
        delivered,
        delivery_ratio: delivery_ratio(delivered, expected),
        deliveries_per_s: round1(stats::rate(delivered, total_secs)),
        latency: deliveries.latency(),
        publish_http_latency: run.http_latency,
        http_reconnects: run.http_reconnects,
        server_cpu_s: cpu.map(round3),
        server_cpu_s_per_million_deliveries: per_million(cpu),
        server_user_cpu_s_per_million_deliveries: per_million(user),
        server_sys_cpu_s_per_million_deliveries: per_million(sys),
        server_cpu_s_per_million_above_floor: per_million(cpu)
            .zip(loopback_floor.as_ref())
            .map(|(c, f)| round3(c - f.cpu_s_per_million_writes)),
        loopback_floor,
        client_cpu_s: round3((ccpu1.0 + ccpu1.1) - (ccpu0.0 + ccpu0.1)),
        client_sys_cpu_s: round3(ccpu1.1 - ccpu0.1),
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
