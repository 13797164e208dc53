//! Shared harness of the integration tests: start the real `switchyard`
//! binary on a free port, talk to it with a real WebSocket client and real
//! signed HTTP requests. Signatures are computed here, independently of the
//! server's code, following `PROTOCOL.md` §4.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod cluster;
pub mod limits;
pub mod prereq;
pub mod raw;
pub mod receiver;
pub mod redis;
pub mod sqlserver;

// ---------------------------------------------------------------------------
// The app every `Server::start_app` server serves (through the env app).

pub const APP_ID: &str = "test-app";
pub const APP_KEY: &str = "test-key";
pub const APP_SECRET: &str = "test-secret";

/// Default receive timeout.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for by default.
pub const SILENCE: Duration = Duration::from_millis(300);

/// Env of the standard test app. Later entries (the test's own) override these.
pub fn app_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SOCKUDO_DEFAULT_APP_ID", APP_ID),
        ("SOCKUDO_DEFAULT_APP_KEY", APP_KEY),
        ("SOCKUDO_DEFAULT_APP_SECRET", APP_SECRET),
        ("SOCKUDO_DEFAULT_APP_ENABLED", "true"),
        ("SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "true"),
        ("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "0"),
    ]
}

// ---------------------------------------------------------------------------
// Server process

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "switchyard-it-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A port free now and never handed out before in this test process: the
/// kernel may give a just-released port again, and a test that picks two
/// (a server's and its metrics port) must not get the same one twice.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn read_file(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        s = String::from_utf8_lossy(&bytes).into_owned();
    }
    s
}

/// The command without its output files: clean environment (only PATH/HOME
/// inherited), the harness defaults, then the test's env; runs in `dir`.
pub fn bare_command(dir: &Path, port: u16, env: &[(&str, &str)], args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("METRICS_ENABLED", "false")
        .env("RATE_LIMITER_ENABLED", "false")
        .env("RUST_LOG", "info")
        .env("LOG_COLORS_ENABLED", "false");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).current_dir(dir);
    cmd
}

/// [`bare_command`] with stdout and stderr going to `stdout.log` and
/// `stderr.log` in `dir`.
fn command(dir: &Path, port: u16, env: &[(&str, &str)], args: &[String]) -> Command {
    let mut cmd = bare_command(dir, port, env, args);
    let stdout = File::create(dir.join("stdout.log")).expect("stdout log");
    let stderr = File::create(dir.join("stderr.log")).expect("stderr log");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    cmd
}

