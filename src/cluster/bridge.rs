//! The Redis bridge: two connections to Redis and the tasks that drive them.
//!
//! Tokio tasks rather than an actix actor: the work is two long-lived loops
//! that hold their connections across awaits (drain the relay queue into
//! PUBLISHes; read the subscription into the registry), and what feeds them
//! must be a bounded queue, not an actor mailbox (`do_send` ignores its
//! capacity). They run on an arbiter (thread) of their own, so Redis I/O
//! and envelope work never share a thread with HTTP workers or shards.
//!
//! One *session* is a PUBLISH connection (multiplexed) plus a pub/sub
//! connection SUBSCRIBEd to the cluster channel. The bridge is connected
//! while a session runs; when either connection fails the session ends, the
//! bridge is disconnected (logged once per outage, `/up` says 503, relays
//! are dropped and counted rather than queued for later), and a new session
//! is opened with exponential backoff. Nothing is retried: a PUBLISH whose
//! answer was lost may have reached the other nodes, and an event must never
//! arrive twice.

use super::envelope::{self, Envelope};
use super::stats::{BridgeStats, DropReason};
use crate::apps::AppStore;
use crate::config::RedisConfig;
use bytestring::ByteString;
use futures_util::StreamExt;
use log::{debug, error, info, warn};
use redis::aio::MultiplexedConnection;
use redis::IntoConnectionInfo;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_actors::registry::{Cluster, Registry, Relayed};
use tokio::sync::{mpsc, watch};

/// Events waiting for Redis, at most. Past it relays are dropped and
/// counted: a publisher (an HTTP request, a shard) never waits for Redis.
pub const QUEUE: usize = 10_000;
/// PUBLISHes sent in one round trip (one pipeline), at most.
const BATCH: usize = 128;
/// Opening a connection, and each answer on it.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle session checks that Redis still answers (a Redis that
/// hangs without closing its sockets is otherwise noticed only at the next
/// publish).
const PING_EVERY: Duration = Duration::from_secs(2);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a session could not open or ended.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the subscription connection closed")]
    SubscriptionClosed,
    #[error("the relay queue closed")]
    QueueClosed,
}

/// The bridge as start-up waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The first session is being opened.
    Connecting,
    /// Subscribed: events from other nodes reach this node's clients.
    Up,
    /// Redis is unreachable; retrying.
    Down,
}

/// Where Redis is: the client, and the address as logs may show it (never
/// the password or the URL, which may embed one).
pub struct Target {
    client: redis::Client,
    pub address: String,
}

impl Target {
    /// `REDIS_URL` if set (`redis://`, `rediss://` for TLS), else the
    /// `DATABASE_REDIS_*` parts.
    pub fn of(r: &RedisConfig) -> Result<Target, redis::RedisError> {
        let client = match &r.url {
            Some(url) => redis::Client::open(url.as_str())?,
            None => {
                let mut settings = redis::RedisConnectionInfo::default().set_db(i64::from(r.db));
                if let Some(user) = &r.username {
                    settings = settings.set_username(user);
                }
                if let Some(password) = &r.password {
                    settings = settings.set_password(password);
                }
                let info = (r.host.as_str(), r.port)
                    .into_connection_info()?
                    .set_redis_settings(settings);
                redis::Client::open(info)?
            }
        };
        let info = client.get_connection_info();
        let address = format!("{}/{}", info.addr(), info.redis_settings().db());
        Ok(Target { client, address })
    }
}

/// The registry's [`Cluster`]: what shards and HTTP workers call to relay.
pub struct Bridge {
    queue: mpsc::Sender<Relayed>,
    stats: Arc<BridgeStats>,
    /// The first overflow is logged; the counter tells the rest.
    overflowed: AtomicBool,
}

impl Cluster for Bridge {
    fn relay(&self, event: Relayed) {
        // Disconnected: dropped now rather than delivered late, after the
        // outage, to clients that have moved on.
        if !self.stats.connected() {
            self.stats.add_dropped(DropReason::Disconnected, 1);
            return;
        }
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.add_dropped(DropReason::QueueFull, 1);
                if !self.overflowed.swap(true, Ordering::Relaxed) {
                    warn!(
                        event = "redis_relay_overflow";
                        "the relay queue is full ({QUEUE} events): Redis is slower than this \
                         node's publishers, events are dropped for other nodes (counted in \
                         redis_relay_dropped_total; logged once)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats.add_dropped(DropReason::Disconnected, 1)
            }
        }
    }
}

