//! Webhooks: every event type reaches a real HTTP receiver signed and in
//! Pusher's shape; filters, batching, retries, dead letters; a hung receiver
//! slows neither sockets nor other receivers; occupied/vacated and
//! added/removed strictly alternate; leaves wait out their grace and are
//! still told at shutdown; bad webhook configuration refuses to start.

mod common;

use std::time::{Duration, Instant};

use common::receiver::{named, Receiver, Reply};
use common::security::{metric, pick_port, scrape};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);

/// One webhook for the env app, as `SOCKUDO_DEFAULT_APP_WEBHOOKS` takes it.
fn hook(url: &str, types: &[&str]) -> Value {
    json!({"url": url, "event_types": types})
}

/// Start the standard app with `hooks` and extra env (later entries win).
async fn server_with(hooks: &[Value], extra: &[(&str, &str)]) -> Server {
    let text = Value::Array(hooks.to_vec()).to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("SOCKUDO_DEFAULT_APP_WEBHOOKS", text.as_str()),
        // Leaves are told at once unless a test is about the grace.
        ("WEBHOOK_LEAVE_GRACE_MS", "0"),
    ];
    env.extend_from_slice(extra);
    Server::start_app(&env).await
}

/// The names of `events` on `channel`, in order.
fn names_on(events: &[Value], channel: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["channel"] == channel)
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn count(events: &[Value], name: &str, channel: &str) -> usize {
    events
        .iter()
        .filter(|e| e["name"] == name && e["channel"] == channel)
        .count()
}

/// Subscribe to `channel` and read past every frame before its
/// `subscription_succeeded`.
async fn skip_to_subscribed(ws: &mut Ws, channel: &str) {
    ws.send_subscribe(json!({ "channel": channel })).await;
    loop {
        let f = ws.recv().await;
        if f.event() == "pusher_internal:subscription_succeeded" && f.channel() == Some(channel) {
            return;
        }
    }
}

