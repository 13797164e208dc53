//! Test harness: a real [`Session`] over an in-memory WebSocket, on a real
//! [`Registry`].
//!
//! [`Session::into_stream`] runs a session over any byte stream and returns
//! the bytes it and the fan-out write, which is all the HTTP layer does with
//! a session. [`TestSocket`] feeds it masked frames as a client writes them
//! (through a channel) and decodes what it writes as a client reads it, so the
//! session, its hub and the registry shards run exactly as in the server.
//! Nothing is mocked.
//!
//! Waiting is by frames, never by sleeping. [`TestSocket::settle`] is a
//! barrier built from three facts:
//! 1. a session handles its client's frames in order, so once it answers a
//!    `pusher:ping` it has handled (and sent to the shards) everything the
//!    client sent before;
//! 2. a shard handles its mailbox in order, so once it answers a request every
//!    message sent to it earlier has been handled and its deliveries queued on
//!    the sockets' wires;
//! 3. a wire is one queue, written in order, so a session's `pusher:pong`
//!    queued after those deliveries is written after them.

use crate::app::{App, ConnectionSlot};
use crate::registry::{
    ChannelInfo, ChannelStats, Publish, Registry, Transition, TransitionListener,
};
use crate::session::{Session, SessionSettings};
use crate::socket::SocketId;
use actix::prelude::*;
use actix_http::ws::{OpCode, Parser};
use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(crate) const APP_ID: &str = "app-id";
pub(crate) const KEY: &str = "app-key";
pub(crate) const SECRET: &str = "app-secret";

/// How long any one expected frame may take. Generous: the machine may be busy.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The test app: `app-id` / `app-key` / `app-secret` with default settings.
pub(crate) fn test_app() -> App {
    App::new(APP_ID, KEY, SECRET)
}

/// Lowercase hex HMAC-SHA256, computed here rather than with
/// [`crate::auth::sign`] so the tests do not trust the code they check.
fn hmac_hex(parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `auth` for a private / encrypted channel (`channel_data` = `None`) or a
/// presence channel, as an app's auth endpoint would sign it.
pub(crate) fn channel_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let sig = match channel_data {
        Some(data) => hmac_hex(&[socket_id, ":", channel, ":", data]),
        None => hmac_hex(&[socket_id, ":", channel]),
    };
    format!("{KEY}:{sig}")
}

/// `auth` of a `pusher:signin`.
pub(crate) fn signin_auth(socket_id: &str, user_data: &str) -> String {
    format!("{KEY}:{}", hmac_hex(&[socket_id, "::user::", user_data]))
}

/// A text frame the session wrote.
#[derive(Clone)]
pub(crate) struct Event {
    /// Exactly as written.
    pub raw: String,
    pub json: Value,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Event {
    fn new(raw: String) -> Event {
        let json = serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("session wrote a frame that is not JSON ({e}): {raw}"));
        Event { raw, json }
    }

    pub(crate) fn name(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }

    pub(crate) fn channel(&self) -> Option<&str> {
        self.json["channel"].as_str()
    }

    /// `data`, decoded when it is a string holding JSON (as Pusher sends most of it).
    pub(crate) fn data(&self) -> Value {
        match &self.json["data"] {
            Value::String(s) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            other => other.clone(),
        }
    }
}

/// What a client reads from the socket.
#[derive(Debug)]
pub(crate) enum WsFrame {
    Text(Event),
    Binary,
    Ping,
    Pong,
    /// A close frame: its code and reason.
    Close(Option<(u16, String)>),
    /// The session has stopped and been dropped (its connection slots with
    /// it): nothing more will come.
    End,
}

/// The client → session byte stream.
struct Inbound(mpsc::UnboundedReceiver<Result<Bytes, PayloadError>>);

impl Stream for Inbound {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Records every transition the registry's shards report, as a listener
/// given to [`Registry::start`] does.
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<Transition>>);

impl TransitionListener for Recorder {
    fn on_transitions(&self, batch: &[Transition]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(batch);
    }
}

