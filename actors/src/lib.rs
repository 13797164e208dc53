//! Switchyard's actors and the Pusher protocol types they exchange.
//!
//! - [`session::Session`]: one actor per WebSocket.
//! - [`registry::Registry`]: the only door to channel state (subscriptions,
//!   presence, cache, signed-in users); reports what changes as transitions.
//! - [`hub::Hubs`]: one hub per worker thread for its sessions' heartbeats and shutdown.
//! - [`closing`]: how a WebSocket ends: the closing handshake, then its connection.
//! - [`socket`]: socket ids, the bounded outbound queue, and [`socket::SessionHandle`], how the registry and hubs reach a session.
//! - [`wire`]: a WebSocket's way out: frames encoded once, queued per socket, written by its connection.
//! - [`connection`]: a WebSocket's socket after the handshake, owned here: reads for the session, writes its wire.
//! - [`presence`]: presence members and rosters.
//! - [`frame_limit`]: the payload limit, checked on each inbound frame's header.
//! - [`command`]: client frames parsed into typed commands (the only door for inbound frames).
//! - [`protocol`], [`auth`], [`error`]: frames, signatures and error codes, as plain functions and types.

pub mod app;
pub mod auth;
pub mod closing;
pub mod command;
pub mod connection;
pub mod defaults;
pub mod error;
pub mod frame_limit;
pub mod hub;
pub mod origin;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod secret;
pub mod session;
pub mod socket;
pub mod stats;
pub mod wire;

#[cfg(test)]
pub(crate) mod testing;
