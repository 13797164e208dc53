//! Hostile input, end to end (issue 9: "make the class hard to reintroduce").
//!
//! Every shape of the outside security review's list goes to the real binary
//! over real sockets. Whatever the attacker gets back, after each shape:
//! - the server process is still running and `GET /up` answers 200;
//! - a bystander (another connection, subscribed to its own channel) gets a
//!   published event within 100 ms of the publish returning — the worst of
//!   several publishes, measured each time;
//! - the attacker subscribed to nothing (the channel stays unoccupied and a
//!   publish to it does not reach the attacker), signed in as nobody, and
//!   unsubscribed from nothing;
//! - the server's resident memory comes back to within 10 % of its level
//!   after a warm-up that drove the same code paths with benign input.
//!
//! Nothing here sleeps as a barrier: replies are awaited with timeouts, a
//! `pusher:ping` sent after a shape fences its replies (frames of one socket
//! are handled in order), memory and connection counts are polled against a
//! deadline.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message;

const BYSTANDER_CHANNEL: &str = "bystander";
/// A bystander's event arrives within this of the publish returning.
const LATENCY_BOUND: Duration = Duration::from_millis(100);
/// Publishes per bystander check; the worst one is held to the bound.
const PROBES: usize = 3;
/// Memory after an attack comes back to the baseline plus this share.
const RSS_SLACK_PERCENT: u64 = 10;
const RSS_DEADLINE: Duration = Duration::from_secs(10);
const PING: &str = r#"{"event":"pusher:ping","data":{}}"#;
/// `WEBSOCKET_MAX_PAYLOAD_KB` default, bytes.
const MAX_PAYLOAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// The watch: a server, its bystander, its memory.

struct Watch {
    server: Server,
    api: Api,
    pid: u32,
    bystander: Ws,
    seq: u64,
    baseline_kb: u64,
    worst_latency: Duration,
    checks: usize,
}

impl Watch {
    async fn start(env: &[(&str, &str)]) -> Watch {
        let server = Server::start_app(env).await;
        let pid = server.pid().expect("server running");
        let api = server.api();
        let mut bystander = server.connect().await;
        bystander.subscribe(BYSTANDER_CHANNEL).await;
        let mut watch = Watch {
            server,
            api,
            pid,
            bystander,
            seq: 0,
            baseline_kb: 0,
            worst_latency: Duration::ZERO,
            checks: 0,
        };
        watch.check("start").await;
        watch
    }

    /// Take the memory baseline (after the test's warm-up).
    async fn baseline(&mut self) {
        // The warm-up's sockets are closed: wait until their sessions ended.
        self.wait_connections(1, "after the warm-up").await;
        self.check_held("warm-up").await;
        self.baseline_kb = rss_kb(self.pid);
    }

    /// After a shape: the process is up, `/up` answers, the bystander gets
    /// each of [`PROBES`] publishes within [`LATENCY_BOUND`] of the publish
    /// returning, and (once the baseline is taken) memory is back.
    async fn check(&mut self, what: &str) {
        self.check_held(what).await;
        if self.baseline_kb > 0 {
            self.memory_returns(what).await;
        }
    }

    /// [`check`](Self::check) but for memory, while an attacker still holds
    /// what it may hold (sockets with unfinished messages, an attack under way).
    async fn check_held(&mut self, what: &str) {
        let worst = self.probe(what).await;
        assert!(
            worst < LATENCY_BOUND,
            "{what}: the bystander got a publish {worst:?} after it returned \
             (bound {LATENCY_BOUND:?})"
        );
    }

    /// [`check`](Self::check) without the bound: the worst latency.
    async fn probe(&mut self, what: &str) -> Duration {
        assert!(process_alive(self.pid), "{what}: the server process died");
        let up = http_get(&format!("{}/up", self.server.http_base())).await;
        assert_eq!(up.status, 200, "{what}: /up answered {up:?}");
        let mut worst = Duration::ZERO;
        for _ in 0..PROBES {
            self.seq += 1;
            let data = self.seq.to_string();
            self.api.publish(BYSTANDER_CHANNEL, "probe", &data).await;
            let published = Instant::now();
            let f = self.bystander.recv().await;
            let took = published.elapsed();
            assert_eq!(
                (f.event(), f.channel(), f.data_str()),
                ("probe", Some(BYSTANDER_CHANNEL), data.as_str()),
                "{what}: the bystander got {}",
                f.raw
            );
            worst = worst.max(took);
        }
        self.worst_latency = self.worst_latency.max(worst);
        self.checks += 1;
        worst
    }

    /// Resident memory comes back to within [`RSS_SLACK_PERCENT`] of the
    /// baseline before [`RSS_DEADLINE`].
    async fn memory_returns(&self, what: &str) {
        assert!(self.baseline_kb > 0, "no baseline taken");
        let limit = self.baseline_kb + self.baseline_kb * RSS_SLACK_PERCENT / 100;
        let deadline = Instant::now() + RSS_DEADLINE;
        loop {
            let now = rss_kb(self.pid);
            if now <= limit {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: the server's RSS stayed at {now} KiB, over {limit} KiB \
                     (baseline {} KiB + {RSS_SLACK_PERCENT} %), for {RSS_DEADLINE:?}",
                    self.baseline_kb
                );
            }
            tokio::time::sleep(ms(25)).await;
        }
    }

    /// Live connections as `/usage` counts them.
    async fn connections(&self) -> u64 {
        let r = http_get(&format!("{}/usage", self.server.http_base())).await;
        r.assert_ok()["connections"]
            .as_u64()
            .unwrap_or_else(|| panic!("/usage without connections: {}", r.text))
    }

    /// Every attacker's session has ended: `n` connections are left.
    async fn wait_connections(&self, n: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.connections().await;
            if now == n {
                return;
            }
            if Instant::now() > deadline {
                panic!("{what}: {now} connections still open, expected {n}");
            }
            tokio::time::sleep(ms(20)).await;
        }
    }

    /// The channels that have subscribers.
    async fn occupied_channels(&self) -> BTreeSet<String> {
        let v = self.api.get("/channels", &[]).await.assert_ok();
        v["channels"]
            .as_object()
            .unwrap_or_else(|| panic!("no channels object: {v}"))
            .keys()
            .cloned()
            .collect()
    }

    /// Memory back, then a line for the record (`--nocapture` shows it).
    async fn finish(self, name: &str) {
        self.memory_returns(name).await;
        eprintln!(
            "hostile {name}: RSS baseline {} KiB, peak (VmHWM) {} KiB, now {} KiB; \
             bystander worst {:?} over {} checks",
            self.baseline_kb,
            proc_status_kb(self.pid, "VmHWM").unwrap_or(0),
            rss_kb(self.pid),
            self.worst_latency,
            self.checks
        );
    }
}

// ---------------------------------------------------------------------------
// Shapes and what the server answers them

#[derive(Debug, Clone)]
enum Want {
    /// One `pusher:error` with this code.
    Error(u64),
    /// One `pusher:subscription_error` of this type on this channel.
    SubscriptionError(&'static str, String),
}

fn error(code: u64) -> Want {
    Want::Error(code)
}

fn sub_error(kind: &'static str, channel: &str) -> Want {
    Want::SubscriptionError(kind, channel.to_string())
}

fn shorten(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}… ({} bytes)", &text[..end], text.len())
    } else {
        text.to_string()
    }
}

