//! The session's decisions, on real sessions over in-memory sockets and a
//! real registry (see [`crate::testing`]): what a client may subscribe to,
//! send and sign in as, what a malformed frame costs it, and the connection
//! slots a session holds.

use crate::app::{App, Capacity};
use crate::error::PusherError;
use crate::hub::{Hubs, Timing};
use crate::session::SessionSettings;
use crate::socket::ToSession;
use crate::stats::{AuthFailure, RateLimit};
use crate::testing::*;
use actix_http::ws::OpCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn client_events_app() -> App {
    let mut app = test_app();
    app.enable_client_messages = true;
    app
}

fn with_settings(app: App, settings: SessionSettings) -> Server {
    Server::with(app, settings, 2, Duration::from_secs(60))
}

/// `pusher:subscribe` with exactly these fields.
fn subscribe_with(
    socket: &mut TestSocket,
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
) {
    let mut data = json!({ "channel": channel });
    if let Some(auth) = auth {
        data["auth"] = auth.into();
    }
    if let Some(channel_data) = channel_data {
        data["channel_data"] = channel_data.into();
    }
    socket.send_json(json!({"event": "pusher:subscribe", "data": data}));
}

// ---- subscribe / unsubscribe ----

#[actix::test]
async fn public_channels_need_no_auth_and_deliver_published_events() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    assert!(!server.worth_publishing("orders"));

    let ok = a.join("orders").await;
    assert_eq!(ok.data(), json!({}));
    assert!(server.worth_publishing("orders"));

    server
        .publish("orders", "order-shipped", r#"{"id":7}"#)
        .await;
    let event = a.expect_channel_event("order-shipped", "orders").await;
    assert_eq!(
        event.raw,
        r#"{"event":"order-shipped","channel":"orders","data":"{\"id\":7}"}"#
    );
    a.expect_silence().await;
}

#[actix::test]
async fn private_channels_need_a_signature_for_this_socket_and_channel() {
    let server = Server::start(test_app());
    let channel = "private-orders";
    let mut a = server.connect().await;
    // A subscriber that shows the events below were published.
    let mut witness = server.connect().await;
    witness.join_signed(channel).await;

    let valid = channel_auth(&a.socket_id, channel, None);
    let signature = valid.split_once(':').unwrap().1.to_string();
    let refused = [
        None,
        Some(channel_auth("1.1", channel, None)),
        Some(channel_auth(&a.socket_id, "private-other", None)),
        Some(format!("other-key:{signature}")),
        Some(format!("{KEY}:{}", "0".repeat(64))),
        Some(format!("{KEY}:not-hex")),
        Some(signature.clone()),
    ];
    for auth in &refused {
        subscribe_with(&mut a, channel, auth.as_deref(), None);
        a.expect_subscription_error(channel, "AuthError").await;
    }
    assert_eq!(
        server.app.stats.auth_failures(AuthFailure::Channel),
        refused.len() as u64
    );

    // None of them subscribed the socket.
    a.settle().await;
    server.publish(channel, "e", "1").await;
    witness.expect_channel_event("e", channel).await;
    a.expect_silence().await;

    // The right signature does.
    subscribe_with(&mut a, channel, Some(&valid), None);
    a.expect_channel_event("pusher_internal:subscription_succeeded", channel)
        .await;
    server.publish(channel, "e", "2").await;
    a.expect_channel_event("e", channel).await;
}

#[actix::test]
async fn encrypted_channels_need_a_signature_too() {
    let server = Server::start(test_app());
    let channel = "private-encrypted-chat";
    let mut a = server.connect().await;
    a.subscribe(channel);
    a.expect_subscription_error(channel, "AuthError").await;
    a.join_signed(channel).await;
}

