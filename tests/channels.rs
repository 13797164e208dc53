//! Subscriptions: public, private, encrypted, cache channels; name and auth
//! errors (socket stays open); re-subscribe and unsubscribe semantics.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn public_subscribe_succeeds_with_exact_frame_and_receives_events() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.send_subscribe(json!({"channel": "orders"})).await;
    let f = ws.recv().await;
    assert_eq!(
        f.json,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": "orders", "data": "{}"}),
        "{}",
        f.raw
    );
    // no cache_miss or anything else for a non-cache channel
    ws.expect_silence(SILENCE).await;
    server
        .api()
        .publish("orders", "order-shipped", "{\"id\":7}")
        .await;
    let f = ws.recv().await;
    assert_eq!(
        f.json,
        json!({"event": "order-shipped", "channel": "orders", "data": "{\"id\":7}"})
    );
}

#[tokio::test]
async fn subscribe_data_may_be_a_json_string() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.send_json(json!({"event": "pusher:subscribe", "data": "{\"channel\":\"as-string\"}"}))
        .await;
    ws.expect_channel_event("pusher_internal:subscription_succeeded", "as-string")
        .await;
    // private channel with string data too
    let auth = channel_auth(APP_KEY, APP_SECRET, &ws.socket_id, "private-s");
    let data = json!({"channel": "private-s", "auth": auth}).to_string();
    ws.send_json(json!({"event": "pusher:subscribe", "data": data}))
        .await;
    ws.expect_channel_event("pusher_internal:subscription_succeeded", "private-s")
        .await;
}

#[tokio::test]
async fn valid_channel_name_characters_and_length_limit() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("a-b_c=d@e,f.g;h").await;
    ws.subscribe(&"x".repeat(200)).await; // default max_channel_name_length 200
    let too_long = "y".repeat(201);
    ws.send_subscribe(json!({"channel": too_long})).await;
    ws.expect_subscription_error(&too_long, "InvalidChannel", 400)
        .await;
    for bad in [
        "has space",
        "bang!",
        "slash/x",
        "star*",
        "#not-server-to-user",
        "ümlaut",
    ] {
        ws.send_subscribe(json!({"channel": bad})).await;
        ws.expect_subscription_error(bad, "InvalidChannel", 400)
            .await;
    }
    ws.assert_alive().await;
    ws.subscribe("still-works").await;
}

#[tokio::test]
async fn max_channel_name_length_is_configurable() {
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH", "10")]).await;
    let mut ws = server.connect().await;
    ws.subscribe("abcdefghij").await;
    ws.send_subscribe(json!({"channel": "abcdefghijk"})).await;
    ws.expect_subscription_error("abcdefghijk", "InvalidChannel", 400)
        .await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn private_channel_with_valid_auth_succeeds_and_receives_events() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let f = ws.subscribe_private("private-orders").await;
    assert_eq!(f.data_str(), "{}");
    server.api().publish("private-orders", "e", "\"x\"").await;
    let f = ws.expect_channel_event("e", "private-orders").await;
    assert_eq!(f.data_str(), "\"x\"");
}

#[tokio::test]
async fn private_channel_auth_errors_are_401_and_socket_stays_open() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let other = server.connect().await;
    let ch = "private-orders";
    let good_sig = hmac_hex(APP_SECRET, &format!("{}:{ch}", ws.socket_id));
    let cases = vec![
        ("missing auth", json!({"channel": ch})),
        ("empty auth", json!({"channel": ch, "auth": ""})),
        ("no colon", json!({"channel": ch, "auth": good_sig.clone()})),
        (
            "bad signature",
            json!({"channel": ch, "auth": format!("{APP_KEY}:{}", "0".repeat(64))}),
        ),
        (
            "wrong key in auth",
            json!({"channel": ch, "auth": format!("other-key:{good_sig}")}),
        ),
        (
            "signed for another socket",
            json!({"channel": ch, "auth": channel_auth(APP_KEY, APP_SECRET, &other.socket_id, ch)}),
        ),
        (
            "signed for another channel",
            json!({"channel": ch, "auth": channel_auth(APP_KEY, APP_SECRET, &ws.socket_id, "private-other")}),
        ),
        (
            "signed with another secret",
            json!({"channel": ch, "auth": channel_auth(APP_KEY, "wrong-secret", &ws.socket_id, ch)}),
        ),
    ];
    for (what, data) in cases {
        ws.send_subscribe(data).await;
        let f = ws.recv().await;
        assert_eq!(f.event(), "pusher:subscription_error", "{what}: {}", f.raw);
        assert_eq!(f.channel(), Some(ch), "{what}");
        assert_eq!(f.json["data"]["type"], "AuthError", "{what}: {}", f.raw);
        assert_eq!(f.json["data"]["status"], 401, "{what}: {}", f.raw);
    }
    // a refused subscription does not deliver channel events
    server.api().publish(ch, "leak", "1").await;
    ws.assert_alive().await;
    // and the socket can still subscribe properly
    ws.subscribe_private(ch).await;
    server.api().publish(ch, "after", "2").await;
    ws.expect_channel_event("after", ch).await;
}

