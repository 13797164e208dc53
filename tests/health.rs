//! `switchyard --health`, the command of the Docker HEALTHCHECK: run with the
//! environment of a running server it finds that server's listener — plain
//! HTTP, TLS (a self-signed certificate for another name), a Unix socket,
//! a wildcard HOST — and exits 0; with nothing listening, a listener that
//! never answers or answers non-200, it exits 1 within its deadline with a
//! one-line reason. It reads `.env` like the server, and a configuration
//! error is exit 1, never Docker's reserved 2.

mod common;

use common::security::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_healthy(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    assert!(stdout(out).contains(": 200"), "{}", stdout(out));
}

/// Exit 1 and exactly one line on stderr, containing `reason`.
#[track_caller]
fn assert_unhealthy(out: &Output, reason: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.starts_with("switchyard: health check failed: "),
        "{err}"
    );
    assert!(err.contains(reason), "want {reason:?} in {err:?}");
}

#[tokio::test]
async fn plain_http_server_is_healthy() {
    let env = app_env();
    let server = Server::start_app(&[]).await;
    let out = server.run_alongside(&env, &["--health"]);
    assert_healthy(&out);
    let line = stdout(&out);
    assert!(
        line.contains(&format!("GET http://127.0.0.1:{}/up", server.port)),
        "{line}"
    );
}

#[tokio::test]
async fn wildcard_host_is_probed_on_loopback() {
    let mut env = app_env();
    env.push(("HOST", "0.0.0.0"));
    let server = Server::start(&env).await;
    let out = server.run_alongside(&env, &["--health"]);
    assert_healthy(&out);
    assert!(stdout(&out).contains("127.0.0.1"), "{}", stdout(&out));
}

#[tokio::test]
async fn tls_server_with_a_self_signed_certificate_for_another_name_is_healthy() {
    let dir = TempDir::new();
    let cert = rcgen::generate_simple_self_signed(vec!["realtime.example.com".to_string()])
        .expect("self-signed certificate");
    let cert_pem = cert.cert.pem();
    let cert_path = dir.write("cert.pem", &cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pair.serialize_pem());
    let mut env = app_env();
    env.extend_from_slice(&[
        ("SSL_ENABLED", "true"),
        ("SSL_CERT_PATH", cert_path.as_str()),
        ("SSL_KEY_PATH", key_path.as_str()),
    ]);
    // The harness's readiness probe trusts the certificate; it names
    // realtime.example.com, so probe readiness by TCP instead.
    let server = Server::start_ready(&env, None, Ready::TcpOpen).await;
    let mut ok = None;
    for _ in 0..100 {
        let out = server.run_alongside(&env, &["--health"]);
        if out.status.success() {
            ok = Some(out);
            break;
        }
        tokio::time::sleep(ms(50)).await;
    }
    let out = ok.unwrap_or_else(|| server.run_alongside(&env, &["--health"]));
    assert_healthy(&out);
    assert!(
        stdout(&out).contains(&format!("GET https://127.0.0.1:{}/up", server.port)),
        "{}",
        stdout(&out)
    );

    // The same listener probed without TLS is not healthy: the mode matters.
    let mut plain = env.clone();
    plain.push(("SSL_ENABLED", "false"));
    let out = server.run_alongside(&plain, &["--health"]);
    assert_unhealthy(&out, &format!("http://127.0.0.1:{}/up", server.port));
}

#[tokio::test]
async fn unix_socket_server_is_healthy() {
    let dir = TempDir::new();
    let sock = dir.join("switchyard.sock");
    let path = sock.to_string_lossy().into_owned();
    let mut env = app_env();
    env.extend_from_slice(&[
        ("UNIX_SOCKET_ENABLED", "true"),
        ("UNIX_SOCKET_PATH", path.as_str()),
    ]);
    let server = Server::start_ready(&env, None, Ready::Unix(sock.clone())).await;
    // PORT is set (harness default) but nothing listens on it: the probe
    // must go to the socket.
    let out = server.run_alongside(&env, &["--health"]);
    assert_healthy(&out);
    assert!(
        stdout(&out).contains(&format!("unix:{path}")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn nothing_listening_is_unhealthy_at_once() {
    let dir = TempDir::new();
    let port = pick_port();
    let started = Instant::now();
    let out = run_once(&dir.path, port, &app_env(), &["--health"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_unhealthy(&out, "cannot connect");

    let sock = dir.file("absent.sock");
    let mut env = app_env();
    env.extend_from_slice(&[("UNIX_SOCKET_ENABLED", "true"), ("UNIX_SOCKET_PATH", &sock)]);
    let out = run_once(&dir.path, port, &env, &["--health"]);
    assert_unhealthy(&out, &format!("unix:{sock}: cannot connect"));
}

#[test]
fn a_listener_that_never_answers_is_unhealthy_within_the_timeout() {
    let dir = TempDir::new();
    // Connections complete in the backlog; nobody accepts or answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut env = app_env();
    env.push(("HEALTH_CHECK_TIMEOUT_MS", "300"));
    let started = Instant::now();
    let out = run_once(&dir.path, port, &env, &["--health"]);
    let took = started.elapsed();
    assert_unhealthy(&out, "no answer within 300 ms");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn a_non_200_answer_is_unhealthy() {
    let dir = TempDir::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let out = run_once(&dir.path, port, &app_env(), &["--health"]);
    assert_unhealthy(&out, "HTTP 503, expected 200");
    let head = answer.join().unwrap();
    assert!(head.starts_with("GET /up HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
}

/// The working directory's `.env` is read as the server reads it: here it
/// alone says where the server listens.
#[tokio::test]
async fn dot_env_is_read_like_the_server_reads_it() {
    let server = Server::start_app(&[]).await;
    let dir = TempDir::new();
    let mut dotenv = format!("HOST=127.0.0.1\nPORT={}\n", server.port);
    for (k, v) in app_env() {
        dotenv.push_str(&format!("{k}={v}\n"));
    }
    dir.write(".env", &dotenv);
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("--health")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_healthy(&out);
}

#[test]
fn a_configuration_error_is_exit_1_not_2() {
    let dir = TempDir::new();
    // Half an environment app refuses to load.
    let env = [("SOCKUDO_DEFAULT_APP_ID", "only-the-id")];
    let out = run_once(&dir.path, pick_port(), &env, &["--health"]);
    assert_unhealthy(&out, "configuration error");
}
