//! User sign-in, `#server-to-user-{id}` channels, sendToUser through the HTTP
//! API, terminate_connections and the sign-in timeout.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const ADA: &str = r#"{"id":"42","name":"Ada"}"#;

#[tokio::test]
async fn signin_success_echoes_user_data_string() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let odd = r#"{ "id" : "42",  "user_info": {"name":"Ada"} }"#;
    let f = ws.signin(odd).await;
    assert_eq!(
        f.json,
        json!({"event": "pusher:signin_success", "data": {"user_data": odd}}),
        "{}",
        f.raw
    );
    // signin data given as a JSON string is accepted too
    let mut ws2 = server.connect().await;
    let auth = signin_auth(APP_KEY, APP_SECRET, &ws2.socket_id, ADA);
    let data = json!({"auth": auth, "user_data": ADA}).to_string();
    ws2.send_json(json!({"event": "pusher:signin", "data": data}))
        .await;
    let f = ws2.expect_event("pusher:signin_success").await;
    assert_eq!(f.json["data"]["user_data"], ADA);
}

#[tokio::test]
async fn bad_signin_is_4009_and_socket_stays_open() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let sid = ws.socket_id.clone();
    let other = server.connect().await;
    let no_id = r#"{"name":"Ada"}"#;
    let num_id = r#"{"id":42}"#;
    let empty_id = r#"{"id":""}"#;
    let cases = vec![
        (
            "bad signature",
            json!({"auth": format!("{APP_KEY}:{}", "0".repeat(64)), "user_data": ADA}),
        ),
        (
            "signed for another socket",
            json!({"auth": signin_auth(APP_KEY, APP_SECRET, &other.socket_id, ADA), "user_data": ADA}),
        ),
        (
            "wrong key",
            json!({"auth": signin_auth("other-key", APP_SECRET, &sid, ADA), "user_data": ADA}),
        ),
        (
            "user_data without id",
            json!({"auth": signin_auth(APP_KEY, APP_SECRET, &sid, no_id), "user_data": no_id}),
        ),
        (
            "numeric id",
            json!({"auth": signin_auth(APP_KEY, APP_SECRET, &sid, num_id), "user_data": num_id}),
        ),
        (
            "empty id",
            json!({"auth": signin_auth(APP_KEY, APP_SECRET, &sid, empty_id), "user_data": empty_id}),
        ),
        (
            "user_data not JSON",
            json!({"auth": signin_auth(APP_KEY, APP_SECRET, &sid, "x"), "user_data": "x"}),
        ),
    ];
    for (what, data) in cases {
        ws.send_json(json!({"event": "pusher:signin", "data": data}))
            .await;
        let f = ws.recv().await;
        assert_eq!(f.event(), "pusher:error", "{what}: {}", f.raw);
        assert_eq!(f.json["data"]["code"], 4009, "{what}: {}", f.raw);
        ws.assert_alive().await;
    }
    // a refused sign-in does not grant the user channel
    ws.send_subscribe(json!({"channel": "#server-to-user-42"}))
        .await;
    ws.expect_subscription_error("#server-to-user-42", "AuthError", 401)
        .await;
    // a correct sign-in still works afterwards
    ws.signin(ADA).await;
    ws.subscribe("#server-to-user-42").await;
}

#[tokio::test]
async fn server_to_user_channel_needs_matching_signin() {
    let server = Server::start_app(&[]).await;
    let mut anon = server.connect().await;
    anon.send_subscribe(json!({"channel": "#server-to-user-42"}))
        .await;
    anon.expect_subscription_error("#server-to-user-42", "AuthError", 401)
        .await;
    anon.assert_alive().await;

    let mut ws = server.connect().await;
    ws.signin(ADA).await;
    ws.send_subscribe(json!({"channel": "#server-to-user-7"}))
        .await;
    ws.expect_subscription_error("#server-to-user-7", "AuthError", 401)
        .await;
    let f = ws.subscribe("#server-to-user-42").await;
    assert_eq!(f.data_str(), "{}");
}

