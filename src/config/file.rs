//! The config file: Sockudo's `config.json` (or `config.toml`) shape.
//!
//! Every struct is `#[serde(default)]` and keys no field reads are skipped,
//! so an unmodified Sockudo file loads: blocks Switchyard does not use (cache,
//! feature blocks, ...) are skipped by serde — but never silently: `parse`
//! collects each one's path (`serde_ignored`) and `keys` words the warning.
//! A value of the wrong type is an error naming the key path (via
//! `serde_path_to_error`).

use std::path::Path;

use serde::Deserialize;
use switchyard_actors::defaults as d;
use switchyard_actors::origin::OriginPattern;

use super::de;
use super::drivers::{AdapterDriver, ServerRole};
use super::error::ConfigError;
use super::sections::{
    ChannelLimits, CorsConfig, EventLimits, HttpApiConfig, LoggingConfig, MetricsConfig,
    PresenceConfig, RateLimiterConfig, RedisConfig, SslConfig, UnixSocketConfig, WebsocketConfig,
};

/// The whole file. Its `Default` is the built-in defaults (layer 1).
#[derive(Deserialize)]
#[serde(default)]
pub(crate) struct FileConfig {
    pub debug: bool,
    pub host: String,
    pub port: u16,
    /// Sockudo's `path_prefix` (its default `/` = none): the WebSocket
    /// endpoint and the HTTP API are served under it.
    pub path_prefix: String,
    /// `None` when the file does not say: the mode then depends on whether
    /// any app is configured (see `apps::resolve`).
    pub mode: Option<String>,
    #[serde(deserialize_with = "de::string_enum")]
    pub server_role: ServerRole,
    pub activity_timeout: u64,
    /// Switchyard extension: seconds to wait for `pusher:pong`.
    pub pong_timeout: u64,
    pub max_channels_per_connection: usize,
    pub shutdown_grace_period: u64,
    pub user_authentication_timeout: u64,
    pub websocket_max_payload_kb: u32,
    /// Switchyard extension: request line + header fields, KiB (431 over it).
    pub http_max_header_size_kb: u32,
    pub max_connections: u32,
    /// Switchyard extension: shards of the channel registry; 0 = CPUs.
    pub registry_shards: usize,
    pub health_check_timeout_ms: u64,
    pub instance: Instance,
    pub adapter: Adapter,
    pub app_manager: AppManager,
    pub database: Database,
    pub websocket: WebsocketConfig,
    pub http_api: HttpApiConfig,
    pub channel_limits: ChannelLimits,
    pub event_limits: EventLimits,
    pub presence: PresenceConfig,
    pub cors: CorsConfig,
    pub rate_limiter: RateLimiterConfig,
    pub ssl: SslConfig,
    pub unix_socket: UnixSocketConfig,
    pub metrics: MetricsConfig,
    pub logging: LoggingConfig,
    /// Sockudo reads `cluster_health` both here and under `adapter`; this
    /// one wins when both say.
    pub cluster_health: ClusterHealth,
    /// Delivery settings for every app's webhooks.
    pub webhooks: crate::webhooks::config::FileWebhooks,
    pub queue: Queue,
    /// Sockudo's shared pool bounds for the app databases.
    pub database_pooling: DatabasePooling,
}

/// `database_pooling`: when enabled (the default), `min` / `max` bound the
/// pool of each app database that does not set its own `pool_min` /
/// `pool_max`; disabled, a database's `connection_pool_size` does.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
pub(crate) struct DatabasePooling {
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "de::opt_num")]
    pub min: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max: Option<u32>,
}

