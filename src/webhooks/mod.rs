//! Webhooks: tell each app's backend what happens on its channels.
//!
//! ```text
//! shards ──transitions, client events──► Listener ──bounded queue──► dispatcher task
//!  (on_transitions: only apps with            (try_send, never      ledger: grace, alternation
//!   webhooks, only kinds they select)          blocks a shard)      → events, once serialised
//!                                                                    → each webhook that wants it
//!                                                                      ▼
//!                                              lanes (per app × webhook × LANES): batch, sign, POST,
//!                                              retry with backoff; dead letters logged and counted
//! ```
//!
//! - `config`: settings and each app's webhooks, validated at start-up.
//! - `event`: the events and the request body, Pusher's names.
//! - `ledger`: what the backend was told, so occupied/vacated and member
//!   added/removed strictly alternate, with a grace for leaves.
//! - `delivery`: lanes, batching, signing, retries.
//! - `stats`: counters for the metrics endpoint.
//!
//! Everything runs on an arbiter (thread) of its own, so no receiver, slow
//! or dead, ever shares a thread with sockets, shards or the HTTP API.

pub mod config;
pub mod delivery;
pub mod directory;
pub mod event;
pub mod ledger;
pub mod stats;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use log::{error, warn};
use switchyard_actors::protocol::WATCHLIST_CHANNEL;
use switchyard_actors::registry::{Change, Origin, Transition, TransitionListener};
use switchyard_actors::socket::SocketId;
use tokio::sync::{mpsc, oneshot};

use crate::apps::database::AppDatabase;
use crate::cluster::members::{Member, MembersView};
use config::{EventKind, Target, WebhookSettings};
use delivery::{Batching, LaneJob, LANES, LANE_QUEUE};
use directory::{Directory, Hooks};
use event::Event;
use ledger::{Ledger, Told};
pub use stats::WebhookStats;

/// Inputs queued for the dispatcher before new ones are refused.
const INBOX: usize = 65_536;

/// An app the dispatcher could not read from the database is not looked
/// up again for this long (its events are routed as last known).
pub const LOOKUP_BACKOFF: Duration = Duration::from_secs(5);

enum Input {
    Transitions(Vec<Transition>, Instant),
    ClientEvent {
        app_id: Arc<str>,
        channel: Arc<str>,
        sender: SocketId,
        frame: ByteString,
        at: Instant,
    },
    /// Shutdown: tell every waiting leave, send everything, then answer.
    Drain(oneshot::Sender<()>),
}

/// The shards' side: picks what some webhook wants and queues it, never
/// blocking a shard.
pub struct Listener {
    inbox: mpsc::Sender<Input>,
    /// Which apps want which event kinds.
    directory: Arc<Directory>,
    stats: Arc<WebhookStats>,
    overflowing: AtomicBool,
}

fn kind_of(change: &Change) -> &'static [EventKind] {
    match change {
        // Either side of the pair needs both, to keep them alternating.
        Change::Occupied | Change::Vacated => {
            &[EventKind::ChannelOccupied, EventKind::ChannelVacated]
        }
        Change::MemberAdded { .. } | Change::MemberRemoved { .. } => {
            &[EventKind::MemberAdded, EventKind::MemberRemoved]
        }
        Change::CountChanged { .. } => &[EventKind::SubscriptionCount],
        Change::CacheMiss => &[EventKind::CacheMiss],
    }
}

impl Listener {
    fn wants(&self, app_id: &str, kinds: &[EventKind]) -> bool {
        self.directory.may_want(app_id, kinds)
    }

    fn queue(&self, input: Input, events: u64) {
        match self.inbox.try_send(input) {
            Ok(()) => {
                self.overflowing.store(false, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.add_dropped(events);
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    error!(
                        event = "webhook_queue_full";
                        "the webhook queue is full ({INBOX} entries): channel activity is not \
                         reaching webhooks (counted in sockudo_webhook_dropped_total)"
                    );
                }
            }
        }
    }
}

impl TransitionListener for Listener {
    /// This node's own view: not used, webhooks tell the cluster's.
    fn on_transitions(&self, _batch: &[Transition]) {}

    fn wants_cluster_view(&self) -> bool {
        true
    }

