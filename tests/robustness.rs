//! Bad input never kills a socket (4300, stays open); oversized frames close
//! only the offender (1009); floods and slow consumers are isolated (4100).

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_frames_get_4300_and_the_socket_keeps_working() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("live").await;
    let bad_texts = [
        "not json",
        "{\"event\":",
        "[1,2,3]",
        "42",
        "\"pusher:ping\"",
        "{}",
        r#"{"data":{}}"#,
        r#"{"event":5,"data":{}}"#,
        r#"{"event":"","data":{}}"#,
        r#"{"event":"pusher:unknown","data":{}}"#,
        r#"{"event":"hello","data":{}}"#,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"live","data":"{}"}"#,
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":5}"#,
        r#"{"event":"pusher:subscribe","data":{}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
        r#"{"event":"pusher:subscribe","data":"not json inside"}"#,
        r#"{"event":"pusher:unsubscribe","data":{}}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
    ];
    for text in bad_texts {
        ws.send_text(text).await;
        let f = ws.recv().await;
        assert_eq!(f.event(), "pusher:error", "for {text}: {}", f.raw);
        assert_eq!(f.json["data"]["code"], 4300, "for {text}: {}", f.raw);
    }
    // still subscribed and serving
    ws.assert_alive().await;
    server.api().publish("live", "still-here", "1").await;
    ws.expect_channel_event("still-here", "live").await;
}

/// Issue 9, defect 2: serde's derive accepts a JSON array for a struct, so
/// `"data": ["chan"]` once subscribed to `chan`. Every such shape is a 4300
/// and subscribes nothing: the channel stays unoccupied and a publish to it
/// never reaches the socket.
#[tokio::test]
async fn array_shaped_frames_subscribe_nothing() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    let shapes = [
        r#"{"event":"pusher:subscribe","data":["arr-1"]}"#,
        r#"{"event":"pusher:subscribe","data":"[\"arr-1\"]"}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":["arr-1"]}}"#,
        r#"["pusher:subscribe",null,{"channel":"arr-1"}]"#,
        r#"["pusher:subscribe",null,["arr-1"]]"#,
    ];
    for text in shapes {
        ws.send_text(text).await;
        let f = ws.recv().await;
        assert_eq!(f.event(), "pusher:error", "for {text}: {}", f.raw);
        assert_eq!(f.json["data"]["code"], 4300, "for {text}: {}", f.raw);
    }
    let api = server.api();
    let info = api.channel_info("arr-1", "").await;
    assert_eq!(info["occupied"], false, "{info}");
    api.publish("arr-1", "leak", "1").await;
    ws.expect_silence(SILENCE).await;
    // The same socket still subscribes properly.
    ws.subscribe("arr-1").await;
    api.publish("arr-1", "ok", "1").await;
    ws.expect_channel_event("ok", "arr-1").await;
}

#[tokio::test]
async fn binary_frame_gets_4300_and_socket_stays_open() {
    let server = Server::start_app(&[]).await;
    let mut ws = server.connect().await;
    ws.subscribe("live").await;
    ws.send_message(Message::Binary(
        br#"{"event":"pusher:ping","data":{}}"#.to_vec(),
    ))
    .await;
    ws.expect_error(4300).await;
    ws.assert_alive().await;
    server.api().publish("live", "still-here", "1").await;
    ws.expect_channel_event("still-here", "live").await;
}

#[tokio::test]
async fn non_utf8_text_frame_closes_1007_and_spares_other_sockets() {
    // RFC 6455 §8.1: invalid UTF-8 in a text frame fails the connection with 1007.
    let server = Server::start_app(&[]).await;
    let mut bystander = server.connect().await;
    bystander.subscribe("live").await;
    let mut ws = server.connect().await;
    ws.subscribe("live").await;
    ws.send_invalid_utf8_text().await;
    ws.expect_close(1007).await;
    server.api().publish("live", "still-here", "1").await;
    bystander.expect_channel_event("still-here", "live").await;
    bystander.assert_alive().await;
}

