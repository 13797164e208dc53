//! The defaults both crates need, written once: the protocol limits an app
//! gets when nothing is configured (Sockudo's `event_limits`, `presence` and
//! `channel_limits` blocks) and the session timings.
//!
//! The binary's configuration defaults and the actors' own `Default`s
//! (`AppLimits`, the test harness's `SessionSettings`) read these, and a
//! test of the binary checks that each default `--help-env` documents is
//! what the loader resolves when the variable is unset.

/// Seconds of silence before the server pings a client (`activity_timeout`).
pub const ACTIVITY_TIMEOUT_SECS: u64 = 120;
/// Seconds a pinged client has to answer before close 4201.
pub const PONG_TIMEOUT_SECS: u64 = 30;
/// Seconds to `pusher:signin` on apps that require it.
pub const USER_AUTHENTICATION_TIMEOUT_SECS: u64 = 3600;
/// Channels one socket may be subscribed to at once.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 1000;
/// Largest inbound WebSocket message, KiB.
pub const WEBSOCKET_MAX_PAYLOAD_KB: u32 = 64;
/// Frames queued per socket before it is a slow consumer.
pub const WEBSOCKET_MAX_MESSAGES: usize = 1000;
/// Seconds a cache channel keeps its last event.
pub const CACHE_TTL_SECS: u64 = 3600;

pub const MAX_PRESENCE_MEMBERS_PER_CHANNEL: u32 = 100;
pub const MAX_PRESENCE_MEMBER_SIZE_KB: u32 = 2;
pub const MAX_CHANNEL_NAME_LENGTH: u32 = 200;
pub const MAX_EVENT_CHANNELS_AT_ONCE: u32 = 100;
pub const MAX_EVENT_NAME_LENGTH: u32 = 200;
pub const MAX_EVENT_PAYLOAD_KB: u32 = 100;
pub const MAX_EVENT_BATCH_SIZE: u32 = 10;
