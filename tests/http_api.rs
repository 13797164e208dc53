//! The signed HTTP API: publish, batch, channel queries, users, socket_id
//! exclusion, info attributes, byte-exact relay, and every error status with
//! its JSON body.

mod common;

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Publishing

#[tokio::test]
async fn publish_to_one_and_many_channels() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe("ch-a").await;
    b.subscribe("ch-b").await;

    let r = api
        .publish_body(json!({"name": "single", "channel": "ch-a", "data": "1"}))
        .await;
    assert_eq!(r.assert_ok(), json!({}));
    a.expect_channel_event("single", "ch-a").await;

    let r = api
        .publish_body(
            json!({"name": "multi", "channels": ["ch-a", "ch-b", "ch-empty"], "data": "2"}),
        )
        .await;
    assert_eq!(r.assert_ok(), json!({}));
    let fa = a.expect_channel_event("multi", "ch-a").await;
    let fb = b.expect_channel_event("multi", "ch-b").await;
    assert_eq!(fa.data_str(), "2");
    assert_eq!(fb.data_str(), "2");
    a.expect_silence(SILENCE).await;
    b.expect_silence(ms(50)).await;
}

#[tokio::test]
async fn data_is_relayed_byte_exact() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("exact").await;
    let samples = [
        r#"{"b":1,  "a":2}"#,
        r#"{"n":1.0,"e":1e2,"big":12345678901234567890}"#,
        r#"{"dup":1,"dup":2}"#,
        "not json at all",
        "",
        "  spaced  ",
        "é ☃ \u{1F600} \"quoted\" \\ back\\slash \n newline \t tab \u{0001}",
        r#"[1, 2 ,3]"#,
        "\"already a json string\"",
    ];
    for data in samples {
        api.publish("exact", "e", data).await;
        let f = ws.expect_channel_event("e", "exact").await;
        assert_eq!(f.data_str(), data, "data changed in transit: {}", f.raw);
    }
}

