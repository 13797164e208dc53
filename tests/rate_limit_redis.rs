//! `RATE_LIMITER_DRIVER=redis`: two real nodes on one real `redis-server`
//! of the test's own share the per-address API limit, the WebSocket-upgrade
//! limit and the per-app budgets, refusing with the memory driver's 429;
//! nodes with different prefixes share nothing; while Redis hangs or is
//! gone the API answers at once and each node limits on its own, and once
//! Redis is back the limits are shared again (logged once each way, and in
//! the metrics). The memory driver: tests/security_rate_limit.rs.

mod common;

use common::limits::{assert_429_body, assert_app_429, retry_after, signed_get, signed_post};
use common::prereq;
use common::redis::RedisServer;
use common::security::*;
use common::*;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A node of the shared limiter: the standard app, the `redis` driver on
/// `redis` with key prefix `prefix`, and `extra`; returned once it has
/// reached Redis (its start-up line), so no check races the first connect.
async fn node(redis: &RedisServer, prefix: &str, extra: &[(&str, &str)]) -> Server {
    let url = redis.url();
    let mut env = vec![
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_DRIVER", "redis"),
        ("REDIS_URL", url.as_str()),
        ("RATE_LIMITER_REDIS_PREFIX", prefix),
    ];
    env.extend_from_slice(extra);
    let server = Server::start_app(&env).await;
    server
        .wait_for_logs("the node reached Redis", ms(5000), |l| {
            l.contains("limits are shared through Redis")
        })
        .await;
    server
}

/// An API client of `server` from local address `from` (127.x.y.z): a
/// client address, and so a bucket, of its own.
fn client(server: &Server, from: &str) -> Api {
    let from: IpAddr = from.parse().unwrap();
    Api::with_client(
        server.http_base(),
        APP_ID,
        APP_KEY,
        APP_SECRET,
        http_client(Some(from)),
    )
}

/// Lines of `server`'s log whose `event` field is `event`.
fn events(server: &Server, event: &str) -> usize {
    server
        .logs()
        .lines()
        .filter(|l| text_field(l, "event") == Some(event))
        .count()
}

const API_4_PER_MINUTE: [(&str, &str); 2] = [
    ("RATE_LIMITER_API_MAX_REQUESTS", "4"),
    ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
];

