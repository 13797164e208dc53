//! Configuration: Sockudo's config file and environment, resolved once at
//! start-up into a plain [`Config`].
//!
//! Precedence, lowest to highest: built-in defaults < config file <
//! environment. Unlike Sockudo, anything that does not parse or validate
//! stops start-up with a message naming the file and key, or the variable.
//!
//! - `file`: the config-file shape and `${VAR}` substitution.
//! - `env`: overrides under Sockudo's variable names; `<NAME>_FILE` for secrets.
//! - `apps`: inline apps, the `SOCKUDO_DEFAULT_APP_*` app, the dev fallback.
//! - `validate`: cross-field checks and start-up warnings.
//! - `keys`: the keys of the file that nothing reads, reported one by one.

mod apps;
mod cli;
mod de;
mod dotenv;
mod drivers;
mod env;
mod error;
mod file;
pub(crate) mod keys;
mod sections;
mod validate;
pub mod vars;

pub(crate) use de::opt_num as de_opt_num;

use std::fmt;
use std::path::{Path, PathBuf};

use switchyard_actors::app::App;

pub use apps::{app_from_row, AppRow, AppSource};
pub use cli::Cli;
pub use drivers::{AdapterDriver, RateLimiterDriver, ServerRole};
pub use error::ConfigError;
pub use sections::{
    AdapterConfig, AppManagerConfig, AppManagerDriver, ChannelLimits, CorsConfig, EventLimits,
    HttpApiConfig, LoggingConfig, MetricsConfig, PresenceConfig, RateLimit, RateLimiterConfig,
    RateLimiterRedis, RedisConfig, SqlDatabaseConfig, SslConfig, UnixSocketConfig, WebsocketConfig,
};

use env::Env;
use file::FileConfig;

/// The resolved configuration. `Debug` lists app ids only and redacts
/// passwords, so it is safe to log; for the start-up line use [`Config::summary`].
pub struct Config {
    pub debug: bool,
    pub host: String,
    pub port: u16,
    /// `path_prefix` / `PATH_PREFIX`: the WebSocket endpoint and the HTTP
    /// API are served under it (`/ws/app/{key}`, `/ws/apps/{id}/events`);
    /// the health endpoints stay at the root. Validated and normalized:
    /// `""` for none (Sockudo's default `/`), else `/segment[/segment…]`.
    pub path_prefix: String,
    /// `ENVIRONMENT` / `mode`; `production` enables extra warnings. When
    /// neither is set: `production`, or `development` if the development app
    /// is served because no app is configured.
    pub mode: String,
    pub server_role: ServerRole,
    /// Seconds; advertised in `pusher:connection_established`.
    pub activity_timeout: u64,
    /// Seconds to wait for `pusher:pong` (Switchyard extension).
    pub pong_timeout: u64,
    /// Channels one socket may be subscribed to at once; 0 = no limit
    /// (Switchyard extension, `MAX_CHANNELS_PER_CONNECTION`).
    pub max_channels_per_connection: usize,
    pub shutdown_grace_period: u64,
    pub user_authentication_timeout: u64,
    pub websocket_max_payload_kb: u32,
    /// Largest request head (request line + header fields), KiB, 1-64; over
    /// it: 431 (Switchyard extension, `HTTP_MAX_HEADER_SIZE_KB`).
    pub http_max_header_size_kb: u32,
    /// Server-wide connection cap; 0 = unlimited.
    pub max_connections: u32,
    /// Channel-registry shards, never 0 (0 in the input = number of CPUs).
    pub registry_shards: usize,
    pub health_check_timeout_ms: u64,
    pub websocket: WebsocketConfig,
    /// Every app served, enabled or disabled.
    pub apps: Vec<App>,
    /// Where each of `apps` came from, in the same order.
    pub app_sources: Vec<AppSource>,
    /// The built-in development app is being served (no apps were configured).
    pub dev_credentials: bool,
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
    pub adapter_driver: AdapterDriver,
    /// The Redis adapter's prefix and timeouts (used with `ADAPTER_DRIVER=redis`).
    pub adapter: AdapterConfig,
    pub redis: RedisConfig,
    /// Where apps are read besides the config file and environment.
    pub app_manager: AppManagerConfig,
    /// The database of `APP_MANAGER_DRIVER=mysql` (`database.mysql`, `DATABASE_MYSQL_*`).
    pub mysql: SqlDatabaseConfig,
    /// The database of `APP_MANAGER_DRIVER=pgsql` (`database.postgres`, `DATABASE_POSTGRES_*`).
    pub postgres: SqlDatabaseConfig,
    /// Webhook delivery and every app's webhooks.
    pub webhooks: crate::webhooks::config::WebhookSettings,
    /// `QUEUE_DRIVER` / `queue.driver` as written, when set.
    pub queue_driver: Option<String>,
    /// Node identity; random `switchyard-<16 hex>` unless configured.
    pub instance_id: String,
    /// The file that was loaded, if any.
    pub config_file: Option<PathBuf>,
    /// Problems that did not stop start-up (missing `${VAR}`s, permissive
    /// production settings, dev credentials). Collected rather than logged
    /// because logging is usually set up from this very config.
    pub warnings: Vec<String>,
}

