//! Logging (security guide "Logging & Monitoring"): LOG_OUTPUT_FORMAT=json
//! gives one JSON object per line with timestamp/level/message/target;
//! security events are WARN lines with event, app_id, peer or socket_id and
//! reason; the app secret never appears; LOG_INCLUDE_TARGET=false;
//! LOG_COLORS_ENABLED on a real pseudo-terminal (colours with true, none with
//! false); start-up warnings about weak credentials.

mod common;

use common::prereq;
use common::security::*;
use common::*;
use serde_json::{json, Value};
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Distinctive, long enough not to trigger the short-secret warning.
const SECRET: &str = "Zq9-SECRET-MARKER-7f3c1e0a9b8d4c2e6f5a3b1d0c9e8f7a";

fn secret_env() -> Vec<(&'static str, &'static str)> {
    let mut env = app_env();
    env.push(("SOCKUDO_DEFAULT_APP_SECRET", SECRET));
    env
}

async fn json_server(extra: &[(&str, &str)]) -> Server {
    let mut env = secret_env();
    env.push(("LOG_OUTPUT_FORMAT", "json"));
    env.extend_from_slice(extra);
    Server::start_ready(&env, None, Ready::Http).await
}

fn api(server: &Server) -> Api {
    server.api_for(APP_ID, APP_KEY, SECRET)
}

/// Subscribe to a private channel signed with the distinctive secret.
async fn subscribe_private(ws: &mut Ws, channel: &str) {
    let auth = channel_auth(APP_KEY, SECRET, &ws.socket_id, channel);
    ws.send_subscribe(json!({"channel": channel, "auth": auth}))
        .await;
    ws.expect_channel_event("pusher_internal:subscription_succeeded", channel)
        .await;
}

/// The parsed JSON lines (panics on any non-JSON line).
fn lines_of(server: &Server) -> Vec<Value> {
    json_lines(&server.log_lines())
}

/// Wait for a JSON line with `event` matching `pred`, then check the
/// security-event fields; `who` is "peer" or "socket_id" (the one required).
async fn security_event(
    server: &Server,
    event: &str,
    pred: impl Fn(&Value) -> bool,
    who: &str,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let line = loop {
        let found = lines_of(server)
            .into_iter()
            .find(|l| l["event"] == event && pred(l));
        if let Some(l) = found {
            break l;
        }
        if std::time::Instant::now() > deadline {
            panic!("no {event} log line\n{}", server.logs());
        }
        tokio::time::sleep(ms(30)).await;
    };
    let mut missing = Vec::new();
    if line["level"] != "WARN" {
        missing.push(format!("level WARN (got {})", line["level"]));
    }
    if line["app_id"] != APP_ID {
        missing.push(format!("app_id={APP_ID:?} (got {})", line["app_id"]));
    }
    if line[who].as_str().unwrap_or("").is_empty() {
        missing.push(format!("{who} (got {})", line[who]));
    }
    if line["reason"].as_str().unwrap_or("").is_empty() {
        missing.push(format!("reason (got {})", line["reason"]));
    }
    assert!(
        missing.is_empty(),
        "{event} line lacks: {}\nline: {line}",
        missing.join(", ")
    );
    line
}

fn is_rfc3339_millis(ts: &str) -> bool {
    // 2026-01-02T03:04:05.678Z (or an explicit offset)
    let b = ts.as_bytes();
    b.len() >= 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[20..23].iter().all(u8::is_ascii_digit)
        && (ts.ends_with('Z') || ts[23..].starts_with('+') || ts[23..].starts_with('-'))
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit))
}

#[tokio::test]
async fn json_format_makes_every_line_a_json_object_with_the_base_fields() {
    let server = json_server(&[]).await;
    let mut ws = server.connect().await;
    subscribe_private(&mut ws, "private-json").await;
    ws.send_subscribe(json!({"channel": "private-bad", "auth": format!("{APP_KEY}:00")}))
        .await;
    ws.expect_subscription_error("private-bad", "AuthError", 401)
        .await;
    api(&server).publish("private-json", "e", "d").await;
    ws.expect_channel_event("e", "private-json").await;
    let sid = ws.socket_id.clone();
    ws.close().await;
    server
        .wait_for_logs("connection closed line", ms(3000), |l| {
            l.contains("connection closed")
        })
        .await;

    let lines = server.log_lines();
    assert!(
        lines.len() >= 5,
        "too few lines to judge:\n{}",
        server.logs()
    );
    for v in json_lines(&lines) {
        let ts = v["timestamp"].as_str().unwrap_or("");
        assert!(is_rfc3339_millis(ts), "timestamp {ts:?} in {v}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                .contains(&v["level"].as_str().unwrap_or("")),
            "level in {v}"
        );
        assert!(v["message"].is_string(), "message in {v}");
        assert!(
            v["target"].as_str().is_some_and(|t| !t.is_empty()),
            "target in {v}"
        );
    }
    // structured fields are top-level keys
    let opened = json_lines(&lines)
        .into_iter()
        .find(|v| v["message"] == "connection opened" && v["socket_id"] == sid.as_str())
        .unwrap_or_else(|| panic!("no connection opened line for {sid}\n{}", server.logs()));
    assert_eq!(opened["app_id"], APP_ID, "{opened}");
    assert_eq!(opened["peer"], "127.0.0.1", "{opened}");
    assert_eq!(opened["level"], "INFO", "{opened}");
}

