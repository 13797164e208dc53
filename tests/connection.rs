//! Connection lifecycle: handshake, connect-time refusals (4001/4003/4004/
//! 4007/4008) and their check order, heartbeats (client ping, server ping,
//! 4201), native WebSocket pings, connection logging.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const DISABLED_APP_CONFIG: &str = r#"{
  "app_manager": {"driver": "memory", "array": {"apps": [
    {"id": "off-app", "key": "off-key", "secret": "off-secret", "enabled": false},
    {"id": "on-app", "key": "on-key", "secret": "on-secret", "enabled": true}
  ]}}
}"#;

/// Expect a connect-time refusal: `pusher:error` with `code` (data object), then close `code`.
async fn expect_refused(ws: &mut Ws, code: u16) {
    ws.expect_error(code as u64).await;
    ws.expect_close(code).await;
}

#[tokio::test]
async fn connection_established_is_first_frame_with_string_data() {
    let server = Server::start_app(&[]).await;
    let mut ws = server
        .connect_raw(&format!(
            "/app/{APP_KEY}?protocol=7&client=js&version=8.4.0&flash=false"
        ))
        .await;
    let f = ws.read_established().await; // checks string data + socket_id shape
    assert_eq!(
        f.json.as_object().unwrap().len(),
        2,
        "only event and data expected: {}",
        f.raw
    );
    assert_eq!(ws.activity_timeout, 120, "default activity_timeout");
    let mut other = server.connect().await;
    assert_ne!(ws.socket_id, other.socket_id, "socket ids must be unique");
    ws.assert_alive().await;
    other.assert_alive().await;
}

#[tokio::test]
async fn activity_timeout_is_advertised_from_env() {
    let server = Server::start_app(&[("ACTIVITY_TIMEOUT", "7")]).await;
    let ws = server.connect().await;
    assert_eq!(ws.activity_timeout, 7);
}

#[tokio::test]
async fn dev_app_is_served_when_no_app_is_configured() {
    let server = Server::start(&[]).await;
    let mut ws = server.connect_key("app-key").await;
    // the dev app's secret signs private channels, and its id serves the API
    let auth = channel_auth("app-key", "app-secret", &ws.socket_id, "private-dev");
    ws.send_subscribe(json!({"channel": "private-dev", "auth": auth}))
        .await;
    ws.expect_channel_event("pusher_internal:subscription_succeeded", "private-dev")
        .await;
    let api = server.api_for("app-id", "app-key", "app-secret");
    api.publish("private-dev", "hello", "{\"x\":1}").await;
    let f = ws.expect_channel_event("hello", "private-dev").await;
    assert_eq!(f.data_str(), "{\"x\":1}");
    // client events are enabled on the dev app: delivered to a second socket
    let mut other = server.connect_key("app-key").await;
    let auth = channel_auth("app-key", "app-secret", &other.socket_id, "private-dev");
    other
        .send_subscribe(json!({"channel": "private-dev", "auth": auth}))
        .await;
    other
        .expect_channel_event("pusher_internal:subscription_succeeded", "private-dev")
        .await;
    ws.client_event("private-dev", "client-hi", json!({"a": 1}))
        .await;
    other.expect_channel_event("client-hi", "private-dev").await;
}

#[tokio::test]
async fn unknown_app_key_is_refused_with_4001() {
    let server = Server::start_app(&[]).await;
    let mut ws = server
        .connect_raw("/app/no-such-key?protocol=7&client=rust&version=1.0")
        .await;
    expect_refused(&mut ws, 4001).await;
    // the server keeps serving valid keys
    server.connect().await.assert_alive().await;
}

#[tokio::test]
async fn dev_app_key_is_unknown_when_an_app_is_configured() {
    let server = Server::start_app(&[]).await;
    let mut ws = server
        .connect_raw("/app/app-key?protocol=7&client=rust&version=1.0")
        .await;
    expect_refused(&mut ws, 4001).await;
}