#[tokio::test]
async fn api_limit_is_shared_by_the_nodes_and_refuses_like_the_memory_driver() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "shared:", &API_4_PER_MINUTE).await;
    let b = node(&redis, "shared:", &API_4_PER_MINUTE).await;
    let (a_api, b_api) = (a.api(), b.api());
    // 4 per minute is a token every 15 s: nothing refills during the test.
    let mut remaining = Vec::new();
    for api in [&a_api, &b_api, &a_api, &b_api] {
        let r = api.get_channels_with(&[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-ratelimit-limit"), Some("4"), "{r:?}");
        remaining.push(r.header("x-ratelimit-remaining").unwrap_or("-").to_string());
    }
    assert_eq!(
        remaining,
        ["3", "2", "1", "0"],
        "one count across both nodes"
    );
    // The 5th is refused whichever node gets it.
    let over = [
        a_api.get_channels_with(&[]).await,
        b_api.get_channels_with(&[]).await,
    ];

    // The memory driver's refusal of the same sequence, on one node.
    let memory = Server::start_app(&[
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_DRIVER", "memory"),
        API_4_PER_MINUTE[0],
        API_4_PER_MINUTE[1],
    ])
    .await;
    let m_api = memory.api();
    for _ in 0..4 {
        assert_eq!(m_api.get_channels_with(&[]).await.status, 200);
    }
    let expected = m_api.get_channels_with(&[]).await;
    let expected_body = assert_429_body(&expected);
    assert_eq!(
        expected_body["message"],
        "Rate limit exceeded. Please try again later."
    );
    let expected_wait = retry_after(&expected);
    for r in &over {
        assert_eq!(assert_429_body(r), expected_body, "the one 429 body");
        for h in ["content-type", "x-ratelimit-limit", "x-ratelimit-remaining"] {
            assert_eq!(r.header(h), expected.header(h), "{h}: {r:?}");
        }
        assert!(r.header("x-ratelimit-after").is_some(), "{r:?}");
        // The next token 15 s after the first request, rounded up: both
        // drivers say so (a slow machine may have taken a second of it).
        let wait = retry_after(r);
        assert!(
            (13..=15).contains(&wait) && wait.abs_diff(expected_wait) <= 1,
            "Retry-After {wait} (memory driver: {expected_wait})"
        );
    }
    // The bucket is Redis's, under the prefix, per client address.
    let keys = redis.keys("*");
    assert!(
        keys.contains(&"shared:gcra:api:127.0.0.1".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("shared:gcra:")),
        "{keys:?}"
    );
    for server in [&a, &b] {
        server
            .wait_for_logs("rate_limited warn line", ms(3000), |l| {
                l.lines().any(|line| {
                    line.contains(" WARN ")
                        && text_field(line, "event") == Some("rate_limited")
                        && text_field(line, "limiter") == Some("api")
                        && text_field(line, "peer") == Some("127.0.0.1")
                })
            })
            .await;
    }
}

#[tokio::test]
async fn ws_upgrade_limit_is_shared_by_the_nodes() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limit = [
        ("RATE_LIMITER_WS_MAX_REQUESTS", "2"),
        ("RATE_LIMITER_WS_WINDOW_SECONDS", "60"),
    ];
    let a = node(&redis, "ws:", &limit).await;
    let b = node(&redis, "ws:", &limit).await;
    let mut on_a = a.connect().await;
    let mut on_b = b.connect().await;
    for server in [&a, &b] {
        let err = Ws::try_open_with(&server.app_ws_url(), &[], None)
            .await
            .err()
            .expect("the 3rd upgrade, on either node, is refused");
        assert_eq!(upgrade_status(&err), Some(429), "{err}");
        let WsError::Http(resp) = &err else {
            panic!("{err}")
        };
        let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or(b"")).unwrap();
        assert_eq!(body["code"], "limit_exceeded", "{body}");
        assert_eq!(
            body["message"], "Rate limit exceeded. Please try again later.",
            "{body}"
        );
        let wait: u64 = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After on the refused upgrade");
        assert!((1..=30).contains(&wait), "a token every 30 s: {wait}");
    }
    // Open sockets are not touched; the API has a limit of its own.
    on_a.assert_alive().await;
    on_b.assert_alive().await;
    assert_eq!(a.api().get_channels_with(&[]).await.status, 200);
    assert_eq!(
        redis.keys("ws:gcra:websocket_connect:*"),
        ["ws:gcra:websocket_connect:127.0.0.1"]
    );
}

