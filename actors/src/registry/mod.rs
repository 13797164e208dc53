//! Channel registry: who is subscribed where, presence rosters, the last-event
//! cache and signed-in users, split into shards by `hash(app, channel)`.
//!
//! [`Registry`] is the only door. Sessions and the HTTP API call its methods
//! (`subscribe`, `publish`, `client_event`, `channels`, …); shard addresses,
//! routing and the shard messages are private, so changing the shard count —
//! or, later, relaying to other nodes — changes no caller.
//!
//! - **Intent vs fan-out.** [`Registry::publish`] and
//!   [`Registry::client_event`] are intents: where a publish enters the
//!   system, and where a bridge between nodes will relay it. A local fan-out
//!   delivers a frame to this node's subscribers (and stores a cache
//!   channel's last event); it never re-checks the sender.
//! - **Table → transitions → listeners.** Each shard (an actor on its own
//!   thread, so fan-out uses every core) owns a `ChannelTable`, a
//!   plain data structure that reports what each operation changed as
//!   [`Transition`]s. The shard turns them into the frames local subscribers
//!   see and hands them to the [`TransitionListener`]s (the bridge and
//!   webhooks), so all of these agree by construction.
//! - **Publishes skip the shard.** Each shard mirrors its subscribers into an
//!   [`Audience`] any thread can read; a publish (and another node's event)
//!   is delivered from there by the thread that handles it, with no thread
//!   hop. Cache channels still go through their shard (it keeps the last
//!   event), and so do client events (the shard confirms the sender).
//! - **Between nodes.** A [`Cluster`] attached after start-up
//!   ([`Registry::attach_cluster`]) is handed each publish intent and each
//!   confirmed client event ([`Relayed`]); what other nodes relay comes back
//!   through [`Registry::fan_out_remote`], a local fan-out that is never
//!   relayed again.
//! - **Other nodes' state.** The bridge replicates each node's transitions
//!   (and snapshots) to the others, which hand them to
//!   [`Registry::apply_remote`] / [`Registry::replace_node`]. Each shard
//!   keeps them beside its local channels, so presence news, rosters and
//!   the API's counts are cluster-wide and answered without asking anyone.

mod audience;
mod cluster;
mod remote;
mod shard;
mod table;
mod transition;

pub use cluster::{Cluster, Relayed};

/// How a user's sockets are closed by the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserClose {
    /// `terminate_connections`: 4009, clients do not reconnect.
    Terminate,
    /// `force_reconnect` (Sockudo's): 4200, clients reconnect at once.
    Reconnect,
}
pub use remote::{NodeId, RemoteChannelState};
pub use transition::{Change, Origin, Transition, TransitionListener};

use audience::Audience;
use cluster::ClusterCell;

use crate::presence::Member;
use crate::protocol::{frames, ChannelKind, SERVER_TO_USER_PREFIX, WATCHLIST_CHANNEL};
use crate::socket::{SessionHandle, SocketId};
use actix::prelude::*;
use bytestring::ByteString;
use serde_json::value::RawValue;
use shard::Shard;
use std::collections::hash_map::DefaultHasher;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The shard that owns the channel or user is not running (or its
    /// mailbox is closed).
    #[error("Channel registry unavailable: {0}")]
    Unavailable(#[from] MailboxError),
}

/// What the HTTP API can learn about one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub name: Arc<str>,
    pub subscription_count: usize,
    /// Distinct users, presence channels only.
    pub user_count: Option<usize>,
}

/// One channel as [`Registry::channel`] reports it.
#[derive(Debug, Clone, Default)]
pub struct ChannelInfo {
    /// `None` when nobody is subscribed.
    pub stats: Option<ChannelStats>,
    /// Cached last event (frame) and seconds left, for cache channels.
    pub cache: Option<(ByteString, u64)>,
}

