//! CORS on the HTTP API (security guide "CORS Configuration"): real
//! preflights (OPTIONS + Origin + Access-Control-Request-Method/Headers)
//! allowed and refused, Access-Control-Allow-Origin on actual requests
//! present or absent, credentials, methods and headers lists, and the
//! start-up warning for `*` with credentials (which are then never sent).

mod common;

use common::security::*;
use common::*;
use serde_json::json;

const APP_ORIGIN: &str = "https://app.example.com";

async fn preflight(server: &Server, origin: &str, method: &str, headers: Option<&str>) -> RawResp {
    let mut h = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if let Some(list) = headers {
        h.push(("Access-Control-Request-Headers", list));
    }
    send(
        &http_client(None),
        "OPTIONS",
        &format!("{}/apps/{APP_ID}/events", server.http_base()),
        &h,
        b"",
    )
    .await
}

/// Signed publish with extra headers.
async fn publish_from(server: &Server, headers: &[(&str, &str)]) -> RawResp {
    let api = server.api();
    let body = json!({"name": "e", "channel": "cors", "data": "d"}).to_string();
    api.request_full(
        "POST",
        &api.path("/events"),
        &[],
        body.as_bytes(),
        &Sign::default(),
        headers,
    )
    .await
}

fn list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test]
async fn explicit_origins_allow_and_refuse_preflights_and_actual_requests() {
    let server =
        Server::start_app(&[("CORS_ORIGINS", "https://app.example.com,*.trusted.test")]).await;

    let ok = preflight(&server, APP_ORIGIN, "POST", Some("content-type")).await;
    assert_eq!(ok.status, 200, "allowed preflight: {ok:?}");
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert!(
        list(ok.header("access-control-allow-methods")).contains(&"post".to_string()),
        "{ok:?}"
    );
    assert!(
        list(ok.header("access-control-allow-headers")).contains(&"content-type".to_string()),
        "{ok:?}"
    );
    assert_eq!(
        ok.header("access-control-allow-credentials"),
        Some("true"),
        "explicit list, CORS_CREDENTIALS unset: credentials allowed"
    );
    let sub = preflight(&server, "http://a.trusted.test", "GET", None).await;
    assert_eq!(sub.status, 200, "{sub:?}");
    assert_eq!(
        sub.header("access-control-allow-origin"),
        Some("http://a.trusted.test")
    );

    for evil in [
        "https://evil.example",
        "http://app.example.com",
        "https://trusted.test.evil.io",
    ] {
        let no = preflight(&server, evil, "POST", Some("content-type")).await;
        assert_eq!(no.status, 400, "refused preflight from {evil}: {no:?}");
        assert_eq!(no.header("access-control-allow-origin"), None, "{no:?}");
        assert_eq!(
            no.header("access-control-allow-credentials"),
            None,
            "{no:?}"
        );
    }

    // actual requests
    let mut ws = server.connect().await;
    ws.subscribe("cors").await;
    let r = publish_from(&server, &[("Origin", APP_ORIGIN)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    ws.expect_channel_event("e", "cors").await;

    // (CORS is the browser's check: the signed request itself is served)
    let r = publish_from(&server, &[("Origin", "https://evil.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
    ws.expect_channel_event("e", "cors").await;

    // server-to-server calls carry no Origin: served, no CORS headers
    let r = publish_from(&server, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn methods_and_headers_lists_are_enforced_on_preflight() {
    let server = Server::start_app(&[
        ("CORS_ORIGINS", APP_ORIGIN),
        ("CORS_METHODS", "GET,POST"),
        ("CORS_HEADERS", "Content-Type,X-Requested-With"),
    ])
    .await;
    let ok = preflight(&server, APP_ORIGIN, "GET", Some("x-requested-with")).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let mut methods = list(ok.header("access-control-allow-methods"));
    methods.sort();
    assert_eq!(methods, ["get", "post"], "{ok:?}");
    let mut headers = list(ok.header("access-control-allow-headers"));
    headers.sort();
    assert_eq!(headers, ["content-type", "x-requested-with"], "{ok:?}");

    let bad_method = preflight(&server, APP_ORIGIN, "DELETE", None).await;
    assert_eq!(bad_method.status, 400, "DELETE not listed: {bad_method:?}");
    let bad_header = preflight(&server, APP_ORIGIN, "POST", Some("x-other")).await;
    assert_eq!(bad_header.status, 400, "X-Other not listed: {bad_header:?}");
}

#[tokio::test]
async fn default_any_origin_echoes_the_origin_without_credentials() {
    let server = Server::start_app(&[]).await;
    let r = preflight(
        &server,
        "https://anyone.example",
        "POST",
        Some("content-type"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://anyone.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), None, "{r:?}");
    let r = publish_from(&server, &[("Origin", "https://anyone.example")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://anyone.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), None);
}

#[tokio::test]
async fn credentials_setting_is_explicit_when_given() {
    let off =
        Server::start_app(&[("CORS_ORIGINS", APP_ORIGIN), ("CORS_CREDENTIALS", "false")]).await;
    let r = preflight(&off, APP_ORIGIN, "POST", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-credentials"), None, "{r:?}");
    let r = publish_from(&off, &[("Origin", APP_ORIGIN)]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert_eq!(r.header("access-control-allow-credentials"), None, "{r:?}");

    let on = Server::start_app(&[("CORS_ORIGINS", APP_ORIGIN), ("CORS_CREDENTIALS", "true")]).await;
    let r = preflight(&on, APP_ORIGIN, "POST", None).await;
    assert_eq!(
        r.header("access-control-allow-credentials"),
        Some("true"),
        "{r:?}"
    );
}

/// Issue 15 finding 3: Sockudo's own config (and its built-in default) sets
/// `credentials: true` with `origin: ["*"]`. It must start, as Sockudo does,
/// never sending credentials for a wildcard, and say so loudly.
#[tokio::test]
async fn wildcard_with_credentials_starts_without_credentials() {
    for env in [
        vec![("CORS_ORIGINS", "*"), ("CORS_CREDENTIALS", "true")],
        vec![("CORS_CREDENTIALS", "true")],
    ] {
        let server = Server::start_app(&env).await;
        let r = preflight(&server, "https://anyone.example", "POST", None).await;
        assert_eq!(r.status, 200, "{env:?}: {r:?}");
        assert_eq!(
            r.header("access-control-allow-credentials"),
            None,
            "{env:?}: {r:?}"
        );
        let r = publish_from(&server, &[("Origin", "https://anyone.example")]).await;
        assert_eq!(r.header("access-control-allow-credentials"), None, "{r:?}");
        let logs = server.logs();
        assert!(
            logs.contains("WARN") && logs.contains("CORS_CREDENTIALS"),
            "{env:?}: {logs}"
        );
    }
}

#[tokio::test]
async fn cors_is_only_on_the_api_and_survives_rate_limiting() {
    let server = Server::start_app(&[
        ("CORS_ORIGINS", APP_ORIGIN),
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ])
    .await;
    // not the API: no CORS headers
    let client = http_client(None);
    let up = send(
        &client,
        "GET",
        &format!("{}/up", server.http_base()),
        &[("Origin", APP_ORIGIN)],
        b"",
    )
    .await;
    assert_eq!(up.status, 200);
    assert_eq!(up.header("access-control-allow-origin"), None, "{up:?}");

    // preflights are answered before the limiter and do not spend its budget
    for _ in 0..3 {
        let p = preflight(&server, APP_ORIGIN, "POST", Some("content-type")).await;
        assert_eq!(p.status, 200, "{p:?}");
    }
    let first = publish_from(&server, &[("Origin", APP_ORIGIN)]).await;
    assert_eq!(first.status, 200, "{first:?}");
    // the refusal still carries CORS headers so a browser can read it
    let refused = publish_from(&server, &[("Origin", APP_ORIGIN)]).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
}