#[tokio::test]
async fn send_to_user_reaches_every_socket_of_that_user_only() {
    let server = Server::start_app(&[]).await;
    let ch = "#server-to-user-42";
    let mut s1 = server.connect().await;
    let mut s2 = server.connect().await;
    let mut bob = server.connect().await;
    for ws in [&mut s1, &mut s2] {
        ws.signin(ADA).await;
        ws.subscribe(ch).await;
    }
    bob.signin(r#"{"id":"7"}"#).await;
    bob.subscribe("#server-to-user-7").await;

    server
        .api()
        .publish(ch, "note", "{\"msg\": \"hi Ada\"}")
        .await;
    for ws in [&mut s1, &mut s2] {
        let f = ws.recv().await;
        assert_eq!(
            f.json,
            json!({"event": "note", "channel": ch, "data": "{\"msg\": \"hi Ada\"}"}),
            "{}",
            f.raw
        );
    }
    bob.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn terminate_connections_closes_every_socket_of_the_user_with_4009() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut s1 = server.connect().await;
    let mut s2 = server.connect().await;
    let mut bob = server.connect().await;
    let mut anon = server.connect().await;
    s1.signin(ADA).await;
    s2.signin(r#"{"id":"42"}"#).await;
    bob.signin(r#"{"id":"7"}"#).await;

    let r = api.post("/users/42/terminate_connections", "{}").await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    assert_eq!(r.json(), json!({}));
    for ws in [&mut s1, &mut s2] {
        ws.expect_error(4009).await;
        ws.expect_close(4009).await;
    }
    bob.assert_alive().await;
    anon.assert_alive().await;

    // terminating a user with no sockets is still 200 and harmless
    let r = api.post("/users/nobody/terminate_connections", "{}").await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    bob.assert_alive().await;
}

/// Sockudo's `force_reconnect`: the user's sockets get 4200 ("reconnect
/// immediately"), not 4009; others stay; it must be signed like any call.
#[tokio::test]
async fn force_reconnect_closes_every_socket_of_the_user_with_4200() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut s1 = server.connect().await;
    let mut s2 = server.connect().await;
    let mut bob = server.connect().await;
    s1.signin(ADA).await;
    s2.signin(r#"{"id":"42"}"#).await;
    bob.signin(r#"{"id":"7"}"#).await;

    let wrong_secret = Sign {
        secret: Some("not-the-secret".into()),
        ..Sign::default()
    };
    api.post_with("/users/42/force_reconnect", "{}", &wrong_secret)
        .await
        .assert_error(401, "auth_failed");
    s1.assert_alive().await;

    let r = api.post("/users/42/force_reconnect", "{}").await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    assert_eq!(r.json(), json!({}));
    for ws in [&mut s1, &mut s2] {
        let f = ws.expect_error(4200).await;
        assert_eq!(
            f.json["data"]["message"], "Reconnect requested by the application",
            "{}",
            f.raw
        );
        ws.expect_close(4200).await;
    }
    bob.assert_alive().await;
    let mut again = server.connect().await;
    again.signin(ADA).await;
    again.assert_alive().await;
}

#[tokio::test]
async fn terminated_user_can_reconnect() {
    let server = Server::start_app(&[]).await;
    let mut s1 = server.connect().await;
    s1.signin(ADA).await;
    server
        .api()
        .post("/users/42/terminate_connections", "{}")
        .await
        .assert_ok();
    s1.expect_error(4009).await;
    s1.expect_close(4009).await;
    let mut again = server.connect().await;
    again.signin(ADA).await;
    again.subscribe("#server-to-user-42").await;
    again.assert_alive().await;
}

#[tokio::test]
async fn unauthenticated_socket_is_closed_4009_after_signin_timeout() {
    let server = Server::start_app(&[
        ("SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION", "true"),
        ("USER_AUTHENTICATION_TIMEOUT", "1"),
    ])
    .await;
    let started = Instant::now();
    let mut lazy = server.connect().await;
    let mut good = server.connect().await;
    good.signin(ADA).await;
    lazy.subscribe("public-while-waiting").await; // allowed before the deadline

    let f = lazy.expect_error_within(4009, Duration::from_secs(4)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= ms(800),
        "closed after {elapsed:?}, before the 1 s timeout ({})",
        f.raw
    );
    lazy.expect_close(4009).await;

    // the signed-in socket survives well past the timeout
    tokio::time::sleep(ms(1200)).await;
    good.assert_alive().await;
}

#[tokio::test]
async fn without_required_signin_sockets_are_not_closed() {
    let server = Server::start_app(&[("USER_AUTHENTICATION_TIMEOUT", "1")]).await;
    let mut ws = server.connect().await;
    ws.expect_silence(ms(1800)).await;
    ws.assert_alive().await;
}
