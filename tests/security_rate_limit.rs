//! Rate limiting (security guide "Rate Limiting"): the per-address limits on
//! the HTTP API and on WebSocket upgrades (429 at max+1, JSON body,
//! Retry-After, x-ratelimit headers, buckets per client address with trusted
//! proxy hops), the per-app limits (backend events, read requests, client
//! events 4301) at their edges with Retry-After and their WARN lines, the
//! unsupported Redis Cluster driver, and the switch. The `redis` driver:
//! tests/rate_limit_redis.rs.
//!
//! Checks that need requests to land inside a limiter's window retry when
//! the machine was too slow for the window (prereq::Window); refills are
//! waited for by the server's Retry-After or by sleeping past the window.

mod common;

use common::limits::{assert_429_body, assert_app_429, retry_after, signed_get, signed_post};
use common::prereq;
use common::security::*;
use common::*;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The standard app with the IP limiter on and `extra`.
async fn limited(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_DRIVER", "memory"),
    ];
    env.extend_from_slice(extra);
    Server::start_app(&env).await
}

/// The WARN line of a per-app limit: event=rate_limited, limiter, app_id.
async fn logged_rate_limit(server: &Server, limiter: &str) {
    server
        .wait_for_logs(
            &format!("rate_limited {limiter} warn line"),
            ms(3000),
            |l| {
                l.lines().any(|line| {
                    line.contains(" WARN ")
                        && text_field(line, "event") == Some("rate_limited")
                        && text_field(line, "limiter") == Some(limiter)
                        && text_field(line, "app_id") == Some(APP_ID)
                })
            },
        )
        .await;
}

/// With a per-app budget of 2 per second: `spend` (exactly the budget),
/// then `one_more`, inside one refill (500 ms); retried after a full refill
/// when the machine was too slow for that (tests/common/prereq.rs). Each
/// attempt's events carry their own data tag; returns the conclusive
/// attempt's tag and both answers.
async fn budget_then_one_more(
    api: &Api,
    what: &str,
    spend: (&str, fn(&str) -> Value),
    one_more: (&str, fn(&str) -> Value),
) -> (String, RawResp, RawResp) {
    let mut w = prereq::Window::new(what, ms(500), ms(1100));
    loop {
        w.start().await;
        let tag = format!("attempt-{}", w.retries());
        let spent = signed_post(api, spend.0, &spend.1(&tag)).await;
        let over = signed_post(api, one_more.0, &one_more.1(&tag)).await;
        if w.conclusive(over.status == 429) {
            return (tag, spent, over);
        }
    }
}

/// The `event` frames carrying data `tag`, on `channels` in this order;
/// frames of earlier, inconclusive attempts (other tags) are skipped.
async fn expect_tagged(ws: &mut Ws, event: &str, tag: &str, channels: &[&str]) {
    let mut left = channels.iter();
    let mut want = left.next();
    while let Some(channel) = want {
        let f = ws.recv().await;
        assert_eq!(f.event(), event, "{}", f.raw);
        if f.data_str() != tag {
            continue;
        }
        assert_eq!(f.channel(), Some(*channel), "{}", f.raw);
        want = left.next();
    }
}

/// No frame carrying data `tag` within `d` (frames of other tags pass).
async fn expect_none_tagged(ws: &mut Ws, tag: &str, d: Duration) {
    let deadline = std::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match tokio::time::timeout(left, ws.recv()).await {
            Err(_) => return,
            Ok(f) => assert_ne!(f.data_str(), tag, "refused event delivered: {}", f.raw),
        }
    }
}