/// Run the binary to completion in `dir` with the harness defaults
/// (`PORT` = `port`), `env` and `args`; output captured.
pub fn run_once(
    dir: &Path,
    port: u16,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    bare_command(dir, port, env, &args)
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

fn logs_of(dir: &Path) -> String {
    let out = read_file(&dir.join("stdout.log"));
    let err = read_file(&dir.join("stderr.log"));
    format!("--- stdout ---\n{out}--- stderr ---\n{err}")
}

/// A running server; killed (and its temp dir removed) on drop. When the
/// test is panicking its captured output is printed.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// A server that exited at startup.
pub struct Failure {
    pub status: ExitStatus,
    /// stdout and stderr together.
    pub output: String,
}

impl Server {
    /// Start the binary with only the given env on top of the harness defaults.
    pub async fn start(env: &[(&str, &str)]) -> Server {
        Self::launch(env, None).await
    }

    /// Start with the standard test app (`APP_ID`/`APP_KEY`/`APP_SECRET`)
    /// configured by env, plus `extra` env (which overrides the app defaults).
    pub async fn start_app(extra: &[(&str, &str)]) -> Server {
        let mut env = app_env();
        env.extend_from_slice(extra);
        Self::launch(&env, None).await
    }

    /// Write `json` to `config.json` in the temp dir and pass `--config <path>`.
    pub async fn start_with_config(json: &str, env: &[(&str, &str)]) -> Server {
        Self::launch(env, Some(json)).await
    }

    async fn launch(env: &[(&str, &str)], config: Option<&str>) -> Server {
        Self::start_ready(env, config, security::Ready::Http).await
    }

    /// Run the binary expecting it to refuse to start; returns its exit status
    /// and output. Panics if it becomes ready or is still running after 10 s.
    pub async fn start_expect_failure(
        env: &[(&str, &str)],
        config: Option<&str>,
        extra_args: &[&str],
    ) -> Failure {
        let dir = fresh_dir();
        let mut args: Vec<String> = Vec::new();
        if let Some(json) = config {
            let path = dir.join("config.json");
            std::fs::write(&path, json).expect("write config.json");
            args.push("--config".into());
            args.push(path.to_string_lossy().into_owned());
        }
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let port = free_port();
        let mut child = command(&dir, port, env, &args).spawn().expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let output = logs_of(&dir);
                let _ = std::fs::remove_dir_all(&dir);
                return Failure { status, output };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let output = logs_of(&dir);
                panic!("server was expected to fail at startup but kept running\n{output}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn http_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path_and_query)
    }

    /// Captured stdout + stderr so far.
    pub fn logs(&self) -> String {
        logs_of(&self.dir)
    }

    /// Wait until `pred(logs)` holds; panics with the logs after `timeout`.
    pub async fn wait_for_logs(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if pred(&logs) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for logs: {what}\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signed HTTP API client for the standard test app.
    pub fn api(&self) -> Api {
        self.api_for(APP_ID, APP_KEY, APP_SECRET)
    }

    pub fn api_for(&self, id: &str, key: &str, secret: &str) -> Api {
        Api {
            base: self.http_base(),
            app_id: id.into(),
            key: key.into(),
            secret: secret.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Connect to the standard test app and read `connection_established`.
    pub async fn connect(&self) -> Ws {
        self.connect_key(APP_KEY).await
    }

    pub async fn connect_key(&self, key: &str) -> Ws {
        let mut ws = self
            .connect_raw(&format!("/app/{key}?protocol=7&client=rust&version=1.0"))
            .await;
        ws.read_established().await;
        ws
    }

    /// Open a WebSocket on any path without reading anything.
    pub async fn connect_raw(&self, path_and_query: &str) -> Ws {
        Ws::open(&self.ws_url(path_and_query)).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Run the binary once more, to completion, as this server was started:
    /// same working directory, harness defaults (`PORT` = this server's),
    /// then `env` (pass the env the server got), then `args`. For one-shot
    /// modes such as `--health`; output captured, not logged.
    pub fn run_alongside(&self, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
        run_once(&self.dir, self.port, env, args)
    }

    /// Send a signal (e.g. "TERM", "INT") to the server process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("server running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Wait for the process to exit on its own; `None` if it is still
    /// running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("server running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "==== switchyard output (port {}, dir {}) ====\n{}",
                self.port,
                self.dir.display(),
                self.logs()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// WebSocket client

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One received text frame: the exact text and its parsed JSON.
#[derive(Debug, Clone)]
pub struct Frame {
    pub raw: String,
    pub json: Value,
}

impl Frame {
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or("")
    }

    pub fn channel(&self) -> Option<&str> {
        self.json["channel"].as_str()
    }

    /// `data` as a string; panics if it is not a string.
    pub fn data_str(&self) -> &str {
        self.json["data"]
            .as_str()
            .unwrap_or_else(|| panic!("`data` is not a string in {}", self.raw))
    }

    /// `data` parsed: the JSON inside the string if it is a string, else the value.
    pub fn data_json(&self) -> Value {
        match &self.json["data"] {
            Value::String(s) => serde_json::from_str(s)
                .unwrap_or_else(|e| panic!("`data` string is not JSON ({e}) in {}", self.raw)),
            other => other.clone(),
        }
    }
}

pub struct Ws {
    stream: Stream,
    /// From `connection_established` (empty for raw connections not yet read).
    pub socket_id: String,
    pub activity_timeout: u64,
}

impl Ws {
    pub async fn open(url: &str) -> Ws {
        let (stream, _resp) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {url} failed: {e}"));
        Ws {
            stream,
            socket_id: String::new(),
            activity_timeout: 0,
        }
    }

    /// Read and check `pusher:connection_established`, keep the socket id.
    pub async fn read_established(&mut self) -> Frame {
        let f = self.expect_event("pusher:connection_established").await;
        assert!(
            f.json["data"].is_string(),
            "connection_established data must be a JSON string: {}",
            f.raw
        );
        let data = f.data_json();
        let sid = data["socket_id"]
            .as_str()
            .unwrap_or_else(|| panic!("socket_id missing: {}", f.raw))
            .to_string();
        assert!(
            is_socket_id(&sid),
            "socket_id {sid:?} does not match ^\\d+\\.\\d+$"
        );
        self.socket_id = sid;
        self.activity_timeout = data["activity_timeout"]
            .as_u64()
            .unwrap_or_else(|| panic!("activity_timeout missing: {}", f.raw));
        f
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_string()))
            .await
            .unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await
    }

    pub async fn send_message(&mut self, m: Message) {
        self.stream
            .send(m)
            .await
            .unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    /// Send without panicking (the peer may already be gone).
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.stream
            .send(Message::Text(text.to_string()))
            .await
            .is_ok()
    }

    /// A text frame whose payload is not valid UTF-8.
    pub async fn send_invalid_utf8_text(&mut self) {
        let frame = WsFrame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
        self.send_message(Message::Frame(frame)).await
    }

    /// The next WebSocket message of any kind, `None` when the stream ended.
    pub async fn recv_message(&mut self, timeout: Duration) -> Option<Message> {
        match tokio::time::timeout(timeout, self.stream.next()).await {
            Err(_) => panic!("no message within {timeout:?} (socket {})", self.socket_id),
            Ok(None) => None,
            Ok(Some(Ok(m))) => Some(m),
            Ok(Some(Err(e))) => panic!("WebSocket error while receiving: {e}"),
        }
    }

    /// The next text frame within `timeout`. Control frames (ping/pong) are
    /// transport-level and skipped; anything else non-text panics.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Frame {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_message(left).await {
                None => panic!("connection ended while waiting for a frame"),
                Some(Message::Text(t)) => {
                    let json: Value = serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {t}"));
                    return Frame { raw: t, json };
                }
                Some(Message::Ping(_)) | Some(Message::Pong(_)) => continue,
                Some(other) => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    pub async fn recv(&mut self) -> Frame {
        self.recv_timeout(RECV_TIMEOUT).await
    }

    /// Strict: the very next frame must be `event`.
    pub async fn expect_event(&mut self, event: &str) -> Frame {
        let f = self.recv().await;
        assert_eq!(
            f.event(),
            event,
            "expected event {event}, got frame {}",
            f.raw
        );
        f
    }

    pub async fn expect_event_within(&mut self, event: &str, timeout: Duration) -> Frame {
        let f = self.recv_timeout(timeout).await;
        assert_eq!(
            f.event(),
            event,
            "expected event {event}, got frame {}",
            f.raw
        );
        f
    }

    /// Strict: the next frame is `event` on `channel`.
    pub async fn expect_channel_event(&mut self, event: &str, channel: &str) -> Frame {
        let f = self.expect_event(event).await;
        assert_eq!(f.channel(), Some(channel), "wrong channel in {}", f.raw);
        f
    }

    /// Strict: the next frame is `pusher:error` with this code (data is an object).
    pub async fn expect_error(&mut self, code: u64) -> Frame {
        let f = self.expect_event("pusher:error").await;
        check_error_frame(&f, code);
        f
    }

    pub async fn expect_error_within(&mut self, code: u64, timeout: Duration) -> Frame {
        let f = self.expect_event_within("pusher:error", timeout).await;
        check_error_frame(&f, code);
        f
    }

    /// Strict: the next frame is `pusher:subscription_error` on `channel`.
    pub async fn expect_subscription_error(
        &mut self,
        channel: &str,
        kind: &str,
        status: u64,
    ) -> Frame {
        let f = self
            .expect_channel_event("pusher:subscription_error", channel)
            .await;
        assert!(
            f.json["data"].is_object(),
            "subscription_error data must be an object: {}",
            f.raw
        );
        assert_eq!(f.json["data"]["type"], kind, "wrong type in {}", f.raw);
        assert_eq!(
            f.json["data"]["status"], status,
            "wrong status in {}",
            f.raw
        );
        assert!(
            f.json["data"]["error"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "error message missing in {}",
            f.raw
        );
        f
    }

    /// Strict: the next message is a close frame with `code`.
    pub async fn expect_close(&mut self, code: u16) {
        self.expect_close_within(code, RECV_TIMEOUT).await
    }

    pub async fn expect_close_within(&mut self, code: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_message(left).await {
                Some(Message::Close(Some(cf))) => {
                    assert_eq!(
                        u16::from(cf.code),
                        code,
                        "wrong close code (reason {:?})",
                        cf.reason
                    );
                    return;
                }
                Some(Message::Close(None)) => panic!("close frame without a code, expected {code}"),
                Some(Message::Ping(_)) | Some(Message::Pong(_)) => continue,
                Some(other) => panic!("expected close {code}, got {other:?}"),
                None => panic!("connection dropped without a close frame, expected {code}"),
            }
        }
    }

    /// Nothing (text, binary or close) arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_)))) | Ok(Some(Ok(Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence for {d:?}, got {other:?}"),
            }
        }
    }

    /// `pusher:ping` → `pusher:pong`: proves the socket is open and serving.
    pub async fn assert_alive(&mut self) {
        self.send_json(json!({"event": "pusher:ping", "data": {}}))
            .await;
        let f = self.expect_event("pusher:pong").await;
        assert!(
            f.json["data"].is_object(),
            "pong data should be {{}}: {}",
            f.raw
        );
    }

    pub async fn send_subscribe(&mut self, data: Value) {
        self.send_json(json!({"event": "pusher:subscribe", "data": data}))
            .await
    }

    /// Subscribe to a channel needing no auth and expect `subscription_succeeded`.
    pub async fn subscribe(&mut self, channel: &str) -> Frame {
        self.send_subscribe(json!({ "channel": channel })).await;
        expect_succeeded(self, channel).await
    }

    /// Subscribe to a private / encrypted channel of the standard app.
    pub async fn subscribe_private(&mut self, channel: &str) -> Frame {
        let auth = channel_auth(APP_KEY, APP_SECRET, &self.socket_id, channel);
        self.send_subscribe(json!({ "channel": channel, "auth": auth }))
            .await;
        expect_succeeded(self, channel).await
    }

    /// Subscribe to a presence channel of the standard app with `channel_data`
    /// (sent byte for byte); returns the parsed `presence` object.
    pub async fn subscribe_presence_raw(&mut self, channel: &str, channel_data: &str) -> Value {
        self.send_presence_subscribe(channel, channel_data).await;
        let f = expect_succeeded(self, channel).await;
        let data = f.data_json();
        assert!(
            data["presence"].is_object(),
            "presence roster missing: {}",
            f.raw
        );
        data["presence"].clone()
    }

    pub async fn send_presence_subscribe(&mut self, channel: &str, channel_data: &str) {
        let auth = presence_auth(APP_KEY, APP_SECRET, &self.socket_id, channel, channel_data);
        self.send_subscribe(
            json!({ "channel": channel, "auth": auth, "channel_data": channel_data }),
        )
        .await;
    }

    pub async fn subscribe_presence(
        &mut self,
        channel: &str,
        user_id: &str,
        user_info: Value,
    ) -> Value {
        let cd = json!({ "user_id": user_id, "user_info": user_info }).to_string();
        self.subscribe_presence_raw(channel, &cd).await
    }

    pub async fn unsubscribe(&mut self, channel: &str) {
        self.send_json(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
            .await
    }

    /// Sign in to the standard app with `user_data`; expects `signin_success`.
    pub async fn signin(&mut self, user_data: &str) -> Frame {
        let auth = signin_auth(APP_KEY, APP_SECRET, &self.socket_id, user_data);
        self.send_json(
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        )
        .await;
        let f = self.expect_event("pusher:signin_success").await;
        assert_eq!(
            f.json["data"]["user_data"], user_data,
            "user_data not echoed: {}",
            f.raw
        );
        f
    }

    pub async fn client_event(&mut self, channel: &str, event: &str, data: Value) {
        self.send_json(json!({"event": event, "channel": channel, "data": data}))
            .await
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // drain until the server's close reply / EOF
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }

    /// Split off the raw stream (for flood tests).
    pub fn into_stream(self) -> Stream {
        self.stream
    }
}

fn check_error_frame(f: &Frame, code: u64) {
    assert!(
        f.json["data"].is_object(),
        "pusher:error data must be an object: {}",
        f.raw
    );
    assert_eq!(
        f.json["data"]["code"], code,
        "wrong error code in {}",
        f.raw
    );
    assert!(
        f.json["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message missing in {}",
        f.raw
    );
}

async fn expect_succeeded(ws: &mut Ws, channel: &str) -> Frame {
    let f = ws
        .expect_channel_event("pusher_internal:subscription_succeeded", channel)
        .await;
    assert!(
        f.json["data"].is_string(),
        "subscription_succeeded data must be a string: {}",
        f.raw
    );
    f
}

pub fn is_socket_id(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

// ---------------------------------------------------------------------------
// Signatures (PROTOCOL.md §4)

pub fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// §4.1 / §4.3: `key:HMAC(socket_id:channel)`.
pub fn channel_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    format!(
        "{key}:{}",
        hmac_hex(secret, &format!("{socket_id}:{channel}"))
    )
}

/// §4.2: `key:HMAC(socket_id:channel:channel_data)`.
pub fn presence_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: &str,
) -> String {
    format!(
        "{key}:{}",
        hmac_hex(secret, &format!("{socket_id}:{channel}:{channel_data}"))
    )
}

/// §4.4: `key:HMAC(socket_id::user::user_data)`.
pub fn signin_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!(
        "{key}:{}",
        hmac_hex(secret, &format!("{socket_id}::user::{user_data}"))
    )
}

/// §4.5: the sorted query string (lower-cased keys) and the string to sign.
pub fn api_string_to_sign(
    method: &str,
    path: &str,
    params: &[(String, String)],
) -> (String, String) {
    let mut params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    params.sort();
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{method}\n{path}\n{query}");
    (query, to_sign)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// HTTP API client

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMd5 {
    /// md5 of the body, when the body is non-empty.
    Correct,
    /// A wrong (but well-formed) md5.
    Wrong,
    /// No body_md5 parameter at all.
    Omit,
}

/// Knobs for corrupting the signed request.
#[derive(Debug, Clone)]
pub struct Sign {
    pub corrupt_signature: bool,
    pub omit_signature: bool,
    /// Send no auth parameters at all.
    pub unsigned: bool,
    pub timestamp_offset: i64,
    pub body_md5: BodyMd5,
    /// Use this auth_key instead of the app's.
    pub key: Option<String>,
    /// Sign with this secret instead of the app's.
    pub secret: Option<String>,
    /// `auth_version` to send (signed like the rest); `None` = `1.0`, an
    /// empty string = leave the parameter out.
    pub auth_version: Option<String>,
}

impl Default for Sign {
    fn default() -> Self {
        Sign {
            corrupt_signature: false,
            omit_signature: false,
            unsigned: false,
            timestamp_offset: 0,
            body_md5: BodyMd5::Correct,
            key: None,
            secret: None,
            auth_version: None,
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}), status {}: {:?}",
                self.status, self.text
            )
        })
    }

    pub fn assert_ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200, body {:?}", self.text);
        self.json()
    }

    /// Status and the JSON error body `{"error","code","status"}`.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "wrong status, body {:?}", self.text);
        let v = self.json();
        assert_eq!(v["code"], code, "wrong error code in {:?}", self.text);
        assert_eq!(v["status"], status, "wrong status field in {:?}", self.text);
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "error message missing in {:?}",
            self.text
        );
        v
    }
}

