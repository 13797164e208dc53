//! Process-level behaviour: the server refuses bad configuration with a
//! non-zero exit and a message naming the culprit; `--config` is honoured.

mod common;

use common::*;

#[tokio::test]
async fn invalid_env_value_fails_naming_the_variable() {
    let f = Server::start_expect_failure(&[("ACTIVITY_TIMEOUT", "soon")], None, &[]).await;
    assert!(
        !f.status.success(),
        "exit status {:?}\n{}",
        f.status,
        f.output
    );
    assert!(
        f.output.contains("ACTIVITY_TIMEOUT") && f.output.contains("soon"),
        "message should name the variable and value:\n{}",
        f.output
    );
}

#[tokio::test]
async fn config_type_error_fails_naming_the_key_path() {
    let config =
        r#"{"app_manager": {"array": {"apps": [{"id": "a", "max_connections": "lots"}]}}}"#;
    let f = Server::start_expect_failure(&[], Some(config), &[]).await;
    assert!(
        !f.status.success(),
        "exit status {:?}\n{}",
        f.status,
        f.output
    );
    assert!(
        f.output
            .contains("app_manager.array.apps[0].max_connections"),
        "message should name the key path:\n{}",
        f.output
    );
}

#[tokio::test]
async fn missing_config_file_fails() {
    let f = Server::start_expect_failure(&[], None, &["--config", "/nonexistent/switchyard.json"])
        .await;
    assert!(
        !f.status.success(),
        "exit status {:?}\n{}",
        f.status,
        f.output
    );
    assert!(
        f.output.contains("/nonexistent/switchyard.json"),
        "{}",
        f.output
    );
}

#[tokio::test]
async fn unknown_argument_fails() {
    let f = Server::start_expect_failure(&[], None, &["--frobnicate"]).await;
    assert!(!f.status.success());
    assert!(f.output.contains("--frobnicate"), "{}", f.output);
}

#[tokio::test]
async fn config_file_apps_are_served() {
    let config = r#"{"app_manager": {"driver": "memory", "array": {"apps": [
        {"id": "file-app", "key": "file-key", "secret": "file-secret", "enabled": true,
         "enable_client_messages": true}
    ]}}}"#;
    let server = Server::start_with_config(config, &[]).await;
    let mut ws = server.connect_key("file-key").await;
    ws.subscribe("from-file").await;
    server
        .api_for("file-app", "file-key", "file-secret")
        .publish("from-file", "e", "1")
        .await;
    ws.expect_channel_event("e", "from-file").await;
}

/// Sockudo's shipped `config/config.json`, field for field (sockudo/sockudo
/// at 7040dc04). A drop-in starts with it: `cors.credentials: true` with
/// `origin: ["*"]` is a warning (credentials are then never sent), not a
/// refusal; the nested `policy` app shape is served.
#[tokio::test]
async fn sockudo_shipped_config_starts() {
    let config = include_str!("fixtures/sockudo_config.json");
    let server = Server::start_with_config(config, &[]).await;
    let mut ws = server.connect_key("app-key").await;
    ws.subscribe("shipped").await;
    server
        .api_for("app-id", "app-key", "app-secret")
        .publish("shipped", "e", "1")
        .await;
    ws.expect_channel_event("e", "shipped").await;
    let logs = server.logs();
    assert!(logs.contains("CORS_CREDENTIALS"), "{logs}");
    assert!(logs.contains("mode=development"), "{logs}");

    let f = Server::start_expect_failure(
        &[("METRICS_ENABLED", "false")],
        Some(config),
        &["--check-config"],
    )
    .await;
    assert!(f.status.success(), "{}", f.output);
    assert!(
        f.output.contains("warning: cors.credentials"),
        "--check-config reports it: {}",
        f.output
    );
}

/// Issue 15 finding 5: a port already in use is reported with its address
/// and the setting to change.
#[tokio::test]
async fn a_port_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let f = Server::start_expect_failure(&[("PORT", port.as_str())], None, &[]).await;
    assert!(!f.status.success(), "{}", f.output);
    assert!(
        f.output
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        f.output
    );
    assert!(f.output.contains("PORT"), "{}", f.output);
}

/// The development app is announced once, with the mode it runs in.
#[tokio::test]
async fn the_development_app_warning_is_given_once() {
    let server = Server::start(&[]).await;
    server.connect_key("app-key").await.assert_alive().await;
    let logs = server.logs();
    assert_eq!(logs.matches("development app").count(), 1, "{logs}");
    assert!(logs.contains("mode=development"), "{logs}");
}

/// README: an `ADAPTER_DRIVER` other than `local` and `redis` runs as a
/// single node with a loud warning: the WARN line names the driver and says
/// events do not cross nodes, and the node serves as usual (a publish
/// reaches its subscriber). (`redis` is the bridge: tests/cluster.rs.)
#[tokio::test]
async fn a_non_local_adapter_driver_runs_single_node_with_a_warning() {
    let server = Server::start_app(&[("ADAPTER_DRIVER", "nats")]).await;
    server
        .wait_for_logs("the adapter warning", ms(5000), |l| {
            l.lines().any(|line| {
                line.contains("WARN")
                    && line.contains("ADAPTER_DRIVER=nats is not available in this version")
                    && line.contains("running as a single node")
                    && line.contains("will NOT reach clients of another")
            })
        })
        .await;
    let mut ws = server.connect().await;
    ws.subscribe("news").await;
    server.api().publish("news", "update", "hello").await;
    let f = ws.expect_channel_event("update", "news").await;
    assert_eq!(f.data_str(), "hello");
}

/// The local adapter (the default) gives no such warning.
#[tokio::test]
async fn the_local_adapter_driver_gives_no_adapter_warning() {
    let server = Server::start_app(&[("ADAPTER_DRIVER", "local")]).await;
    let _ws = server.connect().await;
    let logs = server.logs();
    assert!(logs.contains("adapter=local"), "{logs}");
    assert!(!logs.contains("ADAPTER_DRIVER="), "{logs}");
}
