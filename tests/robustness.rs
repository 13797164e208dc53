//! Bad input never kills a socket (4300, stays open); oversized frames close
//! only the offender (1009); floods and slow consumers are isolated (4100);
//! the outbound byte limit holds at its edge under both buffer-full policies.

mod common;

use common::security::{metric, pick_port, scrape};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
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
    let sent = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The flood: pings and junk, alternately, until told to stop; then a
    // normal close. Nothing limits inbound frames: each is answered.
    let flood = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let text = if n.is_multiple_of(2) {
                    ping.clone()
                } else {
                    "{not json".into()
                };
                tx.send(Message::Text(text))
                    .await
                    .unwrap_or_else(|e| panic!("the flooder could not send frame {n}: {e}"));
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
            let normal = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            tx.send(Message::Close(Some(normal))).await.expect("close");
            n
        })
    };
    // Its replies, in order: a pong for each ping, a 4300 for each junk
    // frame; then the answer to its close.
    let drain = {
        let replies = replies.clone();
        tokio::spawn(async move {
            let mut close = None;
            while let Some(m) = rx.next().await {
                match m.expect("the flooder's connection failed") {
                    Message::Text(t) => {
                        let n = replies.load(Ordering::Relaxed);
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                        if n.is_multiple_of(2) {
                            assert_eq!(v["event"], "pusher:pong", "reply {n}: {t}");
                        } else {
                            assert_eq!(v["event"], "pusher:error", "reply {n}: {t}");
                            assert_eq!(v["data"]["code"], 4300, "reply {n}: {t}");
                        }
                        replies.store(n + 1, Ordering::Relaxed);
                    }
                    Message::Close(frame) => close = Some(frame.map(|f| u16::from(f.code))),
                    Message::Ping(_) | Message::Pong(_) => {}
                    other => panic!("the flooder got {other:?}"),
                }
            }
            close
        })
    };
    // The flood is under way: the server is answering it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while replies.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "the flood never got going");
        tokio::time::sleep(ms(10)).await;
    }

    // While the flood is going, the calm socket gets every event promptly.
    let (sent_before, replies_before) = (
        sent.load(Ordering::Relaxed),
        replies.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    for i in 0..30 {
        api.publish("calm", "tick", &i.to_string()).await;
        let f = calm.expect_channel_event("tick", "calm").await;
        assert_eq!(f.data_str(), i.to_string());
    }
    let took = started.elapsed();
    let (sent_after, replies_after) = (
        sent.load(Ordering::Relaxed),
        replies.load(Ordering::Relaxed),
    );
    assert!(
        !flood.is_finished(),
        "the flood ended before the publishes did"
    );
    assert!(
        sent_after > sent_before && replies_after > replies_before,
        "the flood overlapped the publishes: sent {sent_before} → {sent_after}, \
         answered {replies_before} → {replies_after}"
    );
    assert!(
        took < Duration::from_secs(10),
        "events to the calm socket were slowed down: {took:?}"
    );
    calm.assert_alive().await;

    // The flooder's fate: never closed nor limited by the server. Every
    // frame was answered, and the only close is the answer to its own.
    stop.store(true, Ordering::Relaxed);
    let sent = flood.await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the flooder's connection ends after its close")
        .unwrap();
    assert_eq!(
        replies.load(Ordering::Relaxed),
        sent,
        "one reply per frame of the flood"
    );
    assert_eq!(
        close,
        Some(Some(1000)),
        "the server echoes the flooder's own close (1000)"
    );
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

/// `WEBSOCKET_MAX_BYTES` in the edge tests: the serialised frame, not `data`.
const MAX_BYTES: usize = 4096;

/// Subscribe `ws` to `channel` and return how many `x`s of `data` make the
/// frame the server sends for an API event `name` on it exactly `frame_len`
/// bytes long, measured from a probe event (the frame is
/// `{"event":…,"channel":…,"data":"…"}`, with `data` relayed byte for byte).
async fn data_len_for_frame(
    ws: &mut Ws,
    api: &Api,
    channel: &str,
    name: &str,
    frame_len: usize,
) -> usize {
    ws.subscribe(channel).await;
    api.publish(channel, name, "p").await;
    let probe = ws.expect_channel_event(name, channel).await;
    let envelope = probe.raw.len() - 1;
    frame_len - envelope
}

#[tokio::test]
async fn a_frame_of_exactly_max_bytes_is_delivered_one_byte_more_closes_4100() {
    let max = MAX_BYTES.to_string();
    let server = Server::start_app(&[
        ("WEBSOCKET_MAX_BYTES", max.as_str()),
        ("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL", "true"),
    ])
    .await;
    let api = server.api();
    let mut ws = server.connect().await;
    let n = data_len_for_frame(&mut ws, &api, "edge", "big", MAX_BYTES).await;

    // Idle socket, a frame of exactly the limit: delivered.
    api.publish("edge", "big", &"x".repeat(n)).await;
    let f = ws.expect_channel_event("big", "edge").await;
    assert_eq!(
        f.raw.len(),
        MAX_BYTES,
        "the frame is exactly WEBSOCKET_MAX_BYTES"
    );
    ws.assert_alive().await;

    // Idle socket, one byte over: nothing else is queued, so no later frame
    // would ever wake the session; it must still close with 4100.
    api.publish("edge", "big", &"x".repeat(n + 1)).await;
    let err = ws.expect_error(4100).await;
    assert!(
        err.raw.len() < 200,
        "the big frame itself is not sent: {}",
        err.raw
    );
    ws.expect_close(4100).await;
    api.wait_channel_info("edge", "subscription_count", |v| {
        v["occupied"] == false || v["subscription_count"] == 0
    })
    .await;
    let logs = server.logs();
    assert!(logs.contains("slow_consumer"), "{logs}");
}

#[tokio::test]
async fn drop_policy_drops_a_frame_one_byte_over_max_bytes_and_keeps_the_socket() {
    let max = MAX_BYTES.to_string();
    let mp = pick_port();
    let mps = mp.to_string();
    let server = Server::start_app(&[
        ("WEBSOCKET_MAX_BYTES", max.as_str()),
        ("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL", "false"),
        ("METRICS_ENABLED", "true"),
        ("METRICS_HOST", "127.0.0.1"),
        ("METRICS_PORT", mps.as_str()),
    ])
    .await;
    let api = server.api();
    let mut ws = server.connect().await;
    let n = data_len_for_frame(&mut ws, &api, "edge", "big", MAX_BYTES).await;
    let dropped = |text: &str| {
        metric(
            text,
            "sockudo_ws_messages_dropped_total",
            &[("app_id", APP_ID)],
        )
        .expect("ws_messages_dropped_total is exported")
    };
    assert_eq!(dropped(&scrape(mp).await), 0.0);

    api.publish("edge", "big", &"x".repeat(n)).await;
    let f = ws.expect_channel_event("big", "edge").await;
    assert_eq!(
        f.raw.len(),
        MAX_BYTES,
        "the frame is exactly WEBSOCKET_MAX_BYTES"
    );

    // One byte over: dropped, not closed. The next, smaller event is the
    // next frame the socket sees (same channel, same order).
    api.publish("edge", "big", &"x".repeat(n + 1)).await;
    api.publish("edge", "after", "1").await;
    let f = ws.expect_channel_event("after", "edge").await;
    assert_eq!(f.data_str(), "1");
    ws.assert_alive().await;
    assert_eq!(
        dropped(&scrape(mp).await),
        1.0,
        "the dropped frame is counted"
    );

    // The limit is not sticky: a frame of exactly the limit still arrives.
    api.publish("edge", "big", &"x".repeat(n)).await;
    let f = ws.expect_channel_event("big", "edge").await;
    assert_eq!(f.raw.len(), MAX_BYTES);
    let logs = server.logs();
    assert!(logs.contains("frames_dropped"), "{logs}");
    assert!(!logs.contains("slow_consumer"), "{logs}");
}

/// `WEBSOCKET_DISCONNECT_ON_BUFFER_FULL=false` with a frame limit: a client
/// that stops reading misses the frames that do not fit its queue, and keeps
/// its socket; what was queued, and later frames, arrive once it reads.
#[tokio::test]
async fn drop_policy_slow_consumer_misses_frames_and_keeps_its_socket() {
    const EVENTS: usize = 100;
    const MAX_MESSAGES: usize = 10;
    let mp = pick_port();
    let mps = mp.to_string();
    let max = MAX_MESSAGES.to_string();
    let server = Server::start_app(&[
        ("WEBSOCKET_MAX_MESSAGES", max.as_str()),
        ("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL", "false"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "200"),
        ("METRICS_ENABLED", "true"),
        ("METRICS_HOST", "127.0.0.1"),
        ("METRICS_PORT", mps.as_str()),
    ])
    .await;
    let api = server.api();
    let dropped = |text: &str| {
        metric(
            text,
            "sockudo_ws_messages_dropped_total",
            &[("app_id", APP_ID)],
        )
        .expect("ws_messages_dropped_total is exported") as usize
    };
    let mut slow = server.connect().await;
    slow.subscribe("firehose").await;

    // `slow` reads nothing while 100 events of 150 KB (15 MB, more than the
    // kernel buffers take) are published to it, numbered in their data.
    let pad = "d".repeat(150 * 1024);
    for batch in 0..EVENTS / 10 {
        let items: Vec<_> = (0..10)
            .map(|i| {
                let data = format!("{:03}:{pad}", batch * 10 + i);
                json!({"channel": "firehose", "name": "big", "data": data})
            })
            .collect();
        let r = api
            .post("/batch_events", &json!({ "batch": items }).to_string())
            .await;
        assert_eq!(r.status, 200, "{:?}", r.text);
    }
    // A publish answers once each frame was queued for the socket or
    // dropped, so the count is final.
    let lost = dropped(&scrape(mp).await);
    assert!(lost > 0, "the queue never filled: nothing was dropped");
    let kept = EVENTS - lost;
    assert!(
        kept >= MAX_MESSAGES,
        "a full queue's worth of frames is kept, got {kept}"
    );

    // Now it reads: exactly the frames that were kept, in order, no 4100.
    let mut last = None;
    for _ in 0..kept {
        let f = slow.recv_timeout(Duration::from_secs(20)).await;
        assert_eq!(f.event(), "big", "{}", &f.raw[..f.raw.len().min(200)]);
        let n: usize = f.data_str()[..3].parse().unwrap();
        assert!(last < Some(n), "frame {n} after frame {last:?}");
        last = Some(n);
    }
    // The socket is still open and later frames arrive.
    api.publish("firehose", "later", "1").await;
    let f = slow.expect_channel_event("later", "firehose").await;
    assert_eq!(f.data_str(), "1");
    slow.assert_alive().await;
    assert_eq!(dropped(&scrape(mp).await), lost, "nothing more was dropped");
    let logs = server.logs();
    assert!(logs.contains("frames_dropped"), "{logs}");
    assert!(!logs.contains("slow_consumer"), "{logs}");
}
