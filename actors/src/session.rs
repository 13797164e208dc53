//! Session actor: one per WebSocket.
//!
//! It owns the socket, parses what the client sends, checks signatures and
//! limits, and talks to the registry shards by message. It never touches
//! channel state directly.

use crate::app::{App, ConnectionSlot};
use crate::auth;
use crate::closing::{self, Conn, Ending, Ends};
use crate::command::{self, Command};
use crate::error::{close_code, PusherError, SubscriptionError};
use crate::frame_limit;
use crate::hub::{Deadline, Hub, Hubs, Timing, Vitals};
use crate::messages::*;
use crate::protocol::{self, frames, truncate, ChannelKind};
use crate::registry::Registry;
use crate::socket::{Outbox, SessionHandle, SocketId};
use crate::stats::{self, AuthFailure, ConnectionError, RateLimit};
use actix::prelude::*;
use actix_web_actors::ws;
use bytestring::ByteString;
use log::{debug, info, warn};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            max_channels: 1000,
            max_message_bytes: 64 * 1024,
            outbox_max_messages: Some(1000),
            outbox_max_bytes: None,
            disconnect_on_buffer_full: true,
            hubs: Hubs::new(Timing {
                activity_timeout: Duration::from_secs(120),
                pong_timeout: Duration::from_secs(30),
                signin_timeout: Duration::from_secs(3600),
            }),
        }
    }
}

/// What the session remembers about one of its subscriptions.
struct Subscription {
    /// Presence channels: the user id the socket joined as.
    user_id: Option<Arc<str>>,
    kind: ChannelKind,
}

/// A fragmented message so far: its bytes and whether it began as text.
/// Once whole it is what a single frame of its kind would have been, so the
/// same rules apply: text must be UTF-8 (else 1007), binary is refused (4300).
struct Partial {
    bytes: Vec<u8>,
    text: bool,
}

/// Fixed-window counter for the per-socket client-event limit.
struct RateWindow {
    started: Instant,
    count: u32,
}