/// Start the bridge on its own arbiter: it connects, subscribes to
/// `channel`, delivers what other nodes publish there through
/// `registry` and publishes what this node relays. Returns the handle to
/// attach to the registry and the link state start-up waits on.
pub fn start(
    target: Target,
    channel: String,
    registry: Registry,
    apps: Arc<AppStore>,
    stats: Arc<BridgeStats>,
) -> (Arc<Bridge>, watch::Receiver<Link>) {
    let (queue, outbox) = mpsc::channel(QUEUE);
    let (link_tx, link) = watch::channel(Link::Connecting);
    let node = Node {
        id: rand::random(),
        channel,
        address: target.address.clone(),
        registry,
        apps,
        stats: stats.clone(),
    };
    let arbiter = actix::Arbiter::new();
    arbiter.spawn(supervise(target.client, node, outbox, link_tx));
    let bridge = Bridge {
        queue,
        stats,
        overflowed: AtomicBool::new(false),
    };
    (Arc::new(bridge), link)
}

/// What both directions need.
struct Node {
    /// This process, in each envelope it sends; random, so two nodes never
    /// share one even when configured alike.
    id: u64,
    /// The prefixed pub/sub channel of the cluster.
    channel: String,
    address: String,
    registry: Registry,
    apps: Arc<AppStore>,
    stats: Arc<BridgeStats>,
}