pub struct Api {
    pub base: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    client: reqwest::Client,
}

fn check_query_value(v: &str) {
    assert!(
        v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,~:".contains(&b)),
        "harness only sends URL-safe query values, got {v:?}"
    );
}

impl Api {
    /// `/apps/{id}` + suffix.
    pub fn path(&self, suffix: &str) -> String {
        format!("/apps/{}{}", self.app_id, suffix)
    }

    /// The full signed URL for a request.
    pub fn signed_url(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
        s: &Sign,
    ) -> String {
        let mut params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| {
                check_query_value(v);
                (k.to_string(), v.to_string())
            })
            .collect();
        if !s.unsigned {
            let key = s.key.clone().unwrap_or_else(|| self.key.clone());
            params.push(("auth_key".into(), key));
            params.push((
                "auth_timestamp".into(),
                (unix_now() + s.timestamp_offset).to_string(),
            ));
            match s.auth_version.as_deref() {
                None => params.push(("auth_version".into(), "1.0".into())),
                Some("") => {}
                Some(v) => params.push(("auth_version".into(), v.into())),
            }
            match s.body_md5 {
                BodyMd5::Correct if !body.is_empty() => {
                    params.push(("body_md5".into(), md5_hex(body)));
                }
                BodyMd5::Wrong => params.push(("body_md5".into(), md5_hex(b"something else"))),
                _ => {}
            }
        }
        let (query, to_sign) = api_string_to_sign(method, path, &params);
        let mut url = format!("{}{}", self.base, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        if !s.unsigned && !s.omit_signature {
            let secret = s.secret.clone().unwrap_or_else(|| self.secret.clone());
            let mut sig = hmac_hex(&secret, &to_sign);
            if s.corrupt_signature {
                // flip the first hex digit
                let first = if sig.starts_with('0') { "1" } else { "0" };
                sig.replace_range(0..1, first);
            }
            url.push_str(if query.is_empty() { "?" } else { "&" });
            url.push_str("auth_signature=");
            url.push_str(&sig);
        }
        url
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
        s: &Sign,
    ) -> Resp {
        let url = self.signed_url(method, path, query, body, s);
        let req = match method {
            "GET" => self.client.get(&url),
            "POST" => self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_vec()),
            other => self
                .client
                .request(reqwest::Method::from_bytes(other.as_bytes()).unwrap(), &url)
                .body(body.to_vec()),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Resp { status, text }
    }

