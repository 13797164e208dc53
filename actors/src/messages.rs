//! The typed messages a session receives, and the presence [`Member`] it
//! hands the registry. The registry's own messages are private to it
//! (`crate::registry`).

use actix::Message;
use bytestring::ByteString;
use serde_json::value::RawValue;
use std::sync::Arc;

// ---- to a session ----

/// A frame to write to the socket, shared with every other recipient.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub ByteString);

/// From whoever found the socket's outbound queue full (disconnect policy),
/// sent once when the outbox flips to overflowed. The queue may be empty (one
/// frame larger than `WEBSOCKET_MAX_BYTES`), so no later [`Deliver`] can be
/// relied on to wake the session: this message closes it with 4100.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Overflowed;

/// From the worker's hub: a liveness or sign-in deadline has passed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat;

/// Close the socket with this error (4009 terminate, 4200 shutdown, …).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Disconnect(pub crate::error::PusherError);

/// The shard refused a subscription the session had optimistically recorded
/// (presence channel full); the error frame has already been delivered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscriptionRefused {
    pub channel: Arc<str>,
}

// ---- to the registry ----

/// A presence member as the subscribing socket declared it in `channel_data`.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: Arc<str>,
    /// Raw `user_info` JSON, relayed untouched.
    pub user_info: Option<Arc<RawValue>>,
}