#[tokio::test]
async fn oversized_frame_closes_only_that_socket_with_1009() {
    let server = Server::start_app(&[("WEBSOCKET_MAX_PAYLOAD_KB", "1")]).await;
    let mut bystander = server.connect().await;
    bystander.subscribe("news").await;
    let mut big = server.connect().await;
    big.subscribe("news").await;

    // a frame just under the limit is fine
    let ok = json!({"event": "pusher:ping", "data": {"pad": "x".repeat(900)}}).to_string();
    assert!(ok.len() < 1024);
    big.send_text(&ok).await;
    big.expect_event("pusher:pong").await;

    let huge = json!({"event": "pusher:ping", "data": {"pad": "x".repeat(4096)}}).to_string();
    let _ = big.try_send_text(&huge).await;
    big.expect_close(1009).await;

    // the other socket on the same server keeps receiving events
    server.api().publish("news", "after", "1").await;
    bystander.expect_channel_event("after", "news").await;
    bystander.assert_alive().await;
    // and the closed one left the channel
    server
        .api()
        .wait_channel_info("news", "subscription_count", |v| {
            v["subscription_count"] == 1
        })
        .await;
}

#[tokio::test]
async fn a_flooding_socket_does_not_disturb_another() {
    let server = Server::start_app(&[]).await;
    let api = server.api();
    let mut calm = server.connect().await;
    calm.subscribe("calm").await;
    let flooder = server.connect().await;
    let (mut tx, mut rx) = flooder.into_stream().split();
    // drain the flooder's replies so its own queue never fills
    let drain = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(Ok(m)) = rx.next().await {
            if m.is_text() {
                n += 1;
            }
        }
        n
    });
    let flood = tokio::spawn(async move {
        let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
        let junk = "{not json";
        for i in 0..4000 {
            let text = if i % 2 == 0 {
                ping.clone()
            } else {
                junk.to_string()
            };
            if tx.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
        let _ = tx.close().await;
    });

    // while the flood is going, the calm socket gets every event promptly
    let started = Instant::now();
    for i in 0..30 {
        api.publish("calm", "tick", &i.to_string()).await;
        let f = calm.expect_channel_event("tick", "calm").await;
        assert_eq!(f.data_str(), i.to_string());
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "events to the calm socket were slowed down: {:?}",
        started.elapsed()
    );
    calm.assert_alive().await;
    flood.await.unwrap();
    let replies = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("flooder's connection should end after close")
        .unwrap();
    assert!(replies > 0, "the flooder got no replies at all");
}

#[tokio::test]
async fn slow_consumer_is_closed_4100_and_others_are_unaffected() {
    let server = Server::start_app(&[
        ("WEBSOCKET_MAX_MESSAGES", "10"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "200"),
    ])
    .await;
    let api = server.api();
    let mut slow = server.connect().await;
    slow.subscribe("firehose").await;
    let mut fast = server.connect().await;
    fast.subscribe("firehose").await;
    let fast_reader = tokio::spawn(async move {
        let mut got = 0;
        loop {
            let f = fast.recv_timeout(Duration::from_secs(20)).await;
            if f.event() == "big" {
                got += 1;
                if got == 100 {
                    return fast;
                }
            } else {
                panic!("fast consumer got {}", &f.raw[..f.raw.len().min(200)]);
            }
        }
    });
    // `slow` does not read: ~15 MB of events fill the TCP buffers, then its queue
    let data = "d".repeat(150 * 1024);
    for _ in 0..10 {
        let items: Vec<_> = (0..10)
            .map(|_| json!({"channel": "firehose", "name": "big", "data": data}))
            .collect();
        let r = api
            .post("/batch_events", &json!({ "batch": items }).to_string())
            .await;
        assert_eq!(r.status, 200, "{:?}", r.text);
    }
    let mut fast = tokio::time::timeout(Duration::from_secs(30), fast_reader)
        .await
        .expect("fast consumer kept up")
        .unwrap();
    fast.assert_alive().await;

    // now read the slow socket: some events, then pusher:error 4100 and close 4100
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match slow.recv_message(left).await {
            Some(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["event"] == "big" {
                    events += 1;
                    continue;
                }
                assert_eq!(v["event"], "pusher:error", "{}", &t[..t.len().min(200)]);
                assert_eq!(v["data"]["code"], 4100, "{t}");
                break;
            }
            other => panic!(
                "expected events then pusher:error 4100, got {other:?} after {events} events"
            ),
        }
    }
    assert!(
        events < 100,
        "slow consumer got every event; it was never cut off"
    );
    slow.expect_close(4100).await;
}