    /// Signed POST to `/apps/{id}{suffix}`.
    pub async fn post(&self, suffix: &str, body: &str) -> Resp {
        self.request(
            "POST",
            &self.path(suffix),
            &[],
            body.as_bytes(),
            &Sign::default(),
        )
        .await
    }

    pub async fn post_with(&self, suffix: &str, body: &str, s: &Sign) -> Resp {
        self.request("POST", &self.path(suffix), &[], body.as_bytes(), s)
            .await
    }

    /// Signed GET of `/apps/{id}{suffix}`.
    pub async fn get(&self, suffix: &str, query: &[(&str, &str)]) -> Resp {
        self.request("GET", &self.path(suffix), query, b"", &Sign::default())
            .await
    }

    pub async fn get_with(&self, suffix: &str, query: &[(&str, &str)], s: &Sign) -> Resp {
        self.request("GET", &self.path(suffix), query, b"", s).await
    }

    /// POST /events and assert 200 `{}`.
    pub async fn publish(&self, channel: &str, name: &str, data: &str) {
        let body = json!({"name": name, "channel": channel, "data": data}).to_string();
        let r = self.post("/events", &body).await;
        assert_eq!(r.status, 200, "publish to {channel} failed: {:?}", r.text);
        assert_eq!(r.json(), json!({}), "publish response body");
    }

    pub async fn publish_body(&self, body: Value) -> Resp {
        self.post("/events", &body.to_string()).await
    }

    /// GET /channels/{name} with `info`.
    pub async fn channel_info(&self, channel: &str, info: &str) -> Value {
        let q: Vec<(&str, &str)> = if info.is_empty() {
            vec![]
        } else {
            vec![("info", info)]
        };
        self.get(&format!("/channels/{channel}"), &q)
            .await
            .assert_ok()
    }

