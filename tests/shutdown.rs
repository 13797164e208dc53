//! Graceful shutdown with real clients: on SIGTERM/SIGINT every socket is told
//! to reconnect elsewhere (4200), new connections are refused, HTTP requests
//! in flight are drained, and the process exits 0 within
//! SHUTDOWN_GRACE_PERIOD, cutting whatever is left.

mod common;

use common::raw::{held_socket, End, RawWs};
use common::security::WsError;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The harness app's WebSocket path.
fn app_path() -> String {
    format!("/app/{APP_KEY}?protocol=7")
}

/// What a deadline of the shutdown may overrun by on a loaded machine.
const SLACK: Duration = Duration::from_millis(2500);

async fn shutdown_on(signal: &str) {
    let mut server = Server::start_app(&[("SHUTDOWN_GRACE_PERIOD", "5")]).await;
    let mut a = server.connect().await;
    a.subscribe("news").await;
    let mut b = server.connect().await;
    b.subscribe_private("private-orders").await;
    let port = server.port;

    let started = Instant::now();
    server.signal(signal);
    for ws in [&mut a, &mut b] {
        let err = ws.expect_error(4200).await;
        assert!(err.data_json()["message"]
            .as_str()
            .unwrap()
            .contains("reconnect"));
        ws.expect_close(4200).await;
    }
    let status = server
        .wait_exit(Duration::from_secs(7))
        .await
        .expect("server exits within the grace period");
    assert_eq!(status.code(), Some(0), "clean exit status");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "clients closed promptly, so no need to wait out the grace period: {:?}",
        started.elapsed()
    );
    // Nothing listens any more.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener is closed after shutdown"
    );
    let logs = server.logs();
    assert!(logs.contains(&format!("signal=SIG{signal}")), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
}

#[tokio::test]
async fn sigterm_tells_clients_to_reconnect_and_exits_zero() {
    shutdown_on("TERM").await;
}

#[tokio::test]
async fn sigint_does_the_same() {
    shutdown_on("INT").await;
}

#[tokio::test]
async fn a_client_that_never_closes_is_cut_at_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(1);
    let mut server = Server::start_app(&[("SHUTDOWN_GRACE_PERIOD", "1")]).await;
    // Upgraded and served: it has its socket id.
    let mut lingering = RawWs::open(&server, &app_path()).await;
    let established = lingering
        .expect_event("pusher:connection_established")
        .await;
    assert!(established["data"].is_string(), "{established}");

    let started = Instant::now();
    server.signal("TERM");
    // Told to reconnect elsewhere, then the close frame, which it never answers.
    let err = lingering.expect_event("pusher:error").await;
    assert_eq!(err["data"]["code"], 4200, "{err}");
    assert_eq!(lingering.expect_close().await, 4200);
    // Cut all the same, within the grace period.
    assert_eq!(lingering.until_clean_end().await, End::Eof);
    let cut_after = started.elapsed();
    assert!(
        cut_after < GRACE + SLACK,
        "the lingering client was cut {cut_after:?} after SIGTERM; the grace period is {GRACE:?}"
    );
    let status = server
        .wait_exit(GRACE + SLACK)
        .await
        .expect("the server exits even with a client that never closes");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < GRACE + SLACK,
        "bounded by the {GRACE:?} grace period (plus slack): {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_at_the_grace_period() {
    // A client that stopped reading with more than actix-http's write buffer
    // (32 KiB) waiting: its session is no longer polled, so it cannot even be
    // sent the 4200, and the hub would reset it only minutes later (its
    // activity and pong timeouts). Only the grace period ends it.
    const GRACE: Duration = Duration::from_secs(2);
    let mut server = Server::start_app(&[
        ("SHUTDOWN_GRACE_PERIOD", "2"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "16384"),
        ("HTTP_API_REQUEST_LIMIT_IN_MB", "32"),
    ])
    .await;
    let pid = server.pid().unwrap();
    let mut stuck = RawWs::open_with(&server, &app_path(), Some(4096)).await;
    stuck.expect_event("pusher:connection_established").await;
    stuck
        .send_json(json!({"event": "pusher:subscribe", "data": {"channel": "firehose"}}))
        .await;
    stuck
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    // 8 MB it does not read: more than the kernel buffers take.
    server
        .api()
        .publish("firehose", "big", &"x".repeat(8 << 20))
        .await;
    let deadline = Instant::now() + RECV_TIMEOUT;
    while held_socket(pid, server.port, stuck.port).map_or(0, |s| s.send_queue) < 64 * 1024 {
        assert!(Instant::now() < deadline, "the big frame never left");
        tokio::time::sleep(ms(10)).await;
    }

    let started = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(GRACE + SLACK)
        .await
        .expect("the server exits at the grace period despite a client that does not read");
    assert_eq!(status.code(), Some(0));
    let took = started.elapsed();
    assert!(
        took < GRACE + SLACK,
        "bounded by the {GRACE:?} grace period (plus slack): {took:?}"
    );
    // Its connection is gone: what the kernel still held for it, then the end.
    let (end, _) = stuck.until_end().await;
    assert!(matches!(end, End::Eof | End::Reset));
}

