//! Operational endpoints and command-line flags: `/`, `/up`, `/up/{app_id}`,
//! `/live`, `/usage`, `--help`, `--version`, `--check-config`.

mod common;

use common::security::{http_client, send};
use common::*;
use std::process::Command;

#[tokio::test]
async fn health_endpoints_answer_as_sockudo_does() {
    let server = Server::start_app(&[]).await;
    let base = server.http_base();
    let root = http_get(&format!("{base}/")).await;
    assert_eq!(root.status, 200);
    let up = http_get(&format!("{base}/up")).await;
    assert_eq!((up.status, up.text.as_str()), (200, "OK"));
    let app = http_get(&format!("{base}/up/{APP_ID}")).await;
    assert_eq!(app.status, 200);
    let unknown = http_get(&format!("{base}/up/no-such-app")).await;
    assert_eq!((unknown.status, unknown.text.as_str()), (404, "NOT_FOUND"));
    let live = http_get(&format!("{base}/live")).await;
    assert_eq!((live.status, live.text.as_str()), (200, "OK"));
}

/// README "Operations": `GET /` and `GET /up` answer 200 with header
/// `X-Health-Check: OK`; `GET /up/{app_id}` is 200 `OK`, 404 `NOT_FOUND`
/// for an unknown app, 503 `APP_DISABLED` for a disabled one — each with
/// the same text in the header and the body.
#[tokio::test]
async fn health_answers_carry_x_health_check() {
    const CONFIG: &str = r#"{"app_manager": {"driver": "memory", "array": {"apps": [
        {"id": "on-app", "key": "on-key", "secret": "on-secret", "enabled": true},
        {"id": "off-app", "key": "off-key", "secret": "off-secret", "enabled": false}
    ]}}}"#;
    let server = Server::start_with_config(CONFIG, &[]).await;
    let client = http_client(None);
    let base = server.http_base();
    for (path, status, text) in [
        ("/", 200, "OK"),
        ("/up", 200, "OK"),
        ("/up/on-app", 200, "OK"),
        ("/up/no-such-app", 404, "NOT_FOUND"),
        ("/up/off-app", 503, "APP_DISABLED"),
    ] {
        let r = send(&client, "GET", &format!("{base}{path}"), &[], b"").await;
        assert_eq!(r.status, status, "GET {path}: {r:?}");
        assert_eq!(r.header("x-health-check"), Some(text), "GET {path}: {r:?}");
        assert_eq!(r.text(), text, "GET {path}");
    }
}

#[tokio::test]
async fn usage_reports_memory_and_live_connections() {
    let server = Server::start_app(&[]).await;
    let url = format!("{}/usage", server.http_base());
    let before = http_get(&url).await.json();
    assert_eq!(before["connections"], 0);
    let memory = &before["memory"];
    let total = memory["total"].as_u64().unwrap();
    assert!(total > 0);
    assert_eq!(
        memory["used"].as_u64().unwrap() + memory["free"].as_u64().unwrap(),
        total
    );
    assert!(before["process"]["rss"].as_u64().unwrap() > 0);
    // `percent` = used / total × 100, a number in (0, 100].
    let used = memory["used"].as_u64().unwrap();
    let percent = memory["percent"]
        .as_f64()
        .unwrap_or_else(|| panic!("memory.percent is not a number: {memory}"));
    assert!(percent > 0.0 && percent <= 100.0, "{memory}");
    let expected = used as f64 * 100.0 / total as f64;
    assert!(
        (percent - expected).abs() < 1e-6,
        "percent {percent} is not used/total ({expected}): {memory}"
    );

    let _a = server.connect().await;
    let _b = server.connect().await;
    let after = http_get(&url).await.json();
    assert_eq!(after["connections"], 2);
    assert_eq!(after["apps"][APP_ID], 2);
}