/// `f` is the one reply `want` describes.
fn check_reply(text: &str, f: &Frame, want: &Want) {
    let what = shorten(text);
    match want {
        Want::Error(code) => {
            assert_eq!(f.event(), "pusher:error", "for {what}: got {}", f.raw);
            assert_eq!(f.json["data"]["code"], *code, "for {what}: got {}", f.raw);
            assert!(
                f.json["data"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "for {what}: no message in {}",
                f.raw
            );
            assert!(
                f.raw.len() < 512,
                "for {what}: the error echoes the input back ({} bytes)",
                f.raw.len()
            );
        }
        Want::SubscriptionError(kind, channel) => {
            assert_eq!(
                (f.event(), f.channel()),
                ("pusher:subscription_error", Some(channel.as_str())),
                "for {what}: got {}",
                shorten(&f.raw)
            );
            assert_eq!(f.json["data"]["type"], *kind, "for {what}: got {}", f.raw);
        }
    }
}

/// Send `text`, then a ping: exactly the reply `want` comes before the pong.
async fn refused(ws: &mut Ws, text: &str, want: &Want) {
    ws.send_text(text).await;
    ws.send_text(PING).await;
    let f = ws.recv().await;
    check_reply(text, &f, want);
    let f = ws.recv().await;
    assert_eq!(
        f.event(),
        "pusher:pong",
        "for {}: a second reply {}",
        shorten(text),
        shorten(&f.raw)
    );
}

/// Every shape at once, then every reply, in order.
async fn refused_in_bulk(ws: &mut Ws, shapes: &[(String, Want)]) {
    for (text, _) in shapes {
        ws.send_text(text).await;
    }
    for (text, want) in shapes {
        let f = ws.recv().await;
        check_reply(text, &f, want);
    }
}

fn subscribe_frame(data: Value) -> String {
    json!({"event": "pusher:subscribe", "data": data}).to_string()
}

fn signin_frame(socket_id: &str, user_data: &str) -> String {
    let auth = signin_auth(APP_KEY, APP_SECRET, socket_id, user_data);
    json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}).to_string()
}

fn presence_frame(socket_id: &str, channel: &str, channel_data: &str) -> String {
    let auth = presence_auth(APP_KEY, APP_SECRET, socket_id, channel, channel_data);
    subscribe_frame(json!({"channel": channel, "auth": auth, "channel_data": channel_data}))
}

/// Channels the shapes of [`wrong_shapes`] try to get into.
const TARGETS: [&str; 3] = ["chan", "private-chan", "presence-chan"];
/// Channels the attacker legitimately holds, which no shape may leave.
const HELD: [&str; 2] = ["held", "private-held"];

/// Every client frame shape with wrong types, duplicate keys, wrong names
/// and string-encoded data of the wrong shape, with the one reply each
/// gets. `sid` is the attacker's socket id (for the shapes whose signature
/// is valid, so that only the shape is wrong).
fn wrong_shapes(sid: &str) -> Vec<(String, Want)> {
    let private_auth = channel_auth(APP_KEY, APP_SECRET, sid, "private-chan");
    let cd = r#"{"user_id":"u1"}"#;
    let presence_auth = presence_auth(APP_KEY, APP_SECRET, sid, "presence-chan", cd);
    let user_data = r#"{"id":"u1"}"#;
    let signin = signin_auth(APP_KEY, APP_SECRET, sid, user_data);
    let long = "e".repeat(60_000);
    let mut shapes: Vec<(String, Want)> = Vec::new();
    let mut add = |text: String, want: Want| shapes.push((text, want));

    // Arrays where objects belong: once `"data":["chan"]` subscribed.
    for text in [
        r#"{"event":"pusher:subscribe","data":["chan"]}"#,
        r#"{"event":"pusher:subscribe","data":"[\"chan\"]"}"#,
        r#"{"event":"pusher:subscribe","data":["chan","",null]}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":["chan"]}}"#,
        r#"["pusher:subscribe",{"channel":"chan"}]"#,
        r#"["pusher:subscribe",null,{"channel":"chan"}]"#,
        r#"[{"event":"pusher:subscribe","data":{"channel":"chan"}}]"#,
        r#"["pusher:unsubscribe",{"channel":"held"}]"#,
        r#"["pusher:signin",{"auth":"k:s","user_data":"{}"}]"#,
        r#"["client-x","private-held",{}]"#,
        r#"{"event":"pusher:unsubscribe","data":["held"]}"#,
        r#"{"event":"pusher:unsubscribe","data":"[\"held\"]"}"#,
        r#"{"event":"pusher:unsubscribe","data":{"channel":["held"]}}"#,
        r#"{"event":"pusher:signin","data":["k:s","{\"id\":\"u1\"}"]}"#,
    ] {
        add(text.into(), error(4300));
    }
    add(
        json!({"event": "pusher:signin", "data": [signin, user_data]}).to_string(),
        error(4300),
    );
    add(
        json!({"event": "pusher:signin", "data": json!([signin, user_data]).to_string()})
            .to_string(),
        error(4300),
    );

    // Scalars (numbers, null, booleans), strings, objects in every field.
    let odd = [
        json!(5),
        json!(0),
        json!(-1.5e3),
        json!(null),
        json!(true),
        json!(false),
        json!({}),
        json!({"channel": "chan"}),
    ];
    for v in &odd {
        // top level
        add(v.to_string(), error(4300));
        // event name
        add(
            json!({"event": v, "data": {"channel": "chan"}}).to_string(),
            error(4300),
        );
        // subscribe: data, channel, auth, channel_data
        if !v.is_object() {
            add(
                json!({"event": "pusher:subscribe", "data": v}).to_string(),
                error(4300),
            );
            add(
                json!({"event": "pusher:unsubscribe", "data": v}).to_string(),
                error(4300),
            );
            add(
                json!({"event": "pusher:signin", "data": v}).to_string(),
                error(4300),
            );
        }
        add(subscribe_frame(json!({"channel": v})), error(4300));
        add(
            json!({"event": "pusher:unsubscribe", "data": {"channel": v}}).to_string(),
            error(4300),
        );
        if !v.is_null() {
            // null in an optional field is its absence (see below)
            add(
                subscribe_frame(json!({"channel": "private-chan", "auth": v})),
                error(4300),
            );
            add(
                subscribe_frame(
                    json!({"channel": "presence-chan", "auth": presence_auth, "channel_data": v}),
                ),
                error(4300),
            );
            add(
                json!({"event": "client-x", "channel": v, "data": {}}).to_string(),
                error(4300),
            );
            add(
                json!({"event": "pusher:subscribe", "channel": v, "data": {"channel": "chan"}})
                    .to_string(),
                error(4300),
            );
        }
        // signin: auth, user_data
        add(
            json!({"event": "pusher:signin", "data": {"auth": v, "user_data": user_data}})
                .to_string(),
            error(4300),
        );
        add(
            json!({"event": "pusher:signin", "data": {"auth": signin, "user_data": v}}).to_string(),
            error(4300),
        );
    }
    // A valid signature with a wrong type beside it is still refused.
    add(
        subscribe_frame(
            json!({"channel": "private-chan", "auth": private_auth, "channel_data": 5}),
        ),
        error(4300),
    );
    add(
        subscribe_frame(json!({"channel": "presence-chan", "auth": presence_auth,
                                "channel_data": {"user_id": "u1"}})),
        error(4300),
    );
    add(
        json!({"event": "pusher:signin", "data": {"auth": signin, "user_data": {"id": "u1"}}})
            .to_string(),
        error(4300),
    );
    add(
        json!({"event": "pusher:signin", "data": {"auth": [signin], "user_data": user_data}})
            .to_string(),
        error(4300),
    );
    // Missing pieces.
    for text in [
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","channel":"chan"}"#,
        r#"{"event":"pusher:subscribe","channel":"chan","data":{}}"#,
        r#"{"event":"pusher:unsubscribe","channel":"held"}"#,
        r#"{"event":"pusher:signin"}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
        r#"{"data":{"channel":"chan"}}"#,
        r#"{"channel":"chan"}"#,
        r#"{"channel":["chan"]}"#,
    ] {
        add(text.into(), error(4300));
    }
    add(
        json!({"event": "pusher:signin", "data": {"auth": signin}}).to_string(),
        error(4300),
    );
    add(
        json!({"event": "pusher:signin", "data": {"user_data": user_data}}).to_string(),
        error(4300),
    );

    // Duplicate keys, also spelled with escapes.
    for text in [
        r#"{"event":"pusher:subscribe","data":{"channel":"chan","channel":"chan"}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"x","channel":"chan"}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"chan"},"data":{"channel":"chan"}}"#,
        r#"{"event":"pusher:ping","event":"pusher:subscribe","data":{"channel":"chan"}}"#,
        r#"{"event":"pusher:subscribe","\u0065vent":"pusher:subscribe","data":{"channel":"chan"}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"chan","\u0063hannel":"chan"}}"#,
        r#"{"event":"pusher:subscribe","data":"{\"channel\":\"chan\",\"channel\":\"chan\"}"}"#,
        r#"{"event":"pusher:subscribe","channel":"chan","channel":"chan","data":{"channel":"chan"}}"#,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"held","channel":"held"}}"#,
        r#"{"event":"client-x","channel":"private-held","channel":"private-held","data":{}}"#,
        r#"{"event":"client-x","channel":"private-held","data":{},"data":{}}"#,
    ] {
        add(text.into(), error(4300));
    }
    add(
        subscribe_frame(json!({"channel": "private-chan", "auth": private_auth})).replacen(
            "\"auth\"",
            "\"auth\":\"k:s\",\"auth\"",
            1,
        ),
        error(4300),
    );
    add(
        json!({"event": "pusher:signin", "data": {"auth": signin, "user_data": user_data}})
            .to_string()
            .replacen("\"auth\"", "\"auth\":\"k:s\",\"auth\"", 1),
        error(4300),
    );

    // Unknown and misspelled event names, and very long ones.
    for name in [
        "pusher:subscrib",
        "Pusher:subscribe",
        "PUSHER:SUBSCRIBE",
        "pusher:Subscribe",
        "pusher:subscribe ",
        " pusher:subscribe",
        "pusher:subscribe\n",
        "pusher:subscribe\u{0}",
        "pusher:subscr\u{0456}be",
        "pusher_internal:subscription_succeeded",
        "pusher_internal:member_added",
        "pusher:signin ",
        "pusher:signIn",
        "pusher:unsubscribe ",
        "pusher:",
        "pusher",
        "",
        "client",
        "Client-x",
        "subscribe",
    ] {
        add(
            json!({"event": name, "data": {"channel": "chan"}}).to_string(),
            error(4300),
        );
    }
    for name in [
        format!("pusher:subscribe{long}"),
        format!("pusher:{long}"),
        long.clone(),
        format!("{long}pusher:subscribe"),
    ] {
        add(
            json!({"event": name, "data": {"channel": "chan"}}).to_string(),
            error(4300),
        );
    }
    // a long client event name: refused as a client event (4301)
    add(
        json!({"event": format!("client-{long}"), "channel": "private-held", "data": {}})
            .to_string(),
        error(4301),
    );

    // `data` as string-encoded JSON of the wrong shape.
    for inner in [
        "42",
        "null",
        "true",
        "\"chan\"",
        "\"{\\\"channel\\\":\\\"chan\\\"}\"",
        "{\"channel\":5}",
        "{\"channel\":null}",
        "{\"channel\":[\"chan\"]}",
        "{\"channel\":{\"channel\":\"chan\"}}",
        "[\"chan\"]",
        "",
        " ",
        "{",
        "{\"channel\":\"chan\"} trailing",
        "{\"channel\":\"chan\"}{}",
    ] {
        for event in ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin"] {
            add(
                json!({"event": event, "data": inner}).to_string(),
                error(4300),
            );
        }
    }

    // Channel names that are not channel names: InvalidChannel.
    for channel in [
        String::new(),
        " ".into(),
        "chan nel".into(),
        "chan\u{0}".into(),
        "ch\u{e4}n".into(),
        "chan/../held".into(),
        "#server-to-user-".into(),
        "x".repeat(201),
        "x".repeat(5_000),
    ] {
        add(
            subscribe_frame(json!({"channel": channel})),
            sub_error("InvalidChannel", &channel),
        );
    }

    // null in an optional field is the field's absence, which grants
    // nothing: the channel still needs its signature.
    add(
        subscribe_frame(json!({"channel": "private-chan", "auth": null})),
        sub_error("AuthError", "private-chan"),
    );
    add(
        subscribe_frame(json!({"channel": "presence-chan", "auth": presence_auth,
                                "channel_data": null})),
        sub_error("AuthError", "presence-chan"),
    );
    add(
        json!({"event": "client-x", "channel": null, "data": {}}).to_string(),
        error(4301),
    );
    add(
        json!({"event": "client-x", "data": {}}).to_string(),
        error(4301),
    );

    // Well-formed, validly signed sign-ins whose user_data is the wrong
    // shape: refused (4009), nobody signed in.
    for ud in [
        r#"{"id":5}"#,
        r#"{"id":null}"#,
        r#"{"id":["u1"]}"#,
        r#"{"id":""}"#,
        r#"["u1"]"#,
        r#""{\"id\":\"u1\"}""#,
        r#"{"id":"u1","id":"u2"}"#,
        r#"42"#,
        r#"null"#,
        "",
    ] {
        add(signin_frame(sid, ud), error(4009));
    }
    shapes
}

