//! Metrics (security guide "Metrics to Monitor"): Prometheus text on the
//! internal METRICS_PORT only, the documented series present, and their
//! values following real activity (connections, refusals, auth failures,
//! rate limits, HTTP statuses).

mod common;

use common::prereq;
use common::security::*;
use common::*;
use serde_json::json;

const SERIES: &[&str] = &[
    "sockudo_connected",
    "sockudo_new_connections_total",
    "sockudo_new_disconnections_total",
    "sockudo_ws_messages_received_total",
    "sockudo_ws_messages_sent_total",
    "sockudo_socket_received_bytes",
    "sockudo_socket_transmitted_bytes",
    "sockudo_channel_subscriptions_total",
    "sockudo_channel_unsubscriptions_total",
    "sockudo_client_events_total",
    "sockudo_api_events_published_total",
    "sockudo_connection_errors_total",
    "sockudo_auth_failures_total",
    "sockudo_rate_limit_triggered_total",
    "sockudo_http_requests_total",
    "sockudo_http_requests_duration_seconds_count",
];

const GOOD: &str = "https://good.example";

async fn metrics_server(extra: &[(&str, &str)]) -> (Server, u16) {
    let mp = pick_port();
    let mps = mp.to_string();
    let mut env = vec![
        ("METRICS_ENABLED", "true"),
        ("METRICS_HOST", "127.0.0.1"),
        ("METRICS_PORT", mps.as_str()),
    ];
    env.extend_from_slice(extra);
    (Server::start_app(&env).await, mp)
}

fn names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(parse_series)
        .map(|(n, _, _)| n)
        .collect()
}

/// Poll until the series is at least `min` (traffic counters lag a tick).
async fn wait_metric_at_least(port: u16, name: &str, labels: &[(&str, &str)], min: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    loop {
        let text = scrape(port).await;
        let v = metric(&text, name, labels);
        if v.is_some_and(|v| v >= min) {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("{name}{labels:?} should reach {min}, is {v:?}");
        }
        tokio::time::sleep(ms(100)).await;
    }
}

async fn good_ws(server: &Server) -> Ws {
    let mut ws = Ws::try_open_with(&server.app_ws_url(), &[("Origin", GOOD)], None)
        .await
        .unwrap();
    ws.read_established().await;
    ws
}

