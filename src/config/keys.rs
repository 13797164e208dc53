//! Keys of a config file that Switchyard does not read.
//!
//! Parsing stays lenient (an unmodified Sockudo file must load), but nothing
//! passes silently: every key that no field takes is collected while the file
//! is deserialized (`serde_ignored`) and reported — by `--check-config` and
//! as one start-up warning each — with its full path. A key Sockudo has and
//! Switchyard deliberately leaves out ([`NOT_SUPPORTED`]) is told apart from
//! a key nobody knows, which is most likely a typo.

use std::fmt::Write as _;

/// Sockudo settings Switchyard does not implement, as key paths where `[]`
/// stands for any index. A pattern covers its key and everything under it.
/// Taken from Sockudo's option structs (`sockudo-core/src/options/`,
/// `app.rs`); keep it to Sockudo's own names.
pub(crate) const NOT_SUPPORTED: &[&str] = &[
    // Whole features.
    "ably_compat",
    "ai_transport",
    "annotations",
    "cache",
    "cleanup",
    "connection_recovery",
    "delta_compression",
    "echo_control",
    "ephemeral",
    "event_name_filtering",
    "history",
    "idempotency",
    "presence_history",
    "push",
    "push_rules",
    "tag_filtering",
    "versioned_messages",
    // Adapters other than local and Redis, and their tuning.
    "adapter.aggregate_counts",
    "adapter.buffer_multiplier_per_cpu",
    "adapter.cluster",
    "adapter.enable_socket_counting",
    "adapter.fallback_to_local",
    "adapter.fast_presence_transitions",
    "adapter.google_pubsub",
    "adapter.iggy",
    "adapter.kafka",
    "adapter.nats",
    "adapter.pulsar",
    "adapter.rabbitmq",
    "adapter.redis.cluster_mode",
    "adapter.redis.redis_pub_options",
    "adapter.redis.redis_sub_options",
    // App managers other than memory, MySQL and PostgreSQL, and the
    // per-database cache settings (`app_manager.cache` is the one read).
    "app_manager.scylladb",
    "database.dynamodb",
    "database.mysql.cache_cleanup_interval",
    "database.mysql.cache_max_capacity",
    "database.mysql.cache_ttl",
    "database.postgres.cache_cleanup_interval",
    "database.postgres.cache_max_capacity",
    "database.postgres.cache_ttl",
    "database.scylladb",
    "database.surrealdb",
    // Redis Sentinel and Cluster connections.
    "database.redis.cluster",
    "database.redis.cluster_nodes",
    "database.redis.master_tls",
    "database.redis.name",
    "database.redis.sentinel_password",
    "database.redis.sentinel_tls",
    "database.redis.sentinel_username",
    "database.redis.sentinels",
    // App features.
    "app_manager.array.apps[].annotations_enabled",
    "app_manager.array.apps[].channel_delta_compression",
    "app_manager.array.apps[].channel_namespaces",
    "app_manager.array.apps[].connection_recovery",
    "app_manager.array.apps[].idempotency",
    "app_manager.array.apps[].message_rate_limit",
    "app_manager.array.apps[].policy.channels.annotations_enabled",
    "app_manager.array.apps[].policy.channels.channel_delta_compression",
    "app_manager.array.apps[].policy.channels.channel_namespaces",
    "app_manager.array.apps[].policy.connection_recovery",
    "app_manager.array.apps[].policy.history",
    "app_manager.array.apps[].policy.idempotency",
    "app_manager.array.apps[].policy.limits.message_rate_limit",
    "app_manager.array.apps[].policy.presence_history",
    // Queue backends and tuning other than `queue.driver`.
    "queue.google_pubsub",
    "queue.iggy",
    "queue.kafka",
    "queue.nats",
    "queue.pulsar",
    "queue.rabbitmq",
    "queue.redis",
    "queue.redis_cluster",
    "queue.reliability",
    "queue.sns",
    "queue.sqs",
    // Settings of blocks Switchyard otherwise reads.
    "http_api.accept_traffic",
    "metrics.driver",
    "metrics.tcp_exporter",
    "presence.ungraceful_timeout_seconds",
    "presence.v2_ungraceful_timeout_seconds",
    "rate_limiter.api.identifier",
    "rate_limiter.api_rate_limit.identifier",
    "rate_limiter.redis.cluster_mode",
    "rate_limiter.redis.url_override",
    "rate_limiter.websocket.identifier",
    "rate_limiter.websocket_rate_limit.identifier",
    "websocket.auto_ping",
    "websocket.compression",
    "websocket.idle_timeout",
    "websocket.max_backpressure",
    "websocket.max_frame_size",
    "websocket.max_message_size",
    "websocket.ping_interval",
    "websocket.write_buffer_size",
];