/// Load everything: `.env` (CWD only, never overriding the process
/// environment; a line that does not parse stops start-up), the process
/// environment, and the config file. Call it before
/// starting threads: reading `.env` sets process environment variables.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    if let Some(vars) = dotenv::read(Path::new(".env"))? {
        dotenv::apply(vars);
    }
    load_from(cli.config_path.as_deref(), &|var| std::env::var(var).ok())
}

/// The testable core of [`load`]: no `.env`, environment through `env`.
/// The file is `cli_path`, else `CONFIG_FILE`, else `config/config.toml`,
/// else `config/config.json` (relative to the CWD), else none.
pub fn load_from(
    cli_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    match config_path(cli_path, env, Path::new("")) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            build(Some((&path, &text)), env)
        }
        None => build(None, env),
    }
}

/// An explicitly named file must exist; the default locations are optional.
fn config_path(
    cli_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Option<PathBuf> {
    if let Some(path) = cli_path {
        return Some(path.to_path_buf());
    }
    if let Some(path) = env("CONFIG_FILE").filter(|p| !p.trim().is_empty()) {
        return Some(PathBuf::from(path));
    }
    ["config/config.toml", "config/config.json"]
        .into_iter()
        .map(|default| base.join(default))
        .find(|path| path.is_file())
}

/// Defaults < file text (after `${VAR}` substitution) < environment, then apps,
/// validation and the derived values.
pub(crate) fn build(
    source: Option<(&Path, &str)>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let env = Env::load(lookup)?;
    let mut warnings = Vec::new();
    let file = match source {
        Some((path, text)) => {
            let mut missing = Vec::new();
            let text = file::substitute(text, &|var| env.raw(var), &mut missing);
            for var in missing {
                warnings.push(format!(
                    "config file {}: ${{{var}}} is not set; substituted an empty string",
                    path.display()
                ));
            }
            let parsed = file::parse(path, &text)?;
            let source = format!("config file {}", path.display());
            for key in &parsed.ignored {
                warnings.push(keys::warning(&source, key));
            }
            parsed.config
        }
        None => FileConfig::default(),
    };
    let inline_apps = file.app_manager.array.apps;
    let adapter_redis = file.adapter.redis;
    let app_manager_driver = env
        .string("APP_MANAGER_DRIVER")
        .unwrap_or(file.app_manager.driver);
    let driver = match app_manager_driver.trim().to_ascii_lowercase().as_str() {
        "mysql" => Some(AppManagerDriver::Mysql),
        "pgsql" | "postgres" | "postgresql" => Some(AppManagerDriver::Postgres),
        "memory" | "" => Some(AppManagerDriver::Memory),
        _ => None,
    };
    let app_cache = file.app_manager.cache;
    let mut c = Config {
        debug: file.debug,
        host: file.host,
        port: file.port,
        path_prefix: file.path_prefix,
        mode: file.mode.clone().unwrap_or_else(|| "production".into()),
        server_role: file.server_role,
        activity_timeout: file.activity_timeout,
        pong_timeout: file.pong_timeout,
        max_channels_per_connection: file.max_channels_per_connection,
        shutdown_grace_period: file.shutdown_grace_period,
        user_authentication_timeout: file.user_authentication_timeout,
        websocket_max_payload_kb: file.websocket_max_payload_kb,
        http_max_header_size_kb: file.http_max_header_size_kb,
        max_connections: file.max_connections,
        registry_shards: file.registry_shards,
        health_check_timeout_ms: file.health_check_timeout_ms,
        websocket: file.websocket,
        apps: Vec::new(),
        app_sources: Vec::new(),
        dev_credentials: false,
        http_api: file.http_api,
        channel_limits: file.channel_limits,
        event_limits: file.event_limits,
        presence: file.presence,
        cors: file.cors,
        rate_limiter: file.rate_limiter,
        ssl: file.ssl,
        unix_socket: file.unix_socket,
        metrics: file.metrics,
        logging: file.logging,
        adapter_driver: file.adapter.driver,
        adapter: AdapterConfig {
            prefix: String::new(),
            requests_timeout_ms: adapter_redis.requests_timeout,
            health: health_from(file.cluster_health.or(file.adapter.cluster_health)),
        },
        redis: file.database.redis,
        app_manager: AppManagerConfig {
            driver: driver.unwrap_or_default(),
            cache_ttl: match app_cache.enabled {
                Some(false) => 0,
                _ => app_cache
                    .ttl
                    .unwrap_or(AppManagerConfig::default().cache_ttl),
            },
        },
        mysql: file
            .database
            .mysql
            .over(SqlDatabaseConfig::mysql(), file.database_pooling),
        postgres: file
            .database
            .postgres
            .over(SqlDatabaseConfig::postgres(), file.database_pooling),
        webhooks: crate::webhooks::config::WebhookSettings::from_file(file.webhooks),
        queue_driver: file.queue.driver,
        instance_id: file.instance.process_id.unwrap_or_default(),
        config_file: source.map(|(path, _)| path.to_path_buf()),
        warnings,
    };
    env::apply(&mut c, &env)?;
    // The adapter's own key wins over the database prefix (as in Sockudo,
    // where `adapter.redis.prefix` is the adapter's); the database prefix
    // is already environment > file > default.
    c.adapter.prefix = adapter_redis
        .prefix
        .unwrap_or_else(|| c.redis.key_prefix.clone());
    c.path_prefix = validate::path_prefix(&c.path_prefix)?;
    validate::globals(&c)?;

    let explicit_mode = env.word("ENVIRONMENT").or(file.mode);
    let resolved = apps::resolve(
        inline_apps,
        &apps::global_limits(&c),
        &c.webhooks,
        &env,
        explicit_mode.as_deref(),
        c.app_manager.driver != AppManagerDriver::Memory,
    )?;
    (c.app_sources, c.apps) = resolved.apps.into_iter().unzip();
    c.webhooks.apps = resolved.webhooks;
    c.warnings.extend(resolved.warnings);
    validate::webhooks(&mut c)?;
    c.dev_credentials = resolved.dev_credentials;
    if c.dev_credentials && explicit_mode.is_none() {
        c.mode = "development".into();
    }

    // `0` means "unlimited" for the buffer limits, like `null`/`none`.
    c.websocket.max_messages = c.websocket.max_messages.filter(|n| *n > 0);
    c.websocket.max_bytes = c.websocket.max_bytes.filter(|n| *n > 0);
    if c.registry_shards == 0 {
        c.registry_shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    if c.instance_id.trim().is_empty() {
        c.instance_id = format!("switchyard-{:016x}", rand::random::<u64>());
    }
    if driver.is_none() {
        c.warnings.push(format!(
            "app manager driver {app_manager_driver:?} is not supported (memory, mysql, pgsql); \
             only apps from app_manager.array.apps and SOCKUDO_DEFAULT_APP_* are served"
        ));
    }
    let extra = validate::warnings(&c);
    c.warnings.extend(extra);
    Ok(c)
}

impl Config {
    /// The database apps are read from, if the app manager has one.
    pub fn database(&self) -> Option<&SqlDatabaseConfig> {
        match self.app_manager.driver {
            AppManagerDriver::Memory => None,
            AppManagerDriver::Mysql => Some(&self.mysql),
            AppManagerDriver::Postgres => Some(&self.postgres),
        }
    }

    /// The limits an app gets where it sets none (the global blocks).
    pub fn global_app_limits(&self) -> switchyard_actors::app::AppLimits {
        apps::global_limits(self)
    }

    pub fn is_production(&self) -> bool {
        self.mode.eq_ignore_ascii_case("production")
    }

    /// One line for the start-up log. Names and numbers only: no secrets,
    /// keys, passwords or Redis URLs.
    pub fn summary(&self) -> String {
        let listen = if self.unix_socket.enabled {
            format!("unix:{}", self.unix_socket.path)
        } else {
            let scheme = if self.ssl.enabled { "https" } else { "http" };
            format!("{scheme}://{}:{}", self.host, self.port)
        };
        let prefix = if self.path_prefix.is_empty() {
            String::new()
        } else {
            format!(" path_prefix={}", self.path_prefix)
        };
        let apps: Vec<String> = self
            .apps
            .iter()
            .zip(&self.app_sources)
            .map(|(app, source)| {
                let state = if app.enabled { "" } else { ",disabled" };
                format!("{}({source}{state})", app.id)
            })
            .collect();
        let metrics = if self.metrics.enabled {
            format!("{}:{}", self.metrics.host, self.metrics.port)
        } else {
            "off".into()
        };
        let rate_limiter = if self.rate_limiter.enabled {
            self.rate_limiter.driver.name()
        } else {
            "off"
        };
        let apps = match self.database() {
            Some(db) => {
                let mut apps = apps;
                apps.push(format!(
                    "{}:{}:{}/{}.{}(ttl={}s)",
                    self.app_manager.driver.name(),
                    db.host,
                    db.port,
                    db.database,
                    db.table_name,
                    self.app_manager.cache_ttl
                ));
                apps
            }
            None => apps,
        };
        format!(
            "listen={listen}{prefix} mode={} role={} apps=[{}]{} adapter={} rate_limiter={rate_limiter} \
             metrics={metrics} max_connections={} registry_shards={} instance={} config={}",
            self.mode,
            self.server_role.name(),
            apps.join(","),
            if self.dev_credentials {
                " (development credentials)"
            } else {
                ""
            },
            self.adapter_driver.name(),
            self.max_connections,
            self.registry_shards,
            self.instance_id,
            self.config_file
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string()),
        )
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let app_ids: Vec<&str> = self.apps.iter().map(|a| a.id.as_ref()).collect();
        f.debug_struct("Config")
            .field("debug", &self.debug)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path_prefix", &self.path_prefix)
            .field("mode", &self.mode)
            .field("server_role", &self.server_role)
            .field("activity_timeout", &self.activity_timeout)
            .field("pong_timeout", &self.pong_timeout)
            .field(
                "max_channels_per_connection",
                &self.max_channels_per_connection,
            )
            .field("shutdown_grace_period", &self.shutdown_grace_period)
            .field(
                "user_authentication_timeout",
                &self.user_authentication_timeout,
            )
            .field("websocket_max_payload_kb", &self.websocket_max_payload_kb)
            .field("http_max_header_size_kb", &self.http_max_header_size_kb)
            .field("max_connections", &self.max_connections)
            .field("registry_shards", &self.registry_shards)
            .field("health_check_timeout_ms", &self.health_check_timeout_ms)
            .field("websocket", &self.websocket)
            .field("apps", &app_ids)
            .field("dev_credentials", &self.dev_credentials)
            .field("http_api", &self.http_api)
            .field("channel_limits", &self.channel_limits)
            .field("event_limits", &self.event_limits)
            .field("presence", &self.presence)
            .field("cors", &self.cors)
            .field("rate_limiter", &self.rate_limiter)
            .field("ssl", &self.ssl)
            .field("unix_socket", &self.unix_socket)
            .field("metrics", &self.metrics)
            .field("logging", &self.logging)
            .field("adapter_driver", &self.adapter_driver)
            .field("adapter", &self.adapter)
            .field("redis", &self.redis)
            .field("app_manager", &self.app_manager)
            .field("mysql", &self.mysql)
            .field("postgres", &self.postgres)
            .field("instance_id", &self.instance_id)
            .field("config_file", &self.config_file)
            .field("warnings", &self.warnings)
            .finish()
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;

/// The file's `cluster_health` over the defaults.
fn health_from(file: file::ClusterHealth) -> crate::cluster::Health {
    let mut h = AdapterConfig::default().health;
    let ms = std::time::Duration::from_millis;
    if let Some(v) = file.enabled {
        h.enabled = v;
    }
    if let Some(v) = file.heartbeat_interval {
        h.heartbeat_interval = ms(v);
    }
    if let Some(v) = file.node_timeout {
        h.node_timeout = ms(v);
    }
    if let Some(v) = file.cleanup_interval {
        h.cleanup_interval = ms(v);
    }
    h
}