#[tokio::test]
async fn channel_auth_failure_is_a_warn_event() {
    let server = json_server(&[]).await;
    let mut ws = server.connect().await;
    ws.send_subscribe(
        json!({"channel": "private-x", "auth": format!("{APP_KEY}:{}", "0".repeat(64))}),
    )
    .await;
    ws.expect_subscription_error("private-x", "AuthError", 401)
        .await;
    let sid = ws.socket_id.clone();
    let line = security_event(
        &server,
        "channel_auth_failed",
        |l| l["socket_id"] == sid.as_str(),
        "socket_id",
    )
    .await;
    assert_eq!(line["channel"], "private-x", "{line}");
}

#[tokio::test]
async fn bad_api_signature_is_a_warn_event() {
    let server = json_server(&[]).await;
    let bad = Sign {
        corrupt_signature: true,
        ..Sign::default()
    };
    api(&server)
        .get_with("/channels", &[], &bad)
        .await
        .assert_error(401, "auth_failed");
    let line = security_event(&server, "api_auth_failed", |_| true, "peer").await;
    assert_eq!(line["peer"], "127.0.0.1", "{line}");
}

#[tokio::test]
async fn bad_signin_is_a_warn_event() {
    let server = json_server(&[]).await;
    let mut ws = server.connect().await;
    let user_data = json!({"id": "42"}).to_string();
    let auth = signin_auth(APP_KEY, "not-the-secret", &ws.socket_id, &user_data);
    ws.send_json(json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    ws.expect_error(4009).await;
    let sid = ws.socket_id.clone();
    security_event(
        &server,
        "signin_failed",
        |l| l["socket_id"] == sid.as_str(),
        "socket_id",
    )
    .await;
}

#[tokio::test]
async fn origin_refusal_is_a_warn_event() {
    let server = json_server(&[(
        "SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS",
        "https://good.example",
    )])
    .await;
    let mut ws = Ws::try_open_with(
        &server.app_ws_url(),
        &[("Origin", "https://evil.example")],
        None,
    )
    .await
    .unwrap();
    ws.expect_error(4009).await;
    ws.expect_close(4009).await;
    let line = security_event(&server, "connection_refused", |l| l["code"] == 4009, "peer").await;
    assert_eq!(line["origin"], "https://evil.example", "{line}");
}

#[tokio::test]
async fn api_rate_limit_is_a_warn_event() {
    let server = json_server(&[
        ("RATE_LIMITER_ENABLED", "true"),
        ("RATE_LIMITER_API_MAX_REQUESTS", "1"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "60"),
    ])
    .await;
    let api = api(&server);
    assert_eq!(api.get("/channels", &[]).await.status, 200);
    assert_eq!(api.get("/channels", &[]).await.status, 429);
    security_event(&server, "rate_limited", |l| l["limiter"] == "api", "peer").await;
}

#[tokio::test]
async fn client_event_rate_limit_is_a_warn_event() {
    let server = json_server(&[("SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND", "1")]).await;
    let mut ws = server.connect().await;
    subscribe_private(&mut ws, "private-rl").await;
    // 1 per second: the 2nd is refused only inside the first one's second
    let mut w = prereq::Window::new("2 client events in one second", ms(1000), ms(1100));
    let second = loop {
        w.start().await;
        ws.client_event("private-rl", "client-a", json!({})).await;
        ws.client_event("private-rl", "client-a", json!({})).await;
        // in order: a 4301 before the pong, or the pong alone
        ws.send_json(json!({"event": "pusher:ping", "data": {}}))
            .await;
        let f = ws.recv().await;
        if w.conclusive(f.event() == "pusher:error") {
            break f;
        }
    };
    assert_eq!(second.event(), "pusher:error", "{}", second.raw);
    assert_eq!(second.json["data"]["code"], 4301, "{}", second.raw);
    security_event(
        &server,
        "rate_limited",
        |l| l["limiter"] == "client_event",
        "socket_id",
    )
    .await;
}

#[tokio::test]
async fn oversized_websocket_message_is_a_warn_event() {
    let server = json_server(&[("WEBSOCKET_MAX_PAYLOAD_KB", "1")]).await;
    let mut ws = server.connect().await;
    ws.send_text(&format!(
        "{{\"event\":\"pusher:ping\",\"data\":\"{}\"}}",
        "x".repeat(1100)
    ))
    .await;
    ws.expect_close(1009).await;
    security_event(&server, "payload_too_large", |_| true, "socket_id").await;
}

#[tokio::test]
async fn oversized_api_body_is_a_warn_event() {
    let server = json_server(&[("HTTP_API_REQUEST_LIMIT_IN_MB", "1")]).await;
    let mut body = json!({"name": "e", "channel": "c", "data": "x"}).to_string();
    body.push_str(&" ".repeat(1024 * 1024));
    api(&server)
        .post("/events", &body)
        .await
        .assert_error(413, "payload_too_large");
    security_event(&server, "payload_too_large", |_| true, "peer").await;
}

/// Everything that handles the secret, at a verbose level.
async fn exercise(server: &Server) {
    let api = api(server);
    let mut ws = server.connect().await;
    subscribe_private(&mut ws, "private-s").await;
    let cd = json!({"user_id": "7", "user_info": {"n": 1}}).to_string();
    let auth = presence_auth(APP_KEY, SECRET, &ws.socket_id, "presence-s", &cd);
    ws.send_subscribe(json!({"channel": "presence-s", "auth": auth, "channel_data": cd}))
        .await;
    ws.expect_channel_event("pusher_internal:subscription_succeeded", "presence-s")
        .await;
    let ud = json!({"id": "7"}).to_string();
    let auth = signin_auth(APP_KEY, SECRET, &ws.socket_id, &ud);
    ws.send_json(json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": ud}}))
        .await;
    ws.expect_event("pusher:signin_success").await;
    ws.send_subscribe(
        json!({"channel": "private-bad", "auth": format!("{APP_KEY}:{}", "1".repeat(64))}),
    )
    .await;
    ws.expect_subscription_error("private-bad", "AuthError", 401)
        .await;
    api.publish("private-s", "e", "d").await;
    ws.expect_channel_event("e", "private-s").await;
    let wrong = Sign {
        secret: Some("wrong-secret".into()),
        ..Sign::default()
    };
    assert_eq!(api.get_with("/channels", &[], &wrong).await.status, 401);
    let bad_md5 = Sign {
        body_md5: BodyMd5::Wrong,
        ..Sign::default()
    };
    assert_eq!(api.post_with("/events", "{}", &bad_md5).await.status, 401);
    ws.close().await;
}

#[tokio::test]
async fn the_app_secret_never_appears_in_any_log() {
    for (format, level) in [("json", "debug"), ("text", "trace")] {
        let mut env = secret_env();
        env.extend_from_slice(&[("LOG_OUTPUT_FORMAT", format), ("RUST_LOG", level)]);
        let server = Server::start_ready(&env, None, Ready::Http).await;
        exercise(&server).await;
        tokio::time::sleep(ms(200)).await;
        let logs = server.logs();
        assert!(
            logs.len() > 500,
            "{format}/{level}: suspiciously little output:\n{logs}"
        );
        assert!(
            !logs.contains(SECRET),
            "{format}/{level}: the secret appears in the log:\n{}",
            logs.lines()
                .filter(|l| l.contains(SECRET))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // nor in --check-config output
    let f = Server::start_expect_failure(&secret_env(), None, &["--check-config"]).await;
    assert!(
        f.status.success(),
        "--check-config: {:?}\n{}",
        f.status,
        f.output
    );
    assert!(
        !f.output.contains(SECRET),
        "--check-config prints the secret:\n{}",
        f.output
    );
}

#[tokio::test]
async fn include_target_false_drops_the_target() {
    let server = json_server(&[("LOG_INCLUDE_TARGET", "false")]).await;
    let mut ws = server.connect().await;
    ws.assert_alive().await;
    let lines = lines_of(&server);
    assert!(lines.len() >= 3, "{}", server.logs());
    for v in &lines {
        assert!(v.get("target").is_none(), "target present: {v}");
        assert!(
            v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(),
            "{v}"
        );
    }
    // text format: no module path either
    let mut env = secret_env();
    env.extend_from_slice(&[
        ("LOG_OUTPUT_FORMAT", "text"),
        ("LOG_INCLUDE_TARGET", "false"),
    ]);
    let text = Server::start_ready(&env, None, Ready::Http).await;
    text.connect().await.assert_alive().await;
    let logs = text.stderr_text();
    assert!(logs.contains("connection opened"), "{logs}");
    assert!(!logs.contains("switchyard::"), "target shown:\n{logs}");
    // control: with the target, it is there
    let with = json_server(&[("LOG_INCLUDE_TARGET", "true")]).await;
    assert!(
        lines_of(&with).iter().all(|v| v["target"].is_string()),
        "{}",
        with.logs()
    );
}

/// The binary with stdout and stderr on a pseudo-terminal, as in an
/// operator's shell; everything it writes there is collected.
struct OnTerminal {
    port: u16,
    child: std::process::Child,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl OnTerminal {
    fn start(env: &[(&str, &str)]) -> OnTerminal {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two new descriptors; the null name,
        // termios and window size pointers are allowed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are fresh and owned only here.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let dir = TempDir::new();
        let port = pick_port();
        let mut cmd = bare_command(&dir.path, port, env, &[]);
        let child = cmd
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .stdout(Stdio::from(slave.try_clone().expect("dup pty")))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("spawn switchyard on a pty");
        // `cmd` still holds the slave ends; drop them, or the master never
        // sees the end of the output.
        drop(cmd);
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        let reader = std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            // EIO once every slave end is closed (the child exited).
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal {
            port,
            child,
            output,
            reader: Some(reader),
            _dir: dir,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !pred(&self.text()) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what} on the terminal:\n{:?}",
                self.text()
            );
            tokio::time::sleep(ms(25)).await;
        }
    }

    /// Kill the process; all it wrote to the terminal.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.text()
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Colour is a terminal matter: on a terminal (where env_logger's automatic
/// choice would colour), LOG_COLORS_ENABLED decides. If the setting were
/// ignored one of the two runs would fail.
#[tokio::test]
async fn colors_follow_log_colors_enabled_on_a_terminal() {
    for (enabled, coloured) in [("true", true), ("false", false)] {
        let mut env = app_env();
        env.extend_from_slice(&[
            ("LOG_OUTPUT_FORMAT", "text"),
            ("LOG_COLORS_ENABLED", enabled),
        ]);
        let term = OnTerminal::start(&env);
        term.wait_for("the listening line", |t| t.contains("listening on"))
            .await;
        let server = format!("http://127.0.0.1:{}", term.port);
        let api = Api::with_client(server, APP_ID, APP_KEY, APP_SECRET, http_client(None));
        // a WARN line
        let bad = Sign {
            corrupt_signature: true,
            ..Sign::default()
        };
        let r = api
            .request_full("GET", &api.path("/channels"), &[], b"", &bad, &[])
            .await;
        assert_eq!(r.status, 401, "{r:?}");
        term.wait_for("the api_auth_failed line", |t| {
            t.contains("api_auth_failed")
        })
        .await;
        let out = term.stop();
        assert!(
            out.contains("WARN") && out.contains("INFO"),
            "LOG_COLORS_ENABLED={enabled}: WARN and INFO lines expected:\n{out:?}"
        );
        assert_eq!(
            out.contains('\u{1b}'),
            coloured,
            "LOG_COLORS_ENABLED={enabled} on a terminal: ANSI escapes expected: {coloured}\n{out:?}"
        );
    }
}

#[tokio::test]
async fn weak_credentials_are_warned_about_at_startup() {
    // the harness app's secret is "test-secret" (11 bytes)
    let short = Server::start_app(&[]).await;
    short
        .wait_for_logs("short secret warning", ms(2000), |l| {
            l.lines().any(|line| {
                line.contains("WARN")
                    && line.contains("secret is shorter than 32 bytes")
                    && line.contains(APP_ID)
            })
        })
        .await;
    assert!(!short.logs().contains("test-secret"), "{}", short.logs());

    let strong = Server::start_ready(&secret_env(), None, Ready::Http).await;
    strong.connect().await.assert_alive().await;
    assert!(
        !strong.logs().contains("secret is shorter than 32 bytes"),
        "{}",
        strong.logs()
    );
    assert!(
        !strong.logs().contains("development app"),
        "{}",
        strong.logs()
    );

    let dev = Server::start(&[]).await;
    dev.wait_for_logs("dev credentials warning", ms(2000), |l| {
        l.lines()
            .any(|line| line.contains("WARN") && line.contains("serving the development app"))
    })
    .await;
}
