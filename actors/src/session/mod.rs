//! Session actor: one per WebSocket.
//!
//! It owns the socket, parses what the client sends, checks signatures and
//! limits, and calls the [`Registry`] (never a shard). It never touches
//! channel state directly.
//!
//! Split by idea; each decision is a free function or a small struct over
//! plain inputs, unit-tested in `decisions_tests.rs` without an actor or a
//! socket, while `session_tests.rs` drives whole sessions:
//!
//! - this file: the actor, its lifecycle (`started` / `stopped`), sending,
//!   failing and closing, and the dispatch of parsed commands;
//! - [`reading`]: WebSocket frames and stream errors, continuation
//!   reassembly, and the close code each fault means;
//! - [`subscribe`]: subscribe / unsubscribe and channel auth;
//! - [`client_event`]: client events and their rate window;
//! - [`signin`]: `pusher:signin` and the sign-in deadline;
//! - [`mailbox`]: what other actors tell the session (frames, overflow,
//!   refusals, disconnects, heartbeats);
//! - [`membership`]: every call the session makes into the registry;
//! - [`rejected`]: the actor for a connection refused at connect time.

mod client_event;
mod mailbox;
mod membership;
mod reading;
mod rejected;
mod signin;
mod subscribe;

pub use rejected::Rejected;

use crate::app::{App, ConnectionSlot};
use crate::closing::{Conn, Ending, Ends};
use crate::command::{self, Command};
use crate::defaults as d;
use crate::error::PusherError;
use crate::hub::{Hub, Hubs, Timing, Vitals};
use crate::protocol::frames;
use crate::registry::Registry;
use crate::socket::{Outbox, SessionHandle, SocketId};
use crate::stats;
use crate::wire::{self, SocketStream, Wire};
use actix::prelude::*;
use actix_http::error::PayloadError;
use actix_web_actors::ws;
use bytes::Bytes;
use bytestring::ByteString;
use client_event::RateWindow;
use futures_core::Stream;
use log::{debug, info};
use reading::Reassembly;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscribe::Subscriptions;

/// Server-wide session settings, resolved from configuration once.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Channels one socket may be subscribed to at once; 0 = no limit.
    pub max_channels: usize,
    /// Largest inbound message (after reassembling fragments).
    pub max_message_bytes: usize,
    /// Outbound queue bound per socket (frames / bytes); `None` = unbounded.
    pub outbox_max_messages: Option<usize>,
    pub outbox_max_bytes: Option<usize>,
    /// Close a socket whose queue is full (4100) rather than drop frames for it.
    pub disconnect_on_buffer_full: bool,
    /// The worker hubs: heartbeats and shutdown (4200) reach sessions through
    /// them. Their [`Timing`] holds the activity, pong and sign-in timeouts.
    pub hubs: Hubs,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            max_channels: d::MAX_CHANNELS_PER_CONNECTION,
            max_message_bytes: d::WEBSOCKET_MAX_PAYLOAD_KB as usize * 1024,
            outbox_max_messages: Some(d::WEBSOCKET_MAX_MESSAGES),
            outbox_max_bytes: None,
            disconnect_on_buffer_full: true,
            hubs: Hubs::new(Timing {
                activity_timeout: Duration::from_secs(d::ACTIVITY_TIMEOUT_SECS),
                pong_timeout: Duration::from_secs(d::PONG_TIMEOUT_SECS),
                signin_timeout: Duration::from_secs(d::USER_AUTHENTICATION_TIMEOUT_SECS),
            }),
        }
    }
}

pub struct Session {
    id: SocketId,
    id_text: String,
    app: Arc<App>,
    /// Releases the app's (and the server's) connection slot when the session ends.
    _slots: Vec<ConnectionSlot>,
    settings: Arc<SessionSettings>,
    registry: Registry,
    /// How shards and the hub reach this session; made in `started()`,
    /// when the session's mailbox exists.
    handle: Option<SessionHandle>,
    /// The socket's outbound queue (and its outbox): every frame it sends.
    wire: Arc<Wire>,
    peer: String,
    opened: Instant,
    subscriptions: Subscriptions,
    user_id: Option<Arc<str>>,
    /// Signed in on an app with watchlist events: a member of its
    /// `#watchlist` (left with the socket's other channels).
    watching: bool,
    /// Liveness and traffic, read by this worker's hub on its tick.
    vitals: Rc<Vitals>,
    hub: Option<Rc<Hub>>,
    client_events: RateWindow,
    /// A fragmented message being reassembled.
    reassembly: Reassembly,
    /// Why the socket closed, for the log; set when the close begins.
    close_reason: Option<String>,
    /// The closing handshake and the connection under the socket.
    ending: Ending,
}

impl Session {
    pub fn new(
        app: Arc<App>,
        slots: Vec<ConnectionSlot>,
        settings: Arc<SessionSettings>,
        registry: Registry,
        peer: String,
        conn: Conn,
    ) -> Session {
        let id = SocketId::next();
        let now = Instant::now();
        let wire = Wire::new(Outbox::new(
            settings.outbox_max_messages,
            settings.outbox_max_bytes,
            settings.disconnect_on_buffer_full,
            app.clone(),
        ));
        Session {
            id,
            id_text: id.to_string(),
            client_events: RateWindow::new(
                app.limits.max_client_events_per_second,
                // A zero window would never reset: at least a second.
                Duration::from_secs(app.limits.client_event_window_secs.max(1)),
                now,
            ),
            reassembly: Reassembly::new(settings.max_message_bytes),
            app,
            _slots: slots,
            settings,
            registry,
            handle: None,
            wire: wire.clone(),
            peer,
            opened: now,
            subscriptions: Subscriptions::new(),
            user_id: None,
            watching: false,
            vitals: Rc::new(Vitals::new(now)),
            hub: None,
            close_reason: None,
            ending: Ending::new(conn, wire),
        }
    }

