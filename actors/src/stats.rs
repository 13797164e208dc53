//! Counters the actors bump where things happen, read by the metrics exporter.
//!
//! Plain relaxed atomics: an increment costs one uncontended-ish atomic add,
//! no label lookup and no lock on the hot path. The binary turns them into
//! Prometheus series at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection was refused or closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionError {
    AppNotFound,
    AppDisabled,
    OverQuota,
    Protocol,
    OriginNotAllowed,
    Unauthorized,
    PongTimeout,
    SlowConsumer,
    MessageTooBig,
}

impl ConnectionError {
    pub const ALL: [ConnectionError; 9] = [
        ConnectionError::AppNotFound,
        ConnectionError::AppDisabled,
        ConnectionError::OverQuota,
        ConnectionError::Protocol,
        ConnectionError::OriginNotAllowed,
        ConnectionError::Unauthorized,
        ConnectionError::PongTimeout,
        ConnectionError::SlowConsumer,
        ConnectionError::MessageTooBig,
    ];

    /// The `error_type` label.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionError::AppNotFound => "app_not_found",
            ConnectionError::AppDisabled => "app_disabled",
            ConnectionError::OverQuota => "over_quota",
            ConnectionError::Protocol => "protocol",
            ConnectionError::OriginNotAllowed => "origin_not_allowed",
            ConnectionError::Unauthorized => "unauthorized",
            ConnectionError::PongTimeout => "pong_timeout",
            ConnectionError::SlowConsumer => "slow_consumer",
            ConnectionError::MessageTooBig => "message_too_big",
        }
    }
}

/// Which signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Channel,
    Signin,
    Api,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 3] = [AuthFailure::Channel, AuthFailure::Signin, AuthFailure::Api];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Channel => "channel",
            AuthFailure::Signin => "signin",
            AuthFailure::Api => "api",
        }
    }
}

/// Which limiter refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    ClientEvent,
    BackendEvent,
    ReadRequest,
    Api,
    WsConnect,
}

impl RateLimit {
    pub const ALL: [RateLimit; 5] = [
        RateLimit::ClientEvent,
        RateLimit::BackendEvent,
        RateLimit::ReadRequest,
        RateLimit::Api,
        RateLimit::WsConnect,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RateLimit::ClientEvent => "client_event",
            RateLimit::BackendEvent => "backend_event",
            RateLimit::ReadRequest => "read_request",
            RateLimit::Api => "api",
            RateLimit::WsConnect => "ws_connect",
        }
    }
}

/// One app's counters (or the server's, for refusals before an app is known).
#[derive(Debug, Default)]
pub struct Stats {
    pub new_connections: AtomicU64,
    pub disconnections: AtomicU64,
    pub ws_messages_received: AtomicU64,
    pub ws_bytes_received: AtomicU64,
    pub ws_messages_sent: AtomicU64,
    pub ws_bytes_sent: AtomicU64,
    /// Frames not delivered because the socket's outbound queue was full
    /// (`WEBSOCKET_DISCONNECT_ON_BUFFER_FULL=false`).
    pub ws_messages_dropped: AtomicU64,
    pub subscriptions: AtomicU64,
    pub unsubscriptions: AtomicU64,
    pub client_events: AtomicU64,
    pub api_events_published: AtomicU64,
    connection_errors: [AtomicU64; ConnectionError::ALL.len()],
    auth_failures: [AtomicU64; AuthFailure::ALL.len()],
    rate_limited: [AtomicU64; RateLimit::ALL.len()],
}

/// Add `n` to a counter.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[inline]
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Stats {
    pub fn connection_error(&self, kind: ConnectionError) {
        add(&self.connection_errors[kind as usize], 1);
    }

    pub fn auth_failure(&self, kind: AuthFailure) {
        add(&self.auth_failures[kind as usize], 1);
    }

    pub fn rate_limited(&self, kind: RateLimit) {
        add(&self.rate_limited[kind as usize], 1);
    }

    pub fn connection_errors(&self, kind: ConnectionError) -> u64 {
        get(&self.connection_errors[kind as usize])
    }

    pub fn auth_failures(&self, kind: AuthFailure) -> u64 {
        get(&self.auth_failures[kind as usize])
    }

    pub fn rate_limits(&self, kind: RateLimit) -> u64 {
        get(&self.rate_limited[kind as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_are_independent() {
        let s = Stats::default();
        s.connection_error(ConnectionError::OriginNotAllowed);
        s.connection_error(ConnectionError::OriginNotAllowed);
        s.auth_failure(AuthFailure::Api);
        s.rate_limited(RateLimit::ClientEvent);
        assert_eq!(s.connection_errors(ConnectionError::OriginNotAllowed), 2);
        assert_eq!(s.connection_errors(ConnectionError::OverQuota), 0);
        assert_eq!(s.auth_failures(AuthFailure::Api), 1);
        assert_eq!(s.auth_failures(AuthFailure::Channel), 0);
        assert_eq!(s.rate_limits(RateLimit::ClientEvent), 1);
        for (i, k) in ConnectionError::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in discriminant order");
        }
        for (i, k) in RateLimit::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        for (i, k) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }
}
