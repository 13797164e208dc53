//! The channel table without actors: what each operation changes, which
//! transitions it reports, and what it hands back to deliver. Handles are
//! plain numbers; time is passed in.

use super::*;
use crate::registry::transition::Change::{self, *};
use serde_json::value::RawValue;

const APP: &str = "app";

fn socket(n: u64) -> SocketId {
    SocketId { node: 1, seq: n }
}

fn member(user_id: &str) -> Member {
    Member {
        user_id: Arc::from(user_id),
        user_info: Some(Arc::from(
            RawValue::from_string(format!(r#"{{"name":"{user_id}"}}"#)).unwrap(),
        )),
    }
}

fn added(user_id: &str) -> Change {
    MemberAdded {
        user_id: Arc::from(user_id),
        user_info: member(user_id).user_info,
    }
}

fn removed(user_id: &str) -> Change {
    MemberRemoved {
        user_id: Arc::from(user_id),
    }
}

fn count(count: usize) -> Change {
    CountChanged { count }
}

/// A table, its reused transition buffer and a clock the test moves.
struct Fixture {
    table: ChannelTable<u64>,
    out: Vec<Transition>,
    now: Instant,
    app: Arc<str>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_ttl(Duration::from_secs(60))
    }

    fn with_ttl(ttl: Duration) -> Fixture {
        Fixture {
            table: ChannelTable::new(ttl),
            out: Vec::new(),
            now: Instant::now(),
            app: Arc::from(APP),
        }
    }

    /// Subscribe socket `n` (handle `n`), as `user` on presence channels.
    fn join_as(
        &mut self,
        channel: &str,
        n: u64,
        user: Option<&str>,
        max_members: usize,
    ) -> Result<Joined, Refused> {
        let channel: Arc<str> = Arc::from(channel);
        let member = user.map(member);
        self.table.subscribe(
            NewSubscriber {
                app_id: &self.app,
                channel: &channel,
                kind: ChannelKind::of(&channel),
                socket: socket(n),
                handle: &n,
                member: member.as_ref(),
                max_members,
                count_updates: true,
            },
            self.now,
            &mut self.out,
        )
    }

    fn join(&mut self, channel: &str, n: u64) -> Joined {
        self.join_as(channel, n, None, usize::MAX)
            .expect("not a presence channel")
    }

    fn join_user(&mut self, channel: &str, n: u64, user: &str) -> Joined {
        self.join_as(channel, n, Some(user), usize::MAX)
            .expect("room for everyone")
    }

    fn unsubscribe(&mut self, channel: &str, n: u64) {
        self.table
            .unsubscribe(APP, channel, socket(n), &mut self.out);
    }

    fn publish(&mut self, channel: &str, frame: &str) -> Vec<u64> {
        let frame = ByteString::from(frame.to_string());
        let mut handles: Vec<u64> = self
            .table
            .fan_out(&self.app, &Arc::from(channel), &frame, || self.now)
            .map(|(id, h)| {
                assert_eq!(id, socket(*h), "each socket's own handle");
                *h
            })
            .collect();
        handles.sort();
        handles
    }

    /// The transitions since the last call, as (channel, change).
    fn changes(&mut self) -> Vec<(String, Change)> {
        self.out
            .drain(..)
            .map(|t| {
                assert_eq!(&*t.app_id, APP);
                (t.channel.to_string(), t.change)
            })
            .collect()
    }

    /// The changes of one channel since the last call (asserting no others).
    fn changes_of(&mut self, channel: &str) -> Vec<Change> {
        self.changes()
            .into_iter()
            .map(|(c, change)| {
                assert_eq!(c, channel, "{change:?}");
                change
            })
            .collect()
    }

    fn subscribers(&self, channel: &str) -> Vec<u64> {
        let mut handles: Vec<u64> = self
            .table
            .channel(APP, channel)
            .map(|c| c.subscribers().map(|(_, h)| *h).collect())
            .unwrap_or_default();
        handles.sort();
        handles
    }

    fn listed(&self) -> Vec<ChannelStats> {
        let mut all = self.table.channels(APP, "");
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

fn stats(name: &str, subscription_count: usize, user_count: Option<usize>) -> ChannelStats {
    ChannelStats {
        name: Arc::from(name),
        subscription_count,
        user_count,
    }
}

// ---- every channel kind ----

#[test]
fn every_non_presence_kind_is_occupied_counted_and_vacated() {
    for channel in [
        "orders",
        "private-orders",
        "private-encrypted-orders",
        "#server-to-user-42",
        "cache-prices",
        "private-cache-prices",
        "private-encrypted-cache-prices",
    ] {
        let mut t = Fixture::new();
        let cache = ChannelKind::of(channel).is_cache();
        let miss = |mut changes: Vec<Change>| {
            if cache {
                changes.push(CacheMiss);
            }
            changes
        };

        let joined = t.join(channel, 1);
        assert_eq!(
            joined,
            Joined {
                snapshot: None,
                cached: None
            },
            "{channel}"
        );
        assert_eq!(
            t.changes_of(channel),
            miss(vec![Occupied, count(1)]),
            "{channel}"
        );
        t.join(channel, 2);
        assert_eq!(t.changes_of(channel), miss(vec![count(2)]), "{channel}");
        assert_eq!(t.subscribers(channel), [1, 2]);
        assert_eq!(t.listed(), [stats(channel, 2, None)]);

        t.unsubscribe(channel, 1);
        assert_eq!(t.changes_of(channel), [count(1)], "{channel}");
        t.unsubscribe(channel, 2);
        assert_eq!(t.changes_of(channel), [count(0), Vacated], "{channel}");
        assert!(t.table.channel(APP, channel).is_none());
        assert!(t.listed().is_empty());
    }
}

#[test]
fn presence_kinds_announce_users_and_count_sockets() {
    for channel in ["presence-room", "presence-cache-room"] {
        let mut t = Fixture::new();
        let miss = |mut changes: Vec<Change>| {
            if ChannelKind::of(channel).is_cache() {
                changes.push(CacheMiss);
            }
            changes
        };
        let joined = t.join_user(channel, 1, "ada");
        let snapshot: serde_json::Value =
            serde_json::from_str(joined.snapshot.as_deref().expect("a roster")).unwrap();
        assert_eq!(
            snapshot,
            serde_json::json!({"presence": {"ids": ["ada"], "hash": {"ada": {"name": "ada"}}, "count": 1}})
        );
        assert_eq!(
            t.changes_of(channel),
            miss(vec![Occupied, added("ada"), count(1)])
        );
        t.join_user(channel, 2, "bob");
        assert_eq!(t.changes_of(channel), miss(vec![added("bob"), count(2)]));
        assert_eq!(t.listed(), [stats(channel, 2, Some(2))]);

        t.unsubscribe(channel, 2);
        assert_eq!(t.changes_of(channel), [removed("bob"), count(1)]);
        t.unsubscribe(channel, 1);
        assert_eq!(t.changes_of(channel), [removed("ada"), count(0), Vacated]);
        assert!(t.listed().is_empty());
    }
}

#[test]
fn a_user_with_several_sockets_is_added_once_and_removed_at_the_last() {
    let mut t = Fixture::new();
    t.join_user("presence-room", 1, "ada");
    t.changes();
    let joined = t.join_user("presence-room", 2, "ada");
    assert_eq!(t.changes_of("presence-room"), [count(2)], "no MemberAdded");
    let snapshot: serde_json::Value = serde_json::from_str(&joined.snapshot.unwrap()).unwrap();
    assert_eq!(snapshot["presence"]["count"], 1, "one user");
    t.join_user("presence-room", 3, "ada");
    assert_eq!(t.changes_of("presence-room"), [count(3)]);
    assert_eq!(t.table.user_ids(APP, "presence-room"), [Arc::from("ada")]);
    assert_eq!(t.listed(), [stats("presence-room", 3, Some(1))]);

    t.unsubscribe("presence-room", 1);
    assert_eq!(
        t.changes_of("presence-room"),
        [count(2)],
        "no MemberRemoved"
    );
    t.unsubscribe("presence-room", 3);
    assert_eq!(t.changes_of("presence-room"), [count(1)]);
    t.unsubscribe("presence-room", 2);
    assert_eq!(
        t.changes_of("presence-room"),
        [removed("ada"), count(0), Vacated]
    );
}

// ---- refusals and no-ops ----

#[test]
fn a_refused_presence_join_changes_nothing_and_creates_nothing() {
    // No room at all: the channel must not even be created.
    let mut t = Fixture::new();
    assert_eq!(
        t.join_as("presence-room", 1, Some("ada"), 0),
        Err(Refused::PresenceFull { max_members: 0 })
    );
    assert!(t.changes().is_empty());
    assert!(t.table.apps.is_empty(), "no app state either");
    assert!(t.listed().is_empty());

    // Full with two users: a third is refused, leaving the channel as it was.
    t.join_as("presence-room", 1, Some("ada"), 2).unwrap();
    t.join_as("presence-room", 2, Some("bob"), 2).unwrap();
    t.changes();
    assert_eq!(
        t.join_as("presence-room", 3, Some("cyd"), 2),
        Err(Refused::PresenceFull { max_members: 2 })
    );
    assert!(t.changes().is_empty());
    assert_eq!(t.subscribers("presence-room"), [1, 2]);
    assert_eq!(t.listed(), [stats("presence-room", 2, Some(2))]);
    // A cache channel's miss is not reported for a refused join either.
    t.join_as("presence-cache-room", 1, Some("ada"), 1).unwrap();
    t.changes();
    assert!(t.join_as("presence-cache-room", 3, Some("cyd"), 1).is_err());
    assert!(t.changes().is_empty());

    // Another socket of a user already present takes no new place; the same
    // socket subscribing again is confirmed.
    t.join_as("presence-room", 4, Some("bob"), 2).unwrap();
    assert_eq!(t.changes_of("presence-room"), [count(3)]);
    t.join_as("presence-room", 4, Some("bob"), 2).unwrap();
    assert!(t.changes().is_empty());
}

#[test]
fn leaving_a_channel_never_joined_changes_nothing() {
    let mut t = Fixture::new();
    t.unsubscribe("orders", 1);
    assert!(t.changes().is_empty());
    t.join("orders", 1);
    t.changes();
    t.unsubscribe("orders", 2);
    t.unsubscribe("other", 1);
    t.table
        .unsubscribe("other-app", "orders", socket(1), &mut t.out);
    assert!(t.changes().is_empty());
    assert_eq!(t.subscribers("orders"), [1]);
}

#[test]
fn subscribing_again_adds_no_duplicate() {
    let mut t = Fixture::new();
    t.join("orders", 1);
    t.changes();
    t.join("orders", 1);
    assert!(t.changes().is_empty());
    assert_eq!(t.subscribers("orders"), [1]);
    assert_eq!(t.publish("orders", "{}"), [1], "delivered once");
    t.unsubscribe("orders", 1);
    assert_eq!(t.changes_of("orders"), [count(0), Vacated]);

    // On a cache channel the joiner is told of the miss again.
    t.join("cache-prices", 1);
    t.changes();
    t.join("cache-prices", 1);
    assert_eq!(t.changes_of("cache-prices"), [CacheMiss]);
}

// ---- the cache ----

#[test]
fn a_cache_channel_keeps_its_last_event_until_it_expires() {
    let mut t = Fixture::with_ttl(Duration::from_secs(10));
    // Nobody subscribed: kept all the same, and nothing is occupied.
    assert!(t.publish("cache-prices", "one").is_empty());
    assert!(t.publish("cache-prices", "two").is_empty());
    assert!(t.changes().is_empty());
    assert!(t.listed().is_empty());
    assert_eq!(
        t.table.cached(APP, "cache-prices", t.now),
        Some((ByteString::from("two"), 10))
    );

    // A hit: replayed, no CacheMiss.
    let joined = t.join("cache-prices", 1);
    assert_eq!(joined.cached, Some(ByteString::from("two")));
    assert_eq!(t.changes_of("cache-prices"), [Occupied, count(1)]);

    t.now += Duration::from_secs(4);
    assert_eq!(
        t.table.cached(APP, "cache-prices", t.now),
        Some((ByteString::from("two"), 6))
    );
    // Expired: a miss, and the entry is gone.
    t.now += Duration::from_secs(6);
    let joined = t.join("cache-prices", 2);
    assert_eq!(joined.cached, None);
    assert_eq!(t.changes_of("cache-prices"), [count(2), CacheMiss]);
    assert_eq!(t.table.cached(APP, "cache-prices", t.now), None);

    // A live event reaches the subscribers and is cached anew.
    assert_eq!(t.publish("cache-prices", "three"), [1, 2]);
    assert_eq!(
        t.table.cached(APP, "cache-prices", t.now),
        Some((ByteString::from("three"), 10))
    );
    // Each cache channel has its own event; other channels keep none.
    assert_eq!(t.table.cached(APP, "cache-other", t.now), None);
    t.publish("orders", "x");
    assert_eq!(t.table.cached(APP, "orders", t.now), None);
}

#[test]
fn sweeping_drops_expired_events_and_empty_apps() {
    let mut t = Fixture::with_ttl(Duration::from_secs(10));
    t.publish("cache-a", "a");
    t.now += Duration::from_secs(5);
    t.publish("cache-b", "b");
    t.now += Duration::from_secs(6);
    t.table.sweep(t.now);
    assert_eq!(t.table.cached(APP, "cache-b", t.now).map(|c| c.1), Some(4));
    t.now += Duration::from_secs(4);
    t.table.sweep(t.now);
    assert!(t.table.apps.is_empty());
}

#[test]
fn publishing_to_a_channel_nobody_is_in_creates_nothing() {
    let mut t = Fixture::new();
    assert!(t.publish("orders", "x").is_empty());
    assert!(t.table.apps.is_empty());
}

// ---- disconnects ----

#[test]
fn a_disconnect_leaves_every_channel_it_was_in() {
    let mut t = Fixture::new();
    t.join("a", 1);
    t.join("b", 1);
    t.join("b", 2);
    t.join_user("presence-room", 1, "ada");
    t.join_user("presence-room", 2, "bob");
    t.changes();

    let channels: Vec<Arc<str>> = ["a", "b", "presence-room", "never-joined"]
        .into_iter()
        .map(Arc::from)
        .collect();
    t.table.leave(APP, &channels, socket(1), &mut t.out);
    assert_eq!(
        t.changes(),
        [
            ("a".to_string(), count(0)),
            ("a".to_string(), Vacated),
            ("b".to_string(), count(1)),
            ("presence-room".to_string(), removed("ada")),
            ("presence-room".to_string(), count(1)),
        ]
    );
    assert_eq!(
        t.listed(),
        [stats("b", 1, None), stats("presence-room", 1, Some(1))]
    );
}

// ---- client events ----

#[test]
fn only_a_subscriber_can_send_to_a_channel() {
    let mut t = Fixture::new();
    let frame = ByteString::from("client event");
    // The subscribers the event goes to, or `None` if it was dropped.
    let from = |t: &mut Fixture, channel: &str, n: u64| -> Option<Vec<u64>> {
        let now = t.now;
        let mut handles: Vec<u64> = t
            .table
            .fan_out_from(APP, &Arc::from(channel), socket(n), &frame, || now)?
            .map(|(_, h)| *h)
            .collect();
        handles.sort();
        Some(handles)
    };
    assert_eq!(from(&mut t, "private-chat", 1), None, "nobody there");
    t.join("private-chat", 1);
    t.join("private-chat", 2);
    // The caller skips the sender itself.
    assert_eq!(from(&mut t, "private-chat", 1), Some(vec![1, 2]));
    assert_eq!(from(&mut t, "private-chat", 3), None, "not subscribed");
    t.unsubscribe("private-chat", 1);
    assert_eq!(from(&mut t, "private-chat", 1), None, "left");

    // Not cached from a non-subscriber; cached from a subscriber.
    assert_eq!(from(&mut t, "private-cache-chat", 3), None);
    assert_eq!(t.table.cached(APP, "private-cache-chat", t.now), None);
    t.join("private-cache-chat", 1);
    assert_eq!(from(&mut t, "private-cache-chat", 3), None);
    assert_eq!(t.table.cached(APP, "private-cache-chat", t.now), None);
    assert_eq!(from(&mut t, "private-cache-chat", 1), Some(vec![1]));
    assert_eq!(
        t.table.cached(APP, "private-cache-chat", t.now),
        Some((frame.clone(), 60))
    );
}

// ---- apps ----

#[test]
fn apps_are_separate() {
    let mut t = Fixture::new();
    t.join("orders", 1);
    let other: Arc<str> = Arc::from("other-app");
    let channel: Arc<str> = Arc::from("orders");
    t.table
        .subscribe(
            NewSubscriber {
                app_id: &other,
                channel: &channel,
                kind: ChannelKind::Public,
                socket: socket(2),
                handle: &2,
                member: None,
                max_members: 0,
                count_updates: false,
            },
            t.now,
            &mut t.out,
        )
        .unwrap();
    let apps: Vec<&str> = t.out.iter().map(|t| &*t.app_id).collect();
    assert_eq!(apps, [APP, APP, "other-app", "other-app"]);
    t.out.clear();
    assert_eq!(t.publish("orders", "x"), [1]);
    assert_eq!(
        t.table.channels("other-app", ""),
        [stats("orders", 1, None)]
    );
    assert_eq!(t.table.channels("nobody", ""), []);
}

#[test]
fn channels_are_listed_by_prefix() {
    let mut t = Fixture::new();
    t.join("orders", 1);
    t.join("private-orders", 1);
    t.join_user("presence-room", 1, "ada");
    let mut listed = t.table.channels(APP, "pr");
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        listed,
        [
            stats("presence-room", 1, Some(1)),
            stats("private-orders", 1, None)
        ]
    );
    assert_eq!(
        t.table.channels(APP, "presence-"),
        [stats("presence-room", 1, Some(1))]
    );
}

// ---- signed-in users ----

#[test]
fn signed_in_users_keep_each_socket_until_terminated() {
    let mut t = Fixture::new();
    let (ada, bob): (Arc<str>, Arc<str>) = (Arc::from("ada"), Arc::from("bob"));
    t.table.sign_in(&t.app, &ada, socket(1), 1);
    t.table.sign_in(&t.app, &ada, socket(2), 2);
    t.table.sign_in(&t.app, &bob, socket(3), 3);
    // Signing in again is one socket, not two.
    t.table.sign_in(&t.app, &ada, socket(2), 2);

    // Socket 3 signs in as ada instead of bob.
    t.table.sign_out(APP, "bob", socket(3));
    t.table.sign_in(&t.app, &ada, socket(3), 3);
    assert!(t.table.terminate(APP, "bob").is_empty());

    // One of ada's sockets goes.
    t.table.sign_out(APP, "ada", socket(1));
    let mut closed = t.table.terminate(APP, "ada");
    closed.sort();
    assert_eq!(closed, [2, 3]);
    assert!(t.table.terminate(APP, "ada").is_empty(), "forgotten");
    assert!(t.table.terminate("other-app", "ada").is_empty());
    assert!(t.changes().is_empty(), "users are not channels");

    // The last socket signing out forgets the user too.
    t.table.sign_in(&t.app, &bob, socket(4), 4);
    t.table.sign_out(APP, "bob", socket(4));
    assert!(t.table.terminate(APP, "bob").is_empty());
    t.table.sweep(t.now);
    assert!(t.table.apps.is_empty());
}

// ---- the cluster's view of other nodes' changes ----

fn remote(node: NodeId, channel: &str, change: Change) -> (NodeId, Transition) {
    let t = Transition {
        app_id: Arc::from(APP),
        channel: Arc::from(channel),
        change,
    };
    (node, t)
}

impl Fixture {
    fn apply(&mut self, (node, t): (NodeId, Transition)) {
        self.table.apply_remote(node, &t, &mut self.out);
    }
}

#[test]
fn other_nodes_changes_are_reported_as_the_cluster_sees_them_without_local_subscribers() {
    const B: NodeId = 2;
    const C: NodeId = 3;
    let mut f = Fixture::new();
    let room = "presence-elsewhere";
    // B's first subscriber: the cluster's too, Occupied before the member.
    f.apply(remote(B, room, Occupied));
    f.apply(remote(B, room, added("ada")));
    f.apply(remote(B, room, count(1)));
    assert_eq!(f.changes_of(room), [Occupied, count(1), added("ada")]);
    // C joins with the same user: counted, not news.
    f.apply(remote(C, room, Occupied));
    f.apply(remote(C, room, added("ada")));
    f.apply(remote(C, room, count(1)));
    assert_eq!(f.changes_of(room), [count(2)]);
    // B's leaves: ada is still on C; the channel is still occupied.
    f.apply(remote(B, room, removed("ada")));
    f.apply(remote(B, room, count(0)));
    f.apply(remote(B, room, Vacated));
    assert_eq!(f.changes_of(room), [count(1)]);
    // C's last: the user and the channel leave the cluster.
    f.apply(remote(C, room, removed("ada")));
    f.apply(remote(C, room, count(0)));
    f.apply(remote(C, room, Vacated));
    assert_eq!(f.changes_of(room), [removed("ada"), count(0), Vacated]);
}

#[test]
fn a_local_subscriber_keeps_the_cluster_occupied_when_another_node_empties() {
    const B: NodeId = 2;
    let mut f = Fixture::new();
    f.join("shared", 1);
    f.changes();
    f.apply(remote(B, "shared", Occupied));
    f.apply(remote(B, "shared", count(1)));
    assert_eq!(f.changes_of("shared"), [count(2)], "occupied already, here");
    f.apply(remote(B, "shared", count(0)));
    f.apply(remote(B, "shared", Vacated));
    assert_eq!(f.changes_of("shared"), [count(1)]);
    // A dead node's snapshot-less forgetting reads the same way.
    f.apply(remote(B, "other", Occupied));
    f.changes();
    f.table.replace_node(B, &[], &mut f.out);
    assert_eq!(f.changes_of("other"), [count(0), Vacated]);
}
