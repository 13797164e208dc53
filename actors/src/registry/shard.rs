//! One shard of the registry: an actor on its own thread owning a
//! [`ChannelTable`] outright (no locks). It applies commands to the table,
//! mirrors its subscribers into the [`Audience`] publishers read, hands the
//! resulting transitions to the listeners, then turns them into frames for
//! local subscribers.
//!
//! Its messages are private to the registry: callers go through
//! [`super::Registry`].

use super::audience::Audience;
use super::cluster::{ClusterCell, Relayed};
use super::remote::{NodeId, RemoteChannelState};
use super::table::{ChannelTable, NewSubscriber, Refused};
use super::transition::{self, Change, Transition, TransitionListener};
use super::{ChannelInfo, ChannelStats, Join, UserClose};
use crate::error::{PusherError, SubscriptionError};
use crate::presence::Member;
use crate::protocol::{frames, ChannelKind, WATCHLIST_CHANNEL};
use crate::socket::{SessionHandle, SocketId};
use crate::wire::{Fanout, Frame};
use actix::prelude::*;
use bytestring::ByteString;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) type Listeners = Arc<[Arc<dyn TransitionListener>]>;

pub(super) struct Shard {
    table: ChannelTable<SessionHandle>,
    /// Mirrors the table's subscribers for publishers on other threads.
    audience: Arc<Audience>,
    listeners: Listeners,
    /// The other nodes, once attached: told of each client event this shard
    /// has confirmed.
    cluster: ClusterCell,
    /// The transitions of the operation being handled; reused, so an
    /// operation allocates nothing here once the buffer has grown.
    out: Vec<Transition>,
    /// Sockets watching users (watchlist events), for the apps whose
    /// `#watchlist` channel this shard owns.
    watchers: Watchers,
    /// Some listener wants the cluster's view (the webhook sender).
    cluster_view: bool,
    /// That view of a local operation's `out`; reused likewise.
    cluster_out: Vec<Transition>,
}

/// Whose change [`Shard::announce`] tells local subscribers of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// This node's table changed: a member change is news only if no other
    /// node has the user, and a count is this node's alone.
    Local,
    /// Another node's: the table has already decided what is news, with
    /// cluster-wide counts.
    Remote,
}

impl Shard {
    pub(super) fn new(
        cache_ttl: Duration,
        audience: Arc<Audience>,
        listeners: Listeners,
        cluster: ClusterCell,
    ) -> Self {
        let cluster_view = listeners.iter().any(|l| l.wants_cluster_view());
        Shard {
            table: ChannelTable::new(cache_ttl),
            audience,
            listeners,
            cluster,
            out: Vec::new(),
            watchers: Watchers::default(),
            cluster_view,
            cluster_out: Vec::new(),
        }
    }

    /// Tell local subscribers what another node's changes mean to them.
    /// Never recorded: the listeners follow this node's state.
    fn announce_remote(&mut self) {
        // The table already reports another node's changes as the cluster
        // sees them.
        if self.cluster_view && !self.out.is_empty() {
            for listener in self.listeners.iter() {
                listener.on_cluster_transitions(&self.out, transition::Origin::Remote);
            }
        }
        self.announce(None, Origin::Remote);
        self.out.clear();
    }

    /// This node's changes as the cluster sees them: a first or last
    /// subscriber here is the cluster's only if no other node has one, a
    /// user's arrival or departure only if no other node has the user, a
    /// count is this node's plus the others'.
    fn record_cluster(&mut self) {
        if !self.cluster_view {
            return;
        }
        // No other node: nothing to adjust, the list is the cluster's view.
        if self.cluster.get().is_none() {
            for listener in self.listeners.iter() {
                listener.on_cluster_transitions(&self.out, transition::Origin::Local);
            }
            return;
        }
        let mut view = std::mem::take(&mut self.cluster_out);
        for t in &self.out {
            let elsewhere = self.table.remote_count(&t.app_id, &t.channel);
            let change = match &t.change {
                Change::Occupied | Change::Vacated if elsewhere > 0 => continue,
                Change::MemberAdded { user_id, .. } | Change::MemberRemoved { user_id }
                    if self.table.present_elsewhere(&t.app_id, &t.channel, user_id) =>
                {
                    continue
                }
                Change::CountChanged { count } => Change::CountChanged {
                    count: count + elsewhere,
                },
                other => other.clone(),
            };
            view.push(Transition {
                app_id: t.app_id.clone(),
                channel: t.channel.clone(),
                change,
            });
        }
        if !view.is_empty() {
            for listener in self.listeners.iter() {
                listener.on_cluster_transitions(&view, transition::Origin::Local);
            }
        }
        view.clear();
        self.cluster_out = view;
    }