/// `queue`: where webhook batches wait for delivery.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Queue {
    pub driver: Option<String>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            debug: false,
            host: "0.0.0.0".into(),
            port: 6001,
            path_prefix: "/".into(),
            mode: None,
            server_role: ServerRole::Default,
            activity_timeout: d::ACTIVITY_TIMEOUT_SECS,
            pong_timeout: d::PONG_TIMEOUT_SECS,
            max_channels_per_connection: d::MAX_CHANNELS_PER_CONNECTION,
            shutdown_grace_period: 10,
            user_authentication_timeout: d::USER_AUTHENTICATION_TIMEOUT_SECS,
            websocket_max_payload_kb: d::WEBSOCKET_MAX_PAYLOAD_KB,
            http_max_header_size_kb: 16,
            max_connections: 0,
            registry_shards: 0,
            health_check_timeout_ms: 2000,
            instance: Instance::default(),
            adapter: Adapter::default(),
            app_manager: AppManager::default(),
            database: Database::default(),
            websocket: WebsocketConfig::default(),
            http_api: HttpApiConfig::default(),
            channel_limits: ChannelLimits::default(),
            event_limits: EventLimits::default(),
            presence: PresenceConfig::default(),
            cors: CorsConfig::default(),
            rate_limiter: RateLimiterConfig::default(),
            ssl: SslConfig::default(),
            unix_socket: UnixSocketConfig::default(),
            metrics: MetricsConfig::default(),
            logging: LoggingConfig::default(),
            cluster_health: ClusterHealth::default(),
            webhooks: Default::default(),
            queue: Queue::default(),
            database_pooling: DatabasePooling::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Instance {
    pub process_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Adapter {
    #[serde(deserialize_with = "de::string_enum")]
    pub driver: AdapterDriver,
    pub redis: AdapterRedis,
    pub cluster_health: ClusterHealth,
}

/// `cluster_health`: how nodes watch each other. Times in milliseconds;
/// `None` where the file does not say. Sockudo's keys end in `_ms`
/// (`heartbeat_interval_ms`); the names without it, which earlier Switchyard
/// versions read, are accepted too.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
pub(crate) struct ClusterHealth {
    pub enabled: Option<bool>,
    #[serde(rename = "heartbeat_interval_ms", alias = "heartbeat_interval")]
    pub heartbeat_interval: Option<u64>,
    #[serde(rename = "node_timeout_ms", alias = "node_timeout")]
    pub node_timeout: Option<u64>,
    #[serde(rename = "cleanup_interval_ms", alias = "cleanup_interval")]
    pub cleanup_interval: Option<u64>,
}

impl ClusterHealth {
    /// Each setting of `self`, else of `other`.
    pub fn or(self, other: ClusterHealth) -> ClusterHealth {
        ClusterHealth {
            enabled: self.enabled.or(other.enabled),
            heartbeat_interval: self.heartbeat_interval.or(other.heartbeat_interval),
            node_timeout: self.node_timeout.or(other.node_timeout),
            cleanup_interval: self.cleanup_interval.or(other.cleanup_interval),
        }
    }
}

/// Sockudo's `adapter.redis` block; its other keys (`redis_pub_options`,
/// `redis_sub_options`, `cluster_mode`) are ignored.
#[derive(Deserialize)]
#[serde(default)]
pub(crate) struct AdapterRedis {
    /// `None` when the file does not say: the database key prefix applies.
    pub prefix: Option<String>,
    /// Milliseconds.
    pub requests_timeout: u64,
}

impl Default for AdapterRedis {
    fn default() -> Self {
        AdapterRedis {
            prefix: None,
            requests_timeout: super::sections::AdapterConfig::default().requests_timeout_ms,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
pub(crate) struct AppManager {
    /// `memory` (inline apps), `mysql`, `pgsql`; others produce a warning.
    pub driver: String,
    pub array: AppArray,
    pub cache: AppCache,
}

impl Default for AppManager {
    fn default() -> Self {
        AppManager {
            driver: "memory".into(),
            array: AppArray::default(),
            cache: AppCache::default(),
        }
    }
}

/// Sockudo's `app_manager.cache` block.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct AppCache {
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "de::opt_num")]
    pub ttl: Option<u64>,
}

/// Sockudo's `database.mysql` / `database.postgres` block; `None` = not
/// given (the database's default applies). Its cache keys are not read:
/// `app_manager.cache` is.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SqlDatabase {
    pub host: Option<String>,
    #[serde(deserialize_with = "de::opt_num")]
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub table_name: Option<String>,
    #[serde(deserialize_with = "de::opt_num")]
    pub connection_pool_size: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub pool_min: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub pool_max: Option<u32>,
}

