//! The registry's decisions, on real shards with real sessions subscribed
//! (see [`crate::testing`]): presence membership per user, full presence
//! channels, the last-event cache, occupancy, subscription counts, what the
//! HTTP API can read, signed-in users, and the transitions a listener given
//! to `Registry::start` is told of.

use crate::app::App;
use crate::presence::Member;
use crate::protocol::frames;
use crate::registry::{
    Change, ChannelStats, ClientEvent, Cluster, NodeId, Relayed, RemoteChannelState, Transition,
    UserClose,
};
use crate::session::SessionSettings;
use crate::socket::SocketId;
use crate::testing::*;
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const ROOM: &str = "presence-room";

fn stats(name: &str, subscription_count: usize, user_count: Option<usize>) -> ChannelStats {
    ChannelStats {
        name: Arc::from(name),
        subscription_count,
        user_count,
    }
}

fn sorted_ids(roster: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = roster["ids"]
        .as_array()
        .expect("ids is an array")
        .iter()
        .map(|id| id.as_str().expect("ids are strings").to_string())
        .collect();
    ids.sort();
    ids
}

async fn terminate_user(server: &Server, user_id: &str) -> usize {
    server
        .registry
        .terminate_user(&server.app.id, user_id)
        .await
        .expect("registry is running")
}

// ---- presence ----

#[actix::test]
async fn presence_members_are_users_not_sockets() {
    let server = Server::start(test_app());
    let mut ada = server.connect().await;
    let mut bob1 = server.connect().await;
    let mut bob2 = server.connect().await;

    ada.join_presence(ROOM, "1", json!({"name": "Ada"})).await;

    // Bob's first socket: announced to the others.
    bob1.join_presence(ROOM, "2", json!({"name": "Bob"})).await;
    let added = ada
        .expect_channel_event("pusher_internal:member_added", ROOM)
        .await;
    assert_eq!(
        added.data(),
        json!({"user_id": "2", "user_info": {"name": "Bob"}})
    );

    // Bob's second socket: already a member, nothing to announce.
    let roster = bob2.join_presence(ROOM, "2", json!({"name": "Bob"})).await;
    assert_eq!(roster["count"], 2);
    ada.expect_silence().await;
    bob1.expect_silence().await;
    assert_eq!(server.presence_users(ROOM).await, ["1", "2"]);
    let info = server.channel_info(ROOM).await;
    assert_eq!(info.stats, Some(stats(ROOM, 3, Some(2))));

    // One of Bob's sockets leaves: Bob is still there.
    bob2.unsubscribe(ROOM);
    bob2.settle().await;
    ada.expect_silence().await;
    bob1.expect_silence().await;
    assert_eq!(server.presence_users(ROOM).await, ["1", "2"]);

    // His last socket goes: now he has left.
    bob1.vanish().await;
    let removed = ada
        .expect_channel_event("pusher_internal:member_removed", ROOM)
        .await;
    assert_eq!(removed.data(), json!({"user_id": "2"}));
    assert_eq!(server.presence_users(ROOM).await, ["1"]);
    ada.expect_silence().await;
}

#[actix::test]
async fn presence_roster_lists_each_user_once_with_their_info() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;

    let roster = a.join_presence(ROOM, "1", json!({"name": "Ada"})).await;
    assert_eq!(
        roster,
        json!({"ids": ["1"], "hash": {"1": {"name": "Ada"}}, "count": 1})
    );
    b.subscribe_presence_data(ROOM, r#"{"user_id":"2"}"#);
    let ok = b
        .expect_channel_event("pusher_internal:subscription_succeeded", ROOM)
        .await;
    // The joiner is not told about itself.
    b.expect_silence().await;
    let roster = &ok.data()["presence"];
    assert_eq!(sorted_ids(roster), ["1", "2"]);
    assert_eq!(roster["hash"], json!({"1": {"name": "Ada"}, "2": null}));
    assert_eq!(roster["count"], 2);
    let added = a
        .expect_channel_event("pusher_internal:member_added", ROOM)
        .await;
    assert_eq!(added.data(), json!({"user_id": "2"}));

    // A second socket of user 1 sees both users, user 1 once.
    let roster = c.join_presence(ROOM, "1", json!({"name": "Ada"})).await;
    assert_eq!(sorted_ids(&roster), ["1", "2"]);
    assert_eq!(roster["count"], 2);
    c.expect_silence().await;
    a.expect_silence().await;
    b.expect_silence().await;
}

