//! The blocks of the resolved configuration.
//!
//! Each block deserializes straight from its Sockudo config-file block (every
//! struct is `#[serde(default)]`; keys no field reads are skipped and
//! reported, see `keys`), so the file
//! layer needs no mirror types for them. Fields that only come from the
//! environment are `#[serde(skip)]`.

use std::fmt;

use serde::{Deserialize, Deserializer};
use switchyard_actors::defaults as d;
use switchyard_actors::origin::OriginPattern;

use super::de;
use super::drivers::RateLimiterDriver;

/// Outbound buffering per socket (Sockudo's `websocket` block).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WebsocketConfig {
    /// Messages queued for a slow socket; `None` = unlimited (`null`, `0` or `"none"`).
    pub max_messages: Option<usize>,
    /// Bytes queued for a slow socket; `None` = unlimited.
    pub max_bytes: Option<usize>,
    /// Close with 4100 when the buffer is full instead of dropping messages.
    pub disconnect_on_buffer_full: bool,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            max_messages: Some(d::WEBSOCKET_MAX_MESSAGES),
            max_bytes: None,
            disconnect_on_buffer_full: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct HttpApiConfig {
    /// Body size limit of the HTTP API.
    pub request_limit_in_mb: u32,
    /// Serve `/usage`.
    pub usage_enabled: bool,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            request_limit_in_mb: 10,
            usage_enabled: true,
        }
    }
}

/// Global channel limits; apps without their own value use these.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ChannelLimits {
    pub max_name_length: u32,
    pub cache_ttl: u64,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        ChannelLimits {
            max_name_length: d::MAX_CHANNEL_NAME_LENGTH,
            cache_ttl: d::CACHE_TTL_SECS,
        }
    }
}

/// Global event limits; apps without their own value use these.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EventLimits {
    pub max_channels_at_once: u32,
    pub max_name_length: u32,
    pub max_payload_in_kb: u32,
    pub max_batch_size: u32,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_channels_at_once: d::MAX_EVENT_CHANNELS_AT_ONCE,
            max_name_length: d::MAX_EVENT_NAME_LENGTH,
            max_payload_in_kb: d::MAX_EVENT_PAYLOAD_KB,
            max_batch_size: d::MAX_EVENT_BATCH_SIZE,
        }
    }
}

/// Global presence limits; apps without their own value use these.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    pub max_members_per_channel: u32,
    pub max_member_size_in_kb: u32,
    /// Must be > 0 (Sockudo's rule).
    pub update_rate_limit_per_member_per_second: u32,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            max_members_per_channel: d::MAX_PRESENCE_MEMBERS_PER_CHANNEL,
            max_member_size_in_kb: d::MAX_PRESENCE_MEMBER_SIZE_KB,
            update_rate_limit_per_member_per_second: 10,
        }
    }
}

/// CORS of the HTTP API. Sockudo's defaults are permissive (`*` + credentials);
/// kept for drop-in behaviour, flagged by a production warning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origin patterns (same syntax as app `allowed_origins`); `*`/`any` = all.
    pub origin: Vec<OriginPattern>,
    pub methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    /// `None` (not configured) means allowed with an explicit origin list.
    /// Never allowed with a wildcard, whatever this says (start-up warns).
    pub credentials: Option<bool>,
}

impl CorsConfig {
    /// The origin list contains `*` or `any`.
    pub fn any_origin(&self) -> bool {
        self.origin.iter().any(OriginPattern::is_any)
    }

    /// Whether responses allow credentials: never with a wildcard origin
    /// (Sockudo's behaviour too, with a warning), by default with a list.
    pub fn allows_credentials(&self) -> bool {
        !self.any_origin() && self.credentials.unwrap_or(true)
    }
}

impl Default for CorsConfig {
    fn default() -> Self {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        CorsConfig {
            origin: vec![OriginPattern::any()],
            methods: strings(&["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            allowed_headers: strings(&[
                "Authorization",
                "Content-Type",
                "X-Requested-With",
                "Accept",
                "X-Ably-ClientId",
                "X-Ably-Version",
                "X-Ably-Lib",
                "X-Ably-DeviceToken",
                "Ably-Agent",
                "Ably-Version",
                "Ably-ClientId",
                "X-Idempotency-Key",
            ]),
            credentials: None,
        }
    }
}

/// One fixed-window IP limiter (API requests or WebSocket upgrades).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max_requests: u32,
    pub window_seconds: u64,
    /// Proxies in front of the server whose `X-Forwarded-For` entries are trusted.
    pub trust_hops: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RateLimiterConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "de::string_enum")]
    pub driver: RateLimiterDriver,
    /// `api` is accepted too: the Sockudo security guide uses that name.
    #[serde(alias = "api", deserialize_with = "api_limit")]
    pub api_rate_limit: RateLimit,
    #[serde(alias = "websocket", deserialize_with = "websocket_limit")]
    pub websocket_rate_limit: RateLimit,
    pub redis: RateLimiterRedis,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RateLimiterRedis {
    pub prefix: String,
}