#[actix::test]
async fn presence_channels_need_signed_channel_data_with_a_user_id() {
    let mut app = test_app();
    app.limits.max_presence_member_size_bytes = 200;
    let server = Server::start(app);
    let channel = "presence-room";
    let mut a = server.connect().await;
    let id = a.socket_id.clone();

    // A signature without channel_data.
    subscribe_with(
        &mut a,
        channel,
        Some(&channel_auth(&id, channel, None)),
        None,
    );
    a.expect_subscription_error(channel, "AuthError").await;

    // channel_data other than what was signed.
    let signed = r#"{"user_id":"1"}"#;
    let auth = channel_auth(&id, channel, Some(signed));
    subscribe_with(&mut a, channel, Some(&auth), Some(r#"{"user_id":"2"}"#));
    a.expect_subscription_error(channel, "AuthError").await;

    // Signed, but no usable user_id.
    for data in [
        r#"{"user_info":{"name":"Ada"}}"#,
        r#"{"user_id":""}"#,
        r#"{"user_id":true}"#,
        r#"{"user_id":null}"#,
        r#"["1"]"#,
        "not json",
    ] {
        a.subscribe_presence_data(channel, data);
        a.expect_subscription_error(channel, "AuthError").await;
    }

    // Signed, but over the limits.
    let long_id = json!({ "user_id": "u".repeat(129) }).to_string();
    a.subscribe_presence_data(channel, &long_id);
    a.expect_subscription_error(channel, "LimitReached").await;
    let big = json!({"user_id": "1", "user_info": {"bio": "x".repeat(200)}}).to_string();
    a.subscribe_presence_data(channel, &big);
    a.expect_subscription_error(channel, "LimitReached").await;

    a.settle().await;
    assert!(server.presence_users(channel).await.is_empty());
    assert!(!server.worth_publishing(channel));

    // A numeric user_id is accepted and becomes a string.
    a.subscribe_presence_data(channel, r#"{"user_id":42,"user_info":{"name":"Ada"}}"#);
    let ok = a
        .expect_channel_event("pusher_internal:subscription_succeeded", channel)
        .await;
    assert_eq!(ok.data()["presence"]["ids"], json!(["42"]));
    assert_eq!(
        ok.data()["presence"]["hash"],
        json!({"42": {"name": "Ada"}})
    );
    assert_eq!(server.presence_users(channel).await, ["42"]);
}

#[actix::test]
async fn invalid_channel_names_are_refused_as_invalid_channel() {
    let mut app = test_app();
    app.limits.max_channel_name_length = 20;
    let server = Server::start(app);
    let mut a = server.connect().await;

    let too_long = "a".repeat(21);
    for name in [
        "has space",
        "",
        "#other",
        "#server-to-user-",
        "caf\u{e9}",
        "a/b",
        too_long.as_str(),
    ] {
        a.subscribe(name);
        a.expect_subscription_error(name, "InvalidChannel").await;
    }
    a.settle().await;
    assert!(server.list_channels(None).await.is_empty());

    // The socket stays usable, and a name of exactly the limit is accepted.
    let at_limit = "a".repeat(20);
    a.join(&at_limit).await;
    a.join("a-b_c=d@e,f.g;h").await;
}

#[actix::test]
async fn a_connection_may_hold_at_most_max_channels() {
    let settings = SessionSettings {
        max_channels: 2,
        ..SessionSettings::default()
    };
    let server = with_settings(test_app(), settings);
    let mut a = server.connect().await;
    a.join("one").await;
    a.join("two").await;

    a.subscribe("three");
    let error = a.expect_subscription_error("three", "LimitReached").await;
    assert!(error.contains("at most 2"), "{error}");
    a.settle().await;
    assert!(!server.worth_publishing("three"));

    // Subscribing again to a channel it holds is not a new channel.
    a.join("one").await;

    // Leaving one makes room.
    a.unsubscribe("one");
    a.join("three").await;

    // The cap is per connection, not per app.
    let mut b = server.connect().await;
    b.join("one").await;
    b.join("two").await;
}

#[actix::test]
async fn a_presence_subscription_refused_by_the_registry_is_forgotten() {
    // The session records a subscription before the shard confirms it; when
    // the shard refuses it (channel full) the session must drop it again.
    let mut app = client_events_app();
    app.limits.max_presence_members_per_channel = 1;
    let settings = SessionSettings {
        max_channels: 1,
        ..SessionSettings::default()
    };
    let server = with_settings(app, settings);
    let mut x = server.connect().await;
    x.join_presence("presence-room", "1", json!({})).await;

    let mut y = server.connect().await;
    y.subscribe_presence("presence-room", "2", json!({}));
    y.expect_subscription_error("presence-room", "LimitReached")
        .await;
    assert!(y.settle().await.is_empty());

    // Not subscribed as far as the session knows: no client events...
    y.client_event("presence-room", "client-hi", json!({}));
    let error = y.expect_error(4301).await;
    assert!(error.contains("not subscribed"), "{error}");
    // ...and its only channel slot is free again.
    y.join("orders").await;
    x.expect_silence().await;
}

#[actix::test]
async fn unsubscribing_stops_delivery() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join("orders").await;
    b.join("orders").await;

    server.publish("orders", "first", "1").await;
    a.expect_channel_event("first", "orders").await;
    b.expect_channel_event("first", "orders").await;

    a.unsubscribe("orders");
    // Unsubscribing has no reply.
    assert!(a.settle().await.is_empty());
    server.publish("orders", "second", "2").await;
    b.expect_channel_event("second", "orders").await;
    a.expect_silence().await;

    // And can be undone.
    a.join("orders").await;
    server.publish("orders", "third", "3").await;
    a.expect_channel_event("third", "orders").await;
    b.expect_channel_event("third", "orders").await;
}

#[actix::test]
async fn unsubscribing_a_channel_not_subscribed_is_silent() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    a.join("orders").await;

    a.unsubscribe("never-joined");
    a.unsubscribe("not a valid name");
    a.expect_silence().await;

    server.publish("orders", "e", "1").await;
    a.expect_channel_event("e", "orders").await;
}

// ---- client events ----

#[actix::test]
async fn client_events_are_refused_when_the_app_disables_them() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join_signed("private-chat").await;
    b.join_signed("private-chat").await;

    a.client_event("private-chat", "client-typing", json!({}));
    let error = a.expect_error(4301).await;
    assert!(error.contains("not enabled"), "{error}");
    // Refused, not fatal.
    a.expect_silence().await;
    b.expect_silence().await;
}

