//! TLS (docs/security guide "SSL/TLS Configuration"): certificates generated
//! here with rcgen, a real `wss://` client and HTTPS API calls over rustls
//! trusting only the test CA; TLS 1.2 and 1.3 served, a TLS 1.1 ClientHello
//! refused (also by `openssl s_client`); the HTTP→HTTPS redirect listener,
//! including a real HTTPS port 443 that the redirect omits; certificate
//! errors at start-up; a chain file (leaf + intermediate) served whole.
//! Without openssl, or without the privilege to bind port 443, the tests
//! that need them fail under CI=true and print SKIPPED locally
//! (tests/common/prereq.rs).

mod common;

use common::prereq;
use common::security::*;
use common::*;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Root CA + leaf written to a temp dir; the env to serve them.
struct Certs {
    dir: TempDir,
    root_pem: String,
    cert: String,
    key: String,
}

fn certs() -> Certs {
    let dir = TempDir::new();
    let root = TestCa::root("Switchyard Test Root");
    let leaf = root.leaf();
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let key = dir.write("key.pem", &leaf.key_pem);
    Certs {
        dir,
        root_pem: root.pem(),
        cert,
        key,
    }
}

async fn tls_server(c: &Certs, extra: &[(&str, &str)]) -> Server {
    let mut env = app_env();
    env.extend_from_slice(&[
        ("SSL_ENABLED", "true"),
        ("SSL_CERT_PATH", c.cert.as_str()),
        ("SSL_KEY_PATH", c.key.as_str()),
    ]);
    env.extend_from_slice(extra);
    Server::start_ready(&env, None, Ready::Https(c.root_pem.clone())).await
}

#[tokio::test]
async fn wss_and_https_api_work_with_a_generated_certificate() {
    let c = certs();
    let server = tls_server(&c, &[]).await;

    let mut ws = server.connect_wss(&c.root_pem).await;
    let (version, presented) = ws.tls_info().expect("wss is TLS");
    assert_eq!(
        version,
        rustls::ProtocolVersion::TLSv1_3,
        "default is TLS 1.3"
    );
    assert_eq!(presented, 1, "leaf only in cert.pem");
    ws.subscribe("tls-channel").await;

    let api = server.https_api(&c.root_pem);
    api.publish("tls-channel", "over-tls", "{\"n\":1}").await;
    let f = ws.expect_channel_event("over-tls", "tls-channel").await;
    assert_eq!(f.data_str(), "{\"n\":1}");

    // signed GET over HTTPS too
    let v = api
        .get("/channels/tls-channel", &[("info", "subscription_count")])
        .await
        .assert_ok();
    assert_eq!(v["subscription_count"], 1, "{v}");
    ws.assert_alive().await;
}

#[tokio::test]
async fn tls_port_serves_no_plaintext() {
    let c = certs();
    let server = tls_server(&c, &[]).await;
    // plain HTTP on the TLS port: no HTTP answer
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/up", server.http_base()))
        .send()
        .await;
    assert!(
        r.is_err(),
        "plain http:// must not be answered on the TLS port: {:?}",
        r.map(|r| r.status())
    );
    // plain ws:// neither
    let ws = Ws::try_open_with(&server.app_ws_url(), &[], None).await;
    assert!(ws.is_err(), "plain ws:// must fail on the TLS port");
    // an untrusting client (no roots for this CA) fails the handshake
    let other = TestCa::root("Someone Else");
    let err = Ws::open_tls(
        &server.wss_url(&app_ws_path()),
        tls_client_config(&[&other.pem()], rustls::ALL_VERSIONS),
    )
    .await;
    assert!(
        err.is_err(),
        "certificate must not verify against another CA"
    );
    // the server is still fine
    let mut ws = server.connect_wss(&c.root_pem).await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn tls12_only_and_tls13_only_clients_are_both_served() {
    let c = certs();
    let server = tls_server(&c, &[]).await;
    let url = server.wss_url(&app_ws_path());
    for (versions, want) in [
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let mut ws = Ws::open_tls(&url, tls_client_config(&[&c.root_pem], versions))
            .await
            .unwrap_or_else(|e| panic!("{want:?} client refused: {e}"));
        ws.read_established().await;
        assert_eq!(ws.tls_info().unwrap().0, want);
        ws.assert_alive().await;

        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_client_config(&[&c.root_pem], versions))
            .build()
            .unwrap();
        let r = send(
            &client,
            "GET",
            &format!("{}/up", server.https_base()),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "HTTPS /up with {want:?}");
    }
}

