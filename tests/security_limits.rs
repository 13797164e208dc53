//! Resource limits (security guide "Resource Limits"), each at its edge:
//! exactly at the limit passes, one over is refused the documented way.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// `"x"` × n.
fn xs(n: usize) -> String {
    "x".repeat(n)
}

/// A JSON object text `{"p":"xxx"}` of exactly `n` bytes.
fn object_of(n: usize) -> String {
    let s = format!("{{\"p\":\"{}\"}}", xs(n - 8));
    assert_eq!(s.len(), n);
    s
}

/// channel_data `{"user_id":"u..","user_info":{"p":"xx"}}` of exactly `n` bytes.
fn channel_data_of(user: &str, n: usize) -> String {
    let base = json!({"user_id": user, "user_info": {"p": ""}}).to_string();
    let s = json!({"user_id": user, "user_info": {"p": xs(n - base.len())}}).to_string();
    assert_eq!(s.len(), n);
    s
}

#[tokio::test]
async fn app_max_connections_refuses_the_next_socket_with_4004() {
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "2")]).await;
    let mut a = server.connect().await;
    let b = server.connect().await;
    let mut c = server.connect_raw(&app_path()).await;
    c.expect_error(4004).await;
    c.expect_close(4004).await;
    a.assert_alive().await;
    // a freed slot can be taken again (the close is processed asynchronously)
    b.close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut d = server.connect_raw(&app_path()).await;
        let f = d.recv().await;
        if f.event() == "pusher:connection_established" {
            break;
        }
        assert_eq!(f.json["data"]["code"], 4004, "{}", f.raw);
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(ms(50)).await;
    }
}

fn app_path() -> String {
    format!("/app/{APP_KEY}?protocol=7&client=rust&version=1.0")
}

#[tokio::test]
async fn server_max_connections_counts_all_apps_and_refuses_with_4100() {
    let config = r#"{"app_manager": {"driver": "memory", "array": {"apps": [
        {"id": "one", "key": "one-key", "secret": "one-secret-0123456789abcdef0123456", "enabled": true, "max_connections": 100},
        {"id": "two", "key": "two-key", "secret": "two-secret-0123456789abcdef0123456", "enabled": true, "max_connections": 100}
    ]}}}"#;
    let server = Server::start_with_config(config, &[("SOCKUDO_MAX_CONNECTIONS", "2")]).await;
    let mut a = server.connect_key("one-key").await;
    let mut b = server.connect_key("two-key").await;
    for key in ["one-key", "two-key"] {
        let mut c = server.connect_raw(&format!("/app/{key}?protocol=7")).await;
        c.expect_error(4100).await;
        c.expect_close(4100).await;
    }
    a.assert_alive().await;
    b.assert_alive().await;
}

#[tokio::test]
async fn websocket_message_of_exactly_max_payload_passes_and_one_more_byte_closes_1009() {
    let server = Server::start_app(&[("WEBSOCKET_MAX_PAYLOAD_KB", "1")]).await;
    let ping_of = |n: usize| {
        let base = json!({"event": "pusher:ping", "data": {"p": ""}}).to_string();
        let s = json!({"event": "pusher:ping", "data": {"p": xs(n - base.len())}}).to_string();
        assert_eq!(s.len(), n);
        s
    };
    let mut other = server.connect().await;
    let mut ws = server.connect().await;
    ws.send_text(&ping_of(1024)).await;
    ws.expect_event("pusher:pong").await;
    ws.send_text(&ping_of(1025)).await;
    ws.expect_close(1009).await;
    other.assert_alive().await;
}

