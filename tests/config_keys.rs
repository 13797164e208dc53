//! Issue 13: nothing in a config file passes silently. Every key Switchyard
//! does not read is reported with its full path, by `--check-config` (which
//! still exits 0: Sockudo files carry keys Switchyard leaves out on purpose)
//! and as a start-up warning; Sockudo features Switchyard does not implement
//! are told apart from keys nobody knows.

mod common;

use common::*;

/// Sockudo's documented example configuration (`config/config.toml`, with
/// the few keys only its `config/config.json` has; sockudo/sockudo at
/// 7040dc04), key for key, with Switchyard's own values.
const REFERENCE: &str = include_str!("fixtures/sockudo_reference_keys.json");

/// What the reference file carries that Switchyard does not implement — and
/// nothing else: a key Switchyard reads must never be in this list.
const NOT_SUPPORTED: &[&str] = &[
    "adapter.enable_socket_counting",
    "adapter.aggregate_counts",
    "adapter.fast_presence_transitions",
    "adapter.fallback_to_local",
    "adapter.nats",
    "adapter.pulsar",
    "adapter.rabbitmq",
    "adapter.google_pubsub",
    "adapter.kafka",
    "adapter.iggy",
    "adapter.cluster",
    "database.surrealdb",
    "push",
    "app_manager.array.apps[0].policy.channels.channel_namespaces",
    "app_manager.array.apps[0].policy.channels.channel_delta_compression",
    "app_manager.array.apps[0].policy.idempotency",
    "app_manager.array.apps[0].policy.connection_recovery",
    "ably_compat",
    "cache",
    "queue.reliability",
    "queue.redis",
    "queue.redis_cluster",
    "queue.iggy",
    "metrics.driver",
    "metrics.tcp_exporter",
    "presence.ungraceful_timeout_seconds",
    "presence.v2_ungraceful_timeout_seconds",
    "cleanup",
    "delta_compression",
    "tag_filtering",
    "versioned_messages",
    "annotations",
    "ai_transport",
    "idempotency",
    "ephemeral",
    "echo_control",
    "event_name_filtering",
    "connection_recovery",
    "history",
    "presence_history",
    "websocket.max_message_size",
    "websocket.max_frame_size",
    "websocket.write_buffer_size",
    "websocket.max_backpressure",
    "websocket.auto_ping",
    "websocket.ping_interval",
    "websocket.idle_timeout",
    "websocket.compression",
];

/// The keys `--check-config` reported, with what it said of each.
fn reported(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("warning: config file "))
        .filter_map(|rest| {
            // `<path of the file>: <key>: <why>`; the file is config.json.
            let rest = rest.split_once("config.json: ")?.1;
            let (key, why) = rest.split_once(": ")?;
            Some((key.to_string(), why.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn sockudos_reference_config_loads_and_only_what_switchyard_leaves_out_is_reported() {
    let check = Server::start_expect_failure(&[], Some(REFERENCE), &["--check-config"]).await;
    assert!(check.status.success(), "{}", check.output);
    assert!(
        check.output.contains("configuration OK"),
        "{}",
        check.output
    );
    let keys = reported(&check.output);
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, NOT_SUPPORTED, "{}", check.output);
    for (key, why) in &keys {
        assert_eq!(why, "not supported by Switchyard, ignored", "{key}");
    }
    assert!(!check.output.contains("unknown key"), "{}", check.output);

    // It serves: the app of the grouped `policy` shape, over WebSocket and API.
    let server = Server::start_with_config(REFERENCE, &[]).await;
    let mut ws = server.connect_key("sy-app-key").await;
    ws.subscribe("reference").await;
    server
        .api_for(
            "sy-app",
            "sy-app-key",
            "sy-app-secret-0123456789abcdef0123456789",
        )
        .publish("reference", "e", "1")
        .await;
    ws.expect_channel_event("e", "reference").await;
    // One WARN line per key at start-up.
    let logs = server.logs();
    for key in NOT_SUPPORTED {
        let line = format!("config.json: {key}: not supported by Switchyard, ignored");
        assert_eq!(
            logs.lines()
                .filter(|l| l.contains("WARN") && l.contains(&line))
                .count(),
            1,
            "{key}\n{logs}"
        );
    }
}

#[tokio::test]
async fn a_typo_is_reported_as_an_unknown_key_with_its_full_path() {
    let config = r#"{
        "activity_timout": 30,
        "tag_filtering": {"enabled": true},
        "app_manager": {"array": {"apps": [{
            "id": "typo-app", "key": "typo-key", "secret": "typo-secret-0123456789abcdef0123456789",
            "enabled": true, "max_connections": 10,
            "policy": {"limits": {"max_conections": 10}, "features": {"enable_client_messages": true}}
        }]}}
    }"#;
    let check = Server::start_expect_failure(&[], Some(config), &["--check-config"]).await;
    assert!(check.status.success(), "{}", check.output);
    assert_eq!(
        reported(&check.output),
        [
            ("activity_timout", "unknown key, ignored — a typo?"),
            ("tag_filtering", "not supported by Switchyard, ignored"),
            (
                "app_manager.array.apps[0].policy.limits.max_conections",
                "unknown key, ignored — a typo?"
            ),
        ]
        .map(|(k, w)| (k.to_string(), w.to_string())),
        "{}",
        check.output
    );
    // The flat field beside `policy` is named, with where it belongs.
    assert!(
        check.output.contains(
            "warning: app_manager.array.apps[0].max_connections: ignored because the app has \
             `policy` (as Sockudo does); set app_manager.array.apps[0].policy.limits.max_connections \
             instead"
        ),
        "{}",
        check.output
    );

    // Start-up says the same, as warnings, and serves.
    let server = Server::start_with_config(config, &[]).await;
    server.connect_key("typo-key").await.assert_alive().await;
    let logs = server.logs();
    for needle in [
        "activity_timout: unknown key, ignored — a typo?",
        "app_manager.array.apps[0].policy.limits.max_conections: unknown key, ignored — a typo?",
        "tag_filtering: not supported by Switchyard, ignored",
        "app_manager.array.apps[0].max_connections: ignored because the app has `policy`",
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains("WARN") && l.contains(needle)),
            "{needle}\n{logs}"
        );
    }
}
