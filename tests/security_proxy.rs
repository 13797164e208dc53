//! Behind a reverse proxy (security guide "SSL with Reverse Proxy" and
//! "Nginx Configuration with Unix Socket"): a real nginx child process with
//! the guide's proxy headers (Upgrade/Connection, X-Real-IP,
//! X-Forwarded-For) in front of the server, over TCP and over the Unix
//! socket. WebSocket and the HTTP API work through it; the client address
//! the server logs and rate-limits on follows RATE_LIMITER_*_TRUST_HOPS.
//!
//! And deploy/nginx-cluster.conf, the example load balancer, as shipped
//! (only its addresses replaced), in front of two clustered nodes.
//!
//! nginx connects to the upstream from 127.0.0.2 (`proxy_bind`) and the test
//! clients connect to nginx from 127.0.0.3 / 127.0.0.4, so "nginx's address"
//! and "the client's address" are distinguishable. Without nginx the tests
//! fail under CI=true with the install command, and locally print SKIPPED
//! (tests/common/prereq.rs).

mod common;

use common::cluster::node_with;
use common::redis::RedisServer;
use common::security::*;
use common::*;
use serde_json::json;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------
// deploy/nginx-cluster.conf

fn cluster_conf_text() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx-cluster.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The directives of an nginx file: comments dropped, one per `;` or `{`.
fn directives(conf: &str) -> Vec<String> {
    conf.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty() && *l != "}")
        .map(|l| l.trim_end_matches([';', '{']).trim().to_string())
        .collect()
}

