//! Presence channels: roster, member_added/member_removed semantics per user
//! (not per socket), id normalisation, auth and limit errors.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Instant;

const CH: &str = "presence-room";

fn sorted_ids(roster: &Value) -> Vec<String> {
    let mut ids: Vec<String> = roster["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("ids missing in {roster}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("id not a string in {roster}"))
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn first_member_gets_roster_with_itself_and_no_member_added() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let cd = r#"{"user_id":"42","user_info":{"name":"Ada"}}"#;
    ws.send_presence_subscribe(CH, cd).await;
    let f = ws
        .expect_channel_event("pusher_internal:subscription_succeeded", CH)
        .await;
    let data = f.data_json(); // data is a string containing JSON
    assert_eq!(
        data,
        json!({"presence": {"ids": ["42"], "hash": {"42": {"name": "Ada"}}, "count": 1}}),
        "{}",
        f.raw
    );
    ws.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn second_user_is_announced_to_others_and_sees_both() {
    let server = Server::start_app(&[]).await;
    let mut a = server.connect().await;
    a.subscribe_presence(CH, "42", json!({"name": "Ada"})).await;
    let mut b = server.connect().await;
    let roster = b.subscribe_presence(CH, "7", json!({"name": "Bob"})).await;
    assert_eq!(roster["count"], 2, "{roster}");
    assert_eq!(sorted_ids(&roster), vec!["42", "7"]);
    assert_eq!(roster["hash"]["42"], json!({"name": "Ada"}));
    assert_eq!(roster["hash"]["7"], json!({"name": "Bob"}));

    let f = a
        .expect_channel_event("pusher_internal:member_added", CH)
        .await;
    assert!(
        f.json["data"].is_string(),
        "member_added data must be a string: {}",
        f.raw
    );
    assert_eq!(
        f.data_json(),
        json!({"user_id": "7", "user_info": {"name": "Bob"}})
    );
    // the joiner gets no member_added for itself
    b.expect_silence(SILENCE).await;

    // leaving by unsubscribe announces member_removed to the others
    b.unsubscribe(CH).await;
    let f = a
        .expect_channel_event("pusher_internal:member_removed", CH)
        .await;
    assert!(f.json["data"].is_string(), "{}", f.raw);
    assert_eq!(f.data_json(), json!({"user_id": "7"}));
    b.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn same_user_on_two_sockets_counts_once() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut watcher = server.connect().await;
    watcher.subscribe_presence(CH, "1", json!({})).await;

    let mut s1 = server.connect().await;
    s1.subscribe_presence(CH, "42", json!({"name": "Ada"}))
        .await;
    let f = watcher
        .expect_channel_event("pusher_internal:member_added", CH)
        .await;
    assert_eq!(f.data_json()["user_id"], "42");

    // the same user's second socket: roster counts users, no second member_added
    let mut s2 = server.connect().await;
    let roster = s2
        .subscribe_presence(CH, "42", json!({"name": "Ada"}))
        .await;
    assert_eq!(roster["count"], 2, "distinct users, not sockets: {roster}");
    assert_eq!(sorted_ids(&roster), vec!["1", "42"]);
    watcher.expect_silence(SILENCE).await;
    s1.expect_silence(ms(50)).await;

    let info = api.channel_info(CH, "user_count,subscription_count").await;
    assert_eq!(info["user_count"], 2, "{info}");
    let users = api
        .get(&format!("/channels/{CH}/users"), &[])
        .await
        .assert_ok();
    let mut ids: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["1", "42"], "{users}");

    // first socket of 42 disconnects: 42 is still present, no member_removed
    s1.close().await;
    api.wait_channel_info(CH, "subscription_count", |v| v["subscription_count"] == 2)
        .await;
    watcher.expect_silence(SILENCE).await;
    assert_eq!(api.channel_info(CH, "user_count").await["user_count"], 2);

    // last socket disconnects: member_removed exactly once
    s2.close().await;
    let f = watcher
        .expect_channel_event("pusher_internal:member_removed", CH)
        .await;
    assert_eq!(f.data_json(), json!({"user_id": "42"}));
    watcher.expect_silence(SILENCE).await;
    assert_eq!(api.channel_info(CH, "user_count").await["user_count"], 1);
}