#[tokio::test]
async fn api_limit_refuses_max_plus_one_with_json_and_retry_after() {
    let server = limited(&[
        ("RATE_LIMITER_API_MAX_REQUESTS", "3"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ])
    .await;
    let api = server.api();
    let path = api.path("/channels");
    // unsigned and badly signed requests count too
    let unsigned = Sign {
        unsigned: true,
        ..Sign::default()
    };
    let bad = Sign {
        corrupt_signature: true,
        ..Sign::default()
    };
    let r1 = api
        .request_full("GET", &path, &[], b"", &unsigned, &[])
        .await;
    assert_eq!(r1.status, 401, "{r1:?}");
    assert_eq!(r1.header("x-ratelimit-limit"), Some("3"), "{r1:?}");
    assert_eq!(r1.header("x-ratelimit-remaining"), Some("2"), "{r1:?}");
    let r2 = api.request_full("GET", &path, &[], b"", &bad, &[]).await;
    assert_eq!(r2.status, 401, "{r2:?}");
    assert_eq!(r2.header("x-ratelimit-remaining"), Some("1"), "{r2:?}");
    let r3 = api.get_channels_with(&[]).await;
    assert_eq!(
        r3.status, 200,
        "third request is exactly at the limit: {r3:?}"
    );
    assert_eq!(r3.header("x-ratelimit-remaining"), Some("0"), "{r3:?}");

    let r4 = api.get_channels_with(&[]).await;
    assert_429_body(&r4);
    let wait = retry_after(&r4);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(r4.header("x-ratelimit-limit"), Some("3"), "{r4:?}");
    assert_eq!(r4.header("x-ratelimit-remaining"), Some("0"), "{r4:?}");
    // every API route shares the bucket; publishing is refused as well
    let body = json!({"name": "e", "channel": "c", "data": "x"}).to_string();
    let r5 = api
        .request_full(
            "POST",
            &api.path("/events"),
            &[],
            body.as_bytes(),
            &Sign::default(),
            &[],
        )
        .await;
    assert_429_body(&r5);
    // health and WebSocket are not the API limit's business
    for _ in 0..5 {
        assert_eq!(
            http_get(&format!("{}/up", server.http_base())).await.status,
            200
        );
    }
    let mut ws = server.connect().await;
    ws.assert_alive().await;
    server
        .wait_for_logs("rate_limited warn line", ms(2000), |l| {
            l.lines().any(|line| {
                line.contains(" WARN ")
                    && text_field(line, "event") == Some("rate_limited")
                    && text_field(line, "limiter") == Some("api")
                    && text_field(line, "peer") == Some("127.0.0.1")
            })
        })
        .await;
}

#[tokio::test]
async fn api_limit_refills_after_retry_after() {
    // 2 per 4 s: a burst of 2, then a token every 2 s
    let server = limited(&[
        ("RATE_LIMITER_API_MAX_REQUESTS", "2"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "4"),
    ])
    .await;
    let mut w = prereq::Window::new(
        "2 API requests then a 3rd inside one refill",
        Duration::from_secs(2),
        Duration::ZERO,
    );
    let (api, burst, refused) = loop {
        w.start().await;
        // each attempt from a client address of its own: a full bucket
        let from = ip(&format!("127.0.1.{}", w.retries() + 1));
        let api = Api::with_client(
            server.http_base(),
            APP_ID,
            APP_KEY,
            APP_SECRET,
            http_client(Some(from)),
        );
        let burst = [
            api.get_channels_with(&[]).await.status,
            api.get_channels_with(&[]).await.status,
        ];
        let refused = api.get_channels_with(&[]).await;
        if w.conclusive(refused.status == 429) {
            break (api, burst, refused);
        }
    };
    assert_eq!(burst, [200, 200], "the burst of 2 passes");
    assert_429_body(&refused);
    let wait = retry_after(&refused);
    assert!(
        (1..=2).contains(&wait),
        "a token every 2 s, rounded up to whole seconds: Retry-After {wait}"
    );
    // the server's own clock says when: no slack added
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = api.get_channels_with(&[]).await;
    assert_eq!(again.status, 200, "after Retry-After: {again:?}");
}

#[tokio::test]
async fn ws_upgrade_limit_refuses_max_plus_one_with_429() {
    let server = limited(&[
        ("RATE_LIMITER_WS_MAX_REQUESTS", "2"),
        ("RATE_LIMITER_WS_WINDOW_SECONDS", "60"),
    ])
    .await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let err = match Ws::try_open_with(&server.app_ws_url(), &[], None).await {
        Ok(_) => panic!("third upgrade within the window must be refused"),
        Err(e) => e,
    };
    assert_eq!(upgrade_status(&err), Some(429), "{err}");
    if let WsError::Http(resp) = &err {
        let ra: u64 = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After on the refused upgrade");
        assert!(ra >= 1);
        let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or(b"")).unwrap();
        assert_eq!(body["code"], "limit_exceeded", "{body}");
    }
    // open sockets are unaffected, and the API has its own limit
    a.assert_alive().await;
    b.assert_alive().await;
    assert_eq!(server.api().get_channels_with(&[]).await.status, 200);
}

