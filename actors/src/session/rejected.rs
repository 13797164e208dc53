//! [`Rejected`]: a connection refused at connect time. Its own actor rather
//! than a [`super::Session`] mode, because it owns nothing a session owns (no
//! slot, no channels, no hub): it only says why and closes.

use crate::closing::{self, Conn, Ending, Ends};
use crate::error::PusherError;
use actix::prelude::*;
use actix_web_actors::ws;

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
