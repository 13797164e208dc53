//! Every call the session makes into the registry, each in one small method:
//! joining and leaving a channel, leaving everything, signing a user in, and
//! publishing a client event. Kept together so a change to the registry's
//! API is an edit here, not in the decisions that lead to these calls.

use super::Session;
use crate::presence::Member;
use crate::protocol::{ChannelKind, WATCHLIST_CHANNEL};
use crate::registry::{ClientEvent, Join, Watch};
use bytestring::ByteString;
use std::sync::Arc;

impl Session {
    /// Subscribe to `channel` (already checked and recorded); the shard
    /// answers by delivering `subscription_succeeded` (or a refusal).
    pub(super) fn join_channel(
        &mut self,
        channel: Arc<str>,
        kind: ChannelKind,
        member: Option<Member>,
    ) {
        self.registry.subscribe(Join {
            app_id: self.app.id.clone(),
            channel,
            kind,
            session: self.session_handle().clone(),
            member,
            max_members: self.app.limits.max_presence_members_per_channel,
            count_updates: self.app.enable_subscription_count && !kind.is_presence(),
        });
    }

    /// Unsubscribe from `channel` (already forgotten by the session).
    pub(super) fn leave_channel(&mut self, channel: Arc<str>) {
        self.registry
            .unsubscribe(self.app.id.clone(), channel, self.id);
    }

    /// Leave every channel and the signed-in user (the registry sends one
    /// message per shard touched). Idempotent: what was left is forgotten.
    pub(super) fn leave_registry(&mut self) {
        let watchlist = std::mem::take(&mut self.watching).then(|| Arc::from(WATCHLIST_CHANNEL));
        self.registry.leave(
            &self.app.id,
            self.id,
            self.subscriptions
                .drain()
                .map(|(channel, _)| channel)
                .chain(watchlist),
            self.user_id.take(),
        );
    }

    /// The socket signs in as `user_id`, having been signed in as
    /// `previous`: the registry forgets the previous user if it changed.
    pub(super) fn sign_in_registry(&mut self, previous: Option<Arc<str>>, user_id: &Arc<str>) {
        self.registry.sign_in(
            &self.app.id,
            user_id.clone(),
            previous,
            self.session_handle().clone(),
        );
    }

    /// Apps with watchlist events: the user is online while this socket is,
    /// and the socket hears about `watchlist`. Signing in again first
    /// leaves what the earlier sign-in joined.
    pub(super) fn watch_registry(&mut self, user_id: &Arc<str>, watchlist: Vec<Arc<str>>) {
        if std::mem::take(&mut self.watching) {
            self.registry.unwatch(&self.app.id, self.id);
        }
        if !self.app.enable_watchlist_events {
            return;
        }
        self.registry.watch(Watch {
            app_id: self.app.id.clone(),
            user_id: user_id.clone(),
            session: self.session_handle().clone(),
            watchlist,
        });
        self.watching = true;
    }

    /// Relay a client event to the channel's other subscribers. The owning
    /// shard drops it unless it has confirmed this socket's subscription (the
    /// session records subscriptions before the shard accepts them).
    pub(super) fn publish_client_event(&mut self, channel: Arc<str>, frame: ByteString) {
        self.registry.client_event(ClientEvent {
            app_id: self.app.id.clone(),
            channel,
            frame,
            sender: self.id,
        });
    }
}