#[tokio::test]
async fn api_buckets_follow_the_trusted_client_address() {
    let hops1 = limited(&[
        ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
        ("RATE_LIMITER_API_TRUST_HOPS", "1"),
    ])
    .await;
    let api = hops1.api();
    let xff = |v| [("X-Forwarded-For", v)];
    assert_eq!(api.get_channels_with(&xff("10.1.1.1")).await.status, 200);
    assert_eq!(
        api.get_channels_with(&xff("10.1.1.2")).await.status,
        200,
        "another forwarded client has its own bucket"
    );
    assert_429_body(&api.get_channels_with(&xff("10.1.1.1")).await);
    assert_429_body(&api.get_channels_with(&xff("10.1.1.2")).await);
    // one hop: the rightmost entry is the client, whatever the left says
    assert_429_body(&api.get_channels_with(&xff("10.7.7.7, 10.1.1.1")).await);
    assert_eq!(
        api.get_channels_with(&xff("10.1.1.1, 10.1.1.3"))
            .await
            .status,
        200
    );
    // X-Real-IP is used behind a trusted proxy when there is no X-Forwarded-For
    assert_eq!(
        api.get_channels_with(&[("X-Real-IP", "10.1.1.4")])
            .await
            .status,
        200
    );
    assert_429_body(&api.get_channels_with(&[("X-Real-IP", "10.1.1.4")]).await);
    hops1
        .wait_for_logs("peer is the forwarded address", ms(2000), |l| {
            l.lines().any(|line| {
                text_field(line, "event") == Some("rate_limited")
                    && text_field(line, "peer") == Some("10.1.1.2")
            })
        })
        .await;

    // no trusted hop: the headers are ignored, the TCP peer is the key
    let hops0 = limited(&[
        ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ])
    .await;
    let api = hops0.api();
    assert_eq!(api.get_channels_with(&xff("10.1.1.1")).await.status, 200);
    assert_429_body(&api.get_channels_with(&xff("10.1.1.2")).await);
    assert_429_body(&api.get_channels_with(&[("X-Real-IP", "10.2.2.2")]).await);
    // ... but two real peers (127.0.0.3 / 127.0.0.4) are two buckets
    let from = |a: &str| {
        Api::with_client(
            hops0.http_base(),
            APP_ID,
            APP_KEY,
            APP_SECRET,
            http_client(Some(ip(a))),
        )
    };
    assert_eq!(from("127.0.0.3").get_channels_with(&[]).await.status, 200);
    assert_429_body(&from("127.0.0.3").get_channels_with(&[]).await);
    assert_eq!(from("127.0.0.4").get_channels_with(&[]).await.status, 200);
    hops0
        .wait_for_logs("peer is the TCP peer", ms(2000), |l| {
            l.lines().any(|line| {
                text_field(line, "event") == Some("rate_limited")
                    && text_field(line, "peer") == Some("127.0.0.3")
            })
        })
        .await;

    // two hops: the second entry from the right
    let hops2 = limited(&[
        ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
        ("RATE_LIMITER_API_TRUST_HOPS", "2"),
    ])
    .await;
    let api = hops2.api();
    assert_eq!(
        api.get_channels_with(&xff("10.5.5.5, 10.1.1.1"))
            .await
            .status,
        200
    );
    assert_eq!(
        api.get_channels_with(&xff("10.6.6.6, 10.1.1.1"))
            .await
            .status,
        200,
        "different second-from-right entry: different bucket"
    );
    assert_429_body(&api.get_channels_with(&xff("10.5.5.5, 10.9.9.9")).await);
}

