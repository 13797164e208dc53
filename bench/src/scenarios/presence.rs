//! Presence storm: U users (one socket each) join ONE presence channel,
//! spread evenly over a few seconds, then leave the same way.
//!
//! Each socket keeps the set of members it knows: the initial roster of its
//! `subscription_succeeded` plus every `member_added` (minus
//! `member_removed`). The join phase ends when every socket knows every
//! member. Reports the time until then (from the first join), member_added
//! deliveries and their latency (from the joining socket's
//! `pusher:subscribe` to receipt), the same for member_removed in the leave
//! phase, peak server RSS and server CPU of each phase.
//!
//! Each pair of users costs one member_added and one member_removed, so the
//! server sends U × (U − 1) / 2 of each: the load grows with U².

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use memchr::memmem;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::fanout::delivery_ratio;
use super::{diff, spawn_peak_rss, Probe};
use crate::client::{self, Res, Target, Ws};
use crate::procfs::StatusKb;
use crate::sign;
use crate::stats::{round1, round3, Errors, Latency, ShardedHistogram};

pub const CHANNEL: &str = "presence-bench-storm";

#[derive(Clone, Debug)]
pub struct PresenceOpts {
    pub users: usize,
    /// Joins are spread evenly over this many seconds.
    pub join_secs: f64,
    /// Leaves likewise.
    pub leave_secs: f64,
    /// Longest wait, after the last join (leave), for the members to converge.
    pub wait_secs: f64,
    pub concurrency: usize,
}

#[derive(Debug, Serialize)]
pub struct PresenceResult {
    pub users_target: usize,
    pub connected: u64,
    pub connect_failures: u64,
    pub joined: u64,
    pub join_failures: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub join_window_secs: f64,
    /// Sockets that came to know every member.
    pub sockets_complete: u64,
    /// From the first `pusher:subscribe` until the last socket knew every
    /// member (roster + member_added); absent if some never did.
    pub secs_until_all_know_all: Option<f64>,
    /// The same, counted from the last `pusher:subscribe`.
    pub secs_after_last_join: Option<f64>,
    /// `pusher:subscribe` to the joiner's own `subscription_succeeded` (its roster).
    pub join_latency: Latency,
    pub member_added_expected: u64,
    pub member_added_received: u64,
    pub member_added_ratio: f64,
    /// member_added received / seconds until all knew all.
    pub member_added_per_s: Option<f64>,
    /// The joiner's `pusher:subscribe` to a member's receipt of its member_added.
    pub member_added_latency: Latency,
    /// member_added for a member already known (roster or earlier event).
    pub member_added_duplicates: u64,
    pub leave_window_secs: f64,
    pub member_removed_expected: u64,
    pub member_removed_received: u64,
    pub member_removed_ratio: f64,
    /// From the first `pusher:unsubscribe` until member_removed stopped
    /// arriving (or all expected arrived).
    pub leave_secs: f64,
    pub member_removed_per_s: f64,
    /// The leaver's `pusher:unsubscribe` to a member's receipt of its member_removed.
    pub member_removed_latency: Latency,
    pub server_cpu_join_s: Option<f64>,
    /// Server CPU of the join phase per member_added delivered, µs.
    pub server_cpu_us_per_member_added: Option<f64>,
    pub server_cpu_leave_s: Option<f64>,
    pub server_cpu_us_per_member_removed: Option<f64>,
    pub client_cpu_s: f64,
    pub server_rss_before_bytes: Option<u64>,
    /// Highest RSS sampled (every 100 ms) from the first join to the end.
    pub server_rss_peak_bytes: Option<u64>,
    pub server_rss_after_leave_bytes: Option<u64>,
    /// VmHWM etc. at the end (VmHWM: peak since the server started).
    pub server_status_end_kb: Option<StatusKb>,
}

/// What the sockets are told to do (times are absolute).
#[derive(Clone, Debug, Default)]
struct Plan {
    join_at: Option<tokio::time::Instant>,
    leave_at: Option<tokio::time::Instant>,
    stop: bool,
}