    /// Before any frame goes out: a client that has seen a frame caused by a
    /// transition can rely on the listeners having seen the transition.
    fn record(&mut self) {
        if self.out.is_empty() {
            return;
        }
        for listener in self.listeners.iter() {
            listener.on_transitions(&self.out);
        }
        self.record_cluster();
    }

    /// What local subscribers hear of the transitions: `member_added` to
    /// everyone but the joiner, `member_removed`, `subscription_count` on
    /// non-presence channels that enable it, `cache_miss` to the joiner.
    fn announce(&self, joiner: Option<&SessionHandle>, origin: Origin) {
        // Another node already has the user: it is not news to the cluster.
        let elsewhere = |t: &Transition, user_id: &str| {
            origin == Origin::Local && self.table.present_elsewhere(&t.app_id, &t.channel, user_id)
        };
        for t in &self.out {
            if &*t.channel == WATCHLIST_CHANNEL {
                // Not a channel anyone hears: its members are who is online,
                // told to the sockets watching them.
                let (name, user_id) = match &t.change {
                    Change::MemberAdded { user_id, .. } => ("online", user_id),
                    Change::MemberRemoved { user_id } => ("offline", user_id),
                    _ => continue,
                };
                if !elsewhere(t, user_id) {
                    self.watchers.tell(&t.app_id, user_id, name);
                }
                continue;
            }
            match &t.change {
                Change::MemberAdded { user_id, user_info } => {
                    let Some(channel) = self.table.channel(&t.app_id, &t.channel) else {
                        continue;
                    };
                    if elsewhere(t, user_id) {
                        continue;
                    }
                    let frame = frames::member_added(&t.channel, user_id, user_info.as_deref());
                    let except = joiner.map(SessionHandle::id);
                    deliver_all(channel.subscribers(), &frame, except);
                }
                Change::MemberRemoved { user_id } => {
                    if elsewhere(t, user_id) {
                        continue;
                    }
                    if let Some(channel) = self.table.channel(&t.app_id, &t.channel) {
                        let frame = frames::member_removed(&t.channel, user_id);
                        deliver_all(channel.subscribers(), &frame, None);
                    }
                }
                Change::CountChanged { count } => {
                    // Still-subscribed sockets only: after the last one left
                    // there is no channel and nobody to tell.
                    if let Some(channel) = self.table.channel(&t.app_id, &t.channel) {
                        if channel.count_updates() && !channel.kind().is_presence() {
                            let count = match origin {
                                Origin::Local => {
                                    count + self.table.remote_count(&t.app_id, &t.channel)
                                }
                                Origin::Remote => *count,
                            };
                            let frame = frames::subscription_count(&t.channel, count);
                            deliver_all(channel.subscribers(), &frame, None);
                        }
                    }
                }
                Change::CacheMiss => {
                    if let Some(joiner) = joiner {
                        joiner.deliver(&Frame::text(&frames::cache_miss(&t.channel)));
                    }
                }
                Change::Occupied | Change::Vacated => {}
            }
        }
    }

    /// After sockets left: record, then tell the remaining subscribers.
    fn announce_departures(&mut self) {
        self.record();
        self.announce(None, Origin::Local);
        self.out.clear();
    }
}

