//! Every error a WebSocket client can see, mapped to its protocol code in one place.

use crate::protocol::frames;
use bytestring::ByteString;

/// WebSocket close codes of RFC 6455 §7.4.1 the server sends itself (the
/// Pusher codes, 4000–4399, come from [`PusherError::code`]).
pub mod close_code {
    /// A frame the protocol does not allow (reserved bits, a stray continuation).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message over `WEBSOCKET_MAX_PAYLOAD_KB`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// A connection-level or message-level error, sent as `pusher:error`.
/// Codes 4000–4299 also close the socket with the same code; 4300+ leave it open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PusherError {
    #[error("Application does not exist")]
    AppNotFound,
    #[error("Application disabled")]
    AppDisabled,
    #[error("Application is over connection quota")]
    OverQuota,
    #[error("Path not found")]
    PathNotFound,
    #[error("Unsupported protocol version: {0}")]
    UnsupportedProtocol(String),
    #[error("No protocol version supplied")]
    NoProtocol,
    #[error("Origin not allowed")]
    OriginNotAllowed,
    /// Sign-in timeout, terminated by the app: the socket is closed.
    #[error("{0}")]
    Unauthorized(String),
    /// A refused `pusher:signin`: reported with 4009, the socket stays open
    /// (the client may retry with a fresh signature).
    #[error("{0}")]
    SigninFailed(String),
    /// Server over capacity or this socket's outbound queue is full.
    #[error("Over capacity")]
    OverCapacity,
    /// The server is shutting down: reconnect (to another node) right away.
    #[error("Server shutting down, reconnect immediately")]
    ReconnectImmediately,
    /// The application asked this user's sockets to reconnect
    /// (`force_reconnect`): pusher-js reconnects at once and signs in again.
    #[error("Reconnect requested by the application")]
    ReconnectRequested,
    #[error("Pong reply not received")]
    PongTimeout,
    /// Malformed frame, unknown event, bad payload: the socket stays open.
    #[error("{0}")]
    InvalidMessage(String),
    /// A client event that was refused (not enabled, wrong channel, too big).
    #[error("{0}")]
    ClientEventRejected(String),
    #[error("Client event rejected due to rate limit")]
    ClientEventRateLimit,
    #[error("Connection closed due to client event rate limit")]
    ClientEventRateLimitTerminate,
}

impl PusherError {
    pub fn code(&self) -> u16 {
        match self {
            PusherError::AppNotFound => 4001,
            PusherError::AppDisabled => 4003,
            PusherError::OverQuota => 4004,
            PusherError::PathNotFound => 4005,
            PusherError::UnsupportedProtocol(_) => 4007,
            PusherError::NoProtocol => 4008,
            PusherError::OriginNotAllowed
            | PusherError::Unauthorized(_)
            | PusherError::SigninFailed(_) => 4009,
            PusherError::OverCapacity => 4100,
            PusherError::ReconnectImmediately | PusherError::ReconnectRequested => 4200,
            PusherError::PongTimeout => 4201,
            PusherError::InvalidMessage(_) => 4300,
            PusherError::ClientEventRejected(_)
            | PusherError::ClientEventRateLimit
            | PusherError::ClientEventRateLimitTerminate => 4301,
        }
    }

    /// Whether the socket is closed (with [`code`](Self::code)) after the error frame.
    pub fn closes(&self) -> bool {
        match self {
            PusherError::SigninFailed(_) => false,
            PusherError::ClientEventRateLimitTerminate => true,
            other => other.code() < 4300,
        }
    }

    /// The metrics label of a connection refused or closed with this error.
    pub fn connection_error(&self) -> Option<crate::stats::ConnectionError> {
        use crate::stats::ConnectionError as C;
        Some(match self {
            PusherError::AppNotFound => C::AppNotFound,
            PusherError::AppDisabled => C::AppDisabled,
            PusherError::OverQuota | PusherError::OverCapacity => C::OverQuota,
            PusherError::UnsupportedProtocol(_) | PusherError::NoProtocol => C::Protocol,
            PusherError::OriginNotAllowed => C::OriginNotAllowed,
            PusherError::Unauthorized(_) => C::Unauthorized,
            PusherError::PongTimeout => C::PongTimeout,
            _ => return None,
        })
    }

    /// The `pusher:error` frame for this error.
    pub fn frame(&self) -> ByteString {
        frames::error(Some(self.code()), &self.to_string())
    }
}

/// Why a subscription failed; sent as `pusher:subscription_error` on the channel.
/// The socket always stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{0}")]
    InvalidChannel(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    LimitReached(String),
}