    /// What the WebSocket's connection writes: runs this session and hands
    /// over what it and the fan-out queue. `max_frame` bounds inbound frames.
    pub fn into_stream<S>(
        self,
        inbound: S,
        max_frame: usize,
    ) -> SocketStream<impl Stream<Item = Result<Bytes, actix_web::Error>>>
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
    {
        let (wire, vitals) = (self.wire.clone(), self.vitals.clone());
        wire::run(self, inbound, max_frame, wire, Some(vitals))
    }

    pub fn socket_id(&self) -> SocketId {
        self.id
    }

    /// [`Self::into_stream`] with the session's address, for the in-process
    /// harness (default codec).
    #[cfg(test)]
    pub(crate) fn into_stream_with_addr<S>(
        self,
        inbound: S,
    ) -> (
        Addr<Session>,
        SocketStream<impl Stream<Item = Result<Bytes, actix_web::Error>>>,
    )
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
    {
        let wire = self.wire.clone();
        let vitals = self.vitals.clone();
        let (addr, out) = ws::WebsocketContext::create_with_addr(self, inbound);
        (addr, SocketStream::new(out, wire, Some(vitals)))
    }

    fn session_handle(&self) -> &SessionHandle {
        self.handle.as_ref().expect("set in started()")
    }

    fn outbox(&self) -> &Outbox {
        self.wire.outbox()
    }

    /// Queue a frame of the session's own (a reply, an error) behind what is
    /// queued already. Nothing is written once the closing handshake has
    /// begun (RFC 6455 §5.5.1).
    fn send(&mut self, frame: ByteString) {
        if !self.ending.is_open() {
            return;
        }
        self.wire.send_own(&frame);
    }

    /// Send `pusher:error`, and close the socket if the error is fatal.
    fn fail(&mut self, ctx: &mut ws::WebsocketContext<Self>, err: PusherError) {
        self.send(err.frame());
        if err.closes() {
            self.close(ctx, err.code(), err.to_string());
        }
    }

    /// Close from the server's side: the close frame now, the connection
    /// once the client answers or [`crate::closing::CLOSE_REPLY_TIMEOUT`]
    /// passes. The socket leaves its channels at once: nothing more is sent
    /// to it, and others need not wait for the handshake to see it gone.
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: String) {
        if !self.ending.is_open() {
            return;
        }
        self.close_reason = Some(format!("{code} {reason}"));
        self.ending.close(ctx, code, reason);
        self.leave_registry();
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match command::parse(text) {
            Ok(Command::Ping) => self.send(frames::pong()),
            Ok(Command::Pong) => {}
            Ok(Command::Subscribe(sub)) => self.on_subscribe(sub),
            Ok(Command::Unsubscribe { channel }) => self.on_unsubscribe(&channel),
            Ok(Command::Signin(signin)) => self.on_signin(signin, ctx),
            Ok(Command::ClientEvent(event)) => self.on_client_event(&event, ctx),
            Err(e) => {
                debug!("socket {}: refused frame: {e}", self.id_text);
                self.fail(ctx, PusherError::InvalidMessage(e.to_string()));
            }
        }
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let handle = SessionHandle::new(self.id, self.wire.clone(), ctx.address());
        self.handle = Some(handle.clone());
        info!(
            app_id = self.app.id.as_ref(), socket_id = self.id_text.as_str(),
            peer = self.peer.as_str();
            "connection opened"
        );
        stats::add(&self.app.stats.new_connections, 1);
        self.send(frames::connection_established(
            &self.id_text,
            self.settings.hubs.timing().activity_timeout.as_secs(),
        ));
        if self.app.enable_user_authentication {
            self.vitals.set_signin_deadline(Some(
                self.opened + self.settings.hubs.timing().signin_timeout,
            ));
        }
        let hub = self.settings.hubs.local();
        hub.join(
            handle,
            self.vitals.clone(),
            self.app.clone(),
            self.ending.conn(),
        );
        self.hub = Some(hub);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(hub) = self.hub.take() {
            hub.leave(self.id);
        }
        self.vitals.flush_traffic(&self.app);
        self.wire.flush_sent();
        stats::add(&self.app.stats.disconnections, 1);
        self.leave_registry();
        info!(
            app_id = self.app.id.as_ref(), socket_id = self.id_text.as_str(),
            peer = self.peer.as_str(), duration_ms = self.opened.elapsed().as_millis() as u64,
            reason = self.close_reason.as_deref().unwrap_or("client closed");
            "connection closed"
        );
    }
}

impl Ends for Session {
    fn ending(&mut self) -> &mut Ending {
        &mut self.ending
    }
}

#[cfg(test)]
mod decisions_tests;

#[cfg(test)]
#[path = "../session_tests.rs"]
mod tests;
