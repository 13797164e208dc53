//! What changed on a channel, as the table reports it after each operation.
//!
//! The shard turns transitions into the frames local subscribers see
//! (`member_added`, `member_removed`, `subscription_count`, `cache_miss`)
//! and hands every
//! batch to the [`TransitionListener`]s given to [`super::Registry::start`]
//! (later: the bridge between nodes and the webhook sender). Deriving all of
//! these from one list is what keeps them agreeing with each other.

use serde_json::value::RawValue;
use std::sync::Arc;

/// One change of one channel of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    pub change: Change,
}

/// What happened. Within one operation the order is: `Occupied`, then the
/// member change, then `CountChanged`, then `Vacated` or `CacheMiss`.
#[derive(Debug, Clone)]
pub enum Change {
    /// The channel gained its first subscriber (any kind of channel).
    Occupied,
    /// The channel's last subscriber left; the channel no longer exists
    /// (its cached event, if any, stays until it expires).
    Vacated,
    /// Presence channels: a user's first socket joined. Another socket of a
    /// user already present adds nothing.
    MemberAdded {
        user_id: Arc<str>,
        /// Raw `user_info` JSON as the first socket declared it.
        user_info: Option<Arc<RawValue>>,
    },
    /// Presence channels: a user's last socket left.
    MemberRemoved { user_id: Arc<str> },
    /// The number of subscribed sockets changed, on any kind of channel,
    /// including to 0 just before `Vacated`. A socket subscribing again to a
    /// channel it is in changes nothing. Whether subscribers are told is the
    /// shard's business (non-presence channels of apps that enable it).
    CountChanged { count: usize },
    /// A socket subscribed (or subscribed again) to a cache channel that has
    /// no unexpired cached event.
    CacheMiss,
}

impl PartialEq for Change {
    fn eq(&self, other: &Change) -> bool {
        use Change::*;
        match (self, other) {
            (Occupied, Occupied) | (Vacated, Vacated) | (CacheMiss, CacheMiss) => true,
            (
                MemberAdded {
                    user_id: a,
                    user_info: ai,
                },
                MemberAdded {
                    user_id: b,
                    user_info: bi,
                },
            ) => a == b && ai.as_ref().map(|v| v.get()) == bi.as_ref().map(|v| v.get()),
            (MemberRemoved { user_id: a }, MemberRemoved { user_id: b }) => a == b,
            (CountChanged { count: a }, CountChanged { count: b }) => a == b,
            _ => false,
        }
    }
}

/// Told of every batch of transitions a shard applied, on the shard's thread,
/// in the order they happened on that shard, before any frame they cause is
/// delivered. Must not block: the shard waits.
/// With no listener a batch costs nothing but the shard's reused buffer.
pub trait TransitionListener: Send + Sync + 'static {
    fn on_transitions(&self, batch: &[Transition]);

    /// A client event the owning shard accepted (the sender is subscribed)
    /// and delivered: not a change of state, but something that happened on
    /// the channel (the `client_event` webhook). `frame` is the event as
    /// subscribers received it. Called on the shard's thread; must not block.
    fn on_client_event(
        &self,
        _app_id: &Arc<str>,
        _channel: &Arc<str>,
        _sender: crate::socket::SocketId,
        _frame: &bytestring::ByteString,
    ) {
    }

    /// Whether this listener wants [`Self::on_cluster_transitions`]; asked
    /// once, when the shards start.
    fn wants_cluster_view(&self) -> bool {
        false
    }

    /// The same changes seen from the whole cluster: `Occupied` / `Vacated`
    /// when the channel's subscriptions on all nodes together leave or
    /// reach zero, `MemberAdded` / `MemberRemoved` when the user joins or
    /// leaves the channel on every node, `CountChanged` with the
    /// cluster-wide count, `CacheMiss` as this node saw it. From this node's
    /// own changes and from the other nodes' as they arrive, so every node
    /// sees every cluster change (the webhook sender picks one to tell).
    /// On one node, the same list as [`Self::on_transitions`].
    fn on_cluster_transitions(&self, _batch: &[Transition], _origin: Origin) {}
}

/// Where a batch of cluster transitions came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This node's own sockets.
    Local,
    /// Another node's changes, as they arrived.
    Remote,
}