#[tokio::test]
async fn every_event_type_arrives_signed_and_in_pushers_shape() {
    let rx = Receiver::start().await;
    let all = [
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
        "client_event",
        "cache_miss",
        "subscription_count",
    ];
    let server = server_with(&[hook(&rx.url("/hooks"), &all)], &[]).await;
    let started = unix_now() as u64 * 1000;

    let mut a = server.connect().await;
    a.subscribe("orders").await;
    a.subscribe_presence("presence-room", "u1", json!({"name": "Ada"}))
        .await;
    a.subscribe_private("private-chat").await;
    let mut b = server.connect().await;
    b.subscribe_private("private-chat").await;
    a.client_event("private-chat", "client-typing", json!({"who": "Ada"}))
        .await;
    b.expect_channel_event("client-typing", "private-chat")
        .await;
    a.subscribe("cache-prices").await;
    a.expect_channel_event("pusher:cache_miss", "cache-prices")
        .await;
    a.unsubscribe("presence-room").await;
    a.unsubscribe("orders").await;

    let events = rx
        .wait_delivered(WAIT, "every kind", |e| {
            count(e, "channel_vacated", "orders") == 1
                && count(e, "member_removed", "presence-room") == 1
                && count(e, "channel_vacated", "presence-room") == 1
                && count(e, "client_event", "private-chat") == 1
                && count(e, "cache_miss", "cache-prices") == 1
        })
        .await;
    let one = |name: &str, channel: &str| -> Value {
        let found: Vec<&Value> = events
            .iter()
            .filter(|e| e["name"] == name && e["channel"] == channel)
            .collect();
        assert_eq!(found.len(), 1, "{name} on {channel}: {events:#?}");
        found[0].clone()
    };
    assert_eq!(
        one("channel_occupied", "orders"),
        json!({"name": "channel_occupied", "channel": "orders"})
    );
    assert_eq!(
        one("channel_vacated", "orders"),
        json!({"name": "channel_vacated", "channel": "orders"})
    );
    assert_eq!(
        one("member_added", "presence-room"),
        json!({"name": "member_added", "channel": "presence-room", "user_id": "u1"})
    );
    assert_eq!(
        one("member_removed", "presence-room"),
        json!({"name": "member_removed", "channel": "presence-room", "user_id": "u1"})
    );
    assert_eq!(
        one("client_event", "private-chat"),
        json!({"name": "client_event", "channel": "private-chat", "event": "client-typing",
               "data": "{\"who\":\"Ada\"}", "socket_id": a.socket_id})
    );
    assert_eq!(
        one("cache_miss", "cache-prices"),
        json!({"name": "cache_miss", "channel": "cache-prices"})
    );
    // subscription_count: public and private channels, never presence ones
    // (they have member events), the count after each change.
    let counts: Vec<u64> = events
        .iter()
        .filter(|e| e["name"] == "subscription_count" && e["channel"] == "private-chat")
        .map(|e| e["subscription_count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.last(), Some(&2), "{events:#?}");
    assert!(
        !events
            .iter()
            .any(|e| e["name"] == "subscription_count" && e["channel"] == "presence-room"),
        "{events:#?}"
    );
    // Per channel, in order.
    assert_eq!(
        names_on(&events, "presence-room"),
        [
            "channel_occupied",
            "member_added",
            "member_removed",
            "channel_vacated"
        ],
        "{events:#?}"
    );

    for r in rx.requests() {
        assert_eq!(r.path, "/hooks");
        r.assert_signed(APP_KEY, APP_SECRET);
        let body = r.json();
        let t = body["time_ms"].as_u64().expect("time_ms");
        assert!(
            t >= started && t <= unix_now() as u64 * 1000 + 1000,
            "time_ms {t}"
        );
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
        let id = r.header("x-switchyard-webhook-id").expect("webhook id");
        assert!(!id.is_empty());
    }
}

#[tokio::test]
async fn filters_pick_channels_by_prefix_suffix_pattern_and_namespace() {
    let prefix = Receiver::start().await;
    let pattern = Receiver::start().await;
    let soketi = Receiver::start().await;
    let namespace = Receiver::start().await;
    let hooks = [
        json!({"url": prefix.url("/"), "event_types": ["channel_occupied"],
               "filter": {"channel_prefix": "private-", "channel_suffix": "-admin"}}),
        json!({"url": pattern.url("/"), "event_types": ["channel_occupied"],
               "filter": {"channel_pattern": "^orders\\.[0-9]+$"}}),
        json!({"url": soketi.url("/"), "event_types": ["channel_occupied"],
               "filter": {"channel_name_starts_with": "chat-", "channel_name_ends_with": "-eu"}}),
        json!({"url": namespace.url("/"), "event_types": ["channel_occupied"],
               "filter": {"channel_namespaces": ["billing", "audit"]}}),
    ];
    let server = server_with(&hooks, &[]).await;
    let mut ws = server.connect().await;
    let public = [
        "orders.42",
        "orders.x",
        "xorders.1",
        "chat-room-eu",
        "chat-room-us",
        "billing.1",
        "billing",
        "audit.7",
        "other",
    ];
    for c in public {
        ws.subscribe(c).await;
    }
    for c in ["private-team-admin", "private-team", "presence-x-admin"] {
        if c.starts_with("presence-") {
            ws.subscribe_presence(c, "u", json!({})).await;
        } else {
            ws.subscribe_private(c).await;
        }
    }
    let channels = |rx: &Receiver| -> Vec<String> {
        let mut v: Vec<String> = rx
            .delivered()
            .iter()
            .map(|e| e["channel"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    prefix
        .wait_delivered(WAIT, "prefix", |e| !e.is_empty())
        .await;
    pattern
        .wait_delivered(WAIT, "pattern", |e| !e.is_empty())
        .await;
    soketi
        .wait_delivered(WAIT, "soketi", |e| !e.is_empty())
        .await;
    namespace
        .wait_delivered(WAIT, "namespace", |e| e.len() >= 2)
        .await;
    // A last channel every filter refuses, then a moment for strays.
    ws.subscribe("zzz-last").await;
    tokio::time::sleep(ms(400)).await;
    assert_eq!(channels(&prefix), ["private-team-admin"]);
    assert_eq!(channels(&pattern), ["orders.42"]);
    assert_eq!(channels(&soketi), ["chat-room-eu"]);
    assert_eq!(channels(&namespace), ["audit.7", "billing.1"]);
}

#[tokio::test]
async fn batching_gathers_events_of_one_webhook_into_few_requests() {
    let rx = Receiver::start().await;
    let server = server_with(
        &[hook(&rx.url("/"), &["channel_occupied"])],
        &[
            ("WEBHOOK_BATCHING_ENABLED", "true"),
            ("WEBHOOK_BATCHING_DURATION", "300"),
            ("WEBHOOK_BATCHING_SIZE", "100"),
        ],
    )
    .await;
    let mut ws = server.connect().await;
    for i in 0..20 {
        ws.subscribe(&format!("room-{i}")).await;
    }
    let events = rx
        .wait_delivered(WAIT, "20 occupied", |e| e.len() >= 20)
        .await;
    assert_eq!(events.len(), 20, "{events:#?}");
    let requests = rx.requests();
    // 20 events within well under one window, over at most 4 lanes.
    assert!(
        requests.len() <= 8 && requests.iter().any(|r| r.events().len() > 1),
        "{} requests for 20 events: {:?}",
        requests.len(),
        requests
            .iter()
            .map(|r| r.events().len())
            .collect::<Vec<_>>()
    );

    // Without batching each event is a request of its own.
    let rx = Receiver::start().await;
    let server = server_with(
        &[hook(&rx.url("/"), &["channel_occupied"])],
        &[("WEBHOOK_BATCHING_ENABLED", "false")],
    )
    .await;
    let mut ws = server.connect().await;
    for i in 0..5 {
        ws.subscribe(&format!("room-{i}")).await;
    }
    rx.wait_delivered(WAIT, "5 occupied", |e| e.len() >= 5)
        .await;
    let sizes: Vec<usize> = rx.requests().iter().map(|r| r.events().len()).collect();
    assert_eq!(sizes, [1, 1, 1, 1, 1]);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_the_same_id_until_it_answers() {
    let rx = Receiver::start().await;
    rx.plan(&[Reply::Status(500), Reply::Status(503)]);
    let mp = pick_port();
    let mps = mp.to_string();
    let hooks = [
        json!({"url": rx.url("/"), "event_types": ["channel_occupied"],
        "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 200}}),
    ];
    let server = server_with(
        &hooks,
        &[
            ("METRICS_ENABLED", "true"),
            ("METRICS_HOST", "127.0.0.1"),
            ("METRICS_PORT", mps.as_str()),
        ],
    )
    .await;
    let mut ws = server.connect().await;
    ws.subscribe("retry-me").await;
    let requests = rx.wait_requests(3, WAIT).await;
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let id = requests[0].header("x-switchyard-webhook-id").unwrap();
    for r in &requests {
        assert_eq!(r.header("x-switchyard-webhook-id"), Some(id));
        assert_eq!(r.body, requests[0].body, "a retry sends the same body");
        r.assert_signed(APP_KEY, APP_SECRET);
    }
    // Backoff: the second attempt waits at least the initial backoff
    // (jitter only shortens it by half at most).
    assert!(requests[1].at - requests[0].at >= ms(25));
    assert_eq!(named(&rx.delivered(), "channel_occupied").len(), 1);

    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(mp).await;
        let sent = metric(&text, "sockudo_webhook_sent_total", &[]);
        let retried = metric(&text, "sockudo_webhook_retried_total", &[]);
        let failed = metric(&text, "sockudo_webhook_failed_total", &[]);
        if sent == Some(1.0) && retried == Some(2.0) {
            assert_eq!(failed, Some(0.0), "{text}");
            assert_eq!(metric(&text, "sockudo_webhook_queue_depth", &[]), Some(0.0));
            assert!(
                metric(&text, "sockudo_webhook_delivery_latency_seconds_count", &[])
                    .is_some_and(|n| n >= 1.0),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sent {sent:?} retried {retried:?}\n{text}"
        );
        tokio::time::sleep(ms(100)).await;
    }
}

#[tokio::test]
async fn a_refused_request_is_not_retried_and_its_body_is_logged_as_a_dead_letter() {
    let rx = Receiver::start().await;
    rx.plan(&[Reply::Status(400)]);
    let server = server_with(&[hook(&rx.url("/"), &["channel_occupied"])], &[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("refused-channel").await;
    rx.wait_requests(1, WAIT).await;
    server
        .wait_for_logs("dead letter", WAIT, |l| l.contains("webhook_dead_letter"))
        .await;
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("webhook_dead_letter"))
        .unwrap();
    assert!(line.contains("refused-channel"), "{line}");
    assert!(line.contains("400"), "{line}");
    // Another event still goes out: the webhook is not disabled.
    ws.subscribe("after-refusal").await;
    rx.wait_delivered(WAIT, "the next event", |e| {
        count(e, "channel_occupied", "after-refusal") == 1
    })
    .await;
    tokio::time::sleep(ms(300)).await;
    assert_eq!(rx.requests().len(), 2, "the 400 was retried");
}

#[tokio::test]
async fn a_hung_receiver_delays_neither_sockets_nor_other_webhooks() {
    let hung = Receiver::start().await;
    hung.then(Reply::Hang);
    let good = Receiver::start().await;
    let hooks = [
        json!({"url": hung.url("/"), "event_types": ["channel_occupied", "client_event"],
               "request_timeout_ms": 30000}),
        hook(&good.url("/"), &["channel_occupied", "client_event"]),
    ];
    let server = server_with(&hooks, &[]).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    for i in 0..10 {
        let c = format!("private-hang-{i}");
        a.subscribe_private(&c).await;
        b.subscribe_private(&c).await;
    }
    hung.wait_requests(1, WAIT).await;
    let api = server.api();
    for i in 0..10 {
        let c = format!("private-hang-{i}");
        let t = Instant::now();
        api.publish(&c, "ping", "{}").await;
        a.expect_channel_event("ping", &c).await;
        assert!(t.elapsed() < ms(500), "publish took {:?}", t.elapsed());
        b.expect_channel_event("ping", &c).await;
        a.client_event(&c, "client-x", json!({})).await;
        b.expect_channel_event("client-x", &c).await;
    }
    let events = good
        .wait_delivered(WAIT, "all events", |e| {
            named(e, "channel_occupied").len() == 10 && named(e, "client_event").len() == 10
        })
        .await;
    assert_eq!(events.len(), 20);
}

#[tokio::test]
async fn quick_subscribe_unsubscribe_loops_alternate_and_end_vacated() {
    let rx = Receiver::start().await;
    let server = server_with(
        &[hook(
            &rx.url("/"),
            &[
                "channel_occupied",
                "channel_vacated",
                "member_added",
                "member_removed",
            ],
        )],
        &[],
    )
    .await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let cd = r#"{"user_id":"looper","user_info":{}}"#;
    for _ in 0..1000 {
        a.send_subscribe(json!({"channel": "loop"})).await;
        a.unsubscribe("loop").await;
        b.send_presence_subscribe("presence-loop", cd).await;
        b.unsubscribe("presence-loop").await;
    }
    // Both sockets answer: everything above was handled.
    skip_to_subscribed(&mut a, "fence").await;
    skip_to_subscribed(&mut b, "fence-b").await;
    rx.wait_delivered(WAIT, "the end of the loops", |e| {
        names_on(e, "loop").last().map(String::as_str) == Some("channel_vacated")
            && names_on(e, "presence-loop").last().map(String::as_str) == Some("channel_vacated")
    })
    .await;
    // Let stragglers in, then check the whole history.
    tokio::time::sleep(ms(300)).await;
    let events = rx.delivered();
    let plain = names_on(&events, "loop");
    assert!(!plain.is_empty());
    for (i, name) in plain.iter().enumerate() {
        let want = if i % 2 == 0 {
            "channel_occupied"
        } else {
            "channel_vacated"
        };
        assert_eq!(name, want, "event {i} of {plain:?}");
    }
    assert_eq!(plain.last().unwrap(), "channel_vacated");
    let presence: Vec<String> = names_on(&events, "presence-loop")
        .into_iter()
        .filter(|n| n.starts_with("member_"))
        .collect();
    for (i, name) in presence.iter().enumerate() {
        let want = if i % 2 == 0 {
            "member_added"
        } else {
            "member_removed"
        };
        assert_eq!(name, want, "event {i} of {presence:?}");
    }
    assert_eq!(presence.last().unwrap(), "member_removed");
}

/// A receiver, and the env text of a webhook to it for occupied/vacated and
/// added/removed.
async fn comings_and_goings() -> (Receiver, String) {
    let rx = Receiver::start().await;
    let types = [
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
    ];
    let text = json!([hook(&rx.url("/"), &types)]).to_string();
    (rx, text)
}

#[tokio::test]
async fn a_quick_rejoin_within_the_grace_tells_the_backend_nothing() {
    let (rx, text) = comings_and_goings().await;
    // The default grace (2 s): no WEBHOOK_LEAVE_GRACE_MS.
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_WEBHOOKS", text.as_str())]).await;
    let mut ws = server.connect().await;
    ws.subscribe_presence("presence-page", "reader", json!({}))
        .await;
    rx.wait_delivered(WAIT, "joined", |e| {
        count(e, "member_added", "presence-page") == 1
    })
    .await;
    // A page reload: the socket goes, a new one joins at once.
    ws.close().await;
    let mut again = server.connect().await;
    again
        .subscribe_presence("presence-page", "reader", json!({}))
        .await;
    tokio::time::sleep(ms(2600)).await;
    assert_eq!(
        names_on(&rx.delivered(), "presence-page"),
        ["channel_occupied", "member_added"],
        "a reload within the grace was told"
    );
    // Leaving for good is told once the grace is over.
    let left = Instant::now();
    again.close().await;
    let events = rx
        .wait_delivered(WAIT, "left", |e| {
            count(e, "channel_vacated", "presence-page") == 1
        })
        .await;
    assert!(
        left.elapsed() >= ms(1900),
        "told after {:?}",
        left.elapsed()
    );
    assert_eq!(
        names_on(&events, "presence-page"),
        [
            "channel_occupied",
            "member_added",
            "member_removed",
            "channel_vacated"
        ]
    );
}

#[tokio::test]
async fn sigterm_tells_the_leaves_still_waiting_out_their_grace() {
    let (rx, text) = comings_and_goings().await;
    let mut server = Server::start_app(&[
        ("SOCKUDO_DEFAULT_APP_WEBHOOKS", text.as_str()),
        ("WEBHOOK_LEAVE_GRACE_MS", "60000"),
    ])
    .await;
    let mut ws = server.connect().await;
    ws.subscribe_presence("presence-shift", "worker", json!({}))
        .await;
    ws.subscribe("board").await;
    rx.wait_delivered(WAIT, "joined", |e| {
        count(e, "member_added", "presence-shift") == 1
            && count(e, "channel_occupied", "board") == 1
    })
    .await;
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", server.logs());
    let events = rx.delivered();
    assert_eq!(
        names_on(&events, "presence-shift"),
        [
            "channel_occupied",
            "member_added",
            "member_removed",
            "channel_vacated"
        ],
        "{events:#?}"
    );
    assert_eq!(
        names_on(&events, "board"),
        ["channel_occupied", "channel_vacated"]
    );
}

#[tokio::test]
async fn policy_webhooks_win_over_flat_ones_and_the_flat_ones_are_warned_about() {
    let policy = Receiver::start().await;
    let flat = Receiver::start().await;
    let config = json!({"app_manager": {"driver": "memory", "array": {"apps": [{
        "id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, "enabled": true,
        "webhooks": [hook(&flat.url("/"), &["channel_occupied"])],
        "policy": {"webhooks": [hook(&policy.url("/"), &["channel_occupied"])]}
    }]}}, "webhooks": {"leave_grace_ms": 0}});
    let server = Server::start_with_config(&config.to_string(), &[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("grouped").await;
    policy
        .wait_delivered(WAIT, "occupied", |e| e.len() == 1)
        .await;
    tokio::time::sleep(ms(300)).await;
    assert!(flat.requests().is_empty());
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("webhooks") && l.contains("policy")),
        "{logs}"
    );

    // The flat shape alone works too.
    let flat = Receiver::start().await;
    let config = json!({"app_manager": {"driver": "memory", "array": {"apps": [{
        "id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, "enabled": true,
        "webhooks": [hook(&flat.url("/"), &["channel_occupied"])]
    }]}}});
    let server = Server::start_with_config(&config.to_string(), &[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("flat").await;
    flat.wait_delivered(WAIT, "occupied", |e| e.len() == 1)
        .await;
}

#[tokio::test]
async fn bad_webhook_configuration_refuses_to_start_and_names_the_key() {
    let cases: [(Value, &str); 5] = [
        (
            json!([{"url": "http://127.0.0.1:9/", "event_types": ["channel_occupied"],
                     "filter": {"channel_pattern": "orders.(["}}]),
            "SOCKUDO_DEFAULT_APP_WEBHOOKS[0].filter.channel_pattern",
        ),
        (
            json!([{"lambda_function": "notify", "event_types": ["channel_occupied"]}]),
            "SOCKUDO_DEFAULT_APP_WEBHOOKS[0].lambda_function",
        ),
        (
            json!([{"url": "http://127.0.0.1:9/"}]),
            "SOCKUDO_DEFAULT_APP_WEBHOOKS[0].event_types",
        ),
        (
            json!([{"url": "ftp://127.0.0.1/", "event_types": ["channel_occupied"]}]),
            "SOCKUDO_DEFAULT_APP_WEBHOOKS[0].url",
        ),
        (
            json!([{"url": "http://127.0.0.1:9/", "event_types": ["channel_occupied"],
                     "headers": {"X-Pusher-Signature": "forged"}}]),
            "SOCKUDO_DEFAULT_APP_WEBHOOKS[0].headers.X-Pusher-Signature",
        ),
    ];
    for (hooks, key) in cases {
        let text = hooks.to_string();
        let mut env = app_env();
        env.push(("SOCKUDO_DEFAULT_APP_WEBHOOKS", text.as_str()));
        let failure = Server::start_expect_failure(&env, None, &[]).await;
        assert!(!failure.status.success());
        assert!(
            failure.output.contains(key),
            "{key} not named for {hooks}:\n{}",
            failure.output
        );
    }
    // Not JSON at all.
    let mut env = app_env();
    env.push(("SOCKUDO_DEFAULT_APP_WEBHOOKS", "[{"));
    let failure = Server::start_expect_failure(&env, None, &[]).await;
    assert!(
        failure.output.contains("SOCKUDO_DEFAULT_APP_WEBHOOKS"),
        "{}",
        failure.output
    );
}