#[actix::test]
async fn a_full_presence_channel_refuses_new_users_and_joins_nothing() {
    let mut app = test_app();
    app.limits.max_presence_members_per_channel = 2;
    let server = Server::start(app);
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    a.join_presence(ROOM, "1", json!({})).await;
    b.join_presence(ROOM, "2", json!({})).await;
    a.expect_channel_event("pusher_internal:member_added", ROOM)
        .await;

    c.subscribe_presence(ROOM, "3", json!({}));
    let error = c.expect_subscription_error(ROOM, "LimitReached").await;
    assert!(error.contains("full"), "{error}");
    c.settle().await;
    a.expect_silence().await;
    b.expect_silence().await;
    assert_eq!(server.presence_users(ROOM).await, ["1", "2"]);
    assert_eq!(
        server.channel_info(ROOM).await.stats,
        Some(stats(ROOM, 2, Some(2)))
    );
    server.publish(ROOM, "e", "1").await;
    a.expect_channel_event("e", ROOM).await;
    c.expect_silence().await;

    // Another socket of a user already there takes no new place.
    let mut b2 = server.connect().await;
    let roster = b2.join_presence(ROOM, "2", json!({})).await;
    assert_eq!(roster["count"], 2);
    a.expect_silence().await;

    // Once user 2 has gone, user 3 fits.
    b.vanish().await;
    b2.vanish().await;
    a.expect_channel_event("pusher_internal:member_removed", ROOM)
        .await;
    let roster = c.join_presence(ROOM, "3", json!({})).await;
    assert_eq!(sorted_ids(&roster), ["1", "3"]);
}

#[actix::test]
async fn a_presence_channel_without_room_leaves_nothing_behind() {
    let mut app = test_app();
    app.limits.max_presence_members_per_channel = 0;
    let server = Server::start(app);
    let mut a = server.connect().await;
    a.subscribe_presence(ROOM, "1", json!({}));
    a.expect_subscription_error(ROOM, "LimitReached").await;
    a.settle().await;

    assert!(!server.worth_publishing(ROOM));
    assert_eq!(server.channel_info(ROOM).await.stats, None);
    assert!(server.list_channels(None).await.is_empty());
    assert!(server.presence_users(ROOM).await.is_empty());
}

// ---- cache channels ----

#[actix::test]
async fn an_empty_cache_channel_says_cache_miss_after_subscribing() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    a.join("cache-prices").await;
    a.expect_channel_event("pusher:cache_miss", "cache-prices")
        .await;
    a.expect_silence().await;

    a.join_signed("private-cache-prices").await;
    a.expect_channel_event("pusher:cache_miss", "private-cache-prices")
        .await;

    // Other channels have no cache to miss.
    a.join("prices").await;
    a.expect_silence().await;
}

#[actix::test]
async fn a_cache_channel_replays_its_last_event_to_each_new_subscriber() {
    let server = Server::start(test_app());
    // Publishing to a cache channel is worth it even with nobody there.
    assert!(server.worth_publishing("cache-prices"));
    server.publish("cache-prices", "price", "100").await;
    server.publish("cache-prices", "price", "101").await;
    let last = r#"{"event":"price","channel":"cache-prices","data":"101"}"#;

    let mut a = server.connect().await;
    a.join("cache-prices").await;
    assert_eq!(a.expect_event("price").await.raw, last);
    a.expect_silence().await;

    let info = server.channel_info("cache-prices").await;
    let (frame, ttl) = info.cache.expect("an event is cached");
    assert_eq!(&*frame, last);
    // Published moments ago with a one-minute TTL.
    assert!((55..=60).contains(&ttl), "{ttl}");

    // Replaying does not consume it.
    let mut b = server.connect().await;
    b.join("cache-prices").await;
    assert_eq!(b.expect_event("price").await.raw, last);

    // A live event reaches the subscribers and becomes the cached one.
    server.publish("cache-prices", "price", "102").await;
    a.expect_channel_event("price", "cache-prices").await;
    b.expect_channel_event("price", "cache-prices").await;
    let mut c = server.connect().await;
    c.join("cache-prices").await;
    assert_eq!(c.expect_event("price").await.data(), json!(102));
    c.expect_silence().await;

    // Each channel has its own cache.
    c.join("cache-other").await;
    c.expect_channel_event("pusher:cache_miss", "cache-other")
        .await;
}

#[actix::test]
async fn an_expired_cached_event_is_not_replayed() {
    // A zero TTL: every cached event has expired when read.
    let server = Server::with(test_app(), SessionSettings::default(), 1, Duration::ZERO);
    server.publish("cache-prices", "price", "100").await;
    assert!(server.channel_info("cache-prices").await.cache.is_none());
    let mut a = server.connect().await;
    a.join("cache-prices").await;
    a.expect_channel_event("pusher:cache_miss", "cache-prices")
        .await;
    a.expect_silence().await;
}