#[tokio::test]
async fn encrypted_channel_needs_auth_like_private() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let ch = "private-encrypted-chat";
    ws.send_subscribe(json!({"channel": ch})).await;
    ws.expect_subscription_error(ch, "AuthError", 401).await;
    ws.subscribe_private(ch).await;
    let payload = r#"{"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy"}"#;
    server.api().publish(ch, "secret", payload).await;
    let f = ws.expect_channel_event("secret", ch).await;
    assert_eq!(f.data_str(), payload);
}

#[tokio::test]
async fn resubscribe_resends_succeeded_without_double_counting() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("dup").await;
    ws.subscribe("dup").await;
    let info = server.api().channel_info("dup", "subscription_count").await;
    assert_eq!(info["occupied"], true);
    assert_eq!(info["subscription_count"], 1, "{info}");
    // events are delivered once, not twice
    server.api().publish("dup", "once", "1").await;
    ws.expect_channel_event("once", "dup").await;
    ws.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn unsubscribe_has_no_reply_and_stops_delivery() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("a").await;
    ws.subscribe("b").await;
    ws.unsubscribe("a").await;
    ws.expect_silence(SILENCE).await;
    api.publish("a", "not-for-you", "1").await;
    api.publish("b", "for-you", "2").await;
    // strict: the first frame is the one on "b"; nothing from "a"
    ws.expect_channel_event("for-you", "b").await;
    let info = api.channel_info("a", "").await;
    assert_eq!(info["occupied"], false, "{info}");
}

#[tokio::test]
async fn unsubscribing_an_unknown_channel_is_a_silent_no_op() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("kept").await;
    ws.unsubscribe("never-subscribed").await;
    ws.unsubscribe("private-never").await;
    ws.expect_silence(SILENCE).await;
    server.api().publish("kept", "still", "1").await;
    ws.expect_channel_event("still", "kept").await;
}

#[tokio::test]
async fn disconnect_unsubscribes_from_every_channel() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("d1").await;
    ws.subscribe_private("private-d2").await;
    assert_eq!(api.channel_info("d1", "").await["occupied"], true);
    ws.close().await;
    api.wait_channel_info("d1", "", |v| v["occupied"] == false)
        .await;
    api.wait_channel_info("private-d2", "", |v| v["occupied"] == false)
        .await;
}

// ---------------------------------------------------------------------------
// Cache channels

#[tokio::test]
async fn cache_channel_sends_cache_miss_when_empty() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("cache-prices").await;
    let f = ws.recv().await;
    assert_eq!(
        f.json,
        json!({"event": "pusher:cache_miss", "channel": "cache-prices", "data": "{}"}),
        "{}",
        f.raw
    );
    ws.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn cache_channel_replays_only_the_last_event_to_new_subscribers() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    api.publish("cache-prices", "tick", "{\"p\":1}").await;
    api.publish("cache-prices", "tock", "{\"p\": 2 }").await;
    let mut ws = server.connect().await;
    ws.subscribe("cache-prices").await;
    let f = ws.recv().await;
    assert_eq!(
        f.json,
        json!({"event": "tock", "channel": "cache-prices", "data": "{\"p\": 2 }"}),
        "{}",
        f.raw
    );
    ws.expect_silence(SILENCE).await;
    // a live event after the replay is delivered normally
    api.publish("cache-prices", "live", "3").await;
    ws.expect_channel_event("live", "cache-prices").await;
    // the live event replaced the cached one
    let mut ws2 = server.connect().await;
    ws2.subscribe("cache-prices").await;
    ws2.expect_channel_event("live", "cache-prices").await;
}

#[tokio::test]
async fn cache_is_per_channel_and_non_cache_channels_have_none() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    api.publish("cache-a", "ea", "a").await;
    api.publish("plain", "ep", "p").await;
    let mut ws = server.connect().await;
    ws.subscribe("cache-b").await;
    ws.expect_channel_event("pusher:cache_miss", "cache-b")
        .await;
    ws.subscribe("plain").await;
    ws.expect_silence(SILENCE).await; // no replay on a non-cache channel
    ws.subscribe("cache-a").await;
    let f = ws.expect_channel_event("ea", "cache-a").await;
    assert_eq!(f.data_str(), "a");
}

