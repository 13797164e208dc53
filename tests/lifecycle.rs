//! How connections end. RFC 6455 §7.1.1: once the closing handshake is
//! done the server closes TCP first; clients such as tokio-tungstenite and
//! browsers wait for it. A close the server starts waits (boundedly) for the
//! client's answer. And however a connection ends — client close, client
//! gone without a close frame, half-close, 4100, 4201, 4200, a refusal at
//! the handshake, a client that stops reading — the server process keeps no
//! socket for it and its connection gauge returns to 0.
//!
//! "Holds a socket" is read from /proc: a descriptor of the server process
//! that is a TCP socket from the server's port to the client's port.

mod common;

use common::raw::{held_socket, held_sockets, End, RawWs};
use common::security::{app_ws_path, unix_ws, Ready, TempDir, TestCa};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Well under the ~1 s the dispatcher used to linger after a close.
const PROMPT: Duration = Duration::from_millis(300);
/// The bound for a 1009 close: the server's reply wait (1 s) plus slack.
const OVERSIZED: Duration = Duration::from_millis(1500);
/// `CLOSE_REPLY_TIMEOUT` (1 s): how long a close the server starts waits for
/// the client's close frame.
const REPLY_WAIT: Duration = Duration::from_secs(1);
/// Generous bound for a server-started close nobody answers (1 s + slack).
const UNANSWERED: Duration = Duration::from_millis(2500);

// ---------------------------------------------------------------------------
// What the server process holds, from /proc

/// Client ports of the TCP connections the server process holds on its port
/// (any state but LISTEN).
fn held_connections(server: &Server) -> Vec<u16> {
    let pid = server.pid().expect("server running");
    held_sockets(pid, server.port)
        .into_iter()
        .map(|s| s.client_port)
        .collect()
}

/// Wait until the server holds no socket for the connection from
/// `client_port`; returns how long that took.
async fn wait_released(server: &Server, client_port: u16, within: Duration) -> Duration {
    let started = Instant::now();
    while held_connections(server).contains(&client_port) {
        assert!(
            started.elapsed() < within,
            "the server still holds the connection from port {client_port} after {within:?}"
        );
        tokio::time::sleep(ms(10)).await;
    }
    started.elapsed()
}

/// No connection left on the server's port, and its gauges at 0.
async fn assert_nothing_left(server: &Server) {
    let started = Instant::now();
    loop {
        let held = held_connections(server);
        if held.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "connections still held by the server (client ports {held:?})"
        );
        tokio::time::sleep(ms(20)).await;
    }
    let usage = http_get(&format!("{}/usage", server.http_base())).await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    let usage: Value = serde_json::from_str(&usage.text).unwrap();
    assert_eq!(usage["connections"], 0, "server connection gauge: {usage}");
    assert_eq!(usage["apps"][APP_ID], 0, "app connection gauge: {usage}");
}

/// A signed API client that does not keep connections alive, so it leaves
/// nothing on the server's port.
fn api(server: &Server) -> Api {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Api::with_client(server.http_base(), APP_ID, APP_KEY, APP_SECRET, client)
}

// ---------------------------------------------------------------------------
// tokio-tungstenite: answers a close and waits for the server to close TCP

type Tws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn local_port(ws: &Tws) -> u16 {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
        _ => panic!("plain TCP expected"),
    }
}

/// Read until the server's close frame; returns its code.
async fn tws_close_code<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> u16 {
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, ws.next()).await {
            Err(_) => panic!("no close frame within {RECV_TIMEOUT:?}"),
            Ok(Some(Ok(Message::Close(Some(cf))))) => return u16::from(cf.code),
            Ok(Some(Ok(Message::Close(None)))) => panic!("close frame without a code"),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("WebSocket error before the close frame: {e}"),
            Ok(None) => panic!("stream ended before a close frame"),
        }
    }
}

/// Keep reading (tungstenite sends its answer to a close as it reads) until
/// the server closes TCP; returns how long that took.
async fn tws_until_eof<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Duration {
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(_)) | Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                Ok(other) => panic!("frame after the close: {other:?}"),
                Err(e) => panic!("the connection ended with an error, not a clean close: {e}"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server did not close TCP within 10 s");
    started.elapsed()
}

// ---------------------------------------------------------------------------
// The client closes