    fn on_cluster_transitions(&self, batch: &[Transition], _origin: Origin) {
        let wanted: Vec<Transition> = batch
            .iter()
            .filter(|t| {
                &*t.channel != WATCHLIST_CHANNEL && self.wants(&t.app_id, kind_of(&t.change))
            })
            .cloned()
            .collect();
        if !wanted.is_empty() {
            let n = wanted.len() as u64;
            self.queue(Input::Transitions(wanted, Instant::now()), n);
        }
    }

    fn on_client_event(
        &self,
        app_id: &Arc<str>,
        channel: &Arc<str>,
        sender: SocketId,
        frame: &ByteString,
    ) {
        if !self.wants(app_id, &[EventKind::ClientEvent]) {
            return;
        }
        self.queue(
            Input::ClientEvent {
                app_id: app_id.clone(),
                channel: channel.clone(),
                sender,
                frame: frame.clone(),
                at: Instant::now(),
            },
            1,
        );
    }
}

/// The handle the server keeps: to drain at shutdown.
pub struct Webhooks {
    inbox: mpsc::Sender<Input>,
    /// `QUEUE_DRIVER=redis`: lanes keep their events in Redis.
    durable: bool,
    /// Closed (every sender gone) when the dispatcher and every lane ended.
    finished: tokio::sync::Mutex<mpsc::Receiver<()>>,
    pub stats: Arc<WebhookStats>,
}

/// The lanes of one app's webhooks, for the hooks they were opened for.
struct AppLanes {
    hooks: Arc<Hooks>,
    lanes: Vec<[mpsc::Sender<Event>; LANES]>,
}

/// What opening an app's lanes takes.
struct LaneFactory {
    batching: Batching,
    client: reqwest::Client,
    stats: Arc<WebhookStats>,
    store: Option<Arc<store::Store>>,
    /// Held by every lane and the dispatcher: closed when all have ended.
    alive: mpsc::Sender<()>,
}

impl LaneFactory {
    /// Start a lane task per webhook and lane, on the current arbiter.
    fn open(&self, app_id: &Arc<str>, hooks: Arc<Hooks>) -> AppLanes {
        let mut lanes = Vec::new();
        for index in 0..hooks.targets.len() {
            let name = webhook_name(index, &hooks.targets[index]);
            let senders = std::array::from_fn(|lane| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                let job = LaneJob {
                    app_id: app_id.clone(),
                    app_key: hooks.key.clone(),
                    app_secret: hooks.secret.clone(),
                    targets: hooks.targets.clone(),
                    index,
                    batching: self.batching,
                    client: self.client.clone(),
                    stats: self.stats.clone(),
                    durable: self
                        .store
                        .as_ref()
                        .map(|st| (st.clone(), st.key(app_id, &name, lane))),
                };
                let alive = self.alive.clone();
                actix::spawn(async move {
                    delivery::run(rx, job).await;
                    drop(alive);
                });
                tx
            });
            lanes.push(senders);
        }
        AppLanes { hooks, lanes }
    }
}

struct Dispatcher {
    /// Lanes of the apps that had events (configured apps: from the start).
    apps: HashMap<Arc<str>, AppLanes>,
    directory: Arc<Directory>,
    /// Reads apps the directory does not know (or no longer trusts).
    database: Option<Arc<AppDatabase>>,
    factory: LaneFactory,
    ledger: Ledger,
    stats: Arc<WebhookStats>,
    told: Vec<Told>,
    /// Which node tells which channel (one node: this one, always).
    view: MembersView,
    /// The members when last looked at, to see who left.
    known: Arc<[Member]>,
    /// Recent events another node was to tell, kept for `horizon`: if that
    /// node turns out dead (it is forgotten within the node timeout plus a
    /// cleanup interval), the node that owns the channel now tells them.
    parked: VecDeque<Parked>,
    horizon: Duration,
    parked_overflow: bool,
}

/// An event another node was to tell.
struct Parked {
    at: Instant,
    owner: u64,
    app_id: Arc<str>,
    event: Event,
}

/// Parked events kept at most (the oldest go first, logged once).
const PARKED: usize = 100_000;

