//! Client events (`client-*`): whether a socket may send one
//! ([`check_client_event`]: the app allows them, the socket is subscribed to
//! a private or presence channel, name and payload within limits) and how
//! often ([`RateWindow`]), then the frame built once and handed to the
//! channel's shard.

use super::subscribe::Subscriptions;
use super::Session;
use crate::app::App;
use crate::command;
use crate::error::PusherError;
use crate::protocol::frames;
use crate::stats::{self, RateLimit};
use actix_web_actors::ws;
use log::warn;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a client event was refused: `pusher:error` 4301, the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClientEventRefused {
    #[error("Client events are not enabled for this app")]
    NotEnabled,
    #[error("Client events need a channel")]
    NoChannel,
    #[error("Client event rejected: not subscribed to the channel")]
    NotSubscribed,
    #[error("Client events are only allowed on private and presence channels")]
    WrongChannelKind,
    #[error("Client event name is too long")]
    NameTooLong,
    #[error("Client event payload is too large")]
    PayloadTooLarge { bytes: usize, limit: usize },
}

impl From<ClientEventRefused> for PusherError {
    fn from(e: ClientEventRefused) -> PusherError {
        PusherError::ClientEventRejected(e.to_string())
    }
}

/// A client event that may be relayed: its channel, the sender's presence
/// user id (added to the frame) and its `data` as sent (`null` if absent).
#[derive(Debug)]
pub(crate) struct Relay<'a> {
    pub(crate) channel: &'a str,
    pub(crate) user_id: Option<&'a str>,
    pub(crate) data: &'a RawValue,
}

/// Whether `event` may be relayed to the other subscribers of its channel;
/// the rate limit is [`RateWindow`]'s.
pub(crate) fn check_client_event<'a>(
    app: &App,
    subscribed: &'a Subscriptions,
    event: &'a command::ClientEvent<'_>,
) -> Result<Relay<'a>, ClientEventRefused> {
    if !app.enable_client_messages {
        return Err(ClientEventRefused::NotEnabled);
    }
    let channel = event
        .channel
        .as_deref()
        .ok_or(ClientEventRefused::NoChannel)?;
    let sub = subscribed
        .get(channel)
        .ok_or(ClientEventRefused::NotSubscribed)?;
    if !sub.kind.allows_client_events() {
        return Err(ClientEventRefused::WrongChannelKind);
    }
    if event.event.len() > app.limits.max_event_name_length {
        return Err(ClientEventRefused::NameTooLong);
    }
    let data = event.data.unwrap_or(RawValue::NULL);
    let limit = app.limits.max_event_payload_bytes;
    if data.get().len() > limit {
        return Err(ClientEventRefused::PayloadTooLarge {
            bytes: data.get().len(),
            limit,
        });
    }
    Ok(Relay {
        channel,
        user_id: sub.user_id.as_deref(),
        data,
    })
}

/// Fixed-window counter for the per-socket client-event limit: at most
/// `max` events per `window`, counted from the first event after the
/// previous window ended. `max` 0 means no limit.
#[derive(Debug)]
pub(crate) struct RateWindow {
    max: u32,
    window: Duration,
    started: Instant,
    count: u32,
}

impl RateWindow {
    pub(crate) fn new(max: u32, window: Duration, now: Instant) -> RateWindow {
        RateWindow {
            max,
            window,
            started: now,
            count: 0,
        }
    }

    /// Count one event at `now`; `false` if it is over the limit (and then
    /// it is not counted).
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if self.max == 0 {
            return true;
        }
        if now.saturating_duration_since(self.started) >= self.window {
            self.started = now;
            self.count = 0;
        }
        if self.count >= self.max {
            return false;
        }
        self.count += 1;
        true
    }
}

impl Session {
    pub(super) fn on_client_event(
        &mut self,
        event: &command::ClientEvent,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let relay = match check_client_event(&self.app, &self.subscriptions, event) {
            Ok(relay) => relay,
            Err(refused) => {
                if let ClientEventRefused::PayloadTooLarge { bytes, limit } = refused {
                    warn!(
                        event = "payload_too_large", app_id = self.app.id.as_ref(),
                        socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
                        bytes = bytes, limit = limit,
                        reason = "client event data over max_event_payload_in_kb";
                        "client event too large"
                    );
                }
                return self.fail(ctx, refused.into());
            }
        };
        if !self.client_events.allow(Instant::now()) {
            self.app.stats.rate_limited(RateLimit::ClientEvent);
            warn!(
                event = "rate_limited", limiter = "client_event", app_id = self.app.id.as_ref(),
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
        let frame = frames::client_event(&event.event, relay.channel, relay.data, relay.user_id);
        let channel: Arc<str> = Arc::from(relay.channel);
        self.publish_client_event(channel, frame);
    }
}