#[tokio::test]
async fn disabled_app_is_refused_with_4003() {
    let server = Server::start_with_config(DISABLED_APP_CONFIG, &[]).await;
    let mut ws = server
        .connect_raw("/app/off-key?protocol=7&client=rust&version=1.0")
        .await;
    expect_refused(&mut ws, 4003).await;
    // the enabled app of the same file works
    server.connect_key("on-key").await.assert_alive().await;
}

/// Issue 9, defect 1: `SOCKUDO_DEFAULT_APP_ENABLED=false` once made the
/// server fall back to the public development app. The configured app must
/// be served as disabled, and the development credentials must open nothing.
#[tokio::test]
async fn a_disabled_env_app_is_refused_and_the_dev_app_is_not_served() {
    for mode in [None, Some("production")] {
        let mut env = vec![
            ("SOCKUDO_DEFAULT_APP_ID", "myid"),
            ("SOCKUDO_DEFAULT_APP_KEY", "mykey"),
            ("SOCKUDO_DEFAULT_APP_SECRET", "my-secret-of-some-length"),
            ("SOCKUDO_DEFAULT_APP_ENABLED", "false"),
        ];
        env.extend(mode.map(|m| ("ENVIRONMENT", m)));
        let server = Server::start(&env).await;
        let mut ws = server
            .connect_raw("/app/mykey?protocol=7&client=rust&version=1.0")
            .await;
        expect_refused(&mut ws, 4003).await;
        let api = server.api_for("myid", "mykey", "my-secret-of-some-length");
        api.post("/events", r#"{"name":"e","channel":"c","data":"{}"}"#)
            .await
            .assert_error(403, "forbidden");
        let up = http_get(&format!("{}/up/myid", server.http_base())).await;
        assert_eq!((up.status, up.text.as_str()), (503, "APP_DISABLED"));

        // The development credentials open nothing.
        let mut ws = server
            .connect_raw("/app/app-key?protocol=7&client=rust&version=1.0")
            .await;
        expect_refused(&mut ws, 4001).await;
        let dev = server.api_for("app-id", "app-key", "app-secret");
        let resp = dev
            .post("/events", r#"{"name":"e","channel":"c","data":"{}"}"#)
            .await;
        assert_eq!(resp.status, 404, "{mode:?}: {}", resp.text);
        let logs = server.logs();
        assert!(!logs.contains("development app"), "{logs}");
        assert!(logs.contains("myid(env,disabled)"), "{logs}");
    }
}

/// The start-up line lists every app id and where it came from.
#[tokio::test]
async fn start_up_line_names_each_app_and_its_source() {
    let server = Server::start_app(&[]).await;
    server
        .wait_for_logs("the start-up summary", Duration::from_secs(5), |l| {
            l.contains(&format!("apps=[{APP_ID}(env)]"))
        })
        .await;
    let logs = server.logs();
    assert!(
        !logs.contains(APP_SECRET) && !logs.contains(APP_KEY),
        "{logs}"
    );
}

#[tokio::test]
async fn production_without_an_app_refuses_to_start_unless_asked() {
    let f = Server::start_expect_failure(&[("ENVIRONMENT", "production")], None, &[]).await;
    assert_eq!(f.status.code(), Some(2), "{}", f.output);
    assert!(
        f.output.contains("SOCKUDO_DEFAULT_APP_ID") && f.output.contains("SWITCHYARD_DEV_APP"),
        "{}",
        f.output
    );
    let server = Server::start(&[
        ("ENVIRONMENT", "production"),
        ("SWITCHYARD_DEV_APP", "true"),
    ])
    .await;
    server.connect_key("app-key").await.assert_alive().await;
}

#[tokio::test]
async fn missing_protocol_is_refused_with_4008() {
    let server = Server::start_app(&[]).await;
    let mut ws = server
        .connect_raw(&format!("/app/{APP_KEY}?client=rust&version=1.0"))
        .await;
    expect_refused(&mut ws, 4008).await;
    let mut ws = server.connect_raw(&format!("/app/{APP_KEY}")).await;
    expect_refused(&mut ws, 4008).await;
}

#[tokio::test]
async fn unsupported_protocol_is_refused_with_4007() {
    let server = Server::start_app(&[]).await;
    for bad in ["4", "8", "abc", "7.5", "-7", "1000000000000"] {
        let mut ws = server
            .connect_raw(&format!("/app/{APP_KEY}?protocol={bad}&client=rust"))
            .await;
        ws.expect_error(4007).await;
        ws.expect_close(4007).await;
    }
    for good in ["5", "6", "7"] {
        let mut ws = server
            .connect_raw(&format!("/app/{APP_KEY}?protocol={good}&client=rust"))
            .await;
        ws.read_established().await;
        ws.assert_alive().await;
    }
}

#[tokio::test]
async fn over_connection_quota_is_refused_with_4004_and_slot_is_released_on_close() {
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "2")]).await;
    let a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server
        .connect_raw(&format!("/app/{APP_KEY}?protocol=7&client=rust"))
        .await;
    expect_refused(&mut c, 4004).await;
    // the refused connection did not take a slot, the live ones still work
    b.assert_alive().await;
    a.close().await;
    // a slot frees up once the server has seen the close
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = server
            .connect_raw(&format!("/app/{APP_KEY}?protocol=7&client=rust"))
            .await;
        let f = d.recv().await;
        if f.event() == "pusher:connection_established" {
            d.assert_alive().await;
            break;
        }
        assert_eq!(f.json["data"]["code"], 4004, "unexpected frame {}", f.raw);
        assert!(Instant::now() < deadline, "slot never released after close");
        tokio::time::sleep(ms(50)).await;
    }
}

