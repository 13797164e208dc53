//! What several nodes hold together (`ADAPTER_DRIVER=redis`): presence
//! rosters and news once per user over the cluster, the HTTP API's channel
//! and user queries, `terminate_connections` and `sendToUser`, the per-app
//! connection limit — and that all of it is right again after a node dies
//! (`kill -9`) or Redis goes away and comes back. Real binaries, a real
//! `redis-server` of the test's own, real WebSocket clients and signed HTTP
//! requests.
//!
//! A node learns another's changes within the relay latency (about a
//! millisecond here); where a test acts on one node right after a change on
//! another, it first waits for the change to be visible there (through the
//! API), as a client of a real cluster would see it a moment later.

mod common;

use common::cluster::*;
use common::redis::RedisServer;
use common::security::{pick_port, scrape};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ROOM: &str = "presence-room";

/// Wait until `server`'s API lists exactly `want` (sorted) as the users of
/// `channel`.
async fn wait_users(server: &Server, channel: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server
            .api()
            .get(&format!("/channels/{channel}/users"), &[])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.text);
        let mut ids: Vec<String> = r.json()["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        if ids == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "users of {channel} never became {want:?}; last {ids:?}\n{}",
            server.logs()
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// A node's settings for its metrics on `port`.
fn with_metrics(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("METRICS_ENABLED", "true".to_string()),
        ("METRICS_HOST", "127.0.0.1".to_string()),
        ("METRICS_PORT", port.to_string()),
    ]
}

/// The value of the one series of `name` (labelled by port only).
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(&format!("sockudo_{name}{{"))?;
        rest.split_once("} ")?.1.parse().ok()
    })
}

fn ids(roster: &Value) -> Vec<String> {
    let mut ids: Vec<String> = roster["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

async fn expect_member(ws: &mut Ws, event: &str, user_id: &str) -> Frame {
    let f = ws
        .expect_channel_event(&format!("pusher_internal:{event}"), ROOM)
        .await;
    assert_eq!(f.data_json()["user_id"], user_id, "{}", f.raw);
    f
}

#[tokio::test]
async fn presence_is_one_roster_over_the_nodes_and_news_comes_once_per_user() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "p1:").await;
    let b = node(&redis, "p1:").await;
    let mut ada = a.connect().await;
    ada.subscribe_presence(ROOM, "1", json!({"name": "Ada"}))
        .await;
    wait_users(&b, ROOM, &["1"]).await;

    // Bob joins on B: his roster has Ada (from A); Ada hears of him once.
    let mut bob_b = b.connect().await;
    let roster = bob_b
        .subscribe_presence(ROOM, "2", json!({"name": "Bob"}))
        .await;
    assert_eq!(ids(&roster), ["1", "2"]);
    assert_eq!(roster["count"], 2);
    assert_eq!(roster["hash"]["1"], json!({"name": "Ada"}));
    let f = expect_member(&mut ada, "member_added", "2").await;
    assert_eq!(f.data_json()["user_info"], json!({"name": "Bob"}));

    // Bob's second socket, on A: not news anywhere.
    wait_users(&a, ROOM, &["1", "2"]).await;
    let mut bob_a = a.connect().await;
    let roster = bob_a
        .subscribe_presence(ROOM, "2", json!({"name": "Bob"}))
        .await;
    assert_eq!(roster["count"], 2);
    ada.expect_silence(SILENCE).await;
    bob_b.expect_silence(SILENCE).await;

    // Both nodes' API: 3 sockets, 2 users, either way round.
    for node in [&a, &b] {
        let info = node
            .api()
            .wait_channel_info(ROOM, "user_count,subscription_count", |v| {
                v["subscription_count"] == 3
            })
            .await;
        assert_eq!(info["occupied"], true);
        assert_eq!(info["user_count"], 2, "{info}");
    }

    // Bob leaves B: still on A, nobody is told.
    bob_b.close().await;
    ada.expect_silence(SILENCE).await;
    // And A: gone from the cluster — told on both nodes, once.
    let mut cy_b = b.connect().await;
    cy_b.subscribe_presence(ROOM, "3", json!({})).await;
    expect_member(&mut ada, "member_added", "3").await;
    bob_a.close().await;
    expect_member(&mut ada, "member_removed", "2").await;
    expect_member(&mut cy_b, "member_removed", "2").await;
    ada.expect_silence(SILENCE).await;
    cy_b.expect_silence(SILENCE).await;
    wait_users(&b, ROOM, &["1", "3"]).await;
    wait_users(&a, ROOM, &["1", "3"]).await;
}