pub struct Session {
    id: SocketId,
    id_text: String,
    app: Arc<App>,
    /// `app.id`, shared with every message to the registry (no per-message copy).
    app_id: Arc<str>,
    /// Releases the app's (and the server's) connection slot when the session ends.
    _slots: Vec<ConnectionSlot>,
    settings: Arc<SessionSettings>,
    registry: Registry,
    outbox: Arc<Outbox>,
    handle: Option<SessionHandle>,
    peer: String,
    opened: Instant,
    subscriptions: HashMap<Arc<str>, Subscription>,
    user_id: Option<Arc<str>>,
    /// Liveness and traffic, read by this worker's hub on its tick.
    vitals: Rc<Vitals>,
    hub: Option<Rc<Hub>>,
    client_events: RateWindow,
    /// A fragmented message being reassembled.
    partial: Option<Partial>,
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
        Session {
            id,
            id_text: id.to_string(),
            outbox: Arc::new(Outbox::new(
                settings.outbox_max_messages,
                settings.outbox_max_bytes,
                settings.disconnect_on_buffer_full,
                app.clone(),
            )),
            app_id: Arc::from(app.id.as_str()),
            app,
            _slots: slots,
            settings,
            registry,
            handle: None,
            peer,
            opened: now,
            subscriptions: HashMap::new(),
            user_id: None,
            vitals: Rc::new(Vitals::new(now)),
            hub: None,
            client_events: RateWindow {
                started: now,
                count: 0,
            },
            partial: None,
            close_reason: None,
            ending: Ending::new(conn),
        }
    }

    pub fn socket_id(&self) -> SocketId {
        self.id
    }

    fn session_handle(&self) -> SessionHandle {
        self.handle.clone().expect("set in started()")
    }

    /// Write a frame to the socket, counting it. Nothing is written once
    /// the closing handshake has begun (RFC 6455 §5.5.1).
    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: ByteString) {
        if !self.ending.is_open() {
            return;
        }
        self.vitals.sent(frame.len());
        ctx.text(frame);
    }

    /// Send `pusher:error`, and close the socket if the error is fatal.
    fn fail(&mut self, ctx: &mut ws::WebsocketContext<Self>, err: PusherError) {
        self.send(ctx, err.frame());
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

    /// Leave every channel and the signed-in user. Idempotent: what was left
    /// is forgotten.
    fn leave_registry(&mut self) {
        self.registry.leave(
            &self.app_id,
            self.id,
            self.subscriptions.drain().map(|(channel, _)| channel),
            self.user_id.take(),
        );
    }

    /// Run when the hub sees a deadline pass (see [`Vitals::due`]): close a
    /// socket that did not sign in in time on an app that requires it, close
    /// one that ignored a ping (4201), or ping a silent one.
    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.ending.is_open() {
            return;
        }
        let now = Instant::now();
        let timing = *self.settings.hubs.timing();
        while let Some(deadline) = self.vitals.due(now, &timing) {
            match deadline {
                Deadline::SignIn => {
                    self.vitals.set_signin_deadline(None);
                    if self.user_id.is_none() {
                        self.app
                            .stats
                            .connection_error(ConnectionError::Unauthorized);
                        warn!(
                            event = "signin_timeout", app_id = self.app.id.as_str(),
                            socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
                            reason = "no pusher:signin within USER_AUTHENTICATION_TIMEOUT";
                            "socket not signed in within the timeout"
                        );
                        return self.fail(
                            ctx,
                            PusherError::Unauthorized(
                                "Connection not authorized within timeout.".into(),
                            ),
                        );
                    }
                    // Signed in: the liveness deadlines may still be due.
                }
                Deadline::Pong => {
                    debug!("socket {} did not answer ping", self.id_text);
                    self.app
                        .stats
                        .connection_error(ConnectionError::PongTimeout);
                    return self.fail(ctx, PusherError::PongTimeout);
                }
                Deadline::Ping => {
                    self.send(ctx, frames::ping());
                    self.vitals.set_ping_sent(Some(now));
                    return;
                }
            }
        }
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match command::parse(text) {
            Ok(Command::Ping) => self.send(ctx, frames::pong()),
            Ok(Command::Pong) => {}
            Ok(Command::Subscribe(sub)) => self.on_subscribe(sub, ctx),
            Ok(Command::Unsubscribe { channel }) => self.on_unsubscribe(&channel),
            Ok(Command::Signin(signin)) => self.on_signin(signin, ctx),
            Ok(Command::ClientEvent(event)) => self.on_client_event(&event, ctx),
            Err(e) => {
                debug!("socket {}: refused frame: {e}", self.id_text);
                self.fail(ctx, PusherError::InvalidMessage(e.to_string()));
            }
        }
    }

    fn on_subscribe(&mut self, sub: command::Subscribe, ctx: &mut ws::WebsocketContext<Self>) {
        let channel = &*sub.channel;
        match self.check_subscription(&sub) {
            Ok((kind, member)) => {
                let channel: Arc<str> = Arc::from(channel);
                stats::add(&self.app.stats.subscriptions, 1);
                self.subscriptions.insert(
                    channel.clone(),
                    Subscription {
                        user_id: member.as_ref().map(|m| m.user_id.clone()),
                        kind,
                    },
                );
                self.registry.subscribe(crate::registry::Join {
                    app_id: self.app_id.clone(),
                    channel,
                    kind,
                    session: self.session_handle(),
                    member,
                    max_members: self.app.limits.max_presence_members_per_channel,
                    count_updates: self.app.enable_subscription_count && !kind.is_presence(),
                });
            }
            Err(err) => {
                if matches!(err, SubscriptionError::Auth(_)) {
                    self.app.stats.auth_failure(AuthFailure::Channel);
                    warn!(
                        event = "channel_auth_failed", app_id = self.app.id.as_str(),
                        socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
                        channel = truncate(channel, 200), reason:% = err;
                        "channel auth failed"
                    );
                } else {
                    debug!("subscription refused socket={}: {err}", self.id_text);
                }
                self.send(ctx, err.frame(channel));
            }
        }
    }

    /// Everything a subscription must pass before the registry sees it.
    fn check_subscription(
        &self,
        sub: &command::Subscribe,
    ) -> Result<(ChannelKind, Option<Member>), SubscriptionError> {
        let channel = &*sub.channel;
        protocol::validate_channel_name(channel, self.app.limits.max_channel_name_length)
            .map_err(|e| SubscriptionError::InvalidChannel(e.to_string()))?;
        let max = self.settings.max_channels;
        if max != 0 && self.subscriptions.len() >= max && !self.subscriptions.contains_key(channel)
        {
            return Err(SubscriptionError::LimitReached(format!(
                "Too many channels on this connection (at most {max})"
            )));
        }
        let kind = ChannelKind::of(channel);
        if kind == ChannelKind::ServerToUser {
            let wanted = &channel[protocol::SERVER_TO_USER_PREFIX.len()..];
            return match &self.user_id {
                Some(id) if &**id == wanted => Ok((kind, None)),
                _ => Err(SubscriptionError::Auth(
                    "Sign in as this user to subscribe to its channel".into(),
                )),
            };
        }
        if !kind.requires_auth() {
            return Ok((kind, None));
        }
        let auth = sub
            .auth
            .as_deref()
            .ok_or_else(|| SubscriptionError::Auth("Missing auth signature".into()))?;
        let channel_data = if kind.is_presence() {
            Some(sub.channel_data.as_deref().ok_or_else(|| {
                SubscriptionError::Auth("Presence channels need channel_data".into())
            })?)
        } else {
            None
        };
        auth::verify_channel_auth(
            &self.app.key,
            self.app.secret.expose(),
            &self.id_text,
            channel,
            channel_data,
            auth,
        )
        .map_err(|e| SubscriptionError::Auth(e.to_string()))?;
        let member = match channel_data {
            Some(data) => Some(command::presence_member(
                data,
                self.app.limits.max_presence_member_size_bytes,
            )?),
            None => None,
        };
        Ok((kind, member))
    }

    fn on_unsubscribe(&mut self, channel: &str) {
        let channel: Arc<str> = Arc::from(channel);
        // Unsubscribing from a channel we are not in is a silent no-op.
        if self.subscriptions.remove(&channel).is_some() {
            stats::add(&self.app.stats.unsubscriptions, 1);
            self.registry
                .unsubscribe(self.app_id.clone(), channel, self.id);
        }
    }

    fn on_signin(&mut self, signin: command::Signin, ctx: &mut ws::WebsocketContext<Self>) {
        if let Err(e) = auth::verify_signin(
            &self.app.key,
            self.app.secret.expose(),
            &self.id_text,
            &signin.user_data,
            &signin.auth,
        ) {
            self.app.stats.auth_failure(AuthFailure::Signin);
            warn!(
                event = "signin_failed", app_id = self.app.id.as_str(),
                socket_id = self.id_text.as_str(), peer = self.peer.as_str(), reason:% = e;
                "signin failed"
            );
            return self.fail(
                ctx,
                PusherError::SigninFailed(format!("Signin failed: {e}")),
            );
        }
        let user_id = match command::signin_user_id(&signin.user_data) {
            Ok(id) => id,
            Err(e) => return self.fail(ctx, e),
        };
        let user_id: Arc<str> = Arc::from(user_id);
        self.registry.sign_in(
            &self.app_id,
            user_id.clone(),
            self.user_id.take(),
            self.session_handle(),
        );
        info!(
            app_id = self.app.id.as_str(), socket_id = self.id_text.as_str(),
            user_id = truncate(&user_id, 128);
            "signed in"
        );
        self.user_id = Some(user_id);
        self.send(ctx, frames::signin_success(&signin.user_data));
    }

    fn on_client_event(
        &mut self,
        frame: &command::ClientEvent,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let reject = |msg: &str| PusherError::ClientEventRejected(msg.to_string());
        if !self.app.enable_client_messages {
            return self.fail(ctx, reject("Client events are not enabled for this app"));
        }
        let Some(channel) = frame.channel.as_deref() else {
            return self.fail(ctx, reject("Client events need a channel"));
        };
        let Some(sub) = self.subscriptions.get(channel) else {
            return self.fail(
                ctx,
                reject("Client event rejected: not subscribed to the channel"),
            );
        };
        let (kind, user_id) = (sub.kind, sub.user_id.clone());
        if !kind.allows_client_events() {
            return self.fail(
                ctx,
                reject("Client events are only allowed on private and presence channels"),
            );
        }
        if frame.event.len() > self.app.limits.max_event_name_length {
            return self.fail(ctx, reject("Client event name is too long"));
        }
        let null = RawValue::NULL;
        let data = frame.data.unwrap_or(null);
        if data.get().len() > self.app.limits.max_event_payload_bytes {
            warn!(
                event = "payload_too_large", app_id = self.app.id.as_str(),
                socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
                bytes = data.get().len(), limit = self.app.limits.max_event_payload_bytes,
                reason = "client event data over max_event_payload_in_kb";
                "client event too large"
            );
            return self.fail(ctx, reject("Client event payload is too large"));
        }
        if !self.allow_client_event() {
            self.app.stats.rate_limited(RateLimit::ClientEvent);
            warn!(
                event = "rate_limited", limiter = "client_event", app_id = self.app.id.as_str(),
                socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
                limit = self.app.limits.max_client_events_per_second,
                reason = "more client events than max_client_events_per_second";
                "client event rate limit hit"
            );
            let err = if self.app.limits.terminate_on_limit {
                PusherError::ClientEventRateLimitTerminate
            } else {
                PusherError::ClientEventRateLimit
            };
            return self.fail(ctx, err);
        }
        stats::add(&self.app.stats.client_events, 1);
        let out = frames::client_event(&frame.event, channel, data, user_id.as_deref());
        let channel: Arc<str> = Arc::from(channel);
        self.registry.client_event(crate::registry::ClientEvent {
            app_id: self.app_id.clone(),
            channel,
            frame: out,
            sender: self.id,
        });
    }

    fn allow_client_event(&mut self) -> bool {
        let max = self.app.limits.max_client_events_per_second;
        if max == 0 {
            return true;
        }
        let window = Duration::from_secs(self.app.limits.client_event_window_secs.max(1));
        let now = Instant::now();
        if now.duration_since(self.client_events.started) >= window {
            self.client_events = RateWindow {
                started: now,
                count: 0,
            };
        }
        if self.client_events.count >= max {
            return false;
        }
        self.client_events.count += 1;
        true
    }

    /// A reassembled message, handled as the single frame it stands for.
    fn on_reassembled(&mut self, message: Partial, ctx: &mut ws::WebsocketContext<Self>) {
        if !message.text {
            return self.refuse_binary(ctx);
        }
        match std::str::from_utf8(&message.bytes) {
            Ok(text) => self.handle_text(text, ctx),
            Err(_) => self.fail_utf8(ctx),
        }
    }

    fn refuse_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.fail(
            ctx,
            PusherError::InvalidMessage("Binary frames are not supported".into()),
        )
    }

    /// RFC 6455 §8.1: a text message that is not UTF-8 fails the connection.
    fn fail_utf8(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        debug!("socket {}: invalid UTF-8 in text message", self.id_text);
        self.close(
            ctx,
            close_code::INVALID_PAYLOAD,
            "Invalid UTF-8 in text frame".into(),
        );
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.handle = Some(SessionHandle {
            id: self.id,
            addr: ctx.address(),
            outbox: self.outbox.clone(),
        });
        info!(
            app_id = self.app.id.as_str(), socket_id = self.id_text.as_str(),
            peer = self.peer.as_str();
            "connection opened"
        );
        stats::add(&self.app.stats.new_connections, 1);
        self.send(
            ctx,
            frames::connection_established(
                &self.id_text,
                self.settings.hubs.timing().activity_timeout.as_secs(),
            ),
        );
        if self.app.enable_user_authentication {
            self.vitals.set_signin_deadline(Some(
                self.opened + self.settings.hubs.timing().signin_timeout,
            ));
        }
        let hub = self.settings.hubs.local();
        hub.join(
            self.id,
            ctx.address(),
            self.vitals.clone(),
            self.app.clone(),
            self.outbox.clone(),
            self.ending.conn(),
        );
        self.hub = Some(hub);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(hub) = self.hub.take() {
            hub.leave(self.id);
        }
        self.vitals.flush_traffic(&self.app);
        stats::add(&self.app.stats.disconnections, 1);
        self.leave_registry();
        info!(
            app_id = self.app.id.as_str(), socket_id = self.id_text.as_str(),
            peer = self.peer.as_str(), duration_ms = self.opened.elapsed().as_millis() as u64,
            reason = self.close_reason.as_deref().unwrap_or("client closed");
            "connection closed"
        );
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.vitals.heard(Instant::now());
        if !self.ending.is_open() {
            return closing::while_closing(self, msg, ctx);
        }
        let msg = match msg {
            Ok(m) => m,
            Err(ws::ProtocolError::Overflow) => return self.reject_oversized(ctx),
            // FrameLimit refused a frame on its header (see frame_limit.rs).
            // The rest of that frame is still on the wire, so the client's
            // answer to the 1009 cannot be parsed: the close ends on
            // CLOSE_REPLY_TIMEOUT. Ending it at once would close the socket
            // with unread data, which the kernel answers with a reset.
            Err(ws::ProtocolError::Io(e)) if frame_limit::is_frame_too_big(&e) => {
                return self.reject_oversized(ctx)
            }
            // RFC 6455 §8.1: invalid UTF-8 fails the connection with 1007.
            Err(ws::ProtocolError::Io(e)) if closing::is_invalid_utf8(&e) => {
                return self.fail_utf8(ctx);
            }
            // The codec reports a frame with reserved bits set as an I/O error
            // of kind InvalidData; errors of the transport reach us as Other.
            // It is a protocol error like the rest: 1002 (RFC 6455 §7.1.7).
            Err(ws::ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                debug!("socket {} protocol error: {e}", self.id_text);
                return self.close(
                    ctx,
                    close_code::PROTOCOL_ERROR,
                    "WebSocket protocol error".into(),
                );
            }
            Err(ws::ProtocolError::Io(e)) => {
                // The peer went away without a close frame: nothing to send.
                if self.close_reason.is_none() {
                    self.close_reason = Some(format!("connection lost: {e}"));
                }
                return self.ending.on_lost(ctx);
            }
            Err(e) => {
                debug!("socket {} protocol error: {e}", self.id_text);
                return self.close(
                    ctx,
                    close_code::PROTOCOL_ERROR,
                    "WebSocket protocol error".into(),
                );
            }
        };
        match msg {
            ws::Message::Text(text) => {
                self.vitals.received_bytes(text.len());
                self.handle_text(&text, ctx)
            }
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Pong(_) => {}
            ws::Message::Binary(_) => self.refuse_binary(ctx),
            ws::Message::Continuation(item) => self.on_continuation(item, ctx),
            ws::Message::Close(reason) => {
                if self.close_reason.is_none() {
                    self.close_reason = Some(match &reason {
                        Some(r) => format!("client closed {}", u16::from(r.code)),
                        None => "client closed".into(),
                    });
                }
                self.ending.on_client_close(ctx, reason);
            }
            ws::Message::Nop => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.ending.on_lost(ctx);
    }
}