/// The `data` string token reaches the socket exactly as the backend wrote
/// it: escapes such as `\u00e9` and `\/` are not rewritten, and a non-string
/// `data` value is relayed as its text inside a string.
#[tokio::test]
async fn data_token_is_relayed_without_re_escaping() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("tokens").await;
    let token = r#""caf\u00e9 \/ \ud83d\ude00 \"q\" \t""#;
    let body = format!(r#"{{"name":"e","channel":"tokens","data":{token}}}"#);
    assert_eq!(api.post("/events", &body).await.status, 200);
    let f = ws.expect_channel_event("e", "tokens").await;
    assert!(
        f.raw.contains(&format!(r#""data":{token}"#)),
        "data token rewritten: {}",
        f.raw
    );
    assert_eq!(f.data_str(), "café / \u{1F600} \"q\" \t");

    let body = r#"{"name":"e","channel":"tokens","data":{"a": [1, 2.50]}}"#;
    assert_eq!(api.post("/events", body).await.status, 200);
    let f = ws.expect_channel_event("e", "tokens").await;
    assert_eq!(f.data_str(), r#"{"a": [1, 2.50]}"#);
}

#[tokio::test]
async fn socket_id_excludes_exactly_that_connection() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    for ws in [&mut a, &mut b, &mut c] {
        ws.subscribe("ex").await;
    }
    let body = json!({"name": "e", "channel": "ex", "data": "1", "socket_id": b.socket_id});
    api.publish_body(body).await.assert_ok();
    a.expect_channel_event("e", "ex").await;
    c.expect_channel_event("e", "ex").await;
    // the excluded socket's next frame is the following event
    api.publish("ex", "next", "2").await;
    let f = b.recv().await;
    assert_eq!(
        f.event(),
        "next",
        "excluded socket got the event: {}",
        f.raw
    );

    // also in batch items
    let batch =
        json!({"batch": [{"channel": "ex", "name": "be", "data": "3", "socket_id": a.socket_id}]});
    api.post("/batch_events", &batch.to_string())
        .await
        .assert_ok();
    b.expect_channel_event("be", "ex").await;
    api.publish("ex", "after-batch", "4").await;
    a.expect_channel_event("next", "ex").await;
    let f = a.recv().await;
    assert_eq!(
        f.event(),
        "after-batch",
        "excluded socket got the batch event: {}",
        f.raw
    );
}

#[tokio::test]
async fn publish_with_info_returns_counts() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let ch = "presence-info";
    let mut s1 = server.connect().await;
    let mut s2 = server.connect().await;
    let mut s3 = server.connect().await;
    s1.subscribe_presence(ch, "42", json!({})).await;
    s2.subscribe_presence(ch, "42", json!({})).await;
    s3.subscribe_presence(ch, "7", json!({})).await;
    s1.expect_channel_event("pusher_internal:member_added", ch)
        .await; // user 7
    let mut p = server.connect().await;
    p.subscribe("pub-info").await;

    let body =
        json!({"name": "e", "channel": ch, "data": "x", "info": "user_count,subscription_count"});
    let r = api.publish_body(body).await.assert_ok();
    assert_eq!(
        r,
        json!({"channels": {ch: {"user_count": 2, "subscription_count": 3}}})
    );

    let body = json!({"name": "e", "channels": [ch, "pub-info"], "data": "x", "info": "subscription_count"});
    let r = api.publish_body(body).await.assert_ok();
    assert_eq!(
        r,
        json!({"channels": {ch: {"subscription_count": 3}, "pub-info": {"subscription_count": 1}}})
    );
    // the events were delivered too
    p.expect_channel_event("e", "pub-info").await;
    s1.expect_channel_event("e", ch).await;
    s1.expect_channel_event("e", ch).await;
}

#[tokio::test]
async fn batch_events_deliver_in_order_and_report_info_per_item() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("orders").await;
    ws.subscribe_presence("presence-room", "42", json!({}))
        .await;

    let batch = json!({"batch": [
        {"channel": "orders", "name": "a", "data": "{}"},
        {"channel": "presence-room", "name": "b", "data": "1"},
        {"channel": "orders", "name": "c", "data": "{\"x\": 1}"}
    ]});
    let r = api.post("/batch_events", &batch.to_string()).await;
    assert_eq!(r.assert_ok(), json!({}));
    let f = ws.expect_channel_event("a", "orders").await;
    assert_eq!(f.data_str(), "{}");
    ws.expect_channel_event("b", "presence-room").await;
    let f = ws.expect_channel_event("c", "orders").await;
    assert_eq!(f.data_str(), "{\"x\": 1}");

    let batch = json!({"batch": [
        {"channel": "orders", "name": "a", "data": "{}"},
        {"channel": "presence-room", "name": "b", "data": "1", "info": "user_count"},
        {"channel": "orders", "name": "c", "data": "2", "info": "subscription_count"}
    ]});
    let r = api
        .post("/batch_events", &batch.to_string())
        .await
        .assert_ok();
    assert_eq!(
        r,
        json!({"batch": [{}, {"user_count": 1}, {"subscription_count": 1}]}),
        "batch info in request order"
    );
}

#[tokio::test]
async fn batch_over_the_limit_is_400() {
    let server = Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE", "2")]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("b").await;
    let item = json!({"channel": "b", "name": "e", "data": "1"});
    let r = api
        .post(
            "/batch_events",
            &json!({"batch": [item, item, item]}).to_string(),
        )
        .await;
    r.assert_error(400, "invalid_input");
    let r = api
        .post("/batch_events", &json!({"batch": [item, item]}).to_string())
        .await;
    r.assert_ok();
    // the refused batch delivered nothing: the first frames are the accepted two
    ws.expect_channel_event("e", "b").await;
    ws.expect_channel_event("e", "b").await;
    ws.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn batch_bad_items_are_400() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    for body in [
        json!({}),
        json!({"batch": "nope"}),
        json!({"batch": [{"channel": "x", "name": "e"}]}),
        json!({"batch": [{"channel": "x", "data": "1"}]}),
        json!({"batch": [{"name": "e", "data": "1"}]}),
        json!({"batch": [{"channel": "bad name", "name": "e", "data": "1"}]}),
    ] {
        let r = api.post("/batch_events", &body.to_string()).await;
        assert_eq!(r.status, 400, "body {body}: {:?}", r.text);
        r.assert_error(400, "invalid_input");
    }
}

// ---------------------------------------------------------------------------
// Channel queries