// ---------------------------------------------------------------------------
// 1. Wrong types, wrong names, wrong shapes

#[tokio::test]
async fn every_wrong_shape_gets_one_error_and_subscribes_nothing() {
    let mut w = Watch::start(&[]).await;
    const ROUNDS: usize = 12;

    // Warm-up: two sockets (one per worker thread) drive the same paths
    // with valid frames of the same sizes.
    let pad = "p".repeat(60_000);
    let mut warmed = Vec::new();
    for _ in 0..2 {
        let mut warm = w.server.connect().await;
        warm.subscribe_private("private-warm").await;
        for round in 0..ROUNDS {
            let ch = format!("warm-{round}");
            warm.subscribe(&ch).await;
            warm.unsubscribe(&ch).await;
            warm.signin(r#"{"id":"warm"}"#).await;
            for _ in 0..8 {
                warm.send_json(json!({"event": "pusher:ping", "data": {"pad": pad}}))
                    .await;
                warm.expect_event("pusher:pong").await;
            }
            warm.client_event("private-warm", "client-warm", json!({"pad": pad}))
                .await;
            for _ in 0..100 {
                warm.send_text(PING).await;
            }
            for _ in 0..100 {
                warm.expect_event("pusher:pong").await;
            }
        }
        warmed.push(warm);
    }
    close_all(warmed).await;
    w.baseline().await;

    // The attacker holds two channels legitimately; a witness on one of
    // them sees any client event that gets through.
    let mut a = w.server.connect().await;
    a.subscribe("held").await;
    a.subscribe_private("private-held").await;
    let mut relay = w.server.connect().await;
    relay.subscribe_private("private-held").await;

    let shapes = wrong_shapes(&a.socket_id);
    assert!(shapes.len() > 200, "{} shapes", shapes.len());
    // Each shape alone, its replies fenced by a ping.
    for (text, want) in &shapes {
        refused(&mut a, text, want).await;
        w.check(&shorten(text)).await;
    }
    w.check("after every shape").await;

    // Nothing was subscribed, unsubscribed, signed in or relayed.
    for channel in TARGETS {
        let info = w.api.channel_info(channel, "").await;
        assert_eq!(info["occupied"], false, "{channel}: {info}");
    }
    let occupied = w.occupied_channels().await;
    let expected: BTreeSet<String> = [BYSTANDER_CHANNEL, HELD[0], HELD[1]]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        occupied, expected,
        "only the legitimate subscriptions exist"
    );
    let mut witness = w.server.connect().await;
    witness.subscribe("chan").await;
    witness.subscribe_private("private-chan").await;
    witness
        .subscribe_presence("presence-chan", "w", json!({}))
        .await;
    for channel in TARGETS {
        w.api.publish(channel, "leak", "1").await;
        witness.expect_channel_event("leak", channel).await;
    }
    // The witness has the publishes; had the attacker been subscribed, its
    // copies would be queued ahead of this pong.
    a.assert_alive().await;
    for channel in HELD {
        w.api.publish(channel, "still-held", "1").await;
        a.expect_channel_event("still-held", channel).await;
    }
    relay
        .expect_channel_event("still-held", "private-held")
        .await;
    a.send_subscribe(json!({"channel": "#server-to-user-u1"}))
        .await;
    a.expect_subscription_error("#server-to-user-u1", "AuthError", 401)
        .await;
    a.client_event("private-held", "client-ok", json!({})).await;
    relay
        .expect_channel_event("client-ok", "private-held")
        .await;

    // Again and again, pipelined, to make any per-frame leak visible.
    for round in 0..ROUNDS {
        refused_in_bulk(&mut a, &shapes).await;
        w.check(&format!("bulk round {round}")).await;
    }
    a.assert_alive().await;
    relay.assert_alive().await;
    assert_eq!(w.occupied_channels().await.len(), 6);
    close_all(vec![a, relay, witness]).await;
    w.wait_connections(1, "attacker closed").await;
    w.check("after the bulk rounds").await;
    w.finish("wrong shapes").await;
}