#[tokio::test]
async fn per_app_budgets_are_shared_by_the_nodes() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let budgets = [
        ("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "2"),
        ("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", "2"),
    ];
    let a = node(&redis, "apps:", &budgets).await;
    let b = node(&redis, "apps:", &budgets).await;
    let (a_api, b_api) = (a.api(), b.api());
    let mut ws = b.connect().await;
    ws.subscribe("c-3").await;

    // One event to 2 channels on A is the whole budget (events count per
    // channel, as with the memory driver): B's next event is refused. A
    // token comes back every 500 ms, so the steps must fit in that.
    let mut w = prereq::Window::new("2 events on A, then 1 on B", ms(500), ms(1100));
    let (tag, spent, over) = loop {
        w.start().await;
        let tag = format!("refused-{}", w.retries());
        let spent = signed_post(
            &a_api,
            "/events",
            &json!({"name": "e", "channels": ["c-1", "c-2"], "data": "x"}),
        )
        .await;
        let over = signed_post(
            &b_api,
            "/events",
            &json!({"name": "e", "channel": "c-3", "data": tag}),
        )
        .await;
        if w.conclusive(over.status == 429) {
            break (tag, spent, over);
        }
    };
    assert_eq!(spent.status, 200, "{spent:?}");
    assert_app_429(&over);
    b.wait_for_logs("backend_event limit logged on B", ms(3000), |l| {
        l.lines().any(|line| {
            text_field(line, "event") == Some("rate_limited")
                && text_field(line, "limiter") == Some("backend_event")
        })
    })
    .await;
    // The refused event never reaches the channel: a later one on the same
    // node (there is no bridge between nodes here) fences it.
    tokio::time::sleep(ms(1100)).await; // a full bucket again
    let marker = signed_post(
        &b_api,
        "/events",
        &json!({"name": "e", "channel": "c-3", "data": "marker"}),
    )
    .await;
    assert_eq!(marker.status, 200, "{marker:?}");
    loop {
        let f = ws.expect_channel_event("e", "c-3").await;
        assert_ne!(f.data_str(), tag, "the refused event was delivered");
        if f.data_str() == "marker" {
            break;
        }
    }

    // Batches count their items: 1 on A, 1 on B, then 1 more on A.
    tokio::time::sleep(ms(1100)).await; // full again after the marker
    let batch = |tag: &str| json!({"batch": [{"name": "be", "channel": "c-3", "data": tag}]});
    let mut w = prereq::Window::new("batches of 1 on A, B, A", ms(500), ms(1100));
    let (spent, over) = loop {
        w.start().await;
        let spent = [
            signed_post(&a_api, "/batch_events", &batch("1"))
                .await
                .status,
            signed_post(&b_api, "/batch_events", &batch("2"))
                .await
                .status,
        ];
        let over = signed_post(&a_api, "/batch_events", &batch("3")).await;
        if w.conclusive(over.status == 429) {
            break (spent, over);
        }
    };
    assert_eq!(spent, [200, 200]);
    assert_app_429(&over);

    // Reads have their own shared budget.
    let mut w = prereq::Window::new("reads on A, B, A", ms(500), ms(1100));
    let (spent, over) = loop {
        w.start().await;
        let spent = [
            signed_get(&a_api, "/channels").await.status,
            signed_get(&b_api, "/channels").await.status,
        ];
        let over = signed_get(&a_api, "/channels").await;
        if w.conclusive(over.status == 429) {
            break (spent, over);
        }
    };
    assert_eq!(spent, [200, 200]);
    assert_app_429(&over);
    assert_eq!(
        redis.keys("apps:gcra:*:test-app"),
        [
            "apps:gcra:backend_events:test-app",
            "apps:gcra:read_requests:test-app"
        ]
    );
}

#[tokio::test]
async fn nodes_with_different_prefixes_do_not_share_counters() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limit = [
        ("RATE_LIMITER_API_MAX_REQUESTS", "2"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ];
    let east = node(&redis, "east:", &limit).await;
    let west = node(&redis, "west:", &limit).await;
    let (e, w) = (east.api(), west.api());
    for (name, api) in [("east", &e), ("west", &w)] {
        let statuses = [
            api.get_channels_with(&[]).await.status,
            api.get_channels_with(&[]).await.status,
        ];
        assert_eq!(statuses, [200, 200], "{name} has a bucket of its own");
    }
    assert_429_body(&e.get_channels_with(&[]).await);
    assert_429_body(&w.get_channels_with(&[]).await);
    assert!(redis
        .keys("east:*")
        .contains(&"east:gcra:api:127.0.0.1".to_string()));
    assert!(redis
        .keys("west:*")
        .contains(&"west:gcra:api:127.0.0.1".to_string()));
}