#[tokio::test]
async fn channels_lists_occupied_channels_with_prefix_filter_and_user_count() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe("orders").await;
    a.subscribe_private("private-x").await;
    a.subscribe_presence("presence-room", "42", json!({})).await;
    b.subscribe_presence("presence-room", "7", json!({})).await;
    b.subscribe_presence("presence-lobby", "7", json!({})).await;
    // an unsubscribed channel disappears
    b.subscribe("gone").await;
    b.unsubscribe("gone").await;
    b.assert_alive().await; // the unsubscribe has been processed

    let r = api.get("/channels", &[]).await.assert_ok();
    let mut names: Vec<&String> = r["channels"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(
        names,
        vec!["orders", "presence-lobby", "presence-room", "private-x"],
        "{r}"
    );

    let r = api
        .get(
            "/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        )
        .await
        .assert_ok();
    assert_eq!(
        r,
        json!({"channels": {"presence-room": {"user_count": 2}, "presence-lobby": {"user_count": 1}}})
    );

    let r = api
        .get(
            "/channels",
            &[
                ("filter_by_prefix", "presence-"),
                ("info", "user_count,subscription_count"),
            ],
        )
        .await
        .assert_ok();
    assert_eq!(
        r,
        json!({"channels": {
            "presence-room": {"user_count": 2, "subscription_count": 2},
            "presence-lobby": {"user_count": 1, "subscription_count": 1}
        }})
    );

    let r = api
        .get("/channels", &[("filter_by_prefix", "private-")])
        .await
        .assert_ok();
    assert_eq!(r, json!({"channels": {"private-x": {}}}));

    let r = api
        .get("/channels", &[("filter_by_prefix", "nothing-")])
        .await
        .assert_ok();
    assert_eq!(r, json!({"channels": {}}));
}

#[tokio::test]
async fn channels_user_count_without_presence_prefix_is_400() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut a = server.connect().await;
    a.subscribe_presence("presence-room", "42", json!({})).await;
    api.get("/channels", &[("info", "user_count")])
        .await
        .assert_error(400, "invalid_input");
    api.get(
        "/channels",
        &[("filter_by_prefix", "private-"), ("info", "user_count")],
    )
    .await
    .assert_error(400, "invalid_input");
}

#[tokio::test]
async fn channel_info_reports_occupancy_and_counts() {
    let server = Server::start_app(&[]).await;
    let api = server.api();

    let r = api.channel_info("empty", "").await;
    assert_eq!(r, json!({"occupied": false}));

    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe("pub").await;
    b.subscribe("pub").await;
    let r = api.channel_info("pub", "").await;
    assert_eq!(r["occupied"], true, "{r}");
    assert!(
        r.get("subscription_count").is_none(),
        "counts only on request: {r}"
    );
    let r = api.channel_info("pub", "subscription_count").await;
    assert_eq!(r, json!({"occupied": true, "subscription_count": 2}));

    a.subscribe_presence("presence-r", "42", json!({})).await;
    b.subscribe_presence("presence-r", "42", json!({})).await;
    let r = api
        .channel_info("presence-r", "user_count,subscription_count")
        .await;
    assert_eq!(
        r,
        json!({"occupied": true, "user_count": 1, "subscription_count": 2})
    );

    // user_count on a non-presence channel is refused
    api.get("/channels/pub", &[("info", "user_count")])
        .await
        .assert_error(400, "invalid_input");

    // invalid channel name
    api.get("/channels/bad!name", &[])
        .await
        .assert_error(400, "invalid_input");
}

#[tokio::test]
async fn channel_info_cache_attribute() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("cache-c").await;
    ws.expect_channel_event("pusher:cache_miss", "cache-c")
        .await;
    api.publish("cache-c", "e", "{\"v\":9}").await;
    ws.expect_channel_event("e", "cache-c").await;
    let r = api.channel_info("cache-c", "cache").await;
    assert_eq!(r["occupied"], true, "{r}");
    let cache = &r["cache"];
    assert!(cache.is_object(), "cache attribute missing: {r}");
    assert!(
        holds_data(cache, "{\"v\":9}"),
        "cache attribute should hold the cached event's data: {r}"
    );
    let r = api.channel_info("cache-none", "cache").await;
    assert!(
        r.get("cache").is_none() || r["cache"].is_null(),
        "no cache for an unused channel: {r}"
    );
}

