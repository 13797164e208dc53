//! What every HTTP handler and WebSocket upgrade shares: apps, the registry
//! and the settings resolved from configuration at start-up.

use crate::apps::AppStore;
use crate::cluster::BridgeStats;
use crate::http::limits::{client_ip, AppLimiters};
use actix_web::HttpRequest;
use std::sync::Arc;
use switchyard_actors::app::Capacity;
use switchyard_actors::registry::Registry;
use switchyard_actors::session::SessionSettings;
use switchyard_actors::stats::Stats;

#[derive(Clone)]
pub struct ServerState {
    pub apps: Arc<AppStore>,
    pub registry: Registry,
    pub session: Arc<SessionSettings>,
    /// Largest HTTP API request body, bytes (`HTTP_API_REQUEST_LIMIT_IN_MB`).
    pub http_body_limit: usize,
    /// Counters for refusals that happen before an app is known.
    pub stats: Arc<Stats>,
    /// Per-app publish and read budgets.
    pub app_limiters: Arc<AppLimiters>,
    /// Trusted proxy hops for the HTTP API and for WebSocket upgrades.
    pub api_trust_hops: u32,
    pub ws_trust_hops: u32,
    /// Live sockets of the whole server, capped at `max_connections` (0 = no cap).
    pub connections: Arc<Capacity>,
    pub max_connections: usize,
    /// `GET /usage` is served (`HTTP_API_USAGE_ENABLED`).
    pub usage_enabled: bool,
    /// `path_prefix` (`""` for none): the API's signatures are checked
    /// against the path with it and, failing that, without it.
    pub path_prefix: Arc<str>,
    /// The Redis bridge's state, when `ADAPTER_DRIVER=redis`.
    pub cluster: Option<Arc<BridgeStats>>,
}

impl ServerState {
    /// The client's address for logs: the TCP peer, or the forwarded
    /// address behind `trust_hops` trusted proxies; `unix` for a Unix-socket
    /// peer without one.
    pub fn client_addr(&self, req: &HttpRequest, trust_hops: u32) -> String {
        match client_ip(req.headers(), req.peer_addr(), trust_hops) {
            Some(ip) => ip.to_string(),
            None => "unix".to_string(),
        }
    }
}