/// A socket asking to subscribe, after the session has checked its
/// signature and limits. The shard answers the socket itself.
pub struct Join {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub kind: ChannelKind,
    pub session: SessionHandle,
    pub member: Option<Member>,
    pub max_members: usize,
    /// Tell subscribers of non-presence channels their count on change.
    pub count_updates: bool,
}

/// A signed-in socket of an app with watchlist events: its user is online
/// while it stays, and it hears when the users it watches come and go.
pub struct Watch {
    pub app_id: Arc<str>,
    pub user_id: Arc<str>,
    pub session: SessionHandle,
    pub watchlist: Vec<Arc<str>>,
}

/// An event the backend publishes to one channel. The frame is built only
/// if someone can receive it.
pub struct Publish<'a> {
    pub app_id: &'a Arc<str>,
    pub channel: &'a str,
    /// The event name.
    pub name: &'a str,
    /// A JSON string token, relayed into the frame as it is.
    pub data: &'a RawValue,
    /// Not delivered to this socket (`socket_id` of the API).
    pub except: Option<SocketId>,
}

/// A client event from a socket, serialised once by the session.
pub struct ClientEvent {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub frame: ByteString,
    pub sender: SocketId,
}

/// Routes every operation to the shard that owns its channel or user.
#[derive(Clone)]
pub struct Registry {
    shards: Arc<[Addr<Shard>]>,
    /// Each shard's subscribers, same index as `shards`: publishes are
    /// delivered from here by the publishing thread.
    audience: Arc<[Arc<Audience>]>,
    /// The other nodes, once attached; shared with the shards (they relay
    /// client events).
    cluster: ClusterCell,
}

impl Registry {
    /// Start `count` shards (at least one), each on a new arbiter, telling
    /// `listeners` of every transition. Must run inside an actix `System`.
    pub fn start(
        count: usize,
        cache_ttl: Duration,
        listeners: Vec<Arc<dyn TransitionListener>>,
    ) -> Registry {
        let listeners: shard::Listeners = listeners.into();
        let cluster = ClusterCell::default();
        let audience: Vec<Arc<Audience>> = (0..count.max(1)).map(|_| Arc::default()).collect();
        let shards: Vec<Addr<Shard>> = audience
            .iter()
            .map(|audience| {
                let arbiter = Arbiter::new();
                let audience = audience.clone();
                let listeners = listeners.clone();
                let cluster = cluster.clone();
                Shard::start_in_arbiter(&arbiter.handle(), move |_| {
                    Shard::new(cache_ttl, audience, listeners, cluster)
                })
            })
            .collect();
        Registry {
            shards: shards.into(),
            audience: audience.into(),
            cluster,
        }
    }

    /// Connect this node to the others: from now on every publish intent and
    /// every confirmed client event is also handed to `cluster`. Attached
    /// after start-up because the bridge needs the registry to deliver what
    /// it receives. Only the first attachment counts; returns `false` (and
    /// changes nothing) for a later one.
    pub fn attach_cluster(&self, cluster: Arc<dyn Cluster>) -> bool {
        self.cluster.set(cluster).is_ok()
    }