#[tokio::test]
async fn shared_buckets_follow_the_trusted_client_address() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limit = [
        ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
        ("RATE_LIMITER_API_TRUST_HOPS", "1"),
    ];
    let a = node(&redis, "hops:", &limit).await;
    let b = node(&redis, "hops:", &limit).await;
    let (a_api, b_api) = (a.api(), b.api());
    let xff = |v| [("X-Forwarded-For", v)];
    assert_eq!(a_api.get_channels_with(&xff("10.1.1.1")).await.status, 200);
    // The same forwarded client on the other node: its bucket is spent.
    assert_429_body(&b_api.get_channels_with(&xff("10.1.1.1")).await);
    // Another forwarded client has a bucket of its own.
    assert_eq!(b_api.get_channels_with(&xff("10.1.1.2")).await.status, 200);
    // One trusted hop: the rightmost entry is the client, whatever the left says.
    assert_429_body(&a_api.get_channels_with(&xff("10.7.7.7, 10.1.1.2")).await);
    assert_eq!(
        redis.keys("hops:gcra:api:*"),
        ["hops:gcra:api:10.1.1.1", "hops:gcra:api:10.1.1.2"]
    );
    b.wait_for_logs("peer is the forwarded address", ms(3000), |l| {
        l.lines().any(|line| {
            text_field(line, "event") == Some("rate_limited")
                && text_field(line, "peer") == Some("10.1.1.1")
        })
    })
    .await;
}

/// The bound on an answer while Redis is hung: a check gives up on Redis
/// after 100 ms; the redis crate itself would wait a second.
const PROMPT: Duration = Duration::from_millis(750);

/// `n` requests from `api`: their statuses, each answered within [`PROMPT`];
/// the requests after the first (Redis already known to be down) within
/// 300 ms together, i.e. without asking Redis again.
async fn prompt_statuses(api: &Api, n: usize, what: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut rest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let r = api.get_channels_with(&[]).await;
        let took = started.elapsed();
        assert!(took < PROMPT, "{what}: request {i} took {took:?}");
        if i > 0 {
            rest += took;
        }
        statuses.push(r.status);
    }
    assert!(
        rest < ms(300),
        "{what}: requests after the first took {rest:?}: they should not wait for Redis"
    );
    statuses
}

