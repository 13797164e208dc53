//! Behind a reverse proxy (security guide "SSL with Reverse Proxy" and
//! "Nginx Configuration with Unix Socket"): a real nginx child process with
//! the guide's proxy headers (Upgrade/Connection, X-Real-IP,
//! X-Forwarded-For) in front of the server, over TCP and over the Unix
//! socket. WebSocket and the HTTP API work through it; the client address
//! the server logs and rate-limits on follows RATE_LIMITER_*_TRUST_HOPS.
//!
//! nginx connects to the upstream from 127.0.0.2 (`proxy_bind`) and the test
//! clients connect to nginx from 127.0.0.3 / 127.0.0.4, so "nginx's address"
//! and "the client's address" are distinguishable. Without nginx the tests
//! fail under CI=true with the install command, and locally print SKIPPED
//! (tests/common/prereq.rs).

mod common;

use common::security::*;
use common::*;
use serde_json::json;
use std::net::IpAddr;

const NGINX_ADDR: &str = "127.0.0.2";
const CLIENT_A: &str = "127.0.0.3";
const CLIENT_B: &str = "127.0.0.4";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The standard app's API through nginx, from a client address.
fn api_via(nginx: &Nginx, from: &str) -> Api {
    Api::with_client(
        nginx.base(),
        APP_ID,
        APP_KEY,
        APP_SECRET,
        http_client(Some(ip(from))),
    )
}

async fn ws_via(nginx: &Nginx, from: &str, headers: &[(&str, &str)]) -> Ws {
    let mut ws = Ws::try_open_with(&nginx.ws_url(&app_ws_path()), headers, Some(ip(from)))
        .await
        .unwrap_or_else(|e| panic!("WebSocket through nginx: {e}"));
    ws.read_established().await;
    ws
}

/// The `peer=` of the "connection opened" line of `socket_id`.
async fn logged_peer(server: &Server, socket_id: &str) -> String {
    let find = |logs: &str| {
        logs.lines()
            .find(|l| {
                l.contains("connection opened") && text_field(l, "socket_id") == Some(socket_id)
            })
            .and_then(|l| text_field(l, "peer"))
            .map(str::to_string)
    };
    server
        .wait_for_logs("connection opened line", ms(3000), |l| find(l).is_some())
        .await;
    find(&server.logs()).unwrap()
}

/// The `peer=` of the last api_auth_failed line.
async fn api_failure_peer(server: &Server, api: &Api, headers: &[(&str, &str)]) -> String {
    let bad = Sign {
        corrupt_signature: true,
        ..Sign::default()
    };
    let r = api
        .request_full("GET", &api.path("/channels"), &[], b"", &bad, headers)
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    let find = |logs: &str| {
        logs.lines()
            .rev()
            .find(|l| text_field(l, "event") == Some("api_auth_failed"))
            .and_then(|l| text_field(l, "peer"))
            .map(str::to_string)
    };
    server
        .wait_for_logs("api_auth_failed line", ms(3000), |l| find(l).is_some())
        .await;
    find(&server.logs()).unwrap()
}