fn deliver_all<'a>(
    subscribers: impl Iterator<Item = (SocketId, &'a SessionHandle)>,
    frame: &ByteString,
    except: Option<SocketId>,
) {
    // Encoded once for all of them, and only if someone receives it.
    let mut encoded: Option<Frame> = None;
    let mut fanout = Fanout::new();
    for (id, session) in subscribers {
        if Some(id) != except {
            session.deliver_in(
                encoded.get_or_insert_with(|| Frame::text(frame)),
                &mut fanout,
            );
        }
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Mailbox capacity bounds how far HTTP publishers (which `send` and
        // await) can run ahead of fan-out.
        ctx.set_mailbox_capacity(1024);
        let every = self
            .table
            .cache_ttl()
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        ctx.run_interval(every, |shard, _| shard.table.sweep(Instant::now()));
    }
}

// ---- messages ----

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Subscribe(pub Join);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Unsubscribe {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub socket: SocketId,
}

/// A socket is gone: remove it from these channels (all owned by this shard).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Leave {
    pub app_id: Arc<str>,
    pub socket: SocketId,
    pub channels: Vec<Arc<str>>,
}

/// Deliver a frame to this node's subscribers of a channel. Never checks who
/// sent it: whoever sends this has decided it may be delivered (an HTTP
/// publish, or another node through the bridge). Never relayed from here.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FanOut {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub frame: ByteString,
    /// Not delivered to this socket.
    pub except: Option<SocketId>,
}

/// A client event, checked here before the fan-out: the sender must be
/// subscribed, which only the owning shard knows for sure (the session
/// records a subscription before the shard has accepted it).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ClientEvent {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub frame: ByteString,
    pub sender: SocketId,
}

#[derive(Message)]
#[rtype(result = "ChannelInfo")]
pub(super) struct Info {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
}

#[derive(Message)]
#[rtype(result = "Vec<ChannelStats>")]
pub(super) struct List {
    pub app_id: Arc<str>,
    pub prefix: Arc<str>,
}

#[derive(Message)]
#[rtype(result = "Vec<Arc<str>>")]
pub(super) struct Users {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SignIn {
    pub app_id: Arc<str>,
    pub user_id: Arc<str>,
    pub session: SessionHandle,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SignOut {
    pub app_id: Arc<str>,
    pub user_id: Arc<str>,
    pub socket: SocketId,
}

/// Close every socket signed in as this user; replies with how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub(super) struct Terminate {
    pub app_id: Arc<str>,
    pub user_id: Arc<str>,
    pub how: UserClose,
}

/// Changes another node made to its state, in the order it made them.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Remote {
    pub node: NodeId,
    pub changes: Vec<Transition>,
}

/// Everything another node holds on this shard's channels (its snapshot's
/// part for this shard; empty forgets the node).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ReplaceNode {
    pub node: NodeId,
    pub channels: Vec<RemoteChannelState>,
}

/// Answered once everything sent to the shard before has been handled.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Barrier;

/// A signed-in socket joins its app's `#watchlist` (owned by this shard).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WatchJoin(pub super::Watch);

/// Who watches whom, per app: each watched user's watching sockets, and
/// each watching socket's list (to forget it when it goes).
#[derive(Default)]
struct Watchers {
    of_user: HashMap<(Arc<str>, Arc<str>), HashMap<SocketId, SessionHandle>>,
    of_socket: HashMap<(Arc<str>, SocketId), Vec<Arc<str>>>,
}

impl Watchers {
    fn watch(&mut self, app_id: &Arc<str>, session: &SessionHandle, users: &[Arc<str>]) {
        for user in users {
            self.of_user
                .entry((app_id.clone(), user.clone()))
                .or_default()
                .insert(session.id(), session.clone());
        }
        self.of_socket
            .insert((app_id.clone(), session.id()), users.to_vec());
    }

    fn forget(&mut self, app_id: &Arc<str>, socket: SocketId) {
        let Some(users) = self.of_socket.remove(&(app_id.clone(), socket)) else {
            return;
        };
        for user in users {
            let key = (app_id.clone(), user);
            if let Some(sockets) = self.of_user.get_mut(&key) {
                sockets.remove(&socket);
                if sockets.is_empty() {
                    self.of_user.remove(&key);
                }
            }
        }
    }

