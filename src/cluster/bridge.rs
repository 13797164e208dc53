//! The Redis bridge: two connections to Redis and the tasks that drive them.
//!
//! Besides events, the nodes exchange control messages ([`super::control`]):
//! heartbeats (liveness, connections per app, the last state change), each
//! node's channel state as numbered deltas and snapshots ([`super::mirror`]
//! keeps this node's), snapshot requests and `terminate_connections`.
//! [`super::peers`] tracks what was heard from whom; a node silent for the
//! node timeout is forgotten, its presence members removed everywhere.
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

use super::control::{self, AppConnections, ChangeKind, Control};
use super::envelope::{self, Envelope};
use super::members::{Member as NodeMember, MembersView};
use super::mirror::Mirror;
use super::peers::{DeltaVerdict, Peers};
use super::stats::{BridgeStats, DropReason};
use super::Health;
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
use switchyard_actors::presence::Member;
use switchyard_actors::registry::{
    Change, Cluster, Registry, Relayed, RemoteChannelState, Transition, TransitionListener,
    UserClose,
};
use tokio::sync::{mpsc, watch};

/// Events waiting for Redis, at most. Past it relays are dropped and
/// counted: a publisher (an HTTP request, a shard) never waits for Redis.
pub const QUEUE: usize = 10_000;
/// PUBLISHes sent in one round trip (one pipeline), at most.
const BATCH: usize = 128;
/// Opening a connection, and each answer on it.
const TIMEOUT: Duration = Duration::from_secs(2);
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

/// What waits to be published, in order.
pub enum Outbound {
    Event(Relayed),
    /// An encoded control message (a delta, a request).
    Control(Vec<u8>),
    /// This node's snapshot, taken when it is published (the latest state;
    /// deltas queued before it carry lower numbers and are ignored by
    /// whoever applies it).
    Snapshot,
}

/// The receiving end of the queue, handed to [`start`].
pub struct Outbox(mpsc::Receiver<Outbound>);

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

/// The registry's seam to the other nodes, both ways: the [`Cluster`] that
/// shards and HTTP workers call to relay, and the [`TransitionListener`]
/// that turns this node's state changes into deltas for the others.
pub struct Bridge {
    /// This process, in everything it sends; random, so two nodes never
    /// share one even when configured alike.
    id: u64,
    queue: mpsc::Sender<Outbound>,
    stats: Arc<BridgeStats>,
    mirror: Mirror,
    /// A snapshot is queued and not yet taken: requests meanwhile are
    /// answered by it.
    snapshot_queued: AtomicBool,
    /// The first overflow is logged; the counter tells the rest.
    overflowed: AtomicBool,
    /// The nodes heard, with this one, for the webhook sender.
    members: watch::Sender<Arc<[NodeMember]>>,
    /// How long a node is in the cluster before it owns channels.
    warmup: Duration,
    started: Instant,
}

impl Bridge {
    /// The bridge and its queue's receiving end, before the registry exists
    /// (the registry is started with the bridge as a listener).
    /// `warmup`: see [`super::members`] (the node timeout).
    pub fn new(stats: Arc<BridgeStats>, warmup: Duration) -> (Arc<Bridge>, Outbox) {
        let (queue, outbox) = mpsc::channel(QUEUE);
        let id = rand::random();
        let started = Instant::now();
        let me = NodeMember {
            id,
            eligible_from: started + warmup,
        };
        let (members, _) = watch::channel(Arc::from([me].as_slice()));
        let bridge = Bridge {
            id,
            queue,
            stats,
            mirror: Mirror::default(),
            snapshot_queued: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            members,
            warmup,
            started,
        };
        (Arc::new(bridge), Outbox(outbox))
    }

    /// This node and the cluster's members as it sees them.
    pub fn members(&self) -> MembersView {
        MembersView {
            me: self.id,
            members: self.members.subscribe(),
        }
    }

    /// Publish the members after `peers` changed.
    fn set_members(&self, peers: &Peers) {
        let mut list = vec![NodeMember {
            id: self.id,
            eligible_from: self.started + self.warmup,
        }];
        list.extend(peers.members().map(|(id, joined)| NodeMember {
            id,
            eligible_from: joined + self.warmup,
        }));
        list.sort_by_key(|m| m.id);
        self.members.send_replace(Arc::from(list));
    }

