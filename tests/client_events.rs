//! Client events: delivery to other subscribers only, raw `data` relay,
//! `user_id` on presence, and every 4301 refusal (socket stays open).

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// Two sockets subscribed to a private channel.
async fn pair(server: &Server, ch: &str) -> (Ws, Ws) {
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe_private(ch).await;
    b.subscribe_private(ch).await;
    (a, b)
}

#[tokio::test]
async fn client_event_reaches_others_not_the_sender_with_raw_data() {
    let server = Server::start_app(&[]).await;
    let ch = "private-chat";
    let (mut a, mut b) = pair(&server, ch).await;
    let mut c = server.connect().await;
    c.subscribe_private(ch).await;
    // odd spacing, key order and number forms must survive byte for byte
    let raw = r#"{"event":"client-typing","channel":"private-chat","data":{"z": 1.50, "a" :[true,null],"s":"\u00e9\n"}}"#;
    a.send_text(raw).await;
    for ws in [&mut b, &mut c] {
        let f = ws.expect_channel_event("client-typing", ch).await;
        assert!(
            f.raw
                .contains(r#"{"z": 1.50, "a" :[true,null],"s":"\u00e9\n"}"#),
            "data not relayed byte for byte: {}",
            f.raw
        );
        assert!(
            f.json.get("user_id").is_none(),
            "no user_id on private channels: {}",
            f.raw
        );
    }
    a.expect_silence(SILENCE).await; // never echoed
}

#[tokio::test]
async fn client_event_with_string_data_is_relayed_as_sent() {
    let server = Server::start_app(&[]).await;
    let ch = "private-str";
    let (mut a, mut b) = pair(&server, ch).await;
    a.send_text(r#"{"event":"client-s","channel":"private-str","data":"{\"k\":  1}"}"#)
        .await;
    let f = b.expect_channel_event("client-s", ch).await;
    assert_eq!(f.data_str(), "{\"k\":  1}");
}

#[tokio::test]
async fn presence_client_event_carries_sender_user_id() {
    let server = Server::start_app(&[]).await;
    let ch = "presence-chat";
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe_presence(ch, "42", json!({})).await;
    b.subscribe_presence(ch, "7", json!({})).await;
    a.expect_channel_event("pusher_internal:member_added", ch)
        .await;
    a.client_event(ch, "client-hi", json!({"m": "hello"})).await;
    let f = b.expect_channel_event("client-hi", ch).await;
    assert_eq!(f.json["user_id"], "42", "{}", f.raw);
    assert_eq!(f.json["data"], json!({"m": "hello"}));
    b.client_event(ch, "client-back", json!({})).await;
    let f = a.expect_channel_event("client-back", ch).await;
    assert_eq!(f.json["user_id"], "7", "{}", f.raw);
    a.expect_silence(SILENCE).await;
    b.expect_silence(ms(50)).await;
}

#[tokio::test]
async fn client_events_are_refused_when_disabled_for_the_app() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "false")]).await;
    let ch = "private-off";
    let (mut a, mut b) = pair(&server, ch).await;
    a.client_event(ch, "client-x", json!({})).await;
    a.expect_error(4301).await;
    a.assert_alive().await;
    b.expect_silence(SILENCE).await;
}

/// Send a refused client event from `a`, expect 4301, then prove with a
/// follow-up valid event that `b` never got the refused one.
async fn refused_then_valid(a: &mut Ws, b: &mut Ws, refused: &str, valid_ch: &str) {
    a.send_text(refused).await;
    a.expect_error(4301).await;
    a.client_event(valid_ch, "client-marker", json!({})).await;
    let f = b.recv().await;
    assert_eq!(
        f.event(),
        "client-marker",
        "refused event leaked to another socket: {} (after sending {refused})",
        f.raw
    );
}

