//! What every HTTP handler and WebSocket upgrade shares: apps, the registry
//! and the settings resolved from configuration at start-up.

use crate::apps::AppStore;
use actix_web::HttpRequest;
use std::sync::Arc;
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
}

impl ServerState {
    /// The client's address for logs and limits: the TCP peer, or `unix` for
    /// Unix-socket connections.
    pub fn peer(&self, req: &HttpRequest) -> String {
        match req.peer_addr() {
            Some(addr) => addr.ip().to_string(),
            None => "unix".to_string(),
        }
    }
}
