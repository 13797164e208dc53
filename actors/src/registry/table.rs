//! The channel state of one shard as a plain data structure: apps →
//! channels (subscribers, presence roster, count-updates flag), the
//! last-event cache and signed-in users.
//!
//! No actors and no clock here: time is passed in, and every operation
//! pushes the [`Transition`]s it caused into a buffer the caller owns (and
//! reuses), then returns what the caller must deliver. The table decides;
//! the shard delivers. Generic over the subscriber handle so it can be tested
//! with plain values.

use super::remote::{NodeId, RemoteChannel, RemoteChannelState, Visible};
use super::transition::{Change, Transition};
use super::ChannelStats;
use crate::presence::Member;
use crate::presence::{self, Roster};
use crate::protocol::{ChannelKind, WATCHLIST_CHANNEL};
use crate::socket::SocketId;
use bytestring::ByteString;
use serde_json::value::RawValue;
use std::collections::hash_map::{self, HashMap};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Subscriber<H> {
    handle: H,
    /// Presence channels: the user this socket joined as.
    user_id: Option<Arc<str>>,
}

/// One occupied channel.
pub struct Channel<H> {
    name: Arc<str>,
    kind: ChannelKind,
    subscribers: HashMap<SocketId, Subscriber<H>>,
    roster: Roster,
    count_updates: bool,
}

impl<H> Channel<H> {
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// Whether subscribers are told the subscription count when it changes.
    pub fn count_updates(&self) -> bool {
        self.count_updates
    }

    pub fn subscribers(&self) -> Subscribers<'_, H> {
        Subscribers(Some(self.subscribers.iter()))
    }
}

/// The sockets subscribed to a channel (none if it has no subscribers).
pub struct Subscribers<'a, H>(Option<hash_map::Iter<'a, SocketId, Subscriber<H>>>);

impl<'a, H> Iterator for Subscribers<'a, H> {
    type Item = (SocketId, &'a H);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.as_mut()?.next().map(|(id, sub)| (*id, &sub.handle))
    }
}

struct CachedEvent {
    frame: ByteString,
    stored: Instant,
}

struct AppState<H> {
    /// The app's id, shared by every transition of its channels.
    id: Arc<str>,
    channels: HashMap<Arc<str>, Channel<H>>,
    cache: HashMap<Arc<str>, CachedEvent>,
    users: HashMap<Arc<str>, HashMap<SocketId, H>>,
    /// What the other nodes of a cluster hold on this app's channels (empty
    /// on a single node).
    remote: HashMap<Arc<str>, RemoteChannel>,
}

impl<H> AppState<H> {
    fn new(id: &Arc<str>) -> Self {
        AppState {
            id: id.clone(),
            channels: HashMap::new(),
            cache: HashMap::new(),
            users: HashMap::new(),
            remote: HashMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty()
            && self.cache.is_empty()
            && self.users.is_empty()
            && self.remote.is_empty()
    }

    /// A channel's counts over the cluster; `None` when nobody anywhere is
    /// subscribed.
    fn stats(&self, channel: &str) -> Option<ChannelStats> {
        let local = self.channels.get(channel);
        let remote = self.remote.get(channel).filter(|r| r.count() > 0);
        let (name, kind) = match (local, remote) {
            (Some(c), _) => (c.name.clone(), c.kind),
            (None, Some(_)) => {
                let (name, _) = self.remote.get_key_value(channel)?;
                (name.clone(), ChannelKind::of(channel))
            }
            (None, None) => return None,
        };
        let remote_users = |c: Option<&Channel<H>>| {
            remote.map_or(0, |r| {
                r.members()
                    .filter(|(id, _)| !c.is_some_and(|c| c.roster.contains(id)))
                    .count()
            })
        };
        Some(ChannelStats {
            name,
            subscription_count: local.map_or(0, |c| c.subscribers.len())
                + remote.map_or(0, RemoteChannel::count),
            user_count: kind
                .is_presence()
                .then(|| local.map_or(0, |c| c.roster.len()) + remote_users(local)),
        })
    }
}

/// A socket asking to join a channel.
pub struct NewSubscriber<'a, H> {
    pub app_id: &'a Arc<str>,
    pub channel: &'a Arc<str>,
    pub kind: ChannelKind,
    pub socket: SocketId,
    pub handle: &'a H,
    /// Presence channels: who the socket joins as.
    pub member: Option<&'a Member>,
    /// Presence channels: distinct users allowed.
    pub max_members: usize,
    /// Kept from the channel's first subscriber.
    pub count_updates: bool,
}