#[actix::test]
async fn client_events_from_non_subscribers_are_neither_delivered_nor_cached() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let outsider = server.connect().await;
    a.join_signed("private-chat").await;
    b.join_signed("private-chat").await;

    // As a session sends it, but from sockets whose session did not check.
    let client_event = |channel: &str, sender: &TestSocket| {
        server.registry.client_event(ClientEvent {
            app_id: server.app.id.clone(),
            channel: Arc::from(channel),
            frame: frames::client_event(
                "client-x",
                channel,
                &serde_json::value::to_raw_value(&1).unwrap(),
                None,
            ),
            sender: sender.id(),
        })
    };
    client_event("private-chat", &outsider);
    server.sync().await;
    a.expect_silence().await;
    b.expect_silence().await;

    // From a subscriber: to everyone else.
    client_event("private-chat", &a);
    b.expect_channel_event("client-x", "private-chat").await;
    a.expect_silence().await;

    // Nor cached: a cache channel nobody is in stays empty.
    client_event("private-cache-chat", &outsider);
    server.sync().await;
    assert!(server
        .channel_info("private-cache-chat")
        .await
        .cache
        .is_none());
    a.join_signed("private-cache-chat").await;
    a.expect_channel_event("pusher:cache_miss", "private-cache-chat")
        .await;
}

// ---- occupancy ----

#[actix::test]
async fn a_channel_is_worth_publishing_to_while_it_has_subscribers() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    assert!(!server.worth_publishing("orders"));

    // Already true when the client sees its subscription confirmed.
    a.join("orders").await;
    assert!(server.worth_publishing("orders"));
    b.join("orders").await;

    a.unsubscribe("orders");
    a.settle().await;
    assert!(server.worth_publishing("orders"), "b is still there");
    b.unsubscribe("orders");
    b.settle().await;
    assert!(!server.worth_publishing("orders"));

    // Leaving by disconnecting counts too, with or without a close frame.
    a.join("orders").await;
    assert!(server.worth_publishing("orders"));
    a.close().await;
    server.sync().await;
    assert!(!server.worth_publishing("orders"));

    b.join("orders").await;
    b.vanish().await;
    server.sync().await;
    assert!(!server.worth_publishing("orders"));
    assert!(server.list_channels(None).await.is_empty());

    // Occupancy is per app.
    let mut c = server.connect().await;
    c.join("orders").await;
    assert!(!server.registry.worth_publishing("other-app", "orders"));
}

#[actix::test]
async fn a_disconnect_leaves_every_channel_on_every_shard() {
    let server = Server::with(
        test_app(),
        SessionSettings::default(),
        4,
        Duration::from_secs(60),
    );
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let channels: Vec<String> = (0..12).map(|i| format!("ch-{i}")).collect();
    for channel in &channels {
        a.join(channel).await;
    }
    a.join_presence(ROOM, "1", json!({})).await;
    b.join("ch-0").await;
    b.join_presence(ROOM, "2", json!({})).await;
    a.expect_channel_event("pusher_internal:member_added", ROOM)
        .await;

    a.vanish().await;
    b.expect_channel_event("pusher_internal:member_removed", ROOM)
        .await;
    server.sync().await;
    for channel in &channels {
        assert_eq!(
            server.worth_publishing(channel),
            channel == "ch-0",
            "{channel}"
        );
    }
    assert_eq!(
        server.list_channels(None).await,
        [stats("ch-0", 1, None), stats(ROOM, 1, Some(1))]
    );
}

// ---- subscription counts ----

#[actix::test]
async fn subscription_counts_are_sent_on_change_when_enabled() {
    let mut app = test_app();
    app.enable_subscription_count = true;
    let server = Server::start(app);
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let count = |n: usize| json!({ "subscription_count": n });

    a.join("orders").await;
    let e = a
        .expect_channel_event("pusher_internal:subscription_count", "orders")
        .await;
    assert_eq!(e.data(), count(1));

    b.join("orders").await;
    for socket in [&mut a, &mut b] {
        let e = socket
            .expect_channel_event("pusher_internal:subscription_count", "orders")
            .await;
        assert_eq!(e.data(), count(2));
    }

    // Subscribing again changes nothing.
    a.join("orders").await;
    a.expect_silence().await;
    b.expect_silence().await;

    b.unsubscribe("orders");
    b.settle().await;
    let e = a
        .expect_channel_event("pusher_internal:subscription_count", "orders")
        .await;
    assert_eq!(e.data(), count(1));

    // The last one leaving has nobody to tell.
    a.unsubscribe("orders");
    a.expect_silence().await;

    // Presence channels count members instead.
    a.join_presence(ROOM, "1", json!({})).await;
    a.expect_silence().await;
}