#[tokio::test]
async fn ws_buckets_follow_the_trusted_client_address() {
    let url_for = |s: &Server| s.app_ws_url();
    let hops1 = limited(&[
        ("RATE_LIMITER_WS_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_WS_WINDOW_SECONDS", "60"),
        ("RATE_LIMITER_WS_TRUST_HOPS", "1"),
    ])
    .await;
    let url = url_for(&hops1);
    let open = |xff: &'static str| {
        let url = url.clone();
        async move { Ws::try_open_with(&url, &[("X-Forwarded-For", xff)], None).await }
    };
    let mut a = open("10.1.1.1").await.expect("first client");
    a.read_established().await;
    let mut b = open("10.1.1.2").await.expect("second client, own bucket");
    b.read_established().await;
    let err = open("10.1.1.1")
        .await
        .err()
        .expect("first client again: 429");
    assert_eq!(upgrade_status(&err), Some(429));
    hops1
        .wait_for_logs(
            "ws_connect limit logged with the forwarded peer",
            ms(2000),
            |l| {
                l.lines().any(|line| {
                    text_field(line, "limiter") == Some("ws_connect")
                        && text_field(line, "peer") == Some("10.1.1.1")
                })
            },
        )
        .await;

    let hops0 = limited(&[
        ("RATE_LIMITER_WS_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_WS_WINDOW_SECONDS", "60"),
    ])
    .await;
    let url = url_for(&hops0);
    let mut a = Ws::try_open_with(&url, &[("X-Forwarded-For", "10.1.1.1")], None)
        .await
        .unwrap();
    a.read_established().await;
    let err = Ws::try_open_with(&url, &[("X-Forwarded-For", "10.1.1.2")], None)
        .await
        .err()
        .expect("headers ignored without trusted hops: same bucket");
    assert_eq!(upgrade_status(&err), Some(429));
    // a different real peer has its own bucket
    let mut c = Ws::try_open_with(&url, &[], Some(ip("127.0.0.5")))
        .await
        .expect("other peer");
    c.read_established().await;
}

#[tokio::test]
async fn backend_event_budget_counts_channels_and_batch_items() {
    // per-app limit, with the IP limiter off (the harness default)
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "2")]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    for c in ["b-1", "b-2", "b-3"] {
        ws.subscribe(c).await;
    }
    // more than the burst never passes, whenever it comes: one event to 3
    // channels is 3 events
    let r = signed_post(
        &api,
        "/events",
        &json!({"name": "e", "channels": ["b-1", "b-2", "b-3"], "data": "x"}),
    )
    .await;
    assert_app_429(&r);
    ws.expect_silence(ms(200)).await;
    // exactly the budget (2 channels) passes; one more event inside the
    // same refill (one per 500 ms) does not
    let (tag, spent, over) = budget_then_one_more(
        &api,
        "2 events to 2 channels, then 1 more",
        (
            "/events",
            |tag| json!({"name": "e", "channels": ["b-1", "b-2"], "data": tag}),
        ),
        (
            "/events",
            |tag| json!({"name": "e", "channel": "b-3", "data": tag}),
        ),
    )
    .await;
    assert_eq!(spent.status, 200, "exactly the budget: {spent:?}");
    assert_app_429(&over);
    expect_tagged(&mut ws, "e", &tag, &["b-1", "b-2"]).await;
    expect_none_tagged(&mut ws, &tag, ms(100)).await;
    logged_rate_limit(&server, "backend_event").await;

    // a full bucket again: nothing spent for over a second, however slow
    tokio::time::sleep(ms(1100)).await;
    let batch = |n: usize, tag: &str| {
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"name": "be", "channel": format!("b-{}", i + 1), "data": tag}))
            .collect();
        json!({ "batch": items })
    };
    assert_app_429(&signed_post(&api, "/batch_events", &batch(3, "x")).await);
    let (tag, spent, over) = budget_then_one_more(
        &api,
        "a batch of 2, then a batch of 1",
        ("/batch_events", |tag| {
            json!({"batch": [
                {"name": "be", "channel": "b-1", "data": tag},
                {"name": "be", "channel": "b-2", "data": tag},
            ]})
        }),
        (
            "/batch_events",
            |tag| json!({"batch": [{"name": "be", "channel": "b-3", "data": tag}]}),
        ),
    )
    .await;
    assert_eq!(
        spent.status, 200,
        "a batch of exactly the budget: {spent:?}"
    );
    assert_app_429(&over);
    expect_tagged(&mut ws, "be", &tag, &["b-1", "b-2"]).await;
    expect_none_tagged(&mut ws, &tag, ms(100)).await;
    // reads have their own budget
    assert_eq!(api.get("/channels", &[]).await.status, 200);
}