    /// Poll a channel's info until `pred` holds (state changes on disconnect
    /// are asynchronous); panics with the last value after 5 s.
    pub async fn wait_channel_info(
        &self,
        channel: &str,
        info: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.channel_info(channel, info).await;
            if pred(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("channel {channel} info never matched; last {v}");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// A plain unsigned GET (for /up, unknown routes).
pub async fn http_get(url: &str) -> Resp {
    let resp = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Resp { status, text }
}

/// Write `request` on a fresh TCP connection to 127.0.0.1:`port` and read
/// the answer: the status and what follows the head (for a 101 the head
/// alone is read; otherwise until the server closes). For requests a client
/// library would refuse to send (oversized heads, truncated upgrades).
pub async fn exchange_raw(port: u16, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request).await.expect("write the request");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 8192];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => panic!(
                "no complete answer in 10 s: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Err(e)) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&buf)),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.starts_with(b"HTTP/1.1 101") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let rest = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    (status, rest)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// The server process from outside, and bytes no client library sends

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`...); `None`
/// once the process is gone.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident set size of a process in KiB (`VmRSS`); panics if it is gone.
pub fn rss_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "VmRSS").unwrap_or_else(|| panic!("process {pid} is gone"))
}

/// Whether the process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // `pid (comm) S ...`: the state follows the last ')'.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

/// A 431 with Switchyard's JSON body (`headers_too_large`); the body as JSON.
pub fn assert_431_json(status: u16, body: &str, what: &str) -> Value {
    assert_eq!(status, 431, "{what}: body {body:?}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert_eq!(v["code"], "headers_too_large", "{what}: {v}");
    assert_eq!(v["status"], 431, "{what}: {v}");
    v
}

/// The head of a WebSocket upgrade request for `path_and_query`.
pub fn upgrade_request(path_and_query: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// The header of a client frame (RFC 6455 §5.2) declaring a payload of
/// `len` bytes, masked with the all-zero key so that the payload bytes that
/// follow are written as they are. With `fin`, `opcode` and `len` free, it
/// makes frames a WebSocket library will not: a length the payload never
/// reaches, a fragment that is never finished.
pub fn client_frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![(if fin { 0x80 } else { 0 }) | (opcode & 0x0f)];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=0xffff => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// A whole client frame: [`client_frame_header`] and the payload.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = client_frame_header(fin, opcode, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

impl Ws {
    /// Write bytes straight to the socket, past the WebSocket framing (see
    /// [`client_frame`]); `Err` when the server has already gone.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let tcp = self.stream.get_mut();
        tcp.write_all(bytes).await?;
        tcp.flush().await
    }
}

// ===========================================================================
// Helpers of the security tests (tests/security_*.rs): servers behind TLS or
// on a Unix socket, raw HTTP, request headers and client addresses, JSON
// logs, Prometheus metrics, generated certificates, nginx in front.

pub mod security {
    use super::*;
    use std::collections::HashSet;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpSocket, UnixStream};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    use tokio_tungstenite::Connector;

    pub use tokio_tungstenite::tungstenite::Error as WsError;

    /// A free TCP port on 127.0.0.1 (for SSL_HTTP_PORT, METRICS_PORT, nginx).
    pub fn pick_port() -> u16 {
        free_port()
    }

    /// A fresh temporary directory, removed on drop.
    pub struct TempDir {
        pub path: PathBuf,
    }

    impl TempDir {
        pub fn new() -> TempDir {
            TempDir { path: fresh_dir() }
        }

        pub fn join(&self, name: &str) -> PathBuf {
            self.path.join(name)
        }

        /// `join(name)` as a string (for env values).
        pub fn file(&self, name: &str) -> String {
            self.join(name).to_string_lossy().into_owned()
        }

        pub fn write(&self, name: &str, contents: &str) -> String {
            std::fs::write(self.join(name), contents).expect("write temp file");
            self.file(name)
        }
    }

    impl Default for TempDir {
        fn default() -> Self {
            TempDir::new()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    /// How [`Server::start_ready`] decides that the server is serving.
    #[derive(Clone)]
    pub enum Ready {
        /// `GET http://127.0.0.1:PORT/up` answers 200 (the standard probe).
        Http,
        /// `GET https://127.0.0.1:PORT/up` answers 200 to a client trusting
        /// this PEM root.
        Https(String),
        /// A TCP connection to PORT is accepted.
        TcpOpen,
        /// `GET /up` over this Unix socket answers 200.
        Unix(PathBuf),
        /// A TCP connection to this other port (e.g. the redirect listener)
        /// is accepted.
        TcpPort(u16),
        /// A TCP connection to this address is accepted (a server on another
        /// `HOST` than 127.0.0.1).
        TcpAddr(SocketAddr),
    }

    impl Server {
        /// Start the binary (harness defaults + `env`, optional config file)
        /// and wait until `ready` holds. Retries on a lost port race.
        pub async fn start_ready(
            env: &[(&str, &str)],
            config: Option<&str>,
            ready: Ready,
        ) -> Server {
            let mut last_output = String::new();
            for _attempt in 0..3 {
                let dir = fresh_dir();
                let mut args = Vec::new();
                if let Some(json) = config {
                    let path = dir.join("config.json");
                    std::fs::write(&path, json).expect("write config.json");
                    args.push("--config".to_string());
                    args.push(path.to_string_lossy().into_owned());
                }
                let port = free_port();
                let child = command(&dir, port, env, &args)
                    .spawn()
                    .expect("spawn switchyard binary");
                let mut server = Server {
                    port,
                    dir,
                    child: Some(child),
                };
                match server.wait_probe(&ready, Duration::from_secs(20)).await {
                    Ok(()) => return server,
                    Err(exited_early) => {
                        last_output = server.logs();
                        let in_use = last_output.to_ascii_lowercase().contains("in use");
                        server.kill();
                        if exited_early && in_use {
                            continue;
                        }
                        let _ = std::fs::remove_dir_all(&server.dir);
                        panic!("switchyard did not become ready on port {port}\n{last_output}");
                    }
                }
            }
            panic!("switchyard could not bind a free port in 3 attempts\n{last_output}");
        }

        /// `Err(true)` = the process exited.
        async fn wait_probe(&mut self, ready: &Ready, timeout: Duration) -> Result<(), bool> {
            let deadline = Instant::now() + timeout;
            let https = match ready {
                Ready::Https(root) => Some(https_client(&[root.as_str()])),
                _ => None,
            };
            let http = reqwest::Client::builder()
                .timeout(Duration::from_millis(1000))
                .build()
                .unwrap();
            while Instant::now() < deadline {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(_)) = child.try_wait() {
                        return Err(true);
                    }
                }
                let ok = match ready {
                    Ready::Http => http
                        .get(format!("{}/up", self.http_base()))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200),
                    Ready::Https(_) => https
                        .as_ref()
                        .unwrap()
                        .get(format!("{}/up", self.https_base()))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200),
                    Ready::TcpOpen => TcpStream::connect(("127.0.0.1", self.port)).await.is_ok(),
                    Ready::TcpPort(port) => TcpStream::connect(("127.0.0.1", *port)).await.is_ok(),
                    Ready::TcpAddr(addr) => TcpStream::connect(addr).await.is_ok(),
                    Ready::Unix(path) => unix_http(path, "GET", "/up", &[], b"")
                        .await
                        .is_ok_and(|r| r.status == 200),
                };
                if ok {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(false)
        }

        pub fn stdout_text(&self) -> String {
            read_file(&self.dir.join("stdout.log"))
        }

        pub fn stderr_text(&self) -> String {
            read_file(&self.dir.join("stderr.log"))
        }

        /// Every non-empty line of stdout then stderr.
        pub fn log_lines(&self) -> Vec<String> {
            let mut text = self.stdout_text();
            text.push('\n');
            text.push_str(&self.stderr_text());
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        }

        /// Kill the process now (SIGKILL: a Unix socket file stays behind).
        pub fn kill_hard(&mut self) {
            self.kill();
        }

        /// Whether the process is still running.
        pub fn is_running(&mut self) -> bool {
            match self.child.as_mut() {
                Some(child) => matches!(child.try_wait(), Ok(None)),
                None => false,
            }
        }