#[tokio::test]
async fn websocket_and_api_work_through_nginx_over_tcp() {
    let server = Server::start_app(&[
        ("RATE_LIMITER_API_TRUST_HOPS", "1"),
        ("RATE_LIMITER_WS_TRUST_HOPS", "1"),
    ])
    .await;
    let Some(nginx) = Nginx::start(Upstream::Tcp(server.port), Some(NGINX_ADDR)).await else {
        return;
    };
    let mut ws = ws_via(&nginx, CLIENT_A, &[]).await;
    ws.subscribe("proxied").await;
    let mut private = ws_via(&nginx, CLIENT_A, &[]).await;
    private.subscribe_private("private-proxied").await;

    let api = api_via(&nginx, CLIENT_A);
    api.publish("proxied", "through-nginx", "{\"ok\":true}")
        .await;
    let f = ws.expect_channel_event("through-nginx", "proxied").await;
    assert_eq!(f.data_str(), "{\"ok\":true}");
    api.publish_body(json!({"name": "p", "channels": ["private-proxied"], "data": "x"}))
        .await
        .assert_ok();
    private.expect_channel_event("p", "private-proxied").await;
    let info = api
        .get("/channels/proxied", &[("info", "subscription_count")])
        .await
        .assert_ok();
    assert_eq!(info["subscription_count"], 1, "{info}");
    // ping/pong both ways through the proxy
    ws.assert_alive().await;

    // the server sees the client, not nginx
    assert_eq!(logged_peer(&server, &ws.socket_id).await, CLIENT_A);
    // a client-supplied X-Forwarded-For does not fool one trusted hop
    let spoofer = ws_via(&nginx, CLIENT_B, &[("X-Forwarded-For", "6.6.6.6")]).await;
    assert_eq!(logged_peer(&server, &spoofer.socket_id).await, CLIENT_B);
    assert_eq!(
        api_failure_peer(
            &server,
            &api_via(&nginx, CLIENT_B),
            &[("X-Forwarded-For", "6.6.6.6")]
        )
        .await,
        CLIENT_B
    );
}

#[tokio::test]
async fn trust_hops_decide_which_address_is_the_client() {
    // A client at 127.0.0.4 sends a spoofed X-Forwarded-For through nginx
    // (which connects from 127.0.0.2): nginx forwards "6.6.6.6, 127.0.0.4".
    for (hops, want) in [("0", NGINX_ADDR), ("1", CLIENT_B), ("2", "6.6.6.6")] {
        let server = Server::start_app(&[
            ("RATE_LIMITER_API_TRUST_HOPS", hops),
            ("RATE_LIMITER_WS_TRUST_HOPS", hops),
        ])
        .await;
        let Some(nginx) = Nginx::start(Upstream::Tcp(server.port), Some(NGINX_ADDR)).await else {
            return;
        };
        let spoof = [("X-Forwarded-For", "6.6.6.6")];
        let ws = ws_via(&nginx, CLIENT_B, &spoof).await;
        assert_eq!(
            logged_peer(&server, &ws.socket_id).await,
            want,
            "WS peer with trust hops {hops}"
        );
        assert_eq!(
            api_failure_peer(&server, &api_via(&nginx, CLIENT_B), &spoof).await,
            want,
            "API peer with trust hops {hops}"
        );
    }
}

#[tokio::test]
async fn rate_limit_buckets_per_client_through_nginx() {
    for (hops, separate) in [("1", true), ("0", false)] {
        let server = Server::start_app(&[
            ("RATE_LIMITER_ENABLED", "true"),
            ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
            ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
            ("RATE_LIMITER_API_TRUST_HOPS", hops),
            ("RATE_LIMITER_WS_MAX_REQUESTS", "1"),
            ("RATE_LIMITER_WS_WINDOW_SECONDS", "60"),
            ("RATE_LIMITER_WS_TRUST_HOPS", hops),
        ])
        .await;
        let Some(nginx) = Nginx::start(Upstream::Tcp(server.port), Some(NGINX_ADDR)).await else {
            return;
        };
        let a = api_via(&nginx, CLIENT_A);
        let b = api_via(&nginx, CLIENT_B);
        assert_eq!(a.get_channels_with(&[]).await.status, 200, "hops {hops}");
        let second = b.get_channels_with(&[]).await;
        if separate {
            assert_eq!(
                second.status, 200,
                "hops {hops}: own bucket for B: {second:?}"
            );
            let again = a.get_channels_with(&[]).await;
            assert_eq!(again.status, 429, "hops {hops}: A spent its bucket");
            assert_eq!(again.json()["code"], "limit_exceeded");
            assert!(again.header("retry-after").is_some(), "{again:?}");
        } else {
            assert_eq!(
                second.status, 429,
                "hops {hops}: everyone is nginx: {second:?}"
            );
        }

        let url = nginx.ws_url(&app_ws_path());
        let mut first = Ws::try_open_with(&url, &[], Some(ip(CLIENT_A)))
            .await
            .unwrap();
        first.read_established().await;
        let other = Ws::try_open_with(&url, &[], Some(ip(CLIENT_B))).await;
        match (separate, other) {
            (true, Ok(mut ws)) => {
                ws.read_established().await;
                let err = Ws::try_open_with(&url, &[], Some(ip(CLIENT_A)))
                    .await
                    .err()
                    .expect("A's second upgrade refused");
                assert_eq!(upgrade_status(&err), Some(429));
            }
            (false, Err(e)) => assert_eq!(upgrade_status(&e), Some(429), "{e}"),
            (separate, other) => panic!(
                "hops {hops}: separate buckets expected {separate}, got {:?}",
                other.err()
            ),
        }
    }
}

