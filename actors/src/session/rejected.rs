//! [`Rejected`]: a connection refused at connect time. Its own actor rather
//! than a [`super::Session`] mode, because it owns nothing a session owns (no
//! slot, no channels, no hub): it only says why and closes.

use crate::app::App;
use crate::closing::{self, Conn, Ending, Ends};
use crate::error::PusherError;
use crate::socket::Outbox;
use crate::wire::{self, SocketStream, Wire};
use actix::prelude::*;
use actix_http::error::PayloadError;
use actix_web_actors::ws;
use bytes::Bytes;
use futures_core::Stream;
use std::sync::{Arc, OnceLock};

/// A socket refused at connect time (unknown app, bad protocol, origin, quota):
/// it receives the `pusher:error` and is closed with the same code, like any
/// close the server starts (the client's answer is awaited, briefly).
pub struct Rejected {
    error: PusherError,
    wire: Arc<Wire>,
    ending: Ending,
}

impl Rejected {
    pub fn new(error: PusherError, conn: Conn) -> Rejected {
        // Nothing is delivered to a refused socket (it may have no app): its
        // outbox bounds nothing and counts for no app.
        static NO_APP: OnceLock<Arc<App>> = OnceLock::new();
        let app = NO_APP
            .get_or_init(|| Arc::new(App::new("", "", "")))
            .clone();
        let wire = Wire::new(Outbox::new(None, None, true, app));
        Rejected {
            error,
            ending: Ending::new(conn, wire.clone()),
            wire,
        }
    }

    /// What the WebSocket's connection writes (see [`super::Session::into_stream`]).
    pub fn into_stream<S>(
        self,
        inbound: S,
        max_frame: usize,
    ) -> SocketStream<impl Stream<Item = Result<Bytes, actix_web::Error>>>
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
    {
        let wire = self.wire.clone();
        wire::run(self, inbound, max_frame, wire, None)
    }
}

impl Actor for Rejected {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.wire.send_own(&self.error.frame());
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