#[actix::test]
async fn subscription_counts_are_not_sent_when_disabled() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join("orders").await;
    b.join("orders").await;
    b.unsubscribe("orders");
    b.expect_silence().await;
    a.expect_silence().await;
}

// ---- what the HTTP API reads ----

#[actix::test]
async fn channel_info_lists_and_presence_users_answer_per_app() {
    let server = Server::start(test_app());
    // Another app on the same registry; same key and secret so the harness
    // signs for it, but a different id, which is what the registry keys on.
    let other = Arc::new(App::new("other-app", KEY, SECRET));

    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    let mut x = TestSocket::connect(&other, &server.registry).await;
    a.join("orders").await;
    a.join_presence(ROOM, "1", json!({})).await;
    b.join_presence(ROOM, "1", json!({})).await;
    c.join_presence(ROOM, "2", json!({})).await;
    for socket in [&mut a, &mut b] {
        socket
            .expect_channel_event("pusher_internal:member_added", ROOM)
            .await;
    }
    x.join("orders").await;
    x.join("only-other").await;
    x.join_presence(ROOM, "9", json!({})).await;

    assert_eq!(
        server.channel_info("orders").await.stats,
        Some(stats("orders", 1, None))
    );
    assert_eq!(
        server.channel_info(ROOM).await.stats,
        Some(stats(ROOM, 3, Some(2)))
    );
    let nobody = server.channel_info("nobody").await;
    assert_eq!(nobody.stats, None);
    assert!(nobody.cache.is_none());

    assert_eq!(
        server.list_channels(None).await,
        [stats("orders", 1, None), stats(ROOM, 3, Some(2))]
    );
    assert_eq!(
        server.list_channels(Some("presence-")).await,
        [stats(ROOM, 3, Some(2))]
    );
    assert!(server.list_channels(Some("private-")).await.is_empty());

    assert_eq!(server.presence_users(ROOM).await, ["1", "2"]);
    assert!(server.presence_users("orders").await.is_empty());
    assert!(server.presence_users("presence-nobody").await.is_empty());

    // Events stay within their app.
    server.publish("orders", "e", "1").await;
    a.expect_channel_event("e", "orders").await;
    x.expect_silence().await;
}

#[actix::test]
async fn a_published_event_can_skip_one_socket() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join("orders").await;
    b.join("orders").await;

    server
        .publish_except("orders", "e", "1", Some(a.id()))
        .await;
    b.expect_channel_event("e", "orders").await;
    a.expect_silence().await;
}

// ---- signed-in users ----

#[actix::test]
async fn terminating_a_user_closes_each_of_its_sockets() {
    let server = Server::start(test_app());
    let mut a1 = server.connect().await;
    let mut a2 = server.connect().await;
    let mut b = server.connect().await;
    for (socket, id) in [(&mut a1, "42"), (&mut a2, "42"), (&mut b, "7")] {
        socket.signin(&json!({ "id": id }).to_string());
        socket.expect_event("pusher:signin_success").await;
    }

    assert_eq!(terminate_user(&server, "42").await, 2);
    for socket in [&mut a1, &mut a2] {
        socket.expect_error(4009).await;
        socket.expect_close(4009).await;
    }
    b.expect_silence().await;
    assert_eq!(terminate_user(&server, "42").await, 0);
    assert_eq!(server.app.connection_count(), 1);
}