/// Whether `needle` appears as a string anywhere in `v`, also inside strings
/// that themselves hold JSON.
fn holds_data(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => {
            s == needle
                || serde_json::from_str::<Value>(s)
                    .is_ok_and(|inner| !inner.is_string() && holds_data(&inner, needle))
        }
        Value::Array(a) => a.iter().any(|x| holds_data(x, needle)),
        Value::Object(o) => o.values().any(|x| holds_data(x, needle)),
        _ => false,
    }
}

#[tokio::test]
async fn users_lists_distinct_presence_members() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let ch = "presence-users";
    let r = api
        .get(&format!("/channels/{ch}/users"), &[])
        .await
        .assert_ok();
    assert_eq!(r, json!({"users": []}));
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    a.subscribe_presence(ch, "42", json!({"name": "Ada"})).await;
    b.subscribe_presence(ch, "42", json!({"name": "Ada"})).await;
    c.subscribe_presence(ch, "7", json!({})).await;
    let r = api
        .get(&format!("/channels/{ch}/users"), &[])
        .await
        .assert_ok();
    let mut users: Vec<Value> = r["users"].as_array().unwrap().clone();
    users.sort_by_key(|u| u["id"].as_str().unwrap().to_string());
    assert_eq!(users, vec![json!({"id": "42"}), json!({"id": "7"})], "{r}");

    let mut p = server.connect().await;
    p.subscribe("public-users").await;
    api.get("/channels/public-users/users", &[])
        .await
        .assert_error(400, "invalid_input");
    api.get("/channels/private-users/users", &[])
        .await
        .assert_error(400, "invalid_input");
}

// ---------------------------------------------------------------------------
// Errors: 400

#[tokio::test]
async fn publish_validation_errors_are_400_invalid_input() {
    let server =
        Server::start_app(&[("SOCKUDO_DEFAULT_APP_MAX_EVENT_CHANNELS_AT_ONCE", "2")]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("ok").await;
    let cases: Vec<(&str, String)> = vec![
        ("bad JSON", "{\"name\": ".to_string()),
        ("not an object", "[1,2]".to_string()),
        (
            "missing name",
            json!({"channel": "ok", "data": "1"}).to_string(),
        ),
        (
            "missing data",
            json!({"name": "e", "channel": "ok"}).to_string(),
        ),
        (
            "missing channel(s)",
            json!({"name": "e", "data": "1"}).to_string(),
        ),
        (
            "invalid channel name",
            json!({"name": "e", "channel": "bad name", "data": "1"}).to_string(),
        ),
        (
            "one invalid among channels",
            json!({"name": "e", "channels": ["ok", "bad*"], "data": "1"}).to_string(),
        ),
        (
            "too many channels",
            json!({"name": "e", "channels": ["ok", "b", "c"], "data": "1"}).to_string(),
        ),
    ];
    for (what, body) in cases {
        let r = api.post("/events", &body).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.text);
        r.assert_error(400, "invalid_input");
    }
    // none of them delivered anything; exactly 2 channels is allowed
    let r = api
        .publish_body(json!({"name": "fine", "channels": ["ok", "b"], "data": "1"}))
        .await;
    r.assert_ok();
    let f = ws.recv().await;
    assert_eq!(
        f.event(),
        "fine",
        "a refused publish was delivered: {}",
        f.raw
    );
}

// ---------------------------------------------------------------------------
// Errors: 401

