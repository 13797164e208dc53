//! The typed messages sessions, registry shards and the HTTP API exchange.

use crate::protocol::ChannelKind;
use crate::socket::{SessionHandle, SocketId};
use actix::Message;
use bytestring::ByteString;
use serde_json::value::RawValue;
use std::sync::Arc;

// ---- to a session ----
//
// Only through a [`SessionHandle`], which sends `socket::ToSession`.

// ---- to a registry shard ----

/// A presence member as the subscribing socket declared it in `channel_data`.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: Arc<str>,
    /// Raw `user_info` JSON, relayed untouched.
    pub user_info: Option<Arc<RawValue>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub kind: ChannelKind,
    pub session: SessionHandle,
    pub member: Option<Member>,
    pub max_members: usize,
    /// Tell subscribers of non-presence channels their count on change.
    pub count_updates: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub socket: SocketId,
}

/// A socket is gone: remove it from these channels (all owned by the shard
/// the message is sent to).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SocketGone {
    pub app_id: Arc<str>,
    pub socket: SocketId,
    pub channels: Vec<Arc<str>>,
}

/// Fan a serialised frame out to a channel's subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub frame: ByteString,
    /// Not delivered to this socket (`socket_id` of the API, or the sender of
    /// a client event).
    pub except: Option<SocketId>,
    /// Client events: dropped unless this socket is subscribed.
    pub require_subscriber: Option<SocketId>,
}

/// What the HTTP API can learn about one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub name: Arc<str>,
    pub subscription_count: usize,
    /// Distinct users, presence channels only.
    pub user_count: Option<usize>,
}

#[derive(Message)]
#[rtype(result = "ChannelInfoReply")]
pub struct ChannelInfo {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
}

#[derive(Debug, Clone, Default)]
pub struct ChannelInfoReply {
    pub stats: Option<ChannelStats>,
    /// Cached last event (frame) and seconds left, for cache channels.
    pub cache: Option<(ByteString, u64)>,
}

/// Occupied channels of an app in one shard, optionally filtered by prefix.
#[derive(Message)]
#[rtype(result = "Vec<ChannelStats>")]
pub struct ListChannels {
    pub app_id: Arc<str>,
    pub prefix: Option<String>,
}

/// Distinct user ids on a presence channel.
#[derive(Message)]
#[rtype(result = "Vec<Arc<str>>")]
pub struct PresenceUsers {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
}

/// A socket signed in as a user (kept by the shard owning that user).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UserSignedIn {
    pub app_id: Arc<str>,
    pub user_id: Arc<str>,
    pub session: SessionHandle,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct UserGone {
    pub app_id: Arc<str>,
    pub user_id: Arc<str>,
    pub socket: SocketId,
}

/// Close every socket signed in as this user; replies with how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct TerminateUser {
    pub app_id: Arc<str>,
    pub user_id: Arc<str>,
}
