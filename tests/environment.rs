//! How the process environment reaches the server when the harness's own
//! defaults would hide it: a `.env` next to variables already set, and the
//! log filter with `RUST_LOG` truly unset (the harness always sets it). Each
//! test spawns the binary itself, with a clean environment, in a directory of
//! its own.

mod common;

use common::security::{pick_port, TempDir};
use common::*;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary running in `dir` with exactly `env` (plus `PATH`); killed on drop.
struct Spawned {
    child: Child,
    stderr: std::path::PathBuf,
}

impl Spawned {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Spawned {
        let stderr = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout.log")).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn switchyard");
        Spawned { child, stderr }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait until `GET /up` on 127.0.0.1:`port` answers 200.
    async fn wait_up(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("switchyard exited ({status}):\n{}", self.logs());
            }
            let up = http
                .get(format!("http://127.0.0.1:{port}/up"))
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200);
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "switchyard did not answer on port {port} in 20 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_for_logs(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if pred(&logs) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for logs: {what}\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("==== switchyard stderr ====\n{}", self.logs());
        }
    }
}

fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/app/{APP_KEY}?protocol=7&client=rust&version=1.0")
}

/// README, Configuration: "a `.env` in the working directory is loaded first
/// and never overrides variables already set". `PORT` and `HOST` come only
/// from the `.env` (the server listens there, so the file was applied);
/// `ACTIVITY_TIMEOUT` is 7 in the file and 9 in the process environment,
/// and the connection advertises 9.
#[tokio::test]
async fn dotenv_fills_in_unset_variables_and_never_overrides_set_ones() {
    let dir = TempDir::new();
    let port = pick_port();
    dir.write(
        ".env",
        &format!("HOST=127.0.0.1\nPORT={port}\nACTIVITY_TIMEOUT=7\n"),
    );
    let mut env = app_env();
    env.extend([
        ("ACTIVITY_TIMEOUT", "9"),
        ("METRICS_ENABLED", "false"),
        ("LOG_COLORS_ENABLED", "false"),
    ]);
    let mut server = Spawned::start(&dir.path, &env);
    server.wait_up(port).await;

    let mut ws = Ws::open(&ws_url(port)).await;
    ws.read_established().await;
    assert_eq!(
        ws.activity_timeout, 9,
        "the process environment's ACTIVITY_TIMEOUT wins over the .env's"
    );
}

/// README, Configuration table: `RUST_LOG` defaults to `info`. With the
/// variable unset the start-up INFO lines are written and a refused frame's
/// DEBUG line is not; with `RUST_LOG=debug` the same frame's line is.
#[tokio::test]
async fn rust_log_defaults_to_info() {
    /// Start with `rust_log` (None = unset), send a frame that is not JSON,
    /// read its 4300 and return the logs written by then.
    async fn logs_after_a_refused_frame(rust_log: Option<&str>) -> String {
        let dir = TempDir::new();
        let port = pick_port();
        let port_text = port.to_string();
        let mut env = app_env();
        env.extend([
            ("HOST", "127.0.0.1"),
            ("PORT", port_text.as_str()),
            ("METRICS_ENABLED", "false"),
            ("LOG_COLORS_ENABLED", "false"),
        ]);
        if let Some(filter) = rust_log {
            env.push(("RUST_LOG", filter));
        }
        let mut server = Spawned::start(&dir.path, &env);
        server.wait_up(port).await;
        server
            .wait_for_logs("the start-up INFO line", |l| {
                l.contains(" INFO ") && l.contains("apps=[")
            })
            .await;

        let mut ws = Ws::open(&ws_url(port)).await;
        ws.read_established().await;
        ws.send_text("this is not JSON").await;
        // The DEBUG line is written before the error is sent.
        ws.expect_error(4300).await;
        server.logs()
    }

    let default = logs_after_a_refused_frame(None).await;
    assert!(
        default.contains(" INFO ") && default.contains("apps=["),
        "INFO lines are logged by default:\n{default}"
    );
    assert!(
        !default.contains("DEBUG") && !default.contains("refused frame"),
        "no DEBUG line by default:\n{default}"
    );

    let debug = logs_after_a_refused_frame(Some("debug")).await;
    assert!(
        debug.contains("DEBUG") && debug.contains("refused frame"),
        "RUST_LOG=debug logs the refused frame:\n{debug}"
    );
}
