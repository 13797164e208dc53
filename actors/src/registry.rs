//! Channel registry: who is subscribed where, presence rosters, the last-event
//! cache and signed-in users, split into shards by `hash(app, channel)`.
//!
//! Each shard is an actor on its own arbiter (thread), so fan-out uses every
//! core. Callers never pick a shard themselves: [`Registry`] routes a channel
//! (or a user) to the one shard that owns it, so changing the shard count
//! changes no caller.

use crate::messages::*;
use crate::presence::{Change, Roster};
use crate::protocol::{frames, ChannelKind};
use crate::socket::{SessionHandle, SocketId};
use actix::prelude::*;
use bytestring::ByteString;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Routes messages to the shard that owns a channel or user.
#[derive(Clone)]
pub struct Registry {
    shards: Arc<[Addr<Shard>]>,
    /// Each shard's occupied channels, same index as `shards`.
    occupancy: Arc<[Arc<Occupancy>]>,
}

/// The channels of a shard that have at least one subscriber, readable from
/// any thread. Publishing to a channel nobody is subscribed to is common
/// (a Laravel app broadcasting to an offline user's private channel); this
/// lets the publisher skip the message to the shard — a thread hop — for it.
///
/// Only the owning shard writes, when a channel gains its first subscriber or
/// loses its last, before it confirms the subscription; a publish that starts
/// after a client saw `subscription_succeeded` therefore sees the channel.
#[derive(Debug, Default)]
pub struct Occupancy(RwLock<HashMap<Arc<str>, HashSet<Arc<str>>>>);

impl Occupancy {
    fn insert(&self, app_id: &Arc<str>, channel: &Arc<str>) {
        let mut apps = self.0.write().unwrap_or_else(|e| e.into_inner());
        apps.entry(app_id.clone())
            .or_default()
            .insert(channel.clone());
    }

    fn remove(&self, app_id: &str, channel: &str) {
        let mut apps = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(channels) = apps.get_mut(app_id) {
            channels.remove(channel);
            if channels.is_empty() {
                apps.remove(app_id);
            }
        }
    }

    pub fn contains(&self, app_id: &str, channel: &str) -> bool {
        let apps = self.0.read().unwrap_or_else(|e| e.into_inner());
        apps.get(app_id).is_some_and(|c| c.contains(channel))
    }
}

impl Registry {
    /// Start `count` shards (at least one), each on a new arbiter. Must run
    /// inside an actix `System`.
    pub fn start(count: usize, cache_ttl: Duration) -> Registry {
        let occupancy: Vec<Arc<Occupancy>> = (0..count.max(1)).map(|_| Arc::default()).collect();
        let shards: Vec<Addr<Shard>> = occupancy
            .iter()
            .map(|occupied| {
                let arbiter = Arbiter::new();
                let occupied = occupied.clone();
                Shard::start_in_arbiter(&arbiter.handle(), move |_| Shard::new(cache_ttl, occupied))
            })
            .collect();
        Registry {
            shards: shards.into(),
            occupancy: occupancy.into(),
        }
    }

    fn index(&self, app_id: &str, name: &str) -> usize {
        let mut h = DefaultHasher::new();
        app_id.hash(&mut h);
        name.hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    /// Whether a broadcast to this channel can reach anyone: it has
    /// subscribers, or it is a cache channel (whose last event is kept).
    pub fn worth_publishing(&self, app_id: &str, channel: &str) -> bool {
        ChannelKind::of(channel).is_cache()
            || self.occupancy[self.index(app_id, channel)].contains(app_id, channel)
    }

    /// The shard owning `channel` of `app_id`.
    pub fn channel_shard(&self, app_id: &str, channel: &str) -> &Addr<Shard> {
        &self.shards[self.index(app_id, channel)]
    }

    /// The shard keeping the sockets of a signed-in user.
    pub fn user_shard(&self, app_id: &str, user_id: &str) -> &Addr<Shard> {
        // A prefix outside the channel-name alphabet keeps users and channels
        // from colliding by construction (they live in separate maps anyway).
        let mut h = DefaultHasher::new();
        app_id.hash(&mut h);
        "#user".hash(&mut h);
        user_id.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    pub fn shards(&self) -> &[Addr<Shard>] {
        &self.shards
    }

    /// Index of the shard owning a channel; sessions group their channels by
    /// it so a disconnect costs one message per shard.
    pub fn channel_shard_index(&self, app_id: &str, channel: &str) -> usize {
        self.index(app_id, channel)
    }
}

struct Subscriber {
    session: SessionHandle,
    /// Presence channels: the user this socket joined as.
    user_id: Option<Arc<str>>,
}

struct ChannelState {
    kind: ChannelKind,
    subscribers: HashMap<SocketId, Subscriber>,
    roster: Roster,
    count_updates: bool,
}

impl ChannelState {
    fn broadcast(&self, frame: &ByteString, except: Option<SocketId>) {
        for (id, sub) in &self.subscribers {
            if Some(*id) != except {
                sub.session.deliver(frame);
            }
        }
    }

    fn stats(&self, name: &Arc<str>) -> ChannelStats {
        ChannelStats {
            name: name.clone(),
            subscription_count: self.subscribers.len(),
            user_count: self.kind.is_presence().then(|| self.roster.len()),
        }
    }
}

struct CachedEvent {
    frame: ByteString,
    stored: Instant,
}

#[derive(Default)]
struct AppState {
    channels: HashMap<Arc<str>, ChannelState>,
    cache: HashMap<Arc<str>, CachedEvent>,
    users: HashMap<Arc<str>, HashMap<SocketId, SessionHandle>>,
}

impl AppState {
    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.cache.is_empty() && self.users.is_empty()
    }
}

/// One shard of the registry. Owns its state outright: no locks.
pub struct Shard {
    apps: HashMap<Arc<str>, AppState>,
    cache_ttl: Duration,
    occupancy: Arc<Occupancy>,
}

impl Shard {
    pub fn new(cache_ttl: Duration, occupancy: Arc<Occupancy>) -> Shard {
        Shard {
            apps: HashMap::new(),
            cache_ttl,
            occupancy,
        }
    }