#[actix::test]
async fn a_user_is_forgotten_when_its_socket_signs_in_as_another_or_goes() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    a.signin(r#"{"id":"42"}"#);
    a.expect_event("pusher:signin_success").await;
    a.signin(r#"{"id":"43"}"#);
    a.expect_event("pusher:signin_success").await;
    assert_eq!(terminate_user(&server, "42").await, 0);

    a.vanish().await;
    assert_eq!(terminate_user(&server, "43").await, 0);
}

// ---- transitions told to listeners ----

/// The changes recorded for `channel` of the test app, in order.
fn changes_of(recorded: &[Transition], channel: &str) -> Vec<Change> {
    recorded
        .iter()
        .filter(|t| &*t.app_id == APP_ID && &*t.channel == channel)
        .map(|t| t.change.clone())
        .collect()
}

fn member_added(user_id: &str, user_info: &serde_json::Value) -> Change {
    Change::MemberAdded {
        user_id: Arc::from(user_id),
        user_info: Some(Arc::from(
            RawValue::from_string(user_info.to_string()).unwrap(),
        )),
    }
}

fn member_removed(user_id: &str) -> Change {
    Change::MemberRemoved {
        user_id: Arc::from(user_id),
    }
}

fn count(count: usize) -> Change {
    Change::CountChanged { count }
}

#[actix::test]
async fn a_listener_hears_a_user_with_two_sockets_join_and_leave_once() {
    let server = Server::start(test_app());
    let mut ada = server.connect().await;
    let mut bob1 = server.connect().await;
    let mut bob2 = server.connect().await;
    let (ada_info, bob_info) = (json!({"name": "Ada"}), json!({"name": "Bob"}));

    ada.join_presence(ROOM, "1", ada_info.clone()).await;
    bob1.join_presence(ROOM, "2", bob_info.clone()).await;
    bob2.join_presence(ROOM, "2", bob_info.clone()).await;
    assert_eq!(
        changes_of(&server.transitions.take(), ROOM),
        [
            Change::Occupied,
            member_added("1", &ada_info),
            count(1),
            member_added("2", &bob_info),
            count(2),
            count(3),
        ]
    );

    bob2.unsubscribe(ROOM);
    bob2.settle().await;
    assert_eq!(changes_of(&server.transitions.take(), ROOM), [count(2)]);
    bob1.vanish().await;
    server.sync().await;
    assert_eq!(
        changes_of(&server.transitions.take(), ROOM),
        [member_removed("2"), count(1)]
    );
    ada.close().await;
    server.sync().await;
    assert_eq!(
        server.transitions.take(),
        [
            Transition {
                app_id: Arc::from(APP_ID),
                channel: Arc::from(ROOM),
                change: member_removed("1"),
            },
            Transition {
                app_id: Arc::from(APP_ID),
                channel: Arc::from(ROOM),
                change: count(0),
            },
            Transition {
                app_id: Arc::from(APP_ID),
                channel: Arc::from(ROOM),
                change: Change::Vacated,
            }
        ]
    );
}

#[actix::test]
async fn a_refused_full_presence_join_tells_listeners_nothing() {
    let mut app = test_app();
    app.limits.max_presence_members_per_channel = 1;
    let server = Server::start(app);
    let mut a = server.connect().await;
    let mut c = server.connect().await;

    a.join_presence(ROOM, "1", json!({})).await;
    server.transitions.take();

    c.subscribe_presence(ROOM, "3", json!({}));
    c.expect_subscription_error(ROOM, "LimitReached").await;
    c.settle().await;
    server.sync().await;
    assert_eq!(server.transitions.take(), []);

    // Without room for anyone: not even the channel's creation and removal.
    let mut app = test_app();
    app.limits.max_presence_members_per_channel = 0;
    let server = Server::start(app);
    let mut a = server.connect().await;
    a.subscribe_presence(ROOM, "1", json!({}));
    a.expect_subscription_error(ROOM, "LimitReached").await;
    a.settle().await;
    assert_eq!(server.transitions.take(), []);
}

#[actix::test]
async fn a_disconnect_tells_listeners_each_channel_it_vacated() {
    let server = Server::with(
        test_app(),
        SessionSettings::default(),
        4,
        Duration::from_secs(60),
    );
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let channels: Vec<String> = (0..8).map(|i| format!("ch-{i}")).collect();
    for channel in &channels {
        a.join(channel).await;
    }
    a.join_presence(ROOM, "1", json!({})).await;
    b.join("ch-0").await;
    server.transitions.take();

    a.vanish().await;
    server.sync().await;
    let recorded = server.transitions.take();
    let mut by_channel: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    for t in &recorded {
        by_channel
            .entry(&t.channel)
            .or_default()
            .push(t.change.clone());
    }
    for channel in &channels[1..] {
        assert_eq!(
            by_channel.remove(channel.as_str()),
            Some(vec![count(0), Change::Vacated]),
            "{channel}"
        );
    }
    assert_eq!(by_channel.remove("ch-0"), Some(vec![count(1)]), "b stays");
    assert_eq!(
        by_channel.remove(ROOM),
        Some(vec![member_removed("1"), count(0), Change::Vacated])
    );
    assert!(by_channel.is_empty(), "{by_channel:?}");
}

#[actix::test]
async fn a_listener_hears_of_cache_misses_but_not_of_publishes() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    a.join("cache-prices").await;
    a.expect_channel_event("pusher:cache_miss", "cache-prices")
        .await;
    assert_eq!(
        changes_of(&server.transitions.take(), "cache-prices"),
        [Change::Occupied, count(1), Change::CacheMiss]
    );

    server.publish("cache-prices", "price", "1").await;
    a.expect_channel_event("price", "cache-prices").await;
    let mut b = server.connect().await;
    b.join("cache-prices").await;
    b.expect_event("price").await;
    assert_eq!(
        changes_of(&server.transitions.take(), "cache-prices"),
        [count(2)],
        "a hit is no change"
    );
}

