//! Subscribe and unsubscribe: what a socket may subscribe to (name, its
//! channel limit, `#server-to-user-` ownership, the channel signature and the
//! presence member), decided by [`check_subscription`] over plain inputs, and
//! the session's record of its subscriptions.

use super::Session;
use crate::app::App;
use crate::auth;
use crate::command;
use crate::error::SubscriptionError;
use crate::presence::Member;
use crate::protocol::{self, truncate, ChannelKind};
use crate::stats::{self, AuthFailure};
use log::{debug, warn};
use std::collections::HashMap;
use std::sync::Arc;

/// What the session remembers about one of its subscriptions.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// Presence channels: the user id the socket joined as.
    pub(crate) user_id: Option<Arc<str>>,
    pub(crate) kind: ChannelKind,
}

/// A session's subscriptions by channel name. Recorded when the session
/// sends the subscription to its shard, before the shard confirms it.
pub(crate) type Subscriptions = HashMap<Arc<str>, Subscription>;

/// Everything a subscription must pass before the registry sees it: the
/// channel's kind and, for presence, the member the socket joins as.
///
/// `socket_id` is the text the channel signature covers; `signed_in_user`
/// owns `#server-to-user-<id>`; `max_channels` (0 = no limit) counts
/// `subscribed`, where subscribing again to a held channel is not a new one.
pub(crate) fn check_subscription(
    app: &App,
    socket_id: &str,
    signed_in_user: Option<&str>,
    subscribed: &Subscriptions,
    max_channels: usize,
    sub: &command::Subscribe,
) -> Result<(ChannelKind, Option<Member>), SubscriptionError> {
    let channel = &*sub.channel;
    protocol::validate_channel_name(channel, app.limits.max_channel_name_length)
        .map_err(|e| SubscriptionError::InvalidChannel(e.to_string()))?;
    if max_channels != 0 && subscribed.len() >= max_channels && !subscribed.contains_key(channel) {
        return Err(SubscriptionError::LimitReached(format!(
            "Too many channels on this connection (at most {max_channels})"
        )));
    }
    let kind = ChannelKind::of(channel);
    if kind == ChannelKind::ServerToUser {
        let wanted = &channel[protocol::SERVER_TO_USER_PREFIX.len()..];
        return match signed_in_user {
            Some(id) if id == wanted => Ok((kind, None)),
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
    let channel_data =
        if kind.is_presence() {
            Some(sub.channel_data.as_deref().ok_or_else(|| {
                SubscriptionError::Auth("Presence channels need channel_data".into())
            })?)
        } else {
            None
        };
    auth::verify_channel_auth(
        &app.key,
        app.secret.signing_key(),
        socket_id,
        channel,
        channel_data,
        auth,
    )
    .map_err(|e| SubscriptionError::Auth(e.to_string()))?;
    let member = match channel_data {
        Some(data) => Some(command::presence_member(
            data,
            app.limits.max_presence_member_size_bytes,
        )?),
        None => None,
    };
    Ok((kind, member))
}

impl Session {
    pub(super) fn on_subscribe(&mut self, sub: command::Subscribe) {
        let checked = check_subscription(
            &self.app,
            &self.id_text,
            self.user_id.as_deref(),
            &self.subscriptions,
            self.settings.max_channels,
            &sub,
        );
        let channel = &*sub.channel;
        match checked {
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
                self.join_channel(channel, kind, member);
            }
            Err(err) => {
                if matches!(err, SubscriptionError::Auth(_)) {
                    self.app.stats.auth_failure(AuthFailure::Channel);
                    warn!(
                        event = "channel_auth_failed", app_id = self.app.id.as_ref(),
                        socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
                        channel = truncate(channel, 200), reason:% = err;
                        "channel auth failed"
                    );
                } else {
                    debug!("subscription refused socket={}: {err}", self.id_text);
                }
                self.send(err.frame(channel));
            }
        }
    }

    pub(super) fn on_unsubscribe(&mut self, channel: &str) {
        let channel: Arc<str> = Arc::from(channel);
        // Unsubscribing from a channel we are not in is a silent no-op.
        if self.subscriptions.remove(&channel).is_some() {
            stats::add(&self.app.stats.unsubscriptions, 1);
            self.leave_channel(channel);
        }
    }

    /// The shard refused a subscription recorded optimistically (presence
    /// channel full): the socket is not in that channel after all.
    pub(super) fn forget_refused(&mut self, channel: &str) {
        self.subscriptions.remove(channel);
    }
}