/// serde's derive accepts an array for a struct, so a signed body like
/// `["name","data","channel"]` was published. Only objects are events.
#[tokio::test]
async fn array_shaped_bodies_are_400_and_publish_nothing() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("arr").await;
    for (path, body) in [
        ("/events", r#"["e","\"x\"","arr",null,null,null]"#),
        ("/events", r#"["e","\"x\"",null,["arr"]]"#),
        ("/batch_events", r#"{"batch":[["e","\"x\"","arr"]]}"#),
        ("/batch_events", r#"[[["e","\"x\"","arr"]]]"#),
    ] {
        api.post(path, body)
            .await
            .assert_error(400, "invalid_input");
    }
    ws.expect_silence(SILENCE).await;
    api.publish("arr", "ok", "1").await;
    ws.expect_channel_event("ok", "arr").await;
}

fn truncate(s: &str, n: usize) -> &str {
    &s[..s.len().min(n)]
}

#[tokio::test]
async fn signature_errors_are_401_auth_failed() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("sig").await;
    let body = json!({"name": "e", "channel": "sig", "data": "1"}).to_string();
    let cases: Vec<(&str, Sign)> = vec![
        (
            "unsigned",
            Sign {
                unsigned: true,
                ..Sign::default()
            },
        ),
        (
            "no auth_signature",
            Sign {
                omit_signature: true,
                ..Sign::default()
            },
        ),
        (
            "bad signature",
            Sign {
                corrupt_signature: true,
                ..Sign::default()
            },
        ),
        (
            "signed with another secret",
            Sign {
                secret: Some("nope".into()),
                ..Sign::default()
            },
        ),
        (
            "timestamp 700 s old",
            Sign {
                timestamp_offset: -700,
                ..Sign::default()
            },
        ),
        (
            "timestamp 700 s ahead",
            Sign {
                timestamp_offset: 700,
                ..Sign::default()
            },
        ),
        (
            // now - (now + i64::MIN) overflows: it once panicked a debug
            // build's worker and, wrapped in release, passed the window.
            "timestamp now + i64::MIN",
            Sign {
                timestamp_offset: i64::MIN,
                ..Sign::default()
            },
        ),
        (
            "body_md5 mismatch",
            Sign {
                body_md5: BodyMd5::Wrong,
                ..Sign::default()
            },
        ),
        (
            "body_md5 missing",
            Sign {
                body_md5: BodyMd5::Omit,
                ..Sign::default()
            },
        ),
        (
            "unknown auth_key",
            Sign {
                key: Some("no-such-key".into()),
                ..Sign::default()
            },
        ),
    ];
    // Issue 9, defect 4: a correctly signed request with any auth_version but
    // Pusher's only one, 1.0, used to be accepted.
    let long = "9".repeat(1000);
    let versions = ["2", "2.0", "1", "1.00", "1.0.0", "-1", "", long.as_str()];
    let cases: Vec<(String, Sign)> = cases
        .into_iter()
        .map(|(what, s)| (what.to_string(), s))
        .chain(versions.iter().map(|v| {
            let what = if v.is_empty() {
                "auth_version missing".to_string()
            } else {
                format!("auth_version {:?}", truncate(v, 8))
            };
            let version = if v.is_empty() { "" } else { v };
            (
                what,
                Sign {
                    auth_version: Some(version.to_string()),
                    ..Sign::default()
                },
            )
        }))
        .collect();
    for (what, s) in &cases {
        let r = api.post_with("/events", &body, s).await;
        assert_eq!(r.status, 401, "{what}: {:?}", r.text);
        r.assert_error(401, "auth_failed");
        if what.starts_with("auth_version") {
            assert!(r.text.contains("auth_version"), "{what}: {}", r.text);
        }
    }
    // GETs too
    for (what, s) in [
        (
            "GET bad signature",
            Sign {
                corrupt_signature: true,
                ..Sign::default()
            },
        ),
        (
            "GET stale",
            Sign {
                timestamp_offset: -700,
                ..Sign::default()
            },
        ),
        (
            "GET unsigned",
            Sign {
                unsigned: true,
                ..Sign::default()
            },
        ),
        (
            "GET auth_version 2",
            Sign {
                auth_version: Some("2".into()),
                ..Sign::default()
            },
        ),
    ] {
        let r = api.get_with("/channels", &[], &s).await;
        assert_eq!(r.status, 401, "{what}: {:?}", r.text);
        r.assert_error(401, "auth_failed");
    }
    // the signature covers the query: changing a param after signing fails
    let url = api.signed_url(
        "GET",
        &api.path("/channels"),
        &[("filter_by_prefix", "a")],
        b"",
        &Sign::default(),
    );
    let tampered = url.replace("filter_by_prefix=a", "filter_by_prefix=b");
    let r = http_get(&tampered).await;
    r.assert_error(401, "auth_failed");

    // nothing was delivered by the refused requests
    ws.assert_alive().await;
    // within the window is fine
    let r = api
        .post_with(
            "/events",
            &body,
            &Sign {
                timestamp_offset: -500,
                ..Sign::default()
            },
        )
        .await;
    r.assert_ok();
    ws.expect_channel_event("e", "sig").await;
}

#[tokio::test]
async fn path_is_part_of_the_signature() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    // sign for /channels, send to /channels/x
    let url = api.signed_url("GET", &api.path("/channels"), &[], b"", &Sign::default());
    let moved = url.replacen("/channels?", "/channels/x?", 1);
    assert_ne!(url, moved);
    http_get(&moved).await.assert_error(401, "auth_failed");
}

// ---------------------------------------------------------------------------
// Errors: 404, 403, 413

#[tokio::test]
async fn unknown_app_id_is_404_app_not_found() {
    let server = Server::start_app(&[]).await;
    let api = server.api_for("no-such-app", APP_KEY, APP_SECRET);
    let body = json!({"name": "e", "channel": "x", "data": "1"}).to_string();
    api.post("/events", &body)
        .await
        .assert_error(404, "app_not_found");
    api.get("/channels", &[])
        .await
        .assert_error(404, "app_not_found");
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let server = Server::start_app(&[]).await;
    let r = http_get(&format!("{}/no/such/route", server.http_base())).await;
    assert_eq!(r.status, 404, "{:?}", r.text);
    let api = server.api();
    let r = api.get("/nonexistent", &[]).await;
    assert_eq!(r.status, 404, "{:?}", r.text);
}

#[tokio::test]
async fn disabled_app_is_403_forbidden() {
    let config = r#"{"app_manager": {"driver": "memory", "array": {"apps": [
        {"id": "off-app", "key": "off-key", "secret": "off-secret", "enabled": false}
    ]}}}"#;
    let server = Server::start_with_config(config, &[]).await;
    let api = server.api_for("off-app", "off-key", "off-secret");
    let body = json!({"name": "e", "channel": "x", "data": "1"}).to_string();
    api.post("/events", &body)
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn oversized_data_and_body_are_413() {
    let server = Server::start_app(&[
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "1"),
        ("HTTP_API_REQUEST_LIMIT_IN_MB", "1"),
    ])
    .await;
    let api = server.api();
    let mut ws = server.connect().await;
    ws.subscribe("big").await;

    let r = api
        .publish_body(json!({"name": "e", "channel": "big", "data": "x".repeat(1025)}))
        .await;
    r.assert_error(413, "payload_too_large");
    let batch = json!({"batch": [{"channel": "big", "name": "e", "data": "x".repeat(2000)}]});
    api.post("/batch_events", &batch.to_string())
        .await
        .assert_error(413, "payload_too_large");

    // body over 1 MB (data of many small items would be fine individually)
    let huge =
        json!({"name": "e", "channel": "big", "data": "y".repeat(1024 * 1024 + 10)}).to_string();
    let r = api.post("/events", &huge).await;
    assert_eq!(r.status, 413, "{:?}", &r.text[..r.text.len().min(200)]);
    r.assert_error(413, "payload_too_large");

    // exactly at the limit is accepted and delivered
    let at_limit = "z".repeat(1024);
    api.publish("big", "fits", &at_limit).await;
    let f = ws.expect_channel_event("fits", "big").await;
    assert_eq!(f.data_str(), at_limit);
}

