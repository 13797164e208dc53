//! The App a session serves: credentials, limits and feature flags.
//!
//! Plain data. Loading apps (config file, environment, later a database) is the
//! binary's job; the actors only read an `Arc<App>` handed to them at connect time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::defaults as d;
use crate::origin::OriginPattern;
use crate::secret::Secret;
use crate::stats::Stats;

/// Limits that apply to one app. Every field is already resolved: per-app value,
/// else the global `event_limits` / `presence` / `channel_limits` fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLimits {
    /// 0 = unlimited.
    pub max_connections: usize,
    /// Client events per socket per `client_event_window_secs`; 0 = no limit.
    pub max_client_events_per_second: u32,
    /// Window of the client-event limiter (Sockudo `decay_seconds`).
    pub client_event_window_secs: u64,
    /// Close the socket (4301) instead of just dropping the event when the
    /// client-event limit is hit.
    pub terminate_on_limit: bool,
    /// HTTP publishes per second for the app; 0 = no limit.
    pub max_backend_events_per_second: u32,
    /// HTTP reads per second for the app; 0 = no limit.
    pub max_read_requests_per_second: u32,
    pub max_presence_members_per_channel: usize,
    pub max_presence_member_size_bytes: usize,
    pub max_channel_name_length: usize,
    pub max_event_channels_at_once: usize,
    pub max_event_name_length: usize,
    pub max_event_payload_bytes: usize,
    pub max_event_batch_size: usize,
}

impl Default for AppLimits {
    /// The global defaults of Sockudo's `event_limits`, `presence` and
    /// `channel_limits` blocks.
    fn default() -> Self {
        AppLimits {
            max_connections: 0,
            max_client_events_per_second: 0,
            client_event_window_secs: 1,
            terminate_on_limit: false,
            max_backend_events_per_second: 0,
            max_read_requests_per_second: 0,
            max_presence_members_per_channel: d::MAX_PRESENCE_MEMBERS_PER_CHANNEL as usize,
            max_presence_member_size_bytes: d::MAX_PRESENCE_MEMBER_SIZE_KB as usize * 1024,
            max_channel_name_length: d::MAX_CHANNEL_NAME_LENGTH as usize,
            max_event_channels_at_once: d::MAX_EVENT_CHANNELS_AT_ONCE as usize,
            max_event_name_length: d::MAX_EVENT_NAME_LENGTH as usize,
            max_event_payload_bytes: d::MAX_EVENT_PAYLOAD_KB as usize * 1024,
            max_event_batch_size: d::MAX_EVENT_BATCH_SIZE as usize,
        }
    }
}

/// One tenant of the server, identified by `id` (HTTP API) and `key` (WebSocket).
#[derive(Debug)]
pub struct App {
    /// Shared by every message and log line that names the app.
    pub id: Arc<str>,
    pub key: String,
    /// Signs channel auth, sign-in and API requests; redacted in `Debug`.
    pub secret: Secret,
    pub enabled: bool,
    pub enable_client_messages: bool,
    /// When true a socket must `pusher:signin` within the user authentication
    /// timeout or be closed with 4009.
    pub enable_user_authentication: bool,
    pub enable_watchlist_events: bool,
    /// Send `pusher_internal:subscription_count` to subscribers of
    /// non-presence channels when their count changes.
    pub enable_subscription_count: bool,
    /// Empty = any origin.
    pub allowed_origins: Vec<OriginPattern>,
    pub limits: AppLimits,
    /// Live sockets of this app on this node, capped at `limits.max_connections`.
    /// Shared by every version of the app (a database app read again).
    connections: Arc<Capacity>,
    /// Live sockets of this app on the other nodes of a cluster, as their
    /// last heartbeats said; counted against `limits.max_connections`.
    remote_connections: Arc<AtomicUsize>,
    /// Counters for the metrics exporter, shared like `connections`.
    pub stats: Arc<Stats>,
}

/// An app's runtime state without the app: what a newer version of the
/// same app takes over (see [`App::adopt`]). Weak, so holding it keeps nothing alive.
#[derive(Debug, Clone)]
pub struct AppRuntime {
    connections: std::sync::Weak<Capacity>,
    remote_connections: std::sync::Weak<AtomicUsize>,
    stats: std::sync::Weak<Stats>,
}