// ---------------------------------------------------------------------------
// 2. Deep nesting

/// `[[[…]]]`, `depth` levels.
fn arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `{"a":{"a":…1…}}`, `depth` levels.
fn objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// `text` as a JSON string token.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The next text frame as sent, for frames nested deeper than the test's
/// own JSON parser (serde_json, 128 levels) reads.
async fn recv_text(ws: &mut Ws) -> String {
    loop {
        match ws.recv_message(RECV_TIMEOUT).await {
            Some(Message::Text(t)) => return t,
            Some(Message::Ping(_)) | Some(Message::Pong(_)) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

const DEPTH: usize = 10_000;

/// Subscribe to a private cache channel and read past what follows the
/// success: `pusher:cache_miss` or the cached event.
async fn subscribe_cache(ws: &mut Ws, channel: &str) {
    ws.subscribe_private(channel).await;
    recv_text(ws).await;
}

#[tokio::test]
async fn deeply_nested_json_neither_overflows_nor_gets_through() {
    // Room for 100,000 levels of arrays and 10,000 of objects, escaped.
    let mut w = Watch::start(&[
        ("WEBSOCKET_MAX_PAYLOAD_KB", "512"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "512"),
        ("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB", "512"),
    ])
    .await;
    let arr = arrays(DEPTH);
    let obj = objects(DEPTH);
    let huge = arrays(100_000);

    // Warm-up: the same paths and sizes, flat. What the largest requests
    // needed stays with the allocator, so the warm-up goes as large as the
    // attack: 200 KB frames, 20 KB members and cached events, 600 KB bodies.
    let flat = |n: usize| json!({ "pad": "p".repeat(n) });
    for _ in 0..2 {
        let mut warm = w.server.connect().await;
        let mut peer = w.server.connect().await;
        subscribe_cache(&mut peer, "private-cache-warm").await;
        subscribe_cache(&mut warm, "private-cache-warm").await;
        peer.subscribe_presence("presence-warm", "peer", json!({}))
            .await;
        warm.subscribe_presence("presence-warm", "warm", flat(DEPTH * 2))
            .await;
        peer.expect_event("pusher_internal:member_added").await;
        warm.signin(&json!({"id": "warm", "pad": "p".repeat(DEPTH * 2)}).to_string())
            .await;
        for size in [DEPTH * 2, DEPTH * 6, DEPTH * 7, 200_000] {
            warm.send_json(json!({"event": "pusher:ping", "data": flat(size)}))
                .await;
            warm.expect_event("pusher:pong").await;
            warm.client_event("private-cache-warm", "client-warm", flat(size))
                .await;
            peer.expect_event("client-warm").await;
        }
        let mut late = w.server.connect().await;
        subscribe_cache(&mut late, "private-cache-warm").await;
        let info = w.api.channel_info("private-cache-warm", "cache").await;
        assert_eq!(info["cache"]["event"], "client-warm", "{info}");
        peer.subscribe("warm-http").await;
        for (path, data, pad) in [
            ("/events", 200_000, 0),
            ("/events", 500_000, 100_000),
            ("/batch_events", 300_000, 300_000),
        ] {
            let event = json!({"name": "warm", "channel": "warm-http",
                               "data": "d".repeat(data), "pad": "p".repeat(pad)});
            let body = if path == "/events" {
                event
            } else {
                json!({ "batch": [event] })
            };
            w.api.post(path, &body.to_string()).await.assert_ok();
            peer.expect_channel_event("warm", "warm-http").await;
        }
        close_all(vec![warm, peer, late]).await;
    }
    w.baseline().await;

    let mut a = w.server.connect().await;
    let sid = a.socket_id.clone();
    let cd = |user_id: &str| format!(r#"{{"user_id":{user_id}}}"#);
    let mut shapes: Vec<(String, Want)> = vec![
        (arr.clone(), error(4300)),
        (huge.clone(), error(4300)),
        (obj.clone(), error(4300)),
        (
            format!(r#"{{"event":{arr},"data":{{"channel":"chan"}}}}"#),
            error(4300),
        ),
        (
            format!(r#"{{"event":{obj},"data":{{"channel":"chan"}}}}"#),
            error(4300),
        ),
        (
            format!(r#"{{"event":"client-x","channel":{arr},"data":{{}}}}"#),
            error(4300),
        ),
    ];
    for event in ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin"] {
        for data in [&arr, &huge, &obj] {
            shapes.push((
                format!(r#"{{"event":"{event}","data":{data}}}"#),
                error(4300),
            ));
            shapes.push((
                format!(r#"{{"event":"{event}","data":{}}}"#, quoted(data)),
                error(4300),
            ));
        }
    }
    for field in ["channel", "auth", "channel_data"] {
        for data in [&arr, &obj] {
            let payload = if field == "channel" {
                format!(r#"{{"channel":{data}}}"#)
            } else {
                format!(r#"{{"channel":"presence-chan","{field}":{data}}}"#)
            };
            shapes.push((
                format!(r#"{{"event":"pusher:subscribe","data":{payload}}}"#),
                error(4300),
            ));
        }
    }
    // Validly signed, the depth inside the string-encoded JSON: the user
    // id is read with serde_json's recursion limit (128), which refuses it.
    for deep in [&arr, &obj] {
        shapes.push((
            signin_frame(&sid, &format!(r#"{{"id":{deep}}}"#)),
            error(4009),
        ));
        shapes.push((
            presence_frame(&sid, "presence-chan", &cd(deep)),
            sub_error("AuthError", "presence-chan"),
        ));
    }
    for (text, want) in &shapes {
        refused(&mut a, text, want).await;
        w.check(&shorten(text)).await;
    }
    for channel in TARGETS {
        let info = w.api.channel_info(channel, "").await;
        assert_eq!(info["occupied"], false, "{channel}: {info}");
    }
    a.send_subscribe(json!({"channel": "#server-to-user-u1"}))
        .await;
    a.expect_subscription_error("#server-to-user-u1", "AuthError", 401)
        .await;

    // Deep where any JSON is allowed is carried, not choked on: fields
    // nobody reads, user_info, a client event's data, an API event's data.
    a.send_text(&format!(
        r#"{{"event":"pusher:ping","data":{{}},"x":{huge}}}"#
    ))
    .await;
    a.expect_event("pusher:pong").await;
    a.send_text(&format!(
        r#"{{"event":"pusher:subscribe","data":{{"channel":"deep-ok","x":{obj}}}}}"#
    ))
    .await;
    a.expect_channel_event("pusher_internal:subscription_succeeded", "deep-ok")
        .await;
    let user_data = format!(r#"{{"id":"u-deep","x":{arr}}}"#);
    a.send_text(&signin_frame(&sid, &user_data)).await;
    let f = a.expect_event("pusher:signin_success").await;
    assert_eq!(f.json["data"]["user_data"], user_data.as_str());

    let mut peer = w.server.connect().await;
    peer.subscribe_presence("presence-deep", "peer", json!({}))
        .await;
    let member = format!(r#"{{"user_id":"u-deep","user_info":{arr}}}"#);
    a.send_text(&presence_frame(&sid, "presence-deep", &member))
        .await;
    let f = a
        .expect_channel_event("pusher_internal:subscription_succeeded", "presence-deep")
        .await;
    assert!(f.data_str().contains(&arr), "the roster carries user_info");
    let f = peer
        .expect_channel_event("pusher_internal:member_added", "presence-deep")
        .await;
    assert!(
        f.data_str().contains(&arr),
        "member_added carries user_info"
    );

    subscribe_cache(&mut peer, "private-cache-deep").await;
    subscribe_cache(&mut a, "private-cache-deep").await;
    let sent = format!(r#"{{"event":"client-deep","channel":"private-cache-deep","data":{arr}}}"#);
    a.send_text(&sent).await;
    let got = recv_text(&mut peer).await;
    assert!(
        got.starts_with(r#"{"event":"client-deep","channel":"private-cache-deep","data":"#)
            && got.contains(&arr),
        "client event data relayed as sent: {}",
        shorten(&got)
    );
    // The cache keeps it: a late subscriber gets it replayed, the API shows it.
    let mut late = w.server.connect().await;
    late.subscribe_private("private-cache-deep").await;
    assert_eq!(recv_text(&mut late).await, got, "cache replay");
    let r = w
        .api
        .get("/channels/private-cache-deep", &[("info", "cache")])
        .await;
    assert_eq!(r.status, 200, "{}", shorten(&r.text));
    assert!(
        r.text.contains(r#""event":"client-deep""#) && r.text.contains(&arr),
        "the API shows the cached event: {}",
        shorten(&r.text)
    );

    // HTTP API bodies.
    peer.subscribe("deep-http").await;
    let r = w
        .api
        .post(
            "/events",
            &format!(r#"{{"name":"deep","channel":"deep-http","data":{huge}}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", shorten(&r.text));
    let f = peer.expect_channel_event("deep", "deep-http").await;
    assert_eq!(f.data_str(), huge, "non-string data is relayed as its text");
    let r = w
        .api
        .post(
            "/events",
            &format!(r#"{{"name":"deep2","channel":"deep-http","data":"x","x":{obj}}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", shorten(&r.text));
    peer.expect_channel_event("deep2", "deep-http").await;
    let deep_obj = objects(100_000);
    for (path, body) in [
        ("/events", huge.clone()),
        ("/events", deep_obj.clone()),
        (
            "/events",
            format!(r#"{{"name":{huge},"channel":"chan","data":"x"}}"#),
        ),
        (
            "/events",
            format!(r#"{{"name":"e","channels":{huge},"data":"x"}}"#),
        ),
        (
            "/events",
            format!(r#"{{"name":"e","channel":{deep_obj},"data":"x"}}"#),
        ),
        ("/batch_events", huge.clone()),
        ("/batch_events", format!(r#"{{"batch":{huge}}}"#)),
        ("/batch_events", format!(r#"{{"batch":[{deep_obj}]}}"#)),
    ] {
        let r = w.api.post(path, &body).await;
        assert_eq!(
            r.status,
            400,
            "{path} {}: {}",
            shorten(&body),
            shorten(&r.text)
        );
        r.assert_error(400, "invalid_input");
        w.check(&format!("POST {path} {}", shorten(&body))).await;
    }
    a.assert_alive().await;
    close_all(vec![a, peer, late]).await;
    w.wait_connections(1, "attacker closed").await;
    w.check("after nesting").await;
    w.finish("nesting").await;
}

// ---------------------------------------------------------------------------
// 3. Text that is not UTF-8, binary that pretends to be text

fn text_frame(bytes: &[u8], fin: bool) -> Message {
    Message::Frame(WsFrame::message(
        bytes.to_vec(),
        OpCode::Data(Data::Text),
        fin,
    ))
}

fn binary_frame(bytes: &[u8], fin: bool) -> Message {
    Message::Frame(WsFrame::message(
        bytes.to_vec(),
        OpCode::Data(Data::Binary),
        fin,
    ))
}

fn continuation(bytes: &[u8], fin: bool) -> Message {
    Message::Frame(WsFrame::message(
        bytes.to_vec(),
        OpCode::Data(Data::Continue),
        fin,
    ))
}

/// Send `bytes` as one message in fragments cut at `cuts`, text or binary.
async fn send_fragmented(ws: &mut Ws, bytes: &[u8], cuts: &[usize], text: bool) {
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.to_vec();
    ends.push(bytes.len());
    for (i, &end) in ends.iter().enumerate() {
        let part = &bytes[start..end];
        let fin = i + 1 == ends.len();
        let m = match (i, text) {
            (0, true) => text_frame(part, fin),
            (0, false) => binary_frame(part, fin),
            _ => continuation(part, fin),
        };
        ws.send_message(m).await;
        start = end;
    }
}

/// Byte strings that are not UTF-8, in and around otherwise valid frames.
fn not_utf8() -> Vec<Vec<u8>> {
    let ping = |bad: &[u8]| {
        [
            br#"{"event":"pusher:ping","data":{"x":""#.as_slice(),
            bad,
            br#""}}"#.as_slice(),
        ]
        .concat()
    };
    let mut long = br#"{"event":"pusher:subscribe","data":{"channel":"chan","x":""#.to_vec();
    long.extend(std::iter::repeat_n(b'x', 60_000));
    long.extend_from_slice(&[0xff, b'"', b'}', b'}']);
    vec![
        vec![b'{', 0xff, 0xfe, b'}'],
        vec![0xff],
        vec![0x80],
        ping(&[0xc0, 0xaf]),             // overlong '/'
        ping(&[0xed, 0xa0, 0x80]),       // a UTF-16 surrogate
        ping(&[0xf4, 0x90, 0x80, 0x80]), // past U+10FFFF
        ping(&[0xe2, 0x82]),             // a character cut short
        [
            br#"{"event":"pusher:ping"}"#.as_slice(),
            &[0xf0, 0x9f, 0x98],
        ]
        .concat(),
        long,
    ]
}

#[tokio::test]
async fn invalid_utf8_closes_1007_and_binary_is_refused_however_fragmented() {
    let mut w = Watch::start(&[]).await;
    let valid = r#"{"event":"pusher:ping","data":{"x":"é€😀 ok"}}"#.as_bytes();
    let mut warmed = Vec::new();
    for _ in 0..20 {
        let mut warm = w.server.connect().await;
        warm.send_message(text_frame(valid, true)).await;
        warm.expect_event("pusher:pong").await;
        send_fragmented(&mut warm, valid, &[10, 20], true).await;
        warm.expect_event("pusher:pong").await;
        warmed.push(warm);
    }
    close_all(warmed).await;
    w.baseline().await;

    // RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection
    // with 1007 — in one frame or in several.
    for bytes in not_utf8() {
        let what = shorten(&String::from_utf8_lossy(&bytes));
        let mut a = w.server.connect().await;
        a.send_message(text_frame(&bytes, true)).await;
        a.expect_close(1007).await;
        w.check(&format!("one frame {what}")).await;

        let mut a = w.server.connect().await;
        let cuts: Vec<usize> = [1, bytes.len() / 2]
            .into_iter()
            .filter(|&c| c > 0 && c < bytes.len())
            .collect();
        send_fragmented(&mut a, &bytes, &cuts, true).await;
        a.expect_close(1007).await;
        w.check(&format!("fragmented {what}")).await;
    }

    // Valid UTF-8 cut inside its characters is whole again once joined.
    let mut a = w.server.connect().await;
    for cut in 36..valid.len() - 8 {
        send_fragmented(&mut a, valid, &[cut], true).await;
        a.expect_event("pusher:pong").await;
    }

    // A binary message is refused (4300) whether it comes in one frame or
    // in fragments, and what it says is not acted on.
    let subscribe = br#"{"event":"pusher:subscribe","data":{"channel":"chan"}}"#;
    a.send_message(binary_frame(subscribe, true)).await;
    a.expect_error(4300).await;
    for cuts in [vec![1], vec![20], vec![1, 2, 3, 40]] {
        send_fragmented(&mut a, subscribe, &cuts, false).await;
        a.expect_error(4300).await;
    }
    a.assert_alive().await;
    let info = w.api.channel_info("chan", "").await;
    assert_eq!(
        info["occupied"], false,
        "a binary subscribe subscribed: {info}"
    );
    w.check("binary").await;
    close_all(vec![a]).await;
    w.wait_connections(1, "attackers closed").await;
    w.finish("utf-8").await;
}

// ---------------------------------------------------------------------------
// 4. Oversized frames

/// Write `total` bytes of payload after a frame header already sent, in
/// 16 KiB chunks, until done or the server is gone; bytes written.
async fn stream_payload(ws: &mut Ws, total: usize) -> usize {
    let chunk = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        if ws.write_raw(&chunk[..n]).await.is_err() {
            break;
        }
        sent += n;
    }
    sent
}

#[tokio::test]
async fn oversized_frames_close_1009_without_being_buffered() {
    let mut w = Watch::start(&[]).await;
    let under =
        json!({"event": "pusher:ping", "data": {"pad": "p".repeat(MAX_PAYLOAD - 100)}}).to_string();
    assert!(under.len() <= MAX_PAYLOAD);
    let mut warmed = Vec::new();
    for _ in 0..10 {
        let mut warm = w.server.connect().await;
        for _ in 0..4 {
            warm.send_text(&under).await;
            warm.expect_event("pusher:pong").await;
        }
        warmed.push(warm);
    }
    close_all(warmed).await;
    w.baseline().await;

    // A 2 MB frame: the offender is closed with 1009, nobody else notices.
    let huge = json!({"event": "pusher:subscribe", "data": {"channel": "chan", "pad": "p".repeat(2 << 20)}})
        .to_string();
    for _ in 0..3 {
        let mut a = w.server.connect().await;
        let _ = a.try_send_text(&huge).await;
        a.expect_close(1009).await;
        w.check("2 MB frame").await;
    }
    w.memory_returns("2 MB frames").await;

    // A frame whose header announces more than the limit is refused on the
    // header: the 1009 comes before the payload does, so the server neither
    // waits for it nor keeps it. Then each attacker streams 8 MiB anyway;
    // while they are all still connected, memory stays put.
    let mut attackers = Vec::new();
    for declared in [MAX_PAYLOAD as u64 + 1, 2 << 20, 1 << 30, 1 << 62] {
        let mut a = w.server.connect().await;
        a.write_raw(&client_frame_header(true, 0x1, declared))
            .await
            .expect("write the header");
        a.write_raw(&[b'x'; 1024]).await.expect("write 1 KiB");
        a.expect_close(1009).await;
        stream_payload(&mut a, 8 << 20).await;
        w.check(&format!("frame announced at {declared} bytes"))
            .await;
        attackers.push(a);
    }
    w.memory_returns("announced-oversized frames, attackers still connected")
        .await;
    drop(attackers);

    // The top bit of a 64-bit length is not allowed at all.
    let mut a = w.server.connect().await;
    let _ = a.write_raw(&client_frame_header(true, 0x1, 1 << 63)).await;
    a.expect_close(1009).await;

    // Fragments count together: each under the limit, the message over it.
    let mut a = w.server.connect().await;
    let part = vec![b' '; 40 * 1024];
    a.send_message(text_frame(
        br#"{"event":"pusher:ping","data":{},"x":""#,
        false,
    ))
    .await;
    a.send_message(continuation(&part, false)).await;
    let _ = a.write_raw(&client_frame(false, 0x0, &part)).await;
    a.expect_close(1009).await;
    let mut a = w.server.connect().await;
    a.send_message(text_frame(b"[", false)).await;
    let small = vec![b' '; 1024];
    for _ in 0..70 {
        if a.write_raw(&client_frame(false, 0x0, &small))
            .await
            .is_err()
        {
            break;
        }
    }
    a.expect_close(1009).await;
    w.check("fragments over the limit").await;
    w.wait_connections(1, "attackers closed").await;
    w.finish("oversized").await;
}

// ---------------------------------------------------------------------------
// 5. Fragmented messages never finished

/// A WebSocket ping (a control frame, allowed between fragments) is answered.
async fn control_ping(ws: &mut Ws) {
    ws.send_message(Message::Ping(b"still".to_vec())).await;
    match ws.recv_message(RECV_TIMEOUT).await {
        Some(Message::Pong(p)) => assert_eq!(p, b"still"),
        other => panic!("expected the pong, got {other:?}"),
    }
}

#[tokio::test]
async fn fragmented_messages_never_finished_hold_only_what_they_sent() {
    let mut w = Watch::start(&[]).await;
    let piece = vec![b' '; 2 * 1024];
    let frame_of = |n: usize| -> Vec<u8> {
        let mut m = br#"{"event":"pusher:ping","data":{},"x":""#.to_vec();
        m.extend(std::iter::repeat_n(b'x', n));
        m.extend_from_slice(br#""}"#);
        m
    };
    // Warm-up: twenty messages in fragments at once, as the attack holds
    // them, then finished, then the sockets vanish as the attack's do.
    // Rounds until the allocator's share has settled (it keeps part of each
    // round's peak; it does not grow round after round).
    let whole = frame_of(62 * 1024);
    let (first, rest) = whole.split_at(2 * 1024);
    for _ in 0..3 {
        let mut warm: Vec<Ws> = Vec::new();
        for _ in 0..20 {
            let mut s = w.server.connect().await;
            s.send_message(text_frame(first, false)).await;
            for part in rest.chunks(2 * 1024) {
                s.send_message(continuation(part, false)).await;
            }
            control_ping(&mut s).await;
            warm.push(s);
        }
        for s in &mut warm {
            s.send_message(continuation(b"", true)).await;
            s.expect_event("pusher:pong").await;
        }
        drop(warm);
        w.wait_connections(1, "warm-up sockets gone").await;
    }
    w.baseline().await;

    // A message left open: the socket still answers pings (control frames
    // may come between fragments) and everyone else is served.
    let mut a = w.server.connect().await;
    a.send_message(text_frame(
        br#"{"event":"pusher:subscribe","data":{"channel":"chan""#,
        false,
    ))
    .await;
    control_ping(&mut a).await;
    w.check("a message left open").await;
    // A new message before the last one ended is a protocol error.
    a.send_text(PING).await;
    a.expect_close(1002).await;
    drop(a);
    // So is a continuation of nothing.
    let mut a = w.server.connect().await;
    a.send_message(continuation(b"}", true)).await;
    a.expect_close(1002).await;
    drop(a);
    // A server-initiated close counts until its TCP connection is gone
    // (at most the 1 s wait for the client's close frame).
    w.wait_connections(1, "the two 1002 sockets closed").await;

    // Twenty sockets each leave 62 KiB of a message unfinished, then
    // vanish without a close frame.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = w.server.connect().await;
        s.send_message(text_frame(&piece, false)).await;
        for _ in 0..30 {
            s.send_message(continuation(&piece, false)).await;
        }
        control_ping(&mut s).await;
        held.push(s);
    }
    assert_eq!(w.connections().await, 21);
    w.check_held("20 unfinished messages held").await;
    assert_eq!(w.api.channel_info("chan", "").await["occupied"], false);
    drop(held);
    w.wait_connections(1, "the holders vanished").await;
    w.check("the holders vanished").await;
    w.finish("unfinished fragments").await;
}

// ---------------------------------------------------------------------------
// 6. HTTP: oversized heads, a thousand query parameters

/// Close sockets all at once: each close waits out the server's shutdown
/// of the connection (actix's client disconnect timeout, about 1 s).
async fn close_all(sockets: Vec<Ws>) {
    futures_util::future::join_all(sockets.into_iter().map(Ws::close)).await;
}

fn app_path() -> String {
    format!("/app/{APP_KEY}?protocol=7&client=rust&version=1.0")
}

/// See [`exchange_raw`].
async fn exchange(port: u16, request: &[u8]) -> (u16, String) {
    exchange_raw(port, request).await
}

/// `head` with `fields` added before its closing blank line.
fn with_fields(head: &str, fields: &[(String, String)]) -> String {
    let extra: String = fields
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    format!("{}{extra}\r\n", head.strip_suffix("\r\n").expect("a head"))
}

/// A signed `POST /events` to `channel`, with extra header fields.
fn publish_request(api: &Api, channel: &str, fields: &[(String, String)]) -> Vec<u8> {
    let body = json!({"name": "e", "channel": channel, "data": "d"}).to_string();
    let target = api.signed_target(
        "POST",
        &api.path("/events"),
        &[],
        body.as_bytes(),
        &Sign::default(),
    );
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [with_fields(&head, fields).as_bytes(), body.as_bytes()].concat()
}

/// `n` fields `X-Pad-i` sharing `total` bytes of value.
fn pads(n: usize, total: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("X-Pad-{i}"), "p".repeat(total / n)))
        .collect()
}

#[tokio::test]
async fn oversized_heads_and_a_thousand_parameters_are_answered() {
    let mut w = Watch::start(&[]).await;
    let port = w.server.port;
    let api = w.server.api();
    let upgrade = upgrade_request(&app_path());
    let short: Vec<String> = (0..1000).map(|i| format!("p{i}")).collect();
    let short_query: Vec<(&str, &str)> = short.iter().map(|k| (k.as_str(), "v")).collect();
    let under = pads(1, 15 * 1024);
    for _ in 0..5 {
        let (status, body) = exchange(port, &publish_request(&api, "warm", &under)).await;
        assert_eq!((status, body.as_str()), (200, "{}"));
        let (status, _) = exchange(port, with_fields(&upgrade, &under).as_bytes()).await;
        assert_eq!(status, 101);
        api.get("/channels", &short_query).await.assert_ok();
    }
    w.baseline().await;

    // 64 KiB of header fields on a signed publish: 431 with the JSON body,
    // and the event is not published.
    let mut sub = w.server.connect().await;
    sub.subscribe("head").await;
    for fields in [pads(1, 64 * 1024), pads(4, 64 * 1024), pads(64, 64 * 1024)] {
        let what = format!("publish with {} fields of 64 KiB", fields.len());
        let (status, body) = exchange(port, &publish_request(&api, "head", &fields)).await;
        assert_431_json(status, &body, &what);
        w.check(&what).await;
    }
    api.publish("head", "after", "1").await;
    sub.expect_channel_event("after", "head").await;

    // 64 KiB on the WebSocket upgrade: 431 with the JSON body, no socket.
    for fields in [pads(1, 64 * 1024), pads(4, 64 * 1024), pads(64, 64 * 1024)] {
        let what = format!("upgrade with {} fields of 64 KiB", fields.len());
        let (status, body) = exchange(port, with_fields(&upgrade, &fields).as_bytes()).await;
        assert_431_json(status, &body, &what);
        w.check(&what).await;
    }
    let big = "b".repeat(64 * 1024);
    let err = Ws::try_open_with(&w.server.ws_url(&app_path()), &[("X-Big", &big)], None)
        .await
        .err()
        .expect("a 64 KiB header must not be upgraded");
    assert_eq!(security::upgrade_status(&err), Some(431), "{err}");
    assert_eq!(w.connections().await, 2, "only the bystander and `sub`");

    // 1,000 query parameters: served when signed, 401 when not, 431 when
    // they make the head too long; on the upgrade, a socket.
    api.get("/channels", &short_query).await.assert_ok();
    w.check("1,000 signed parameters").await;
    let unsigned = Sign {
        unsigned: true,
        ..Sign::default()
    };
    api.get_with("/channels", &short_query, &unsigned)
        .await
        .assert_error(401, "auth_failed");
    let names: Vec<String> = (0..1000).map(|i| format!("param{i:04}")).collect();
    let values: Vec<String> = (0..1000).map(|i| format!("value{i:04}")).collect();
    let long_query: Vec<(&str, &str)> = names
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let target = api.signed_target(
        "GET",
        &api.path("/channels"),
        &long_query,
        b"",
        &Sign::default(),
    );
    let (status, body) = exchange(
        port,
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_431_json(status, &body, "1,000 long parameters");
    w.check("1,000 long parameters").await;
    let query: String = short.iter().map(|k| format!("&{k}=v")).collect();
    let mut many = w
        .server
        .connect_raw(&format!("{}{query}", app_path()))
        .await;
    many.read_established().await;
    many.assert_alive().await;
    w.check("1,000 parameters on the upgrade").await;
    close_all(vec![sub, many]).await;
    w.wait_connections(1, "sockets closed").await;
    w.finish("http heads").await;
}

// ---------------------------------------------------------------------------
// 7. Truncated upgrades, garbage instead of frames

/// Connect over TCP and write `bytes`.
async fn tcp_write(port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("write");
    s
}

#[tokio::test]
async fn truncated_upgrades_and_garbage_instead_of_frames() {
    let mut w = Watch::start(&[]).await;
    let port = w.server.port;
    let req = upgrade_request(&app_path()).into_bytes();
    for _ in 0..20 {
        let mut s = tcp_write(port, &req).await;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("read the answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    }
    let warm = futures_util::future::join_all((0..10).map(|_| w.server.connect())).await;
    close_all(warm).await;
    w.baseline().await;

    // Half a head, then gone, cut anywhere.
    let len = req.len();
    for cut in [1, 3, 4, 5, 17, 40, len / 2, len - 4, len - 2, len - 1] {
        drop(tcp_write(port, &req[..cut]).await);
    }
    w.check("half heads, then gone").await;
    // Half a head, held open while everyone else is served.
    let held = tcp_write(port, &req[..len / 2]).await;
    w.check("half a head, held").await;
    // A whole head, then gone before the answer, or after a few bytes of it.
    for _ in 0..20 {
        drop(tcp_write(port, &req).await);
    }
    for _ in 0..5 {
        let mut s = tcp_write(port, &req).await;
        let mut buf = [0u8; 10];
        s.read_exact(&mut buf).await.expect("read 10 bytes");
    }
    w.wait_connections(1, "vanished handshakes").await;
    w.check("vanished handshakes").await;

    // A whole handshake, then bytes that are not frames: the connection is
    // failed with 1002 (RFC 6455 §7.1.7).
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("an unmasked frame", b"\x81\x05hello".to_vec()),
        ("zeros", vec![0; 4096]),
        ("a reserved opcode", client_frame(true, 0x3, b"")),
        ("a fragmented ping", client_frame(false, 0x9, b"")),
        ("reserved bits", {
            let mut f = client_frame(true, 0x1, PING.as_bytes());
            f[0] |= 0x40;
            f
        }),
    ];
    for (what, bytes) in &garbage {
        let mut a = w.server.connect().await;
        a.write_raw(bytes).await.expect("write");
        a.expect_close(1002).await;
        w.check(what).await;
    }

    // A whole handshake, then a frame cut short, then gone.
    let mut cut_frame = client_frame_header(true, 0x1, 1000);
    cut_frame.extend_from_slice(&[b' '; 500]);
    for bytes in [vec![0x81], vec![0x81, 0xfe, 0x01], cut_frame] {
        let mut a = w.server.connect().await;
        a.write_raw(&bytes).await.expect("write");
        drop(a);
    }
    w.wait_connections(1, "cut frames").await;
    drop(held);
    w.check("after the truncations").await;
    w.finish("truncated upgrades").await;
}

// ---------------------------------------------------------------------------
// 8. Many of the above at once

/// What an attacker task needs, owned (tasks outlive no borrow).
#[derive(Clone)]
struct Target {
    port: u16,
    ws_url: String,
    /// A signed publish with 64 KiB of header fields (431).
    big_publish: Vec<u8>,
    /// A signed publish with 15 KiB of header fields (200).
    fat_publish: Vec<u8>,
}

impl Target {
    async fn connect(&self) -> Ws {
        let mut ws = Ws::open(&self.ws_url).await;
        ws.read_established().await;
        ws
    }
}

const KINDS: usize = 9;

/// Attack `kind` once; each asserts what the attacker gets.
async fn attack(t: &Target, kind: usize) {
    match kind {
        0 => {
            let mut a = t.connect().await;
            let shapes = wrong_shapes(&a.socket_id.clone());
            refused_in_bulk(&mut a, &shapes).await;
            refused_in_bulk(&mut a, &shapes).await;
        }
        1 => {
            let mut a = t.connect().await;
            for text in [
                arrays(DEPTH),
                objects(DEPTH / 2),
                format!(r#"{{"event":"pusher:subscribe","data":{}}}"#, arrays(DEPTH)),
                format!(
                    r#"{{"event":"pusher:subscribe","data":{{"channel":{}}}}}"#,
                    arrays(DEPTH)
                ),
            ] {
                a.send_text(&text).await;
                a.expect_error(4300).await;
            }
        }
        2 => {
            let mut a = t.connect().await;
            let _ = a.try_send_text(&"x".repeat(2 << 20)).await;
            a.expect_close(1009).await;
        }
        3 => {
            let mut a = t.connect().await;
            a.write_raw(&client_frame_header(true, 0x1, 1 << 30))
                .await
                .expect("header");
            a.write_raw(&[b'x'; 1024]).await.expect("1 KiB");
            a.expect_close(1009).await;
            stream_payload(&mut a, 4 << 20).await;
        }
        4 => {
            let mut a = t.connect().await;
            a.send_invalid_utf8_text().await;
            a.expect_close(1007).await;
            let mut a = t.connect().await;
            send_fragmented(&mut a, &[b'{', 0xe2, 0x82, b'}'], &[2], true).await;
            a.expect_close(1007).await;
        }
        5 => {
            let mut a = t.connect().await;
            let subscribe = br#"{"event":"pusher:subscribe","data":{"channel":"chan"}}"#;
            send_fragmented(&mut a, subscribe, &[5], false).await;
            a.expect_error(4300).await;
            // then a message never finished, and gone
            a.send_message(text_frame(&[b' '; 30 * 1024], false)).await;
            a.send_message(continuation(&[b' '; 30 * 1024], false))
                .await;
            control_ping(&mut a).await;
        }
        6 => {
            let req = upgrade_request(&app_path()).into_bytes();
            drop(tcp_write(t.port, &req[..req.len() / 2]).await);
            drop(tcp_write(t.port, &req).await);
            let mut a = t.connect().await;
            a.write_raw(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
            a.expect_close(1002).await;
        }
        7 => {
            let (status, body) = exchange(t.port, &t.big_publish).await;
            assert_431_json(status, &body, "64 KiB publish");
            let upgrade = with_fields(&upgrade_request(&app_path()), &pads(4, 64 * 1024));
            let (status, body) = exchange(t.port, upgrade.as_bytes()).await;
            assert_431_json(status, &body, "64 KiB upgrade");
        }
        8 => {
            // A flood of bad frames from a client that never reads a reply.
            let a = t.connect().await;
            let mut stream = a.into_stream();
            use futures_util::SinkExt;
            let flood = async {
                for _ in 0..5_000 {
                    let bad = Message::Text(r#"{"event":"pusher:subscrib"}"#.into());
                    if stream.feed(bad).await.is_err() {
                        return;
                    }
                }
                let _ = stream.flush().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), flood).await;
        }
        _ => unreachable!(),
    }
}

/// The benign counterpart of [`attack`]: the same paths, valid input.
async fn warm(t: &Target, kind: usize) {
    let mut a = t.connect().await;
    let pad = json!({"event": "pusher:ping", "data": {"pad": "p".repeat(60_000)}}).to_string();
    match kind % 3 {
        0 => {
            for i in 0..50 {
                let ch = format!("warm-{kind}-{i}");
                a.subscribe(&ch).await;
                a.unsubscribe(&ch).await;
            }
        }
        1 => {
            for _ in 0..5 {
                a.send_text(&pad).await;
                a.expect_event("pusher:pong").await;
            }
            send_fragmented(&mut a, pad.as_bytes(), &[20_000, 40_000], true).await;
            a.expect_event("pusher:pong").await;
        }
        _ => {
            let (status, _) = exchange(t.port, &t.fat_publish).await;
            assert_eq!(status, 200);
            let req = upgrade_request(&app_path()).into_bytes();
            drop(tcp_write(t.port, &req).await);
            for _ in 0..500 {
                a.send_text(PING).await;
            }
            for _ in 0..500 {
                a.expect_event("pusher:pong").await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_attackers_at_once_while_the_bystander_works() {
    let mut w = Watch::start(&[]).await;
    let api = w.server.api();
    let t = Target {
        port: w.server.port,
        ws_url: w.server.ws_url(&app_path()),
        big_publish: publish_request(&api, "chan", &pads(1, 64 * 1024)),
        fat_publish: publish_request(&api, "warm", &pads(1, 15 * 1024)),
    };
    const ATTACKERS: usize = 6;
    const ROUNDS: usize = 3;

    /// Run `job` for every attacker and round, concurrently; meanwhile
    /// check the bystander; returns the checks made during the run.
    async fn run<F, Fut>(w: &mut Watch, t: &Target, what: &str, job: F) -> usize
    where
        F: Fn(Target, usize) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let tasks: Vec<_> = (0..ATTACKERS)
            .map(|i| {
                let jobs: Vec<Fut> = (0..ROUNDS)
                    .map(|r| job(t.clone(), (i * ROUNDS + r) % KINDS))
                    .collect();
                tokio::spawn(async move {
                    for j in jobs {
                        j.await;
                    }
                })
            })
            .collect();
        let mut checks = 0;
        while tasks.iter().any(|h| !h.is_finished()) {
            w.check_held(&format!("{what}, {checks} checks in")).await;
            checks += 1;
        }
        for h in tasks {
            h.await.expect("an attacker task failed");
        }
        checks
    }

    run(&mut w, &t, "warm-up", |t, kind| async move {
        warm(&t, kind).await
    })
    .await;
    w.baseline().await;
    let checks = run(&mut w, &t, "under attack", |t, kind| async move {
        attack(&t, kind).await
    })
    .await;
    // At least one check overlapped the attack (the first starts as the
    // attackers do). How many more depends on how fast the attackers are
    // refused and their connections closed, which is not what this tests.
    assert!(checks >= 1, "no bystander check during the attack");
    w.wait_connections(1, "every attacker gone").await;
    assert_eq!(w.occupied_channels().await.len(), 1, "only the bystander's");
    w.check("after the attack").await;
    w.finish("concurrent").await;
}