/// State shared by every socket of the storm.
struct Shared {
    users: usize,
    /// Members each socket must know: the sockets that connected.
    target: AtomicU64,
    join_sent_ns: Vec<AtomicU64>,
    leave_sent_ns: Vec<AtomicU64>,
    joined: AtomicU64,
    join_failures: AtomicU64,
    complete: AtomicU64,
    last_complete_ns: AtomicU64,
    added: AtomicU64,
    removed: AtomicU64,
    duplicates: AtomicU64,
    join_latency: ShardedHistogram,
    added_latency: ShardedHistogram,
    removed_latency: ShardedHistogram,
    errors: Errors,
    stopping: AtomicBool,
    user_id: memmem::Finder<'static>,
    added_marker: memmem::Finder<'static>,
    removed_marker: memmem::Finder<'static>,
}

/// Parses the decimal user id after `user_id` in `frame` (as a JSON string
/// inside the JSON-encoded `data`: `\"user_id\":\"42\"`).
fn user_id_in(finder: &memmem::Finder<'_>, frame: &[u8]) -> Option<usize> {
    let at = finder.find(frame)? + finder.needle().len();
    let rest = frame.get(at..)?;
    let start = rest.iter().take(8).position(u8::is_ascii_digit)?;
    let mut v: usize = 0;
    let mut n = 0;
    for d in rest[start..].iter().take_while(|b| b.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
        n += 1;
    }
    (n > 0).then_some(v)
}

/// The member ids of a presence `subscription_succeeded` frame.
fn roster_ids(frame: &str) -> Option<Vec<usize>> {
    let v: Value = serde_json::from_str(frame).ok()?;
    let data = match &v["data"] {
        Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    let ids = data["presence"]["ids"].as_array()?;
    Some(
        ids.iter()
            .filter_map(|id| match id {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_u64().map(|n| n as usize),
                _ => None,
            })
            .collect(),
    )
}

/// The set of members one socket knows.
struct Known {
    bits: Vec<u64>,
    count: u64,
}

impl Known {
    fn new(users: usize) -> Self {
        Known {
            bits: vec![0; users.div_ceil(64)],
            count: 0,
        }
    }
    /// Adds `id`; false if it was known already.
    fn add(&mut self, id: usize) -> bool {
        let (w, b) = (id / 64, 1u64 << (id % 64));
        let new = self.bits[w] & b == 0;
        if new {
            self.bits[w] |= b;
            self.count += 1;
        }
        new
    }
    fn remove(&mut self, id: usize) {
        let (w, b) = (id / 64, 1u64 << (id % 64));
        if self.bits[w] & b != 0 {
            self.bits[w] &= !b;
            self.count -= 1;
        }
    }
}

fn elapsed_us(since_ns: u64) -> Option<u64> {
    (since_ns > 0).then(|| client::unix_nanos().saturating_sub(since_ns) / 1000)
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => pending().await,
    }
}