    fn index(&self, app_id: &str, channel: &str) -> usize {
        let mut h = DefaultHasher::new();
        app_id.hash(&mut h);
        channel.hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    fn channel_shard(&self, app_id: &str, channel: &str) -> &Addr<Shard> {
        &self.shards[self.index(app_id, channel)]
    }

    /// The shard keeping the sockets of a signed-in user.
    fn user_shard(&self, app_id: &str, user_id: &str) -> &Addr<Shard> {
        // A prefix outside the channel-name alphabet keeps users and channels
        // from colliding by construction (they live in separate maps anyway).
        let mut h = DefaultHasher::new();
        app_id.hash(&mut h);
        "#user".hash(&mut h);
        user_id.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    /// Whether a publish to this channel can reach anyone: it has
    /// subscribers, or it is a cache channel (whose last event is kept).
    #[cfg(test)]
    pub(crate) fn worth_publishing(&self, app_id: &str, channel: &str) -> bool {
        ChannelKind::of(channel).is_cache()
            || self.audience[self.index(app_id, channel)].contains(app_id, channel)
    }

    // ---- intents ----

    /// Publish an event to a channel (the HTTP API). Returns once the frame
    /// is on every local subscriber's queue: awaiting it keeps events in
    /// publish order across channels and requests (a cache channel's
    /// publish waits for its shard, whose mailbox is bounded: the
    /// publisher's backpressure).
    pub async fn publish(&self, p: Publish<'_>) -> Result<(), RegistryError> {
        let index = self.index(p.app_id, p.channel);
        let frame = || frames::channel_event(p.name, p.channel, p.data);
        let Some(cluster) = self.cluster.get() else {
            // No other node: the frame is serialised only if someone here
            // listens (or the channel keeps its last event).
            return self
                .fan_out_local(index, p.app_id, p.channel, frame, p.except)
                .await;
        };
        let frame = frame();
        // Always relayed for now. Cluster occupancy (slice 2) goes here:
        // skip the relay when no other node has a subscriber (cache
        // channels always go, to keep their last event everywhere).
        cluster.relay(Relayed {
            app_id: p.app_id.clone(),
            channel: Arc::from(p.channel),
            frame: frame.clone(),
            except: p.except,
        });
        self.fan_out_local(index, p.app_id, p.channel, || frame, p.except)
            .await
    }

    /// Deliver an event another node relayed to this node's subscribers: the
    /// local fan-out, with no sender check (the relaying node checked) and
    /// never relayed again. Stores a cache channel's last event. Awaiting it
    /// keeps the relayed events in order and is the bridge's backpressure.
    pub async fn fan_out_remote(
        &self,
        app_id: &Arc<str>,
        channel: &str,
        frame: ByteString,
        except: Option<SocketId>,
    ) -> Result<(), RegistryError> {
        let index = self.index(app_id, channel);
        self.fan_out_local(index, app_id, channel, || frame, except)
            .await
    }

    /// This node's subscribers of a channel get the frame `frame` makes.
    /// Delivered by the calling thread from the shard's [`Audience`] — one
    /// lookup, no message to the shard, no thread hop, and the frame made
    /// only if someone is subscribed — except on cache channels, whose shard
    /// stores the event as their last (awaited: that is the caller's
    /// backpressure and keeps its events in order).
    async fn fan_out_local(
        &self,
        index: usize,
        app_id: &Arc<str>,
        channel: &str,
        frame: impl FnOnce() -> ByteString,
        except: Option<SocketId>,
    ) -> Result<(), RegistryError> {
        if !ChannelKind::of(channel).is_cache() {
            self.audience[index].deliver(app_id, channel, frame, except);
            return Ok(());
        }
        self.shards[index]
            .send(shard::FanOut {
                app_id: app_id.clone(),
                channel: Arc::from(channel),
                frame: frame(),
                except,
            })
            .await?;
        Ok(())
    }

    /// Publish an event to a user's `#server-to-user-<id>` channel.
    pub async fn send_to_user(
        &self,
        app_id: &Arc<str>,
        user_id: &str,
        name: &str,
        data: &RawValue,
    ) -> Result<(), RegistryError> {
        let channel = format!("{SERVER_TO_USER_PREFIX}{user_id}");
        self.publish(Publish {
            app_id,
            channel: &channel,
            name,
            data,
            except: None,
        })
        .await
    }

    /// A client event: delivered to the channel's other subscribers if the
    /// owning shard confirms the sender is subscribed (the session's view can
    /// be ahead of a refused presence join), and only then relayed to the
    /// other nodes. Fire and forget.
    pub fn client_event(&self, event: ClientEvent) {
        self.channel_shard(&event.app_id, &event.channel)
            .do_send(shard::ClientEvent {
                app_id: event.app_id,
                channel: event.channel,
                frame: event.frame,
                sender: event.sender,
            });
    }

    // ---- sockets ----

    /// Subscribe a socket; the shard answers it (`subscription_succeeded`, or
    /// the error, then [`SessionHandle::refuse`]).
    pub fn subscribe(&self, join: Join) {
        self.channel_shard(&join.app_id, &join.channel)
            .do_send(shard::Subscribe(join));
    }

    /// A socket signed in on an app with watchlist events (after it left
    /// any earlier watch: see [`Self::unwatch`]).
    pub fn watch(&self, watch: Watch) {
        self.channel_shard(&watch.app_id, WATCHLIST_CHANNEL)
            .do_send(shard::WatchJoin(watch));
    }

    /// The socket signs in again: its earlier user goes offline (if it was
    /// that user's last socket) and it stops watching.
    pub fn unwatch(&self, app_id: &Arc<str>, socket: SocketId) {
        self.unsubscribe(app_id.clone(), Arc::from(WATCHLIST_CHANNEL), socket);
    }

    pub fn unsubscribe(&self, app_id: Arc<str>, channel: Arc<str>, socket: SocketId) {
        self.channel_shard(&app_id, &channel)
            .do_send(shard::Unsubscribe {
                app_id,
                channel,
                socket,
            });
    }

    /// A socket is gone: it leaves these channels (one message per shard
    /// touched, not one per channel) and its signed-in user.
    pub fn leave(
        &self,
        app_id: &Arc<str>,
        socket: SocketId,
        channels: impl IntoIterator<Item = Arc<str>>,
        user_id: Option<Arc<str>>,
    ) {
        let mut by_shard: Vec<Vec<Arc<str>>> = Vec::new();
        for channel in channels {
            if by_shard.is_empty() {
                by_shard.resize_with(self.shards.len(), Vec::new);
            }
            by_shard[self.index(app_id, &channel)].push(channel);
        }
        for (addr, channels) in self.shards.iter().zip(by_shard) {
            if !channels.is_empty() {
                addr.do_send(shard::Leave {
                    app_id: app_id.clone(),
                    socket,
                    channels,
                });
            }
        }
        if let Some(user_id) = user_id {
            self.sign_out(app_id, user_id, socket);
        }
    }

    /// A socket signed in as `user_id`; `previous` is the user it was signed
    /// in as before, if any (forgotten unless it is the same user).
    pub fn sign_in(
        &self,
        app_id: &Arc<str>,
        user_id: Arc<str>,
        previous: Option<Arc<str>>,
        session: SessionHandle,
    ) {
        if let Some(previous) = previous.filter(|p| *p != user_id) {
            self.sign_out(app_id, previous, session.id());
        }
        self.user_shard(app_id, &user_id).do_send(shard::SignIn {
            app_id: app_id.clone(),
            user_id,
            session,
        });
    }

    fn sign_out(&self, app_id: &Arc<str>, user_id: Arc<str>, socket: SocketId) {
        self.user_shard(app_id, &user_id).do_send(shard::SignOut {
            app_id: app_id.clone(),
            user_id,
            socket,
        });
    }

    /// Close every socket signed in as this user (4009), on every node;
    /// returns how many were closed on this one.
    pub async fn terminate_user(
        &self,
        app_id: &Arc<str>,
        user_id: &str,
    ) -> Result<usize, RegistryError> {
        self.close_user(app_id, user_id, UserClose::Terminate).await
    }

    /// Close every socket signed in as this user, on every node, as `how`
    /// says; returns how many were closed on this one.
    pub async fn close_user(
        &self,
        app_id: &Arc<str>,
        user_id: &str,
        how: UserClose,
    ) -> Result<usize, RegistryError> {
        if let Some(cluster) = self.cluster.get() {
            cluster.close_user(app_id, user_id, how);
        }
        self.close_user_here(app_id, user_id, how).await
    }

    /// [`Self::close_user`] on this node only (another node asked).
    pub async fn close_user_here(
        &self,
        app_id: &Arc<str>,
        user_id: &str,
        how: UserClose,
    ) -> Result<usize, RegistryError> {
        Ok(self
            .user_shard(app_id, user_id)
            .send(shard::Terminate {
                app_id: app_id.clone(),
                user_id: Arc::from(user_id),
                how,
            })
            .await?)
    }

    // ---- other nodes ----

    /// Changes another node made to its own channels (its transitions, in
    /// its order): kept beside this node's state, and what they mean told to
    /// local subscribers. Fire and forget, in order per shard.
    pub fn apply_remote(&self, node: NodeId, changes: Vec<Transition>) {
        let mut by_shard: Vec<Vec<Transition>> = Vec::new();
        by_shard.resize_with(self.shards.len(), Vec::new);
        for t in changes {
            by_shard[self.index(&t.app_id, &t.channel)].push(t);
        }
        for (addr, changes) in self.shards.iter().zip(by_shard) {
            if !changes.is_empty() {
                addr.do_send(shard::Remote { node, changes });
            }
        }
    }

    /// Everything another node holds (its snapshot) replaces what this node
    /// knew of it; only the differences reach local subscribers.
    pub fn replace_node(&self, node: NodeId, channels: Vec<RemoteChannelState>) {
        let mut by_shard: Vec<Vec<RemoteChannelState>> = Vec::new();
        by_shard.resize_with(self.shards.len(), Vec::new);
        for c in channels {
            by_shard[self.index(&c.app_id, &c.channel)].push(c);
        }
        // Every shard, even with nothing: what it knew of the node may be stale.
        for (addr, channels) in self.shards.iter().zip(by_shard) {
            addr.do_send(shard::ReplaceNode { node, channels });
        }
    }

    /// Another node left or died: its sockets leave every channel
    /// (`member_removed` for users it was the last node of).
    pub fn forget_node(&self, node: NodeId) {
        self.replace_node(node, Vec::new());
    }

    // ---- queries ----

    /// One channel's counts over the cluster and, for a cache channel, its
    /// cached event.
    pub async fn channel(
        &self,
        app_id: &Arc<str>,
        channel: &str,
    ) -> Result<ChannelInfo, RegistryError> {
        Ok(self
            .channel_shard(app_id, channel)
            .send(shard::Info {
                app_id: app_id.clone(),
                channel: Arc::from(channel),
            })
            .await?)
    }

    /// The app's channels occupied anywhere in the cluster whose names start
    /// with `prefix`, in no particular order.
    pub async fn channels(
        &self,
        app_id: &Arc<str>,
        prefix: Option<&str>,
    ) -> Result<Vec<ChannelStats>, RegistryError> {
        let prefix: Arc<str> = Arc::from(prefix.unwrap_or(""));
        // Every request is queued before the first is awaited: the shards
        // answer concurrently.
        let replies: Vec<_> = self
            .shards
            .iter()
            .map(|addr| {
                addr.send(shard::List {
                    app_id: app_id.clone(),
                    prefix: prefix.clone(),
                })
            })
            .collect();
        let mut all = Vec::new();
        for reply in replies {
            all.extend(reply.await?);
        }
        Ok(all)
    }

    /// Distinct user ids on a presence channel, over the cluster.
    pub async fn users(
        &self,
        app_id: &Arc<str>,
        channel: &str,
    ) -> Result<Vec<Arc<str>>, RegistryError> {
        Ok(self
            .channel_shard(app_id, channel)
            .send(shard::Users {
                app_id: app_id.clone(),
                channel: Arc::from(channel),
            })
            .await?)
    }

    /// Returns once every shard has handled every message sent to it before.
    pub async fn sync(&self) -> Result<(), RegistryError> {
        let replies: Vec<_> = self.shards.iter().map(|s| s.send(shard::Barrier)).collect();
        for reply in replies {
            reply.await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "../registry_tests.rs"]
mod tests;