    fn cached(&mut self, app_id: &str, channel: &str) -> Option<(ByteString, u64)> {
        let ttl = self.cache_ttl;
        let app = self.apps.get_mut(app_id)?;
        let entry = app.cache.get(channel)?;
        let age = entry.stored.elapsed();
        if age >= ttl {
            app.cache.remove(channel);
            return None;
        }
        Some((entry.frame.clone(), (ttl - age).as_secs()))
    }

    /// Drop one socket from one channel, announcing what the others must hear.
    fn remove_subscriber(
        app: &mut AppState,
        occupancy: &Occupancy,
        app_id: &str,
        channel: &Arc<str>,
        socket: SocketId,
    ) {
        let Some(state) = app.channels.get_mut(channel) else {
            return;
        };
        let Some(sub) = state.subscribers.remove(&socket) else {
            return;
        };
        if let Some(user_id) = sub.user_id {
            if state.roster.remove(&user_id) {
                state.broadcast(&frames::member_removed(channel, &user_id), None);
            }
        } else if state.count_updates && !state.subscribers.is_empty() {
            state.broadcast(
                &frames::subscription_count(channel, state.subscribers.len()),
                None,
            );
        }
        if state.subscribers.is_empty() {
            app.channels.remove(channel);
            occupancy.remove(app_id, channel);
        }
    }

    fn sweep_cache(&mut self) {
        let ttl = self.cache_ttl;
        for app in self.apps.values_mut() {
            app.cache.retain(|_, e| e.stored.elapsed() < ttl);
        }
        self.apps.retain(|_, app| !app.is_empty());
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Mailbox capacity bounds how far HTTP publishers (which `send` and
        // await) can run ahead of fan-out.
        ctx.set_mailbox_capacity(1024);
        let every = self
            .cache_ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        ctx.run_interval(every, |shard, _| shard.sweep_cache());
    }
}

impl Handler<Subscribe> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        let cache = if msg.kind.is_cache() {
            Some(self.cached(&msg.app_id, &msg.channel))
        } else {
            None
        };
        let app = self.apps.entry(msg.app_id.clone()).or_default();
        let state = match app.channels.entry(msg.channel.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.occupancy.insert(&msg.app_id, &msg.channel);
                e.insert(ChannelState {
                    kind: msg.kind,
                    subscribers: HashMap::new(),
                    roster: Roster::default(),
                    count_updates: msg.count_updates,
                })
            }
        };
        let socket = msg.session.id();
        let already = state.subscribers.contains_key(&socket);

        match &msg.member {
            Some(member) => {
                if !already
                    && !state.roster.contains(&member.user_id)
                    && state.roster.len() >= msg.max_members
                {
                    let err = crate::error::SubscriptionError::LimitReached(format!(
                        "Presence channel is full ({} members)",
                        msg.max_members
                    ));
                    msg.session.deliver(&err.frame(&msg.channel));
                    msg.session.refuse(msg.channel.clone());
                    if state.subscribers.is_empty() {
                        app.channels.remove(&msg.channel);
                        self.occupancy.remove(&msg.app_id, &msg.channel);
                    }
                    return;
                }
                if !already {
                    let change = state.roster.add(member);
                    state.subscribers.insert(
                        socket,
                        Subscriber {
                            session: msg.session.clone(),
                            user_id: Some(member.user_id.clone()),
                        },
                    );
                    if change == Change::Added {
                        let added = frames::member_added(
                            &msg.channel,
                            &member.user_id,
                            member.user_info.as_deref(),
                        );
                        state.broadcast(&added, Some(socket));
                    }
                }
                let snapshot = state.roster.snapshot_json();
                msg.session
                    .deliver(&frames::presence_subscription_succeeded(
                        &msg.channel,
                        &snapshot,
                    ));
            }
            None => {
                if !already {
                    state.subscribers.insert(
                        socket,
                        Subscriber {
                            session: msg.session.clone(),
                            user_id: None,
                        },
                    );
                }
                msg.session
                    .deliver(&frames::subscription_succeeded(&msg.channel));
                if !already && state.count_updates {
                    state.broadcast(
                        &frames::subscription_count(&msg.channel, state.subscribers.len()),
                        None,
                    );
                }
            }
        }