#[tokio::test]
async fn a_redis_outage_falls_back_to_per_node_limits_at_once_and_recovers() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let metrics_port = pick_port().to_string();
    let limit = [
        ("RATE_LIMITER_API_MAX_REQUESTS", "3"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ];
    let mut with_metrics = limit.to_vec();
    with_metrics.extend_from_slice(&[
        ("METRICS_ENABLED", "true"),
        ("METRICS_HOST", "127.0.0.1"),
        ("METRICS_PORT", metrics_port.as_str()),
    ]);
    let a = node(&redis, "outage:", &with_metrics).await;
    let b = node(&redis, "outage:", &limit).await;
    let mp: u16 = metrics_port.parse().unwrap();
    let text = scrape(mp).await;
    assert_eq!(
        metric(&text, "sockudo_rate_limiter_redis_up", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "sockudo_rate_limiter_redis_outages_total", &[]),
        Some(0.0)
    );

    // Redis hangs (connections open, no answers): each node limits on its
    // own, 3 each from one address, and answers without waiting.
    redis.freeze();
    // Several checks in flight when it stalls: all answered in time, and
    // the outage is still one log line (below).
    let first: Vec<Api> = (1..=4)
        .map(|i| client(&a, &format!("127.0.6.{i}")))
        .collect();
    let started = Instant::now();
    let answers =
        futures_util::future::join_all(first.iter().map(|api| api.get_channels_with(&[]))).await;
    let took = started.elapsed();
    assert!(took < PROMPT, "concurrent requests, Redis hung: {took:?}");
    assert!(answers.iter().all(|r| r.status == 200), "{answers:?}");
    for (name, server) in [("A", &a), ("B", &b)] {
        let api = client(server, "127.0.3.1");
        let statuses = prompt_statuses(&api, 4, &format!("{name}, Redis hung")).await;
        assert_eq!(statuses, [200, 200, 200, 429], "{name}: per node");
    }
    let text = scrape(mp).await;
    assert_eq!(
        metric(&text, "sockudo_rate_limiter_redis_up", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "sockudo_rate_limiter_redis_outages_total", &[]),
        Some(1.0)
    );
    let fallbacks = metric(&text, "sockudo_rate_limiter_redis_fallbacks_total", &[]);
    assert!(fallbacks.is_some_and(|n| n >= 4.0), "{fallbacks:?}");

    // Redis gone altogether (connections reset, new ones refused): the same.
    redis.stop();
    for (name, server) in [("A", &a), ("B", &b)] {
        let api = client(server, "127.0.4.1");
        let statuses = prompt_statuses(&api, 4, &format!("{name}, Redis gone")).await;
        assert_eq!(statuses, [200, 200, 200, 429], "{name}: per node");
    }

    // Back on the same port (empty): each node finds it and shares again.
    redis.restart().await;
    for server in [&a, &b] {
        server
            .wait_for_logs("Redis is back", Duration::from_secs(10), |l| {
                l.lines()
                    .any(|line| text_field(line, "event") == Some("rate_limiter_redis_up"))
            })
            .await;
    }
    let (a_api, b_api) = (client(&a, "127.0.5.1"), client(&b, "127.0.5.1"));
    let shared = [
        a_api.get_channels_with(&[]).await.status,
        b_api.get_channels_with(&[]).await.status,
        a_api.get_channels_with(&[]).await.status,
    ];
    assert_eq!(shared, [200, 200, 200]);
    assert_429_body(&b_api.get_channels_with(&[]).await);
    assert!(redis
        .keys("outage:*")
        .contains(&"outage:gcra:api:127.0.5.1".to_string()));

    // One line when the outage began, one when it ended, per node.
    for (name, server) in [("A", &a), ("B", &b)] {
        assert_eq!(events(server, "rate_limiter_redis_down"), 1, "{name}");
        assert_eq!(events(server, "rate_limiter_redis_up"), 1, "{name}");
    }
    let text = scrape(mp).await;
    assert_eq!(
        metric(&text, "sockudo_rate_limiter_redis_up", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "sockudo_rate_limiter_redis_outages_total", &[]),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_node_starts_and_limits_on_its_own_when_redis_is_unreachable() {
    // Nothing listens on this port.
    let url = format!("redis://127.0.0.1:{}/", pick_port());
    let server = Server::start_app(&[
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_DRIVER", "redis"),
        ("REDIS_URL", url.as_str()),
        ("RATE_LIMITER_API_MAX_REQUESTS", "2"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ])
    .await;
    server
        .wait_for_logs("the outage is logged", ms(5000), |l| {
            l.lines()
                .any(|line| text_field(line, "event") == Some("rate_limiter_redis_down"))
        })
        .await;
    let api = server.api();
    assert_eq!(api.get_channels_with(&[]).await.status, 200);
    let second = api.get_channels_with(&[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-ratelimit-remaining"), Some("0"));
    assert_429_body(&api.get_channels_with(&[]).await);
    assert_eq!(events(&server, "rate_limiter_redis_down"), 1);
}

#[tokio::test]
async fn a_bad_redis_url_is_refused_at_start_without_echoing_it() {
    let f = Server::start_expect_failure(
        &[
            ("RATE_LIMITER_ENABLED", "true"),
            ("RATE_LIMITER_DRIVER", "redis"),
            ("REDIS_URL", "http://user:s3cret-pw@redis.internal:6379"),
        ],
        None,
        &[],
    )
    .await;
    assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
    assert!(
        f.output.contains("RATE_LIMITER_DRIVER=redis") && f.output.contains("REDIS_URL"),
        "the message names the settings:\n{}",
        f.output
    );
    assert!(!f.output.contains("s3cret-pw"), "{}", f.output);
}