#[tokio::test]
async fn client_event_refusals_are_4301_and_socket_stays_open() {
    let server = Server::start_app(&[
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_NAME_LENGTH", "20"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "1"),
    ])
    .await;
    let ok = "private-ok";
    let (mut a, mut b) = pair(&server, ok).await;
    // both also on a public and an encrypted channel
    for ws in [&mut a, &mut b] {
        ws.subscribe("public-ch").await;
        ws.subscribe_private("private-encrypted-ch").await;
    }
    // b alone on private-b (a is not subscribed there)
    b.subscribe_private("private-b").await;

    // public channel
    refused_then_valid(
        &mut a,
        &mut b,
        r#"{"event":"client-x","channel":"public-ch","data":{}}"#,
        ok,
    )
    .await;
    // encrypted channel
    refused_then_valid(
        &mut a,
        &mut b,
        r#"{"event":"client-x","channel":"private-encrypted-ch","data":{}}"#,
        ok,
    )
    .await;
    // sender not subscribed
    refused_then_valid(
        &mut a,
        &mut b,
        r#"{"event":"client-x","channel":"private-b","data":{}}"#,
        ok,
    )
    .await;
    // name longer than 20
    let long_name = format!("client-{}", "n".repeat(14)); // 21 chars
    assert_eq!(long_name.len(), 21);
    let frame = json!({"event": long_name, "channel": ok, "data": {}}).to_string();
    refused_then_valid(&mut a, &mut b, &frame, ok).await;
    // data larger than 1 KB
    let frame = json!({"event": "client-big", "channel": ok, "data": {"pad": "x".repeat(1100)}})
        .to_string();
    refused_then_valid(&mut a, &mut b, &frame, ok).await;

    // at the limits: 20-char name and ~1000-byte data are delivered
    let name20 = format!("client-{}", "n".repeat(13));
    assert_eq!(name20.len(), 20);
    a.client_event(ok, &name20, json!({"pad": "x".repeat(990)}))
        .await;
    b.expect_channel_event(&name20, ok).await;
    a.assert_alive().await;
}

#[tokio::test]
async fn client_event_rate_limit_drops_excess_with_4301_per_socket() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND", "3")]).await;
    let ch = "private-rl";
    let (mut a, mut b) = pair(&server, ch).await;
    let mut c = server.connect().await;
    c.subscribe_private(ch).await;

    for i in 0..5 {
        a.client_event(ch, "client-n", json!({ "i": i })).await;
    }
    // a: two rate-limit errors, nothing else (not closed)
    for _ in 0..2 {
        let f = a.expect_error(4301).await;
        assert_eq!(
            f.json["data"]["message"], "Client event rejected due to rate limit",
            "{}",
            f.raw
        );
    }
    // b and c: exactly the first three
    for ws in [&mut b, &mut c] {
        for i in 0..3 {
            let f = ws.expect_channel_event("client-n", ch).await;
            assert_eq!(f.json["data"]["i"], i, "{}", f.raw);
        }
    }
    // the budget is per socket: c can still send in the same window
    c.client_event(ch, "client-c", json!({})).await;
    let f = b.recv().await;
    assert_eq!(
        f.event(),
        "client-c",
        "excess events from a leaked: {}",
        f.raw
    );
    a.expect_channel_event("client-c", ch).await; // nothing else queued before it
    a.assert_alive().await;

    // after the 1 s window a may send again
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.client_event(ch, "client-later", json!({})).await;
    b.expect_channel_event("client-later", ch).await;
    c.expect_channel_event("client-later", ch).await;
}

#[tokio::test]
async fn client_events_reach_private_cache_channels() {
    let server = Server::start_app(&[]).await;
    let ch = "private-cache-ce";
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe_private(ch).await;
    a.expect_channel_event("pusher:cache_miss", ch).await;
    b.subscribe_private(ch).await;
    b.expect_channel_event("pusher:cache_miss", ch).await;
    a.client_event(ch, "client-c", json!({"v": 1})).await;
    b.expect_channel_event("client-c", ch).await;
    a.expect_silence(SILENCE).await;
}