impl SqlDatabase {
    /// The block over `base` (the database's defaults), with the shared
    /// `database_pooling` bounds under its own.
    pub fn over(
        self,
        mut base: super::SqlDatabaseConfig,
        pooling: DatabasePooling,
    ) -> super::SqlDatabaseConfig {
        let set = |field: &mut String, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                *field = v;
            }
        };
        set(&mut base.host, self.host);
        set(&mut base.username, self.username);
        set(&mut base.database, self.database);
        set(&mut base.table_name, self.table_name);
        if let Some(v) = self.port {
            base.port = v;
        }
        if let Some(v) = self.password.filter(|v| !v.is_empty()) {
            base.password = Some(v);
        }
        let (shared_min, shared_max) = match pooling.enabled {
            Some(false) => (None, None),
            _ => (pooling.min, pooling.max),
        };
        if let Some(v) = self.pool_max.or(shared_max).or(self.connection_pool_size) {
            base.pool_max = v;
        }
        if let Some(v) = self.pool_min.or(shared_min) {
            base.pool_min = v;
        }
        base
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct AppArray {
    pub apps: Vec<FileApp>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Database {
    pub redis: RedisConfig,
    pub mysql: SqlDatabase,
    pub postgres: SqlDatabase,
}

/// One `app_manager.array.apps[]` entry in Sockudo's flat shape. `None` means
/// "not given": the resolver applies the global fallback.
///
/// With Sockudo 5's grouped `policy` block every field but `id`, `key`,
/// `secret` and `enabled` comes from `policy` instead, and the flat ones are
/// ignored (as in Sockudo); see [`FileApp::flatten`].
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct FileApp {
    pub id: String,
    pub key: String,
    pub secret: String,
    /// Sockudo defaults an omitted `enabled` to false; so do we.
    pub enabled: bool,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_connections: Option<u32>,
    /// `None` = false; an `Option` only to tell "given" from "not given".
    pub enable_client_messages: Option<bool>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_client_events_per_second: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub decay_seconds: Option<u64>,
    /// `None` = false, likewise.
    pub terminate_on_limit: Option<bool>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_backend_events_per_second: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_read_requests_per_second: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_presence_members_per_channel: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_presence_member_size_in_kb: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_channel_name_length: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_channels_at_once: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_name_length: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_payload_in_kb: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_batch_size: Option<u32>,
    pub enable_user_authentication: Option<bool>,
    pub enable_watchlist_events: Option<bool>,
    /// Switchyard extension: `pusher_internal:subscription_count` events.
    pub enable_subscription_count: Option<bool>,
    pub allowed_origins: Option<Vec<OriginPattern>>,
    /// The app's webhooks as written (a JSON array), parsed with the global
    /// `webhooks` settings in `apps::resolve`.
    pub webhooks: Option<serde_json::Value>,
    pub policy: Option<Box<FilePolicy>>,
    /// Set by [`FileApp::flatten`]: `webhooks` came from `policy.webhooks`.
    #[serde(skip)]
    pub webhooks_in_policy: bool,
    /// Set by [`FileApp::flatten`]: the flat fields that were given but
    /// ignored because the app has `policy`, each with where it belongs
    /// under `policy` (`max_connections` → `limits.max_connections`).
    #[serde(skip)]
    pub flat_ignored: Vec<(&'static str, &'static str)>,
}

/// Sockudo's grouped app shape (`policy`); when present the flat fields are
/// ignored. Only the keys Sockudo has in each group are read from it.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct FilePolicy {
    pub limits: PolicyLimits,
    pub features: PolicyFeatures,
    pub channels: PolicyChannels,
    pub webhooks: Option<serde_json::Value>,
}

