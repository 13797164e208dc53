//! Every call the session makes into the registry, each in one small method:
//! joining and leaving a channel, leaving everything, signing a user in, and
//! publishing a client event. Kept together so a change to the registry's
//! API is an edit here, not in the decisions that lead to these calls.

use super::Session;
use crate::messages::*;
use crate::protocol::ChannelKind;
use bytestring::ByteString;
use std::collections::HashMap;
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
        self.registry
            .channel_shard(&self.app.id, &channel)
            .do_send(Subscribe {
                app_id: self.app_id.clone(),
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
            .channel_shard(&self.app.id, &channel)
            .do_send(Unsubscribe {
                app_id: self.app_id.clone(),
                channel,
                socket: self.id,
            });
    }

    /// Leave every channel and the signed-in user (one message per shard
    /// touched, not one per channel). Idempotent: what was left is forgotten.
    pub(super) fn leave_registry(&mut self) {
        let mut by_shard: HashMap<usize, Vec<Arc<str>>> = HashMap::new();
        for (channel, _) in self.subscriptions.drain() {
            by_shard
                .entry(self.registry.channel_shard_index(&self.app.id, &channel))
                .or_default()
                .push(channel);
        }
        for (index, channels) in by_shard {
            self.registry.shards()[index].do_send(SocketGone {
                app_id: self.app_id.clone(),
                socket: self.id,
                channels,
            });
        }
        if let Some(user_id) = self.user_id.take() {
            self.registry
                .user_shard(&self.app.id, &user_id)
                .do_send(UserGone {
                    app_id: self.app_id.clone(),
                    user_id,
                    socket: self.id,
                });
        }
    }

    /// The socket signs in as `user_id`, having been signed in as
    /// `previous`: the previous user's shard forgets it if the user changed.
    pub(super) fn sign_in_registry(&mut self, previous: Option<Arc<str>>, user_id: &Arc<str>) {
        if let Some(previous) = previous {
            if previous != *user_id {
                self.registry
                    .user_shard(&self.app.id, &previous)
                    .do_send(UserGone {
                        app_id: self.app_id.clone(),
                        user_id: previous,
                        socket: self.id,
                    });
            }
        }
        self.registry
            .user_shard(&self.app.id, user_id)
            .do_send(UserSignedIn {
                app_id: self.app_id.clone(),
                user_id: user_id.clone(),
                session: self.session_handle().clone(),
            });
    }

    /// Relay a client event to the channel's other subscribers. The shard
    /// drops it unless it has confirmed this socket's subscription (the
    /// session records subscriptions before the shard accepts them).
    pub(super) fn publish_client_event(&mut self, channel: Arc<str>, frame: ByteString) {
        self.registry
            .channel_shard(&self.app.id, &channel)
            .do_send(Broadcast {
                app_id: self.app_id.clone(),
                channel,
                frame,
                except: Some(self.id),
                require_subscriber: Some(self.id),
            });
    }
}