#[tokio::test]
async fn http_body_of_exactly_the_limit_passes_and_one_more_byte_is_413() {
    let server = Server::start_app(&[("HTTP_API_REQUEST_LIMIT_IN_MB", "1")]).await;
    let api = server.api();
    let limit = 1024 * 1024;
    let body_of = |n: usize| {
        let mut s = json!({"name": "e", "channel": "c", "data": "x"}).to_string();
        s.push_str(&" ".repeat(n - s.len()));
        s
    };
    let r = api.post("/events", &body_of(limit)).await;
    assert_eq!(r.status, 200, "exactly 1 MiB: {:?}", r.text);
    let r = api.post("/events", &body_of(limit + 1)).await;
    r.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn event_data_of_exactly_max_payload_passes_api_and_client_events() {
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "1")]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("payload").await;
    api.publish("payload", "e", &xs(1024)).await;
    let f = ws.expect_channel_event("e", "payload").await;
    assert_eq!(f.data_str().len(), 1024);
    api.publish_body(json!({"name": "e", "channel": "payload", "data": xs(1025)}))
        .await
        .assert_error(413, "payload_too_large");
    ws.expect_silence(ms(200)).await;

    // client events: the raw JSON `data` is measured
    let ch = "private-payload";
    let mut rx = server.connect().await;
    rx.subscribe_private(ch).await;
    let mut tx = server.connect().await;
    tx.subscribe_private(ch).await;
    let exact = object_of(1024);
    tx.send_text(&format!(
        "{{\"event\":\"client-big\",\"channel\":\"{ch}\",\"data\":{exact}}}"
    ))
    .await;
    let f = rx.expect_channel_event("client-big", ch).await;
    assert_eq!(f.json["data"].to_string().len(), 1024);
    let over = object_of(1025);
    tx.send_text(&format!(
        "{{\"event\":\"client-big\",\"channel\":\"{ch}\",\"data\":{over}}}"
    ))
    .await;
    tx.expect_error(4301).await;
    rx.expect_silence(ms(200)).await;
    tx.assert_alive().await;
}

#[tokio::test]
async fn channel_name_length_limit_on_subscribe_and_publish() {
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH", "10")]).await;
    let ten = "abcdefghij";
    let eleven = "abcdefghijk";
    let mut ws = server.connect().await;
    ws.subscribe(ten).await;
    ws.send_subscribe(json!({ "channel": eleven })).await;
    ws.expect_subscription_error(eleven, "InvalidChannel", 400)
        .await;
    ws.assert_alive().await;
    let api = server.api();
    api.publish(ten, "e", "d").await;
    ws.expect_channel_event("e", ten).await;
    api.publish_body(json!({"name": "e", "channel": eleven, "data": "d"}))
        .await
        .assert_error(400, "invalid_input");
}

#[tokio::test]
async fn event_channels_name_and_batch_limits() {
    let server = Server::start_app(&[
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_CHANNELS_AT_ONCE", "3"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_NAME_LENGTH", "10"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE", "3"),
    ])
    .await;
    let api = server.api();
    api.publish_body(json!({"name": "e", "channels": ["a", "b", "c"], "data": "d"}))
        .await
        .assert_ok();
    api.publish_body(json!({"name": "e", "channels": ["a", "b", "c", "d"], "data": "d"}))
        .await
        .assert_error(400, "invalid_input");

    api.publish_body(json!({"name": "abcdefghij", "channel": "a", "data": "d"}))
        .await
        .assert_ok();
    api.publish_body(json!({"name": "abcdefghijk", "channel": "a", "data": "d"}))
        .await
        .assert_error(400, "invalid_input");

    let batch = |n: usize| {
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"name": "e", "channel": format!("ch-{i}"), "data": "d"}))
            .collect();
        json!({ "batch": items }).to_string()
    };
    api.post("/batch_events", &batch(3)).await.assert_ok();
    let v = api
        .post("/batch_events", &batch(4))
        .await
        .assert_error(400, "invalid_input");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Batch size (4) exceeds limit (3)"),
        "{v}"
    );

    // client event names too
    let ch = "private-names";
    let mut rx = server.connect().await;
    rx.subscribe_private(ch).await;
    let mut tx = server.connect().await;
    tx.subscribe_private(ch).await;
    tx.client_event(ch, "client-abc", json!({})).await; // 10 chars
    rx.expect_channel_event("client-abc", ch).await;
    tx.client_event(ch, "client-abcd", json!({})).await; // 11 chars
    tx.expect_error(4301).await;
    rx.expect_silence(ms(200)).await;
}