        /// TCP ports the process has in LISTEN state (from /proc).
        pub fn tcp_listening_ports(&self) -> Vec<u16> {
            let pid = self.pid().expect("server not running");
            let mut inodes = HashSet::new();
            if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                for entry in entries.flatten() {
                    if let Ok(target) = std::fs::read_link(entry.path()) {
                        let t = target.to_string_lossy().into_owned();
                        if let Some(inode) =
                            t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']'))
                        {
                            inodes.insert(inode.to_string());
                        }
                    }
                }
            }
            assert!(!inodes.is_empty(), "could not read /proc/{pid}/fd");
            let mut ports = Vec::new();
            for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
                let text = std::fs::read_to_string(table).unwrap_or_default();
                for line in text.lines().skip(1) {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                        if let Some((_, port)) = f[1].rsplit_once(':') {
                            ports.push(u16::from_str_radix(port, 16).unwrap());
                        }
                    }
                }
            }
            ports
        }

        pub fn https_base(&self) -> String {
            format!("https://127.0.0.1:{}", self.port)
        }

        pub fn wss_url(&self, path_and_query: &str) -> String {
            format!("wss://127.0.0.1:{}{}", self.port, path_and_query)
        }

        /// Signed API client for the standard app over HTTPS, trusting `root_pem`.
        pub fn https_api(&self, root_pem: &str) -> Api {
            Api::with_client(
                self.https_base(),
                APP_ID,
                APP_KEY,
                APP_SECRET,
                https_client(&[root_pem]),
            )
        }

        /// wss:// connection to the standard app, `connection_established` read.
        pub async fn connect_wss(&self, root_pem: &str) -> Ws {
            let url = self.wss_url(&format!(
                "/app/{APP_KEY}?protocol=7&client=rust&version=1.0"
            ));
            let mut ws = Ws::open_tls(&url, tls_client_config(&[root_pem], rustls::ALL_VERSIONS))
                .await
                .unwrap_or_else(|e| panic!("wss connect to {url} failed: {e}"));
            ws.read_established().await;
            ws
        }

        /// Standard-app WebSocket URL (path and query included).
        pub fn app_ws_url(&self) -> String {
            self.ws_url(&app_ws_path())
        }
    }

    /// `/app/{APP_KEY}?protocol=7&...`
    pub fn app_ws_path() -> String {
        format!("/app/{APP_KEY}?protocol=7&client=rust&version=1.0")
    }

    impl Ws {
        /// Open with extra request headers (e.g. `Origin`, `X-Forwarded-For`)
        /// and optionally from a given local address (127.0.0.x).
        pub async fn try_open_with(
            url: &str,
            headers: &[(&str, &str)],
            local: Option<IpAddr>,
        ) -> Result<Ws, WsError> {
            let mut req = url.into_client_request()?;
            for (k, v) in headers {
                req.headers_mut().append(
                    HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(v).expect("header value"),
                );
            }
            let stream = match local {
                None => {
                    tokio_tungstenite::connect_async_with_config(req, None, true)
                        .await?
                        .0
                }
                Some(ip) => {
                    let uri = req.uri().clone();
                    let host = uri
                        .host()
                        .expect("host")
                        .trim_matches(|c| c == '[' || c == ']');
                    let addr = SocketAddr::new(
                        host.parse().expect("IP host"),
                        uri.port_u16().expect("port"),
                    );
                    let sock = if ip.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    sock.bind(SocketAddr::new(ip, 0))?;
                    let tcp = sock.connect(addr).await?;
                    let _ = tcp.set_nodelay(true);
                    tokio_tungstenite::client_async_with_config(
                        req,
                        MaybeTlsStream::Plain(tcp),
                        None,
                    )
                    .await?
                    .0
                }
            };
            Ok(Ws {
                stream,
                socket_id: String::new(),
                activity_timeout: 0,
            })
        }

        /// `wss://` with a rustls client configuration.
        pub async fn open_tls(url: &str, config: rustls::ClientConfig) -> Result<Ws, WsError> {
            let (stream, _) = tokio_tungstenite::connect_async_tls_with_config(
                url,
                None,
                true,
                Some(Connector::Rustls(Arc::new(config))),
            )
            .await?;
            Ok(Ws {
                stream,
                socket_id: String::new(),
                activity_timeout: 0,
            })
        }

        /// The negotiated TLS version and the number of certificates the
        /// server presented (`None` for a plain connection).
        pub fn tls_info(&self) -> Option<(rustls::ProtocolVersion, usize)> {
            match self.stream.get_ref() {
                MaybeTlsStream::Rustls(tls) => {
                    let conn = tls.get_ref().1;
                    Some((
                        conn.protocol_version().expect("handshake done"),
                        conn.peer_certificates().map_or(0, |c| c.len()),
                    ))
                }
                _ => None,
            }
        }
    }

    /// The HTTP status of a refused WebSocket upgrade.
    pub fn upgrade_status(e: &WsError) -> Option<u16> {
        match e {
            WsError::Http(resp) => Some(resp.status().as_u16()),
            _ => None,
        }
    }

    // -----------------------------------------------------------------------
    // TLS

    /// A rustls client configuration (ring) trusting the given PEM roots.
    pub fn tls_client_config(
        roots_pem: &[&str],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for pem in roots_pem {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.expect("root PEM")).expect("add root");
            }
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// reqwest client over rustls trusting the given PEM roots; no redirects.
    pub fn https_client(roots_pem: &[&str]) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls_client_config(roots_pem, rustls::ALL_VERSIONS))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("https client")
    }

    /// A certificate authority generated for a test (rcgen, ECDSA P-256).
    pub struct TestCa {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    /// A server certificate and its key, PEM.
    pub struct Leaf {
        pub cert_pem: String,
        pub key_pem: String,
    }

    fn ca_params(cn: &str) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        p
    }

    impl TestCa {
        pub fn root(cn: &str) -> TestCa {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = ca_params(cn).self_signed(&key).expect("self-signed CA");
            TestCa { cert, key }
        }

        /// An intermediate CA signed by this one.
        pub fn intermediate(&self, cn: &str) -> TestCa {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = ca_params(cn)
                .signed_by(&key, &self.cert, &self.key)
                .expect("intermediate");
            TestCa { cert, key }
        }

        /// A server certificate for `localhost` and `127.0.0.1`.
        pub fn leaf(&self) -> Leaf {
            let mut p = rcgen::CertificateParams::new(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .expect("params");
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "localhost");
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &self.cert, &self.key).expect("leaf");
            Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        }

        pub fn pem(&self) -> String {
            self.cert.pem()
        }
    }

    // -----------------------------------------------------------------------
    // HTTP with full control (headers in and out)

    /// A response with its headers.
    #[derive(Debug, Clone)]
    pub struct RawResp {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl RawResp {
        /// The first header with this name (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!(
                    "response is not JSON ({e}), status {}: {:?}",
                    self.status,
                    self.text()
                )
            })
        }

        pub fn resp(&self) -> Resp {
            Resp {
                status: self.status,
                text: self.text(),
            }
        }
    }

    fn header_list(h: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
        h.iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }

    /// A plain HTTP client that does not follow redirects, optionally bound
    /// to a local address (127.0.0.x) so the server sees that peer.
    pub fn http_client(local: Option<IpAddr>) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .local_address(local)
            .build()
            .expect("http client")
    }

    /// Send one request with `client`; panics if no response arrives.
    pub async fn send(
        client: &reqwest::Client,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResp {
        let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = resp.status().as_u16();
        let headers = header_list(resp.headers());
        let body = resp.bytes().await.unwrap_or_default().to_vec();
        RawResp {
            status,
            headers,
            body,
        }
    }

    impl Api {
        /// An API client with its own base URL and reqwest client (HTTPS,
        /// through a proxy, from a chosen local address...).
        pub fn with_client(
            base: String,
            id: &str,
            key: &str,
            secret: &str,
            client: reqwest::Client,
        ) -> Api {
            Api {
                base,
                app_id: id.into(),
                key: key.into(),
                secret: secret.into(),
                client,
            }
        }

        /// A signed request with extra headers; the response keeps its headers.
        pub async fn request_full(
            &self,
            method: &str,
            path: &str,
            query: &[(&str, &str)],
            body: &[u8],
            s: &Sign,
            headers: &[(&str, &str)],
        ) -> RawResp {
            let url = self.signed_url(method, path, query, body, s);
            let mut all: Vec<(&str, &str)> = headers.to_vec();
            if method == "POST"
                && !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                all.push(("content-type", "application/json"));
            }
            send(&self.client, method, &url, &all, body).await
        }

        /// Signed GET `/apps/{id}/channels` with extra headers.
        pub async fn get_channels_with(&self, headers: &[(&str, &str)]) -> RawResp {
            self.request_full(
                "GET",
                &self.path("/channels"),
                &[],
                b"",
                &Sign::default(),
                headers,
            )
            .await
        }

        /// The signed path and query (for raw HTTP, e.g. over a Unix socket).
        pub fn signed_target(
            &self,
            method: &str,
            path: &str,
            query: &[(&str, &str)],
            body: &[u8],
            s: &Sign,
        ) -> String {
            let url = self.signed_url(method, path, query, body, s);
            url.strip_prefix(&self.base).unwrap_or(&url).to_string()
        }
    }

    /// One HTTP/1.1 request over any stream, `Connection: close`, response
    /// read to the end. `Host: localhost` unless given.
    pub async fn raw_http<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<RawResp> {
        let mut req = format!("{method} {target} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str("Host: localhost\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("Connection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no complete response in 10 s")
            })??;
        parse_response(&buf, method == "HEAD")
    }

    fn bad(msg: String) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
    }

    fn parse_response(buf: &[u8], head_only: bool) -> std::io::Result<RawResp> {
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| {
                bad(format!(
                    "no header end in {:?}",
                    String::from_utf8_lossy(buf)
                ))
            })?;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let rest = &buf[end + 4..];
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let body = if head_only {
            Vec::new()
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut out = Vec::new();
            let mut rest = rest;
            loop {
                let nl = rest
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .ok_or_else(|| bad("bad chunk".into()))?;
                let size_text = String::from_utf8_lossy(&rest[..nl]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
                rest = &rest[nl + 2..];
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&rest[..size.min(rest.len())]);
                rest = &rest[(size + 2).min(rest.len())..];
            }
            out
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            rest[..len.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        Ok(RawResp {
            status,
            headers,
            body,
        })
    }

    /// Raw HTTP to `127.0.0.1:port`.
    pub async fn tcp_http(
        port: u16,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<RawResp> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        raw_http(stream, method, target, headers, body).await
    }

    /// Raw HTTP over a Unix socket.
    pub async fn unix_http(
        path: &Path,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<RawResp> {
        let stream = UnixStream::connect(path).await?;
        raw_http(stream, method, target, headers, body).await
    }

    // -----------------------------------------------------------------------
    // WebSocket over any stream (Unix sockets)

    /// A WebSocket client over any byte stream.
    pub struct AnyWs<S> {
        pub stream: WebSocketStream<S>,
        pub socket_id: String,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AnyWs<S> {
        /// The next text frame (control frames skipped).
        pub async fn recv(&mut self) -> Frame {
            let deadline = Instant::now() + RECV_TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, self.stream.next()).await {
                    Err(_) => panic!("no frame within {RECV_TIMEOUT:?}"),
                    Ok(None) => panic!("connection ended while waiting for a frame"),
                    Ok(Some(Err(e))) => panic!("WebSocket error: {e}"),
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let json: Value = serde_json::from_str(&t).expect("JSON frame");
                        return Frame { raw: t, json };
                    }
                    Ok(Some(Ok(Message::Ping(_)))) | Ok(Some(Ok(Message::Pong(_)))) => continue,
                    Ok(Some(Ok(other))) => panic!("expected a text frame, got {other:?}"),
                }
            }
        }

        pub async fn expect_event(&mut self, event: &str) -> Frame {
            let f = self.recv().await;
            assert_eq!(f.event(), event, "expected {event}, got {}", f.raw);
            f
        }

        pub async fn read_established(&mut self) -> Frame {
            let f = self.expect_event("pusher:connection_established").await;
            let sid = f.data_json()["socket_id"]
                .as_str()
                .expect("socket_id")
                .to_string();
            assert!(is_socket_id(&sid), "bad socket id {sid:?}");
            self.socket_id = sid;
            f
        }

        pub async fn send_json(&mut self, v: Value) {
            self.stream
                .send(Message::Text(v.to_string()))
                .await
                .expect("send");
        }

        pub async fn subscribe(&mut self, channel: &str) {
            self.send_json(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
                .await;
            let f = self
                .expect_event("pusher_internal:subscription_succeeded")
                .await;
            assert_eq!(f.channel(), Some(channel), "{}", f.raw);
        }
    }

    /// Open a WebSocket over the Unix socket at `path` (no frame read).
    pub async fn unix_ws(path: &Path, path_and_query: &str) -> AnyWs<UnixStream> {
        let stream = UnixStream::connect(path)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        let (stream, _) =
            tokio_tungstenite::client_async(format!("ws://localhost{path_and_query}"), stream)
                .await
                .unwrap_or_else(|e| panic!("WebSocket handshake over {}: {e}", path.display()));
        AnyWs {
            stream,
            socket_id: String::new(),
        }
    }

    // -----------------------------------------------------------------------
    // Logs

    /// Every line as JSON; panics naming the first line that is not an object.
    pub fn json_lines(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| match serde_json::from_str::<Value>(l) {
                Ok(v) if v.is_object() => v,
                _ => panic!("log line is not a JSON object: {l:?}"),
            })
            .collect()
    }

    /// The value of `key=` in a text log line (up to the next space).
    pub fn text_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        let pat = format!(" {key}=");
        let start = line.find(&pat)? + pat.len();
        Some(line[start..].split(' ').next().unwrap_or(""))
    }

    // -----------------------------------------------------------------------
    // Metrics

    /// `GET http://127.0.0.1:port/metrics`; asserts 200.
    pub async fn scrape(port: u16) -> String {
        let r = http_get(&format!("http://127.0.0.1:{port}/metrics")).await;
        assert_eq!(r.status, 200, "metrics endpoint: {}", r.text);
        r.text
    }

    /// One sample: name, labels, value.
    pub type Series = (String, Vec<(String, String)>, f64);

    /// Parse `name{a="b",...} value`.
    pub fn parse_series(line: &str) -> Option<Series> {
        if line.starts_with('#') || line.trim().is_empty() {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let value: f64 = value.trim().parse().ok()?;
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}')?;
                let mut labels = Vec::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, after) = rest.split_once("=\"")?;
                    // values here never contain escaped quotes
                    let (v, after) = after.split_once('"')?;
                    labels.push((k.trim_start_matches(',').to_string(), v.to_string()));
                    rest = after.trim_start_matches(',');
                }
                (n.to_string(), labels)
            }
            None => (series.to_string(), Vec::new()),
        };
        Some((name, labels, value))
    }

    /// The value of the first series `name` carrying all of `labels`.
    pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines()
            .filter_map(parse_series)
            .find_map(|(n, ls, v)| {
                let all = labels
                    .iter()
                    .all(|(k, want)| ls.iter().any(|(lk, lv)| lk == k && lv == want));
                (n == name && all).then_some(v)
            })
    }

    /// Poll the metrics endpoint until the series has `want`; returns the text.
    pub async fn wait_metric(port: u16, name: &str, labels: &[(&str, &str)], want: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = scrape(port).await;
            if metric(&text, name, labels) == Some(want) {
                return text;
            }
            if Instant::now() > deadline {
                let related: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
                panic!(
                    "metric {name}{labels:?} never became {want}; got {:?}\n{}",
                    metric(&text, name, labels),
                    related.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    // -----------------------------------------------------------------------
    // nginx in front of the server

    pub enum Upstream {
        Tcp(u16),
        Unix(PathBuf),
    }

    /// An nginx child process (single process, foreground) with the security
    /// guide's proxy configuration, listening on 127.0.0.1:port.
    pub struct Nginx {
        pub port: u16,
        dir: TempDir,
        child: Option<Child>,
    }

    impl Nginx {
        /// Start nginx proxying to `upstream`. `proxy_bind` makes nginx connect
        /// to the upstream from that local address (e.g. 127.0.0.2), so the
        /// server can tell nginx's address from the client's. Without nginx:
        /// a failure under CI, else `None` (SKIPPED printed) and the caller
        /// returns ([`super::prereq::require_tool`]).
        pub async fn start(upstream: Upstream, proxy_bind: Option<&str>) -> Option<Nginx> {
            let target = match &upstream {
                Upstream::Tcp(p) => format!("127.0.0.1:{p}"),
                Upstream::Unix(path) => format!("unix:{}", path.display()),
            };
            let bind = proxy_bind.map_or(String::new(), |a| format!("proxy_bind {a};"));
            Nginx::start_http(|port| {
                format!(
                    r#"upstream switchyard {{
        server {target};
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            proxy_pass http://switchyard;
            {bind}
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}"#
                )
            })
            .await
        }

        /// nginx serving `http_conf(port)` — what goes in the `http` context
        /// (upstreams, a server listening on `127.0.0.1:port`) — inside a main
        /// configuration of the test's own (pid, logs and temp paths in a
        /// fresh directory, one process in the foreground). Ready once
        /// `GET /up` through it is 200. Without nginx: as [`Nginx::start`].
        pub async fn start_http(http_conf: impl Fn(u16) -> String) -> Option<Nginx> {
            let bin = super::prereq::require_tool("nginx", "apt-get install -y nginx")?;
            let mut last = String::new();
            for _attempt in 0..3 {
                let dir = TempDir::new();
                let port = free_port();
                let d = dir.path.display();
                let http = http_conf(port);
                let conf = format!(
                    r#"master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {http}
}}
"#
                );
                let conf_path = dir.write("nginx.conf", &conf);
                let out = File::create(dir.join("nginx.out")).unwrap();
                let err = File::create(dir.join("nginx.err")).unwrap();
                let child = Command::new(&bin)
                    .arg("-p")
                    .arg(&dir.path)
                    .arg("-c")
                    .arg(&conf_path)
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .arg("-g")
                    .arg("daemon off;")
                    .stdin(Stdio::null())
                    .stdout(Stdio::from(out))
                    .stderr(Stdio::from(err))
                    .spawn()
                    .expect("spawn nginx");
                let mut nginx = Nginx {
                    port,
                    dir,
                    child: Some(child),
                };
                match nginx.wait_ready().await {
                    Ok(()) => return Some(nginx),
                    Err(logs) => {
                        last = logs;
                        if last.contains("in use") {
                            continue;
                        }
                        panic!("nginx did not start:\n{last}");
                    }
                }
            }
            panic!("nginx could not bind a free port:\n{last}");
        }

        /// Until `GET /up` through nginx is 200 (the upstream is serving).
        async fn wait_ready(&mut self) -> Result<(), String> {
            let deadline = Instant::now() + Duration::from_secs(10);
            let client = http_client(None);
            while Instant::now() < deadline {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        self.child = None;
                        return Err(format!("nginx exited ({status})\n{}", self.logs()));
                    }
                }
                if let Ok(r) = client.get(format!("{}/up", self.base())).send().await {
                    if r.status().as_u16() == 200 {
                        return Ok(());
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(format!("nginx not ready in 10 s\n{}", self.logs()))
        }

        pub fn base(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        pub fn ws_url(&self, path_and_query: &str) -> String {
            format!("ws://127.0.0.1:{}{}", self.port, path_and_query)
        }

        pub fn logs(&self) -> String {
            format!(
                "--- nginx stderr ---\n{}--- nginx error.log ---\n{}",
                read_file(&self.dir.join("nginx.err")),
                read_file(&self.dir.join("error.log"))
            )
        }
    }

    impl Drop for Nginx {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if std::thread::panicking() {
                eprintln!("==== nginx (port {}) ====\n{}", self.port, self.logs());
            }
        }
    }
}

/// Start a server process (Redis, MariaDB, PostgreSQL) again on the port it
/// had a moment ago: a few tries cover a port the kernel releases slowly.
pub async fn respawn(what: &str, port: u16, mut spawn: impl AsyncFnMut() -> Result<(), String>) {
    let mut last = String::new();
    for _ in 0..5 {
        match spawn().await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} did not restart on port {port}: {last}");
}