#[actix::test]
async fn an_event_sent_to_a_user_reaches_only_its_sockets() {
    let server = Server::start(test_app());
    let mut ada1 = server.connect().await;
    let mut ada2 = server.connect().await;
    let mut bob = server.connect().await;
    for (socket, id) in [(&mut ada1, "42"), (&mut ada2, "42"), (&mut bob, "7")] {
        socket.signin(&json!({ "id": id }).to_string());
        socket.expect_event("pusher:signin_success").await;
        socket.join(&format!("#server-to-user-{id}")).await;
    }

    let data = serde_json::value::to_raw_value("hi").unwrap();
    server
        .registry
        .send_to_user(&Arc::from(APP_ID), "42", "note", &data)
        .await
        .expect("registry is running");
    for socket in [&mut ada1, &mut ada2] {
        let event = socket
            .expect_channel_event("note", "#server-to-user-42")
            .await;
        assert_eq!(event.json["data"], "hi");
    }
    bob.expect_silence().await;
}

// ---- between nodes ----

/// A cluster that records what the registry relays, as the Redis bridge
/// would take it.
#[derive(Default)]
struct Relays(
    std::sync::Mutex<Vec<Relayed>>,
    std::sync::Mutex<Vec<String>>,
);

impl Cluster for Relays {
    fn relay(&self, event: Relayed) {
        self.0.lock().unwrap().push(event);
    }

    fn close_user(&self, app_id: &Arc<str>, user_id: &str, how: UserClose) {
        let how = match how {
            UserClose::Terminate => "",
            UserClose::Reconnect => " (reconnect)",
        };
        self.1
            .lock()
            .unwrap()
            .push(format!("{app_id}/{user_id}{how}"));
    }
}

impl Relays {
    /// (channel, frame, except) of what was relayed since the last call.
    fn take(&self) -> Vec<(String, String, Option<SocketId>)> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .map(|r| (r.channel.to_string(), r.frame.to_string(), r.except))
            .collect()
    }
}

fn clustered(server: &Server) -> Arc<Relays> {
    let relays = Arc::new(Relays::default());
    assert!(server.registry.attach_cluster(relays.clone()));
    // Only the first attachment counts.
    assert!(!server.registry.attach_cluster(Arc::new(Relays::default())));
    relays
}

#[actix::test]
async fn a_publish_is_relayed_once_whether_or_not_anyone_here_listens() {
    let server = Server::start(test_app());
    let relays = clustered(&server);
    let mut a = server.connect().await;

    // Nobody here: relayed all the same (another node may have subscribers).
    server.publish("orders", "e", "1").await;
    let frame = r#"{"event":"e","channel":"orders","data":"1"}"#;
    assert_eq!(relays.take(), [("orders".into(), frame.into(), None)]);

    // Someone here: delivered here and relayed once, the same frame, with the
    // socket to skip.
    a.join("orders").await;
    server
        .publish_except("orders", "e", "2", Some(SocketId { node: 7, seq: 9 }))
        .await;
    assert_eq!(a.expect_channel_event("e", "orders").await.data(), json!(2));
    let frame = r#"{"event":"e","channel":"orders","data":"2"}"#;
    assert_eq!(
        relays.take(),
        [(
            "orders".into(),
            frame.into(),
            Some(SocketId { node: 7, seq: 9 })
        )]
    );
}

