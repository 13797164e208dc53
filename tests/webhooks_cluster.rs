//! Webhooks in a cluster: two real nodes on the test's own `redis-server`
//! and one receiver. Each cluster-wide change is told once, by one node —
//! a channel occupied on both nodes is occupied once, a user on both nodes
//! joins once — and when a node is killed, what it can no longer tell (its
//! sockets' departures, and changes it was to tell) the other node tells.

mod common;

use std::time::Duration;

use common::cluster::{acquainted, node_with};
use common::receiver::Receiver;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

/// A node's env: the webhook to `rx`, leaves told at once, a fast cluster
/// clock (heartbeat 200 ms, dead after 1 s: warm-up 1 s).
fn env(rx: &Receiver) -> Vec<(&'static str, String)> {
    let hooks = json!([{"url": rx.url("/"), "event_types": [
        "channel_occupied", "channel_vacated", "member_added", "member_removed",
        "subscription_count"]}]);
    vec![
        ("SOCKUDO_DEFAULT_APP_WEBHOOKS", hooks.to_string()),
        ("WEBHOOK_LEAVE_GRACE_MS", "0".into()),
        ("CLUSTER_HEALTH_HEARTBEAT_INTERVAL", "200".into()),
        ("CLUSTER_HEALTH_NODE_TIMEOUT", "1000".into()),
        ("CLUSTER_HEALTH_CLEANUP_INTERVAL", "200".into()),
    ]
}

fn count(events: &[Value], name: &str, channel: &str) -> usize {
    events
        .iter()
        .filter(|e| e["name"] == name && e["channel"] == channel)
        .count()
}

fn count_user(events: &[Value], name: &str, channel: &str, user: &str) -> usize {
    events
        .iter()
        .filter(|e| e["name"] == name && e["channel"] == channel && e["user_id"] == user)
        .count()
}

/// Both nodes know each other and have warmed up (they own channels).
async fn warmed_up(a: &Server, b: &Server) {
    acquainted(a, b).await;
    tokio::time::sleep(ms(1300)).await;
}

#[tokio::test]
async fn each_cluster_wide_change_is_told_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let rx = Receiver::start().await;
    let a = node_with(&redis, "wc1:", &env(&rx)).await;
    let b = node_with(&redis, "wc1:", &env(&rx)).await;
    warmed_up(&a, &b).await;
    let start = rx.delivered().len();

    let channels: Vec<String> = (0..12).map(|i| format!("both-{i}")).collect();
    let rooms: Vec<String> = (0..12).map(|i| format!("presence-both-{i}")).collect();
    let mut on_a = a.connect().await;
    let mut on_b = b.connect().await;
    let mut bob = b.connect().await;
    for c in &channels {
        on_a.subscribe(c).await;
        a.api()
            .wait_channel_info(c, "subscription_count", |v| v["subscription_count"] == 1)
            .await;
        on_b.subscribe(c).await;
    }
    // Whole rounds, so no socket reads another's member_added first.
    for (ws, user) in [(&mut on_a, "ada"), (&mut on_b, "ada"), (&mut bob, "bob")] {
        for r in &rooms {
            ws.subscribe_presence(r, user, json!({})).await;
        }
    }
    // Everything leaves: first B's sockets, then A's.
    on_b.close().await;
    bob.close().await;
    for c in &channels {
        a.api()
            .wait_channel_info(c, "subscription_count", |v| v["subscription_count"] == 1)
            .await;
    }
    on_a.close().await;

    rx.wait_delivered(Duration::from_secs(5), "every channel vacated", |e| {
        channels
            .iter()
            .chain(&rooms)
            .all(|c| count(e, "channel_vacated", c) >= 1)
    })
    .await;
    tokio::time::sleep(ms(500)).await;
    let events: Vec<Value> = rx.delivered().split_off(start);
    for c in channels.iter().chain(&rooms) {
        assert_eq!(count(&events, "channel_occupied", c), 1, "{c}: {events:#?}");
        assert_eq!(count(&events, "channel_vacated", c), 1, "{c}: {events:#?}");
    }
    for r in &rooms {
        for user in ["ada", "bob"] {
            assert_eq!(
                count_user(&events, "member_added", r, user),
                1,
                "{r} {user}"
            );
            assert_eq!(
                count_user(&events, "member_removed", r, user),
                1,
                "{r} {user}"
            );
        }
    }
    for c in &channels {
        let counts: Vec<u64> = events
            .iter()
            .filter(|e| e["name"] == "subscription_count" && e["channel"] == c.as_str())
            .map(|e| e["subscription_count"].as_u64().unwrap())
            .collect();
        assert!(counts.contains(&2), "{c}: the cluster's count, {counts:?}");
        assert_eq!(counts.last(), Some(&0), "{c}: {counts:?}");
    }
}

#[tokio::test]
async fn a_killed_nodes_departures_and_pending_changes_are_told_by_the_other() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let rx = Receiver::start().await;
    let a = node_with(&redis, "wc2:", &env(&rx)).await;
    let mut b = node_with(&redis, "wc2:", &env(&rx)).await;
    warmed_up(&a, &b).await;

    // Channels held only by B's sockets; about half are B's to tell.
    let held: Vec<String> = (0..12).map(|i| format!("presence-held-{i}")).collect();
    let mut on_b = b.connect().await;
    for c in &held {
        on_b.subscribe_presence(c, "carol", json!({})).await;
    }
    rx.wait_delivered(Duration::from_secs(5), "B's channels occupied", |e| {
        held.iter()
            .all(|c| count_user(e, "member_added", c, "carol") == 1)
    })
    .await;

    b.signal("KILL");
    assert!(b.wait_exit(Duration::from_secs(5)).await.is_some());
    // Before A notices: new channels on A, some of which B was to tell.
    let fresh: Vec<String> = (0..12).map(|i| format!("fresh-{i}")).collect();
    let mut on_a = a.connect().await;
    for c in &fresh {
        on_a.subscribe(c).await;
    }

    rx.wait_delivered(Duration::from_secs(6), "told by A", |e| {
        held.iter().all(|c| count(e, "channel_vacated", c) >= 1)
            && fresh.iter().all(|c| count(e, "channel_occupied", c) >= 1)
    })
    .await;
    tokio::time::sleep(ms(300)).await;
    let events = rx.delivered();
    for c in &held {
        assert_eq!(count_user(&events, "member_removed", c, "carol"), 1, "{c}");
        assert_eq!(count(&events, "channel_vacated", c), 1, "{c}");
    }
    for c in &fresh {
        assert_eq!(count(&events, "channel_occupied", c), 1, "{c}: {events:#?}");
    }
}
