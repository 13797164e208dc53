//! Reading the WebSocket: what each frame or stream error means for the
//! session, and fragmented messages reassembled under the size limit.
//!
//! The decisions are pure — [`fault`] (a stream error → [`Fault`] → close
//! code and reason) and [`Reassembly`] (continuation frames → a whole
//! message, or the fault that ends the socket) — so they are tested without
//! a socket; the [`StreamHandler`] only acts on them (logs, counters, the
//! close).

use super::Session;
use crate::closing;
use crate::error::{close_code, PusherError};
use crate::frame_limit;
use crate::stats::ConnectionError;
use actix::prelude::*;
use actix_http::ws::Item;
use actix_web_actors::ws;
use log::{debug, warn};
use std::time::Instant;

/// Why reading the socket ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A message over `WEBSOCKET_MAX_PAYLOAD_KB` (fragments counted together).
    TooBig,
    /// A text message that is not UTF-8 (RFC 6455 §8.1).
    InvalidUtf8,
    /// A frame the protocol does not allow (reserved bits, bad opcode, …).
    Protocol,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// The peer went away without a close frame.
    Lost,
}

impl Fault {
    /// The close the server sends for it (RFC 6455 §7.4.1), or `None` when
    /// nobody is left to read one.
    pub(crate) fn close(self) -> Option<(u16, &'static str)> {
        match self {
            Fault::TooBig => Some((close_code::MESSAGE_TOO_BIG, "Message too big")),
            Fault::InvalidUtf8 => {
                Some((close_code::INVALID_PAYLOAD, "Invalid UTF-8 in text frame"))
            }
            Fault::Protocol => Some((close_code::PROTOCOL_ERROR, "WebSocket protocol error")),
            Fault::UnexpectedContinuation => {
                Some((close_code::PROTOCOL_ERROR, "Unexpected continuation frame"))
            }
            Fault::Lost => None,
        }
    }
}

/// What a stream error from the WebSocket codec means.
pub(crate) fn fault(err: &ws::ProtocolError) -> Fault {
    match err {
        ws::ProtocolError::Overflow => Fault::TooBig,
        // FrameLimit refused a frame on its header (see frame_limit.rs).
        ws::ProtocolError::Io(e) if frame_limit::is_frame_too_big(e) => Fault::TooBig,
        ws::ProtocolError::Io(e) if closing::is_invalid_utf8(e) => Fault::InvalidUtf8,
        // The codec reports a frame with reserved bits set as an I/O error
        // of kind InvalidData; errors of the transport reach us as Other.
        ws::ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => Fault::Protocol,
        ws::ProtocolError::Io(_) => Fault::Lost,
        _ => Fault::Protocol,
    }
}

/// A whole message, as a single frame of its kind would have been.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whole {
    Text(String),
    /// Refused with 4300 (the protocol is text), the socket stays open.
    Binary,
}

/// A fragmented message being put back together. Once whole it is what a
/// single frame of its kind would have been, so the same rules apply: text
/// must be UTF-8 (else 1007), binary is refused (4300); and the fragments
/// together may not exceed the message limit (1009).
#[derive(Debug)]
pub(crate) struct Reassembly {
    limit: usize,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    bytes: Vec<u8>,
    text: bool,
}

impl Reassembly {
    pub(crate) fn new(limit: usize) -> Reassembly {
        Reassembly {
            limit,
            partial: None,
        }
    }

    /// Add one continuation frame: `Some` once the message is whole. A fault
    /// discards what was gathered.
    pub(crate) fn push(&mut self, item: Item) -> Result<Option<Whole>, Fault> {
        let first_text = matches!(item, Item::FirstText(_));
        let (bytes, last) = match item {
            Item::FirstText(b) | Item::FirstBinary(b) => {
                if b.len() > self.limit {
                    self.partial = None;
                    return Err(Fault::TooBig);
                }
                self.partial = Some(Partial {
                    bytes: b.to_vec(),
                    text: first_text,
                });
                return Ok(None);
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let Some(partial) = self.partial.as_mut() else {
            return Err(Fault::UnexpectedContinuation);
        };
        if partial.bytes.len() + bytes.len() > self.limit {
            self.partial = None;
            return Err(Fault::TooBig);
        }
        partial.bytes.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let Partial { bytes, text } = self.partial.take().expect("checked above");
        if !text {
            return Ok(Some(Whole::Binary));
        }
        String::from_utf8(bytes)
            .map(|text| Some(Whole::Text(text)))
            .map_err(|_| Fault::InvalidUtf8)
    }

    /// Forget a message in progress (the socket is closing).
    pub(crate) fn clear(&mut self) {
        self.partial = None;
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
            Err(e) => {
                let fault = fault(&e);
                if fault == Fault::Lost && self.close_reason.is_none() {
                    self.close_reason = Some(format!("connection lost: {e}"));
                }
                if fault == Fault::Protocol {
                    debug!("socket {} protocol error: {e}", self.id_text);
                }
                return self.on_fault(fault, ctx);
            }
        };
        match msg {
            ws::Message::Text(text) => {
                self.vitals.received_bytes(text.len());
                self.handle_text(&text, ctx)
            }
            ws::Message::Ping(payload) => {
                if self.ending.is_open() {
                    self.wire.pong(&payload);
                }
            }
            ws::Message::Pong(_) => {}
            ws::Message::Binary(_) => self.refuse_binary(ctx),
            ws::Message::Continuation(item) => match self.reassembly.push(item) {
                Ok(None) => {}
                Ok(Some(Whole::Text(text))) => self.handle_text(&text, ctx),
                Ok(Some(Whole::Binary)) => self.refuse_binary(ctx),
                Err(fault) => self.on_fault(fault, ctx),
            },
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

impl Session {
    /// Act on a [`Fault`]: count and log it, then close with its code (or,
    /// for a lost peer, just end).
    fn on_fault(&mut self, fault: Fault, ctx: &mut ws::WebsocketContext<Self>) {
        match fault {
            Fault::TooBig => {
                // Other sockets are untouched. After a header-refused frame
                // (FrameLimit) the rest of that frame is still on the wire, so
                // the client's answer to the 1009 cannot be parsed: the close
                // ends on CLOSE_REPLY_TIMEOUT. Ending it at once would close
                // the socket with unread data, which the kernel answers with a
                // reset.
                self.reassembly.clear();
                self.app
                    .stats
                    .connection_error(ConnectionError::MessageTooBig);
                warn!(
                    event = "payload_too_large", app_id = self.app.id.as_ref(),
                    socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
                    limit = self.settings.max_message_bytes,
                    reason = "message over WEBSOCKET_MAX_PAYLOAD_KB";
                    "oversized WebSocket message, closing 1009"
                );
            }
            Fault::InvalidUtf8 => {
                debug!("socket {}: invalid UTF-8 in text message", self.id_text);
            }
            Fault::Protocol | Fault::UnexpectedContinuation => {}
            // Nothing to send: the peer is gone.
            Fault::Lost => return self.ending.on_lost(ctx),
        }
        if let Some((code, reason)) = fault.close() {
            self.close(ctx, code, reason.into());
        }
    }

    fn refuse_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.fail(
            ctx,
            PusherError::InvalidMessage("Binary frames are not supported".into()),
        )
    }
}