impl AppRuntime {
    /// Whether any version of the app holding this state is still alive.
    pub fn is_alive(&self) -> bool {
        self.connections.strong_count() > 0
    }
}

impl App {
    /// A new app with default limits; callers fill in the rest.
    pub fn new(id: impl Into<Arc<str>>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        App {
            id: id.into(),
            key: key.into(),
            secret: Secret::new(secret),
            enabled: true,
            enable_client_messages: false,
            enable_user_authentication: false,
            enable_watchlist_events: false,
            enable_subscription_count: false,
            allowed_origins: Vec::new(),
            limits: AppLimits::default(),
            connections: Arc::default(),
            remote_connections: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// A weak handle on this app's runtime state (connection counts, stats).
    pub fn runtime(&self) -> AppRuntime {
        AppRuntime {
            connections: Arc::downgrade(&self.connections),
            remote_connections: Arc::downgrade(&self.remote_connections),
            stats: Arc::downgrade(&self.stats),
        }
    }

    /// Take over the runtime state of an earlier version of this app, so
    /// its sockets count against this version's `max_connections` and its
    /// counters go on. False (nothing changed) when that state is gone.
    pub fn adopt(&mut self, earlier: &AppRuntime) -> bool {
        match (
            earlier.connections.upgrade(),
            earlier.remote_connections.upgrade(),
            earlier.stats.upgrade(),
        ) {
            (Some(c), Some(r), Some(s)) => {
                self.connections = c;
                self.remote_connections = r;
                self.stats = s;
                true
            }
            _ => false,
        }
    }

    /// Reserve a connection slot; `None` when the app is at `max_connections`
    /// over the whole cluster (as far as this node knows: other nodes'
    /// counts are as of their last heartbeat).
    pub fn try_connect(&self) -> Option<ConnectionSlot> {
        let max = self.limits.max_connections;
        if max == 0 {
            return self.connections.try_acquire(0);
        }
        let elsewhere = self.remote_connections.load(Ordering::Relaxed);
        if elsewhere >= max {
            return None;
        }
        self.connections.try_acquire(max - elsewhere)
    }

    /// The app's live sockets on the other nodes (the bridge, on heartbeats).
    pub fn set_remote_connections(&self, n: usize) {
        self.remote_connections.store(n, Ordering::Relaxed);
    }

    pub fn connection_count(&self) -> usize {
        self.connections.count()
    }
}

/// A count of live connections checked against a ceiling: an app's, or the
/// whole server's (`SOCKUDO_MAX_CONNECTIONS`). Acquiring is one CAS loop.
#[derive(Debug, Default)]
pub struct Capacity {
    current: AtomicUsize,
}

impl Capacity {
    pub fn count(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Take one unit unless `max` (0 = unlimited) are taken; released when
    /// the returned slot is dropped.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        let mut current = self.current.load(Ordering::Relaxed);
        loop {
            if max != 0 && current >= max {
                return None;
            }
            match self.current.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ConnectionSlot(self.clone())),
                Err(seen) => current = seen,
            }
        }
    }
}

/// Holds one unit of a [`Capacity`] for as long as a session lives.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Capacity>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_respect_the_quota_and_are_released_on_drop() {
        let mut app = App::new("id", "key", "secret");
        app.limits.max_connections = 2;
        let app = Arc::new(app);
        let a = app.try_connect().expect("first slot");
        let _b = app.try_connect().expect("second slot");
        assert!(app.try_connect().is_none(), "third is over quota");
        drop(a);
        assert_eq!(app.connection_count(), 1);
        assert!(app.try_connect().is_some());
    }

    #[test]
    fn a_new_version_adopts_the_counts_of_the_old_one() {
        let mut old = App::new("id", "key", "secret");
        old.limits.max_connections = 2;
        let old = Arc::new(old);
        let _a = old.try_connect().unwrap();
        let mut new = App::new("id", "key", "rotated");
        new.limits.max_connections = 2;
        assert!(new.adopt(&old.runtime()));
        let new = Arc::new(new);
        let _b = new.try_connect().unwrap();
        assert!(
            new.try_connect().is_none(),
            "one socket of the old version counts"
        );
        assert!(old.try_connect().is_none());
        drop(old);
        let runtime = new.runtime();
        assert!(runtime.is_alive());
        drop((new, _a, _b));
        assert!(!runtime.is_alive());
    }
}