/// `policy.limits`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct PolicyLimits {
    #[serde(deserialize_with = "de::opt_num")]
    pub max_connections: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_client_events_per_second: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub decay_seconds: Option<u64>,
    pub terminate_on_limit: Option<bool>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_backend_events_per_second: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_read_requests_per_second: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_presence_members_per_channel: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_presence_member_size_in_kb: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_channel_name_length: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_channels_at_once: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_name_length: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_payload_in_kb: Option<u32>,
    #[serde(deserialize_with = "de::opt_num")]
    pub max_event_batch_size: Option<u32>,
}

/// `policy.features`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct PolicyFeatures {
    pub enable_client_messages: Option<bool>,
    pub enable_user_authentication: Option<bool>,
    pub enable_watchlist_events: Option<bool>,
    /// Switchyard extension, as in the flat shape.
    pub enable_subscription_count: Option<bool>,
}

/// `policy.channels`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct PolicyChannels {
    pub allowed_origins: Option<Vec<OriginPattern>>,
}

impl FileApp {
    /// Each flat field that was given, with where it belongs under `policy`.
    fn flat_fields_given(&self) -> Vec<(&'static str, &'static str)> {
        let given = [
            (
                "max_connections",
                "limits.max_connections",
                self.max_connections.is_some(),
            ),
            (
                "enable_client_messages",
                "features.enable_client_messages",
                self.enable_client_messages.is_some(),
            ),
            (
                "max_client_events_per_second",
                "limits.max_client_events_per_second",
                self.max_client_events_per_second.is_some(),
            ),
            (
                "decay_seconds",
                "limits.decay_seconds",
                self.decay_seconds.is_some(),
            ),
            (
                "terminate_on_limit",
                "limits.terminate_on_limit",
                self.terminate_on_limit.is_some(),
            ),
            (
                "max_backend_events_per_second",
                "limits.max_backend_events_per_second",
                self.max_backend_events_per_second.is_some(),
            ),
            (
                "max_read_requests_per_second",
                "limits.max_read_requests_per_second",
                self.max_read_requests_per_second.is_some(),
            ),
            (
                "max_presence_members_per_channel",
                "limits.max_presence_members_per_channel",
                self.max_presence_members_per_channel.is_some(),
            ),
            (
                "max_presence_member_size_in_kb",
                "limits.max_presence_member_size_in_kb",
                self.max_presence_member_size_in_kb.is_some(),
            ),
            (
                "max_channel_name_length",
                "limits.max_channel_name_length",
                self.max_channel_name_length.is_some(),
            ),
            (
                "max_event_channels_at_once",
                "limits.max_event_channels_at_once",
                self.max_event_channels_at_once.is_some(),
            ),
            (
                "max_event_name_length",
                "limits.max_event_name_length",
                self.max_event_name_length.is_some(),
            ),
            (
                "max_event_payload_in_kb",
                "limits.max_event_payload_in_kb",
                self.max_event_payload_in_kb.is_some(),
            ),
            (
                "max_event_batch_size",
                "limits.max_event_batch_size",
                self.max_event_batch_size.is_some(),
            ),
            (
                "enable_user_authentication",
                "features.enable_user_authentication",
                self.enable_user_authentication.is_some(),
            ),
            (
                "enable_watchlist_events",
                "features.enable_watchlist_events",
                self.enable_watchlist_events.is_some(),
            ),
            (
                "enable_subscription_count",
                "features.enable_subscription_count",
                self.enable_subscription_count.is_some(),
            ),
            (
                "allowed_origins",
                "channels.allowed_origins",
                self.allowed_origins.is_some(),
            ),
            ("webhooks", "webhooks", self.webhooks.is_some()),
        ];
        given
            .into_iter()
            .filter(|(_, _, set)| *set)
            .map(|(flat, nested, _)| (flat, nested))
            .collect()
    }