/// A ClientHello offering only `version` (legacy version field, no
/// supported_versions extension), ECDHE-ECDSA suites, P-256/X25519.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    let suites: [u16; 5] = [0xc02b, 0xc02c, 0xcca9, 0xc009, 0xc00a];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    let mut push_ext = |kind: u16, data: &[u8]| {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    };
    push_ext(0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]); // supported_groups
    push_ext(0x000b, &[0x01, 0x00]); // ec_point_formats
    push_ext(0x000d, &[0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]); // signature_algorithms
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = vec![0x01]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Send a ClientHello to 127.0.0.1:`port`, return the first bytes the
/// server answers (empty = closed).
async fn hello_reply(port: u16, hello: &[u8]) -> Vec<u8> {
    hello_reply_at(SocketAddr::from(([127, 0, 0, 1], port)), hello).await
}

async fn hello_reply_at(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut buf = vec![0u8; 16];
    let mut got = 0;
    while got < 7 {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("server neither answered nor closed"),
        }
    }
    buf.truncate(got);
    buf
}

#[tokio::test]
async fn tls11_and_tls10_client_hellos_are_refused_with_an_alert() {
    let c = certs();
    let server = tls_server(&c, &[]).await;

    // Control: the same hello claiming TLS 1.2 gets a ServerHello.
    let ok = hello_reply(server.port, &client_hello([0x03, 0x03])).await;
    assert!(
        ok.len() >= 6 && ok[0] == 0x16 && ok[5] == 0x02,
        "TLS 1.2 ClientHello should get a ServerHello, got {ok:02x?}"
    );

    // TLS 1.1 and 1.0: no ServerHello but a fatal alert (protocol_version,
    // or handshake_failure) or a plain close.
    for (name, version) in [("TLS 1.1", [0x03, 0x02]), ("TLS 1.0", [0x03, 0x01])] {
        let refused = hello_reply(server.port, &client_hello(version)).await;
        assert!(
            !(refused.len() >= 6 && refused[0] == 0x16),
            "{name} must not be negotiated, got handshake {refused:02x?}"
        );
        if !refused.is_empty() {
            assert_eq!(
                refused[0], 0x15,
                "{name}: expected an alert record, got {refused:02x?}"
            );
            assert!(
                matches!(refused.get(5..7), Some([0x02, 70]) | Some([0x02, 40])),
                "{name}: expected a fatal protocol_version/handshake_failure alert, got {refused:02x?}"
            );
        }
    }
}

/// `openssl s_client` (at `openssl`) forced to one protocol version.
fn s_client(openssl: &Path, port: u16, flag: &str) -> String {
    let out = std::process::Command::new(openssl)
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            flag,
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", openssl.display()));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn openssl_tls11_client_is_refused() {
    let Some(openssl) = prereq::require_tool("openssl", "apt-get install -y openssl") else {
        return;
    };
    let c = certs();
    let server = tls_server(&c, &[]).await;
    let port = server.port;
    let bin = openssl.clone();
    let tls12 = tokio::task::spawn_blocking(move || s_client(&bin, port, "-tls1_2"))
        .await
        .unwrap();
    // control: the same client negotiates TLS 1.2
    assert!(
        tls12.contains("Protocol  : TLSv1.2") && !tls12.contains("Cipher is (NONE)"),
        "openssl -tls1_2 should connect:\n{tls12}"
    );
    let tls11 = tokio::task::spawn_blocking(move || s_client(&openssl, port, "-tls1_1"))
        .await
        .unwrap();
    assert!(
        tls11.contains("Cipher is (NONE)") && tls11.contains("alert"),
        "openssl -tls1_1 must fail the handshake:\n{tls11}"
    );
}