impl Default for RateLimiterRedis {
    fn default() -> Self {
        RateLimiterRedis {
            prefix: "sockudo_rl:".into(),
        }
    }
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig {
            enabled: true,
            driver: RateLimiterDriver::Memory,
            api_rate_limit: RateLimit {
                max_requests: 100,
                window_seconds: 60,
                trust_hops: 0,
            },
            websocket_rate_limit: RateLimit {
                max_requests: 20,
                window_seconds: 60,
                trust_hops: 0,
            },
            redis: RateLimiterRedis::default(),
        }
    }
}

/// A rate-limit block as written: omitted fields take the defaults of *that*
/// scope (API 100/60 s, WebSocket 20/60 s), not of some shared type.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PartialRateLimit {
    max_requests: Option<u32>,
    window_seconds: Option<u64>,
    trust_hops: Option<u32>,
}

impl PartialRateLimit {
    fn over(self, base: RateLimit) -> RateLimit {
        RateLimit {
            max_requests: self.max_requests.unwrap_or(base.max_requests),
            window_seconds: self.window_seconds.unwrap_or(base.window_seconds),
            trust_hops: self.trust_hops.unwrap_or(base.trust_hops),
        }
    }
}

fn api_limit<'de, D: Deserializer<'de>>(d: D) -> Result<RateLimit, D::Error> {
    let base = RateLimiterConfig::default().api_rate_limit;
    Ok(PartialRateLimit::deserialize(d)?.over(base))
}

fn websocket_limit<'de, D: Deserializer<'de>>(d: D) -> Result<RateLimit, D::Error> {
    let base = RateLimiterConfig::default().websocket_rate_limit;
    Ok(PartialRateLimit::deserialize(d)?.over(base))
}

/// TLS for the main listener. `Debug` hides the key passphrase.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SslConfig {
    pub enabled: bool,
    pub cert_path: String,
    pub key_path: String,
    pub passphrase: Option<String>,
    pub ca_path: Option<String>,
    /// Also listen on `http_port` and redirect plain HTTP to HTTPS.
    pub redirect_http: bool,
    pub http_port: u16,
    /// Host name for the redirect target (env `DOMAIN`); `None` = the request's Host.
    #[serde(skip)]
    pub domain: Option<String>,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            enabled: false,
            cert_path: String::new(),
            key_path: String::new(),
            passphrase: None,
            ca_path: None,
            redirect_http: false,
            http_port: 80,
            domain: None,
        }
    }
}

impl fmt::Debug for SslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SslConfig")
            .field("enabled", &self.enabled)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_path", &self.ca_path)
            .field("redirect_http", &self.redirect_http)
            .field("http_port", &self.http_port)
            .field("domain", &self.domain)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UnixSocketConfig {
    pub enabled: bool,
    pub path: String,
    /// File mode of the socket, e.g. `0o660`. Written as an octal string (`"660"`).
    #[serde(deserialize_with = "de::octal_mode")]
    pub permission_mode: u32,
}

impl Default for UnixSocketConfig {
    fn default() -> Self {
        UnixSocketConfig {
            enabled: false,
            path: "/var/run/sockudo/sockudo.sock".into(),
            permission_mode: 0o660,
        }
    }
}

/// Prometheus endpoint. The file nests the prefix (`metrics.prometheus.prefix`);
/// it is flattened here because nothing else lives in that block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "MetricsFile")]
pub struct MetricsConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub prefix: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            host: "0.0.0.0".into(),
            port: 9601,
            prefix: "sockudo_".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct MetricsFile {
    enabled: bool,
    host: String,
    port: u16,
    prometheus: PrometheusFile,
}

#[derive(Deserialize)]
#[serde(default)]
struct PrometheusFile {
    prefix: String,
}

impl Default for MetricsFile {
    fn default() -> Self {
        let d = MetricsConfig::default();
        MetricsFile {
            enabled: d.enabled,
            host: d.host,
            port: d.port,
            prometheus: PrometheusFile { prefix: d.prefix },
        }
    }
}

impl Default for PrometheusFile {
    fn default() -> Self {
        PrometheusFile {
            prefix: MetricsConfig::default().prefix,
        }
    }
}

