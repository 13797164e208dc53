//! Graceful shutdown with real clients: on SIGTERM/SIGINT every socket is told
//! to reconnect elsewhere (4200), new connections are refused, and the process
//! exits 0 within SHUTDOWN_GRACE_PERIOD.

mod common;

use common::*;
use std::time::{Duration, Instant};

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
    let mut server = Server::start_app(&[("SHUTDOWN_GRACE_PERIOD", "1")]).await;
    // A raw TCP client that upgrades and then never reads or answers.
    use tokio::io::AsyncWriteExt;
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let req = format!(
        "GET /app/{APP_KEY}?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    raw.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(ms(300)).await;
    let started = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("server exits even with a silent client");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by the 1 s grace period (plus slack): {:?}",
        started.elapsed()
    );
    drop(raw);
}
