//! Switchyard's actors and the Pusher protocol types they exchange.
//!
//! - [`session::Session`]: one actor per WebSocket.
//! - [`registry::Registry`]: the channel registry, the only door to channel state (subscriptions, presence, cache, users) and what changes it.
//! - [`hub::Hubs`]: one hub per worker thread for its sessions' heartbeats and shutdown.
//! - [`closing`]: how a WebSocket ends: the closing handshake, then its connection.
//! - [`messages`]: the typed messages between them.
//! - [`frame_limit`]: the payload limit, checked on each inbound frame's header.
//! - [`command`]: client frames parsed into typed commands (the only door for inbound frames).
//! - [`protocol`], [`auth`], [`error`]: frames, signatures and error codes, as plain functions and types.

pub mod app;
pub mod auth;
pub mod closing;
pub mod command;
pub mod defaults;
pub mod error;
pub mod frame_limit;
pub mod hub;
pub mod messages;
pub mod origin;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod secret;
pub mod session;
pub mod socket;
pub mod stats;

#[cfg(test)]
pub(crate) mod testing;