#[actix::test]
async fn client_events_need_a_private_or_presence_channel_the_sender_is_in() {
    let mut app = client_events_app();
    app.limits.max_event_payload_bytes = 64;
    let server = Server::start(app);
    let mut a = server.connect().await;
    // B is in every channel A tries, so any leak would reach it.
    let mut b = server.connect().await;
    b.join("orders").await;
    b.join_signed("private-encrypted-chat").await;
    b.join_signed("private-chat").await;

    a.join("orders").await;
    a.client_event("orders", "client-x", json!({}));
    let error = a.expect_error(4301).await;
    assert!(error.contains("only allowed"), "{error}");

    a.join_signed("private-encrypted-chat").await;
    a.client_event("private-encrypted-chat", "client-x", json!({}));
    let error = a.expect_error(4301).await;
    assert!(error.contains("only allowed"), "{error}");

    a.client_event("private-chat", "client-x", json!({}));
    let error = a.expect_error(4301).await;
    assert!(error.contains("not subscribed"), "{error}");

    a.send_json(json!({"event": "client-x", "data": {}}));
    let error = a.expect_error(4301).await;
    assert!(error.contains("need a channel"), "{error}");

    a.join_signed("private-chat").await;
    let long_name = format!("client-{}", "x".repeat(200));
    a.client_event("private-chat", &long_name, json!({}));
    let error = a.expect_error(4301).await;
    assert!(error.contains("name is too long"), "{error}");
    a.client_event("private-chat", "client-x", json!({"text": "x".repeat(64)}));
    let error = a.expect_error(4301).await;
    assert!(error.contains("too large"), "{error}");

    a.expect_silence().await;
    b.expect_silence().await;

    // The same socket, subscribed, within the limits: delivered.
    a.client_event("private-chat", "client-x", json!({"ok": true}));
    let event = b.expect_channel_event("client-x", "private-chat").await;
    assert_eq!(event.data(), json!({"ok": true}));
}

