//! The durable webhook queue (`QUEUE_DRIVER=redis`) on a real
//! `redis-server` of the test's own: events queued when the server is
//! killed with `kill -9` are all delivered after a restart; dead letters are
//! kept in Redis; a queue that cannot start refuses start-up.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::cluster::borrowed;
use common::receiver::{Receiver, Reply};
use common::redis::{RedisServer, Reply as RedisReply};
use common::*;
use serde_json::json;

/// The env of a server with one webhook to `url` and the durable queue on
/// `redis` under `prefix`.
fn env(
    redis: &RedisServer,
    prefix: &str,
    hooks: &serde_json::Value,
) -> Vec<(&'static str, String)> {
    vec![
        ("SOCKUDO_DEFAULT_APP_WEBHOOKS", hooks.to_string()),
        ("WEBHOOK_LEAVE_GRACE_MS", "0".into()),
        ("QUEUE_DRIVER", "redis".into()),
        ("REDIS_URL", redis.url()),
        ("DATABASE_REDIS_KEY_PREFIX", prefix.into()),
        // The restarted process is the same node: it holds its lists' lease.
        ("INSTANCE_PROCESS_ID", "queue-node".into()),
    ]
}

#[tokio::test]
async fn events_queued_when_the_server_is_killed_are_delivered_after_the_restart() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let rx = Receiver::start().await;
    // Down for now: every request is retried.
    rx.then(Reply::Status(503));
    let hooks = json!([{"url": rx.url("/"), "event_types": ["channel_occupied"],
        "retry": {"initial_backoff_ms": 200, "max_backoff_ms": 400}}]);
    let env = env(&redis, "whq1:", &hooks);
    let mut server = Server::start_app(&borrowed(&env)).await;
    let mut ws = server.connect().await;
    let channels: Vec<String> = (0..30).map(|i| format!("queued-{i}")).collect();
    // Spread over ~600 ms: most arrive while their lane is retrying a
    // batch, and must reach Redis all the same.
    for c in &channels {
        ws.subscribe(c).await;
        tokio::time::sleep(ms(20)).await;
    }
    rx.wait_requests(1, Duration::from_secs(5)).await;
    // Every event reaches its list within a batching window or two.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while redis.queued_webhook_events("whq1:") < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 30 events in Redis",
            redis.queued_webhook_events("whq1:")
        );
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(redis.queued_webhook_events("whq1:"), 30);
    assert!(rx.delivered().is_empty());

    server.signal("KILL");
    assert!(server.wait_exit(Duration::from_secs(5)).await.is_some());
    drop(ws);
    rx.then(Reply::Status(200));
    let restarted = Server::start_app(&borrowed(&env)).await;

    let events = rx
        .wait_delivered(Duration::from_secs(10), "every queued event", |e| {
            let seen: HashSet<&str> = e.iter().filter_map(|e| e["channel"].as_str()).collect();
            channels.iter().all(|c| seen.contains(c.as_str()))
        })
        .await;
    assert!(events.iter().all(|e| e["name"] == "channel_occupied"));
    // At least once: a batch sent again after the restart carries the id
    // it had before, so a receiver can drop it.
    let mut bodies: HashMap<String, HashSet<String>> = HashMap::new();
    for r in rx.requests() {
        r.assert_signed(APP_KEY, APP_SECRET);
        let id = r.header("x-switchyard-webhook-id").unwrap().to_string();
        let events: Vec<String> = r.events().iter().map(|e| e.to_string()).collect();
        bodies.entry(id).or_default().insert(events.join(","));
    }
    for (id, variants) in &bodies {
        assert_eq!(
            variants.len(),
            1,
            "webhook id {id} carried different events"
        );
    }
    // Delivered means trimmed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while redis.queued_webhook_events("whq1:") != 0 {
        assert!(std::time::Instant::now() < deadline, "lists not emptied");
        tokio::time::sleep(ms(50)).await;
    }
    drop(restarted);
}

#[tokio::test]
async fn a_refused_batch_is_kept_in_the_dead_letter_list() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let rx = Receiver::start().await;
    rx.plan(&[Reply::Status(410)]);
    let hooks = json!([{"url": rx.url("/gone"), "event_types": ["channel_occupied"]}]);
    let env = env(&redis, "whq2:", &hooks);
    let server = Server::start_app(&borrowed(&env)).await;
    let mut ws = server.connect().await;
    ws.subscribe("doomed").await;
    // One at a time: channels may take different lanes, and the 410 is
    // for the first request.
    rx.wait_requests(1, Duration::from_secs(5)).await;
    ws.subscribe_private("private-after").await;
    rx.wait_delivered(Duration::from_secs(5), "the next batch", |e| {
        e.iter().any(|e| e["channel"] == "private-after")
    })
    .await;
    let dead = match redis.command(&["LRANGE", "whq2:webhooks:dead", "0", "-1"]) {
        RedisReply::Array(items) => items,
        other => panic!("LRANGE: {other:?}"),
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    let record: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(record["app_id"], APP_ID);
    assert_eq!(record["url"], rx.url("/gone"));
    assert_eq!(
        record["body"]["events"],
        json!([{"name": "channel_occupied", "channel": "doomed"}])
    );
    assert_eq!(
        record["webhook_id"].as_str(),
        rx.requests()[0].header("x-switchyard-webhook-id")
    );
    assert!(server.logs().contains("webhook_dead_letter"));
}

#[tokio::test]
async fn a_redis_queue_that_cannot_start_refuses_start_up() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let hooks =
        json!([{"url": "http://127.0.0.1:9/", "event_types": ["channel_occupied"]}]).to_string();
    let mut env = app_env();
    env.extend([
        ("SOCKUDO_DEFAULT_APP_WEBHOOKS", hooks.as_str()),
        ("QUEUE_DRIVER", "redis"),
        ("REDIS_URL", url.as_str()),
    ]);
    let failure = Server::start_expect_failure(&env, None, &[]).await;
    assert!(!failure.status.success());
    assert!(
        failure.output.contains("QUEUE_DRIVER") && failure.output.contains("webhook queue"),
        "{}",
        failure.output
    );
    assert!(
        !failure.output.contains(&url),
        "the URL is not echoed: {}",
        failure.output
    );

    // Without webhooks the same setting starts (nothing to queue).
    let mut env = app_env();
    env.extend([("QUEUE_DRIVER", "redis"), ("REDIS_URL", url.as_str())]);
    let server = Server::start_app(&env).await;
    server.connect().await;
}
