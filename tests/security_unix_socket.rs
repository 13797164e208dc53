//! Unix socket deployment (security guide "Unix Socket Deployment"): HTTP
//! (/up, the signed API) and WebSocket over the socket, the file mode from
//! UNIX_SOCKET_PERMISSION_MODE, no TCP listener, stale sockets replaced, and
//! the refusals (live socket, missing directory, regular file).

mod common;

use common::security::*;
use common::*;
use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

async fn uds_server(path: &Path, mode: &str) -> Server {
    let p = path.to_string_lossy().into_owned();
    let mut env = app_env();
    env.extend_from_slice(&[
        ("UNIX_SOCKET_ENABLED", "true"),
        ("UNIX_SOCKET_PATH", p.as_str()),
        ("UNIX_SOCKET_PERMISSION_MODE", mode),
    ]);
    Server::start_ready(&env, None, Ready::Unix(path.to_path_buf())).await
}

fn mode_of(path: &Path) -> u32 {
    let meta = std::fs::symlink_metadata(path).expect("socket file");
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        path.display()
    );
    meta.permissions().mode() & 0o777
}

#[tokio::test]
async fn http_api_and_websocket_are_served_only_on_the_socket() {
    let dir = TempDir::new();
    let sock = dir.join("switchyard.sock");
    let server = uds_server(&sock, "660").await;
    assert_eq!(mode_of(&sock), 0o660, "UNIX_SOCKET_PERMISSION_MODE=660");

    let up = unix_http(&sock, "GET", "/up", &[], b"").await.unwrap();
    assert_eq!(up.status, 200, "{up:?}");

    let mut ws = unix_ws(&sock, &app_ws_path()).await;
    ws.read_established().await;
    ws.subscribe("over-uds").await;

    let api = server.api();
    let body = json!({"name": "uds-event", "channel": "over-uds", "data": "hello"}).to_string();
    let target = api.signed_target(
        "POST",
        &api.path("/events"),
        &[],
        body.as_bytes(),
        &Sign::default(),
    );
    let r = unix_http(
        &sock,
        "POST",
        &target,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({}));
    let f = ws.expect_event("uds-event").await;
    assert_eq!(f.channel(), Some("over-uds"));
    assert_eq!(f.json["data"], "hello");

    let target = api.signed_target("GET", &api.path("/channels"), &[], b"", &Sign::default());
    let r = unix_http(&sock, "GET", &target, &[], b"").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["channels"]["over-uds"].is_object(), "{}", r.text());

    let bad = Sign {
        corrupt_signature: true,
        ..Sign::default()
    };
    let target = api.signed_target("GET", &api.path("/channels"), &[], b"", &bad);
    let r = unix_http(&sock, "GET", &target, &[], b"").await.unwrap();
    assert_eq!(r.status, 401, "{}", r.text());

    // no TCP listener at all (metrics are off in the harness)
    let ports = server.tcp_listening_ports();
    assert!(ports.is_empty(), "TCP listeners: {ports:?}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .is_err(),
        "nothing may answer on PORT {}",
        server.port
    );
    assert!(
        server.logs().contains("listening on unix:"),
        "{}",
        server.logs()
    );
    assert!(
        !server.logs().contains("listening on http://"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn permission_mode_is_applied_as_octal() {
    let dir = TempDir::new();
    let sock = dir.join("s600.sock");
    let _server = uds_server(&sock, "600").await;
    assert_eq!(mode_of(&sock), 0o600);
    let sock2 = dir.join("s666.sock");
    let _server2 = uds_server(&sock2, "666").await;
    assert_eq!(mode_of(&sock2), 0o666);
}

#[tokio::test]
async fn stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = TempDir::new();
    let sock = dir.join("shared.sock");
    let sock_s = sock.to_string_lossy().into_owned();

    let mut first = uds_server(&sock, "660").await;
    // a second server on a live socket refuses to start and leaves it alone
    let f = Server::start_expect_failure(
        &[
            ("UNIX_SOCKET_ENABLED", "true"),
            ("UNIX_SOCKET_PATH", sock_s.as_str()),
        ],
        None,
        &[],
    )
    .await;
    assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
    assert!(
        f.output.contains("another server is listening"),
        "{}",
        f.output
    );
    assert!(f.output.contains(&sock_s), "names the path:\n{}", f.output);
    let up = unix_http(&sock, "GET", "/up", &[], b"").await.unwrap();
    assert_eq!(up.status, 200, "the live server keeps its socket");

    // crash: the file stays behind, nobody listens
    first.kill_hard();
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_socket());
    assert!(unix_http(&sock, "GET", "/up", &[], b"").await.is_err());

    let second = uds_server(&sock, "660").await;
    let mut ws = unix_ws(&sock, &app_ws_path()).await;
    ws.read_established().await;
    assert_eq!(mode_of(&sock), 0o660);
    assert!(second.logs().contains("stale"), "{}", second.logs());
}

#[tokio::test]
async fn missing_directory_and_regular_file_are_refused() {
    let dir = TempDir::new();
    let missing = dir.file("no-such-dir/s.sock");
    let f = Server::start_expect_failure(
        &[
            ("UNIX_SOCKET_ENABLED", "true"),
            ("UNIX_SOCKET_PATH", missing.as_str()),
        ],
        None,
        &[],
    )
    .await;
    assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
    assert!(f.output.contains("does not exist"), "{}", f.output);
    assert!(f.output.contains("no-such-dir"), "{}", f.output);

    let file = dir.write("not-a-socket", "precious data");
    let f = Server::start_expect_failure(
        &[
            ("UNIX_SOCKET_ENABLED", "true"),
            ("UNIX_SOCKET_PATH", file.as_str()),
        ],
        None,
        &[],
    )
    .await;
    assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
    assert!(f.output.contains("not a socket"), "{}", f.output);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "precious data",
        "the file must not be replaced"
    );
}

#[tokio::test]
async fn oversized_request_heads_are_431_on_the_socket_too() {
    let dir = TempDir::new();
    let sock = dir.join("switchyard.sock");
    let server = uds_server(&sock, "660").await;
    let api = server.api();
    let target = api.signed_target("GET", &api.path("/channels"), &[], b"", &Sign::default());
    let big = "x".repeat(64 * 1024);
    let r = unix_http(&sock, "GET", &target, &[("X-Big", &big)], b"")
        .await
        .unwrap();
    r.resp().assert_error(431, "headers_too_large");
    let r = unix_http(&sock, "GET", &target, &[], b"").await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}