/// Open sessions for as long as the process runs: log once when Redis goes
/// away and once when it is back, with backoff in between.
async fn supervise(
    client: redis::Client,
    node: Node,
    mut outbox: mpsc::Receiver<Relayed>,
    link: watch::Sender<Link>,
) {
    let mut backoff = BACKOFF_FIRST;
    // Some while Redis is away and that has been logged.
    let mut outage: Option<Instant> = None;
    loop {
        match open(&client, &node.channel).await {
            Ok(session) => {
                // Queued before this session (the moment the last one broke):
                // stale, dropped like any relay while disconnected.
                discard(&mut outbox, &node.stats);
                node.stats.set_connected(true);
                link.send_replace(Link::Up);
                match outage.take() {
                    Some(since) => info!(
                        event = "redis_reconnected", address = node.address.as_str(),
                        down_secs = since.elapsed().as_secs();
                        "Redis is reachable again at {}: events cross between nodes again",
                        node.address
                    ),
                    None => info!(
                        event = "redis_connected", address = node.address.as_str();
                        "connected to Redis at {}, subscribed to {}: events cross between nodes",
                        node.address, node.channel
                    ),
                }
                let started = Instant::now();
                let reason = session.run(&node, &mut outbox).await;
                node.stats.set_connected(false);
                link.send_replace(Link::Down);
                discard(&mut outbox, &node.stats);
                error!(
                    event = "redis_unavailable", address = node.address.as_str();
                    "lost Redis at {}: {reason}; this node does not see other nodes until it \
                     is back (local clients are still served; retrying)",
                    node.address
                );
                outage = Some(Instant::now());
                // A session that broke at once (say, an ACL that refuses
                // PUBLISH) does not reset the backoff: no log storm.
                if started.elapsed() >= BACKOFF_MAX {
                    backoff = BACKOFF_FIRST;
                }
            }
            Err(e) => {
                if outage.is_none() {
                    error!(
                        event = "redis_unavailable", address = node.address.as_str();
                        "Redis unreachable at {}: {e}; this node does not see other nodes \
                         until it is back (local clients are still served; retrying)",
                        node.address
                    );
                    outage = Some(Instant::now());
                    link.send_replace(Link::Down);
                } else {
                    debug!("Redis still unreachable at {}: {e}", node.address);
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Drop (and count) whatever waits in the queue.
fn discard(outbox: &mut mpsc::Receiver<Relayed>, stats: &BridgeStats) {
    let mut n = 0;
    while outbox.try_recv().is_ok() {
        n += 1;
    }
    stats.add_dropped(DropReason::Disconnected, n);
}

async fn within<T, E>(f: impl std::future::Future<Output = Result<T, E>>) -> Result<T, BridgeError>
where
    BridgeError: From<E>,
{
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BridgeError::Timeout(TIMEOUT)),
    }
}

/// Both connections, subscribed: once this returns, a publish from any
/// other node reaches this node's clients.
async fn open(client: &redis::Client, channel: &str) -> Result<Session, BridgeError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    let publisher = within(client.get_multiplexed_async_connection_with_config(&config)).await?;
    let mut pubsub = within(client.get_async_pubsub()).await?;
    within(pubsub.subscribe(channel)).await?;
    Ok(Session { publisher, pubsub })
}

/// What the outbound side does next.
enum Step {
    Relay(Option<Relayed>),
    Ping,
}

struct Session {
    publisher: MultiplexedConnection,
    pubsub: redis::aio::PubSub,
}

impl Session {
    /// Relay in both directions until a connection fails; returns why.
    async fn run(self, node: &Node, outbox: &mut mpsc::Receiver<Relayed>) -> BridgeError {
        let Session {
            mut publisher,
            pubsub,
        } = self;
        // The sink (the subscription's request side) is kept for the
        // session's length; only the stream is read.
        let (_sink, stream) = pubsub.split();
        let mut stream = std::pin::pin!(stream);
        // Events taken from the queue whose PUBLISH has not answered yet: if
        // the inbound side ends the session meanwhile, they count as dropped.
        let in_flight = AtomicU64::new(0);
        let inbound = async {
            while let Some(msg) = stream.next().await {
                node.receive(msg.get_payload_bytes()).await;
            }
            BridgeError::SubscriptionClosed
        };
        let outbound = async {
            let mut pipe = redis::pipe();
            let mut buf = Vec::new();
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let step = tokio::select! {
                    biased;
                    event = outbox.recv() => Step::Relay(event),
                    _ = ping.tick() => Step::Ping,
                };
                match step {
                    // The handle lives as long as the registry, which
                    // outlives this task: a closed queue is the process
                    // ending.
                    Step::Relay(None) => return BridgeError::QueueClosed,
                    Step::Relay(Some(first)) => {
                        let n = node.batch(&mut pipe, &mut buf, first, outbox);
                        in_flight.store(n, Ordering::Relaxed);
                        let result = pipe.exec_async(&mut publisher).await;
                        in_flight.store(0, Ordering::Relaxed);
                        if let Err(e) = result {
                            node.stats.add_dropped(DropReason::PublishFailed, n);
                            return e.into();
                        }
                        node.stats.add_sent(n);
                    }
                    Step::Ping => {
                        if let Err(e) = redis::cmd("PING").exec_async(&mut publisher).await {
                            return e.into();
                        }
                    }
                }
            }
        };
        let reason = tokio::select! {
            reason = inbound => reason,
            reason = outbound => reason,
        };
        node.stats
            .add_dropped(DropReason::PublishFailed, in_flight.load(Ordering::Relaxed));
        reason
    }
}

impl Node {
    /// `first` and whatever else is queued (up to [`BATCH`]), in queue
    /// order, as one pipeline of PUBLISHes; returns how many. Redis keeps a
    /// publisher's order, so every node sees this node's events in the order
    /// they were relayed.
    fn batch(
        &self,
        pipe: &mut redis::Pipeline,
        buf: &mut Vec<u8>,
        first: Relayed,
        outbox: &mut mpsc::Receiver<Relayed>,
    ) -> u64 {
        pipe.clear();
        let sent_us = now_us();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(event) = next.take() {
            envelope::encode(
                buf,
                &Envelope {
                    node: self.id,
                    sent_us,
                    except: event.except,
                    app_id: &event.app_id,
                    channel: &event.channel,
                    frame: &event.frame,
                },
            );
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(buf.as_slice())
                .ignore();
            n += 1;
            if n < BATCH as u64 {
                next = outbox.try_recv().ok();
            }
        }
        n
    }

    /// One message from the cluster channel: another node's event, delivered
    /// to this node's subscribers; this node's own echo is ignored.
    async fn receive(&self, payload: &[u8]) {
        let e = match envelope::decode(payload) {
            Ok(e) => e,
            Err(reason) => {
                debug!("ignored a message on {}: {reason}", self.channel);
                self.stats.add_dropped(DropReason::Malformed, 1);
                return;
            }
        };
        if e.node == self.id {
            return;
        }
        let Some(app) = self.apps.by_id(e.app_id) else {
            self.stats.add_dropped(DropReason::UnknownApp, 1);
            return;
        };
        let latency = now_us().saturating_sub(e.sent_us);
        self.stats.observe_received(Duration::from_micros(latency));
        let frame = ByteString::from(e.frame);
        if let Err(err) = self
            .registry
            .fan_out_remote(&app.id, e.channel, frame, e.except)
            .await
        {
            // Only while the process shuts down.
            debug!("a relayed event was not delivered: {err}");
        }
    }
}

/// Microseconds since the Unix epoch (0 before it): the envelope's clock,
/// comparable between the nodes of one cluster.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