impl Recorder {
    /// What was recorded since the last call.
    pub(crate) fn take(&self) -> Vec<Transition> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A running [`Registry`], an app and session settings: what the server
/// shares between its sessions.
pub(crate) struct Server {
    pub app: Arc<App>,
    pub registry: Registry,
    pub settings: Arc<SessionSettings>,
    /// Every transition of every shard.
    pub transitions: Arc<Recorder>,
}

impl Server {
    /// Two shards (so routing matters) and a one-minute cache.
    pub(crate) fn start(app: App) -> Server {
        Server::with(app, SessionSettings::default(), 2, Duration::from_secs(60))
    }

    pub(crate) fn with(
        app: App,
        settings: SessionSettings,
        shards: usize,
        cache_ttl: Duration,
    ) -> Server {
        let transitions = Arc::new(Recorder::default());
        let listener: Arc<dyn TransitionListener> = transitions.clone();
        Server {
            app: Arc::new(app),
            registry: Registry::start(shards, cache_ttl, vec![listener]),
            settings: Arc::new(settings),
            transitions,
        }
    }

    /// A socket holding one of the app's connection slots, as the HTTP layer admits it.
    pub(crate) async fn connect(&self) -> TestSocket {
        let slot = self
            .app
            .try_connect()
            .expect("the app has a free connection slot");
        TestSocket::start(
            self.app.clone(),
            vec![slot],
            self.settings.clone(),
            &self.registry,
        )
        .await
    }

    fn app_id(&self) -> Arc<str> {
        self.app.id.clone()
    }

    /// Publish as the HTTP API does (`data` is the JSON string of the event):
    /// returns once the shard has queued the frame for every subscriber.
    pub(crate) async fn publish(&self, channel: &str, event: &str, data: &str) {
        self.publish_except(channel, event, data, None).await
    }

    pub(crate) async fn publish_except(
        &self,
        channel: &str,
        event: &str,
        data: &str,
        except: Option<SocketId>,
    ) {
        let data = serde_json::value::to_raw_value(data).expect("a string serialises");
        self.registry
            .publish(Publish {
                app_id: &self.app_id(),
                channel,
                name: event,
                data: &data,
                except,
            })
            .await
            .expect("registry is running")
    }

    pub(crate) async fn channel_info(&self, channel: &str) -> ChannelInfo {
        self.registry
            .channel(&self.app.id, channel)
            .await
            .expect("registry is running")
    }

    /// The app's occupied channels over every shard, sorted by name.
    pub(crate) async fn list_channels(&self, prefix: Option<&str>) -> Vec<ChannelStats> {
        let mut all = self
            .registry
            .channels(&self.app.id, prefix)
            .await
            .expect("registry is running");
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Distinct users on a presence channel, sorted.
    pub(crate) async fn presence_users(&self, channel: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .registry
            .users(&self.app.id, channel)
            .await
            .expect("registry is running")
            .iter()
            .map(|u| u.to_string())
            .collect();
        users.sort();
        users
    }

    pub(crate) fn worth_publishing(&self, channel: &str) -> bool {
        self.registry.worth_publishing(&self.app.id, channel)
    }

    /// Every shard has handled every message sent to it before this call.
    pub(crate) async fn sync(&self) {
        sync_registry(&self.registry).await
    }
}

/// Every shard of `registry` has handled every message sent to it before.
pub(crate) async fn sync_registry(registry: &Registry) {
    registry.sync().await.expect("registry is running");
}

/// A client connected to a real [`Session`].
pub(crate) struct TestSocket {
    /// From `pusher:connection_established`.
    pub socket_id: String,
    pub addr: Addr<Session>,
    input: Option<mpsc::UnboundedSender<Result<Bytes, PayloadError>>>,
    output: mpsc::UnboundedReceiver<Result<Bytes, actix_web::Error>>,
    buf: BytesMut,
    ended: bool,
    registry: Registry,
}

impl TestSocket {
    /// Connect to `app` with one of its connection slots and default settings.
    pub(crate) async fn connect(app: &Arc<App>, registry: &Registry) -> TestSocket {
        let slot = app
            .try_connect()
            .expect("the app has a free connection slot");
        let settings = Arc::new(SessionSettings::default());
        TestSocket::start(app.clone(), vec![slot], settings, registry).await
    }