        if let Some(cached) = cache {
            match cached {
                Some((frame, _)) => msg.session.deliver(&frame),
                None => msg.session.deliver(&frames::cache_miss(&msg.channel)),
            };
        }
    }
}

impl Handler<Unsubscribe> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        if let Some(app) = self.apps.get_mut(&msg.app_id) {
            Shard::remove_subscriber(app, &self.occupancy, &msg.app_id, &msg.channel, msg.socket);
        }
    }
}

impl Handler<SocketGone> for Shard {
    type Result = ();

    fn handle(&mut self, msg: SocketGone, _: &mut Context<Self>) {
        if let Some(app) = self.apps.get_mut(&msg.app_id) {
            for channel in &msg.channels {
                Shard::remove_subscriber(app, &self.occupancy, &msg.app_id, channel, msg.socket);
            }
        }
    }
}

impl Handler<Broadcast> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) {
        let kind = ChannelKind::of(&msg.channel);
        let app = match self.apps.entry(msg.app_id) {
            Entry::Occupied(e) => e.into_mut(),
            // Nobody here and nothing to cache: no state to create.
            Entry::Vacant(_) if !kind.is_cache() => return,
            Entry::Vacant(e) => e.insert(AppState::default()),
        };
        if let Some(state) = app.channels.get(&msg.channel) {
            if let Some(sender) = msg.require_subscriber {
                if !state.subscribers.contains_key(&sender) {
                    return;
                }
            }
            state.broadcast(&msg.frame, msg.except);
        } else if msg.require_subscriber.is_some() {
            return;
        }
        if kind.is_cache() {
            app.cache.insert(
                msg.channel,
                CachedEvent {
                    frame: msg.frame,
                    stored: Instant::now(),
                },
            );
        }
    }
}

impl Handler<ChannelInfo> for Shard {
    type Result = MessageResult<ChannelInfo>;

    fn handle(&mut self, msg: ChannelInfo, _: &mut Context<Self>) -> Self::Result {
        let cache = self.cached(&msg.app_id, &msg.channel);
        let stats = self
            .apps
            .get(&msg.app_id)
            .and_then(|app| app.channels.get(&msg.channel))
            .map(|state| state.stats(&msg.channel));
        MessageResult(ChannelInfoReply { stats, cache })
    }
}

impl Handler<ListChannels> for Shard {
    type Result = MessageResult<ListChannels>;

    fn handle(&mut self, msg: ListChannels, _: &mut Context<Self>) -> Self::Result {
        let Some(app) = self.apps.get(&msg.app_id) else {
            return MessageResult(Vec::new());
        };
        let prefix = msg.prefix.as_deref().unwrap_or("");
        MessageResult(
            app.channels
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(name, state)| state.stats(name))
                .collect(),
        )
    }
}

impl Handler<PresenceUsers> for Shard {
    type Result = MessageResult<PresenceUsers>;

    fn handle(&mut self, msg: PresenceUsers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.apps
                .get(&msg.app_id)
                .and_then(|app| app.channels.get(&msg.channel))
                .map(|state| state.roster.user_ids())
                .unwrap_or_default(),
        )
    }
}

impl Handler<UserSignedIn> for Shard {
    type Result = ();

    fn handle(&mut self, msg: UserSignedIn, _: &mut Context<Self>) {
        self.apps
            .entry(msg.app_id)
            .or_default()
            .users
            .entry(msg.user_id)
            .or_default()
            .insert(msg.session.id(), msg.session);
    }
}

impl Handler<UserGone> for Shard {
    type Result = ();

    fn handle(&mut self, msg: UserGone, _: &mut Context<Self>) {
        if let Some(app) = self.apps.get_mut(&msg.app_id) {
            if let Some(sockets) = app.users.get_mut(&msg.user_id) {
                sockets.remove(&msg.socket);
                if sockets.is_empty() {
                    app.users.remove(&msg.user_id);
                }
            }
        }
    }
}

impl Handler<TerminateUser> for Shard {
    type Result = usize;

    fn handle(&mut self, msg: TerminateUser, _: &mut Context<Self>) -> usize {
        let Some(sockets) = self
            .apps
            .get_mut(&msg.app_id)
            .and_then(|app| app.users.remove(&msg.user_id))
        else {
            return 0;
        };
        let err = crate::error::PusherError::Unauthorized(
            "Connection terminated by the application".into(),
        );
        for session in sockets.values() {
            session.disconnect(err.clone());
        }
        sockets.len()
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