    /// The flat view: limits from `policy.limits`, flags from
    /// `policy.features`, origins from `policy.channels` when `policy` is set.
    pub fn flatten(mut self) -> FileApp {
        let Some(policy) = self.policy.take() else {
            return self;
        };
        let flat_ignored = self.flat_fields_given();
        let FilePolicy {
            limits,
            features,
            channels,
            webhooks,
        } = *policy;
        FileApp {
            id: self.id,
            key: self.key,
            secret: self.secret,
            enabled: self.enabled,
            max_connections: limits.max_connections,
            enable_client_messages: features.enable_client_messages,
            max_client_events_per_second: limits.max_client_events_per_second,
            decay_seconds: limits.decay_seconds,
            terminate_on_limit: limits.terminate_on_limit,
            max_backend_events_per_second: limits.max_backend_events_per_second,
            max_read_requests_per_second: limits.max_read_requests_per_second,
            max_presence_members_per_channel: limits.max_presence_members_per_channel,
            max_presence_member_size_in_kb: limits.max_presence_member_size_in_kb,
            max_channel_name_length: limits.max_channel_name_length,
            max_event_channels_at_once: limits.max_event_channels_at_once,
            max_event_name_length: limits.max_event_name_length,
            max_event_payload_in_kb: limits.max_event_payload_in_kb,
            max_event_batch_size: limits.max_event_batch_size,
            enable_user_authentication: features.enable_user_authentication,
            enable_watchlist_events: features.enable_watchlist_events,
            enable_subscription_count: features.enable_subscription_count,
            allowed_origins: channels.allowed_origins,
            webhooks_in_policy: webhooks.is_some(),
            webhooks,
            policy: None,
            flat_ignored,
        }
    }
}