/// deploy/nginx-cluster.conf as shipped, but listening on `127.0.0.1:port`
/// with its upstream servers replaced, in order, by the nodes on `nodes`
/// (their parameters kept). Panics unless the file has exactly
/// `nodes.len()` upstream servers and one `listen 80;`.
fn cluster_conf(port: u16, nodes: &[u16]) -> String {
    let mut nodes = nodes.iter();
    let mut out = String::new();
    let mut in_upstream = false;
    let mut listens = 0;
    for line in cluster_conf_text().lines() {
        let t = line.trim();
        if t.starts_with("upstream ") {
            in_upstream = true;
        } else if in_upstream && t == "}" {
            in_upstream = false;
            assert!(nodes.next().is_none(), "fewer upstream servers than nodes");
        } else if in_upstream && t.starts_with("server ") {
            let (_, params) = t["server ".len()..].split_once(' ').unwrap_or(("", ";"));
            let node = nodes.next().expect("more upstream servers than nodes");
            out.push_str(&format!("        server 127.0.0.1:{node} {params}\n"));
            continue;
        } else if t == "listen 80;" {
            listens += 1;
            out.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(listens, 1, "one `listen 80;` in deploy/nginx-cluster.conf");
    out
}

/// What the example promises in its comments, checked on its directives:
/// every node in one upstream without stickiness, the WebSocket upgrade,
/// X-Forwarded-For, and nginx never the first to give up on a quiet but
/// healthy connection.
#[test]
fn the_example_cluster_nginx_config_says_what_it_promises() {
    let d = directives(&cluster_conf_text());
    let has = |want: &str| d.iter().any(|x| x == want);
    for sticky in ["ip_hash", "hash ", "sticky"] {
        assert!(
            !d.iter().any(|x| x.starts_with(sticky)),
            "no sticky sessions needed: {sticky}"
        );
    }
    let servers = d.iter().filter(|x| x.starts_with("server ")).count();
    assert_eq!(servers, 2, "two nodes in the upstream: {d:?}");
    assert!(has("proxy_pass http://switchyard_cluster"), "{d:?}");
    assert!(has("proxy_http_version 1.1"), "{d:?}");
    assert!(has("proxy_set_header Upgrade $http_upgrade"), "{d:?}");
    assert!(
        has("proxy_set_header Connection $switchyard_connection"),
        "{d:?}"
    );
    assert!(
        has("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for"),
        "{d:?}"
    );
    let read_timeout = d
        .iter()
        .find_map(|x| x.strip_prefix("proxy_read_timeout "))
        .and_then(|v| v.strip_suffix('s'))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("proxy_read_timeout <seconds>s");
    let defaults = (
        switchyard_actors::defaults::ACTIVITY_TIMEOUT_SECS,
        switchyard_actors::defaults::PONG_TIMEOUT_SECS,
    );
    assert!(
        read_timeout > defaults.0 + defaults.1,
        "proxy_read_timeout {read_timeout}s must exceed ACTIVITY_TIMEOUT + PONG_TIMEOUT {defaults:?}"
    );
}

/// Which of `nodes` logged the opening of `socket_id` (its index).
async fn node_of(nodes: &[&Server], socket_id: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            let opened = node.logs().lines().any(|l| {
                l.contains("connection opened") && text_field(l, "socket_id") == Some(socket_id)
            });
            if opened {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node logged the opening of {socket_id}"
        );
        tokio::time::sleep(ms(20)).await;
    }
}

#[tokio::test]
async fn the_example_cluster_nginx_config_balances_two_clustered_nodes() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let hops = [
        ("RATE_LIMITER_API_TRUST_HOPS", "1".to_string()),
        ("RATE_LIMITER_WS_TRUST_HOPS", "1".to_string()),
    ];
    let a = node_with(&redis, "lb:", &hops).await;
    let b = node_with(&redis, "lb:", &hops).await;
    let nodes = [a.port, b.port];
    let Some(nginx) = Nginx::start_http(|port| cluster_conf(port, &nodes)).await else {
        return;
    };

    // WebSockets through nginx until one is on each node (least_conn: the
    // second goes to the node without one).
    let mut on: [Option<Ws>; 2] = [None, None];
    let mut opened = Vec::new();
    while on.iter().any(Option::is_none) {
        assert!(opened.len() < 6, "nginx never used both nodes");
        let ws = ws_via(&nginx, CLIENT_A, &[]).await;
        let i = node_of(&[&a, &b], &ws.socket_id).await;
        if on[i].is_none() {
            on[i] = Some(ws);
        } else {
            opened.push(ws);
        }
    }
    let [Some(mut on_a), Some(mut on_b)] = on else {
        unreachable!()
    };
    on_a.subscribe("lb-news").await;
    on_b.subscribe("lb-news").await;
    // X-Forwarded-For from the example, one trusted hop: the client's address.
    for (node, ws) in [(&a, &on_a), (&b, &on_b)] {
        assert_eq!(logged_peer(node, &ws.socket_id).await, CLIENT_A);
    }

    // Published through nginx, each request to whichever node nginx picks:
    // both clients get every event once. Not necessarily in publish order:
    // a node answers once it has delivered locally and handed the event to
    // Redis, so the next request, taken by the other node, can overtake it
    // on its way to that node's clients.
    let api = api_via(&nginx, CLIENT_A);
    for n in 1..=4 {
        api.publish("lb-news", "update", &format!("{n}")).await;
    }
    for ws in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 1..=4 {
            let f = ws.expect_channel_event("update", "lb-news").await;
            got.push(f.data_str().to_string());
        }
        got.sort();
        assert_eq!(got, ["1", "2", "3", "4"]);
        ws.expect_silence(SILENCE).await;
    }
    // One request is one node: a batch arrives in order everywhere.
    let batch: Vec<_> = (1..=4)
        .map(|n| json!({"channel": "lb-news", "name": "batched", "data": n.to_string()}))
        .collect();
    let r = api
        .post("/batch_events", &json!({ "batch": batch }).to_string())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    for ws in [&mut on_a, &mut on_b] {
        for n in 1..=4 {
            let f = ws.expect_channel_event("batched", "lb-news").await;
            assert_eq!(f.data_str(), n.to_string(), "{}", f.raw);
        }
        ws.expect_silence(SILENCE).await;
    }
    // And the API through nginx counts both nodes' subscribers.
    let info = api
        .wait_channel_info("lb-news", "subscription_count", |v| {
            v["subscription_count"] == 2
        })
        .await;
    assert_eq!(info["occupied"], true, "{info}");
    drop(opened);
}