#[actix::test]
async fn a_client_event_is_relayed_only_once_its_shard_confirmed_the_sender() {
    let server = Server::start(test_app());
    let relays = clustered(&server);
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let outsider = server.connect().await;
    a.join_signed("private-chat").await;
    b.join_signed("private-chat").await;
    let client_event = |sender: &TestSocket| {
        server.registry.client_event(ClientEvent {
            app_id: server.app.id.clone(),
            channel: Arc::from("private-chat"),
            frame: frames::client_event(
                "client-x",
                "private-chat",
                &serde_json::value::to_raw_value(&1).unwrap(),
                None,
            ),
            sender: sender.id(),
        })
    };
    client_event(&outsider);
    server.sync().await;
    assert_eq!(relays.take(), []);

    client_event(&a);
    b.expect_channel_event("client-x", "private-chat").await;
    server.sync().await;
    let relayed = relays.take();
    assert_eq!(relayed.len(), 1, "{relayed:?}");
    assert_eq!(relayed[0].0, "private-chat");
    assert!(
        relayed[0].1.contains(r#""event":"client-x""#),
        "{relayed:?}"
    );
    assert_eq!(relayed[0].2, None);
}

#[actix::test]
async fn a_remote_event_reaches_local_subscribers_and_is_not_relayed_again() {
    let server = Server::start(test_app());
    let relays = clustered(&server);
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join("orders").await;
    b.join("orders").await;
    let remote = |channel: &str, data: u32, except: Option<SocketId>| {
        let frame = format!(r#"{{"event":"e","channel":"{channel}","data":"{data}"}}"#);
        let registry = server.registry.clone();
        let app_id = server.app.id.clone();
        let channel = channel.to_string();
        async move {
            registry
                .fan_out_remote(&app_id, &channel, frame.into(), except)
                .await
                .expect("registry is running")
        }
    };

    // No sender check; the skipped socket is skipped.
    remote("orders", 1, Some(a.id())).await;
    assert_eq!(b.expect_channel_event("e", "orders").await.data(), json!(1));
    a.expect_silence().await;
    remote("orders", 2, None).await;
    a.expect_channel_event("e", "orders").await;
    b.expect_channel_event("e", "orders").await;

    // A cache channel nobody here is in keeps the event for later joiners.
    remote("cache-prices", 3, None).await;
    a.join("cache-prices").await;
    assert_eq!(a.expect_event("e").await.data(), json!(3));

    // Nothing came back out: relaying it again would loop between nodes.
    assert_eq!(relays.take(), []);
}

#[actix::test]
async fn terminate_connections_is_also_handed_to_the_other_nodes() {
    let server = Server::start(test_app());
    let relays = clustered(&server);
    assert_eq!(terminate_user(&server, "42").await, 0, "nobody here");
    assert_eq!(*relays.1.lock().unwrap(), [format!("{APP_ID}/42")]);
}

// ---- other nodes' state ----

const NODE_B: NodeId = 0xb;
const NODE_C: NodeId = 0xc;

fn remote(channel: &str, change: Change) -> Transition {
    Transition {
        app_id: Arc::from(APP_ID),
        channel: Arc::from(channel),
        change,
    }
}

fn remote_added(channel: &str, user_id: &str, name: &str) -> Transition {
    remote(
        channel,
        Change::MemberAdded {
            user_id: Arc::from(user_id),
            user_info: Some(Arc::from(
                RawValue::from_string(json!({ "name": name }).to_string()).unwrap(),
            )),
        },
    )
}

fn remote_removed(channel: &str, user_id: &str) -> Transition {
    remote(
        channel,
        Change::MemberRemoved {
            user_id: Arc::from(user_id),
        },
    )
}

fn remote_count(channel: &str, count: usize) -> Transition {
    remote(channel, Change::CountChanged { count })
}

fn node_state(channel: &str, count: usize, users: &[&str]) -> RemoteChannelState {
    RemoteChannelState {
        app_id: Arc::from(APP_ID),
        channel: Arc::from(channel),
        count,
        members: users
            .iter()
            .map(|id| Member {
                user_id: Arc::from(*id),
                user_info: None,
            })
            .collect(),
    }
}

async fn expect_member(socket: &mut TestSocket, event: &str, user_id: &str) {
    let e = socket
        .expect_channel_event(&format!("pusher_internal:{event}"), ROOM)
        .await;
    assert_eq!(e.data()["user_id"], user_id, "{event}");
}

#[actix::test]
async fn a_user_on_several_nodes_is_announced_once_and_listed_once() {
    let server = Server::start(test_app());
    let mut ada = server.connect().await;
    ada.join_presence(ROOM, "1", json!({"name": "Ada"})).await;

    // Bob's first socket anywhere (node B): news.
    server.registry.apply_remote(
        NODE_B,
        vec![remote_added(ROOM, "2", "Bob"), remote_count(ROOM, 1)],
    );
    let added = ada
        .expect_channel_event("pusher_internal:member_added", ROOM)
        .await;
    assert_eq!(
        added.data(),
        json!({"user_id": "2", "user_info": {"name": "Bob"}})
    );
    // Bob on node C as well, then here: not news.
    server.registry.apply_remote(
        NODE_C,
        vec![remote_added(ROOM, "2", "Bob"), remote_count(ROOM, 1)],
    );
    let mut bob = server.connect().await;
    let roster = bob.join_presence(ROOM, "2", json!({"name": "Bob"})).await;
    assert_eq!(sorted_ids(&roster), ["1", "2"]);
    assert_eq!(roster["count"], 2);
    ada.expect_silence().await;

    // A newcomer sees the members of every node, each once.
    let mut cy = server.connect().await;
    let roster = cy.join_presence(ROOM, "3", json!({"name": "Cy"})).await;
    assert_eq!(sorted_ids(&roster), ["1", "2", "3"]);
    assert_eq!(roster["hash"]["2"], json!({"name": "Bob"}));
    expect_member(&mut ada, "member_added", "3").await;
    assert_eq!(server.presence_users(ROOM).await, ["1", "2", "3"]);
    let info = server.channel_info(ROOM).await;
    assert_eq!(
        info.stats,
        Some(stats(ROOM, 5, Some(3))),
        "3 here + 1 on B + 1 on C"
    );

    // Bob leaves here, then node B: still on C, nothing to tell.
    bob.close().await;
    server.registry.apply_remote(
        NODE_B,
        vec![remote_removed(ROOM, "2"), remote_count(ROOM, 0)],
    );
    ada.expect_silence().await;
    // Node C dies: Bob is gone from the cluster.
    server.registry.forget_node(NODE_C);
    expect_member(&mut ada, "member_removed", "2").await;
    expect_member(&mut cy, "member_removed", "2").await;
    let info = server.channel_info(ROOM).await;
    assert_eq!(info.stats, Some(stats(ROOM, 2, Some(2))));
    ada.expect_silence().await;
}

#[actix::test]
async fn a_snapshot_replaces_a_nodes_state_and_only_the_difference_is_told() {
    let server = Server::start(test_app());
    let mut ada = server.connect().await;
    ada.join_presence(ROOM, "1", json!({"name": "Ada"})).await;

    server.registry.replace_node(
        NODE_B,
        vec![
            node_state(ROOM, 3, &["2", "3"]),
            node_state("orders", 4, &[]),
        ],
    );
    let mut told = vec![];
    for _ in 0..2 {
        let e = ada
            .expect_channel_event("pusher_internal:member_added", ROOM)
            .await;
        told.push(e.data()["user_id"].as_str().unwrap().to_string());
    }
    told.sort();
    assert_eq!(told, ["2", "3"]);

    // Again, with user 2 gone and 4 new; `orders` emptied on B.
    server
        .registry
        .replace_node(NODE_B, vec![node_state(ROOM, 2, &["3", "4"])]);
    expect_member(&mut ada, "member_removed", "2").await;
    expect_member(&mut ada, "member_added", "4").await;
    ada.expect_silence().await;
    assert!(server
        .list_channels(None)
        .await
        .iter()
        .all(|c| &*c.name != "orders"));

    // Forgotten: everyone it held leaves.
    server.registry.forget_node(NODE_B);
    let mut told = vec![];
    for _ in 0..2 {
        let e = ada
            .expect_channel_event("pusher_internal:member_removed", ROOM)
            .await;
        told.push(e.data()["user_id"].as_str().unwrap().to_string());
    }
    told.sort();
    assert_eq!(told, ["3", "4"]);
    assert_eq!(server.presence_users(ROOM).await, ["1"]);
}

#[actix::test]
async fn channels_counts_and_limits_cover_the_other_nodes() {
    let mut app = test_app();
    app.enable_subscription_count = true;
    app.limits.max_presence_members_per_channel = 2;
    let server = Server::start(app);
    let mut a = server.connect().await;
    a.join("orders").await;
    a.expect_channel_event("pusher_internal:subscription_count", "orders")
        .await;

    // Subscribers elsewhere: counted, and told to local subscribers.
    server.registry.apply_remote(
        NODE_B,
        vec![remote_count("orders", 2), remote_count("news", 1)],
    );
    let e = a
        .expect_channel_event("pusher_internal:subscription_count", "orders")
        .await;
    assert_eq!(e.data(), json!({ "subscription_count": 3 }));
    let mut listed: Vec<(String, usize)> = server
        .list_channels(None)
        .await
        .into_iter()
        .map(|c| (c.name.to_string(), c.subscription_count))
        .collect();
    listed.sort();
    assert_eq!(listed, [("news".into(), 1), ("orders".into(), 3)]);
    assert_eq!(
        server.channel_info("news").await.stats,
        Some(stats("news", 1, None)),
        "occupied on another node only"
    );
    // A local subscriber's count includes the other nodes'.
    let mut b = server.connect().await;
    b.join("orders").await;
    let e = a
        .expect_channel_event("pusher_internal:subscription_count", "orders")
        .await;
    assert_eq!(e.data(), json!({ "subscription_count": 4 }));

    // Presence: two distinct users over the cluster fill the channel.
    server.registry.apply_remote(
        NODE_B,
        vec![remote_added(ROOM, "2", "Bob"), remote_count(ROOM, 1)],
    );
    let mut ada = server.connect().await;
    ada.join_presence(ROOM, "1", json!({"name": "Ada"})).await;
    let mut cy = server.connect().await;
    cy.subscribe_presence(ROOM, "3", json!({"name": "Cy"}));
    cy.expect_subscription_error(ROOM, "LimitReached").await;
    // A user already present elsewhere still gets in.
    let mut bob = server.connect().await;
    bob.join_presence(ROOM, "2", json!({"name": "Bob"})).await;

    server.registry.forget_node(NODE_B);
    server.sync().await;
    assert_eq!(server.channel_info("news").await.stats, None);
    assert_eq!(
        server.channel_info("orders").await.stats,
        Some(stats("orders", 2, None))
    );
}