    /// `user_id` came online or went offline: tell whoever watches it.
    fn tell(&self, app_id: &Arc<str>, user_id: &Arc<str>, name: &str) {
        let Some(sockets) = self.of_user.get(&(app_id.clone(), user_id.clone())) else {
            return;
        };
        let frame = Frame::text(&frames::watchlist_event(name, &[user_id]));
        let mut fanout = Fanout::new();
        for session in sockets.values() {
            session.deliver_in(&frame, &mut fanout);
        }
    }
}

impl Handler<WatchJoin> for Shard {
    type Result = ();

    fn handle(&mut self, WatchJoin(watch): WatchJoin, _: &mut Context<Self>) {
        let channel: Arc<str> = Arc::from(WATCHLIST_CHANNEL);
        let member = Member {
            user_id: watch.user_id.clone(),
            user_info: None,
        };
        // Members without a presence channel's limit or roster frame: the
        // user is online while any of its sockets is a member, on any node.
        let joined = self.table.subscribe(
            NewSubscriber {
                app_id: &watch.app_id,
                channel: &channel,
                kind: ChannelKind::Public,
                socket: watch.session.id(),
                handle: &watch.session,
                member: Some(&member),
                max_members: usize::MAX,
                count_updates: false,
            },
            Instant::now(),
            &mut self.out,
        );
        debug_assert!(joined.is_ok(), "no member limit");
        self.record();
        // Others watching this user hear it is online (if it is news).
        self.announce(None, Origin::Local);
        self.out.clear();
        // Those already online, before any change the joiner hears of.
        let online: Vec<&str> = watch
            .watchlist
            .iter()
            .filter(|u| self.table.present(&watch.app_id, WATCHLIST_CHANNEL, u))
            .map(|u| &**u)
            .collect();
        if !online.is_empty() {
            watch
                .session
                .deliver(&Frame::text(&frames::watchlist_event("online", &online)));
        }
        self.watchers
            .watch(&watch.app_id, &watch.session, &watch.watchlist);
    }
}

// ---- handlers ----

impl Handler<Subscribe> for Shard {
    type Result = ();

    fn handle(&mut self, Subscribe(join): Subscribe, _: &mut Context<Self>) {
        let session = &join.session;
        let joined = self.table.subscribe(
            NewSubscriber {
                app_id: &join.app_id,
                channel: &join.channel,
                kind: join.kind,
                socket: session.id(),
                handle: session,
                member: join.member.as_ref(),
                max_members: join.max_members,
                count_updates: join.count_updates,
            },
            Instant::now(),
            &mut self.out,
        );
        let joined = match joined {
            Ok(joined) => joined,
            Err(Refused::PresenceFull { max_members }) => {
                let err = SubscriptionError::LimitReached(format!(
                    "Presence channel is full ({max_members} members)"
                ));
                session.deliver(&Frame::text(&err.frame(&join.channel)));
                session.refuse(join.channel.clone());
                return;
            }
        };
        self.record();
        let succeeded = match &joined.snapshot {
            Some(snapshot) => frames::presence_subscription_succeeded(&join.channel, snapshot),
            None => frames::subscription_succeeded(&join.channel),
        };
        // Publishers find the socket from now on, and only after this frame.
        self.audience.add(&join.app_id, &join.channel, session, || {
            session.deliver(&Frame::text(&succeeded));
        });
        self.announce(Some(session), Origin::Local);
        if let Some(cached) = &joined.cached {
            session.deliver(&Frame::text(cached));
        }
        self.out.clear();
    }
}

impl Handler<Unsubscribe> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        if &*msg.channel == WATCHLIST_CHANNEL {
            self.watchers.forget(&msg.app_id, msg.socket);
        }
        self.audience
            .remove(&msg.app_id, std::slice::from_ref(&msg.channel), msg.socket);
        self.table
            .unsubscribe(&msg.app_id, &msg.channel, msg.socket, &mut self.out);
        self.announce_departures();
    }
}