#[tokio::test]
async fn read_request_budget_refuses_the_next_read() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", "2")]).await;
    let api = server.api();
    let mut w = prereq::Window::new("2 reads, then 2 more inside one refill", ms(500), ms(1100));
    let (budget, over) = loop {
        w.start().await;
        let budget = [
            signed_get(&api, "/channels").await.status,
            signed_get(&api, "/channels/some-channel").await.status,
        ];
        let over = [
            signed_get(&api, "/channels/presence-x/users").await,
            signed_get(&api, "/channels").await,
        ];
        if w.conclusive(over.iter().all(|r| r.status == 429)) {
            break (budget, over);
        }
    };
    assert_eq!(budget, [200, 200], "exactly the budget passes");
    for r in &over {
        assert_app_429(r);
    }
    logged_rate_limit(&server, "read_request").await;
    // publishing is not a read
    api.publish("some-channel", "e", "d").await;
    // the server's own word on when to come back
    tokio::time::sleep(Duration::from_secs(retry_after(&over[1]))).await;
    assert_eq!(signed_get(&api, "/channels").await.status, 200, "refilled");
}

#[tokio::test]
async fn client_event_limit_is_4301_at_max_plus_one_per_socket() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND", "3")]).await;
    let ch = "private-rate";
    let mut rx = server.connect().await;
    rx.subscribe_private(ch).await;
    let mut tx = server.connect().await;
    tx.subscribe_private(ch).await;
    let mut tx2 = server.connect().await;
    tx2.subscribe_private(ch).await;

    // The window is one second from the first event: the 4th must come
    // inside it to be refused.
    let mut w = prereq::Window::new(
        "3 client events then a 4th inside one window",
        Duration::from_secs(1),
        ms(1100),
    );
    let fourth = loop {
        w.start().await;
        for i in 0..3 {
            tx.client_event(ch, "client-n", json!({ "i": i })).await;
        }
        for i in 0..3 {
            let f = rx.expect_channel_event("client-n", ch).await;
            assert_eq!(f.data_json()["i"], i, "{}", f.raw);
        }
        tx.client_event(ch, "client-n", json!({"i": 3})).await;
        // its fate, in order: a 4301 before the pong, or the pong alone
        tx.send_json(json!({"event": "pusher:ping", "data": {}}))
            .await;
        let f = tx.recv().await;
        let refused = f.event() == "pusher:error";
        if !refused {
            rx.expect_channel_event("client-n", ch).await;
        }
        if w.conclusive(refused) {
            break f;
        }
    };
    assert_eq!(fourth.event(), "pusher:error", "4th event: {}", fourth.raw);
    assert_eq!(fourth.json["data"]["code"], 4301, "{}", fourth.raw);
    assert_eq!(
        fourth.json["data"]["message"], "Client event rejected due to rate limit",
        "{}",
        fourth.raw
    );
    tx.expect_event("pusher:pong").await;
    rx.expect_silence(ms(200)).await;
    tx.assert_alive().await;
    // the budget is per socket
    tx2.client_event(ch, "client-n", json!({"from": 2})).await;
    let f = rx.expect_channel_event("client-n", ch).await;
    assert_eq!(f.data_json()["from"], 2);
    tx.expect_channel_event("client-n", ch).await;
    // the window passes (more than a second, however slow the machine)
    tokio::time::sleep(ms(1100)).await;
    tx.client_event(ch, "client-n", json!({"i": 4})).await;
    let f = rx.expect_channel_event("client-n", ch).await;
    assert_eq!(f.data_json()["i"], 4);
    tx.expect_silence(ms(100)).await;
}