/// A TLS server with the redirect listener on a second port; returns it and that port.
async fn redirect_server(extra: &[(&str, &str)]) -> (Certs, Server, u16) {
    let c = certs();
    let http_port = pick_port();
    let hp = http_port.to_string();
    let mut env = vec![
        ("SSL_REDIRECT_HTTP", "true"),
        ("SSL_HTTP_PORT", hp.as_str()),
    ];
    env.extend_from_slice(extra);
    let server = tls_server(&c, &env).await;
    (c, server, http_port)
}

#[tokio::test]
async fn redirect_listener_sends_every_request_to_https_on_the_request_host() {
    let (_c, server, hp) = redirect_server(&[]).await;
    let p = server.port;
    let cases: &[(&str, &str, &str, u16, String)] = &[
        (
            "GET",
            "/app/test-key?protocol=7&client=js",
            "push.example.org:8080",
            301,
            format!("https://push.example.org:{p}/app/test-key?protocol=7&client=js"),
        ),
        (
            "HEAD",
            "/up",
            "example.net",
            301,
            format!("https://example.net:{p}/up"),
        ),
        (
            "GET",
            "/",
            "example.net",
            301,
            format!("https://example.net:{p}/"),
        ),
        (
            "POST",
            "/apps/test-app/events?auth_key=k&x=1",
            "api.example.net:80",
            308,
            format!("https://api.example.net:{p}/apps/test-app/events?auth_key=k&x=1"),
        ),
        (
            "PUT",
            "/a/b",
            "example.net",
            308,
            format!("https://example.net:{p}/a/b"),
        ),
        (
            "DELETE",
            "/a",
            "example.net",
            308,
            format!("https://example.net:{p}/a"),
        ),
        (
            "OPTIONS",
            "/a",
            "example.net",
            308,
            format!("https://example.net:{p}/a"),
        ),
    ];
    for (method, target, host, status, location) in cases {
        let body: &[u8] = if *method == "POST" { b"{\"a\":1}" } else { b"" };
        let r = tcp_http(hp, method, target, &[("Host", host)], body)
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
        assert_eq!(r.status, *status, "{method} {target} Host {host}: {r:?}");
        assert_eq!(
            r.header("location"),
            Some(location.as_str()),
            "{method} {target} Host {host}"
        );
    }
    // the HTTPS listener itself is unaffected
    let mut ws = server.connect_wss(&_c.root_pem).await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn redirect_listener_uses_domain_when_set() {
    let (_c, server, hp) = redirect_server(&[("DOMAIN", "push.example.com")]).await;
    let p = server.port;
    for (method, status) in [("GET", 301), ("HEAD", 301), ("POST", 308)] {
        let r = tcp_http(
            hp,
            method,
            "/apps/test-app/channels?filter_by_prefix=presence-",
            &[("Host", "evil.example:1234")],
            b"",
        )
        .await
        .unwrap();
        assert_eq!(r.status, status, "{method}: {r:?}");
        assert_eq!(
            r.header("location"),
            Some(
                format!("https://push.example.com:{p}/apps/test-app/channels?filter_by_prefix=presence-")
                    .as_str()
            ),
            "{method}: DOMAIN wins over the Host header"
        );
    }
}

/// A loopback address of this test process's own (127.44.x.y from the pid),
/// so parallel test runs on one machine do not race for port 443.
fn own_loopback(salt: u8) -> IpAddr {
    let pid = std::process::id();
    IpAddr::from([
        127,
        44u8.wrapping_add(salt),
        (pid >> 8) as u8,
        (pid as u8).max(1),
    ])
}

#[tokio::test]
async fn redirect_to_port_443_has_no_port_in_location() {
    // The HTTPS listener really is on 443 (the port the redirect omits), on
    // a loopback address of this process's own. Binding it needs root or
    // CAP_NET_BIND_SERVICE: without either, a missing prerequisite.
    let mut host = None;
    for salt in 0..8 {
        let ip = own_loopback(salt);
        match std::net::TcpListener::bind((ip, 443)) {
            Ok(l) => {
                drop(l);
                host = Some(ip);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => {
                let fix = "run the tests as root, or allow it: \
                           sysctl -w net.ipv4.ip_unprivileged_port_start=443";
                prereq::missing::<()>(&format!("cannot bind {ip}:443 ({e})"), fix);
                return;
            }
        }
    }
    let host = host.expect("port 443 in use on 8 loopback addresses");
    let c = certs();
    let hp = pick_port();
    let hps = hp.to_string();
    let host_s = host.to_string();
    let mut env = app_env();
    env.extend_from_slice(&[
        ("HOST", host_s.as_str()),
        ("PORT", "443"),
        ("SSL_ENABLED", "true"),
        ("SSL_CERT_PATH", c.cert.as_str()),
        ("SSL_KEY_PATH", c.key.as_str()),
        ("SSL_REDIRECT_HTTP", "true"),
        ("SSL_HTTP_PORT", hps.as_str()),
    ]);
    let redirect = SocketAddr::new(host, hp);
    let _server = Server::start_ready(&env, None, Ready::TcpAddr(redirect)).await;
    // control: TLS is served on host:443
    let hello = hello_reply_at(SocketAddr::new(host, 443), &client_hello([0x03, 0x03])).await;
    assert!(
        hello.len() >= 6 && hello[0] == 0x16 && hello[5] == 0x02,
        "{host}:443 should answer a ClientHello with a ServerHello, got {hello:02x?}"
    );
    let get = |method: &'static str, target: &'static str, host: &'static str| async move {
        let tcp = TcpStream::connect(redirect).await.unwrap();
        raw_http(tcp, method, target, &[("Host", host)], b"")
            .await
            .unwrap()
    };
    let r = get("GET", "/x?y=1", "example.org:80").await;
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("https://example.org/x?y=1"));
    let post = get("POST", "/", "example.org").await;
    assert_eq!(post.status, 308, "{post:?}");
    assert_eq!(post.header("location"), Some("https://example.org/"));
}