impl Handler<Leave> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        if msg.channels.iter().any(|c| &**c == WATCHLIST_CHANNEL) {
            self.watchers.forget(&msg.app_id, msg.socket);
        }
        self.audience.remove(&msg.app_id, &msg.channels, msg.socket);
        self.table
            .leave(&msg.app_id, &msg.channels, msg.socket, &mut self.out);
        self.announce_departures();
    }
}

impl Handler<FanOut> for Shard {
    type Result = ();

    fn handle(&mut self, msg: FanOut, _: &mut Context<Self>) {
        let subscribers = self
            .table
            .fan_out(&msg.app_id, &msg.channel, &msg.frame, Instant::now);
        deliver_all(subscribers, &msg.frame, msg.except);
    }
}

impl Handler<ClientEvent> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ClientEvent, _: &mut Context<Self>) {
        let subscribers = self.table.fan_out_from(
            &msg.app_id,
            &msg.channel,
            msg.sender,
            &msg.frame,
            Instant::now,
        );
        let Some(subscribers) = subscribers else {
            // Not (or no longer) subscribed here: neither delivered nor relayed.
            return;
        };
        deliver_all(subscribers, &msg.frame, Some(msg.sender));
        for listener in self.listeners.iter() {
            listener.on_client_event(&msg.app_id, &msg.channel, msg.sender, &msg.frame);
        }
        // Confirmed: other nodes' subscribers get it too. The sender is a
        // socket of this node, so there is nobody to skip over there.
        if let Some(cluster) = self.cluster.get() {
            cluster.relay(Relayed {
                app_id: msg.app_id,
                channel: msg.channel,
                frame: msg.frame,
                except: None,
            });
        }
    }
}

impl Handler<Info> for Shard {
    type Result = MessageResult<Info>;

    fn handle(&mut self, msg: Info, _: &mut Context<Self>) -> Self::Result {
        let cache = self.table.cached(&msg.app_id, &msg.channel, Instant::now());
        let stats = self.table.stats(&msg.app_id, &msg.channel);
        MessageResult(ChannelInfo { stats, cache })
    }
}

impl Handler<List> for Shard {
    type Result = MessageResult<List>;

    fn handle(&mut self, msg: List, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.table.channels(&msg.app_id, &msg.prefix))
    }
}

impl Handler<Users> for Shard {
    type Result = MessageResult<Users>;

    fn handle(&mut self, msg: Users, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.table.user_ids(&msg.app_id, &msg.channel))
    }
}

impl Handler<SignIn> for Shard {
    type Result = ();

    fn handle(&mut self, msg: SignIn, _: &mut Context<Self>) {
        let socket = msg.session.id();
        self.table
            .sign_in(&msg.app_id, &msg.user_id, socket, msg.session);
    }
}

impl Handler<SignOut> for Shard {
    type Result = ();

    fn handle(&mut self, msg: SignOut, _: &mut Context<Self>) {
        self.table.sign_out(&msg.app_id, &msg.user_id, msg.socket);
    }
}

impl Handler<Terminate> for Shard {
    type Result = usize;

    fn handle(&mut self, msg: Terminate, _: &mut Context<Self>) -> usize {
        let sessions = self.table.terminate(&msg.app_id, &msg.user_id);
        let err = match msg.how {
            UserClose::Terminate => {
                PusherError::Unauthorized("Connection terminated by the application".into())
            }
            UserClose::Reconnect => PusherError::ReconnectRequested,
        };
        for session in &sessions {
            session.disconnect(err.clone());
        }
        sessions.len()
    }
}

impl Handler<Barrier> for Shard {
    type Result = ();

    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}

impl Handler<Remote> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Remote, _: &mut Context<Self>) {
        for t in &msg.changes {
            self.table.apply_remote(msg.node, t, &mut self.out);
        }
        self.announce_remote();
    }
}

impl Handler<ReplaceNode> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ReplaceNode, _: &mut Context<Self>) {
        self.table
            .replace_node(msg.node, &msg.channels, &mut self.out);
        self.announce_remote();
    }
}