impl Webhooks {
    /// Start the dispatcher and lanes on an arbiter of their own; `None`
    /// when no app can have webhooks (nothing is started and nothing
    /// listens). `database`: where apps the directory does not know are
    /// read (their webhooks with them).
    pub fn start(
        settings: &WebhookSettings,
        directory: Arc<Directory>,
        database: Option<Arc<AppDatabase>>,
        store: Option<Arc<store::Store>>,
        cluster: Option<(MembersView, Duration)>,
    ) -> Option<(Arc<Webhooks>, Arc<Listener>)> {
        if directory.is_idle() {
            return None;
        }
        let stats = Arc::new(WebhookStats::default());
        let (inbox, rx) = mpsc::channel(INBOX);
        let (alive, finished) = mpsc::channel::<()>(1);
        let arbiter = actix::Arbiter::new();
        let factory = LaneFactory {
            batching: Batching {
                enabled: settings.batching,
                duration: settings.batch_duration,
                size: settings.batch_size,
            },
            client: delivery::client(),
            stats: stats.clone(),
            store: store.clone(),
            alive,
        };
        let (view, horizon) =
            cluster.unwrap_or_else(|| (MembersView::alone(rand::random()), Duration::ZERO));
        let known = view.members.borrow().clone();
        let dispatcher = Dispatcher {
            apps: HashMap::new(),
            directory: directory.clone(),
            database,
            factory,
            ledger: Ledger::new(settings.leave_grace),
            stats: stats.clone(),
            told: Vec::new(),
            known,
            view,
            parked: VecDeque::new(),
            horizon,
            parked_overflow: false,
        };
        arbiter.spawn(dispatcher.run(rx));
        let listener = Arc::new(Listener {
            inbox: inbox.clone(),
            directory,
            stats: stats.clone(),
            overflowing: AtomicBool::new(false),
        });
        let webhooks = Arc::new(Webhooks {
            durable: store.is_some(),
            inbox,
            finished: tokio::sync::Mutex::new(finished),
            stats,
        });
        Some((webhooks, listener))
    }

    /// Shutdown: tell every leave still in its grace, then deliver what is
    /// queued, waiting at most until `deadline`. Returns how many events
    /// were still undelivered then (0: everything went out).
    pub async fn drain(&self, deadline: Instant) -> u64 {
        let (done, told) = oneshot::channel();
        if self.inbox.send(Input::Drain(done)).await.is_ok() {
            let _ = tokio::time::timeout_at(deadline.into(), told).await;
        }
        let mut finished = self.finished.lock().await;
        let _ = tokio::time::timeout_at(deadline.into(), finished.recv()).await;
        let left = self.stats.queued();
        if left > 0 && self.durable {
            error!(
                event = "webhook_shutdown_undelivered", events = left;
                "shutting down with {left} webhook events not yet in Redis: they are lost \
                 (those in Redis are delivered after the restart)"
            );
        } else if left > 0 {
            error!(
                event = "webhook_shutdown_undelivered", events = left;
                "shutting down with {left} webhook events undelivered (receivers did not answer \
                 within SHUTDOWN_GRACE_PERIOD); with QUEUE_DRIVER=memory they are lost"
            );
        }
        left
    }
}