#[tokio::test]
async fn websocket_and_api_work_through_nginx_over_the_unix_socket() {
    let dir = TempDir::new();
    let sock = dir.join("switchyard.sock");
    let sock_s = sock.to_string_lossy().into_owned();
    let mut env = app_env();
    env.extend_from_slice(&[
        ("UNIX_SOCKET_ENABLED", "true"),
        ("UNIX_SOCKET_PATH", sock_s.as_str()),
        ("UNIX_SOCKET_PERMISSION_MODE", "660"),
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_API_MAX_REQUESTS", "3"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
        ("RATE_LIMITER_API_TRUST_HOPS", "1"),
        ("RATE_LIMITER_WS_TRUST_HOPS", "1"),
    ]);
    let server = Server::start_ready(&env, None, Ready::Unix(sock.clone())).await;
    let Some(nginx) = Nginx::start(Upstream::Unix(sock.clone()), None).await else {
        return;
    };
    // (nginx's readiness probe went through /up, not the API)
    let mut ws = ws_via(&nginx, CLIENT_A, &[]).await;
    ws.subscribe("over-socket").await;
    let api = api_via(&nginx, CLIENT_A);
    api.publish("over-socket", "via-uds", "d").await; // A: 1 of 3
    ws.expect_channel_event("via-uds", "over-socket").await;
    ws.assert_alive().await;
    assert_eq!(logged_peer(&server, &ws.socket_id).await, CLIENT_A);

    // per-client buckets still work behind the socket
    assert_eq!(api.get_channels_with(&[]).await.status, 200); // A: 2
    assert_eq!(api.get_channels_with(&[]).await.status, 200); // A: 3
    assert_eq!(api.get_channels_with(&[]).await.status, 429); // A: over
    let b = api_via(&nginx, CLIENT_B);
    assert_eq!(
        b.get_channels_with(&[]).await.status,
        200,
        "B has its own bucket"
    );
    server
        .wait_for_logs("rate limit names the client", ms(3000), |l| {
            l.lines().any(|line| {
                text_field(line, "event") == Some("rate_limited")
                    && text_field(line, "peer") == Some(CLIENT_A)
            })
        })
        .await;
}

#[tokio::test]
async fn unix_socket_without_trusted_hops_logs_unix_peers() {
    let dir = TempDir::new();
    let sock = dir.join("s.sock");
    let sock_s = sock.to_string_lossy().into_owned();
    let mut env = app_env();
    env.extend_from_slice(&[
        ("UNIX_SOCKET_ENABLED", "true"),
        ("UNIX_SOCKET_PATH", sock_s.as_str()),
    ]);
    let server = Server::start_ready(&env, None, Ready::Unix(sock.clone())).await;
    let Some(nginx) = Nginx::start(Upstream::Unix(sock.clone()), None).await else {
        return;
    };
    let ws = ws_via(&nginx, CLIENT_A, &[("X-Forwarded-For", "6.6.6.6")]).await;
    assert_eq!(logged_peer(&server, &ws.socket_id).await, "unix");
}
