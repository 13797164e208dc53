//! The seam between this node's registry and the other nodes of a cluster.
//!
//! The registry knows nothing of Redis: it hands what other nodes must also
//! deliver to a [`Cluster`] (the binary's Redis bridge implements it), and
//! the bridge hands what other nodes sent to
//! [`super::Registry::fan_out_remote`]. The two are attached after start-up
//! ([`super::Registry::attach_cluster`]) because each needs the other.

use crate::socket::SocketId;
use bytestring::ByteString;
use std::sync::{Arc, OnceLock};

/// An event this node accepted that subscribers on other nodes must also
/// get: an HTTP publish (the intent, before any local check of occupancy) or
/// a client event the owning shard has confirmed.
#[derive(Debug, Clone)]
pub struct Relayed {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    /// The serialised Pusher frame, exactly as local subscribers get it.
    pub frame: ByteString,
    /// Not delivered to this socket (the API's `socket_id`); socket ids are
    /// unique across nodes, so it means the same socket everywhere.
    pub except: Option<SocketId>,
}

/// Carries [`Relayed`] events to the other nodes.
pub trait Cluster: Send + Sync + 'static {
    /// Called on the publishing thread (an HTTP worker or a shard) for each
    /// event: must never block or wait. A cluster that cannot take it now
    /// drops it and counts the drop; local delivery does not depend on it.
    fn relay(&self, event: Relayed);

    /// Close the user's sockets on the other nodes too. Must not block.
    fn close_user(&self, app_id: &Arc<str>, user_id: &str, how: super::UserClose);
}

/// The attached cluster, shared by the registry handle and its shards: set
/// once, read with one atomic load per publish (nothing else with the local
/// adapter).
pub(crate) type ClusterCell = Arc<OnceLock<Arc<dyn Cluster>>>;
