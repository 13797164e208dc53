//! Watchlist events (`enable_watchlist_events`): a signed-in socket whose
//! `user_data.watchlist` names users hears `pusher_internal:watchlist_events`
//! in the shape pusher-js listens for — who of them is online right after
//! sign-in, then each one's first socket arriving and last socket leaving —
//! on one node and across a cluster.

mod common;

use std::time::Duration;

use common::cluster::{acquainted, node_with};
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

const ON: (&str, &str) = ("SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS", "true");

fn user(id: &str, watchlist: &[&str]) -> String {
    json!({"id": id, "watchlist": watchlist}).to_string()
}

/// The next frame is a watchlist event: `(name, user_ids)`.
async fn expect_watch(ws: &mut Ws) -> (String, Vec<String>) {
    expect_watch_within(ws, RECV_TIMEOUT).await
}

async fn expect_watch_within(ws: &mut Ws, within: Duration) -> (String, Vec<String>) {
    let f = ws
        .expect_event_within("pusher_internal:watchlist_events", within)
        .await;
    let data: &Value = &f.json["data"];
    assert!(
        data.is_object(),
        "data is an object, as pusher-js reads it: {}",
        f.raw
    );
    let events = data["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{}", f.raw);
    let name = events[0]["name"].as_str().unwrap().to_string();
    let mut ids: Vec<String> = events[0]["user_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    (name, ids)
}

/// Online events until exactly `users` have been said online: across nodes
/// a user who signed in a moment ago may come as an event of its own
/// rather than in the list right after sign-in (the relay's latency).
async fn expect_online(ws: &mut Ws, users: &[&str]) {
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < users.len() {
        let (name, ids) = expect_watch(ws).await;
        assert_eq!(name, "online", "{ids:?}");
        for id in ids {
            assert!(
                users.contains(&id.as_str()),
                "{id} is not watched or not online"
            );
            assert!(!seen.contains(&id), "{id} said online twice");
            seen.push(id);
        }
    }
}

fn pair(name: &str, ids: &[&str]) -> (String, Vec<String>) {
    (
        name.to_string(),
        ids.iter().map(|s| s.to_string()).collect(),
    )
}

#[tokio::test]
async fn watched_users_coming_and_going_are_told_once_per_user() {
    let server = Server::start_app(&[ON]).await;
    let mut bob = server.connect().await;
    bob.signin(&user("bob", &[])).await;

    let mut ada = server.connect().await;
    ada.signin(&user("ada", &["bob", "carl", "ada"])).await;
    // Right after sign-in: who is online of the watchlist (ada herself too).
    assert_eq!(
        expect_watch(&mut ada).await,
        pair("online", &["ada", "bob"])
    );

    let mut carl1 = server.connect().await;
    carl1.signin(&user("carl", &[])).await;
    assert_eq!(expect_watch(&mut ada).await, pair("online", &["carl"]));
    // A second socket of a user online already is not news, nor is its end.
    let mut carl2 = server.connect().await;
    carl2.signin(&user("carl", &[])).await;
    carl1.close().await;
    ada.expect_silence(SILENCE).await;
    carl2.close().await;
    assert_eq!(expect_watch(&mut ada).await, pair("offline", &["carl"]));

    // Signing in again as someone else: bob goes offline, dave comes online
    // (nobody watches dave).
    bob.signin(&user("dave", &[])).await;
    assert_eq!(expect_watch(&mut ada).await, pair("offline", &["bob"]));
    ada.expect_silence(SILENCE).await;

    // Nobody is told about an unwatched user, and the watcher's own
    // re-sign-in replaces its list.
    ada.signin(&user("ada", &["dave"])).await;
    assert_eq!(expect_watch(&mut ada).await, pair("online", &["dave"]));
    let mut bob_again = server.connect().await;
    bob_again.signin(&user("bob", &[])).await;
    ada.expect_silence(SILENCE).await;

    // The internal channel is never listed.
    let channels = server.api().get("/channels", &[]).await.assert_ok();
    assert_eq!(channels["channels"], json!({}), "{channels}");
}

#[tokio::test]
async fn without_watchlist_events_nothing_is_sent() {
    let server = Server::start_app(&[]).await;
    let mut bob = server.connect().await;
    bob.signin(&user("bob", &[])).await;
    let mut ada = server.connect().await;
    ada.signin(&user("ada", &["bob"])).await;
    let mut carl = server.connect().await;
    carl.signin(&user("carl", &[])).await;
    bob.close().await;
    ada.expect_silence(ms(500)).await;
}

#[tokio::test]
async fn more_than_a_hundred_watched_users_is_refused_with_4302_but_signs_in() {
    let server = Server::start_app(&[ON]).await;
    let ids: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut ada = server.connect().await;
    let data = user("ada", &ids);
    let auth = signin_auth(APP_KEY, APP_SECRET, &ada.socket_id, &data);
    ada.send_json(json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": data}}))
        .await;
    let f = ada.expect_error(4302).await;
    assert!(f.raw.contains("100"), "{}", f.raw);
    ada.expect_event("pusher:signin_success").await;
    // The first hundred are watched.
    let mut u0 = server.connect().await;
    u0.signin(&user("u0", &[])).await;
    assert_eq!(expect_watch(&mut ada).await, pair("online", &["u0"]));
    let mut u100 = server.connect().await;
    u100.signin(&user("u100", &[])).await;
    ada.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn online_means_on_any_node_and_a_killed_nodes_users_go_offline() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let env = vec![
        (ON.0, ON.1.to_string()),
        ("CLUSTER_HEALTH_HEARTBEAT_INTERVAL", "200".to_string()),
        ("CLUSTER_HEALTH_NODE_TIMEOUT", "1000".to_string()),
        ("CLUSTER_HEALTH_CLEANUP_INTERVAL", "200".to_string()),
    ];
    let a = node_with(&redis, "wl1:", &env).await;
    let b = node_with(&redis, "wl1:", &env).await;
    // The nodes know each other (and so each other's state).
    acquainted(&a, &b).await;

    let mut bob_on_a = a.connect().await;
    bob_on_a.signin(&user("bob", &[])).await;
    let mut ada = b.connect().await;
    ada.signin(&user("ada", &["bob", "carl"])).await;
    // Bob is online on the other node.
    expect_online(&mut ada, &["bob"]).await;
    // Carl on A, then on B too: online once.
    let mut carl_on_a = a.connect().await;
    carl_on_a.signin(&user("carl", &[])).await;
    assert_eq!(expect_watch(&mut ada).await, pair("online", &["carl"]));
    let mut carl_on_b = b.connect().await;
    carl_on_b.signin(&user("carl", &[])).await;
    ada.expect_silence(SILENCE).await;
    // Bob leaves node A: offline on B.
    bob_on_a.close().await;
    assert_eq!(expect_watch(&mut ada).await, pair("offline", &["bob"]));
    // Node A dies with dora and one of carl's sockets on it: dora goes
    // offline when A is noticed dead; carl, still on B, stays online.
    let mut dora = a.connect().await;
    dora.signin(&user("dora", &[])).await;
    let mut eve = b.connect().await;
    eve.signin(&user("eve", &["dora", "carl"])).await;
    expect_online(&mut eve, &["carl", "dora"]).await;
    a.signal("KILL");
    assert_eq!(
        expect_watch_within(&mut eve, Duration::from_secs(5)).await,
        pair("offline", &["dora"])
    );
    ada.expect_silence(SILENCE).await;
    eve.expect_silence(SILENCE).await;
    drop((dora, carl_on_a, carl_on_b));
}