#[tokio::test]
async fn private_and_encrypted_cache_channels_need_auth_and_replay() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    for ch in ["private-cache-x", "private-encrypted-cache-x"] {
        let mut ws = server.connect().await;
        ws.send_subscribe(json!({"channel": ch})).await;
        ws.expect_subscription_error(ch, "AuthError", 401).await;
        ws.subscribe_private(ch).await;
        ws.expect_channel_event("pusher:cache_miss", ch).await;
        api.publish(ch, "stored", "{\"v\":1}").await;
        ws.expect_channel_event("stored", ch).await;
        let mut late = server.connect().await;
        late.subscribe_private(ch).await;
        let f = late.expect_channel_event("stored", ch).await;
        assert_eq!(f.data_str(), "{\"v\":1}");
    }
}

#[tokio::test]
async fn presence_cache_channel_sends_roster_then_cache_miss_or_event() {
    let server = Server::start_app(&[]).await;
    let ch = "presence-cache-room";
    let mut ws = server.connect().await;
    let roster = ws.subscribe_presence(ch, "1", json!({})).await;
    assert_eq!(roster["count"], 1);
    ws.expect_channel_event("pusher:cache_miss", ch).await;
    server.api().publish(ch, "stored", "s").await;
    ws.expect_channel_event("stored", ch).await;
    let mut late = server.connect().await;
    let roster = late.subscribe_presence(ch, "2", json!({})).await;
    assert_eq!(roster["count"], 2);
    let f = late.expect_channel_event("stored", ch).await;
    assert_eq!(f.data_str(), "s");
}

#[tokio::test]
async fn cache_entries_expire_after_ttl() {
    let server = Server::start_app(&[("CACHE_TTL_SECONDS", "1")]).await;
    server.api().publish("cache-ttl", "old", "1").await;
    let mut fresh = server.connect().await;
    fresh.subscribe("cache-ttl").await;
    fresh.expect_channel_event("old", "cache-ttl").await;
    tokio::time::sleep(ms(2100)).await;
    let mut ws = server.connect().await;
    ws.subscribe("cache-ttl").await;
    ws.expect_channel_event("pusher:cache_miss", "cache-ttl")
        .await;
}

#[tokio::test]
async fn a_vacated_and_reoccupied_channel_receives_again() {
    // Publishes to channels without subscribers skip the registry; a channel
    // must count as occupied again as soon as a new subscription succeeds.
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut a = server.connect().await;
    a.subscribe("room").await;
    a.unsubscribe("room").await;
    // Unsubscribing has no reply: wait until the registry has processed it.
    api.wait_channel_info("room", "subscription_count", |v| v["occupied"] == false)
        .await;
    api.publish("room", "while-empty", "1").await;
    a.expect_silence(ms(200)).await;

    a.subscribe("room").await;
    api.publish("room", "after", "2").await;
    let f = a.expect_channel_event("after", "room").await;
    assert_eq!(f.data_str(), "2");

    // Vacated by a disconnect, then occupied by another socket.
    a.close().await;
    api.wait_channel_info("room", "subscription_count", |v| v["occupied"] == false)
        .await;
    let mut b = server.connect().await;
    b.subscribe("room").await;
    api.publish("room", "for-b", "3").await;
    b.expect_channel_event("for-b", "room").await;
    b.expect_silence(ms(200)).await;
}

#[tokio::test]
async fn channels_per_connection_are_capped() {
    let server = Server::start_app(&[("MAX_CHANNELS_PER_CONNECTION", "3")]).await;
    let mut ws = server.connect().await;
    for ch in ["c1", "c2", "c3"] {
        ws.subscribe(ch).await;
    }
    // Re-subscribing an existing channel is not a new one.
    ws.subscribe("c2").await;
    ws.send_subscribe(serde_json::json!({"channel": "c4"}))
        .await;
    ws.expect_subscription_error("c4", "LimitReached", 403)
        .await;
    // After leaving one, there is room again; the socket was never closed.
    ws.unsubscribe("c1").await;
    ws.subscribe("c4").await;
    server.api().publish("c4", "hello", "1").await;
    ws.expect_channel_event("hello", "c4").await;
}

#[tokio::test]
async fn subscription_counts_are_sent_when_the_app_enables_them() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT", "true")]).await;
    let count = |f: &Frame| f.data_json()["subscription_count"].as_u64().unwrap();
    let mut a = server.connect().await;
    a.subscribe("counted").await;
    let f = a
        .expect_channel_event("pusher_internal:subscription_count", "counted")
        .await;
    assert_eq!(count(&f), 1);

    let mut b = server.connect().await;
    b.subscribe("counted").await;
    for ws in [&mut a, &mut b] {
        let f = ws
            .expect_channel_event("pusher_internal:subscription_count", "counted")
            .await;
        assert_eq!(count(&f), 2);
    }
    b.close().await;
    let f = a
        .expect_channel_event("pusher_internal:subscription_count", "counted")
        .await;
    assert_eq!(count(&f), 1);

    // Apps without the flag get no count frames.
    let server = Server::start_app(&[]).await;
    let mut c = server.connect().await;
    c.subscribe("plain").await;
    c.expect_silence(SILENCE).await;
}