impl From<MetricsFile> for MetricsConfig {
    fn from(f: MetricsFile) -> Self {
        MetricsConfig {
            enabled: f.enabled,
            host: f.host,
            port: f.port,
            prefix: f.prometheus.prefix,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LoggingConfig {
    /// JSON lines instead of text; only from env `LOG_OUTPUT_FORMAT=json`
    /// because Sockudo fixes the format before reading the file.
    #[serde(skip)]
    pub json: bool,
    pub colors_enabled: bool,
    pub include_target: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            json: false,
            colors_enabled: true,
            include_target: true,
        }
    }
}

/// Redis connection (Sockudo's `database.redis`, plus env `REDIS_URL`).
/// `Debug` hides the password and the URL (which may embed one).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// Wins over host/port when set (env `REDIS_URL` only).
    #[serde(skip)]
    pub url: Option<String>,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: None,
            db: 0,
            key_prefix: "sockudo:".into(),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("db", &self.db)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// The Redis adapter (`ADAPTER_DRIVER=redis`), resolved: what the bridge
/// between nodes needs besides the connection ([`RedisConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterConfig {
    /// Prefix of every Redis key and pub/sub channel of this cluster: the
    /// config file's `adapter.redis.prefix` if set, else the database key
    /// prefix (`DATABASE_REDIS_KEY_PREFIX`, else `database.redis.key_prefix`,
    /// else `sockudo:`). Clusters with different prefixes share a Redis
    /// without seeing each other.
    pub prefix: String,
    /// `adapter.redis.requests_timeout`, milliseconds. Read for
    /// compatibility: Switchyard replicates each node's state to the others
    /// and answers the API from it, so no request waits on other nodes.
    pub requests_timeout_ms: u64,
    /// How nodes watch each other: `CLUSTER_HEALTH_*`, `cluster_health.*`.
    pub health: crate::cluster::Health,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            prefix: RedisConfig::default().key_prefix,
            requests_timeout_ms: 5000,
            health: crate::cluster::Health {
                enabled: true,
                heartbeat_interval: std::time::Duration::from_millis(1000),
                node_timeout: std::time::Duration::from_millis(3000),
                cleanup_interval: std::time::Duration::from_millis(500),
            },
        }
    }
}

/// A SQL database holding apps (Sockudo's `database.mysql` /
/// `database.postgres` blocks, `DATABASE_MYSQL_*` / `DATABASE_POSTGRES_*`).
/// `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlDatabaseConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Option<String>,
    pub database: String,
    /// Checked at load: letters, digits and `_` (optionally `schema.table`).
    pub table_name: String,
    /// Connections kept open; 0 = none until needed.
    pub pool_min: u32,
    /// Most connections at once, at least 1.
    pub pool_max: u32,
}

impl SqlDatabaseConfig {
    /// Sockudo's defaults for MySQL.
    pub fn mysql() -> Self {
        SqlDatabaseConfig {
            host: "localhost".into(),
            port: 3306,
            username: "root".into(),
            password: None,
            database: "sockudo".into(),
            table_name: "applications".into(),
            pool_min: 0,
            pool_max: 10,
        }
    }

    /// Sockudo's defaults, with PostgreSQL's own port and user.
    pub fn postgres() -> Self {
        SqlDatabaseConfig {
            port: 5432,
            username: "postgres".into(),
            ..Self::mysql()
        }
    }
}

impl Default for SqlDatabaseConfig {
    fn default() -> Self {
        Self::mysql()
    }
}

impl fmt::Debug for SqlDatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlDatabaseConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("table_name", &self.table_name)
            .field("pool_min", &self.pool_min)
            .field("pool_max", &self.pool_max)
            .finish()
    }
}

/// Where apps come from besides the config file and environment
/// (`APP_MANAGER_DRIVER`, `app_manager.driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppManagerDriver {
    /// The config file and environment only.
    #[default]
    Memory,
    Mysql,
    Postgres,
}

impl AppManagerDriver {
    pub fn name(self) -> &'static str {
        match self {
            AppManagerDriver::Memory => "memory",
            AppManagerDriver::Mysql => "mysql",
            AppManagerDriver::Postgres => "pgsql",
        }
    }
}

/// The app manager, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppManagerConfig {
    pub driver: AppManagerDriver,
    /// Seconds a database app is served before it is read again
    /// (`app_manager.cache.ttl`, `APP_MANAGER_CACHE_TTL`); 0 = read on
    /// every lookup (also `app_manager.cache.enabled: false`).
    pub cache_ttl: u64,
}

impl Default for AppManagerConfig {
    fn default() -> Self {
        AppManagerConfig {
            driver: AppManagerDriver::Memory,
            cache_ttl: 300,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_blocks_default_per_scope_and_accept_guide_aliases() {
        let rl: RateLimiterConfig = serde_json::from_str(
            r#"{"api": {"trust_hops": 1}, "websocket": {"window_seconds": 30}}"#,
        )
        .unwrap();
        assert_eq!(
            rl.api_rate_limit,
            RateLimit {
                max_requests: 100,
                window_seconds: 60,
                trust_hops: 1
            }
        );
        assert_eq!(
            rl.websocket_rate_limit,
            RateLimit {
                max_requests: 20,
                window_seconds: 30,
                trust_hops: 0
            }
        );
    }

    #[test]
    fn metrics_prefix_is_read_from_the_prometheus_block() {
        let m: MetricsConfig =
            serde_json::from_str(r#"{"port": 9700, "prometheus": {"prefix": "sy_"}}"#).unwrap();
        assert_eq!(m.port, 9700);
        assert_eq!(m.prefix, "sy_");
        assert_eq!(m.host, "0.0.0.0");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let redis = RedisConfig {
            url: Some("redis://:hunter2@h".into()),
            password: Some("hunter2".into()),
            ..RedisConfig::default()
        };
        let ssl = SslConfig {
            passphrase: Some("hunter2".into()),
            ..SslConfig::default()
        };
        let sql = SqlDatabaseConfig {
            password: Some("hunter2".into()),
            ..SqlDatabaseConfig::mysql()
        };
        let debug = format!("{redis:?}{ssl:?}{sql:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