#[tokio::test]
async fn the_channel_api_of_any_node_reports_the_whole_cluster() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "p2:").await;
    let b = node(&redis, "p2:").await;
    let mut on_a = a.connect().await;
    let mut on_b1 = b.connect().await;
    let mut on_b2 = b.connect().await;
    on_a.subscribe("orders").await;
    on_b1.subscribe("orders").await;
    on_b2.subscribe("news").await;

    let info = a
        .api()
        .wait_channel_info("orders", "subscription_count", |v| {
            v["subscription_count"] == 2
        })
        .await;
    assert_eq!(info["occupied"], true);
    // `news` exists on B only; A lists it with B's count.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = a
            .api()
            .get("/channels", &[("info", "subscription_count")])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.text);
        let channels = r.json()["channels"].clone();
        if channels["news"]["subscription_count"] == 1 {
            assert_eq!(channels["orders"]["subscription_count"], 2, "{channels}");
            break;
        }
        assert!(Instant::now() < deadline, "A never listed news: {channels}");
        tokio::time::sleep(ms(20)).await;
    }
    let r = a
        .api()
        .get("/channels", &[("filter_by_prefix", "ne")])
        .await;
    assert_eq!(r.json()["channels"], json!({"news": {}}));

    // Everyone leaves B: A sees `news` vacated and `orders` down to its own.
    on_b1.close().await;
    on_b2.close().await;
    a.api()
        .wait_channel_info("news", "subscription_count", |v| v["occupied"] == false)
        .await;
    let info = a
        .api()
        .wait_channel_info("orders", "subscription_count", |v| {
            v["subscription_count"] == 1
        })
        .await;
    assert_eq!(info["occupied"], true);
}

#[tokio::test]
async fn terminate_connections_force_reconnect_and_send_to_user_reach_the_users_sockets_on_every_node(
) {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "p3:").await;
    let b = node(&redis, "p3:").await;
    let mut ada_a = a.connect().await;
    let mut ada_b = b.connect().await;
    let mut bob_b = b.connect().await;
    for (ws, id) in [(&mut ada_a, "42"), (&mut ada_b, "42"), (&mut bob_b, "7")] {
        ws.signin(&json!({ "id": id }).to_string()).await;
        // What pusher-js does after signing in.
        ws.subscribe(&format!("#server-to-user-{id}")).await;
    }
    a.api()
        .wait_channel_info("%23server-to-user-42", "subscription_count", |v| {
            v["subscription_count"] == 2
        })
        .await;

    // sendToUser through A: both of user 42's sockets, not user 7.
    a.api().publish("#server-to-user-42", "note", "hello").await;
    for ws in [&mut ada_a, &mut ada_b] {
        let f = ws.expect_channel_event("note", "#server-to-user-42").await;
        assert_eq!(f.data_str(), "hello");
    }
    bob_b.expect_silence(SILENCE).await;

    // terminate_connections through A: closed on A and on B.
    let r = a.api().post("/users/42/terminate_connections", "{}").await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    assert_eq!(r.json(), json!({}));
    for ws in [&mut ada_a, &mut ada_b] {
        ws.expect_error(4009).await;
        ws.expect_close(4009).await;
    }
    bob_b.assert_alive().await;

    // force_reconnect through A: bob, on B, is told to reconnect (4200).
    let r = a.api().post("/users/7/force_reconnect", "{}").await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    bob_b.expect_error(4200).await;
    bob_b.expect_close(4200).await;
}

#[tokio::test]
async fn the_per_app_connection_limit_counts_every_node() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limit = [("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "3".to_string())];
    let a = node_with(&redis, "p4:", &limit).await;
    let b = node_with(&redis, "p4:", &limit).await;
    let _a1 = a.connect().await;
    let _a2 = a.connect().await;
    let _b1 = b.connect().await;
    // Each node learns the other's count at its next heartbeat (1 s by
    // default): from then on the fourth connection is refused on either.
    refused_within_a_heartbeat_or_so(&b, "B never counted A's connections").await;
    refused_within_a_heartbeat_or_so(&a, "A never counted B's connection").await;
}

/// Open connections to `node` until one is refused with 4004; each one
/// accepted before (the stated slack: at most a heartbeat) is closed again
/// at once so the count stays where it was.
async fn refused_within_a_heartbeat_or_so(node: &Server, what: &str) {
    let path = format!("/app/{APP_KEY}?protocol=7&client=rust");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut ws = node.connect_raw(&path).await;
        let f = ws.recv().await;
        if f.event() == "pusher:error" {
            assert_eq!(f.json["data"]["code"], 4004, "{}", f.raw);
            return;
        }
        assert_eq!(f.event(), "pusher:connection_established", "{}", f.raw);
        assert!(Instant::now() < deadline, "{what}");
        ws.close().await;
        tokio::time::sleep(ms(100)).await;
    }
}