    /// Start a session holding `slots` and read its `connection_established`.
    pub(crate) async fn start(
        app: Arc<App>,
        slots: Vec<ConnectionSlot>,
        settings: Arc<SessionSettings>,
        registry: &Registry,
    ) -> TestSocket {
        // No socket under the in-process stream: closing is a no-op there.
        let session = Session::new(
            app,
            slots,
            settings,
            registry.clone(),
            "test-peer".into(),
            crate::closing::Conn::default(),
        );
        let (input, inbound) = mpsc::unbounded_channel();
        let (addr, out) = session.into_stream_with_addr(Inbound(inbound));
        let (out_tx, output) = mpsc::unbounded_channel();
        // Polling the output stream is what runs the session.
        actix::spawn(async move {
            let mut out = Box::pin(out);
            while let Some(chunk) = std::future::poll_fn(|cx| out.as_mut().poll_next(cx)).await {
                // The test may have dropped its socket; keep running the session.
                let _ = out_tx.send(chunk);
            }
            // The session (and its connection slots) goes first, then the
            // sender whose end the test reads as `WsFrame::End`.
            drop(out);
            drop(out_tx);
        });
        let mut socket = TestSocket {
            socket_id: String::new(),
            addr,
            input: Some(input),
            output,
            buf: BytesMut::new(),
            ended: false,
            registry: registry.clone(),
        };
        let established = socket.expect_event("pusher:connection_established").await;
        socket.socket_id = established.data()["socket_id"]
            .as_str()
            .expect("socket_id is a string")
            .to_string();
        socket
    }

    pub(crate) fn id(&self) -> SocketId {
        self.socket_id.parse().expect("socket ids parse")
    }

    // ---- writing ----

    /// Write one masked, unfragmented frame, as a client does. Ignored once
    /// the session has stopped reading.
    pub(crate) fn send_frame(&mut self, op: OpCode, payload: &[u8]) {
        let mut buf = BytesMut::new();
        Parser::write_message(&mut buf, payload, op, true, true);
        self.send_raw(buf.freeze());
    }

    /// Write bytes as they are (e.g. frames built with `Parser::write_message`).
    pub(crate) fn send_raw(&mut self, bytes: Bytes) {
        if let Some(input) = &self.input {
            let _ = input.send(Ok(bytes));
        }
    }

    pub(crate) fn send_text(&mut self, text: &str) {
        self.send_frame(OpCode::Text, text.as_bytes());
    }

    pub(crate) fn send_json(&mut self, frame: Value) {
        self.send_text(&frame.to_string());
    }

    pub(crate) fn subscribe(&mut self, channel: &str) {
        self.send_json(json!({"event": "pusher:subscribe", "data": {"channel": channel}}));
    }

    /// Subscribe with a valid signature (private, encrypted, private-cache).
    pub(crate) fn subscribe_signed(&mut self, channel: &str) {
        let auth = channel_auth(&self.socket_id, channel, None);
        self.send_json(json!({
            "event": "pusher:subscribe",
            "data": {"channel": channel, "auth": auth},
        }));
    }

    /// Join a presence channel with a valid signature of `channel_data`.
    pub(crate) fn subscribe_presence_data(&mut self, channel: &str, channel_data: &str) {
        let auth = channel_auth(&self.socket_id, channel, Some(channel_data));
        self.send_json(json!({
            "event": "pusher:subscribe",
            "data": {"channel": channel, "auth": auth, "channel_data": channel_data},
        }));
    }

    pub(crate) fn subscribe_presence(&mut self, channel: &str, user_id: &str, user_info: Value) {
        let channel_data = json!({"user_id": user_id, "user_info": user_info}).to_string();
        self.subscribe_presence_data(channel, &channel_data);
    }

    pub(crate) fn unsubscribe(&mut self, channel: &str) {
        self.send_json(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}));
    }

    /// `pusher:signin` with a valid signature of `user_data`.
    pub(crate) fn signin(&mut self, user_data: &str) {
        let auth = signin_auth(&self.socket_id, user_data);
        self.send_json(json!({
            "event": "pusher:signin",
            "data": {"auth": auth, "user_data": user_data},
        }));
    }

    pub(crate) fn client_event(&mut self, channel: &str, event: &str, data: Value) {
        self.send_json(json!({"event": event, "channel": channel, "data": data}));
    }