impl Ends for Session {
    fn ending(&mut self) -> &mut Ending {
        &mut self.ending
    }
}

impl Session {
    /// A message over `WEBSOCKET_MAX_PAYLOAD_KB`: close 1009 (RFC 6455
    /// "message too big"); other sockets are untouched.
    fn reject_oversized(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.partial = None;
        self.app
            .stats
            .connection_error(ConnectionError::MessageTooBig);
        warn!(
            event = "payload_too_large", app_id = self.app.id.as_str(),
            socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
            limit = self.settings.max_message_bytes,
            reason = "message over WEBSOCKET_MAX_PAYLOAD_KB";
            "oversized WebSocket message, closing 1009"
        );
        self.close(ctx, close_code::MESSAGE_TOO_BIG, "Message too big".into());
    }

    fn on_continuation(
        &mut self,
        item: actix_http::ws::Item,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let limit = self.settings.max_message_bytes;
        let too_big = |len: usize| len > limit;
        let first_is_text = matches!(item, actix_http::ws::Item::FirstText(_));
        let is_last = matches!(item, actix_http::ws::Item::Last(_));
        match item {
            actix_http::ws::Item::FirstText(b) | actix_http::ws::Item::FirstBinary(b) => {
                if too_big(b.len()) {
                    return self.reject_oversized(ctx);
                }
                self.partial = Some(Partial {
                    bytes: b.to_vec(),
                    text: first_is_text,
                });
            }
            actix_http::ws::Item::Continue(b) | actix_http::ws::Item::Last(b) => {
                let Some(partial) = self.partial.as_mut() else {
                    return self.close(
                        ctx,
                        close_code::PROTOCOL_ERROR,
                        "Unexpected continuation frame".into(),
                    );
                };
                partial.bytes.extend_from_slice(&b);
                if too_big(partial.bytes.len()) {
                    return self.reject_oversized(ctx);
                }
                if is_last {
                    let partial = self.partial.take().expect("checked above");
                    self.on_reassembled(partial, ctx);
                }
            }
        }
    }
}

