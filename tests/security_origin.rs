//! Origin validation (security guide "Origin Validation"): every pattern form
//! accepted and refused with real `Origin` headers; a refusal is the exact
//! 4009 frame then close 4009 and never `connection_established`; a missing
//! Origin is refused when a list is set; `*` is accepted with a start-up
//! warning; refusals are logged; no refusal of any kind (origin, key,
//! disabled app, protocol, quota) holds one of the app's connection slots.

mod common;

use common::security::*;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const SECRET: &str = "origin-test-secret-0123456789abcdef";

fn config() -> String {
    let app = |id: &str, origins: Option<&[&str]>| {
        let mut v =
            json!({"id": id, "key": format!("{id}-key"), "secret": SECRET, "enabled": true});
        if let Some(o) = origins {
            v["allowed_origins"] = json!(o);
        }
        v
    };
    json!({"app_manager": {"driver": "memory", "array": {"apps": [
        app("host", Some(&["example.com", "localhost:3000"])),
        app("exact", Some(&["https://secure.example.com", "http://insecure.example.com"])),
        app("wild", Some(&["*.example.com"])),
        app("hwild", Some(&["https://*.secure.com"])),
        app("star", Some(&["*"])),
        app("any", Some(&["any"])),
        app("open", None),
    ]}}})
    .to_string()
}

/// Connect to `key` with `origin` (None = no header); `true` when
/// connection_established arrives, `false` after checking the exact 4009
/// refusal frame and close 4009.
async fn try_origin(server: &Server, key: &str, origin: Option<&str>) -> bool {
    let url = server.ws_url(&format!("/app/{key}?protocol=7&client=js&version=8.4.0"));
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    let mut ws = Ws::try_open_with(&url, &headers, None)
        .await
        .unwrap_or_else(|e| panic!("upgrade refused for {key} {origin:?}: {e}"));
    let f = ws.recv().await;
    match f.event() {
        "pusher:connection_established" => {
            ws.assert_alive().await;
            true
        }
        "pusher:error" => {
            assert_eq!(
                f.json,
                json!({"event": "pusher:error", "data": {"code": 4009, "message": "Origin not allowed"}}),
                "refusal frame for {key} {origin:?}: {}",
                f.raw
            );
            ws.expect_close(4009).await;
            false
        }
        other => panic!("unexpected first frame {other}: {}", f.raw),
    }
}