#[tokio::test]
async fn presence_members_and_member_size_limits() {
    let server = Server::start_app(&[
        ("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL", "2"),
        ("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB", "1"),
    ])
    .await;
    let ch = "presence-limits";
    let mut u1 = server.connect().await;
    u1.subscribe_presence(ch, "1", json!({})).await;
    let mut u2 = server.connect().await;
    u2.subscribe_presence(ch, "2", json!({})).await;
    // a third distinct user is over the limit
    let mut u3 = server.connect().await;
    u3.send_presence_subscribe(ch, &json!({"user_id": "3"}).to_string())
        .await;
    u3.expect_subscription_error(ch, "LimitReached", 403).await;
    u3.assert_alive().await;
    // the same user on another socket is not a new member
    let mut u1b = server.connect().await;
    let roster = u1b.subscribe_presence(ch, "1", json!({})).await;
    assert_eq!(roster["count"], 2, "{roster}");

    // member size: channel_data of exactly 1 KiB passes, 1 byte more does not
    let sized = "presence-sized";
    let mut a = server.connect().await;
    a.subscribe_presence_raw(sized, &channel_data_of("a", 1024))
        .await;
    let mut b = server.connect().await;
    b.send_presence_subscribe(sized, &channel_data_of("b", 1025))
        .await;
    b.expect_subscription_error(sized, "LimitReached", 403)
        .await;
}