#[actix::test]
async fn client_events_reach_the_other_subscribers_but_not_the_sender() {
    let server = Server::start(client_events_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    let mut elsewhere = server.connect().await;
    a.join_signed("private-chat").await;
    b.join_signed("private-chat").await;
    c.join_signed("private-chat").await;
    elsewhere.join_signed("private-other").await;

    // `data` is relayed byte for byte, whatever its JSON type.
    let sent = r#"{"event":"client-typing","channel":"private-chat","data":{"text": "hi"}}"#;
    a.send_text(sent);
    for socket in [&mut b, &mut c] {
        let event = socket
            .expect_channel_event("client-typing", "private-chat")
            .await;
        assert_eq!(event.raw, sent);
        assert!(event.json.get("user_id").is_none());
    }
    a.expect_silence().await;
    b.expect_silence().await;
    elsewhere.expect_silence().await;
}

#[actix::test]
async fn presence_client_events_carry_the_senders_user_id() {
    let server = Server::start(client_events_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join_presence("presence-room", "1", json!({"name": "Ada"}))
        .await;
    b.join_presence("presence-room", "2", json!({"name": "Bob"}))
        .await;
    a.expect_channel_event("pusher_internal:member_added", "presence-room")
        .await;

    a.client_event("presence-room", "client-wave", json!("hello"));
    let event = b.expect_channel_event("client-wave", "presence-room").await;
    assert_eq!(event.json["user_id"], "1");
    assert_eq!(event.json["data"], "hello");

    b.client_event("presence-room", "client-wave", json!(null));
    let event = a.expect_channel_event("client-wave", "presence-room").await;
    assert_eq!(event.json["user_id"], "2");
    a.expect_silence().await;
    b.expect_silence().await;
}

#[actix::test]
async fn client_events_over_the_rate_limit_are_dropped() {
    let mut app = client_events_app();
    app.limits.max_client_events_per_second = 2;
    // A window no test outlives: the count cannot reset mid-test.
    app.limits.client_event_window_secs = 3600;
    let server = Server::start(app);
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join_signed("private-chat").await;
    b.join_signed("private-chat").await;

    for n in 0..3 {
        a.client_event("private-chat", "client-n", json!(n));
    }
    let error = a.expect_error(4301).await;
    assert!(error.contains("rate limit"), "{error}");
    a.expect_silence().await;
    for n in 0..2 {
        let event = b.expect_channel_event("client-n", "private-chat").await;
        assert_eq!(event.data(), json!(n));
    }
    b.expect_silence().await;
    assert_eq!(server.app.stats.rate_limits(RateLimit::ClientEvent), 1);
    assert_eq!(server.app.connection_count(), 2);
}

#[actix::test]
async fn client_event_rate_limit_may_close_the_socket() {
    let mut app = client_events_app();
    app.limits.max_client_events_per_second = 1;
    app.limits.client_event_window_secs = 3600;
    app.limits.terminate_on_limit = true;
    let server = Server::start(app);
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join_signed("private-chat").await;
    b.join_signed("private-chat").await;

    a.client_event("private-chat", "client-n", json!(1));
    a.client_event("private-chat", "client-n", json!(2));
    a.expect_error(4301).await;
    a.expect_close(4301).await;
    b.expect_channel_event("client-n", "private-chat").await;
    b.expect_silence().await;
    // The closed socket's slot is free again.
    assert_eq!(server.app.connection_count(), 1);
}

// ---- sign-in ----

#[actix::test]
async fn signin_with_a_valid_signature_opens_the_users_own_channel() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;

    a.subscribe("#server-to-user-42");
    a.expect_subscription_error("#server-to-user-42", "AuthError")
        .await;

    let user_data = r#"{"id":"42","name":"Ada"}"#;
    a.signin(user_data);
    let ok = a.expect_event("pusher:signin_success").await;
    assert_eq!(ok.data()["user_data"], user_data);

    a.join("#server-to-user-42").await;
    a.subscribe("#server-to-user-7");
    a.expect_subscription_error("#server-to-user-7", "AuthError")
        .await;

    server.publish("#server-to-user-42", "notice", "{}").await;
    a.expect_channel_event("notice", "#server-to-user-42").await;
}

#[actix::test]
async fn signin_with_a_bad_signature_is_refused_but_the_socket_stays_open() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let user_data = r#"{"id":"42"}"#;

    for auth in [
        signin_auth("1.1", user_data),
        signin_auth(&a.socket_id, r#"{"id":"43"}"#),
        format!("{KEY}:{}", "0".repeat(64)),
    ] {
        a.send_json(json!({
            "event": "pusher:signin",
            "data": {"auth": auth, "user_data": user_data},
        }));
        a.expect_error(4009).await;
    }
    assert_eq!(server.app.stats.auth_failures(AuthFailure::Signin), 3);
    a.expect_silence().await;

    // Not signed in...
    a.subscribe("#server-to-user-42");
    a.expect_subscription_error("#server-to-user-42", "AuthError")
        .await;
    // ...until it retries with a valid signature.
    a.signin(user_data);
    a.expect_event("pusher:signin_success").await;
    a.join("#server-to-user-42").await;
}

#[actix::test]
async fn signin_needs_user_data_with_an_id() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;

    for user_data in [r#"{"name":"Ada"}"#, r#"{"id":""}"#, r#"{"id":null}"#] {
        a.signin(user_data);
        let error = a.expect_error(4009).await;
        assert!(error.contains("'id'"), "{user_data}: {error}");
    }
    a.signin("not json");
    let error = a.expect_error(4009).await;
    assert!(error.contains("Invalid user_data"), "{error}");
    a.expect_silence().await;

    a.subscribe("#server-to-user-42");
    a.expect_subscription_error("#server-to-user-42", "AuthError")
        .await;
}