    /// Queue a message unless disconnected; `false` if it was dropped.
    fn enqueue(&self, item: Outbound) -> bool {
        // Disconnected: dropped now rather than delivered late, after the
        // outage, to clients that have moved on (state is resent whole on
        // reconnection).
        if !self.stats.connected() {
            return false;
        }
        match self.queue.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflowed.swap(true, Ordering::Relaxed) {
                    warn!(
                        event = "redis_relay_overflow";
                        "the relay queue is full ({QUEUE} messages): Redis is slower than this \
                         node's publishers, events are dropped for other nodes (counted in \
                         redis_relay_dropped_total; logged once)"
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn send_control(&self, message: &Control) -> bool {
        let mut buf = Vec::new();
        control::encode(&mut buf, message);
        self.enqueue(Outbound::Control(buf))
    }

    /// Queue this node's snapshot unless one is already waiting.
    fn queue_snapshot(&self) {
        if !self.snapshot_queued.swap(true, Ordering::AcqRel) && !self.enqueue(Outbound::Snapshot) {
            self.snapshot_queued.store(false, Ordering::Release);
        }
    }
}

impl Cluster for Bridge {
    fn relay(&self, event: Relayed) {
        if !self.enqueue(Outbound::Event(event)) {
            let reason = if self.stats.connected() {
                DropReason::QueueFull
            } else {
                DropReason::Disconnected
            };
            self.stats.add_dropped(reason, 1);
        }
    }

    fn close_user(&self, app_id: &Arc<str>, user_id: &str, how: UserClose) {
        self.send_control(&Control::Terminate {
            node: self.id,
            app_id: app_id.to_string(),
            user_id: user_id.to_string(),
            reconnect: how == UserClose::Reconnect,
        });
    }
}

impl TransitionListener for Bridge {
    /// Numbered and queued under the mirror's lock, so the queue holds the
    /// deltas in number order. Dropped (disconnected, queue full) deltas
    /// still take their number: peers notice the gap and ask for a snapshot.
    fn on_transitions(&self, batch: &[Transition]) {
        let mut mirror = self.mirror.lock();
        if let Some(delta) = mirror.apply(self.id, batch) {
            self.send_control(&delta);
        }
    }
}

/// Start the bridge's tasks on their own arbiter: connect, subscribe to
/// `channel`, deliver what other nodes publish there through `registry`,
/// publish what this node relays, exchange heartbeats and state. Returns
/// the link state start-up waits on.
pub fn start(
    target: Target,
    channel: String,
    registry: Registry,
    apps: Arc<AppStore>,
    bridge: Arc<Bridge>,
    outbox: Outbox,
    health: Health,
) -> watch::Receiver<Link> {
    let (link_tx, link) = watch::channel(Link::Connecting);
    let node = Node {
        id: bridge.id,
        bridge: bridge.clone(),
        channel,
        address: target.address.clone(),
        registry,
        apps,
        stats: bridge.stats.clone(),
        health,
    };
    let arbiter = actix::Arbiter::new();
    arbiter.spawn(supervise(target.client, node, outbox.0, link_tx));
    link
}

/// What both directions need.
struct Node {
    /// This process, in each envelope it sends.
    id: u64,
    bridge: Arc<Bridge>,
    /// The prefixed pub/sub channel of the cluster.
    channel: String,
    address: String,
    registry: Registry,
    apps: Arc<AppStore>,
    stats: Arc<BridgeStats>,
    health: Health,
}

/// Open sessions for as long as the process runs: log once when Redis goes
/// away and once when it is back, with backoff in between.
async fn supervise(
    client: redis::Client,
    node: Node,
    mut outbox: mpsc::Receiver<Outbound>,
    link: watch::Sender<Link>,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut peers = Peers::default();
    // Some while Redis is away and that has been logged.
    let mut outage: Option<Instant> = None;
    loop {
        match open(&client, &node.channel).await {
            Ok(session) => {
                // Queued before this session (the moment the last one broke):
                // stale, dropped like any relay while disconnected.
                discard(&mut outbox, &node.bridge);
                node.stats.set_connected(true);
                // Whatever changed while cut off was not seen: every node
                // (this one included) sends its whole state again. Peers are
                // given time to reconnect before any is declared dead.
                peers.rejoin(Instant::now(), BACKOFF_MAX + node.health.node_timeout);
                node.bridge.queue_snapshot();
                node.bridge.send_control(&Control::Sync {
                    node: node.id,
                    target: None,
                });
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
                let reason = session.run(&node, &mut outbox, &mut peers).await;
                node.stats.set_connected(false);
                link.send_replace(Link::Down);
                discard(&mut outbox, &node.bridge);
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

/// Drop whatever waits in the queue, counting the events.
fn discard(outbox: &mut mpsc::Receiver<Outbound>, bridge: &Bridge) {
    let mut n = 0;
    while let Ok(item) = outbox.try_recv() {
        match item {
            Outbound::Event(_) => n += 1,
            Outbound::Snapshot => bridge.snapshot_queued.store(false, Ordering::Release),
            Outbound::Control(_) => {}
        }
    }
    bridge.stats.add_dropped(DropReason::Disconnected, n);
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
    Relay(Option<Outbound>),
    Heartbeat,
}

/// What the inbound side does next.
enum Heard {
    Message(Option<redis::Msg>),
    Check,
}

struct Session {
    publisher: MultiplexedConnection,
    pubsub: redis::aio::PubSub,
}

impl Session {
    /// Relay in both directions until a connection fails; returns why.
    async fn run(
        self,
        node: &Node,
        outbox: &mut mpsc::Receiver<Outbound>,
        peers: &mut Peers,
    ) -> BridgeError {
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
            let mut check = tokio::time::interval(node.health.cleanup_interval);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let heard = tokio::select! {
                    biased;
                    msg = stream.next() => Heard::Message(msg),
                    _ = check.tick() => Heard::Check,
                };
                match heard {
                    Heard::Message(Some(msg)) => node.receive(msg.get_payload_bytes(), peers).await,
                    Heard::Message(None) => return BridgeError::SubscriptionClosed,
                    Heard::Check => node.expire(peers),
                }
            }
        };
        let outbound = async {
            let mut pipe = redis::pipe();
            let mut buf = Vec::new();
            // Also how a session notices a Redis that hangs without closing
            // its sockets: the heartbeat's PUBLISH times out.
            let mut heartbeat = tokio::time::interval(node.health.heartbeat_interval);
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let step = tokio::select! {
                    biased;
                    event = outbox.recv() => Step::Relay(event),
                    _ = heartbeat.tick() => Step::Heartbeat,
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
                    Step::Heartbeat => {
                        node.heartbeat(&mut buf);
                        let result = redis::cmd("PUBLISH")
                            .arg(&node.channel)
                            .arg(buf.as_slice())
                            .exec_async(&mut publisher)
                            .await;
                        if let Err(e) = result {
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
        first: Outbound,
        outbox: &mut mpsc::Receiver<Outbound>,
    ) -> u64 {
        pipe.clear();
        let sent_us = now_us();
        let mut next = Some(first);
        let mut taken = 0;
        // Events only: what the relay counters count.
        let mut events = 0;
        while let Some(item) = next.take() {
            let bytes: &[u8] = match &item {
                Outbound::Event(event) => {
                    events += 1;
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
                    buf
                }
                Outbound::Control(bytes) => bytes,
                Outbound::Snapshot => {
                    // Taken now: requests from here on need a new one.
                    self.bridge.snapshot_queued.store(false, Ordering::Release);
                    let snapshot = self.bridge.mirror.lock().snapshot(self.id);
                    control::encode(buf, &snapshot);
                    buf
                }
            };
            pipe.cmd("PUBLISH").arg(&self.channel).arg(bytes).ignore();
            taken += 1;
            if taken < BATCH {
                next = outbox.try_recv().ok();
            }
        }
        events
    }

    /// This node's heartbeat, into `buf`.
    fn heartbeat(&self, buf: &mut Vec<u8>) {
        let seq = self.bridge.mirror.lock().seq();
        let connections = self
            .apps
            .all()
            .into_iter()
            .filter_map(|app| {
                let count = app.connection_count();
                (count > 0).then(|| AppConnections {
                    app_id: app.id.to_string(),
                    count,
                })
            })
            .collect();
        control::encode(
            buf,
            &Control::Heartbeat {
                node: self.id,
                seq,
                connections,
                up_ms: self.bridge.started.elapsed().as_millis() as u64,
            },
        );
    }

    /// Forget nodes silent for longer than the node timeout.
    fn expire(&self, peers: &mut Peers) {
        if !self.health.enabled {
            return;
        }
        let dead = peers.expire(Instant::now(), self.health.node_timeout);
        if dead.is_empty() {
            return;
        }
        // First: what forgetting them causes is told by the nodes left.
        self.bridge.set_members(peers);
        for node in &dead {
            warn!(
                event = "cluster_node_lost", node = format!("{node:016x}").as_str();
                "node {node:016x} has not been heard from for {:?}: its connections are \
                 removed from this node's view (member_removed sent)",
                self.health.node_timeout
            );
            self.registry.forget_node(*node);
        }
        self.stats.add_dead_nodes(dead.len() as u64);
        self.stats.set_peers(peers.len() as u64);
        self.update_connections(peers);
    }

    /// Every app's connections on the other nodes, for its limit.
    fn update_connections(&self, peers: &Peers) {
        for app in self.apps.all() {
            app.set_remote_connections(peers.connections(&app.id));
        }
    }

    /// One message from the cluster channel: another node's event,
    /// delivered to this node's subscribers, or a control message; this
    /// node's own echo is ignored.
    async fn receive(&self, payload: &[u8], peers: &mut Peers) {
        if control::is_control(payload) {
            return self.control(payload, peers).await;
        }
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
        if peers.heard(e.node, Instant::now()) {
            self.ask_snapshot(e.node);
            self.stats.set_peers(peers.len() as u64);
            self.bridge.set_members(peers);
        }
        let Some(app_id) = self.apps.cluster_id(e.app_id) else {
            self.stats.add_dropped(DropReason::UnknownApp, 1);
            return;
        };
        let latency = now_us().saturating_sub(e.sent_us);
        self.stats.observe_received(Duration::from_micros(latency));
        let frame = ByteString::from(e.frame);
        if let Err(err) = self
            .registry
            .fan_out_remote(&app_id, e.channel, frame, e.except)
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

impl Node {
    fn ask_snapshot(&self, target: u64) {
        self.bridge.send_control(&Control::Sync {
            node: self.id,
            target: Some(target),
        });
    }

    async fn control(&self, payload: &[u8], peers: &mut Peers) {
        let message = match control::decode(payload) {
            Ok(m) => m,
            Err(reason) => {
                debug!("ignored a message on {}: {reason}", self.channel);
                self.stats.add_dropped(DropReason::Malformed, 1);
                return;
            }
        };
        let from = message.node();
        if from == self.id {
            return;
        }
        if peers.heard(from, Instant::now()) {
            self.stats.set_peers(peers.len() as u64);
            self.bridge.set_members(peers);
            info!(
                event = "cluster_node_joined", node = format!("{from:016x}").as_str();
                "node {from:016x} joined the cluster"
            );
            // Its state is needed before its deltas mean anything, unless
            // this is it (or it is about to send it, having rejoined).
            if !matches!(
                message,
                Control::Snapshot { .. } | Control::Sync { target: None, .. }
            ) {
                self.ask_snapshot(from);
            }
        }
        match message {
            Control::Heartbeat {
                seq,
                connections,
                up_ms,
                ..
            } => {
                let connections = connections
                    .into_iter()
                    .map(|c| (c.app_id, c.count))
                    .collect();
                let joined = Instant::now()
                    .checked_sub(Duration::from_millis(up_ms))
                    .unwrap_or_else(Instant::now);
                if peers.joined(from, joined) {
                    self.bridge.set_members(peers);
                }
                if peers.heartbeat(from, seq, connections) {
                    self.ask_snapshot(from);
                }
                self.update_connections(peers);
            }
            Control::Delta { seq, changes, .. } => match peers.delta(from, seq) {
                DeltaVerdict::Apply => {
                    let changes = changes
                        .into_iter()
                        .filter_map(|c| self.transition(c))
                        .collect();
                    self.registry.apply_remote(from, changes);
                }
                DeltaVerdict::Ignore => {}
                DeltaVerdict::AskSnapshot => {
                    debug!("missed a state change of node {from:016x}: asking for its snapshot");
                    self.ask_snapshot(from);
                }
            },
            Control::Snapshot { seq, channels, .. } => {
                let channels = channels
                    .into_iter()
                    .filter_map(|c| {
                        let app_id = self.apps.cluster_id(&c.app_id)?;
                        Some(RemoteChannelState {
                            app_id,
                            channel: Arc::from(c.channel),
                            count: c.count,
                            members: c
                                .members
                                .into_iter()
                                .map(|(user_id, info)| Member {
                                    user_id: Arc::from(user_id),
                                    user_info: control::user_info(info),
                                })
                                .collect(),
                        })
                    })
                    .collect();
                self.registry.replace_node(from, channels);
                peers.snapshot(from, seq);
                self.stats.add_resync();
            }
            Control::Sync { target, .. } => {
                if target.is_none_or(|t| t == self.id) {
                    self.bridge.queue_snapshot();
                }
            }
            Control::Terminate {
                app_id,
                user_id,
                reconnect,
                ..
            } => {
                let Some(app_id) = self.apps.cluster_id(&app_id) else {
                    return;
                };
                let how = if reconnect {
                    UserClose::Reconnect
                } else {
                    UserClose::Terminate
                };
                if let Err(e) = self.registry.close_user_here(&app_id, &user_id, how).await {
                    debug!("terminate_connections from another node failed: {e}");
                }
            }
        }
    }

    /// A delta's change as the registry takes it; `None` for an app this
    /// node does not serve.
    fn transition(&self, c: control::StateChange) -> Option<Transition> {
        let app_id = self.apps.cluster_id(&c.app_id)?;
        let change = match c.kind {
            ChangeKind::Count { count } => Change::CountChanged { count },
            ChangeKind::MemberAdded { user_id, user_info } => Change::MemberAdded {
                user_id: Arc::from(user_id),
                user_info: control::user_info(user_info),
            },
            ChangeKind::MemberRemoved { user_id } => Change::MemberRemoved {
                user_id: Arc::from(user_id),
            },
        };
        Some(Transition {
            app_id,
            channel: Arc::from(c.channel),
            change,
        })
    }
}
