//! Security events of the WebSocket side in JSON logs (README "Security",
//! "Security events logged"): `signin_timeout`, `slow_consumer` and
//! `frames_dropped` are WARN lines with `event`, `app_id`, the socket (and
//! the client's address where the server has it) and a `reason`, next to the
//! base fields of every JSON line. Each is provoked over a real socket and
//! matched to it by socket id.

mod common;

use common::security::{json_lines, Ready};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

async fn json_server(extra: &[(&str, &str)]) -> Server {
    let mut env = app_env();
    env.push(("LOG_OUTPUT_FORMAT", "json"));
    env.extend_from_slice(extra);
    Server::start_ready(&env, None, Ready::Http).await
}

/// Wait for the JSON line with `event` about `socket_id`, then check the
/// fields every security event carries (and `peer` when `with_peer`).
async fn event_line(server: &Server, event: &str, socket_id: &str, with_peer: bool) -> Value {
    let deadline = Instant::now() + RECV_TIMEOUT;
    let line = loop {
        let found = json_lines(&server.log_lines())
            .into_iter()
            .find(|l| l["event"] == event && l["socket_id"] == socket_id);
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no {event} line for socket {socket_id}\n{}",
            server.logs()
        );
        tokio::time::sleep(ms(30)).await;
    };
    let text = |k: &str| line[k].as_str().unwrap_or("").to_string();
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["app_id"], APP_ID, "{line}");
    for field in ["timestamp", "message", "target", "reason"] {
        assert!(
            !text(field).is_empty(),
            "{event} line lacks {field}: {line}"
        );
    }
    if with_peer {
        assert_eq!(line["peer"], "127.0.0.1", "{line}");
    }
    line
}

#[tokio::test]
async fn signin_timeout_is_logged_with_the_socket_and_its_peer() {
    let server = json_server(&[
        ("SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION", "true"),
        ("USER_AUTHENTICATION_TIMEOUT", "1"),
    ])
    .await;
    let mut ws = server.connect().await;
    ws.expect_error_within(4009, Duration::from_secs(5)).await;
    ws.expect_close(4009).await;
    event_line(&server, "signin_timeout", &ws.socket_id, true).await;
}

/// A socket whose queue cannot take a frame (here one frame larger than
/// `WEBSOCKET_MAX_BYTES`) is closed with 4100 and logged.
#[tokio::test]
async fn slow_consumer_is_logged_with_the_socket_its_peer_and_its_queue() {
    let server = json_server(&[("WEBSOCKET_MAX_BYTES", "4096")]).await;
    let mut ws = server.connect().await;
    ws.subscribe("edge").await;
    server.api().publish("edge", "big", &"x".repeat(5000)).await;
    ws.expect_error(4100).await;
    ws.expect_close(4100).await;
    let line = event_line(&server, "slow_consumer", &ws.socket_id, true).await;
    assert!(line["queued"].is_u64(), "{line}");
    assert!(line["queued_bytes"].is_u64(), "{line}");
}

/// Under `WEBSOCKET_DISCONNECT_ON_BUFFER_FULL=false` the frame is dropped
/// instead, logged once per socket; the registry that drops it knows the
/// socket, not its address.
#[tokio::test]
async fn frames_dropped_is_logged_once_per_socket() {
    let server = json_server(&[
        ("WEBSOCKET_MAX_BYTES", "4096"),
        ("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL", "false"),
    ])
    .await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("edge").await;
    for _ in 0..2 {
        api.publish("edge", "big", &"x".repeat(5000)).await;
    }
    api.publish("edge", "after", "1").await;
    ws.expect_channel_event("after", "edge").await;
    event_line(&server, "frames_dropped", &ws.socket_id, false).await;
    let lines = json_lines(&server.log_lines());
    let count = lines
        .iter()
        .filter(|l| l["event"] == "frames_dropped" && l["socket_id"] == ws.socket_id.as_str())
        .count();
    assert_eq!(count, 1, "logged once, not per dropped frame");
}