#[tokio::test]
async fn check_order_is_key_then_enabled_then_protocol_then_quota() {
    // unknown key beats a missing protocol
    let server = Server::start_with_config(DISABLED_APP_CONFIG, &[]).await;
    let mut ws = server.connect_raw("/app/nope").await;
    expect_refused(&mut ws, 4001).await;
    // disabled app beats a missing / bad protocol
    let mut ws = server.connect_raw("/app/off-key").await;
    expect_refused(&mut ws, 4003).await;
    let mut ws = server.connect_raw("/app/off-key?protocol=2").await;
    expect_refused(&mut ws, 4003).await;

    // protocol beats quota
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "1")]).await;
    let _held = server.connect().await;
    let mut ws = server.connect_raw(&format!("/app/{APP_KEY}")).await;
    expect_refused(&mut ws, 4008).await;
    let mut ws = server
        .connect_raw(&format!("/app/{APP_KEY}?protocol=3"))
        .await;
    expect_refused(&mut ws, 4007).await;
    let mut ws = server
        .connect_raw(&format!("/app/{APP_KEY}?protocol=7"))
        .await;
    expect_refused(&mut ws, 4004).await;
}

#[tokio::test]
async fn client_ping_gets_pong_with_object_data() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.send_json(json!({"event": "pusher:ping", "data": {}}))
        .await;
    let f = ws.expect_event("pusher:pong").await;
    assert_eq!(f.json["data"], json!({}), "pong frame {}", f.raw);
    // ping with data absent / as a string is answered too
    ws.send_text(r#"{"event":"pusher:ping"}"#).await;
    ws.expect_event("pusher:pong").await;
    ws.send_text(r#"{"event":"pusher:ping","data":"{}"}"#).await;
    ws.expect_event("pusher:pong").await;
    // a client pong is accepted silently
    ws.send_json(json!({"event": "pusher:pong", "data": {}}))
        .await;
    ws.expect_silence(SILENCE).await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn silent_socket_is_pinged_then_closed_4201() {
    let server = Server::start_app(&[("ACTIVITY_TIMEOUT", "1"), ("PONG_TIMEOUT", "1")]).await;
    let mut ws = server.connect().await;
    assert_eq!(ws.activity_timeout, 1);
    let started = Instant::now();
    let ping = ws.expect_event_within("pusher:ping", ms(3500)).await;
    let pinged_after = started.elapsed();
    assert!(
        pinged_after >= ms(700),
        "server pinged after {pinged_after:?}, before the 1 s activity timeout"
    );
    assert!(ping.json.get("channel").is_none());
    let err = ws.expect_error_within(4201, ms(3500)).await;
    assert!(
        started.elapsed() - pinged_after >= ms(700),
        "4201 sent before the 1 s pong timeout elapsed"
    );
    assert!(
        err.json["data"]["message"]
            .as_str()
            .unwrap()
            .contains("Pong reply not received"),
        "{}",
        err.raw
    );
    ws.expect_close(4201).await;
}

#[tokio::test]
async fn answering_server_pings_keeps_the_socket_open() {
    let server = Server::start_app(&[("ACTIVITY_TIMEOUT", "1"), ("PONG_TIMEOUT", "1")]).await;
    let mut ws = server.connect().await;
    let deadline = Instant::now() + ms(3500);
    let mut pings = 0;
    while Instant::now() < deadline {
        let f = ws.expect_event_within("pusher:ping", ms(3000)).await;
        assert!(
            f.json["data"].is_object() || f.json["data"].is_null(),
            "{}",
            f.raw
        );
        pings += 1;
        ws.send_json(json!({"event": "pusher:pong", "data": {}}))
            .await;
    }
    assert!(pings >= 2, "expected repeated pings, got {pings}");
    ws.assert_alive().await;
}

/// The idle-reset tests: a 2 s activity timeout (hub tick 500 ms) and a
/// frame every 250 ms leave a 1.75 s margin before the server would ping, so
/// a loaded machine cannot make the client look idle.
const IDLE_ENV: [(&str, &str); 2] = [("ACTIVITY_TIMEOUT", "2"), ("PONG_TIMEOUT", "2")];
const IDLE_ACTIVITY: Duration = Duration::from_secs(2);
const KEEPALIVE_EVERY: Duration = Duration::from_millis(250);
/// Two and a half activity timeouts of traffic.
const KEEPALIVE_FOR: Duration = Duration::from_secs(5);

/// Send `frame()` every 250 ms for 5 s: nothing may come back (no
/// `pusher:ping`, no close; control frames are skipped). Then the positive
/// control: once the frames stop, the server pings — not before the activity
/// timeout has run from the last frame, and within it plus the hub's tick
/// and slack.
async fn idle_clock_follows_the_frames(ws: &mut Ws, frame: impl Fn() -> Message) {
    let until = Instant::now() + KEEPALIVE_FOR;
    while Instant::now() < until {
        ws.send_message(frame()).await;
        ws.expect_silence(KEEPALIVE_EVERY).await;
    }
    ws.send_message(frame()).await;
    let last = Instant::now();
    let ping = ws
        .expect_event_within("pusher:ping", IDLE_ACTIVITY + Duration::from_secs(3))
        .await;
    let after = last.elapsed();
    assert!(
        after >= IDLE_ACTIVITY - ms(100),
        "pinged {after:?} after the last frame, before the {IDLE_ACTIVITY:?} activity timeout"
    );
    assert!(ping.json.get("channel").is_none(), "{}", ping.raw);
    ws.send_json(json!({"event": "pusher:pong", "data": {}}))
        .await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn any_inbound_frame_resets_idleness() {
    let server = Server::start_app(&IDLE_ENV).await;
    let mut ws = server.connect().await;
    ws.subscribe("keepalive").await;
    // An unsubscribe from a channel it is not in: no reply by spec.
    let frame = || {
        Message::Text(
            json!({"event": "pusher:unsubscribe", "data": {"channel": "never-subscribed"}})
                .to_string(),
        )
    };
    idle_clock_follows_the_frames(&mut ws, frame).await;
}

#[tokio::test]
async fn native_websocket_ping_is_answered_with_pong() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.send_message(Message::Ping(b"abc".to_vec())).await;
    match ws.recv_message(RECV_TIMEOUT).await {
        Some(Message::Pong(p)) => assert_eq!(p, b"abc".to_vec()),
        other => panic!("expected a pong control frame, got {other:?}"),
    }
    ws.assert_alive().await;
}

#[tokio::test]
async fn native_websocket_pings_count_as_activity() {
    let server = Server::start_app(&IDLE_ENV).await;
    let mut ws = server.connect().await;
    // Each is answered with a pong control frame, which the reads skip.
    idle_clock_follows_the_frames(&mut ws, || Message::Ping(b"k".to_vec())).await;
}

#[tokio::test]
async fn connection_open_and_close_are_logged() {
    let server = Server::start_app(&[]).await;
    let ws = server.connect().await;
    let sid = ws.socket_id.clone();
    server
        .wait_for_logs(
            "a line naming the new socket id",
            Duration::from_secs(3),
            |l| l.contains(&sid),
        )
        .await;
    let before = server.logs().lines().filter(|l| l.contains(&sid)).count();
    assert_eq!(
        before,
        1,
        "exactly one open line per connection\n{}",
        server.logs()
    );
    ws.close().await;
    server
        .wait_for_logs(
            "a second line for the socket's close",
            Duration::from_secs(3),
            |l| l.lines().filter(|line| line.contains(&sid)).count() == 2,
        )
        .await;
}

#[tokio::test]
async fn websocket_on_an_unknown_path_gets_4005() {
    let server = Server::start_app(&[]).await;
    let mut ws = Ws::open(&server.ws_url("/nope/app-key?protocol=7")).await;
    ws.expect_error(4005).await;
    ws.expect_close(4005).await;
    // A plain HTTP request to the same path is a JSON 404.
    let resp = http_get(&format!("{}/nope", server.http_base())).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["code"], "not_found");
}

/// A client may send its first frame in the same write as its handshake
/// request: those bytes are read together with the request and must reach
/// the session (the socket is handed over from the HTTP layer with them).
#[tokio::test]
async fn a_frame_sent_with_the_handshake_request_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_app(&[]).await;
    let mut bytes = upgrade_request(&format!(
        "/app/{APP_KEY}?protocol=7&client=rust&version=1.0"
    ))
    .into_bytes();
    bytes.extend(client_frame(
        true,
        0x1,
        br#"{"event":"pusher:ping","data":{}}"#,
    ));
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    s.write_all(&bytes).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("pusher:pong") {
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no pong in 5 s: {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    let established = text.find("pusher:connection_established").unwrap();
    assert!(established < text.find("pusher:pong").unwrap(), "{text}");
}

/// Any request with `Upgrade: websocket` goes through the WebSocket
/// handshake path; one that is not a handshake (here an unsigned HTTP API
/// call) is answered as usual, whole, and its connection closed.
#[tokio::test]
async fn a_request_with_an_upgrade_header_that_is_not_a_handshake_is_answered_whole() {
    let server = Server::start_app(&[]).await;
    let request = "GET /apps/test-app/channels HTTP/1.1\r\nHost: localhost\r\n\
                   Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (status, body) = exchange_raw(server.port, request.as_bytes()).await;
    assert_eq!(status, 401, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(v["code"], "auth_failed", "{v}");
    // A WebSocket handshake on the same server still works.
    let mut ws = server.connect().await;
    ws.send_json(json!({"event": "pusher:ping", "data": {}}))
        .await;
    ws.expect_event("pusher:pong").await;
}
