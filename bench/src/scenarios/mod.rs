//! The scenarios: idle connections, fan-out, HTTP publish, churn, the
//! loopback floor, a two-node cluster, private channels per user, a presence
//! storm, batch publishes, a reconnect storm, fixed operation counts (for
//! instruction counting), and the pieces they share (server probe, fleets of
//! subscribed sockets).

mod batch;
mod churn;
mod cluster;
mod fanout;
mod fixed;
mod floor;
mod idle;
mod presence;
mod private;
mod publish;
mod reconnect;

pub use batch::{batch, BatchOpts};
pub use churn::{churn, ChurnOpts};
pub use cluster::{cluster, ClusterOpts, ClusterProbes};
pub use fanout::{fanout, frame_bytes, FanoutOpts};
pub use fixed::{fixed, verify as verify_fixed, FixedOp, FixedOpts};
pub use floor::{floor, FloorOpts};
pub use idle::{idle, IdleOpts};
pub use presence::{presence, PresenceOpts};
pub use private::{private, PrivateOpts};
pub use publish::{publish, PublishOpts};
pub use reconnect::{reconnect, ReconnectOpts};

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{self, Target};
use crate::procfs::{self, StatusKb};
use crate::stats::{self, Latency};
use crate::subscriber::Subscriber;

use fanout::Deliveries;

/// Server process being measured (if known) and this process.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub server_pid: Option<i32>,
}

impl Probe {
    pub fn rss(&self) -> Option<u64> {
        self.server_pid.and_then(|p| procfs::rss_bytes(p).ok())
    }
    pub fn status(&self) -> Option<StatusKb> {
        self.server_pid.and_then(|p| procfs::status_kb(p).ok())
    }
    pub fn cpu(&self) -> Option<f64> {
        self.server_pid.and_then(|p| procfs::cpu_seconds(p).ok())
    }
    /// (user, system) CPU seconds of the server.
    pub fn cpu_split(&self) -> Option<(f64, f64)> {
        self.server_pid.and_then(|p| procfs::cpu_split(p).ok())
    }
    pub fn client_cpu(&self) -> f64 {
        procfs::cpu_seconds(std::process::id() as i32).unwrap_or(0.0)
    }
    /// (user, system) CPU seconds of this process.
    pub fn client_cpu_split(&self) -> (f64, f64) {
        procfs::cpu_split(std::process::id() as i32).unwrap_or((0.0, 0.0))
    }
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

/// The server's (user, system, total) CPU seconds between two
/// [`Probe::cpu_split`] readings.
fn split_diff(
    a: Option<(f64, f64)>,
    b: Option<(f64, f64)>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (user, sys) = (b.0 - a.0, b.1 - a.1);
            (Some(user), Some(sys), Some(user + sys))
        }
        _ => (None, None, None),
    }
}

/// Sockets of one scenario, connected and subscribed, each served by a task
/// that answers pings (and, in fan-out, records deliveries) until stopped.
struct Fleet {
    set: JoinSet<()>,
    stop: watch::Sender<bool>,
    ok: u64,
    failures: u64,
    first_error: Option<String>,
    connect_latency: Latency,
    elapsed: Duration,
}

/// What a fleet socket does with each text frame after subscribing.
#[derive(Clone)]
enum OnText {
    Ignore,
    Deliveries(Arc<Deliveries>),
}

/// Connects `n` sockets (at most `concurrency` handshakes at a time), each
/// subscribed to `channel(i)`.
async fn open_fleet(
    t: &Target,
    n: usize,
    concurrency: usize,
    channel: impl Fn(usize) -> String,
    on_text: OnText,
) -> Fleet {
    open_fleet_with(t, n, concurrency, channel, false, on_text).await
}

/// [`open_fleet`]; with `private`, each subscription carries the channel
/// auth signature computed here with the app secret, as an auth endpoint
/// would (for `private-` channels).
async fn open_fleet_with(
    t: &Target,
    n: usize,
    concurrency: usize,
    channel: impl Fn(usize) -> String,
    private: bool,
    on_text: OnText,
) -> Fleet {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<u64, String>>();
    let mut set = JoinSet::new();
    let start = Instant::now();
    for i in 0..n {
        let t = t.clone();
        let sem = sem.clone();
        let ch = channel(i);
        let ready_tx = ready_tx.clone();
        let mut stop_rx = stop_rx.clone();
        let on_text = on_text.clone();
        set.spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore never closed");
            let t0 = Instant::now();
            let (mut sock, socket_id) = match Subscriber::connect(&t).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let frame = if private {
                client::private_subscribe_frame(&t.creds, &socket_id, &ch)
            } else {
                client::public_subscribe_frame(&ch)
            };
            if let Err(e) = sock.subscribe(&t, &frame).await {
                let _ = ready_tx.send(Err(e));
                return;
            }
            drop(permit);
            let _ = ready_tx.send(Ok(t0.elapsed().as_micros() as u64));
            drop(ready_tx);
            serve(&mut sock, &mut stop_rx, &on_text, i).await;
            let _ = sock.close(Duration::from_secs(3)).await;
        });
    }
    drop(ready_tx);
    let mut hist = stats::new_histogram();
    let (mut ok, mut failures, mut first_error) = (0, 0, None);
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(us) => {
                ok += 1;
                stats::record(&mut hist, us);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    Fleet {
        set,
        stop,
        ok,
        failures,
        first_error,
        connect_latency: Latency::from_histogram(&hist),
        elapsed: start.elapsed(),
    }
}

/// Receives on `sock` until the server closes it or `stop_rx` changes,
/// recording deliveries and answering Pusher pings.
async fn serve(
    sock: &mut Subscriber,
    stop_rx: &mut watch::Receiver<bool>,
    on_text: &OnText,
    idx: usize,
) {
    let receive = async {
        while let Ok(Some(text)) = sock.next_text().await {
            if let OnText::Deliveries(d) = on_text {
                if d.record(text, idx) {
                    continue;
                }
            }
            if client::is_ping(text) && sock.send_text(client::PONG).await.is_err() {
                return;
            }
        }
    };
    // One select for the socket's life, not one per message: a fresh
    // `changed()` per message would register with the watch channel (a
    // lock) every time.
    tokio::select! {
        biased;
        () = receive => {}
        _ = stop_rx.changed() => {}
    }
}

impl Fleet {
    /// The fleet, or (after shutting it down) `what` and the first error
    /// when no socket subscribed.
    async fn or_none_subscribed(self, what: &str) -> crate::client::Res<Fleet> {
        if self.ok > 0 {
            return Ok(self);
        }
        let e = self.first_error.clone().unwrap_or_default();
        self.shutdown(Duration::from_secs(10)).await;
        Err(format!("{what}: {e}"))
    }

    /// Tells every socket to close and waits (bounded) for them.
    async fn shutdown(mut self, limit: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::timeout_at(deadline, self.set.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        self.set.abort_all();
    }
}

/// SplitMix64: a cheap, well-mixed hash of `x`, for reproducible "random"
/// choices (which user a publish goes to, reconnect jitter).
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Samples the server's RSS every `every` until `stop` is set; returns the
/// highest value seen.
fn spawn_peak_rss(
    p: Probe,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Option<u64>> {
    tokio::spawn(async move {
        let mut peak = p.rss();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(every).await;
            peak = peak.max(p.rss());
        }
        peak
    })
}

async fn sample_rss_for(p: &Probe, secs: u64) -> Option<u64> {
    let mut last = None;
    for _ in 0..secs.max(1) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = p.rss().or(last);
    }
    last
}