impl SubscriptionError {
    /// `type` and `status` of the error frame, as pusher-js reports them.
    fn kind_and_status(&self) -> (&'static str, u16) {
        match self {
            SubscriptionError::InvalidChannel(_) => ("InvalidChannel", 400),
            SubscriptionError::Auth(_) => ("AuthError", 401),
            SubscriptionError::LimitReached(_) => ("LimitReached", 403),
        }
    }

    pub fn frame(&self, channel: &str) -> ByteString {
        let (kind, status) = self.kind_and_status();
        frames::subscription_error(channel, kind, &self.to_string(), status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_close_and_message_errors_do_not() {
        assert_eq!(PusherError::AppNotFound.code(), 4001);
        assert!(PusherError::AppNotFound.closes());
        assert_eq!(PusherError::PongTimeout.code(), 4201);
        assert!(PusherError::PongTimeout.closes());
        assert!(!PusherError::InvalidMessage("x".into()).closes());
        assert!(!PusherError::ClientEventRateLimit.closes());
        assert!(PusherError::ClientEventRateLimitTerminate.closes());
        let signin = PusherError::SigninFailed("Invalid signature".into());
        assert_eq!(signin.code(), 4009);
        assert!(!signin.closes(), "a refused sign-in leaves the socket open");
        assert!(PusherError::Unauthorized("timeout".into()).closes());
        let f = PusherError::OriginNotAllowed.frame();
        assert_eq!(
            &*f,
            r#"{"event":"pusher:error","data":{"code":4009,"message":"Origin not allowed"}}"#
        );
    }

    /// Every variant's code, whether it closes, and its message. The match
    /// has no wildcard arm: a new variant does not compile until it is here.
    #[test]
    fn every_pusher_error_has_its_code_and_close_behaviour() {
        use PusherError::*;
        let table = [
            (AppNotFound, 4001, true, "Application does not exist"),
            (AppDisabled, 4003, true, "Application disabled"),
            (
                OverQuota,
                4004,
                true,
                "Application is over connection quota",
            ),
            (PathNotFound, 4005, true, "Path not found"),
            (
                UnsupportedProtocol("4".into()),
                4007,
                true,
                "Unsupported protocol version: 4",
            ),
            (NoProtocol, 4008, true, "No protocol version supplied"),
            (OriginNotAllowed, 4009, true, "Origin not allowed"),
            (Unauthorized("t".into()), 4009, true, "t"),
            (SigninFailed("s".into()), 4009, false, "s"),
            (OverCapacity, 4100, true, "Over capacity"),
            (
                ReconnectImmediately,
                4200,
                true,
                "Server shutting down, reconnect immediately",
            ),
            (
                ReconnectRequested,
                4200,
                true,
                "Reconnect requested by the application",
            ),
            (PongTimeout, 4201, true, "Pong reply not received"),
            (InvalidMessage("m".into()), 4300, false, "m"),
            (ClientEventRejected("r".into()), 4301, false, "r"),
            (
                ClientEventRateLimit,
                4301,
                false,
                "Client event rejected due to rate limit",
            ),
            (
                ClientEventRateLimitTerminate,
                4301,
                true,
                "Connection closed due to client event rate limit",
            ),
        ];
        for (e, code, closes, message) in &table {
            match e {
                AppNotFound
                | AppDisabled
                | OverQuota
                | PathNotFound
                | UnsupportedProtocol(_)
                | NoProtocol
                | OriginNotAllowed
                | Unauthorized(_)
                | SigninFailed(_)
                | OverCapacity
                | ReconnectImmediately
                | ReconnectRequested
                | PongTimeout
                | InvalidMessage(_)
                | ClientEventRejected(_)
                | ClientEventRateLimit
                | ClientEventRateLimitTerminate => {}
            }
            assert_eq!(e.code(), *code, "{e:?}");
            assert_eq!(e.closes(), *closes, "{e:?}");
            assert_eq!(e.to_string(), *message, "{e:?}");
            let frame: serde_json::Value = serde_json::from_str(&e.frame()).unwrap();
            assert_eq!(
                frame,
                serde_json::json!({"event": "pusher:error", "data": {"code": code, "message": message}}),
                "{e:?}"
            );
        }
        assert_eq!(table.len(), 17);
    }

    #[test]
    fn subscription_errors_are_channel_scoped_frames() {
        for (e, kind, status) in [
            (
                SubscriptionError::InvalidChannel("bad".into()),
                "InvalidChannel",
                400,
            ),
            (SubscriptionError::Auth("bad".into()), "AuthError", 401),
            (
                SubscriptionError::LimitReached("bad".into()),
                "LimitReached",
                403,
            ),
        ] {
            assert_eq!(
                &*e.frame("presence-r"),
                format!(
                    r#"{{"event":"pusher:subscription_error","channel":"presence-r","data":{{"type":"{kind}","error":"bad","status":{status}}}}}"#
                )
            );
        }
    }
}