impl Dispatcher {
    /// Runs until the drain (or every input sender is gone); dropping
    /// `self` then closes the lanes' queues and the `alive` sender.
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        // Configured apps' lanes start now: a durable queue may hold what
        // an earlier run could not deliver.
        for (app_id, hooks) in self.directory.configured() {
            let lanes = self.factory.open(&app_id, hooks);
            self.apps.insert(app_id, lanes);
        }
        // Database apps whose lists hold such events: read them and start
        // their lanes too, without waiting for their next event.
        if let (Some(store), Some(database)) = (&self.factory.store, &self.database) {
            let ids = match store.apps_with_lists().await {
                Ok(ids) => ids,
                Err(e) => {
                    warn!(
                        event = "webhook_queue_scan_failed";
                        "could not list the webhook queue's lists ({e}): events an earlier run \
                         left for database apps are sent with those apps' next events"
                    );
                    Vec::new()
                }
            };
            for id in ids {
                if self.apps.contains_key(id.as_str()) {
                    continue;
                }
                let id: Arc<str> = Arc::from(id);
                let _ = database.find_by_id(&id).await;
                if let Some(hooks) = self.directory.hooks(&id) {
                    let lanes = self.factory.open(&id, hooks);
                    self.apps.insert(id, lanes);
                }
            }
        }
        let mut members = self.view.members.clone();
        loop {
            let next = self.ledger.next_due();
            let input = tokio::select! {
                input = rx.recv() => input,
                _ = sleep_until(next) => {
                    self.ledger.due(Instant::now(), &mut self.told);
                    self.route_told(Instant::now());
                    continue;
                }
                Ok(()) = members.changed() => {
                    let now = members.borrow_and_update().clone();
                    self.members_changed(now);
                    continue;
                }
            };
            match input {
                Some(Input::Drain(done)) => {
                    // What is still queued came before the drain: handle it.
                    while let Ok(input) = rx.try_recv() {
                        if let Input::Drain(other) = input {
                            let _ = other.send(());
                        } else {
                            self.read_apps(&input).await;
                            self.handle(input);
                        }
                    }
                    // Alone, this node tells the leaves still in their
                    // grace now. With other nodes, they tell them when the
                    // grace is over (their ledgers hold the same leaves):
                    // told now, a rejoin within the grace could leave the
                    // backend believing a busy channel empty.
                    if self.view.members.borrow().len() <= 1 {
                        self.ledger.flush(&mut self.told);
                        self.route_told(Instant::now());
                    }
                    // Closing the lanes' queues lets them finish.
                    self.apps.clear();
                    let _ = done.send(());
                    return;
                }
                Some(input) => {
                    self.read_apps(&input).await;
                    self.handle(input);
                }
                None => return,
            }
        }
    }

    /// Read from the database the apps of `input` that the directory does
    /// not know or no longer trusts, so their current webhooks decide.
    /// In order with everything else: the ledger sees each channel's
    /// transitions as they happened. A lookup waits at most the database's
    /// lookup timeout, and not at all while it is known to be down.
    async fn read_apps(&mut self, input: &Input) {
        let Some(database) = &self.database else {
            return;
        };
        let now = Instant::now();
        let mut ids: Vec<&Arc<str>> = match input {
            Input::Transitions(batch, _) => batch.iter().map(|t| &t.app_id).collect(),
            Input::ClientEvent { app_id, .. } => vec![app_id],
            Input::Drain(_) => return,
        };
        ids.dedup();
        for id in ids {
            if !self.directory.needs_lookup(id, now) {
                continue;
            }
            // Reading the row refreshes the directory (see AppDatabase).
            let _ = database.find_by_id(id).await;
            if self.directory.needs_lookup(id, Instant::now()) {
                self.directory.keep(id);
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Transitions(batch, at) => self.transitions(batch, at),
            Input::ClientEvent {
                app_id,
                channel,
                sender,
                frame,
                at,
            } => {
                let socket = sender.to_string();
                match Event::client_event(&channel, &frame, &socket, at) {
                    Some(e) => self.route(&app_id, e),
                    None => warn!(
                        event = "webhook_client_event_unreadable", app_id = &*app_id;
                        "a client event on {channel} could not be read for its webhook"
                    ),
                }
            }
            // Handled by `run`.
            Input::Drain(done) => {
                let _ = done.send(());
            }
        }
    }

    fn transitions(&mut self, batch: Vec<Transition>, at: Instant) {
        for t in batch {
            let key = (t.app_id.clone(), t.channel.clone());
            match t.change {
                Change::Occupied => self.ledger.occupied(key, &mut self.told),
                Change::Vacated => self.ledger.vacated(key, at, &mut self.told),
                Change::MemberAdded { user_id, .. } => {
                    self.ledger.member_added(key, user_id, &mut self.told)
                }
                Change::MemberRemoved { user_id } => {
                    self.ledger.member_removed(key, user_id, at, &mut self.told)
                }
                Change::CountChanged { count } => {
                    // As Sockudo: presence channels have member events instead.
                    if !t.channel.starts_with("presence-") {
                        let e = Event::subscription_count(&t.channel, count, at);
                        self.route(&t.app_id, e);
                    }
                }
                Change::CacheMiss => {
                    let e = Event::channel(EventKind::CacheMiss, &t.channel, at);
                    self.route(&t.app_id, e);
                }
            }
            self.route_told(at);
        }
    }

    fn route_told(&mut self, at: Instant) {
        let told = std::mem::take(&mut self.told);
        for t in &told {
            let (key, e) = match t {
                Told::Occupied(k) => (k, Event::channel(EventKind::ChannelOccupied, &k.1, at)),
                Told::Vacated(k) => (k, Event::channel(EventKind::ChannelVacated, &k.1, at)),
                Told::MemberAdded(k, u) => (k, Event::member(EventKind::MemberAdded, &k.1, u, at)),
                Told::MemberRemoved(k, u) => {
                    (k, Event::member(EventKind::MemberRemoved, &k.1, u, at))
                }
            };
            self.route(&key.0, e);
        }
        self.told = told;
        self.told.clear();
    }

    /// Route `e` if this node tells its channel's changes (always for a
    /// client event or a cache miss: only the node where it happened knows
    /// of it); else park it for a while, in case that node is dead.
    fn route(&mut self, app_id: &Arc<str>, e: Event) {
        if matches!(e.kind, EventKind::ClientEvent | EventKind::CacheMiss) || self.horizon.is_zero()
        {
            return self.send(app_id, e);
        }
        let now = Instant::now();
        let owner = MembersView::owner_among(&self.view.members.borrow(), app_id, &e.channel, now);
        if owner == self.view.me {
            return self.send(app_id, e);
        }
        while self
            .parked
            .front()
            .is_some_and(|p| now.duration_since(p.at) > self.horizon)
        {
            self.parked.pop_front();
        }
        if self.parked.len() >= PARKED {
            self.parked.pop_front();
            if !self.parked_overflow {
                self.parked_overflow = true;
                warn!(
                    event = "webhook_parked_overflow";
                    "over {PARKED} webhook events for other nodes in the last {:?}: the oldest are \
                     no longer kept in case their node dies", self.horizon
                );
            }
        }
        self.parked.push_back(Parked {
            at: now,
            owner,
            app_id: app_id.clone(),
            event: e,
        });
    }

    /// Nodes left (or were forgotten): what they were to tell lately is
    /// told by the channels' new owners — here, for those this node owns.
    fn members_changed(&mut self, now: Arc<[Member]>) {
        let gone: Vec<u64> = self
            .known
            .iter()
            .filter(|m| !now.iter().any(|n| n.id == m.id))
            .map(|m| m.id)
            .collect();
        self.known = now.clone();
        if gone.is_empty() {
            return;
        }
        let at = Instant::now();
        let parked = std::mem::take(&mut self.parked);
        for p in parked {
            if !gone.contains(&p.owner) || at.duration_since(p.at) > self.horizon {
                if at.duration_since(p.at) <= self.horizon {
                    self.parked.push_back(p);
                }
                continue;
            }
            let owner = MembersView::owner_among(&now, &p.app_id, &p.event.channel, at);
            if owner == self.view.me {
                self.send(&p.app_id, p.event);
            } else {
                self.parked.push_back(Parked { owner, ..p });
            }
        }
    }

    /// Hand `e` to the lane of each webhook of the app that wants it,
    /// opening the app's lanes first when its webhooks are new or changed
    /// (lanes of the old ones finish what they hold, then end).
    fn send(&mut self, app_id: &Arc<str>, e: Event) {
        let Some(hooks) = self.directory.hooks(app_id) else {
            self.apps.remove(app_id);
            return;
        };
        let current = self
            .apps
            .get(app_id)
            .is_some_and(|a| Arc::ptr_eq(&a.hooks, &hooks));
        if !current {
            let lanes = self.factory.open(app_id, hooks);
            self.apps.insert(app_id.clone(), lanes);
        }
        let app = &self.apps[app_id];
        let lane = delivery::lane_of(&e.channel);
        for (target, lanes) in app.hooks.targets.iter().zip(&app.lanes) {
            if !target.wants(e.kind, &e.channel) {
                continue;
            }
            match lanes[lane].try_send(e.clone()) {
                Ok(()) => self.stats.add_queued(1),
                Err(_) => {
                    self.stats.add_dropped(1);
                    error!(
                        event = "webhook_dead_letter", app_id = &**app_id,
                        url = delivery::shown(&target.url).as_str(), events = 1,
                        body = &*e.json;
                        "webhook to {} dropped: {LANE_QUEUE} events already wait for it",
                        delivery::shown(&target.url)
                    );
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Leaves wait this long by default before they are told.
pub const DEFAULT_LEAVE_GRACE: Duration = Duration::from_millis(config::DEFAULT_LEAVE_GRACE_MS);

/// A webhook's name in Redis keys: its place in the app's list and a hash of
/// its URL, so a reordered or edited list never hands one receiver's queued
/// events to another.
fn webhook_name(index: usize, target: &Target) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(target.url.as_str().as_bytes());
    format!("{index}-{}", hex::encode(&digest[..4]))
}