#[tokio::test]
async fn a_request_in_flight_is_drained_while_new_connections_are_refused() {
    const GRACE: Duration = Duration::from_secs(10);
    let mut server = Server::start_app(&[("SHUTDOWN_GRACE_PERIOD", "10")]).await;
    let port = server.port;
    let pid = server.pid().unwrap();
    // Sees the 4200: the server has begun to shut down.
    let mut watcher = server.connect().await;

    // A signed publish whose body is still on its way: the head and half
    // the body now, the rest during the drain.
    let api = server.api();
    let body = json!({"name": "drained", "channel": "c", "data": "{}"}).to_string();
    let target = api
        .signed_url(
            "POST",
            &api.path("/events"),
            &[],
            body.as_bytes(),
            &Sign::default(),
        )
        .strip_prefix(&api.base)
        .unwrap()
        .to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let slow_port = slow.local_addr().unwrap().port();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(first).await.unwrap();
    // In flight: the server has accepted the connection and read all of it.
    let deadline = Instant::now() + RECV_TIMEOUT;
    while held_socket(pid, port, slow_port).map(|s| s.recv_queue) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the server did not read the request head"
        );
        tokio::time::sleep(ms(10)).await;
    }

    let started = Instant::now();
    server.signal("TERM");
    watcher.expect_error(4200).await;
    watcher.expect_close(4200).await;

    // New connections are refused (the listener is closed) while the
    // request is still being drained.
    let deadline = Instant::now() + RECV_TIMEOUT;
    loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Accepted just before the listener closed, or reset as it closed
            // with the connection in its backlog: try again.
            Ok(_) | Err(_) => assert!(
                Instant::now() < deadline,
                "new connections still accepted {:?} after SIGTERM",
                started.elapsed()
            ),
        }
        tokio::time::sleep(ms(20)).await;
    }
    match Ws::try_open_with(
        &server.ws_url(&format!("/app/{APP_KEY}?protocol=7")),
        &[],
        None,
    )
    .await
    {
        Err(WsError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        Err(e) => panic!("WebSocket upgrade failed otherwise: {e}"),
        Ok(_) => panic!("a WebSocket was upgraded during the drain"),
    }
    let up = reqwest::Client::new()
        .get(format!("{}/up", server.http_base()))
        .send()
        .await;
    assert!(
        up.as_ref().is_err_and(|e| e.is_connect()),
        "HTTP during the drain: {up:?}"
    );
    assert!(
        server.is_running(),
        "the server waits for the request in flight"
    );

    // The rest of the body: the request completes normally.
    slow.write_all(rest).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, slow.read_to_end(&mut response))
        .await
        .expect("a response within 5 s")
        .expect("the response, not a reset");
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the drained request: {response}"
    );
    assert!(response.ends_with("{}"), "Pusher's body: {response}");

    // With nothing left in flight the process exits, well before the grace period.
    let status = server
        .wait_exit(GRACE + SLACK)
        .await
        .expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < GRACE / 2,
        "exited {:?} after SIGTERM: it should not wait out the grace period once drained",
        started.elapsed()
    );
}