#[tokio::test]
async fn after_the_clients_close_the_server_closes_tcp_at_once() {
    let server = Server::start_app(&[]).await;
    // connect → subscribe → unsubscribe → close, as a churning client does.
    for round in 0..5 {
        let mut ws = server.connect().await;
        ws.subscribe("churn").await;
        ws.unsubscribe("churn").await;
        let mut ws = ws.into_stream();
        let port = local_port(&ws);
        ws.close(None).await.expect("send close");
        let took = tws_until_eof(&mut ws).await;
        assert!(
            took < PROMPT,
            "round {round}: the server closed TCP {took:?} after the client's close \
             (it used to wait ~1 s for the client to do it)"
        );
        wait_released(&server, port, PROMPT).await;
    }
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_client_gone_without_a_close_frame_or_half_closed_is_released() {
    let server = Server::start_app(&[]).await;

    // TCP closed without a close frame.
    let mut raw = RawWs::open(&server, &app_ws_path()).await;
    raw.expect_event("pusher:connection_established").await;
    raw.subscribe("gone").await;
    let port = raw.port;
    drop(raw);
    wait_released(&server, port, Duration::from_secs(2)).await;

    // Half-closed: the client shuts its sending side (FIN) but keeps
    // reading; the server must end the connection, not wait for more.
    let mut raw = RawWs::open(&server, &app_ws_path()).await;
    raw.expect_event("pusher:connection_established").await;
    raw.subscribe("gone").await;
    raw.tcp.shutdown().await.unwrap();
    let (end, took) = raw.until_end().await;
    assert_eq!(end, End::Eof);
    assert!(
        took < Duration::from_secs(2),
        "half-closed client ended after {took:?}"
    );
    wait_released(&server, raw.port, Duration::from_secs(2)).await;

    api(&server)
        .wait_channel_info("gone", "subscription_count", |v| v["occupied"] == false)
        .await;
    assert_nothing_left(&server).await;
}

// ---------------------------------------------------------------------------
// The server closes

#[tokio::test]
async fn a_server_close_the_client_answers_ends_tcp_at_once() {
    let server = Server::start_app(&[
        ("WEBSOCKET_MAX_PAYLOAD_KB", "1"),
        ("WEBSOCKET_MAX_BYTES", "2048"),
    ])
    .await;
    let api = api(&server);

    // 1009: a message over WEBSOCKET_MAX_PAYLOAD_KB.
    let ws = server.connect().await;
    let mut ws = ws.into_stream();
    let port = local_port(&ws);
    let big = json!({"event": "pusher:ping", "data": {"pad": "x".repeat(4096)}}).to_string();
    let _ = ws.send(Message::Text(big)).await;
    assert_eq!(tws_close_code(&mut ws).await, 1009);
    // The frame is refused on its header with its payload still on the
    // wire, so the client's answer cannot be parsed: the close ends on the
    // 1 s reply wait (ending it at once would reset the connection).
    let took = tws_until_eof(&mut ws).await;
    assert!(
        took < OVERSIZED,
        "1009: TCP closed {took:?} after the client's answer"
    );
    wait_released(&server, port, PROMPT).await;

    // 4100: an event larger than WEBSOCKET_MAX_BYTES.
    let mut ws = server.connect().await;
    ws.subscribe("big").await;
    let mut ws = ws.into_stream();
    let port = local_port(&ws);
    api.publish("big", "huge", &"x".repeat(4096)).await;
    assert_eq!(tws_close_code(&mut ws).await, 4100);
    let took = tws_until_eof(&mut ws).await;
    assert!(
        took < PROMPT,
        "4100: TCP closed {took:?} after the client's answer"
    );
    wait_released(&server, port, PROMPT).await;

    // 4001: refused at the handshake (unknown app key).
    let ws = server
        .connect_raw("/app/no-such-key?protocol=7&client=rust&version=1.0")
        .await;
    let mut ws = ws.into_stream();
    let port = local_port(&ws);
    assert_eq!(tws_close_code(&mut ws).await, 4001);
    let took = tws_until_eof(&mut ws).await;
    assert!(
        took < PROMPT,
        "4001: TCP closed {took:?} after the client's answer"
    );
    wait_released(&server, port, PROMPT).await;

    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_server_close_nobody_answers_ends_tcp_after_the_reply_wait() {
    let server = Server::start_app(&[("WEBSOCKET_MAX_BYTES", "2048")]).await;
    let api = api(&server);

    // 4100 to a client that reads but never answers the close frame.
    let mut raw = RawWs::open(&server, &app_ws_path()).await;
    raw.expect_event("pusher:connection_established").await;
    raw.subscribe("big").await;
    api.publish("big", "huge", &"x".repeat(4096)).await;
    let err = raw.expect_event("pusher:error").await;
    assert_eq!(err["data"]["code"], 4100, "{err}");
    assert_eq!(raw.expect_close().await, 4100);
    let (end, took) = raw.until_end().await;
    assert_eq!(end, End::Eof, "a clean close, not a reset");
    assert!(
        took >= REPLY_WAIT / 2,
        "the server waits for the client's close frame before closing TCP: {took:?}"
    );
    assert!(
        took < UNANSWERED,
        "unanswered close: TCP closed after {took:?}"
    );
    wait_released(&server, raw.port, PROMPT).await;

    // 4001 (refused at the handshake) to a client that never answers.
    let mut raw = RawWs::open(&server, "/app/no-such-key?protocol=7").await;
    let err = raw.expect_event("pusher:error").await;
    assert_eq!(err["data"]["code"], 4001, "{err}");
    assert_eq!(raw.expect_close().await, 4001);
    let (end, took) = raw.until_end().await;
    assert_eq!(end, End::Eof);
    assert!(
        took < UNANSWERED,
        "unanswered 4001: TCP closed after {took:?}"
    );
    wait_released(&server, raw.port, PROMPT).await;

    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn a_pong_timeout_4201_releases_the_socket() {
    let server = Server::start_app(&[("ACTIVITY_TIMEOUT", "1"), ("PONG_TIMEOUT", "1")]).await;
    // A client that answers nothing, neither pusher:ping nor the close.
    let mut raw = RawWs::open(&server, &app_ws_path()).await;
    raw.expect_event("pusher:connection_established").await;
    raw.subscribe("quiet").await;
    raw.expect_event("pusher:ping").await;
    let err = raw.expect_event("pusher:error").await;
    assert_eq!(err["data"]["code"], 4201, "{err}");
    assert_eq!(raw.expect_close().await, 4201);
    let (end, took) = raw.until_end().await;
    assert_eq!(end, End::Eof);
    assert!(took < UNANSWERED, "4201: TCP closed after {took:?}");
    wait_released(&server, raw.port, PROMPT).await;

    // A tungstenite client (answers the close) is closed at once after it.
    let mut ws = server.connect().await;
    ws.expect_event_within("pusher:ping", Duration::from_secs(5))
        .await;
    let mut ws = ws.into_stream();
    let port = local_port(&ws);
    assert_eq!(tws_close_code(&mut ws).await, 4201);
    let took = tws_until_eof(&mut ws).await;
    assert!(
        took < PROMPT,
        "4201: TCP closed {took:?} after the client's answer"
    );
    wait_released(&server, port, PROMPT).await;

    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn shutdown_4200_closes_every_socket_promptly() {
    let mut server = Server::start_app(&[("SHUTDOWN_GRACE_PERIOD", "10")]).await;
    let mut answering = server.connect().await.into_stream();
    let mut silent = RawWs::open(&server, &app_ws_path()).await;
    silent.expect_event("pusher:connection_established").await;

    let started = Instant::now();
    server.signal("TERM");
    assert_eq!(tws_close_code(&mut answering).await, 4200);
    let took = tws_until_eof(&mut answering).await;
    assert!(
        took < PROMPT,
        "4200: TCP closed {took:?} after the client's answer"
    );

    let err = silent.expect_event("pusher:error").await;
    assert_eq!(err["data"]["code"], 4200, "{err}");
    assert_eq!(silent.expect_close().await, 4200);
    let (end, took) = silent.until_end().await;
    assert_eq!(end, End::Eof);
    assert!(
        took < UNANSWERED,
        "4200 unanswered: TCP closed after {took:?}"
    );

    let status = server
        .wait_exit(Duration::from_secs(12))
        .await
        .expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "every connection ended, so the 10 s grace period was not needed: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// The same over TLS and over a Unix socket

/// A client close and a server close (1009): each connection ends cleanly,
/// the first within `bound`, the second within [`OVERSIZED`].
async fn both_closes_end_within<S, F, Fut>(bound: Duration, connect: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = WebSocketStream<S>>,
{
    let mut ws = connect().await;
    ws.close(None).await.expect("send close");
    let took = tws_until_eof(&mut ws).await;
    assert!(took < bound, "client close: TCP closed after {took:?}");

    let mut ws = connect().await;
    let big = json!({"event": "pusher:ping", "data": {"pad": "x".repeat(4096)}}).to_string();
    let _ = ws.send(Message::Text(big)).await;
    assert_eq!(tws_close_code(&mut ws).await, 1009);
    let took = tws_until_eof(&mut ws).await;
    assert!(
        took < bound.max(OVERSIZED),
        "server close: TCP closed {took:?} after the answer"
    );
}

#[tokio::test]
async fn over_tls_the_connection_is_closed_cleanly_within_the_linger() {
    let dir = TempDir::new();
    let root = TestCa::root("Switchyard Test Root");
    let leaf = root.leaf();
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let key = dir.write("key.pem", &leaf.key_pem);
    let mut env = app_env();
    env.extend_from_slice(&[
        ("SSL_ENABLED", "true"),
        ("SSL_CERT_PATH", cert.as_str()),
        ("SSL_KEY_PATH", key.as_str()),
        ("WEBSOCKET_MAX_PAYLOAD_KB", "1"),
    ]);
    let server = Server::start_ready(&env, None, Ready::Https(root.pem())).await;
    let root_pem = root.pem();
    // Over TLS the server sends close_notify before FIN (tungstenite with
    // rustls reports a truncation otherwise), which leaves the close to the
    // HTTP layer's lingering close: up to client_disconnect_timeout (1 s).
    both_closes_end_within(Duration::from_millis(1500), || async {
        server.connect_wss(&root_pem).await.into_stream()
    })
    .await;
}

#[tokio::test]
async fn over_a_unix_socket_the_connection_is_closed_at_once_too() {
    let dir = TempDir::new();
    let sock = dir.join("sy.sock");
    let path = sock.to_string_lossy().into_owned();
    let mut env = app_env();
    env.extend_from_slice(&[
        ("UNIX_SOCKET_ENABLED", "true"),
        ("UNIX_SOCKET_PATH", path.as_str()),
        ("WEBSOCKET_MAX_PAYLOAD_KB", "1"),
    ]);
    let _server = Server::start_ready(&env, None, Ready::Unix(sock.clone())).await;
    both_closes_end_within(PROMPT, || async {
        let mut ws = unix_ws(&sock, &app_ws_path()).await;
        ws.read_established().await;
        ws.stream
    })
    .await;
}

// ---------------------------------------------------------------------------
// A client that stops reading

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_within_the_bound() {
    // A session whose client stopped reading with more than actix-http's
    // write buffer (32 KiB) waiting is no longer polled: it cannot act on
    // its full queue (4100) or anything else. The hub resets its connection
    // once it is overdue to close: 3 s (the close bound) and a tick or two
    // after the overflow.
    let server = Server::start_app(&[
        ("WEBSOCKET_MAX_MESSAGES", "1"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "16384"),
        ("HTTP_API_REQUEST_LIMIT_IN_MB", "32"),
        // A hub tick of 500 ms. The client goes silent too, but the hub's
        // liveness rule would only reset it 8.5 s after it was last heard.
        ("ACTIVITY_TIMEOUT", "2"),
        ("PONG_TIMEOUT", "2"),
    ])
    .await;
    let api = api(&server);
    let pid = server.pid().unwrap();
    let mut raw = RawWs::open_with(&server, &app_ws_path(), Some(4096)).await;
    raw.expect_event("pusher:connection_established").await;
    raw.subscribe("firehose").await;

    // 8 MB for a client that reads nothing: more than the kernel buffers
    // take, so the rest waits in the HTTP layer's write buffer.
    api.publish("firehose", "big", &"x".repeat(8 << 20)).await;
    // Wait until the session wrote it (the kernel's send queue filled).
    let started = Instant::now();
    while held_socket(pid, server.port, raw.port).map_or(0, |s| s.send_queue) < 64 * 1024 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the big frame never left"
        );
        tokio::time::sleep(ms(10)).await;
    }
    // Now the session is not polled. Two more frames overflow its queue.
    let overflowed = Instant::now();
    api.publish("firehose", "small", "1").await;
    api.publish("firehose", "small", "2").await;

    let took = wait_released(&server, raw.port, Duration::from_secs(15)).await;
    let total = overflowed.elapsed();
    assert!(
        total < Duration::from_secs(6),
        "the connection was released {total:?} after the overflow ({took:?} of waiting); \
         without the hub only the kernel's TCP_USER_TIMEOUT (30 s) would end it"
    );
    let (end, _) = raw.until_end().await;
    assert_eq!(
        end,
        End::Reset,
        "a connection that cannot be flushed is reset"
    );
    assert!(
        server.logs().contains("connection_reset"),
        "{}",
        server.logs()
    );
    assert_nothing_left(&server).await;
}