/// One segment of a key path.
enum Segment {
    Key(String),
    Index(usize),
}

/// The dotted path of a key `serde_ignored` reports, indexes in brackets:
/// `app_manager.array.apps[0].policy.limits.max_conections`.
pub(crate) fn dotted(path: &serde_ignored::Path) -> String {
    let mut segments = Vec::new();
    let mut at = path;
    loop {
        match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                segments.push(Segment::Index(*index));
                at = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                segments.push(Segment::Key(key.clone()));
                at = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => at = parent,
        }
    }
    let mut out = String::new();
    for segment in segments.iter().rev() {
        match segment {
            Segment::Key(key) if out.is_empty() => out.push_str(key),
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// `path` with every index written `[]`.
fn generic(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// A Sockudo setting Switchyard knowingly does not implement.
pub(crate) fn is_not_supported(path: &str) -> bool {
    let path = generic(path);
    NOT_SUPPORTED.iter().any(|pattern| {
        path.strip_prefix(pattern)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    })
}

/// What is said of one ignored key: `<path>: <why>`.
pub(crate) fn describe(path: &str) -> String {
    if is_not_supported(path) {
        format!("{path}: not supported by Switchyard, ignored")
    } else {
        format!("{path}: unknown key, ignored — a typo?")
    }
}

/// The warning for one ignored key of a file: `<source>: <path>: <why>`.
pub(crate) fn warning(source: &str, path: &str) -> String {
    format!("{source}: {}", describe(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Outer {
        apps: Vec<Inner>,
        inner: Option<Inner>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Inner {
        name: String,
    }

    #[test]
    fn paths_are_dotted_with_indexes_in_brackets() {
        let mut seen = Vec::new();
        let mut de = serde_json::Deserializer::from_str(
            r#"{"apps": [{"name": "a"}, {"nmae": "b", "x": {"y": 1}}], "inner": {"z": 1}, "top": []}"#,
        );
        let _: Outer = serde_ignored::deserialize(&mut de, |p| seen.push(dotted(&p))).unwrap();
        assert_eq!(seen, ["apps[1].nmae", "apps[1].x", "inner.z", "top"]);
    }

    #[test]
    fn sockudo_features_are_told_from_typos() {
        assert!(is_not_supported("delta_compression"));
        assert!(is_not_supported("delta_compression.enabled"));
        assert!(is_not_supported(
            "app_manager.array.apps[12].policy.channels.channel_namespaces[0].name"
        ));
        assert!(is_not_supported("adapter.nats"));
        assert!(!is_not_supported("adapter.natsx"), "a prefix of a word");
        assert!(!is_not_supported("delta_compresion"));
        assert!(!is_not_supported(
            "app_manager.array.apps[0].policy.limits.max_conections"
        ));
        let w = warning("config file c.json", "cache");
        assert_eq!(
            w,
            "config file c.json: cache: not supported by Switchyard, ignored"
        );
        let w = warning(
            "config file c.json",
            "app_manager.array.apps[0].max_conections",
        );
        assert!(
            w.ends_with("max_conections: unknown key, ignored — a typo?"),
            "{w}"
        );
    }

    #[test]
    fn patterns_write_every_index_as_brackets() {
        for pattern in NOT_SUPPORTED {
            assert_eq!(generic(pattern), *pattern, "{pattern}: write indexes as []");
            assert!(!pattern.ends_with('.'), "{pattern}");
        }
    }
}
