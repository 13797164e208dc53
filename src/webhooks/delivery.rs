//! Delivery: per app and webhook, a few *lanes*, each a task that gathers
//! events into batches and sends them one request at a time, retrying with
//! backoff until the receiver says 2xx or the retry budget is spent.
//!
//! A channel always maps to the same lane, and a lane sends its batches in
//! order and never two at once, so one channel's events reach the receiver
//! in the order they happened. Lanes of one webhook run concurrently (a slow
//! channel does not hold up all others), and every webhook has its own
//! lanes, so a hung receiver delays only its own events: never message
//! delivery (the shards only push into a queue) and never another webhook.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{error, info, warn};
use reqwest::header::CONTENT_TYPE;
use tokio::sync::mpsc;

use super::config::{RetryPolicy, Target};
use super::event::{self, Event};
use super::stats::WebhookStats;
use super::store::{self, Store};

/// Lanes per webhook: how many requests to one receiver may be in flight.
pub const LANES: usize = 4;
/// Events queued per lane before new ones are refused (dead-lettered).
pub const LANE_QUEUE: usize = 10_000;

/// The batching settings every lane uses.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub enabled: bool,
    pub duration: Duration,
    pub size: usize,
}

/// What a lane needs to sign and send for one webhook of one app.
pub struct LaneJob {
    pub app_id: Arc<str>,
    pub app_key: Arc<str>,
    pub app_secret: Arc<str>,
    pub targets: Arc<[Target]>,
    pub index: usize,
    pub batching: Batching,
    pub client: reqwest::Client,
    pub stats: Arc<WebhookStats>,
    /// With `QUEUE_DRIVER=redis`: the store and this lane's list.
    pub durable: Option<(Arc<Store>, String)>,
}

impl LaneJob {
    fn target(&self) -> &Target {
        &self.targets[self.index]
    }
}

/// Which lane of a webhook carries `channel`.
pub fn lane_of(channel: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    channel.hash(&mut h);
    (h.finish() as usize) % LANES
}

/// The HTTP client all lanes share (connection pools per host): no
/// redirects (a webhook is a signed POST to the configured URL, not
/// wherever a receiver points), the system's CAs (or `SSL_CERT_FILE`).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "switchyard/",
            env!("CARGO_PKG_VERSION"),
            " (webhooks)"
        ))
        .build()
        .expect("the webhook HTTP client builds")
}

/// Run one lane until its queue is closed and drained.
pub async fn run(rx: mpsc::Receiver<Event>, job: LaneJob) {
    match job.durable.clone() {
        Some((store, key)) => run_durable(rx, job, store, key).await,
        None => run_in_memory(rx, job).await,
    }
}