/// Replace `${VAR}` with the variable's value. Unset variables become `""`
/// and their names are pushed to `missing` (Sockudo does the same, silently).
pub(crate) fn substitute(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<String>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after.find('}').filter(|&end| is_var_name(&after[..end]));
        match name_len {
            Some(end) => {
                let name = &after[..end];
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        if !missing.iter().any(|m| m == name) {
                            missing.push(name.to_string());
                        }
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `serde_path_to_error` writes `.` for the root and `?` for a segment it
/// could not name (e.g. a syntax error in a map key); drop those.
fn key_path(path: String) -> Option<String> {
    let trimmed = path.strip_suffix(".?").unwrap_or(&path);
    (trimmed != "." && trimmed != "?").then(|| trimmed.to_string())
}

fn is_var_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A parsed file and the keys in it that nothing read, as dotted paths
/// (`app_manager.array.apps[0].policy.limits.max_conections`), in file order.
pub(crate) struct Parsed {
    pub config: FileConfig,
    pub ignored: Vec<String>,
}

/// Parse substituted file text; `.toml` → TOML, anything else → JSON.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Parsed, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let is_toml = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
    let error = |key: String, message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        key: key_path(key),
        message,
    };
    let mut ignored = Vec::new();
    let mut record = |p: serde_ignored::Path| ignored.push(super::keys::dotted(&p));
    let config = if is_toml {
        let de = serde_ignored::Deserializer::new(toml::Deserializer::new(text), &mut record);
        serde_path_to_error::deserialize(de).map_err(|e| {
            error(
                e.path().to_string(),
                e.inner().to_string().trim_end().to_string(),
            )
        })?
    } else {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: FileConfig = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(&mut de, &mut record),
        )
        .map_err(|e| error(e.path().to_string(), e.inner().to_string()))?;
        de.end().map_err(|e| error(".".into(), e.to_string()))?;
        config
    };
    Ok(Parsed { config, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn json(text: &str) -> Result<FileConfig, ConfigError> {
        parse(Path::new("config.json"), text).map(|p| p.config)
    }

    fn ignored(path: &str, text: &str) -> Vec<String> {
        match parse(Path::new(path), text) {
            Ok(p) => p.ignored,
            Err(e) => panic!("{e}"),
        }
    }

    /// `unwrap_err` without requiring `Debug` (which would print secrets).
    fn fails<T>(result: Result<T, ConfigError>) -> ConfigError {
        match result {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn empty_object_is_the_defaults_and_unknown_blocks_are_ignored() {
        let f = json(
            r#"{"queue": {"driver": "sqs", "sqs": {"region": "x"}},
                "webhooks": {"batching": {"enabled": true}},
                "delta_compression": {"enabled": true}, "whatever": [1, 2],
                "database": {"mysql": {"host": "db"}, "redis": {"port": 6380}}}"#,
        )
        .unwrap();
        assert_eq!(f.port, 6001);
        assert_eq!(f.database.redis.port, 6380);
        assert_eq!(f.database.redis.host, "127.0.0.1");
        assert!(f.app_manager.array.apps.is_empty());
    }

    #[test]
    fn type_errors_name_the_key_path() {
        let e = fails(json(
            r#"{"app_manager": {"array": {"apps": [{"id": "a", "max_connections": "x"}]}}}"#,
        ));
        match &e {
            ConfigError::Parse { key, message, path } => {
                assert_eq!(
                    key.as_deref(),
                    Some("app_manager.array.apps[0].max_connections")
                );
                assert!(message.contains("\"x\""), "{message}");
                assert_eq!(path, Path::new("config.json"));
            }
            other => panic!("{other:?}"),
        }
        let e = fails(json(r#"{"port": 70000}"#)).to_string();
        assert!(e.starts_with("config file config.json: port: "), "{e}");
        let e = fails(json(r#"{"adapter": {"driver": "zeromq"}}"#)).to_string();
        assert!(
            e.contains("adapter.driver") && e.contains("expected one of local"),
            "{e}"
        );
        let e = fails(json(r#"{"unix_socket": {"permission_mode": "999"}}"#)).to_string();
        assert!(e.contains("unix_socket.permission_mode"), "{e}");
        let e = fails(json(r#"{"server_role": "worker"}"#)).to_string();
        assert!(
            e.contains("server_role") && e.contains("default or api"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_have_no_key_but_name_the_file() {
        let e = fails(json("{\"port\": 6001,,}")).to_string();
        assert!(
            e.starts_with("config file config.json: key must be a string"),
            "{e}"
        );
        let e = fails(json("{\"cors\": {\"origin\": [\"*\"],,}}")).to_string();
        assert!(
            e.starts_with("config file config.json: cors: key must be"),
            "{e}"
        );
        assert!(json("{} trailing").is_err());
    }

    #[test]
    fn toml_is_chosen_by_extension() {
        let f = parse(
            Path::new("conf/Config.TOML"),
            "port = 7000\n[rate_limiter.api]\nmax_requests = 5\n\
             [[app_manager.array.apps]]\nid = \"a\"\nmax_connections = \"10\"\n",
        )
        .unwrap()
        .config;
        assert_eq!(f.port, 7000);
        assert_eq!(f.rate_limiter.api_rate_limit.max_requests, 5);
        assert_eq!(f.app_manager.array.apps[0].max_connections, Some(10));
        let e = fails(parse(
            Path::new("c.toml"),
            "[[app_manager.array.apps]]\nenabled = \"yes\"\n",
        ));
        match e {
            ConfigError::Parse { key, .. } => {
                assert_eq!(key.as_deref(), Some("app_manager.array.apps[0].enabled"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policy_shape_is_flattened() {
        let f = json(
            r#"{"app_manager": {"array": {"apps": [{
                "id": "a", "key": "k", "secret": "s", "enabled": true,
                "max_connections": 5,
                "policy": {
                    "limits": {"max_connections": "50", "max_event_batch_size": 3, "decay_seconds": 2},
                    "features": {"enable_client_messages": true, "enable_watchlist_events": true},
                    "channels": {"allowed_origins": ["https://x.test"]}
                }}]}}}"#,
        )
        .unwrap();
        let app = f
            .app_manager
            .array
            .apps
            .into_iter()
            .next()
            .unwrap()
            .flatten();
        assert_eq!(app.id, "a");
        assert!(app.enabled);
        assert_eq!(app.max_connections, Some(50));
        assert_eq!(app.max_event_batch_size, Some(3));
        assert_eq!(app.decay_seconds, Some(2));
        assert_eq!(app.enable_client_messages, Some(true));
        assert_eq!(app.enable_watchlist_events, Some(true));
        assert_eq!(
            app.allowed_origins,
            Some(vec![OriginPattern::parse("https://x.test").unwrap()])
        );
    }

    #[test]
    fn every_key_nothing_reads_is_reported_with_its_full_path() {
        let text = r#"{"port": 6001, "prot": 1, "cache": {"driver": "memory"},
            "adapter": {"driver": "local", "nats": {"servers": []}, "redis": {"prefix": "p", "cluster_mode": false},
                        "cluster_health": {"heartbeat_interval_ms": 1000, "heartbeat": 1}},
            "metrics": {"prometheus": {"prefix": "x_", "suffix": "y"}},
            "rate_limiter": {"api": {"max_requests": 1, "identifier": "ip"}},
            "app_manager": {"array": {"apps": [
                {"id": "a", "max_connections": 1, "allowed_origns": []},
                {"id": "b", "policy": {"limits": {"max_conections": 5, "message_rate_limit": {"enabled": true}},
                                       "features": {"enable_client_messages": true, "max_connections": 3},
                                       "channels": {"channel_namespaces": []}, "idempotency": {}}}]}}}"#;
        assert_eq!(
            ignored("config.json", text),
            [
                "prot",
                "cache",
                "adapter.nats",
                "adapter.redis.cluster_mode",
                "adapter.cluster_health.heartbeat",
                "metrics.prometheus.suffix",
                "rate_limiter.api.identifier",
                "app_manager.array.apps[0].allowed_origns",
                "app_manager.array.apps[1].policy.limits.max_conections",
                "app_manager.array.apps[1].policy.limits.message_rate_limit",
                "app_manager.array.apps[1].policy.features.max_connections",
                "app_manager.array.apps[1].policy.channels.channel_namespaces",
                "app_manager.array.apps[1].policy.idempotency",
            ]
        );
        // TOML alike.
        let toml = "prot = 1\n[websocket]\nmax_messages = 5\ncompression = \"on\"\n\
                    [[app_manager.array.apps]]\nid = \"a\"\nmax_conections = 1\n";
        assert_eq!(
            ignored("c.toml", toml),
            [
                "prot",
                "websocket.compression",
                "app_manager.array.apps[0].max_conections"
            ]
        );
        // Nothing for a file of keys that are all read.
        assert!(ignored(
            "c.json",
            r#"{"port": 1, "metrics": {"prometheus": {"prefix": "a"}}}"#
        )
        .is_empty());
    }

    #[test]
    fn flat_fields_beside_policy_are_listed_with_where_they_belong() {
        let f = json(
            r#"{"app_manager": {"array": {"apps": [
                {"id": "a", "max_connections": 5, "enable_client_messages": false,
                 "allowed_origins": ["*"], "decay_seconds": "", "webhooks": [],
                 "policy": {"limits": {"max_connections": 50}}},
                {"id": "b", "max_connections": 5}]}}}"#,
        )
        .unwrap();
        let mut apps = f.app_manager.array.apps.into_iter().map(FileApp::flatten);
        let a = apps.next().unwrap();
        assert_eq!(a.max_connections, Some(50));
        assert_eq!(
            a.flat_ignored,
            [
                ("max_connections", "limits.max_connections"),
                ("enable_client_messages", "features.enable_client_messages"),
                ("allowed_origins", "channels.allowed_origins"),
                ("webhooks", "webhooks"),
            ],
            "\"\" is \"not set\" for a number, so decay_seconds is not listed"
        );
        let b = apps.next().unwrap();
        assert!(b.flat_ignored.is_empty());
        assert_eq!(b.max_connections, Some(5));
    }

    #[test]
    fn substitution_replaces_known_vars_and_reports_missing_ones() {
        let vars: HashMap<&str, &str> = [("SECRET", "s3"), ("PORT", "7001")].into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let mut missing = Vec::new();
        let out = substitute(
            r#"{"a": "${SECRET}", "b": ${PORT}, "c": "${NOPE}${NOPE}", "d": "${not valid}", "e": "$X ${"#,
            &env,
            &mut missing,
        );
        assert_eq!(
            out,
            r#"{"a": "s3", "b": 7001, "c": "", "d": "${not valid}", "e": "$X ${"#
        );
        assert_eq!(missing, vec!["NOPE".to_string()]);
    }
}