#[tokio::test]
async fn usage_can_be_switched_off() {
    let server = Server::start_app(&[("HTTP_API_USAGE_ENABLED", "false")]).await;
    let resp = http_get(&format!("{}/usage", server.http_base())).await;
    assert_eq!(resp.status, 404);
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let dir = std::env::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run switchyard");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_and_version_flags() {
    let (code, text) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in ["--config", "--check-config", "--version", "--help"] {
        assert!(text.contains(flag), "--help lists {flag}: {text}");
    }
    let (code, text) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        text.trim(),
        format!("switchyard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_validates_and_exits() {
    let (code, text) = run(&["--check-config"], &[("PORT", "6001")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("configuration OK"), "{text}");

    let (code, text) = run(&["--check-config"], &[("PORT", "not-a-port")]);
    assert_ne!(code, 0);
    assert!(
        text.contains("PORT") && text.contains("not-a-port"),
        "{text}"
    );

    // A wildcard CORS origin with credentials starts, as in Sockudo, warned.
    let (code, text) = run(
        &["--check-config"],
        &[("CORS_CREDENTIALS", "true"), ("CORS_ORIGINS", "*")],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: cors.credentials (CORS_CREDENTIALS)"),
        "{text}"
    );

    // A file app without "enabled" (Sockudo's flat shape: false) is reported.
    let dir = std::env::temp_dir().join(format!("sy-check-disabled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"app_manager": {"array": {"apps": [{"id": "quiet", "key": "k", "secret": "s"}]}}}"#,
    )
    .unwrap();
    let (code, text) = run(&["--check-config", "--config", path.to_str().unwrap()], &[]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: app quiet (file:apps[0]) is disabled"),
        "{text}"
    );
    assert!(
        text.contains("apps=[quiet(file:apps[0],disabled)]"),
        "{text}"
    );

    // No app in production mode: the development app is refused, exit 2.
    let (code, text) = run(&["--check-config"], &[("ENVIRONMENT", "production")]);
    assert_eq!(code, 2, "{text}");
    assert!(!text.contains("configuration OK"), "{text}");

    // Problems found after parsing are all listed, not just the first.
    let (code, text) = run(
        &["--check-config"],
        &[
            ("SSL_ENABLED", "true"),
            ("SSL_CERT_PATH", "/nonexistent/cert.pem"),
            ("SSL_KEY_PATH", "/nonexistent/key.pem"),
            ("RATE_LIMITER_DRIVER", "redis-cluster"),
        ],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("/nonexistent/cert.pem"), "{text}");
    assert!(text.contains("RATE_LIMITER_DRIVER=redis-cluster"), "{text}");
}

/// `.env.example` with its blank app id and key filled in.
fn with_id_and_key(example: &str) -> String {
    example
        .replace(
            "SOCKUDO_DEFAULT_APP_ID=\n",
            "SOCKUDO_DEFAULT_APP_ID=prod-app-0123abcd\n",
        )
        .replace(
            "SOCKUDO_DEFAULT_APP_KEY=\n",
            "SOCKUDO_DEFAULT_APP_KEY=k3y\n",
        )
}

#[test]
fn env_example_is_a_valid_configuration() {
    // .env.example must stay loadable: with credentials filled in it passes
    // --check-config with no warning about them.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    let filled = with_id_and_key(&example).replace(
        "SOCKUDO_DEFAULT_APP_SECRET=\n",
        "SOCKUDO_DEFAULT_APP_SECRET=a-secret-that-is-at-least-thirty-two-bytes-long\n",
    );
    let (code, text) = run_with_dotenv(&filled, &["--check-config"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("apps=[prod-app-0123abcd(env)]"), "{text}");
    assert!(
        !text.contains("warning"),
        "safe values give no warning: {text}"
    );
}

#[test]
fn env_example_as_shipped_refuses_to_start_and_says_why() {
    // Production mode with the credentials still blank: no development app,
    // a refusal naming the variables to set.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    assert!(example.contains("\nENVIRONMENT=production\n"));
    let (code, text) = run_with_dotenv(&example, &["--check-config"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("SOCKUDO_DEFAULT_APP_ID") && !text.contains("configuration OK"),
        "{text}"
    );
}

#[test]
fn env_example_secret_file_form_is_a_valid_configuration() {
    // The commented `SOCKUDO_DEFAULT_APP_SECRET_FILE` line, enabled with the
    // plain variable left empty as shipped, loads the secret from the file.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    let dir = std::env::temp_dir().join(format!("sy-env-example-file-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    let secret = dir.join("secrets/app_secret");
    std::fs::write(&secret, "a-secret-that-is-at-least-thirty-two-bytes-long\n").unwrap();
    let line = "#SOCKUDO_DEFAULT_APP_SECRET_FILE=/run/secrets/app_secret\n";
    assert!(example.contains(line), ".env.example shows the _FILE form");
    let filled = with_id_and_key(&example).replace(
        line,
        &format!("SOCKUDO_DEFAULT_APP_SECRET_FILE={}\n", secret.display()),
    );
    let (code, text) = run_with_dotenv(&filled, &["--check-config"]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("apps=[prod-app-0123abcd(env)]"), "{text}");
    assert!(!text.contains("warning"), "a 47-byte secret: {text}");
    assert!(!text.contains("thirty-two"), "{text}");
}

/// Run the binary in a fresh directory holding `dotenv` as `.env`.
fn run_with_dotenv(dotenv: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "sy-dotenv-{}-{}",
        std::process::id(),
        unix_now_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), dotenv).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", "0")
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run switchyard");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

fn unix_now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Issue 15 finding 1: `openssl rand -base64 64` wraps; pasted as printed,
/// the `.env` loader used to stop at the tail line and every later setting
/// (here `METRICS_HOST`) silently kept its permissive default, while
/// `--check-config` said "configuration OK".
#[test]
fn a_dotenv_with_a_wrapped_value_stops_start_up_naming_the_line() {
    let dotenv = "SOCKUDO_DEFAULT_APP_ID=prod-app\nSOCKUDO_DEFAULT_APP_KEY=0123abcd\n\
        SOCKUDO_DEFAULT_APP_SECRET=7Qm4dJk2Nf1GqZ8s0u3Xb6YcVw9Er5Ta1LpHo2KiUj4Mn7Bv0Cx3Zq8Wy6Ts5Rg\n\
        k1Pq/Lx8Yz0Wv+Tu3Rs==\nMETRICS_HOST=127.0.0.1\nMETRICS_ENABLED=false\n";
    for args in [&["--check-config"][..], &[]] {
        let (code, text) = run_with_dotenv(dotenv, args);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(text.contains(".env line 4"), "{args:?}: {text}");
        assert!(text.contains("openssl rand -hex 32"), "{args:?}: {text}");
        assert!(!text.contains("configuration OK"), "{text}");
    }
    // The same settings on one line start.
    let fixed = dotenv.replace("Rg\nk1Pq", "Rgk1Pq");
    let (code, text) = run_with_dotenv(&fixed, &["--check-config"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("metrics=off"),
        "later lines are applied: {text}"
    );
}

#[tokio::test]
async fn a_taken_metrics_port_does_not_stop_the_server() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let server = Server::start_app(&[
        ("METRICS_ENABLED", "true"),
        ("METRICS_HOST", "127.0.0.1"),
        ("METRICS_PORT", &port),
    ])
    .await;
    let mut ws = server.connect().await;
    ws.subscribe("still-serving").await;
    server
        .wait_for_logs("metrics bind error", ms(5000), |l| {
            l.contains("metrics listener could not bind")
        })
        .await;
}