    /// Subscribe to a public channel and wait for the confirmation.
    pub(crate) async fn join(&mut self, channel: &str) -> Event {
        self.subscribe(channel);
        self.expect_channel_event("pusher_internal:subscription_succeeded", channel)
            .await
    }

    /// Subscribe with a valid signature and wait for the confirmation.
    pub(crate) async fn join_signed(&mut self, channel: &str) -> Event {
        self.subscribe_signed(channel);
        self.expect_channel_event("pusher_internal:subscription_succeeded", channel)
            .await
    }

    /// Join a presence channel; returns the roster (`data.presence`) it was sent.
    pub(crate) async fn join_presence(
        &mut self,
        channel: &str,
        user_id: &str,
        user_info: Value,
    ) -> Value {
        self.subscribe_presence(channel, user_id, user_info);
        let ok = self
            .expect_channel_event("pusher_internal:subscription_succeeded", channel)
            .await;
        ok.data()["presence"].clone()
    }

    // ---- reading ----

    /// The next frame, or `None` if none comes within `timeout`.
    pub(crate) async fn recv_frame_within(&mut self, timeout: Duration) -> Option<WsFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.decode() {
                return Some(frame);
            }
            if self.ended {
                return Some(WsFrame::End);
            }
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Err(_) => return None,
                Ok(None) => self.ended = true,
                Ok(Some(Ok(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Some(Err(e))) => panic!("session output failed: {e}"),
            }
        }
    }

    fn decode(&mut self) -> Option<WsFrame> {
        let (fin, op, payload) = Parser::parse(&mut self.buf, false, usize::MAX)
            .expect("the session writes valid frames")?;
        assert!(fin, "the session never fragments a frame");
        let payload = payload.map(BytesMut::freeze).unwrap_or_default();
        Some(match op {
            OpCode::Text => WsFrame::Text(Event::new(
                String::from_utf8(payload.to_vec()).expect("text frames are UTF-8"),
            )),
            OpCode::Binary => WsFrame::Binary,
            OpCode::Ping => WsFrame::Ping,
            OpCode::Pong => WsFrame::Pong,
            OpCode::Close => WsFrame::Close(
                Parser::try_parse_close_payload(&payload)
                    .expect("valid close payload")
                    .map(|r| (u16::from(r.code), r.description.unwrap_or_default())),
            ),
            other => panic!("unexpected opcode {other:?}"),
        })
    }

    /// The next frame; panics if none comes in time.
    pub(crate) async fn recv_frame(&mut self) -> WsFrame {
        match self.recv_frame_within(FRAME_TIMEOUT).await {
            Some(frame) => frame,
            None => panic!(
                "socket {}: no frame within {FRAME_TIMEOUT:?}",
                self.socket_id
            ),
        }
    }

    /// The next frame, which must be a text frame.
    pub(crate) async fn recv_event(&mut self) -> Event {
        match self.recv_frame().await {
            WsFrame::Text(event) => event,
            other => panic!(
                "socket {}: expected a text frame, got {other:?}",
                self.socket_id
            ),
        }
    }

    /// The next frame, which must be the event `name`.
    pub(crate) async fn expect_event(&mut self, name: &str) -> Event {
        let event = self.recv_event().await;
        assert_eq!(
            event.name(),
            name,
            "socket {}: unexpected frame {event:?}",
            self.socket_id
        );
        event
    }

    /// The next frame, which must be the event `name` on `channel`.
    pub(crate) async fn expect_channel_event(&mut self, name: &str, channel: &str) -> Event {
        let event = self.expect_event(name).await;
        assert_eq!(
            event.channel(),
            Some(channel),
            "socket {}: unexpected frame {event:?}",
            self.socket_id
        );
        event
    }

    /// The next frame, which must be `pusher:error` with `code`; returns its message.
    pub(crate) async fn expect_error(&mut self, code: u16) -> String {
        let event = self.expect_event("pusher:error").await;
        let data = event.data();
        assert_eq!(data["code"], code, "unexpected error {event:?}");
        data["message"].as_str().unwrap_or_default().to_string()
    }

    /// The next frame, which must be `pusher:subscription_error` on `channel`
    /// with this `type`; returns its `error` text.
    pub(crate) async fn expect_subscription_error(&mut self, channel: &str, kind: &str) -> String {
        let event = self
            .expect_channel_event("pusher:subscription_error", channel)
            .await;
        let data = event.data();
        assert_eq!(data["type"], kind, "unexpected error {event:?}");
        let status = match kind {
            "InvalidChannel" => 400,
            "AuthError" => 401,
            "LimitReached" => 403,
            other => panic!("unknown subscription error type {other}"),
        };
        assert_eq!(data["status"], status, "unexpected error {event:?}");
        data["error"].as_str().unwrap_or_default().to_string()
    }

    /// The next frame must close the socket with `code`, and the session must then stop.
    pub(crate) async fn expect_close(&mut self, code: u16) {
        match self.recv_frame().await {
            WsFrame::Close(Some((got, _))) if got == code => {}
            other => panic!(
                "socket {}: expected close {code}, got {other:?}",
                self.socket_id
            ),
        }
        self.expect_end().await;
    }

    /// The session stops; frames written before that are skipped.
    pub(crate) async fn expect_end(&mut self) {
        loop {
            if let WsFrame::End = self.recv_frame().await {
                return;
            }
        }
    }

    // ---- barriers ----

    /// Send `pusher:ping` and read up to its `pusher:pong`; returns the frames
    /// written before it. The session has then handled everything sent before.
    pub(crate) async fn roundtrip(&mut self) -> Vec<Event> {
        self.send_json(json!({"event": "pusher:ping", "data": {}}));
        let mut before = Vec::new();
        loop {
            match self.recv_frame().await {
                WsFrame::Text(event) if event.name() == "pusher:pong" => return before,
                WsFrame::Text(event) => before.push(event),
                other => panic!(
                    "socket {}: expected pusher:pong, got {other:?} after {before:?}",
                    self.socket_id
                ),
            }
        }
    }

    /// Wait until what this socket sent has been handled by its session and
    /// by every shard, and every frame the shards queued for this socket
    /// before has been written; returns the frames read meanwhile.
    ///
    /// To see that socket B got nothing from what socket A sent, settle A
    /// first (its frames then reached the shards), then B.
    pub(crate) async fn settle(&mut self) -> Vec<Event> {
        let mut seen = self.roundtrip().await;
        sync_registry(&self.registry).await;
        seen.extend(self.roundtrip().await);
        seen
    }

    /// [`settle`](Self::settle), which must read nothing.
    pub(crate) async fn expect_silence(&mut self) {
        let seen = self.settle().await;
        assert!(
            seen.is_empty(),
            "socket {}: expected no frames, got {seen:?}",
            self.socket_id
        );
    }

    // ---- ending ----

    /// Close as a client does (1000) and wait for the session to stop.
    pub(crate) async fn close(mut self) {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        self.send_frame(OpCode::Close, &payload);
        self.expect_end().await;
    }

    /// Vanish without a close frame (the connection drops) and wait for the
    /// session to stop.
    pub(crate) async fn vanish(mut self) {
        self.input = None;
        self.expect_end().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness signs as PROTOCOL.md §4 does, so a subscription the tests
    /// expect to succeed carries what a real auth endpoint would send.
    #[test]
    fn harness_signatures_match_the_protocol_examples() {
        let socket = "1234.5678";
        assert_eq!(
            channel_auth(socket, "private-orders", None),
            "app-key:2d1e5109f17c93a347d0a52f060df3a517761ce1ddcd7bce2998c4f1925a7cab"
        );
        assert_eq!(
            channel_auth(
                socket,
                "presence-room",
                Some(r#"{"user_id":"42","user_info":{"name":"Ada"}}"#)
            ),
            "app-key:7eae5778a7edfe839d7a03f042293004e8cc0798fcf98a63b02be7f19f8bef86"
        );
        assert_eq!(
            channel_auth(socket, "private-encrypted-chat", None),
            "app-key:6ee8ce3188a0b27e8bccca0ce3648235c61b391d951dcfbde41d441360035f8a"
        );
        assert_eq!(
            signin_auth(socket, r#"{"id":"42","name":"Ada"}"#),
            "app-key:301c617063a9befe3888bef787d0293388621da80385924cc3b7231582f595e3"
        );
    }
}