/// One user's socket after connecting: join and leave on the plan's
/// schedule, keep its member set, answer pings.
async fn member(
    mut ws: Ws,
    idx: usize,
    subscribe: String,
    shared: Arc<Shared>,
    mut plan_rx: watch::Receiver<Plan>,
    join_offset: Duration,
    leave_offset: Duration,
) {
    let s = &*shared;
    let unsubscribe =
        format!(r#"{{"event":"pusher:unsubscribe","data":{{"channel":"{CHANNEL}"}}}}"#);
    let mut known = Known::new(s.users);
    let (mut join_sent, mut leave_sent, mut complete) = (false, false, false);
    let mut plan = plan_rx.borrow_and_update().clone();
    loop {
        if plan.stop {
            break;
        }
        let next = if !join_sent {
            plan.join_at.map(|t| t + join_offset)
        } else if !leave_sent {
            plan.leave_at.map(|t| t + leave_offset)
        } else {
            None
        };
        tokio::select! {
            changed = plan_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                plan = plan_rx.borrow_and_update().clone();
            }
            () = sleep_until_opt(next) => {
                let (frame, slot) = if join_sent {
                    leave_sent = true;
                    (unsubscribe.clone(), &s.leave_sent_ns[idx])
                } else {
                    join_sent = true;
                    (subscribe.clone(), &s.join_sent_ns[idx])
                };
                slot.store(client::unix_nanos(), Ordering::Relaxed);
                if let Err(e) = ws.send(Message::Text(frame)).await {
                    s.errors.record(|| format!("ws send: {e}"));
                    break;
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(text))) => {
                    let b = text.as_bytes();
                    if s.added_marker.find(b).is_some() {
                        let Some(id) = user_id_in(&s.user_id, b).filter(|&i| i < s.users) else {
                            s.errors.record(|| format!("member_added without a known user_id: {text}"));
                            continue;
                        };
                        if known.add(id) {
                            s.added.fetch_add(1, Ordering::Relaxed);
                            if let Some(us) = elapsed_us(s.join_sent_ns[id].load(Ordering::Relaxed)) {
                                s.added_latency.record(idx, us);
                            }
                        } else {
                            s.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if s.removed_marker.find(b).is_some() {
                        if let Some(id) = user_id_in(&s.user_id, b).filter(|&i| i < s.users) {
                            known.remove(id);
                            s.removed.fetch_add(1, Ordering::Relaxed);
                            if let Some(us) = elapsed_us(s.leave_sent_ns[id].load(Ordering::Relaxed)) {
                                s.removed_latency.record(idx, us);
                            }
                        }
                        continue;
                    } else if text.contains("subscription_succeeded") {
                        if let Some(us) = elapsed_us(s.join_sent_ns[idx].load(Ordering::Relaxed)) {
                            s.join_latency.record(idx, us);
                        }
                        s.joined.fetch_add(1, Ordering::Relaxed);
                        match roster_ids(&text) {
                            Some(ids) => {
                                for id in ids.into_iter().filter(|&i| i < s.users) {
                                    known.add(id);
                                }
                            }
                            None => s.errors.record(|| format!("no presence roster in: {text}")),
                        }
                    } else if text.contains("subscription_error") || text.contains("pusher:error") {
                        s.join_failures.fetch_add(1, Ordering::Relaxed);
                        s.errors.record(|| text.to_string());
                        continue;
                    } else {
                        client::answer_ping(&mut ws, &text).await;
                        continue;
                    }
                    if !complete && known.count >= s.target.load(Ordering::Relaxed) {
                        complete = true;
                        s.complete.fetch_add(1, Ordering::Relaxed);
                        s.last_complete_ns.fetch_max(client::unix_nanos(), Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    if !s.stopping.load(Ordering::Relaxed) {
                        s.errors.record(|| format!("closed by server: {c:?}"));
                    }
                    return;
                }
                None | Some(Err(_)) => {
                    if !s.stopping.load(Ordering::Relaxed) {
                        s.errors.record(|| "connection lost".into());
                    }
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = client::close(ws, Duration::from_secs(3)).await;
}

/// Polls until `done()` or `deadline`; returns when `done()` became true.
async fn wait_for(done: impl Fn() -> bool, deadline: Instant) -> Option<Instant> {
    loop {
        if done() {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn presence(t: &Target, p: &Probe, o: &PresenceOpts) -> Res<PresenceResult> {
    let users = o.users.max(2);
    let shared = Arc::new(Shared {
        users,
        target: AtomicU64::new(u64::MAX),
        join_sent_ns: (0..users).map(|_| AtomicU64::new(0)).collect(),
        leave_sent_ns: (0..users).map(|_| AtomicU64::new(0)).collect(),
        joined: AtomicU64::new(0),
        join_failures: AtomicU64::new(0),
        complete: AtomicU64::new(0),
        last_complete_ns: AtomicU64::new(0),
        added: AtomicU64::new(0),
        removed: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        join_latency: ShardedHistogram::new(64),
        added_latency: ShardedHistogram::new(64),
        removed_latency: ShardedHistogram::new(64),
        errors: Errors::default(),
        stopping: AtomicBool::new(false),
        user_id: memmem::Finder::new("user_id"),
        added_marker: memmem::Finder::new("member_added"),
        removed_marker: memmem::Finder::new("member_removed"),
    });
    let (plan_tx, plan_rx) = watch::channel(Plan::default());
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let sem = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let per_join = Duration::from_secs_f64(o.join_secs.max(0.0) / users as f64);
    let per_leave = Duration::from_secs_f64(o.leave_secs.max(0.0) / users as f64);
    let mut set = JoinSet::new();
    for i in 0..users {
        let (t, sem, shared, plan_rx, ready_tx) = (
            t.clone(),
            sem.clone(),
            shared.clone(),
            plan_rx.clone(),
            ready_tx.clone(),
        );
        set.spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore never closed");
            let (ws, socket_id) = match client::connect_id(&t).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            drop(permit);
            let channel_data = format!(r#"{{"user_id":"{i}","user_info":{{"name":"user {i}"}}}}"#);
            let auth = sign::presence_auth(&t.creds, &socket_id, CHANNEL, &channel_data);
            let subscribe = client::auth_subscribe_frame(CHANNEL, &auth, Some(&channel_data));
            let _ = ready_tx.send(Ok(()));
            drop(ready_tx);
            let (jo, lo) = (per_join * i as u32, per_leave * i as u32);
            member(ws, i, subscribe, shared, plan_rx, jo, lo).await;
        });
    }
    drop(ready_tx);
    let (mut connected, mut connect_failures, mut connect_error) = (0u64, 0u64, None);
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(()) => connected += 1,
            Err(e) => {
                connect_failures += 1;
                connect_error.get_or_insert(e);
            }
        }
    }
    if connected < 2 {
        shared.stopping.store(true, Ordering::Relaxed);
        let _ = plan_tx.send(Plan {
            stop: true,
            ..Plan::default()
        });
        set.abort_all();
        return Err(format!(
            "{connected} sockets connected: {}",
            connect_error.unwrap_or_default()
        ));
    }
    shared.target.store(connected, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Join phase.
    let rss_before = p.rss();
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = spawn_peak_rss(*p, Duration::from_millis(100), stop_sampler.clone());
    let (cpu0, ccpu0) = (p.cpu(), p.client_cpu());
    let lead = Duration::from_millis(200);
    let join_at = tokio::time::Instant::now() + lead;
    let join_at_ns = client::unix_nanos() + lead.as_nanos() as u64;
    let join_start = Instant::now() + lead;
    plan_tx.send_modify(|p| p.join_at = Some(join_at));
    let s = &*shared;
    let all_know_all = wait_for(
        || s.complete.load(Ordering::Relaxed) >= connected,
        join_start + Duration::from_secs_f64(o.join_secs + o.wait_secs),
    )
    .await;
    let cpu1 = p.cpu();
    let added = s.added.load(Ordering::Relaxed);
    let secs_until_all = all_know_all.map(|_| {
        s.last_complete_ns
            .load(Ordering::Relaxed)
            .saturating_sub(join_at_ns) as f64
            / 1e9
    });
    let last_join_s = per_join.as_secs_f64() * (users - 1) as f64;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Leave phase.
    let removed0 = s.removed.load(Ordering::Relaxed);
    let cpu2 = p.cpu();
    let leave_at = tokio::time::Instant::now() + lead;
    let leave_start = Instant::now() + lead;
    plan_tx.send_modify(|p| p.leave_at = Some(leave_at));
    let joined = s.joined.load(Ordering::Relaxed);
    let expected_removed = joined * joined.saturating_sub(1) / 2;
    // Until all expected arrived, or the count stopped moving for 2 s after
    // the last leave was sent, or the wait ran out.
    let leave_deadline = leave_start + Duration::from_secs_f64(o.leave_secs + o.wait_secs);
    let last_leave = leave_start + per_leave * (users - 1) as u32;
    let (mut last, mut last_change) = (removed0, Instant::now());
    loop {
        let now = s.removed.load(Ordering::Relaxed) - removed0;
        if now >= expected_removed || Instant::now() >= leave_deadline {
            break;
        }
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if Instant::now() > last_leave && last_change.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leave_secs = (last_change.max(leave_start) - leave_start).as_secs_f64();
    let (cpu3, ccpu1) = (p.cpu(), p.client_cpu());
    let removed = s.removed.load(Ordering::Relaxed) - removed0;

    shared.stopping.store(true, Ordering::Relaxed);
    let _ = plan_tx.send(Plan {
        stop: true,
        ..Plan::default()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::timeout_at(deadline, set.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    set.abort_all();
    stop_sampler.store(true, Ordering::Relaxed);
    let peak = sampler.await.ok().flatten();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let expected_added = joined * joined.saturating_sub(1) / 2;
    let cpu_join = diff(cpu0, cpu1);
    let cpu_leave = diff(cpu2, cpu3);
    let per = |c: Option<f64>, n: u64| c.filter(|_| n > 0).map(|c| round3(c * 1e6 / n as f64));
    Ok(PresenceResult {
        users_target: users,
        connected,
        connect_failures,
        joined,
        join_failures: s.join_failures.load(Ordering::Relaxed),
        errors: s.errors.count() + connect_failures,
        first_error: connect_error.or_else(|| s.errors.first()),
        join_window_secs: round3(last_join_s),
        sockets_complete: s.complete.load(Ordering::Relaxed),
        secs_until_all_know_all: secs_until_all.map(round3),
        secs_after_last_join: secs_until_all.map(|x| round3(x - last_join_s)),
        join_latency: Latency::from_histogram(&s.join_latency.merged()),
        member_added_expected: expected_added,
        member_added_received: added,
        member_added_ratio: delivery_ratio(added, expected_added),
        member_added_per_s: secs_until_all
            .filter(|&x| x > 0.0)
            .map(|x| round1(added as f64 / x)),
        member_added_latency: Latency::from_histogram(&s.added_latency.merged()),
        member_added_duplicates: s.duplicates.load(Ordering::Relaxed),
        leave_window_secs: round3(per_leave.as_secs_f64() * (users - 1) as f64),
        member_removed_expected: expected_removed,
        member_removed_received: removed,
        member_removed_ratio: delivery_ratio(removed, expected_removed),
        leave_secs: round3(leave_secs),
        member_removed_per_s: if leave_secs > 0.0 {
            round1(removed as f64 / leave_secs)
        } else {
            0.0
        },
        member_removed_latency: Latency::from_histogram(&s.removed_latency.merged()),
        server_cpu_join_s: cpu_join.map(round3),
        server_cpu_us_per_member_added: per(cpu_join, added),
        server_cpu_leave_s: cpu_leave.map(round3),
        server_cpu_us_per_member_removed: per(cpu_leave, removed),
        client_cpu_s: round3(ccpu1 - ccpu0),
        server_rss_before_bytes: rss_before,
        server_rss_peak_bytes: peak,
        server_rss_after_leave_bytes: p.rss(),
        server_status_end_kb: p.status(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_of_member_events() {
        let f = memmem::Finder::new("user_id");
        let added = r#"{"event":"pusher_internal:member_added","channel":"presence-x","data":"{\"user_id\":\"417\",\"user_info\":{\"name\":\"user 417\"}}"}"#;
        assert_eq!(user_id_in(&f, added.as_bytes()), Some(417));
        let removed = r#"{"event":"pusher_internal:member_removed","channel":"presence-x","data":"{\"user_id\":\"3\"}"}"#;
        assert_eq!(user_id_in(&f, removed.as_bytes()), Some(3));
        // Servers that send `data` as an object, or the id as a number.
        assert_eq!(user_id_in(&f, br#"{"data":{"user_id": 12}}"#), Some(12));
        assert_eq!(user_id_in(&f, br#"{"event":"pusher:ping"}"#), None);
        assert_eq!(
            user_id_in(&f, br#"{"data":"{\"user_id\":\"alice\"}"}"#),
            None
        );
    }

    #[test]
    fn roster_of_subscription_succeeded() {
        let f = r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-x","data":"{\"presence\":{\"ids\":[\"0\",\"5\"],\"hash\":{\"0\":{},\"5\":{}},\"count\":2}}"}"#;
        assert_eq!(roster_ids(f), Some(vec![0, 5]));
        let obj = r#"{"event":"pusher_internal:subscription_succeeded","data":{"presence":{"ids":["1"],"count":1}}}"#;
        assert_eq!(roster_ids(obj), Some(vec![1]));
        assert_eq!(roster_ids(r#"{"event":"x","data":"{}"}"#), None);
    }

    #[test]
    fn known_set_counts_distinct_members() {
        let mut k = Known::new(130);
        assert!(k.add(0));
        assert!(k.add(129));
        assert!(!k.add(129));
        assert_eq!(k.count, 2);
        k.remove(129);
        k.remove(129);
        assert_eq!(k.count, 1);
    }
}