impl Session {
    /// The outbound queue is full (disconnect policy): `pusher:error` 4100
    /// and close 4100, once.
    fn overflowed(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.ending.is_open() {
            return;
        }
        self.app
            .stats
            .connection_error(ConnectionError::SlowConsumer);
        warn!(
            event = "slow_consumer", app_id = self.app.id.as_str(),
            socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
            queued = self.outbox.pending(), queued_bytes = self.outbox.pending_bytes(),
            reason = "outbound queue over WEBSOCKET_MAX_MESSAGES / WEBSOCKET_MAX_BYTES";
            "outbound queue full, closing 4100"
        );
        self.fail(ctx, PusherError::OverCapacity);
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.outbox.release(msg.0.len());
        // Frames queued before the overflow are not sent: the client is told
        // to reconnect (and resync) instead.
        if self.outbox.overflowed() {
            return self.overflowed(ctx);
        }
        self.send(ctx, msg.0);
    }
}

impl Handler<Overflowed> for Session {
    type Result = ();

    fn handle(&mut self, _: Overflowed, ctx: &mut Self::Context) {
        self.overflowed(ctx);
    }
}

impl Handler<Heartbeat> for Session {
    type Result = ();

    fn handle(&mut self, _: Heartbeat, ctx: &mut Self::Context) {
        self.heartbeat(ctx);
    }
}

impl Handler<Disconnect> for Session {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        self.fail(ctx, msg.0);
    }
}

impl Handler<SubscriptionRefused> for Session {
    type Result = ();

    fn handle(&mut self, msg: SubscriptionRefused, _: &mut Self::Context) {
        self.subscriptions.remove(&msg.channel);
    }
}

/// A socket refused at connect time (unknown app, bad protocol, origin, quota):
/// it receives the `pusher:error` and is closed with the same code, like any
/// close the server starts (the client's answer is awaited, briefly).
pub struct Rejected {
    error: PusherError,
    ending: Ending,
}

impl Rejected {
    pub fn new(error: PusherError, conn: Conn) -> Rejected {
        Rejected {
            error,
            ending: Ending::new(conn),
        }
    }
}

impl Actor for Rejected {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.text(self.error.frame());
        let (code, reason) = (self.error.code(), self.error.to_string());
        self.ending.close(ctx, code, reason);
    }
}

impl Ends for Rejected {
    fn ending(&mut self) -> &mut Ending {
        &mut self.ending
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Rejected {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        closing::while_closing(self, msg, ctx);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.ending.on_lost(ctx);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