fn assert_failed_naming(f: &Failure, needles: &[&str]) {
    assert!(
        !f.status.success(),
        "must exit non-zero, got {:?}\n{}",
        f.status,
        f.output
    );
    for n in needles {
        assert!(
            f.output.contains(n),
            "output should contain {n:?}:\n{}",
            f.output
        );
    }
}

#[tokio::test]
async fn missing_or_invalid_certificate_files_stop_the_server_naming_the_file() {
    let c = certs();
    let missing = c.dir.file("no-such-cert.pem");
    let f = Server::start_expect_failure(
        &[
            ("SSL_ENABLED", "true"),
            ("SSL_CERT_PATH", missing.as_str()),
            ("SSL_KEY_PATH", c.key.as_str()),
        ],
        None,
        &[],
    )
    .await;
    assert_failed_naming(&f, &["SSL_CERT_PATH", &missing]);

    let missing_key = c.dir.file("no-such-key.pem");
    let f = Server::start_expect_failure(
        &[
            ("SSL_ENABLED", "true"),
            ("SSL_CERT_PATH", c.cert.as_str()),
            ("SSL_KEY_PATH", missing_key.as_str()),
        ],
        None,
        &[],
    )
    .await;
    assert_failed_naming(&f, &["SSL_KEY_PATH", &missing_key]);

    // a file that holds no certificate
    let garbage = c.dir.write("garbage.pem", "this is not a certificate\n");
    let f = Server::start_expect_failure(
        &[
            ("SSL_ENABLED", "true"),
            ("SSL_CERT_PATH", garbage.as_str()),
            ("SSL_KEY_PATH", c.key.as_str()),
        ],
        None,
        &[],
    )
    .await;
    assert_failed_naming(&f, &["SSL_CERT_PATH", &garbage]);

    // a key that does not belong to the certificate
    let other = TestCa::root("Other").leaf();
    let wrong_key = c.dir.write("wrong-key.pem", &other.key_pem);
    let f = Server::start_expect_failure(
        &[
            ("SSL_ENABLED", "true"),
            ("SSL_CERT_PATH", c.cert.as_str()),
            ("SSL_KEY_PATH", wrong_key.as_str()),
        ],
        None,
        &[],
    )
    .await;
    assert!(
        !f.status.success(),
        "mismatched key must not start:\n{}",
        f.output
    );

    // enabled without paths
    let f = Server::start_expect_failure(&[("SSL_ENABLED", "true")], None, &[]).await;
    assert_failed_naming(&f, &["ssl.cert_path"]);
}