async fn check_table(server: &Server, cases: &[(&str, Option<&str>, bool)]) {
    let mut wrong = Vec::new();
    for (key, origin, want) in cases {
        let got = try_origin(server, key, *origin).await;
        if got != *want {
            wrong.push(format!(
                "{key} origin {origin:?}: allowed={got}, expected {want}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "origin decisions wrong:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn every_pattern_form_accepts_and_refuses_real_origins() {
    let server = Server::start_with_config(&config(), &[]).await;
    let cases: &[(&str, Option<&str>, bool)] = &[
        // host[:port], any scheme
        ("host-key", Some("https://example.com"), true),
        ("host-key", Some("http://example.com"), true),
        ("host-key", Some("https://api.example.com"), false),
        ("host-key", Some("https://example.com:8443"), false),
        ("host-key", Some("https://example.com.evil.io"), false),
        ("host-key", Some("https://notexample.com"), false),
        ("host-key", Some("http://localhost:3000"), true),
        ("host-key", Some("https://localhost:3000"), true),
        ("host-key", Some("http://localhost:3001"), false),
        ("host-key", Some("http://localhost"), false),
        ("host-key", Some("null"), false),
        ("host-key", None, false),
        // scheme://host exact
        ("exact-key", Some("https://secure.example.com"), true),
        ("exact-key", Some("HTTPS://Secure.Example.COM"), true),
        ("exact-key", Some("http://secure.example.com"), false),
        ("exact-key", Some("https://secure.example.com:444"), false),
        ("exact-key", Some("https://a.secure.example.com"), false),
        ("exact-key", Some("http://insecure.example.com"), true),
        ("exact-key", Some("https://insecure.example.com"), false),
        ("exact-key", None, false),
        // *.domain: apex and subdomains, any scheme
        ("wild-key", Some("https://a.example.com"), true),
        ("wild-key", Some("http://a.b.example.com"), true),
        ("wild-key", Some("https://example.com"), true),
        ("wild-key", Some("https://badexample.com"), false),
        ("wild-key", Some("https://example.com.evil.io"), false),
        ("wild-key", Some("https://example.org"), false),
        ("wild-key", None, false),
        // https://*.domain: subdomains only, https only
        ("hwild-key", Some("https://a.secure.com"), true),
        ("hwild-key", Some("https://x.y.secure.com"), true),
        ("hwild-key", Some("http://a.secure.com"), false),
        ("hwild-key", Some("https://secure.com"), false),
        ("hwild-key", Some("https://evilsecure.com"), false),
        ("hwild-key", None, false),
        // * and any: everything, even no header
        ("star-key", Some("https://anything.io"), true),
        ("star-key", Some("null"), true),
        ("star-key", None, true),
        ("any-key", Some("http://whatever.test"), true),
        ("any-key", None, true),
        // no list: no check
        ("open-key", Some("https://evil.example"), true),
        ("open-key", None, true),
    ];
    check_table(&server, cases).await;
}

#[tokio::test]
async fn env_origin_list_from_the_guide_is_enforced_and_refusals_are_logged() {
    let server = Server::start_app(&[(
        "SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS",
        "https://app.example.com,https://*.staging.example.com,http://localhost:3000",
    )])
    .await;
    let key = APP_KEY;
    check_table(
        &server,
        &[
            (key, Some("https://app.example.com"), true),
            (key, Some("http://app.example.com"), false),
            (key, Some("https://pr-1.staging.example.com"), true),
            (key, Some("https://staging.example.com"), false),
            (key, Some("http://pr-1.staging.example.com"), false),
            (key, Some("http://localhost:3000"), true),
            (key, Some("https://localhost:3000"), false),
            (key, Some("https://evil.example"), false),
            (key, None, false),
        ],
    )
    .await;
    // the server still serves the allowed origin (that refusals hold no
    // quota slot is refusals_of_every_kind_never_hold_a_quota_slot's job),
    // and the refusal is a warn line with event/code/origin
    assert!(try_origin(&server, key, Some("https://app.example.com")).await);
    server
        .wait_for_logs("connection_refused warn line", ms(3000), |l| {
            l.lines().any(|line| {
                line.contains(" WARN ")
                    && text_field(line, "event") == Some("connection_refused")
                    && text_field(line, "code") == Some("4009")
                    && line.contains("origin=https://evil.example")
                    && text_field(line, "peer") == Some("127.0.0.1")
            })
        })
        .await;
    assert!(
        !server.logs().contains("allowed_origins contains \"*\""),
        "no wildcard warning without a wildcard"
    );
}

#[tokio::test]
async fn star_accepts_everything_with_a_startup_warning() {
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS", "*")]).await;
    check_table(
        &server,
        &[
            (APP_KEY, Some("https://evil.example"), true),
            (APP_KEY, None, true),
        ],
    )
    .await;
    server
        .wait_for_logs("wildcard origin warning", ms(2000), |l| {
            l.lines().any(|line| {
                line.contains("WARN") && line.contains("allowed_origins contains \"*\"")
            })
        })
        .await;

    // config-file app with "*" warns too
    let cfg = Server::start_with_config(&config(), &[]).await;
    cfg.wait_for_logs("wildcard origin warning (config)", ms(2000), |l| {
        l.contains("allowed_origins contains \"*\"")
    })
    .await;
}

#[tokio::test]
async fn origin_is_checked_after_the_app_key_and_before_the_quota() {
    // unknown key: 4001 even with a bad origin; full app: a bad origin is 4009
    let server = Server::start_app(&[
        (
            "SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS",
            "https://good.example",
        ),
        ("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "1"),
    ])
    .await;
    let url = server.ws_url("/app/nope?protocol=7");
    let mut ws = Ws::try_open_with(&url, &[("Origin", "https://evil.example")], None)
        .await
        .unwrap();
    ws.expect_error(4001).await;
    ws.expect_close(4001).await;

    let good = &[("Origin", "https://good.example")];
    let mut first = Ws::try_open_with(&server.app_ws_url(), good, None)
        .await
        .unwrap();
    first.read_established().await;
    // app full: the allowed origin gets 4004, the refused origin still 4009
    let mut second = Ws::try_open_with(&server.app_ws_url(), good, None)
        .await
        .unwrap();
    second.expect_error(4004).await;
    second.expect_close(4004).await;
    assert!(!try_origin(&server, APP_KEY, Some("https://evil.example")).await);
    first.assert_alive().await;
}

const GOOD_ORIGIN: &str = "https://good.example";

/// `quota`: 2 connections, one allowed origin; `off`: disabled.
fn quota_config() -> String {
    json!({"app_manager": {"driver": "memory", "array": {"apps": [
        {"id": "quota", "key": "quota-key", "secret": SECRET, "enabled": true,
         "max_connections": 2, "allowed_origins": [GOOD_ORIGIN]},
        {"id": "off", "key": "off-key", "secret": SECRET, "enabled": false},
    ]}}})
    .to_string()
}

/// Live connections of `app_id` as the server counts them (`GET /usage`).
async fn live(server: &Server, app_id: &str) -> u64 {
    let r = http_get(&format!("{}/usage", server.http_base())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["apps"][app_id]
        .as_u64()
        .unwrap_or_else(|| panic!("/usage without apps.{app_id}: {}", r.text))
}

/// Wait until the server counts `want` live connections for `app_id`.
async fn wait_live(server: &Server, app_id: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = live(server, app_id).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{app_id}: {got} live connections after 10 s, expected {want}"
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// Open `key` with `query` and `origin`; the socket stays open (its close
/// frame unread) so a slot it held, if any, would still be held.
async fn open(server: &Server, key: &str, query: &str, origin: &str) -> Ws {
    let url = server.ws_url(&format!("/app/{key}{query}"));
    Ws::try_open_with(&url, &[("Origin", origin)], None)
        .await
        .unwrap_or_else(|e| panic!("upgrade refused for {key}{query}: {e}"))
}

#[tokio::test]
async fn refusals_of_every_kind_never_hold_a_quota_slot() {
    let server = Server::start_with_config(&quota_config(), &[]).await;
    let ok = "?protocol=7&client=js&version=8.4.0";
    let kinds: [(&str, &str, &str, u16); 5] = [
        ("quota-key", ok, "https://evil.example", 4009),
        ("no-such-key", ok, GOOD_ORIGIN, 4001),
        ("off-key", ok, GOOD_ORIGIN, 4003),
        ("quota-key", "?protocol=99&client=js", GOOD_ORIGIN, 4007),
        ("quota-key", "?client=js&version=8.4.0", GOOD_ORIGIN, 4008),
    ];
    // Many refusals of each kind, 5 times the quota, kept open meanwhile.
    let mut refused: Vec<(Ws, u16)> = Vec::new();
    for _ in 0..10 {
        for (key, query, origin, code) in kinds {
            let mut ws = open(&server, key, query, origin).await;
            ws.expect_error(code.into()).await;
            refused.push((ws, code));
        }
    }
    assert_eq!(live(&server, "quota").await, 0, "refusals hold no slot");

    // The full quota is still there ...
    let mut a = open(&server, "quota-key", ok, GOOD_ORIGIN).await;
    a.read_established().await;
    let mut b = open(&server, "quota-key", ok, GOOD_ORIGIN).await;
    b.read_established().await;
    // ... and no more: over-quota refusals, which hold no slot either.
    for _ in 0..10 {
        let mut ws = open(&server, "quota-key", ok, GOOD_ORIGIN).await;
        ws.expect_error(4004).await;
        refused.push((ws, 4004));
    }
    assert_eq!(live(&server, "quota").await, 2);

    // Closing one gives its slot back (once the server has seen the
    // socket go: wait on its own count, not a sleep), and exactly one.
    a.close().await;
    wait_live(&server, "quota", 1).await;
    let mut c = open(&server, "quota-key", ok, GOOD_ORIGIN).await;
    c.read_established().await;
    let mut d = open(&server, "quota-key", ok, GOOD_ORIGIN).await;
    d.expect_error(4004).await;
    d.expect_close(4004).await;
    b.assert_alive().await;
    c.assert_alive().await;

    // every refused socket was a real refusal: its close carries its code
    for (mut ws, code) in refused {
        ws.expect_close(code).await;
    }
}