#[tokio::test]
async fn numeric_user_id_is_normalised_to_a_string() {
    let server = Server::start_app(&[]).await;
    let mut a = server.connect().await;
    a.subscribe_presence(CH, "1", json!({})).await;
    let mut b = server.connect().await;
    let roster = b
        .subscribe_presence_raw(CH, r#"{"user_id":42,"user_info":{"n":1}}"#)
        .await;
    assert_eq!(sorted_ids(&roster), vec!["1", "42"]);
    assert_eq!(roster["hash"]["42"], json!({"n": 1}), "{roster}");
    let f = a
        .expect_channel_event("pusher_internal:member_added", CH)
        .await;
    assert_eq!(f.data_json()["user_id"], json!("42"), "{}", f.raw);
    // the same user with a string id is the same member
    let mut c = server.connect().await;
    let roster = c.subscribe_presence(CH, "42", json!({"n": 1})).await;
    assert_eq!(roster["count"], 2, "{roster}");
    a.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn member_without_user_info_has_null_or_empty_hash_entry() {
    let server = Server::start_app(&[]).await;
    let mut a = server.connect().await;
    let roster = a.subscribe_presence_raw(CH, r#"{"user_id":"9"}"#).await;
    assert_eq!(roster["count"], 1);
    let info = &roster["hash"]["9"];
    assert!(
        roster["hash"].as_object().unwrap().contains_key("9")
            && (info.is_null() || *info == json!({})),
        "hash entry for 9 should be null or {{}}: {roster}"
    );
}

#[tokio::test]
async fn presence_resubscribe_resends_roster_without_member_added() {
    let server = Server::start_app(&[]).await;
    let mut a = server.connect().await;
    a.subscribe_presence(CH, "1", json!({})).await;
    let mut b = server.connect().await;
    b.subscribe_presence(CH, "2", json!({})).await;
    a.expect_channel_event("pusher_internal:member_added", CH)
        .await;
    let roster = b.subscribe_presence(CH, "2", json!({})).await;
    assert_eq!(roster["count"], 2);
    assert_eq!(sorted_ids(&roster), vec!["1", "2"]);
    a.expect_silence(SILENCE).await;
    let info = server
        .api()
        .channel_info(CH, "user_count,subscription_count")
        .await;
    assert_eq!(info["subscription_count"], 2, "{info}");
    assert_eq!(info["user_count"], 2, "{info}");
}

#[tokio::test]
async fn presence_auth_errors_are_401_and_socket_stays_open() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let sid = ws.socket_id.clone();
    let cd = r#"{"user_id":"42"}"#;
    let good = presence_auth(APP_KEY, APP_SECRET, &sid, CH, cd);
    let cases = vec![
        ("missing auth", json!({"channel": CH, "channel_data": cd})),
        (
            "missing channel_data",
            json!({"channel": CH, "auth": channel_auth(APP_KEY, APP_SECRET, &sid, CH)}),
        ),
        (
            "channel_data differs from the signed one",
            json!({"channel": CH, "auth": good, "channel_data": r#"{"user_id":"43"}"#}),
        ),
        (
            "channel_data re-serialised (whitespace changes the signature)",
            json!({"channel": CH, "auth": good, "channel_data": r#"{ "user_id": "42" }"#}),
        ),
        (
            "channel_data not JSON",
            json!({"channel": CH, "auth": presence_auth(APP_KEY, APP_SECRET, &sid, CH, "nope"), "channel_data": "nope"}),
        ),
        (
            "channel_data without user_id",
            json!({"channel": CH, "auth": presence_auth(APP_KEY, APP_SECRET, &sid, CH, r#"{"user_info":{}}"#), "channel_data": r#"{"user_info":{}}"#}),
        ),
        (
            "wrong key",
            json!({"channel": CH, "auth": presence_auth("other-key", APP_SECRET, &sid, CH, cd), "channel_data": cd}),
        ),
    ];
    for (what, data) in cases {
        ws.send_subscribe(data).await;
        let f = ws.recv().await;
        assert_eq!(f.event(), "pusher:subscription_error", "{what}: {}", f.raw);
        assert_eq!(f.channel(), Some(CH), "{what}");
        assert_eq!(f.json["data"]["type"], "AuthError", "{what}: {}", f.raw);
        assert_eq!(f.json["data"]["status"], 401, "{what}: {}", f.raw);
    }
    ws.assert_alive().await;
    // nobody joined through the refused attempts
    let info = server.api().channel_info(CH, "user_count").await;
    assert_eq!(info["occupied"], false, "{info}");
    // the exact signed channel_data bytes (with odd whitespace) are accepted
    let odd = r#"{ "user_id" : "42" ,"user_info":{"a" :1}}"#;
    let roster = ws.subscribe_presence_raw(CH, odd).await;
    assert_eq!(roster["count"], 1);
}

#[tokio::test]
async fn presence_channel_full_is_limit_reached_403_but_known_user_may_join() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL", "2")]).await;
    let mut a = server.connect().await;
    a.subscribe_presence(CH, "1", json!({})).await;
    let mut b = server.connect().await;
    b.subscribe_presence(CH, "2", json!({})).await;
    a.expect_channel_event("pusher_internal:member_added", CH)
        .await;

    let mut c = server.connect().await;
    let cd = r#"{"user_id":"3"}"#;
    c.send_presence_subscribe(CH, cd).await;
    c.expect_subscription_error(CH, "LimitReached", 403).await;
    c.assert_alive().await;
    a.expect_silence(SILENCE).await; // no member_added for the refused user

    // an already-present user's second socket is not a new member
    let mut b2 = server.connect().await;
    let roster = b2.subscribe_presence(CH, "2", json!({})).await;
    assert_eq!(roster["count"], 2);

    // when a member leaves, the third user fits
    a.close().await;
    b.expect_channel_event("pusher_internal:member_removed", CH)
        .await;
    let roster = c.subscribe_presence_raw(CH, cd).await;
    assert_eq!(sorted_ids(&roster), vec!["2", "3"]);
}

#[tokio::test]
async fn oversized_member_data_and_long_user_id_are_limit_reached_403() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB", "1")]).await;
    let mut ws = server.connect().await;
    // channel_data just over 1024 bytes
    let big = json!({"user_id": "1", "user_info": {"pad": "x".repeat(1024)}}).to_string();
    assert!(big.len() > 1024);
    ws.send_presence_subscribe(CH, &big).await;
    ws.expect_subscription_error(CH, "LimitReached", 403).await;

    let long_id = "u".repeat(129);
    let cd = json!({ "user_id": long_id }).to_string();
    ws.send_presence_subscribe(CH, &cd).await;
    ws.expect_subscription_error(CH, "LimitReached", 403).await;

    // 128 chars and a channel_data under 1 KB are fine
    let ok_id = "u".repeat(128);
    let cd = json!({"user_id": ok_id, "user_info": {"pad": "x".repeat(700)}}).to_string();
    assert!(cd.len() <= 1024);
    let roster = ws.subscribe_presence_raw(CH, &cd).await;
    assert_eq!(roster["ids"], json!([ok_id]));
}

#[tokio::test]
async fn api_events_on_presence_channels_carry_no_user_id() {
    let server = Server::start_app(&[]).await;
    let mut a = server.connect().await;
    a.subscribe_presence(CH, "42", json!({})).await;
    server.api().publish(CH, "news", "{\"n\":1}").await;
    let f = a.expect_channel_event("news", CH).await;
    assert_eq!(f.data_str(), "{\"n\":1}");
    assert!(
        f.json.get("user_id").is_none(),
        "API events carry no user_id: {}",
        f.raw
    );
}

/// README, Closing: "The socket leaves its channels when the close starts,
/// so presence `member_removed` and counts are not delayed" by the up-to-1 s
/// wait for the client's close frame. The leaving socket is closed by the
/// server (`terminate_connections`, 4009) and never answers the close
/// frame: the observer must see `member_removed` long before the server
/// gives up waiting and closes the TCP connection.
#[tokio::test]
async fn member_removed_is_sent_when_the_close_starts_not_when_it_ends() {
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::MaybeTlsStream;
    let server = Server::start_app(&[]).await;
    let channel = "presence-closing";
    let mut observer = server.connect().await;
    observer
        .subscribe_presence(channel, "observer", json!({}))
        .await;
    let mut leaving = server.connect().await;
    leaving.signin(r#"{"id":"leaving"}"#).await;
    leaving
        .subscribe_presence(channel, "leaving", json!({}))
        .await;
    let added = observer
        .expect_channel_event("pusher_internal:member_added", channel)
        .await;
    assert_eq!(added.data_json()["user_id"], "leaving");

    let r = server
        .api()
        .post("/users/leaving/terminate_connections", "{}")
        .await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    leaving.expect_error(4009).await;
    // Reading the close frame queues the client library's answer, which it
    // sends only on its next read or write; neither happens from here on.
    leaving.expect_close(4009).await;
    let close_received = Instant::now();

    let removed = observer
        .expect_channel_event("pusher_internal:member_removed", channel)
        .await;
    let removed_after = close_received.elapsed();
    assert_eq!(removed.data_json()["user_id"], "leaving");
    assert!(
        removed_after < ms(500),
        "member_removed came {removed_after:?} after the close frame; the close-reply wait is 1 s"
    );
    let info = server.api().channel_info(channel, "user_count").await;
    assert_eq!(info["user_count"], 1, "{info}");

    // The premise: the close was still waiting for the client's answer,
    // which never came; the server ends the TCP connection after its 1 s.
    let mut stream = leaving.into_stream();
    let MaybeTlsStream::Plain(tcp) = stream.get_mut() else {
        panic!("plain TCP expected")
    };
    let mut buf = [0u8; 1024];
    let ended = tokio::time::timeout(RECV_TIMEOUT, async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server never closed the connection");
    let closed_after = close_received.elapsed();
    assert!(
        closed_after > ms(800),
        "the connection ended {closed_after:?} after the close frame: the client answered?"
    );
}