#[tokio::test]
async fn error_bodies_are_json_with_error_code_status() {
    // no extra fields beyond error/code/status
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let r = api.post("/events", "{").await;
    let v = r.assert_error(400, "invalid_input");
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "exactly error/code/status: {v}"
    );
}

#[tokio::test]
async fn events_arrive_in_publish_order_across_channels() {
    // Channels live on different registry shards (threads); a subscriber of
    // several must still see a backend's events in the order it sent them.
    let server = Server::start_app(&[("REGISTRY_SHARDS", "4")]).await;
    let api = server.api();
    let mut ws = server.connect().await;
    let channels: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
    for c in &channels {
        ws.subscribe(c).await;
    }
    for round in 0..5 {
        let items: Vec<Value> = channels
            .iter()
            .map(|c| json!({"name": format!("e{round}"), "channel": c, "data": "x"}))
            .collect();
        api.post("/batch_events", &json!({ "batch": items }).to_string())
            .await
            .assert_ok();
        for c in &channels {
            ws.expect_channel_event(&format!("e{round}"), c).await;
        }
    }
    for i in 0..30 {
        api.publish(&channels[i % channels.len()], &format!("seq-{i}"), "1")
            .await;
    }
    for i in 0..30 {
        ws.expect_channel_event(&format!("seq-{i}"), &channels[i % channels.len()])
            .await;
    }
}
