//! Switchyard's actors and the Pusher protocol types they exchange.
//!
//! - [`session::Session`]: one actor per WebSocket.
//! - [`registry::Registry`]: channel registry shards (subscriptions, presence, cache, users).
//! - [`hub::Hubs`]: one hub per worker thread for its sessions' heartbeats and shutdown.
//! - [`closing`]: how a WebSocket ends: the closing handshake, then its connection.
//! - [`messages`]: the typed messages between them.
//! - [`protocol`], [`auth`], [`error`]: frames, signatures and error codes, as plain functions and types.

pub mod app;
pub mod auth;
pub mod closing;
pub mod error;
pub mod hub;
pub mod messages;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod socket;
pub mod stats;