/// A subscription the table accepted (or confirmed again).
#[derive(Debug, PartialEq)]
pub struct Joined {
    /// Presence channels: `{"presence":{…}}` for `subscription_succeeded`,
    /// the joiner included.
    pub snapshot: Option<String>,
    /// Cache channels: the cached event to replay to the joiner.
    pub cached: Option<ByteString>,
}

/// Why the table refused a subscription. Nothing changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A new user would exceed `max_members` distinct users.
    PresenceFull { max_members: usize },
}

pub struct ChannelTable<H> {
    apps: HashMap<Arc<str>, AppState<H>>,
    cache_ttl: Duration,
}

impl<H: Clone> ChannelTable<H> {
    pub fn new(cache_ttl: Duration) -> Self {
        ChannelTable {
            apps: HashMap::new(),
            cache_ttl,
        }
    }

    pub fn cache_ttl(&self) -> Duration {
        self.cache_ttl
    }

    pub fn channel(&self, app_id: &str, channel: &str) -> Option<&Channel<H>> {
        self.apps.get(app_id)?.channels.get(channel)
    }

    /// Add a socket to a channel. A socket already subscribed is confirmed
    /// again without any change (but a cache channel still replays or misses).
    pub fn subscribe(
        &mut self,
        join: NewSubscriber<'_, H>,
        now: Instant,
        out: &mut Vec<Transition>,
    ) -> Result<Joined, Refused> {
        // Decided before any state exists for the channel: a refused join
        // must leave nothing behind, not even a channel created and removed.
        // (Counting the roster is skipped where nothing limits it.)
        if let Some(member) = join.member.filter(|_| join.max_members != usize::MAX) {
            let (already, present, members) = match self.channel(join.app_id, join.channel) {
                Some(c) => (
                    c.subscribers.contains_key(&join.socket),
                    c.roster.contains(&member.user_id),
                    c.roster.len(),
                ),
                None => (false, false, 0),
            };
            // Distinct users over the cluster: other nodes' members count too.
            let (present, members) = match self.remote(join.app_id, join.channel) {
                Some(r) => {
                    let local = self.channel(join.app_id, join.channel);
                    let elsewhere = r
                        .members()
                        .filter(|(id, _)| !local.is_some_and(|c| c.roster.contains(id)))
                        .count();
                    (
                        present || r.has_member(&member.user_id),
                        members + elsewhere,
                    )
                }
                None => (present, members),
            };
            if !already && !present && members >= join.max_members {
                return Err(Refused::PresenceFull {
                    max_members: join.max_members,
                });
            }
        }
        let cached = join
            .kind
            .is_cache()
            .then(|| self.cached(join.app_id, join.channel, now).map(|(f, _)| f));
        let transition = |change| Transition {
            app_id: join.app_id.clone(),
            channel: join.channel.clone(),
            change,
        };
        let app = self.app_entry(join.app_id);
        let state = match app.channels.entry(join.channel.clone()) {
            hash_map::Entry::Occupied(e) => e.into_mut(),
            hash_map::Entry::Vacant(e) => {
                out.push(transition(Change::Occupied));
                e.insert(Channel {
                    name: join.channel.clone(),
                    kind: join.kind,
                    subscribers: HashMap::new(),
                    roster: Roster::default(),
                    count_updates: join.count_updates,
                })
            }
        };
        if let hash_map::Entry::Vacant(e) = state.subscribers.entry(join.socket) {
            e.insert(Subscriber {
                handle: join.handle.clone(),
                user_id: join.member.map(|m| m.user_id.clone()),
            });
            if let Some(member) = join.member {
                if state.roster.add(member) == presence::Change::Added {
                    out.push(transition(Change::MemberAdded {
                        user_id: member.user_id.clone(),
                        user_info: member.user_info.clone(),
                    }));
                }
            }
            out.push(transition(Change::CountChanged {
                count: state.subscribers.len(),
            }));
        }
        // The roster for `subscription_succeeded`: presence channels only
        // (`#watchlist` has members but nobody to show them to).
        let snapshot = join.member.filter(|_| join.kind.is_presence()).map(|_| {
            match app.remote.get(&**join.channel) {
                Some(r) => state.roster.snapshot_json_with(r.members()),
                None => state.roster.snapshot_json(),
            }
        });
        let cached = match cached {
            // Last, after the occupancy and count changes.
            Some(None) => {
                out.push(transition(Change::CacheMiss));
                None
            }
            Some(hit) => hit,
            None => None,
        };
        Ok(Joined { snapshot, cached })
    }

