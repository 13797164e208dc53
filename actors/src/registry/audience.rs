//! [`Audience`]: who is subscribed to a shard's channels, readable from any
//! thread, so that a publish is delivered by the thread that publishes.
//!
//! A publish used to be a message to the channel's shard, awaited: a wakeup
//! of the shard's thread, its reply and the wakeup back, for every event.
//! For the most common shape — one event to one user's private channel —
//! those hops cost more than the delivery itself. Now the HTTP worker (or
//! the bridge, for other nodes' events) reads the channel's subscribers
//! here and queues the encoded frame on each socket's wire itself. Cache
//! channels still go through their shard, which keeps their last event.
//!
//! Only the owning shard writes, mirroring its table. It adds a socket while
//! holding the write lock and queueing that socket's
//! `subscription_succeeded`: a publish (which delivers under the read lock)
//! reaches the socket only after that frame, and a publish that starts after
//! the client saw the frame finds the socket.

use crate::socket::{SessionHandle, SocketId};
use crate::wire::{Fanout, Frame};
use bytestring::ByteString;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

type Subscribers = HashMap<SocketId, SessionHandle>;
/// App id → channel → subscribers.
type Apps = HashMap<Arc<str>, HashMap<Arc<str>, Subscribers>>;

/// The subscribed sockets of one shard's channels, by app and channel.
#[derive(Debug, Default)]
pub(super) struct Audience(RwLock<Apps>);

impl Audience {
    fn read(&self) -> RwLockReadGuard<'_, Apps> {
        // Every write leaves the maps consistent: a panic elsewhere cannot
        // leave them half-changed.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Apps> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the channel has a subscriber on this node.
    #[cfg(test)]
    pub(super) fn contains(&self, app_id: &str, channel: &str) -> bool {
        self.read()
            .get(app_id)
            .is_some_and(|c| c.contains_key(channel))
    }

    /// Queue the frame `frame` makes for every subscriber but `except`: made
    /// and encoded once, and only if someone receives it. Returns whether
    /// anyone is subscribed.
    pub(super) fn deliver(
        &self,
        app_id: &str,
        channel: &str,
        frame: impl FnOnce() -> ByteString,
        except: Option<SocketId>,
    ) -> bool {
        let apps = self.read();
        let Some(subscribers) = apps.get(app_id).and_then(|c| c.get(channel)) else {
            return false;
        };
        let mut recipients = subscribers.iter().filter(|(id, _)| Some(**id) != except);
        if let Some((_, first)) = recipients.next() {
            let encoded = Frame::text(&frame());
            let mut fanout = Fanout::new();
            first.deliver_in(&encoded, &mut fanout);
            for (_, session) in recipients {
                session.deliver_in(&encoded, &mut fanout);
            }
        }
        true
    }

    /// Add a subscriber: `confirm` (which queues its
    /// `subscription_succeeded`) runs under the write lock, before the
    /// socket can be published to.
    pub(super) fn add(
        &self,
        app_id: &Arc<str>,
        channel: &Arc<str>,
        session: &SessionHandle,
        confirm: impl FnOnce(),
    ) {
        let mut apps = self.write();
        confirm();
        apps.entry(app_id.clone())
            .or_default()
            .entry(channel.clone())
            .or_default()
            .insert(session.id(), session.clone());
    }

    /// Remove a socket from these channels (those it is not on are skipped).
    pub(super) fn remove(&self, app_id: &str, channels: &[Arc<str>], socket: SocketId) {
        let mut apps = self.write();
        let Some(app) = apps.get_mut(app_id) else {
            return;
        };
        for channel in channels {
            if let Some(subscribers) = app.get_mut(&**channel) {
                subscribers.remove(&socket);
                if subscribers.is_empty() {
                    app.remove(&**channel);
                }
            }
        }
        if app.is_empty() {
            apps.remove(app_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::socket::{CountingMailbox, Outbox};
    use crate::wire::Wire;
    use std::time::Duration;

    fn socket() -> (SessionHandle, Arc<Wire>) {
        let app = Arc::new(App::new("id", "key", "secret"));
        let wire = Wire::new(Outbox::new(None, None, true, app));
        (
            SessionHandle::new(SocketId::next(), wire.clone(), CountingMailbox::default()),
            wire,
        )
    }

    fn ids() -> (Arc<str>, Arc<str>) {
        (Arc::from("app"), Arc::from("orders"))
    }

    #[test]
    fn a_publish_racing_a_subscription_comes_after_its_confirmation() {
        let audience = Arc::new(Audience::default());
        let (app, channel) = ids();
        let (session, wire) = socket();
        let publisher = std::sync::Mutex::new(None);
        audience.add(&app, &channel, &session, || {
            // A publish that starts while the subscription is being
            // confirmed must wait for the confirmation, then reach the new
            // socket: give it time to overtake, then confirm.
            let audience = audience.clone();
            *publisher.lock().unwrap() = Some(std::thread::spawn(move || {
                audience.deliver("app", "orders", || ByteString::from("event"), None)
            }));
            std::thread::sleep(Duration::from_millis(50));
            session.deliver(&Frame::text("succeeded"));
        });
        let delivered = publisher.into_inner().unwrap().unwrap().join().unwrap();
        assert!(delivered, "the publish found the new subscriber");
        assert_eq!(wire.take_texts(), ["succeeded", "event"]);
    }

    #[test]
    fn publishes_reach_subscribers_but_the_excepted_one_and_stop_when_they_leave() {
        let audience = Audience::default();
        let (app, channel) = ids();
        let (a, wire_a) = socket();
        let (b, wire_b) = socket();
        assert!(!audience.deliver("app", "orders", || ByteString::from("nobody"), None));
        audience.add(&app, &channel, &a, || {});
        audience.add(&app, &channel, &b, || {});
        assert!(audience.contains("app", "orders"));
        assert!(!audience.contains("other-app", "orders"), "per app");
        assert!(audience.deliver("app", "orders", || ByteString::from("1"), Some(a.id())));
        assert_eq!(wire_a.take_texts(), Vec::<String>::new());
        assert_eq!(wire_b.take_texts(), ["1"]);

        audience.remove("app", &[channel.clone(), Arc::from("elsewhere")], b.id());
        assert!(audience.deliver("app", "orders", || ByteString::from("2"), None));
        assert_eq!(wire_a.take_texts(), ["2"]);
        assert_eq!(wire_b.take_texts(), Vec::<String>::new(), "b left");

        audience.remove("app", &[channel], a.id());
        assert!(!audience.contains("app", "orders"));
        assert!(audience.read().is_empty(), "nothing is kept for empty apps");
    }
}