/// `first` and whatever follows within the batching window (up to its
/// size); `false` when the queue closed meanwhile.
async fn gather(rx: &mut mpsc::Receiver<Event>, first: Event, b: Batching) -> (Vec<Event>, bool) {
    let mut batch = vec![first];
    if !b.enabled {
        return (batch, true);
    }
    let until = tokio::time::Instant::now() + b.duration;
    while batch.len() < b.size {
        tokio::select! {
            more = rx.recv() => match more {
                Some(e) => batch.push(e),
                None => return (batch, false),
            },
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    (batch, true)
}

async fn run_in_memory(mut rx: mpsc::Receiver<Event>, job: LaneJob) {
    while let Some(first) = rx.recv().await {
        let (batch, _) = gather(&mut rx, first, job.batching).await;
        let body = event::body(now_ms(), batch.iter().map(|e| &*e.json));
        // Stable across retries, so a receiver can drop a batch it has seen.
        let id = format!("{:032x}", rand::random::<u128>());
        if deliver(&job, &body, &id, batch.len()).await {
            for e in &batch {
                job.stats.observe_latency(e.at.elapsed());
            }
        }
        job.stats.add_queued(-(batch.len() as i64));
    }
}

/// How often an idle lane looks at its list (other nodes append to it too)
/// and how long it waits before asking Redis again after an error.
const POLL: Duration = Duration::from_millis(500);

/// The durable lane: gather, append to the list, then deliver from its
/// head and trim what was delivered. Events reach Redis before anything is
/// sent, so what a crash interrupts is sent again after the restart
/// (at least once, with the same webhook id).
async fn run_durable(mut rx: mpsc::Receiver<Event>, job: LaneJob, store: Arc<Store>, key: String) {
    let mut unsaved: Vec<String> = Vec::new();
    // What an earlier run left is delivered first; 1 = "look".
    let mut stored = 1usize;
    let mut owner = true;
    let mut open = true;
    loop {
        let idle = unsaved.is_empty() && (stored == 0 || !owner);
        if idle {
            if !open {
                return;
            }
            tokio::select! {
                first = rx.recv() => match first {
                    Some(first) => {
                        let (batch, still) = gather(&mut rx, first, job.batching).await;
                        open = still;
                        unsaved.extend(batch.iter().map(stored_item));
                    }
                    None => open = false,
                },
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        if !unsaved.is_empty() {
            match store.append(&key, &unsaved).await {
                Ok(len) => {
                    job.stats.add_queued(-(unsaved.len() as i64));
                    unsaved.clear();
                    stored = len;
                }
                Err(_) => {
                    // Kept in memory; logged once by the store.
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        } else if let Ok(len) = store.len(&key).await {
            stored = len;
        }
        if stored == 0 {
            continue;
        }
        owner = store.lease(&key).await.unwrap_or(false);
        if !owner {
            continue;
        }
        let items = match store.head(&key, job.batching.size.max(1)).await {
            Ok(items) => items,
            Err(_) => {
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if items.is_empty() {
            stored = 0;
            continue;
        }
        let parsed: Vec<(&str, u64, &str)> =
            items.iter().filter_map(|i| store::parse_item(i)).collect();
        if parsed.len() < items.len() {
            error!(
                event = "webhook_queue_unreadable", key = key.as_str(),
                items = items.len() - parsed.len();
                "skipping entries of {key} that are not webhook events"
            );
        }
        if let Some((first, _, _)) = parsed.first() {
            let body = event::body(now_ms(), parsed.iter().map(|p| p.2));
            let id = format!("{first}-{}", parsed.len());
            // Keep the lease while retries go on.
            let delivering = deliver(&job, &body, &id, parsed.len());
            tokio::pin!(delivering);
            let mut renew = tokio::time::interval(store::LEASE / 3);
            renew.tick().await;
            let delivered = loop {
                tokio::select! {
                    d = &mut delivering => break d,
                    _ = renew.tick() => { let _ = store.lease(&key).await; }
                    // Events keep reaching Redis while a batch is retried
                    // (a receiver down for minutes must not leave them in
                    // memory).
                    more = rx.recv(), if open => match more {
                        Some(e) => {
                            let mut items = vec![stored_item(&e)];
                            while let Ok(e) = rx.try_recv() {
                                items.push(stored_item(&e));
                            }
                            unsaved.extend(items);
                            if let Ok(len) = store.append(&key, &unsaved).await {
                                job.stats.add_queued(-(unsaved.len() as i64));
                                unsaved.clear();
                                stored = len;
                            }
                        }
                        None => open = false,
                    },
                }
            };
            if delivered {
                let now = now_ms();
                for (_, at, _) in &parsed {
                    job.stats
                        .observe_latency(Duration::from_millis(now.saturating_sub(*at)));
                }
            } else if let Some(record) = dead_record(&job, &id, &body) {
                let _ = store.dead_letter(&record).await;
            }
        }
        // Until Redis takes the trim, the batch is not done (else a restart
        // would send it again).
        while store.pop(&key, items.len()).await.is_err() {
            tokio::time::sleep(POLL).await;
        }
        // (Appends during the delivery already counted in `stored`.)
        stored = stored.saturating_sub(items.len());
    }
}

/// An event as its lane's list keeps it.
fn stored_item(e: &Event) -> String {
    store::item(rand::random(), unix_ms_of(e.at), &e.json)
}

/// The dead-letter list's entry: what, where, and the body.
fn dead_record(job: &LaneJob, id: &str, body: &str) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(
        serde_json::json!({
            "app_id": &*job.app_id,
            "url": shown(&job.target().url),
            "webhook_id": id,
            "at_ms": now_ms(),
            "body": body,
        })
        .to_string(),
    )
}

/// Wall-clock milliseconds of an [`Instant`] in the recent past.
fn unix_ms_of(at: Instant) -> u64 {
    now_ms().saturating_sub(at.elapsed().as_millis() as u64)
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth another try: network error, timeout, 5xx, 408/409/425/429.
    Retry(String),
    /// The receiver refused it for good (other statuses).
    Refused(u16, String),
}

/// Send one batch (`events` of them in `body`) until it is delivered
/// (`true`) or dead-lettered (`false`).
async fn deliver(job: &LaneJob, body: &str, id: &str, events: usize) -> bool {
    let target = job.target();
    let signature = switchyard_actors::auth::sign(&job.app_secret, &[body]);
    let policy = &target.retry;
    let started = Instant::now();
    let mut delay = policy.initial_backoff;
    let mut attempt = 1u32;
    loop {
        match attempt_once(job, target, body, &signature, id).await {
            Attempt::Delivered => {
                job.stats.add_sent(events as u64);
                if attempt > 1 {
                    info!(
                        event = "webhook_delivered", app_id = &*job.app_id,
                        url = shown(&target.url).as_str(), webhook_id = id,
                        attempts = attempt;
                        "webhook delivered to {} after {attempt} attempts", shown(&target.url)
                    );
                }
                return true;
            }
            Attempt::Refused(status, answer) => {
                job.stats.add_failed();
                dead_letter(
                    job,
                    events,
                    body,
                    id,
                    &format!("refused with {status}: {answer}"),
                );
                return false;
            }
            Attempt::Retry(why) => {
                let Some(wait) = next_wait(policy, attempt, started.elapsed(), delay) else {
                    dead_letter(
                        job,
                        events,
                        body,
                        id,
                        &format!(
                            "not delivered after {attempt} attempts in {:.1} s (last: {why})",
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    return false;
                };
                warn!(
                    event = "webhook_retry", app_id = &*job.app_id,
                    url = shown(&target.url).as_str(), webhook_id = id,
                    attempt = attempt, retry_in_ms = wait.as_millis() as u64;
                    "webhook to {} failed ({why}); retrying in {} ms",
                    shown(&target.url), wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(policy.max_backoff);
                attempt += 1;
                job.stats.add_retried();
            }
        }
    }
}

/// The wait before attempt `attempt + 1`, or `None` when the policy says
/// stop: retries off, attempts used up, or the next attempt would start
/// after the time budget. Jitter: a random point in the upper half of the
/// backoff, so receivers recovering from an outage are not hit in step.
pub fn next_wait(
    policy: &RetryPolicy,
    attempt: u32,
    elapsed: Duration,
    backoff: Duration,
) -> Option<Duration> {
    if !policy.enabled || policy.max_attempts.is_some_and(|max| attempt >= max) {
        return None;
    }
    let half = backoff / 2;
    let wait = half + half.mul_f64(rand::random::<f64>());
    (elapsed + wait <= policy.max_elapsed).then_some(wait)
}

async fn attempt_once(
    job: &LaneJob,
    target: &Target,
    body: &str,
    signature: &str,
    id: &str,
) -> Attempt {
    let mut request = job
        .client
        .post(target.url.clone())
        .timeout(target.request_timeout)
        .header(CONTENT_TYPE, "application/json")
        .header("X-Pusher-Key", &*job.app_key)
        .header("X-Pusher-Signature", signature)
        .header("X-Switchyard-Webhook-Id", id);
    for (name, value) in &target.headers {
        request = request.header(name.clone(), value.clone());
    }
    let response = match request.body(body.to_owned()).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Attempt::Retry(format!(
                "no answer within {} ms",
                target.request_timeout.as_millis()
            ))
        }
        Err(e) => return Attempt::Retry(error_chain(&e)),
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let answer = answer_of(response).await;
    let code = status.as_u16();
    if status.is_server_error() || matches!(code, 408 | 409 | 425 | 429) {
        Attempt::Retry(format!("status {code}: {answer}"))
    } else {
        Attempt::Refused(code, answer)
    }
}

/// The start of the receiver's answer, for the log.
async fn answer_of(response: reqwest::Response) -> String {
    const MAX: usize = 300;
    let text = match tokio::time::timeout(Duration::from_secs(2), response.bytes()).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned(),
        _ => String::new(),
    };
    let text = text.trim().replace(['\n', '\r'], " ");
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A batch that will not be delivered: counted, and logged with its body so
/// nothing is lost without a trace (with the memory queue the log *is* the
/// dead-letter list).
fn dead_letter(job: &LaneJob, events: usize, body: &str, id: &str, why: &str) {
    job.stats.add_dropped(events as u64);
    let url = shown(&job.target().url);
    error!(
        event = "webhook_dead_letter", app_id = &*job.app_id, url = url.as_str(),
        webhook_id = id, events = events, body = body;
        "webhook to {url} dropped ({events} events): {why}"
    );
}

/// The URL without credentials or query (which may hold tokens), for logs.
pub fn shown(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_the_attempt_limit_or_the_time_budget() {
        let p = RetryPolicy {
            enabled: true,
            max_attempts: Some(3),
            max_elapsed: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let b = Duration::from_millis(100);
        let w = next_wait(&p, 1, Duration::ZERO, b).unwrap();
        assert!(w >= b / 2 && w <= b, "{w:?}");
        assert!(next_wait(&p, 2, Duration::ZERO, b).is_some());
        assert_eq!(next_wait(&p, 3, Duration::ZERO, b), None, "three attempts");
        assert_eq!(next_wait(&p, 1, Duration::from_secs(10), b), None, "budget");
        let off = RetryPolicy {
            enabled: false,
            ..p.clone()
        };
        assert_eq!(next_wait(&off, 1, Duration::ZERO, b), None);
        let unlimited = RetryPolicy {
            max_attempts: None,
            ..p
        };
        assert!(next_wait(&unlimited, 1000, Duration::ZERO, b).is_some());
    }

    #[test]
    fn urls_are_logged_without_credentials_or_query() {
        let u = url::Url::parse("https://user:pw@hooks.example:8443/in/pusher?token=abc").unwrap();
        assert_eq!(shown(&u), "https://hooks.example:8443/in/pusher");
    }

    #[test]
    fn a_channel_always_takes_the_same_lane() {
        assert_eq!(lane_of("orders"), lane_of("orders"));
        let lanes: std::collections::HashSet<usize> =
            (0..100).map(|i| lane_of(&format!("c{i}"))).collect();
        assert_eq!(lanes.len(), LANES, "channels spread over every lane");
    }
}