#[tokio::test]
async fn a_killed_nodes_members_leave_every_other_node_within_five_seconds() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let metrics_port = pick_port();
    let a = node_with(&redis, "p5:", &with_metrics(metrics_port)).await;
    let mut b = node(&redis, "p5:").await;
    let mut ada = a.connect().await;
    ada.subscribe_presence(ROOM, "1", json!({})).await;
    let mut bob = b.connect().await;
    bob.subscribe_presence(ROOM, "2", json!({})).await;
    expect_member(&mut ada, "member_added", "2").await;
    a.api()
        .wait_channel_info(ROOM, "subscription_count", |v| v["subscription_count"] == 2)
        .await;

    b.signal("KILL");
    let killed = Instant::now();
    b.wait_exit(Duration::from_secs(5)).await.expect("B exited");
    let f = ada.recv_timeout(Duration::from_secs(6)).await;
    let took = killed.elapsed();
    assert_eq!(f.event(), "pusher_internal:member_removed", "{}", f.raw);
    assert_eq!(f.data_json()["user_id"], "2");
    assert!(
        took < Duration::from_secs(5),
        "member_removed after {took:?}"
    );
    // Not before the node timeout (3 s): a node is not declared dead early.
    assert!(
        took > Duration::from_millis(2500),
        "member_removed after {took:?}"
    );
    let info = a
        .api()
        .channel_info(ROOM, "user_count,subscription_count")
        .await;
    assert_eq!(info["user_count"], 1, "{info}");
    assert_eq!(info["subscription_count"], 1, "{info}");
    ada.expect_silence(SILENCE).await;
    let text = scrape(metrics_port).await;
    assert_eq!(
        series(&text, "cluster_dead_nodes_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(series(&text, "cluster_nodes"), Some(0.0), "{text}");
    assert!(
        a.logs().contains("cluster_node_lost"),
        "the death is logged\n{}",
        a.logs()
    );
}

#[tokio::test]
async fn a_shorter_node_timeout_notices_a_dead_node_sooner() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let fast = [
        ("CLUSTER_HEALTH_HEARTBEAT_INTERVAL", "200".to_string()),
        ("CLUSTER_HEALTH_NODE_TIMEOUT", "600".to_string()),
        ("CLUSTER_HEALTH_CLEANUP_INTERVAL", "100".to_string()),
    ];
    let a = node_with(&redis, "p6:", &fast).await;
    let b = node_with(&redis, "p6:", &fast).await;
    let mut ada = a.connect().await;
    ada.subscribe_presence(ROOM, "1", json!({})).await;
    let mut bob = b.connect().await;
    bob.subscribe_presence(ROOM, "2", json!({})).await;
    expect_member(&mut ada, "member_added", "2").await;
    // Both nodes alive and quiet for several timeouts: nobody is declared dead.
    ada.expect_silence(Duration::from_millis(1500)).await;

    b.signal("KILL");
    let killed = Instant::now();
    expect_member(&mut ada, "member_removed", "2").await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "member_removed after {took:?}"
    );
}

#[tokio::test]
async fn after_a_redis_outage_presence_and_counts_are_right_again_and_nothing_is_told_twice() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let metrics_port = pick_port();
    let a = node_with(&redis, "p7:", &with_metrics(metrics_port)).await;
    let b = node(&redis, "p7:").await;
    let mut ada = a.connect().await;
    ada.subscribe_presence(ROOM, "1", json!({})).await;
    let mut bob = b.connect().await;
    bob.subscribe_presence(ROOM, "2", json!({})).await;
    expect_member(&mut ada, "member_added", "2").await;
    let mut dan = b.connect().await;
    dan.subscribe_presence(ROOM, "4", json!({})).await;
    expect_member(&mut ada, "member_added", "4").await;

    redis.stop();
    // While the nodes cannot talk: Bob leaves B, Cy joins B. A cannot know.
    bob.close().await;
    let mut cy = b.connect().await;
    cy.subscribe_presence(ROOM, "3", json!({})).await;
    // Outage longer than the node timeout: still nobody is declared dead
    // (each node knows it is the one cut off), so Dan is never removed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis.restart().await;

    // Resynchronised: A tells Ada of exactly the difference, once each.
    let mut told = vec![];
    for _ in 0..2 {
        let f = ada.recv_timeout(Duration::from_secs(15)).await;
        told.push(format!(
            "{} {}",
            f.event(),
            f.data_json()["user_id"].as_str().unwrap_or_default()
        ));
    }
    told.sort();
    assert_eq!(
        told,
        [
            "pusher_internal:member_added 3",
            "pusher_internal:member_removed 2"
        ]
    );
    ada.expect_silence(Duration::from_millis(1500)).await;
    wait_users(&a, ROOM, &["1", "3", "4"]).await;
    let info = a.api().channel_info(ROOM, "subscription_count").await;
    assert_eq!(info["subscription_count"], 3, "{info}");
    let text = scrape(metrics_port).await;
    assert_eq!(
        series(&text, "cluster_dead_nodes_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(series(&text, "cluster_nodes"), Some(1.0), "{text}");
    // B's state was applied again after the outage (and once at the start).
    assert!(
        series(&text, "cluster_resyncs_total").unwrap() >= 2.0,
        "{text}"
    );
}