#[tokio::test]
async fn config_file_limits_apply_unless_the_app_sets_its_own() {
    let config = json!({
        "channel_limits": {"max_name_length": 10},
        "event_limits": {"max_channels_at_once": 2, "max_name_length": 8, "max_payload_in_kb": 1, "max_batch_size": 2},
        "presence": {"max_members_per_channel": 1, "max_member_size_in_kb": 1},
        "app_manager": {"driver": "memory", "array": {"apps": [
            {"id": "base", "key": "base-key", "secret": "base-secret-0123456789abcdef012345", "enabled": true},
            {"id": "own", "key": "own-key", "secret": "own-secret-0123456789abcdef0123456", "enabled": true,
             "max_channel_name_length": 12, "max_event_channels_at_once": 3, "max_event_name_length": 9,
             "max_event_payload_in_kb": 2, "max_event_batch_size": 3,
             "max_presence_members_per_channel": 2, "max_presence_member_size_in_kb": 2}
        ]}}
    })
    .to_string();
    let server = Server::start_with_config(&config, &[]).await;
    struct Edges {
        id: &'static str,
        key: &'static str,
        secret: &'static str,
        name_len: usize,
        channels: usize,
        event_name: usize,
        payload: usize,
        batch: usize,
        members: usize,
        member_size: usize,
    }
    let apps = [
        Edges {
            id: "base",
            key: "base-key",
            secret: "base-secret-0123456789abcdef012345",
            name_len: 10,
            channels: 2,
            event_name: 8,
            payload: 1024,
            batch: 2,
            members: 1,
            member_size: 1024,
        },
        Edges {
            id: "own",
            key: "own-key",
            secret: "own-secret-0123456789abcdef0123456",
            name_len: 12,
            channels: 3,
            event_name: 9,
            payload: 2048,
            batch: 3,
            members: 2,
            member_size: 2048,
        },
    ];
    for e in &apps {
        let api = server.api_for(e.id, e.key, e.secret);
        let at = |n: usize| "c".repeat(n);
        let publish = |body: Value| api.publish_body(body);
        let id = e.id;
        // channel name
        publish(json!({"name": "e", "channel": at(e.name_len), "data": "d"}))
            .await
            .assert_ok();
        let r = publish(json!({"name": "e", "channel": at(e.name_len + 1), "data": "d"})).await;
        assert_eq!(r.status, 400, "{id} channel name +1: {:?}", r.text);
        // channels at once
        let chans = |n: usize| (0..n).map(|i| format!("ch{i}")).collect::<Vec<_>>();
        publish(json!({"name": "e", "channels": chans(e.channels), "data": "d"}))
            .await
            .assert_ok();
        let r = publish(json!({"name": "e", "channels": chans(e.channels + 1), "data": "d"})).await;
        assert_eq!(r.status, 400, "{id} channels +1: {:?}", r.text);
        // event name
        publish(json!({"name": "n".repeat(e.event_name), "channel": "c", "data": "d"}))
            .await
            .assert_ok();
        let r = publish(json!({"name": "n".repeat(e.event_name + 1), "channel": "c", "data": "d"}))
            .await;
        assert_eq!(r.status, 400, "{id} event name +1: {:?}", r.text);
        // payload
        publish(json!({"name": "e", "channel": "c", "data": xs(e.payload)}))
            .await
            .assert_ok();
        let r = publish(json!({"name": "e", "channel": "c", "data": xs(e.payload + 1)})).await;
        assert_eq!(r.status, 413, "{id} payload +1: {:?}", r.text);
        // batch
        let batch = |n: usize| {
            json!({"batch": (0..n).map(|_| json!({"name": "e", "channel": "c", "data": "d"})).collect::<Vec<_>>()})
                .to_string()
        };
        api.post("/batch_events", &batch(e.batch)).await.assert_ok();
        let r = api.post("/batch_events", &batch(e.batch + 1)).await;
        assert_eq!(r.status, 400, "{id} batch +1: {:?}", r.text);

        // presence: members, then member size
        let ch = "presence-m"; // names stay within the 10-character limit
        let mut members = Vec::new();
        for u in 0..e.members {
            let mut ws = server.connect_key(e.key).await;
            let cd = json!({"user_id": format!("u{u}")}).to_string();
            let auth = presence_auth(e.key, e.secret, &ws.socket_id, ch, &cd);
            ws.send_subscribe(json!({"channel": ch, "auth": auth, "channel_data": cd}))
                .await;
            ws.expect_channel_event("pusher_internal:subscription_succeeded", ch)
                .await;
            members.push(ws);
        }
        let mut over = server.connect_key(e.key).await;
        let cd = json!({"user_id": "over"}).to_string();
        let auth = presence_auth(e.key, e.secret, &over.socket_id, ch, &cd);
        over.send_subscribe(json!({"channel": ch, "auth": auth, "channel_data": cd}))
            .await;
        over.expect_subscription_error(ch, "LimitReached", 403)
            .await;

        for (size, ok, ch) in [
            (e.member_size, true, "presence-a"),
            (e.member_size + 1, false, "presence-b"),
        ] {
            let mut ws = server.connect_key(e.key).await;
            let cd = channel_data_of("s", size);
            let auth = presence_auth(e.key, e.secret, &ws.socket_id, ch, &cd);
            ws.send_subscribe(json!({"channel": ch, "auth": auth, "channel_data": cd}))
                .await;
            if ok {
                ws.expect_channel_event("pusher_internal:subscription_succeeded", ch)
                    .await;
            } else {
                ws.expect_subscription_error(ch, "LimitReached", 403).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Request head (request line + header fields): 16 KiB by default, over it 431.

/// The default bound on a request head, bytes.
const HEAD_LIMIT: usize = 16 * 1024;

/// A request head of exactly `size` bytes as sent: the request line,
/// `fields`, and an `X-Pad` field that makes up the rest.
fn head_of(size: usize, method: &str, target: &str, fields: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in fields {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let overhead = "X-Pad: \r\n\r\n".len();
    let pad = size
        .checked_sub(head.len() + overhead)
        .expect("size leaves room for the pad");
    head.push_str(&format!("X-Pad: {}\r\n\r\n", "p".repeat(pad)));
    assert_eq!(head.len(), size);
    head
}

/// See [`exchange_raw`].
async fn exchange(port: u16, request: &[u8]) -> (u16, String) {
    exchange_raw(port, request).await
}

/// The JSON 431, whose message names the default limit.
fn assert_431_at_the_limit(status: u16, body: &str) {
    let v = assert_431_json(status, body, "request head");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("16384")),
        "the message names the limit: {v}"
    );
}

/// A signed `POST /apps/{id}/events` head of exactly `size` bytes, and its body.
fn publish_request(server: &Server, size: usize) -> Vec<u8> {
    let api = server.api();
    let body = json!({"name": "e", "channel": "head", "data": "d"}).to_string();
    let target = api.signed_target(
        "POST",
        &api.path("/events"),
        &[],
        body.as_bytes(),
        &Sign::default(),
    );
    let len = body.len().to_string();
    let head = head_of(
        size,
        "POST",
        &target,
        &[
            ("Host", "localhost"),
            ("Content-Type", "application/json"),
            ("Content-Length", &len),
            ("Connection", "close"),
        ],
    );
    [head.as_bytes(), body.as_bytes()].concat()
}

#[tokio::test]
async fn a_64_kib_header_on_the_api_is_431_and_the_server_keeps_serving() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("head").await;

    let request = publish_request(&server, 64 * 1024 + 200);
    let (status, body) = exchange(server.port, &request).await;
    assert_431_at_the_limit(status, &body);
    ws.expect_silence(ms(200)).await;
    // logged as a security event, without the header's content
    server
        .wait_for_logs("headers_too_large", RECV_TIMEOUT, |logs| {
            logs.contains("event=headers_too_large") && logs.contains("peer=127.0.0.1")
        })
        .await;
    assert!(!server.logs().contains("ppppp"), "{}", server.logs());

    // the next request (new connection) and the open socket are served
    server.api().publish("head", "after", "1").await;
    ws.expect_channel_event("after", "head").await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn an_api_request_head_of_exactly_the_limit_passes_and_one_more_byte_is_431() {
    let server = Server::start_app(&[]).await;
    let (status, body) = exchange(server.port, &publish_request(&server, HEAD_LIMIT)).await;
    assert_eq!(status, 200, "exactly {HEAD_LIMIT} bytes: {body:?}");
    assert_eq!(body, "{}");
    let (status, body) = exchange(server.port, &publish_request(&server, HEAD_LIMIT + 1)).await;
    assert_431_at_the_limit(status, &body);
}

#[tokio::test]
async fn http_max_header_size_kb_moves_the_bound() {
    let server = Server::start_app(&[("HTTP_MAX_HEADER_SIZE_KB", "32")]).await;
    let (status, body) = exchange(server.port, &publish_request(&server, 32 * 1024)).await;
    assert_eq!(status, 200, "exactly 32 KiB: {body:?}");
    let (status, body) = exchange(server.port, &publish_request(&server, 32 * 1024 + 1)).await;
    assert_eq!(status, 431, "{body:?}");
    assert!(body.contains("32768"), "{body:?}");
}

/// The fields of a WebSocket upgrade request.
const UPGRADE: [(&str, &str); 5] = [
    ("Host", "localhost"),
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[tokio::test]
async fn websocket_upgrade_heads_are_bounded_the_same_way() {
    let server = Server::start_app(&[]).await;
    let mut other = server.connect().await;

    // one 64 KiB header: refused before the upgrade
    let big = xs(64 * 1024);
    let err = Ws::try_open_with(&server.app_ws_url(), &[("X-Big", &big)], None)
        .await
        .err()
        .expect("a 64 KiB header must not be upgraded");
    assert_eq!(security::upgrade_status(&err), Some(431), "{err}");

    // at the limit: upgraded; one byte more: 431 with the JSON body
    let path = app_path();
    let (status, rest) = exchange(
        server.port,
        head_of(HEAD_LIMIT, "GET", &path, &UPGRADE).as_bytes(),
    )
    .await;
    assert_eq!(status, 101, "exactly {HEAD_LIMIT} bytes: {rest:?}");
    let (status, body) = exchange(
        server.port,
        head_of(HEAD_LIMIT + 1, "GET", &path, &UPGRADE).as_bytes(),
    )
    .await;
    assert_431_at_the_limit(status, &body);

    // a huge query string counts too (431, not 414)
    let long_query = format!("{path}&pad={}", xs(HEAD_LIMIT));
    let (status, body) = exchange(
        server.port,
        head_of(HEAD_LIMIT + 1024, "GET", &long_query, &UPGRADE).as_bytes(),
    )
    .await;
    assert_431_at_the_limit(status, &body);

    // more than 96 fields: actix-http's own 431 (no body), still no upgrade
    let mut many = String::new();
    for i in 0..100 {
        many.push_str(&format!("X-F{i}: v\r\n"));
    }
    let head = format!(
        "GET {path} HTTP/1.1\r\n{}{many}\r\n",
        UPGRADE
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>()
    );
    assert!(head.len() < HEAD_LIMIT);
    let (status, _) = exchange(server.port, head.as_bytes()).await;
    assert_eq!(status, 431, "100 header fields");

    other.assert_alive().await;
    server.connect().await.assert_alive().await;
}

#[tokio::test]
async fn a_thousand_query_parameters_get_an_answer_not_a_crash() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let names: Vec<String> = (0..1000).map(|i| format!("param{i:04}")).collect();
    let values: Vec<String> = (0..1000).map(|i| format!("value{i:04}")).collect();

    // ~20 KiB of query: over the head limit, 431 with the JSON body
    let query: Vec<(&str, &str)> = names
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let target = api.signed_target("GET", &api.path("/channels"), &query, b"", &Sign::default());
    assert!(target.len() > HEAD_LIMIT);
    let (status, body) = exchange(
        server.port,
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_431_at_the_limit(status, &body);

    // 1,000 short parameters fit: signed, they are served; unsigned, 401
    let short: Vec<String> = (0..1000).map(|i| format!("p{i}")).collect();
    let query: Vec<(&str, &str)> = short.iter().map(|k| (k.as_str(), "v")).collect();
    api.get("/channels", &query).await.assert_ok();
    let unsigned = Sign {
        unsigned: true,
        ..Sign::default()
    };
    api.get_with("/channels", &query, &unsigned)
        .await
        .assert_error(401, "auth_failed");
    server.connect().await.assert_alive().await;
}

// ---------------------------------------------------------------------------
// The HTTP parser's own limits (actix-http), below Switchyard's own 431: heads
// that never finish, or whose request line cannot be parsed, never reach it.

/// Read what the server answers on `s` until it closes the connection (a
/// reset after the answer counts as a close: the server drops unread input).
async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read_all = async {
        loop {
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if !buf.is_empty() => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                    break;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("an answer and a close within 10 s");
    String::from_utf8_lossy(&buf).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// README: "a head over 128 KiB (431)". A head that never finishes is
/// buffered up to 128 KiB without an answer; past it the parser answers 431
/// at once (its own, bodiless: Switchyard's JSON 431 needs a parsed head)
/// and closes the connection. The server keeps serving.
#[tokio::test]
async fn an_unfinished_head_over_128_kib_is_431_and_the_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_app(&[]).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let start = "GET /up HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
    let under = 127 * 1024 - start.len();
    s.write_all(format!("{start}{}", "p".repeat(under)).as_bytes())
        .await
        .unwrap();
    // 127 KiB of an unfinished head: the parser is still waiting.
    let mut one = [0u8; 1];
    let early = tokio::time::timeout(ms(300), s.read(&mut one)).await;
    assert!(early.is_err(), "answered 127 KiB of head: {early:?}");

    s.write_all("p".repeat(2 * 1024).as_bytes()).await.unwrap();
    let answer = read_answer(&mut s).await;
    assert_eq!(status_of(&answer), 431, "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    assert_eq!(
        http_get(&format!("{}/up", server.http_base())).await.status,
        200
    );
}

/// README: "a request target over 65,534 bytes (400)". A target of exactly
/// 65,534 bytes is parsed and reaches Switchyard (whose 16 KiB head limit
/// answers the JSON 431); one byte more is the parser's bare 400.
#[tokio::test]
async fn a_request_target_over_65534_bytes_is_400_from_the_parser() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start_app(&[]).await;
    let request = |target_len: usize| {
        let target = format!("/{}", "a".repeat(target_len - 1));
        assert_eq!(target.len(), target_len);
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n")
    };
    let port = server.port;
    let ask = |req: String| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        read_answer(&mut s).await
    };

    let at = ask(request(65_534)).await;
    let (_, body) = at.split_once("\r\n\r\n").expect("a whole head");
    assert_431_at_the_limit(status_of(&at), body);

    let over = ask(request(65_535)).await;
    assert_eq!(status_of(&over), 400, "{over:?}");
    assert!(
        !over.contains("headers_too_large"),
        "the parser's own 400, not Switchyard's 431: {over:?}"
    );
    assert_eq!(
        http_get(&format!("{}/up", server.http_base())).await.status,
        200
    );
}