/// `redis` runs (tests/rate_limit_redis.rs); `redis-cluster` is refused,
/// in the config file as in the environment, saying what to use instead.
#[tokio::test]
async fn redis_cluster_driver_refuses_to_start_with_a_clear_message() {
    let from_env = Server::start_expect_failure(
        &[
            ("RATE_LIMITER_ENABLED", "true"),
            ("RATE_LIMITER_DRIVER", "redis-cluster"),
        ],
        None,
        &[],
    )
    .await;
    let from_file = Server::start_expect_failure(
        &[("RATE_LIMITER_ENABLED", "true")],
        Some(r#"{"rate_limiter": {"driver": "redis-cluster"}}"#),
        &[],
    )
    .await;
    for f in [from_env, from_file] {
        assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
        assert!(
            f.output.contains("RATE_LIMITER_DRIVER=redis-cluster")
                && f.output.contains("RATE_LIMITER_DRIVER=redis ")
                && f.output.contains("memory"),
            "the message names the setting and what to use instead:\n{}",
            f.output
        );
    }
}

#[tokio::test]
async fn disabled_limiter_or_none_driver_lifts_the_ip_limits_only() {
    for env in [
        vec![("RATE_LIMITER_ENABLED", "false")],
        vec![
            ("RATE_LIMITER_ENABLED", "true"),
            ("RATE_LIMITER_DRIVER", "none"),
        ],
    ] {
        let mut env = env.clone();
        env.extend_from_slice(&[
            ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
            ("RATE_LIMITER_WS_MAX_REQUESTS", "1"),
            ("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", "0"),
            ("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "1"),
        ]);
        let server = Server::start_app(&env).await;
        let api = server.api();
        for i in 0..5 {
            let r = api.get_channels_with(&[]).await;
            assert_eq!(r.status, 200, "{env:?} request {i}: {r:?}");
        }
        for _ in 0..3 {
            let mut ws = server.connect().await;
            ws.assert_alive().await;
        }
        // the per-app budget still applies: 1 per second
        let body = json!({"name": "e", "channel": "c", "data": "d"});
        let mut w = prereq::Window::new(
            "2 publishes in one second",
            Duration::from_secs(1),
            ms(1100),
        );
        let (first, second) = loop {
            w.start().await;
            let first = signed_post(&api, "/events", &body).await;
            let second = signed_post(&api, "/events", &body).await;
            if w.conclusive(second.status == 429) {
                break (first, second);
            }
        };
        assert_eq!(first.status, 200, "{env:?}: {first:?}");
        assert_app_429(&second);
    }
}

/// `terminate_on_limit` (a config-file app setting): the event over
/// `max_client_events_per_second` is refused with 4301 and the socket is
/// closed with 4301; it leaves its channels, other sockets are untouched.
#[tokio::test]
async fn terminate_on_limit_closes_the_socket_with_4301() {
    const CONFIG: &str = r#"{"app_manager": {"driver": "memory", "array": {"apps": [
        {"id": "strict-app", "key": "strict-key", "secret": "strict-secret", "enabled": true,
         "enable_client_messages": true, "max_client_events_per_second": 2,
         "decay_seconds": 60, "terminate_on_limit": true}
    ]}}}"#;
    let server = Server::start_with_config(CONFIG, &[]).await;
    let api = server.api_for("strict-app", "strict-key", "strict-secret");
    let ch = "private-strict";
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut ws = server.connect_key("strict-key").await;
        let auth = channel_auth("strict-key", "strict-secret", &ws.socket_id, ch);
        ws.send_subscribe(json!({"channel": ch, "auth": auth}))
            .await;
        ws.expect_channel_event("pusher_internal:subscription_succeeded", ch)
            .await;
        sockets.push(ws);
    }
    let (mut tx, mut rx) = (sockets.remove(0), sockets.remove(0));

    // Within the limit (a 60 s window, so a slow machine stays in it).
    for i in 0..2 {
        tx.client_event(ch, "client-n", json!({ "i": i })).await;
        let f = rx.expect_channel_event("client-n", ch).await;
        assert_eq!(f.json["data"]["i"], i, "{}", f.raw);
    }
    // One over: refused, and the socket is closed with the same code.
    tx.client_event(ch, "client-n", json!({"i": 2})).await;
    let e = tx.expect_error(4301).await;
    assert_eq!(
        e.json["data"]["message"], "Connection closed due to client event rate limit",
        "{}",
        e.raw
    );
    tx.expect_close(4301).await;

    // It left the channel; the other socket got nothing of the refused event.
    api.wait_channel_info(ch, "subscription_count", |v| v["subscription_count"] == 1)
        .await;
    api.publish(ch, "after", "1").await;
    rx.expect_channel_event("after", ch).await;
    rx.assert_alive().await;
}