    /// Remove a socket from a channel; a socket that is not subscribed
    /// changes nothing.
    pub fn unsubscribe(
        &mut self,
        app_id: &str,
        channel: &str,
        socket: SocketId,
        out: &mut Vec<Transition>,
    ) {
        if let Some(app) = self.apps.get_mut(app_id) {
            remove_subscriber(app, channel, socket, out);
        }
    }

    /// A socket is gone: remove it from each of these channels.
    pub fn leave(
        &mut self,
        app_id: &str,
        channels: &[Arc<str>],
        socket: SocketId,
        out: &mut Vec<Transition>,
    ) {
        if let Some(app) = self.apps.get_mut(app_id) {
            for channel in channels {
                remove_subscriber(app, channel, socket, out);
            }
        }
    }

    fn app_entry(&mut self, app_id: &Arc<str>) -> &mut AppState<H> {
        self.apps
            .entry(app_id.clone())
            .or_insert_with(|| AppState::new(app_id))
    }

    /// Deliver an event locally: store it if the channel is a cache channel,
    /// and return the subscribers to hand its frame to. No transition. The
    /// clock is read only for a cache channel (this is the publish hot path).
    pub fn fan_out(
        &mut self,
        app_id: &Arc<str>,
        channel: &Arc<str>,
        frame: &ByteString,
        now: impl FnOnce() -> Instant,
    ) -> Subscribers<'_, H> {
        let app = if ChannelKind::of(channel).is_cache() {
            let app = self.app_entry(app_id);
            app.cache.insert(
                channel.clone(),
                CachedEvent {
                    frame: frame.clone(),
                    stored: now(),
                },
            );
            app
        } else {
            match self.apps.get_mut(&**app_id) {
                Some(app) => app,
                None => return Subscribers(None),
            }
        };
        match app.channels.get(&**channel) {
            Some(c) => c.subscribers(),
            None => Subscribers(None),
        }
    }

    /// [`Self::fan_out`] of an event a subscriber sent (a client event):
    /// `None`, and nothing stored, unless `sender` is subscribed.
    pub fn fan_out_from(
        &mut self,
        app_id: &str,
        channel: &Arc<str>,
        sender: SocketId,
        frame: &ByteString,
        now: impl FnOnce() -> Instant,
    ) -> Option<Subscribers<'_, H>> {
        let app = self.apps.get_mut(app_id)?;
        let state = app.channels.get(&**channel)?;
        if !state.subscribers.contains_key(&sender) {
            return None;
        }
        if state.kind.is_cache() {
            app.cache.insert(
                channel.clone(),
                CachedEvent {
                    frame: frame.clone(),
                    stored: now(),
                },
            );
        }
        Some(state.subscribers())
    }

    /// The cached event of a channel and its seconds left; an expired one is
    /// dropped.
    pub fn cached(
        &mut self,
        app_id: &str,
        channel: &str,
        now: Instant,
    ) -> Option<(ByteString, u64)> {
        let ttl = self.cache_ttl;
        let app = self.apps.get_mut(app_id)?;
        let entry = app.cache.get(channel)?;
        let age = now.saturating_duration_since(entry.stored);
        if age >= ttl {
            app.cache.remove(channel);
            return None;
        }
        Some((entry.frame.clone(), (ttl - age).as_secs()))
    }

    /// Drop expired cached events, and apps left with nothing.
    pub fn sweep(&mut self, now: Instant) {
        let ttl = self.cache_ttl;
        for app in self.apps.values_mut() {
            app.cache
                .retain(|_, e| now.saturating_duration_since(e.stored) < ttl);
        }
        self.apps.retain(|_, app| !app.is_empty());
    }

    /// A channel's counts over the cluster (this node's alone on a single
    /// node); `None` when nobody anywhere is subscribed.
    pub fn stats(&self, app_id: &str, channel: &str) -> Option<ChannelStats> {
        self.apps.get(app_id)?.stats(channel)
    }

    /// Channels of an app occupied anywhere in the cluster whose names start
    /// with `prefix`, with their cluster-wide counts.
    pub fn channels(&self, app_id: &str, prefix: &str) -> Vec<ChannelStats> {
        let Some(app) = self.apps.get(app_id) else {
            return Vec::new();
        };
        let remote_only = app
            .remote
            .iter()
            .filter(|(name, r)| r.count() > 0 && !app.channels.contains_key(&***name));
        app.channels
            .keys()
            .chain(remote_only.map(|(name, _)| name))
            .filter(|name| name.starts_with(prefix) && &***name != WATCHLIST_CHANNEL)
            .filter_map(|name| app.stats(name))
            .collect()
    }

    /// Distinct users on a presence channel, over the cluster.
    pub fn user_ids(&self, app_id: &str, channel: &str) -> Vec<Arc<str>> {
        let Some(app) = self.apps.get(app_id) else {
            return Vec::new();
        };
        let mut ids = app
            .channels
            .get(channel)
            .map(|c| c.roster.user_ids())
            .unwrap_or_default();
        if let Some(r) = app.remote.get(channel) {
            let local = app.channels.get(channel);
            ids.extend(
                r.members()
                    .filter(|(id, _)| !local.is_some_and(|c| c.roster.contains(id)))
                    .map(|(id, _)| id.clone()),
            );
        }
        ids
    }

    // ---- other nodes ----

    /// What the other nodes hold on a channel, if anything.
    fn remote(&self, app_id: &str, channel: &str) -> Option<&RemoteChannel> {
        self.apps.get(app_id)?.remote.get(channel)
    }

    /// Whether any node (this one included) has a socket of this user on
    /// the channel.
    pub fn present(&self, app_id: &str, channel: &str, user_id: &str) -> bool {
        self.channel(app_id, channel)
            .is_some_and(|c| c.roster.contains(user_id))
            || self.present_elsewhere(app_id, channel, user_id)
    }

    /// Whether another node has a socket of this user on the channel.
    pub fn present_elsewhere(&self, app_id: &str, channel: &str, user_id: &str) -> bool {
        self.remote(app_id, channel)
            .is_some_and(|r| r.has_member(user_id))
    }

    /// Subscriptions to the channel on the other nodes.
    pub fn remote_count(&self, app_id: &str, channel: &str) -> usize {
        self.remote(app_id, channel).map_or(0, RemoteChannel::count)
    }

    /// Apply one change another node made to its own state (`Vacated` and
    /// `CacheMiss` carry nothing the counts do not). Pushes to `out` the
    /// change as the whole cluster sees it, whether or not this node has
    /// subscribers there: `MemberAdded` / `MemberRemoved` when the user
    /// enters or leaves the whole cluster, `Occupied` / `Vacated` when the
    /// cluster's count leaves or reaches zero, `CountChanged` with the
    /// cluster-wide count. The shard tells local subscribers what concerns
    /// them and hands the rest to the listeners that want the cluster view.
    pub fn apply_remote(&mut self, node: NodeId, t: &Transition, out: &mut Vec<Transition>) {
        match &t.change {
            Change::CountChanged { count } => {
                self.set_remote_count(&t.app_id, &t.channel, node, *count, out)
            }
            Change::MemberAdded { user_id, user_info } => {
                self.add_remote_member(&t.app_id, &t.channel, node, user_id, user_info.clone(), out)
            }
            Change::MemberRemoved { user_id } => {
                self.remove_remote_member(&t.app_id, &t.channel, node, user_id, out)
            }
            // The node's first subscriber: counted now, so the cluster's
            // `Occupied` comes before the member change that follows it
            // (its `CountChanged` sets the real count next).
            Change::Occupied => {
                if self
                    .remote(&t.app_id, &t.channel)
                    .is_none_or(|r| r.count_of(node) == 0)
                {
                    self.set_remote_count(&t.app_id, &t.channel, node, 1, out);
                }
            }
            Change::Vacated | Change::CacheMiss => {}
        }
    }

    /// Replace everything `node` holds on this shard's channels with
    /// `channels` (its snapshot, this shard's part); empty forgets the node
    /// (it left or died). Pushes to `out` what local subscribers must hear,
    /// as [`Self::apply_remote`] does: only the differences.
    pub fn replace_node(
        &mut self,
        node: NodeId,
        channels: &[RemoteChannelState],
        out: &mut Vec<Transition>,
    ) {
        let mut kept: HashSet<(&str, &str)> = HashSet::new();
        for c in channels {
            kept.insert((&c.app_id, &c.channel));
            let had = self
                .remote(&c.app_id, &c.channel)
                .map(|r| r.members_of(node))
                .unwrap_or_default();
            for user_id in had {
                if !c.members.iter().any(|m| m.user_id == user_id) {
                    self.remove_remote_member(&c.app_id, &c.channel, node, &user_id, out);
                }
            }
            // Counted before its members arrive: `Occupied` first.
            self.set_remote_count(&c.app_id, &c.channel, node, c.count, out);
            for m in &c.members {
                let info = m.user_info.clone();
                self.add_remote_member(&c.app_id, &c.channel, node, &m.user_id, info, out);
            }
        }
        // Whatever else the node held is gone.
        let stale: Vec<(Arc<str>, Arc<str>)> = self
            .apps
            .values()
            .flat_map(|app| {
                app.remote
                    .iter()
                    .filter(|(name, r)| r.has_node(node) && !kept.contains(&(&*app.id, &***name)))
                    .map(|(name, _)| (app.id.clone(), name.clone()))
            })
            .collect();
        for (app_id, channel) in stale {
            let had = self
                .remote(&app_id, &channel)
                .map(|r| r.members_of(node))
                .unwrap_or_default();
            for user_id in had {
                self.remove_remote_member(&app_id, &channel, node, &user_id, out);
            }
            self.set_remote_count(&app_id, &channel, node, 0, out);
        }
    }

    fn set_remote_count(
        &mut self,
        app_id: &Arc<str>,
        channel: &Arc<str>,
        node: NodeId,
        count: usize,
        out: &mut Vec<Transition>,
    ) {
        let app = self.app_entry(app_id);
        let remote = app.remote.entry(channel.clone()).or_default();
        let before = remote.count();
        let moved = remote.set_count(node, count);
        let total = remote.count();
        if remote.is_empty() {
            app.remote.remove(&**channel);
        }
        if !moved {
            return;
        }
        let local = app.channels.get(&**channel);
        let here = local.map_or(0, |c| c.subscribers.len());
        let name = local.map_or_else(|| channel.clone(), |c| c.name.clone());
        let transition = |change| Transition {
            app_id: app.id.clone(),
            channel: name.clone(),
            change,
        };
        if here + before == 0 && total > 0 {
            out.push(transition(Change::Occupied));
        }
        out.push(transition(Change::CountChanged {
            count: here + total,
        }));
        if here + total == 0 && before > 0 {
            out.push(transition(Change::Vacated));
        }
    }

    fn add_remote_member(
        &mut self,
        app_id: &Arc<str>,
        channel: &Arc<str>,
        node: NodeId,
        user_id: &Arc<str>,
        user_info: Option<Arc<RawValue>>,
        out: &mut Vec<Transition>,
    ) {
        let app = self.app_entry(app_id);
        let here = app
            .channels
            .get(&**channel)
            .is_some_and(|c| c.roster.contains(user_id));
        let remote = app.remote.entry(channel.clone()).or_default();
        let visible = remote.add_member(node, user_id, user_info.clone(), here);
        if visible == Visible::Joined {
            let local = app.channels.get(&**channel);
            out.push(Transition {
                app_id: app.id.clone(),
                channel: local.map_or_else(|| channel.clone(), |c| c.name.clone()),
                change: Change::MemberAdded {
                    user_id: user_id.clone(),
                    user_info,
                },
            });
        }
    }

    fn remove_remote_member(
        &mut self,
        app_id: &Arc<str>,
        channel: &Arc<str>,
        node: NodeId,
        user_id: &Arc<str>,
        out: &mut Vec<Transition>,
    ) {
        let Some(app) = self.apps.get_mut(&**app_id) else {
            return;
        };
        let Some(remote) = app.remote.get_mut(&**channel) else {
            return;
        };
        let local = app.channels.get(&**channel);
        let here = local.is_some_and(|c| c.roster.contains(user_id));
        let visible = remote.remove_member(node, user_id, here);
        if remote.is_empty() {
            app.remote.remove(&**channel);
        }
        if visible == Visible::Left {
            out.push(Transition {
                app_id: app.id.clone(),
                channel: local.map_or_else(|| channel.clone(), |c| c.name.clone()),
                change: Change::MemberRemoved {
                    user_id: user_id.clone(),
                },
            });
        }
    }

    // ---- signed-in users ----

    pub fn sign_in(&mut self, app_id: &Arc<str>, user_id: &Arc<str>, socket: SocketId, handle: H) {
        self.app_entry(app_id)
            .users
            .entry(user_id.clone())
            .or_default()
            .insert(socket, handle);
    }

    pub fn sign_out(&mut self, app_id: &str, user_id: &str, socket: SocketId) {
        if let Some(app) = self.apps.get_mut(app_id) {
            if let Some(sockets) = app.users.get_mut(user_id) {
                sockets.remove(&socket);
                if sockets.is_empty() {
                    app.users.remove(user_id);
                }
            }
        }
    }

    /// Forget a user; returns the handles of the sockets signed in as it.
    pub fn terminate(&mut self, app_id: &str, user_id: &str) -> Vec<H> {
        self.apps
            .get_mut(app_id)
            .and_then(|app| app.users.remove(user_id))
            .map(|sockets| sockets.into_values().collect())
            .unwrap_or_default()
    }
}

/// Drop one socket from one channel and record what that changed.
fn remove_subscriber<H>(
    app: &mut AppState<H>,
    channel: &str,
    socket: SocketId,
    out: &mut Vec<Transition>,
) {
    let Some(state) = app.channels.get_mut(channel) else {
        return;
    };
    let Some(sub) = state.subscribers.remove(&socket) else {
        return;
    };
    let transition = |change| Transition {
        app_id: app.id.clone(),
        channel: state.name.clone(),
        change,
    };
    if let Some(user_id) = sub.user_id {
        if state.roster.remove(&user_id) {
            out.push(transition(Change::MemberRemoved { user_id }));
        }
    }
    out.push(transition(Change::CountChanged {
        count: state.subscribers.len(),
    }));
    if state.subscribers.is_empty() {
        out.push(transition(Change::Vacated));
        app.channels.remove(channel);
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