#[tokio::test]
async fn metrics_follow_connections_refusals_auth_failures_and_limits() {
    let (server, mp) = metrics_server(&[
        ("SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS", GOOD),
        ("PONG_TIMEOUT", "4"),
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_API_MAX_REQUESTS", "4"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ])
    .await;
    let port = server.port.to_string();
    let app = |extra: &[(&'static str, &'static str)]| {
        let mut l: Vec<(&str, &str)> = vec![("app_id", APP_ID), ("port", port.as_str())];
        l.extend_from_slice(extra);
        l
    };
    let none = |extra: &[(&'static str, &'static str)]| {
        let mut l: Vec<(&str, &str)> = vec![("app_id", ""), ("port", port.as_str())];
        l.extend_from_slice(extra);
        l
    };

    let text = scrape(mp).await;
    let present = names(&text);
    for s in SERIES {
        assert!(
            present.iter().any(|n| n == s),
            "series {s} missing:\n{text}"
        );
    }
    assert!(
        present.iter().any(|n| n.contains("process_")),
        "process_* series missing"
    );
    assert_eq!(metric(&text, "sockudo_connected", &app(&[])), Some(0.0));

    // two sockets
    let mut a = good_ws(&server).await;
    let b = good_ws(&server).await;
    wait_metric(mp, "sockudo_connected", &app(&[]), 2.0).await;
    wait_metric(mp, "sockudo_new_connections_total", &app(&[]), 2.0).await;

    // an origin refusal, an unknown app
    let mut evil = Ws::try_open_with(
        &server.app_ws_url(),
        &[("Origin", "https://evil.example")],
        None,
    )
    .await
    .unwrap();
    evil.expect_error(4009).await;
    wait_metric(
        mp,
        "sockudo_connection_errors_total",
        &app(&[("error_type", "origin_not_allowed")]),
        1.0,
    )
    .await;
    let mut unknown = Ws::try_open_with(
        &server.ws_url("/app/nope?protocol=7"),
        &[("Origin", GOOD)],
        None,
    )
    .await
    .unwrap();
    unknown.expect_error(4001).await;
    wait_metric(
        mp,
        "sockudo_connection_errors_total",
        &none(&[("error_type", "app_not_found")]),
        1.0,
    )
    .await;
    let text = wait_metric(mp, "sockudo_connected", &app(&[]), 2.0).await;
    assert_eq!(
        metric(&text, "sockudo_new_connections_total", &app(&[])),
        Some(2.0),
        "refused sockets are not connections"
    );

    // a failed channel auth
    a.send_subscribe(
        json!({"channel": "private-m", "auth": format!("{APP_KEY}:{}", "0".repeat(64))}),
    )
    .await;
    a.expect_subscription_error("private-m", "AuthError", 401)
        .await;
    wait_metric(
        mp,
        "sockudo_auth_failures_total",
        &app(&[("kind", "channel")]),
        1.0,
    )
    .await;
    a.subscribe("public-m").await;
    wait_metric(mp, "sockudo_channel_subscriptions_total", &app(&[]), 1.0).await;

    // API: a bad signature, a publish, then the limit (4 per window)
    let api = server.api();
    let bad = Sign {
        corrupt_signature: true,
        ..Sign::default()
    };
    assert_eq!(api.get_with("/channels", &[], &bad).await.status, 401);
    wait_metric(
        mp,
        "sockudo_auth_failures_total",
        &app(&[("kind", "api")]),
        1.0,
    )
    .await;
    api.publish("public-m", "e", "d").await;
    a.expect_channel_event("e", "public-m").await;
    wait_metric(mp, "sockudo_api_events_published_total", &app(&[]), 1.0).await;
    assert_eq!(api.get("/channels", &[]).await.status, 200);
    assert_eq!(api.get("/channels", &[]).await.status, 200);
    let text = scrape(mp).await;
    assert_eq!(
        metric(
            &text,
            "sockudo_rate_limit_triggered_total",
            &none(&[("limiter_type", "api")])
        ),
        Some(0.0)
    );
    assert_eq!(api.get("/channels", &[]).await.status, 429);
    let text = wait_metric(
        mp,
        "sockudo_rate_limit_triggered_total",
        &none(&[("limiter_type", "api")]),
        1.0,
    )
    .await;
    // HTTP requests by status
    for status in ["200", "401", "429"] {
        assert!(
            metric(&text, "sockudo_http_requests_total", &[("status", status)])
                .is_some_and(|v| v >= 1.0),
            "http_requests_total{{status=\"{status}\"}} missing:\n{}",
            text.lines()
                .filter(|l| l.contains("http_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(metric(
        &text,
        "sockudo_http_requests_total",
        &[("method", "POST"), ("status", "200")]
    )
    .is_some());
    // frames to the sockets: 2 connection_established, subscription_error,
    // subscription_succeeded, the event; from them: 2 subscribes. Sessions
    // add their traffic to the shared counters once per heartbeat tick
    // (PONG_TIMEOUT=4 above: every second).
    for (name, min) in [
        ("sockudo_ws_messages_sent_total", 5.0),
        ("sockudo_ws_messages_received_total", 2.0),
        ("sockudo_socket_transmitted_bytes", 100.0),
        ("sockudo_socket_received_bytes", 50.0),
    ] {
        wait_metric_at_least(mp, name, &app(&[]), min).await;
    }

    // a disconnect
    b.close().await;
    wait_metric(mp, "sockudo_connected", &app(&[]), 1.0).await;
    wait_metric(mp, "sockudo_new_disconnections_total", &app(&[]), 1.0).await;

    // never on the public port
    let public = http_get(&format!("{}/metrics", server.http_base())).await;
    assert_eq!(public.status, 404, "{}", public.text);
    assert!(!public.text.contains("sockudo_connected"));
    a.assert_alive().await;
}

#[tokio::test]
async fn per_app_limits_and_client_events_are_counted() {
    let (server, mp) = metrics_server(&[
        ("SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND", "1"),
        ("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "1"),
        ("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", "1"),
    ])
    .await;
    let port = server.port.to_string();
    let labels = |k: &'static str| {
        vec![
            ("app_id", APP_ID),
            ("port", port.as_str()),
            ("limiter_type", k),
        ]
    };
    let mut rx = server.connect().await;
    rx.subscribe_private("private-c").await;
    let mut tx = server.connect().await;
    tx.subscribe_private("private-c").await;
    // 1 per second each: the 2nd is refused only inside the first one's
    // second (prereq::Window retries when the machine was slower)
    let mut w = prereq::Window::new("2 client events in one second", ms(1000), ms(1100));
    let mut accepted = 0.0;
    loop {
        w.start().await;
        tx.client_event("private-c", "client-x", json!({})).await;
        rx.expect_channel_event("client-x", "private-c").await;
        tx.client_event("private-c", "client-x", json!({})).await;
        // in order: a 4301 before the pong, or the pong alone
        tx.send_json(json!({"event": "pusher:ping", "data": {}}))
            .await;
        let f = tx.recv().await;
        let refused = f.event() == "pusher:error";
        accepted += if refused { 1.0 } else { 2.0 };
        if !refused {
            rx.expect_channel_event("client-x", "private-c").await;
        }
        if w.conclusive(refused) {
            assert_eq!(f.json["data"]["code"], 4301, "2nd client event: {}", f.raw);
            break;
        }
    }
    let only_app = vec![("app_id", APP_ID), ("port", port.as_str())];
    wait_metric(mp, "sockudo_client_events_total", &only_app, accepted).await;
    wait_metric(
        mp,
        "sockudo_rate_limit_triggered_total",
        &labels("client_event"),
        1.0,
    )
    .await;

    let api = server.api();
    let mut w = prereq::Window::new("2 publishes in one second", ms(1000), ms(1100));
    let statuses = loop {
        w.start().await;
        let first = api
            .publish_body(json!({"name": "e", "channel": "c", "data": "d"}))
            .await
            .status;
        let second = api
            .publish_body(json!({"name": "e", "channel": "c", "data": "d"}))
            .await
            .status;
        if w.conclusive(second == 429) {
            break [first, second];
        }
    };
    assert_eq!(statuses, [200, 429], "publishes");
    wait_metric(
        mp,
        "sockudo_rate_limit_triggered_total",
        &labels("backend_event"),
        1.0,
    )
    .await;
    let mut w = prereq::Window::new("2 reads in one second", ms(1000), ms(1100));
    let statuses = loop {
        w.start().await;
        let first = api.get("/channels", &[]).await.status;
        let second = api.get("/channels", &[]).await.status;
        if w.conclusive(second == 429) {
            break [first, second];
        }
    };
    assert_eq!(statuses, [200, 429], "reads");
    wait_metric(
        mp,
        "sockudo_rate_limit_triggered_total",
        &labels("read_request"),
        1.0,
    )
    .await;
}

#[tokio::test]
async fn ws_connect_limit_and_prefix_are_reflected() {
    let (server, mp) = metrics_server(&[
        ("METRICS_PROMETHEUS_PREFIX", "edge_"),
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_WS_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_WS_WINDOW_SECONDS", "60"),
    ])
    .await;
    let _a = server.connect().await;
    let err = Ws::try_open_with(&server.app_ws_url(), &[], None)
        .await
        .err()
        .expect("second upgrade refused");
    assert_eq!(upgrade_status(&err), Some(429));
    let port = server.port.to_string();
    let text = wait_metric(
        mp,
        "edge_rate_limit_triggered_total",
        &[
            ("app_id", ""),
            ("port", port.as_str()),
            ("limiter_type", "ws_connect"),
        ],
        1.0,
    )
    .await;
    assert!(
        metric(&text, "edge_connected", &[("app_id", APP_ID)]) == Some(1.0),
        "{text}"
    );
    assert!(
        !names(&text).iter().any(|n| n.starts_with("sockudo_")),
        "default prefix still used"
    );
}

/// Probing random paths must not grow the registry: unmatched requests share
/// one `endpoint` label instead of one series per path.
#[tokio::test]
async fn unmatched_paths_share_one_series() {
    let (server, mp) = metrics_server(&[]).await;
    for i in 0..50 {
        let r = http_get(&format!("{}/probe-{i}/x{i}", server.http_base())).await;
        assert_eq!(r.status, 404);
    }
    wait_metric_at_least(
        mp,
        "sockudo_http_requests_total",
        &[("endpoint", "UNMATCHED"), ("status", "404")],
        50.0,
    )
    .await;
    let text = scrape(mp).await;
    assert!(!text.contains("probe-"), "{text}");
    // Matched routes keep their pattern, never the app id or channel.
    server.api().channel_info("secret-channel", "").await;
    wait_metric_at_least(
        mp,
        "sockudo_http_requests_total",
        &[("endpoint", "/apps/{app_id}/channels/{channel_name}")],
        1.0,
    )
    .await;
    let text = scrape(mp).await;
    assert!(!text.contains("secret-channel"), "{text}");
}

#[tokio::test]
async fn metrics_disabled_opens_no_listener() {
    let mp = pick_port();
    let mps = mp.to_string();
    let server =
        Server::start_app(&[("METRICS_ENABLED", "false"), ("METRICS_PORT", mps.as_str())]).await;
    assert_eq!(server.tcp_listening_ports(), vec![server.port]);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", mp))
        .await
        .is_err());
    let public = http_get(&format!("{}/metrics", server.http_base())).await;
    assert_eq!(public.status, 404);

    let (on, mp) = metrics_server(&[]).await;
    let mut ports = on.tcp_listening_ports();
    ports.sort();
    let mut want = vec![on.port, mp];
    want.sort();
    assert_eq!(ports, want, "public and metrics listeners only");
}

/// README: the 431 for a request head over `HTTP_MAX_HEADER_SIZE_KB` holds
/// on "the redirect and metrics listeners" too: the same JSON body, the
/// connection closed, `headers_too_large` logged.
#[tokio::test]
async fn an_oversized_head_on_the_metrics_listener_is_the_json_431() {
    let (server, mp) = metrics_server(&[]).await;
    assert!(scrape(mp).await.contains("# TYPE"), "the listener serves");
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(17 * 1024)
    );
    let (status, body) = exchange_raw(mp, head.as_bytes()).await;
    assert_431_json(status, &body, "metrics listener");
    server
        .wait_for_logs("headers_too_large logged", ms(5000), |l| {
            l.contains("headers_too_large")
        })
        .await;
}