#[tokio::test]
async fn certificate_chain_file_is_served_whole() {
    let dir = TempDir::new();
    let root = TestCa::root("Chain Root");
    let inter = root.intermediate("Chain Intermediate");
    let leaf = inter.leaf();
    let chain = dir.write(
        "fullchain.pem",
        &format!("{}{}", leaf.cert_pem, inter.pem()),
    );
    let leaf_only = dir.write("leaf.pem", &leaf.cert_pem);
    let key = dir.write("privkey.pem", &leaf.key_pem);
    let root_pem = root.pem();

    let mut env = app_env();
    env.extend_from_slice(&[
        ("SSL_ENABLED", "true"),
        ("SSL_CERT_PATH", chain.as_str()),
        ("SSL_KEY_PATH", key.as_str()),
    ]);
    let server = Server::start_ready(&env, None, Ready::Https(root_pem.clone())).await;
    // the client trusts only the root: verification needs the intermediate
    let mut ws = server.connect_wss(&root_pem).await;
    assert_eq!(ws.tls_info().unwrap().1, 2, "leaf + intermediate presented");
    ws.subscribe("chain").await;
    server
        .https_api(&root_pem)
        .publish_body(json!({"name": "e", "channel": "chain", "data": "d"}))
        .await
        .assert_ok();
    ws.expect_channel_event("e", "chain").await;

    // control: without the intermediate the same client cannot verify
    let mut env = app_env();
    env.extend_from_slice(&[
        ("SSL_ENABLED", "true"),
        ("SSL_CERT_PATH", leaf_only.as_str()),
        ("SSL_KEY_PATH", key.as_str()),
    ]);
    let bare = Server::start_ready(&env, None, Ready::TcpOpen).await;
    let r = Ws::open_tls(
        &bare.wss_url(&app_ws_path()),
        tls_client_config(&[&root_pem], rustls::ALL_VERSIONS),
    )
    .await;
    assert!(
        r.is_err(),
        "leaf-only file should not verify against the root alone"
    );
}

#[tokio::test]
async fn oversized_request_heads_are_431_over_tls_and_on_the_redirect_listener() {
    let (c, server, hp) = redirect_server(&[]).await;
    let api = server.https_api(&c.root_pem);
    let big = "x".repeat(64 * 1024);
    api.request_full(
        "GET",
        &api.path("/channels"),
        &[],
        b"",
        &Sign::default(),
        &[("x-big", &big)],
    )
    .await
    .resp()
    .assert_error(431, "headers_too_large");
    api.get("/channels", &[]).await.assert_ok();

    let r = tcp_http(hp, "GET", "/", &[("X-Big", &big)], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 431, "{r:?}");
    assert!(r.header("location").is_none(), "no redirect: {r:?}");
    let r = tcp_http(hp, "GET", "/", &[], b"").await.unwrap();
    assert_eq!(r.status, 301, "{r:?}");
}