// ---- malformed frames ----

#[actix::test]
async fn malformed_frames_get_4300_and_the_socket_stays_usable() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;

    for text in [
        "not json",
        "[1,2]",
        r#""a string""#,
        r#"{"data":{}}"#,
        r#"{"event":7}"#,
        r#"{"event":"pusher:subscribe"}"#,
        // An array would fill the payload's fields by position.
        r#"{"event":"pusher:subscribe","data":["orders"]}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":7}}"#,
        r#"{"event":"pusher:unsubscribe","data":"orders"}"#,
        r#"{"event":"pusher:signin","data":{"auth":"app-key:00"}}"#,
        r#"{"event":"pusher:no-such-event","data":{}}"#,
        r#"{"event":"order-shipped","channel":"orders","data":{}}"#,
    ] {
        a.send_text(text);
        a.expect_error(4300).await;
    }
    a.send_frame(OpCode::Binary, b"\x00\x01");
    a.expect_error(4300).await;
    a.expect_silence().await;
    assert!(server.list_channels(None).await.is_empty());

    // Still open and working.
    a.join("orders").await;
    server.publish("orders", "e", "1").await;
    a.expect_channel_event("e", "orders").await;
}

#[actix::test]
async fn fragmented_messages_are_reassembled() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let frame = json!({"event": "pusher:subscribe", "data": {"channel": "orders"}}).to_string();
    let (first, rest) = frame.split_at(10);
    let (middle, last) = rest.split_at(10);
    for (op, fin, part) in [
        (OpCode::Text, false, first),
        (OpCode::Continue, false, middle),
        (OpCode::Continue, true, last),
    ] {
        let mut buf = bytes::BytesMut::new();
        actix_http::ws::Parser::write_message(&mut buf, part, op, fin, true);
        a.send_raw(buf.freeze());
    }
    a.expect_channel_event("pusher_internal:subscription_succeeded", "orders")
        .await;
}

// ---- the hub's deadlines and shutdown ----

/// Settings whose hub acts within a fraction of a second.
fn fast_hub(activity: Duration, signin: Duration) -> SessionSettings {
    SessionSettings {
        hubs: Hubs::new(Timing {
            activity_timeout: activity,
            pong_timeout: activity,
            signin_timeout: signin,
        }),
        ..SessionSettings::default()
    }
}

