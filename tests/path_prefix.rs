//! `path_prefix` / `PATH_PREFIX`: the WebSocket endpoint and the HTTP API
//! are served under the prefix and only there; the health endpoints stay at
//! the root (a WebSocket elsewhere gets 4005, a request 404). An API request verifies whether its signature covers the full
//! path (as sent) or the path without the prefix (what pusher-http-php signs
//! when the prefix is its `path` option, part of the base URL only).

mod common;

use common::*;
use serde_json::json;

const PREFIX: &str = "/ws-prefix";

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = app_env();
    env.push(("PATH_PREFIX", PREFIX));
    env
}

/// The harness's signed client for the test app with `base` in front of
/// every path it signs or sends.
fn api_at(server: &Server, base: String) -> Api {
    let mut api = server.api();
    api.base = base;
    api
}

#[tokio::test]
async fn websocket_and_signed_api_calls_are_served_under_the_prefix() {
    let server = Server::start_app(&env()).await;
    let mut ws = server
        .connect_raw(&format!(
            "{PREFIX}/app/{APP_KEY}?protocol=7&client=rust&version=1.0"
        ))
        .await;
    ws.read_established().await;
    ws.subscribe("prefixed").await;

    // A client that signs the full path, prefix included.
    let full = server.api();
    let body = json!({"name": "full", "channel": "prefixed", "data": "1"}).to_string();
    let path = format!("{PREFIX}/apps/{APP_ID}/events");
    let r = full
        .request("POST", &path, &[], body.as_bytes(), &Sign::default())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({}));
    ws.expect_channel_event("full", "prefixed").await;
    let path = format!("{PREFIX}/apps/{APP_ID}/channels");
    let r = full.request("GET", &path, &[], b"", &Sign::default()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["channels"].get("prefixed").is_some(), "{}", r.text);

    // A client whose prefix is part of its base URL and signs `/apps/…`.
    let base = api_at(&server, format!("{}{PREFIX}", server.http_base()));
    base.publish("prefixed", "base", "2").await;
    ws.expect_channel_event("base", "prefixed").await;
    base.channel_info("prefixed", "subscription_count").await;

    // Any other signed path is refused, and so is a wrong secret.
    let elsewhere = full.signed_url(
        "POST",
        &format!("/elsewhere/apps/{APP_ID}/events"),
        &[],
        body.as_bytes(),
        &Sign::default(),
    );
    let sent = elsewhere.replacen("/elsewhere/", &format!("{PREFIX}/"), 1);
    let r = reqwest::Client::new()
        .post(&sent)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let wrong = Sign {
        secret: Some("not-the-secret".into()),
        ..Sign::default()
    };
    let r = base.post_with("/events", &body, &wrong).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

#[tokio::test]
async fn without_the_prefix_there_is_nothing_and_health_stays_at_the_root() {
    let server = Server::start_app(&env()).await;
    // The unprefixed WebSocket endpoint does not exist: a WebSocket there
    // gets what any unknown path gets, the protocol's 4005 and a close.
    let mut ws = server
        .connect_raw(&format!(
            "/app/{APP_KEY}?protocol=7&client=rust&version=1.0"
        ))
        .await;
    ws.expect_error(4005).await;
    ws.expect_close(4005).await;
    // A plain GET there is a 404.
    let r = http_get(&format!("{}/app/{APP_KEY}", server.http_base())).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // Nor does the unprefixed API, however well signed.
    let r = server.api().get("/channels", &[]).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = server
        .api()
        .post(
            "/events",
            &json!({"name": "e", "channel": "c", "data": "1"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Health endpoints answer at the root only.
    for path in ["/", "/up", &format!("/up/{APP_ID}"), "/live", "/usage"] {
        let r = http_get(&format!("{}{path}", server.http_base())).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let r = http_get(&format!("{}{PREFIX}{path}", server.http_base())).await;
        assert_eq!(r.status, 404, "{PREFIX}{path}: {}", r.text);
    }
    // `switchyard --health` probes the root too.
    let env = env();
    let out = server.run_alongside(&env, &["--health"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.logs().contains("path_prefix=/ws-prefix"));
}

#[tokio::test]
async fn sockudos_default_slash_is_no_prefix() {
    let config = r#"{"path_prefix": "/"}"#;
    let server = Server::start_with_config(config, &app_env()).await;
    server.connect().await.assert_alive().await;
    server.api().publish("root", "e", "1").await;
}

#[tokio::test]
async fn a_malformed_prefix_stops_start_up_naming_the_key() {
    for (env, config) in [
        (vec![("PATH_PREFIX", "ws")], None),
        (vec![("PATH_PREFIX", "/ws/")], None),
        (vec![("PATH_PREFIX", "/w s")], None),
        (vec![], Some(r#"{"path_prefix": "/a//b"}"#)),
    ] {
        let f = Server::start_expect_failure(&env, config, &[]).await;
        assert!(!f.status.success(), "{env:?} {config:?}\n{}", f.output);
        assert!(
            f.output.contains("path_prefix (PATH_PREFIX)"),
            "{env:?} {config:?}\n{}",
            f.output
        );
    }
}
