//! What other actors tell the session, through its [`SessionHandle`]'s one
//! mailbox ([`ToSession`]): frames to write (the fan-out's end), a full
//! outbox (4100), a subscription the shard refused, a disconnect, and the
//! hub's heartbeat (ping, 4201, sign-in deadline).
//!
//! [`SessionHandle`]: crate::socket::SessionHandle

use super::Session;
use crate::error::PusherError;
use crate::hub::Deadline;
use crate::protocol::frames;
use crate::socket::ToSession;
use crate::stats::ConnectionError;
use actix::prelude::*;
use actix_web_actors::ws;
use log::{debug, warn};
use std::time::Instant;

impl Handler<ToSession> for Session {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Self::Context) {
        match msg {
            ToSession::Overflowed => self.overflowed(ctx),
            ToSession::Heartbeat => self.heartbeat(ctx),
            ToSession::Refused(channel) => self.forget_refused(&channel),
            ToSession::Disconnect(err) => self.fail(ctx, err),
        }
    }
}

impl Session {
    /// The outbound queue is full (disconnect policy): `pusher:error` 4100
    /// and close 4100, once. Frames queued before the overflow are not sent:
    /// the client is told to reconnect (and resync) instead.
    fn overflowed(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.ending.is_open() {
            return;
        }
        self.wire.discard_delivered();
        self.app
            .stats
            .connection_error(ConnectionError::SlowConsumer);
        let outbox = self.outbox();
        warn!(
            event = "slow_consumer", app_id = self.app.id.as_ref(),
            socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
            queued = outbox.pending(), queued_bytes = outbox.pending_bytes(),
            reason = "outbound queue over WEBSOCKET_MAX_MESSAGES / WEBSOCKET_MAX_BYTES";
            "outbound queue full, closing 4100"
        );
        self.fail(ctx, PusherError::OverCapacity);
    }

    /// Run when the hub sees a deadline pass (see [`crate::hub::Vitals::due`]):
    /// close a socket that did not sign in in time on an app that requires
    /// it, close one that ignored a ping (4201), or ping a silent one.
    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.ending.is_open() {
            return;
        }
        let now = Instant::now();
        let timing = *self.settings.hubs.timing();
        while let Some(deadline) = self.vitals.due(now, &timing) {
            match deadline {
                Deadline::SignIn => {
                    if self.on_signin_deadline(ctx) {
                        return;
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
                    self.send(frames::ping());
                    self.vitals.set_ping_sent(Some(now));
                    return;
                }
            }
        }
    }
}