#[actix::test]
async fn a_silent_socket_is_pinged_then_closed_4201() {
    let ms = Duration::from_millis;
    let server = with_settings(test_app(), fast_hub(ms(300), Duration::from_secs(3600)));
    let mut a = server.connect().await;
    a.expect_event("pusher:ping").await;
    // Answering keeps it open; the next silence is pinged again.
    a.send_json(json!({"event": "pusher:pong", "data": {}}));
    a.expect_event("pusher:ping").await;
    a.expect_error(4201).await;
    a.expect_close(4201).await;
}

#[actix::test]
async fn an_app_that_requires_signin_closes_sockets_that_do_not_4009() {
    let mut app = test_app();
    app.enable_user_authentication = true;
    let ms = Duration::from_millis;
    let server = with_settings(app, fast_hub(ms(1500), ms(400)));
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    b.signin(r#"{"id":"42"}"#);
    b.expect_event("pusher:signin_success").await;

    let error = a.expect_error(4009).await;
    assert!(error.contains("not authorized within timeout"), "{error}");
    a.expect_close(4009).await;
    // The signed-in socket outlives the deadline: the hub's next word to it
    // is the ping for its silence.
    b.expect_event("pusher:ping").await;
}

#[actix::test]
async fn shutdown_tells_every_session_to_reconnect_4200() {
    let server = Server::start(test_app());
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    server.settings.hubs.shutdown();
    for socket in [&mut a, &mut b] {
        socket.expect_error(4200).await;
        socket.expect_close(4200).await;
    }
    // A session that starts afterwards is closed at once.
    let mut late = server.connect().await;
    late.expect_error(4200).await;
    late.expect_close(4200).await;
}

// ---- outbox ----

#[actix::test]
async fn a_frame_larger_than_the_outbox_closes_an_idle_socket_with_4100() {
    let settings = SessionSettings {
        outbox_max_bytes: Some(100),
        ..SessionSettings::default()
    };
    let server = with_settings(test_app(), settings);
    let mut a = server.connect().await;
    a.join("orders").await;
    server.publish("orders", "small", "1").await;
    a.expect_channel_event("small", "orders").await;

    // Nothing is queued, so no delivery will wake the session: the
    // overflow notice alone must close it.
    server.publish("orders", "big", &"x".repeat(100)).await;
    a.expect_error(4100).await;
    a.expect_close(4100).await;
    assert_eq!(server.app.connection_count(), 0);
}

// ---- connection counting ----

#[actix::test]
async fn live_sessions_hold_the_apps_connection_quota() {
    let mut app = test_app();
    app.limits.max_connections = 2;
    let server = Server::start(app);
    let a = server.connect().await;
    let mut b = server.connect().await;
    assert_eq!(server.app.connection_count(), 2);
    assert!(server.app.try_connect().is_none(), "over the quota");

    // A client close releases its slot.
    a.close().await;
    assert_eq!(server.app.connection_count(), 1);
    let c = server.connect().await;
    assert!(server.app.try_connect().is_none());

    // So does a socket the server closes, and a connection that drops
    // without a close frame.
    b.addr
        .do_send(ToSession::Disconnect(PusherError::ReconnectImmediately));
    b.expect_error(4200).await;
    b.expect_close(4200).await;
    assert_eq!(server.app.connection_count(), 1);
    c.vanish().await;
    assert_eq!(server.app.connection_count(), 0);
}

#[actix::test]
async fn sessions_release_the_servers_capacity_when_they_stop() {
    let server = Server::start(test_app());
    let capacity = Arc::new(Capacity::default());
    let slots = |app: &App| {
        vec![
            app.try_connect().expect("app slot"),
            capacity.try_acquire(1).expect("server slot"),
        ]
    };
    let a = TestSocket::start(
        server.app.clone(),
        slots(&server.app),
        server.settings.clone(),
        &server.registry,
    )
    .await;
    assert_eq!(capacity.count(), 1);
    assert!(capacity.try_acquire(1).is_none(), "server is full");

    a.close().await;
    assert_eq!(capacity.count(), 0);
    assert_eq!(server.app.connection_count(), 0);
    let mut b = TestSocket::start(
        server.app.clone(),
        slots(&server.app),
        server.settings.clone(),
        &server.registry,
    )
    .await;
    b.join("orders").await;
    b.vanish().await;
    assert_eq!(capacity.count(), 0);
}
