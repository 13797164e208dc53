//! Apps in MySQL/MariaDB or PostgreSQL (`APP_MANAGER_DRIVER=mysql|pgsql`),
//! in Sockudo's `applications` table, read as it is.
//!
//! Lookups go through a bounded cache: an app read from the table is served
//! for `app_manager.cache.ttl` seconds, an unknown key or id is remembered as
//! unknown for at most [`NEGATIVE_TTL`]. A new version of an app takes over
//! the connection counts and counters of the one it replaces, so
//! `max_connections` holds across a change of the row.
//!
//! The pool connects lazily: a database that is down at start-up does not
//! stop the server. It logs one ERROR, keeps trying to create the table, and
//! meanwhile serves the apps it has (none at first): an unknown app is
//! refused. A lookup waits at most [`LOOKUP_TIMEOUT`]. After a failure,
//! lookups answer from the cache alone (apps read before, even stale, are
//! served; others refused) without waiting, until the database answers
//! again: one lookup at a time, at most every [`FAIL_FAST`], asks it in the
//! background. (Waiting on it instead would cost every lookup up to
//! [`LOOKUP_TIMEOUT`] even when it refuses connections outright: the pool
//! retries a refused connection until its acquire timeout.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column, Row};
use switchyard_actors::app::{App, AppLimits, AppRuntime};

use crate::config::{app_from_row, AppManagerDriver, AppRow, SqlDatabaseConfig};
use crate::webhooks::directory::Directory;

/// The longest a lookup waits for the database (a connection and the query).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest an unknown key or id is remembered as unknown.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// After a failed lookup, the next background probe waits this long.
pub const FAIL_FAST: Duration = Duration::from_secs(1);
/// Entries kept per lookup kind; past it, expired ones go, then all.
const CACHE_CAPACITY: usize = 10_000;

/// Sockudo's table (its `mysql_app_manager`), column for column.
const MYSQL_TABLE: &str = "CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255) CHARACTER SET ascii COLLATE ascii_general_ci PRIMARY KEY,
    `key` VARCHAR(255) CHARACTER SET ascii COLLATE ascii_general_ci UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INT UNSIGNED NOT NULL,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INT UNSIGNED NULL,
    max_client_events_per_second INT UNSIGNED NOT NULL,
    max_read_requests_per_second INT UNSIGNED NULL,
    max_presence_members_per_channel INT UNSIGNED NULL,
    max_presence_member_size_in_kb INT UNSIGNED NULL,
    max_channel_name_length INT UNSIGNED NULL,
    max_event_channels_at_once INT UNSIGNED NULL,
    max_event_name_length INT UNSIGNED NULL,
    max_event_payload_in_kb INT UNSIGNED NULL,
    max_event_batch_size INT UNSIGNED NULL,
    enable_user_authentication BOOLEAN NULL,
    enable_watchlist_events BOOLEAN NULL,
    policy JSON NULL,
    webhooks JSON NULL,
    allowed_origins JSON NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

/// Sockudo's table (its `pg_app_manager`), column for column.
const POSTGRES_TABLE: &str = "CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255) PRIMARY KEY,
    key VARCHAR(255) UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INTEGER NOT NULL,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INTEGER,
    max_client_events_per_second INTEGER NOT NULL,
    max_read_requests_per_second INTEGER,
    max_presence_members_per_channel INTEGER,
    max_presence_member_size_in_kb INTEGER,
    max_channel_name_length INTEGER,
    max_event_channels_at_once INTEGER,
    max_event_name_length INTEGER,
    max_event_payload_in_kb INTEGER,
    max_event_batch_size INTEGER,
    enable_user_authentication BOOLEAN,
    enable_watchlist_events BOOLEAN,
    policy JSONB,
    webhooks JSONB,
    allowed_origins JSONB,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)";

/// The `CREATE TABLE IF NOT EXISTS` the server runs for `table` (as
/// written in the configuration: letters, digits, `_`, one optional `.`).
pub fn create_table_sql(driver: AppManagerDriver, table: &str) -> String {
    match driver {
        AppManagerDriver::Postgres => POSTGRES_TABLE.replace("{table}", &quote_pg(table)),
        _ => MYSQL_TABLE.replace("{table}", &quote_mysql(table)),
    }
}

fn quote_mysql(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("`{part}`"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Unquoted, as Sockudo writes it: PostgreSQL folds the name to lower case.
fn quote_pg(table: &str) -> String {
    table.to_string()
}

#[derive(Clone, Copy)]
enum By {
    Id,
    Key,
}

enum Pool {
    Mysql(MySqlPool),
    Postgres(PgPool),
}

struct Entry {
    app: Option<Arc<App>>,
    expires: Instant,
}

#[derive(Default)]
struct Cache {
    by_id: HashMap<String, Entry>,
    by_key: HashMap<String, Entry>,
    /// Each app id's runtime state, for the next version of the app.
    runtimes: HashMap<Arc<str>, AppRuntime>,
}

impl Cache {
    fn map(&mut self, by: By) -> &mut HashMap<String, Entry> {
        match by {
            By::Id => &mut self.by_id,
            By::Key => &mut self.by_key,
        }
    }

    fn prune(&mut self, now: Instant) {
        for map in [&mut self.by_id, &mut self.by_key] {
            if map.len() >= CACHE_CAPACITY {
                map.retain(|_, e| e.expires > now);
            }
            if map.len() >= CACHE_CAPACITY {
                map.clear();
            }
        }
        if self.runtimes.len() >= CACHE_CAPACITY {
            self.runtimes.retain(|_, r| r.is_alive());
        }
    }
}

#[derive(Default)]
struct Health {
    /// When the last query failed (cleared by the next success).
    failed_at: Option<Instant>,
    /// The ERROR of the current outage was logged.
    down_logged: bool,
    /// A background lookup is asking the failed database again.
    probing: bool,
}

/// The app manager's database and its cache.
pub struct AppDatabase {
    pool: Pool,
    /// For log lines: `mysql root@127.0.0.1:3306/test.applications`.
    label: String,
    create_sql: String,
    by_id_sql: String,
    by_key_sql: String,
    ttl: Duration,
    negative_ttl: Duration,
    base: AppLimits,
    cache: Mutex<Cache>,
    health: Mutex<Health>,
    /// Told each row's webhooks as it is read.
    webhooks: Option<Arc<Directory>>,
}

impl AppDatabase {
    /// The pool (not connected yet) and cache. Call [`AppDatabase::prepare`]
    /// from the runtime to create the table.
    pub fn new(
        driver: AppManagerDriver,
        db: &SqlDatabaseConfig,
        cache_ttl: Duration,
        base: AppLimits,
    ) -> AppDatabase {
        let table = &db.table_name;
        let options = |min: u32, max: u32| (min.min(max), max.max(1));
        let (min, max) = options(db.pool_min, db.pool_max);
        let (pool, by_id_sql, by_key_sql) = match driver {
            AppManagerDriver::Postgres => {
                let mut connect = PgConnectOptions::new()
                    .host(&db.host)
                    .port(db.port)
                    .username(&db.username)
                    .database(&db.database);
                if let Some(password) = &db.password {
                    connect = connect.password(password);
                }
                let pool = PgPoolOptions::new()
                    .min_connections(min)
                    .max_connections(max)
                    .acquire_timeout(LOOKUP_TIMEOUT)
                    .connect_lazy_with(connect);
                let t = quote_pg(table);
                (
                    Pool::Postgres(pool),
                    format!("SELECT * FROM {t} WHERE id = $1 LIMIT 1"),
                    format!("SELECT * FROM {t} WHERE key = $1 LIMIT 1"),
                )
            }
            _ => {
                let mut connect = MySqlConnectOptions::new()
                    .host(&db.host)
                    .port(db.port)
                    .username(&db.username)
                    .database(&db.database);
                if let Some(password) = &db.password {
                    connect = connect.password(password);
                }
                let pool = MySqlPoolOptions::new()
                    .min_connections(min)
                    .max_connections(max)
                    .acquire_timeout(LOOKUP_TIMEOUT)
                    .connect_lazy_with(connect);
                let t = quote_mysql(table);
                (
                    Pool::Mysql(pool),
                    format!("SELECT * FROM {t} WHERE id = ? LIMIT 1"),
                    format!("SELECT * FROM {t} WHERE `key` = ? LIMIT 1"),
                )
            }
        };
        AppDatabase {
            pool,
            label: format!(
                "{} {}@{}:{}/{}.{}",
                driver.name(),
                db.username,
                db.host,
                db.port,
                db.database,
                table
            ),
            create_sql: create_table_sql(driver, table),
            by_id_sql,
            by_key_sql,
            ttl: cache_ttl,
            negative_ttl: cache_ttl.min(NEGATIVE_TTL),
            base,
            cache: Mutex::default(),
            health: Mutex::default(),
            webhooks: None,
        }
    }

    /// Tell `directory` the webhooks of each row read.
    pub fn with_webhooks(mut self, directory: Arc<Directory>) -> AppDatabase {
        self.webhooks = Some(directory);
        self
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Create the table if it is missing (never altering one that exists),
    /// retrying until the database answers. Spawn it; it ends once done.
    pub async fn prepare(self: Arc<Self>) {
        let mut wait = Duration::from_secs(1);
        loop {
            let result = tokio::time::timeout(LOOKUP_TIMEOUT * 5, self.create_table()).await;
            match result {
                Ok(Ok(())) => {
                    self.succeeded();
                    info!(
                        event = "app_database_ready", database = self.label.as_str();
                        "apps are read from {}", self.label
                    );
                    return;
                }
                Ok(Err(e)) => self.failed(&e),
                Err(_) => self.failed("no answer in time"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    async fn create_table(&self) -> Result<(), String> {
        let result = match &self.pool {
            Pool::Mysql(pool) => sqlx::query(&self.create_sql).execute(pool).await.map(drop),
            Pool::Postgres(pool) => sqlx::query(&self.create_sql).execute(pool).await.map(drop),
        };
        result.map_err(|e| e.to_string())
    }

    fn failed(&self, error: &(impl std::fmt::Display + ?Sized)) {
        let mut health = self.health.lock().unwrap();
        health.failed_at = Some(Instant::now());
        if !health.down_logged {
            health.down_logged = true;
            error!(
                event = "app_database_unavailable", database = self.label.as_str(),
                reason:% = error;
                "the app database {} cannot be read ({error}); apps read before keep being \
                 served, other apps are refused; retrying",
                self.label
            );
        }
    }

    fn succeeded(&self) {
        let mut health = self.health.lock().unwrap();
        health.failed_at = None;
        if std::mem::take(&mut health.down_logged) {
            info!(
                event = "app_database_available", database = self.label.as_str();
                "the app database {} answers again", self.label
            );
        }
    }

    /// The cached app, fresh or not (for relayed events, metrics, logs).
    pub fn cached(&self, by_id: bool, value: &str) -> Option<Arc<App>> {
        let mut cache = self.cache.lock().unwrap();
        let by = if by_id { By::Id } else { By::Key };
        cache.map(by).get(value).and_then(|e| e.app.clone())
    }

    /// Every app in the cache, once each.
    pub fn cached_apps(&self) -> Vec<Arc<App>> {
        let cache = self.cache.lock().unwrap();
        let mut seen = HashSet::new();
        cache
            .by_id
            .values()
            .chain(cache.by_key.values())
            .filter_map(|e| e.app.clone())
            .filter(|app| seen.insert(app.id.clone()))
            .collect()
    }

    pub async fn find_by_id(self: &Arc<Self>, id: &str) -> Option<Arc<App>> {
        self.find(By::Id, id).await
    }

    pub async fn find_by_key(self: &Arc<Self>, key: &str) -> Option<Arc<App>> {
        self.find(By::Key, key).await
    }

    async fn find(self: &Arc<Self>, by: By, value: &str) -> Option<Arc<App>> {
        if value.is_empty() || value.len() > 255 {
            return None;
        }
        let now = Instant::now();
        let stale = {
            let mut cache = self.cache.lock().unwrap();
            match cache.map(by).get(value) {
                Some(e) if e.expires > now => return e.app.clone(),
                Some(e) => e.app.clone(),
                None => None,
            }
        };
        if self.down(by, value) {
            return stale;
        }
        match self.lookup(by, value).await {
            Some(found) => found,
            None => stale,
        }
    }

    /// Whether the database is failing (the last query failed): then the
    /// cache answers alone, and at most every [`FAIL_FAST`] one lookup (this
    /// one) asks the database in the background, one at a time.
    fn down(self: &Arc<Self>, by: By, value: &str) -> bool {
        let mut health = self.health.lock().unwrap();
        let Some(failed_at) = health.failed_at else {
            return false;
        };
        if !health.probing && failed_at.elapsed() >= FAIL_FAST {
            health.probing = true;
            let this = self.clone();
            let value = value.to_string();
            tokio::spawn(async move {
                /// Ends the probe however the lookup ends.
                struct Done(Arc<AppDatabase>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        if let Ok(mut health) = self.0.health.lock() {
                            health.probing = false;
                        }
                    }
                }
                let done = Done(this);
                done.0.lookup(by, &value).await;
            });
        }
        true
    }

    /// Ask the database (waiting at most [`LOOKUP_TIMEOUT`]) and cache the
    /// answer; `None`: it failed (logged, and the database is down).
    async fn lookup(&self, by: By, value: &str) -> Option<Option<Arc<App>>> {
        let row = match tokio::time::timeout(LOOKUP_TIMEOUT, self.query(by, value)).await {
            Ok(Ok(row)) => {
                self.succeeded();
                row
            }
            Ok(Err(e)) => {
                self.failed(&e);
                return None;
            }
            Err(_) => {
                self.failed("no answer in time");
                return None;
            }
        };
        let app = match row.map(|row| row.and_then(|row| app_from_row(row, &self.base))) {
            None => None,
            Some(Ok((app, webhooks))) => Some((app, webhooks)),
            Some(Err(reason)) => {
                warn!(
                    event = "app_row_invalid", database = self.label.as_str(), reason = reason.as_str();
                    "an app row of {} is not served: {reason}", self.label
                );
                None
            }
        };
        Some(self.install(by, value, app))
    }

    /// Cache what a lookup found (`None`: nothing, or an unusable row).
    fn install(
        &self,
        by: By,
        value: &str,
        found: Option<(App, Option<serde_json::Value>)>,
    ) -> Option<Arc<App>> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap();
        cache.prune(now);
        let Some((mut app, webhooks)) = found else {
            cache.map(by).insert(
                value.to_string(),
                Entry {
                    app: None,
                    expires: now + self.negative_ttl,
                },
            );
            return None;
        };
        if let Some(directory) = &self.webhooks {
            directory.read_from_database(&app, webhooks.as_ref());
        }
        if let Some(earlier) = cache.runtimes.get(&app.id) {
            app.adopt(earlier);
        }
        let app = Arc::new(app);
        cache.runtimes.insert(app.id.clone(), app.runtime());
        let expires = now + self.ttl;
        cache.by_id.insert(
            app.id.to_string(),
            Entry {
                app: Some(app.clone()),
                expires,
            },
        );
        cache.by_key.insert(
            app.key.clone(),
            Entry {
                app: Some(app.clone()),
                expires,
            },
        );
        if let By::Key = by {
            if value != app.key {
                // The table's collation matched another spelling.
                cache.by_key.insert(
                    value.to_string(),
                    Entry {
                        app: Some(app.clone()),
                        expires,
                    },
                );
            }
        }
        Some(app)
    }

    /// `Err`: the database failed; `Ok(Some(Err))`: a row that cannot be read.
    async fn query(&self, by: By, value: &str) -> Result<Option<Result<AppRow, String>>, String> {
        let sql = match by {
            By::Id => &self.by_id_sql,
            By::Key => &self.by_key_sql,
        };
        match &self.pool {
            Pool::Mysql(pool) => {
                let row = sqlx::query(sql)
                    .bind(value)
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(row.map(|r| read_row(&r)))
            }
            Pool::Postgres(pool) => {
                let row = sqlx::query(sql)
                    .bind(value)
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(row.map(|r| read_row(&r)))
            }
        }
    }
}

/// Reading one column whatever its exact type (an `INT` or `INT UNSIGNED`,
/// `JSON` stored as text, ...). `Ok(None)`: NULL, or no such column.
trait Columns {
    fn text(&self, column: &str) -> Result<Option<String>, String>;
    fn int(&self, column: &str) -> Result<Option<i64>, String>;
    fn flag(&self, column: &str) -> Result<Option<bool>, String>;
    fn json(&self, column: &str) -> Result<Option<serde_json::Value>, String>;
}

macro_rules! columns {
    ($row:ty, [$($int:ty),*]) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<Option<String>, String> {
                if !self.columns().iter().any(|c| c.name() == column) {
                    return Ok(None);
                }
                if let Ok(v) = self.try_get::<Option<String>, _>(column) {
                    return Ok(v);
                }
                if let Ok(v) = self.try_get::<Option<Vec<u8>>, _>(column) {
                    return Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()));
                }
                Err(format!("column {column}: not text"))
            }

            fn int(&self, column: &str) -> Result<Option<i64>, String> {
                if !self.columns().iter().any(|c| c.name() == column) {
                    return Ok(None);
                }
                $(
                    if let Ok(v) = self.try_get::<Option<$int>, _>(column) {
                        return v
                            .map(|v| i64::try_from(v).map_err(|_| format!("column {column}: {v} is too large")))
                            .transpose();
                    }
                )*
                if let Ok(v) = self.try_get::<Option<bool>, _>(column) {
                    return Ok(v.map(i64::from));
                }
                Err(format!("column {column}: not an integer"))
            }

            fn flag(&self, column: &str) -> Result<Option<bool>, String> {
                if !self.columns().iter().any(|c| c.name() == column) {
                    return Ok(None);
                }
                if let Ok(v) = self.try_get::<Option<bool>, _>(column) {
                    return Ok(v);
                }
                Ok(self.int(column)
                    .map_err(|_| format!("column {column}: not a boolean"))?
                    .map(|v| v != 0))
            }

            fn json(&self, column: &str) -> Result<Option<serde_json::Value>, String> {
                if !self.columns().iter().any(|c| c.name() == column) {
                    return Ok(None);
                }
                if let Ok(v) = self.try_get::<Option<serde_json::Value>, _>(column) {
                    return Ok(v);
                }
                match self.text(column)? {
                    None => Ok(None),
                    Some(text) if text.trim().is_empty() => Ok(None),
                    Some(text) => serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|e| format!("column {column}: not JSON ({e})")),
                }
            }
        }
    };
}

columns!(MySqlRow, [i64, u64, i32, u32, i16, u16, i8, u8]);
columns!(PgRow, [i64, i32, i16]);

fn read_row(row: &impl Columns) -> Result<AppRow, String> {
    let required = |column: &str| -> Result<String, String> {
        row.text(column)?
            .ok_or_else(|| format!("column {column}: missing or NULL"))
    };
    Ok(AppRow {
        id: required("id")?,
        key: required("key")?,
        secret: required("secret")?,
        enabled: row.flag("enabled")?,
        max_connections: row.int("max_connections")?,
        enable_client_messages: row.flag("enable_client_messages")?,
        max_backend_events_per_second: row.int("max_backend_events_per_second")?,
        max_client_events_per_second: row.int("max_client_events_per_second")?,
        max_read_requests_per_second: row.int("max_read_requests_per_second")?,
        max_presence_members_per_channel: row.int("max_presence_members_per_channel")?,
        max_presence_member_size_in_kb: row.int("max_presence_member_size_in_kb")?,
        max_channel_name_length: row.int("max_channel_name_length")?,
        max_event_channels_at_once: row.int("max_event_channels_at_once")?,
        max_event_name_length: row.int("max_event_name_length")?,
        max_event_payload_in_kb: row.int("max_event_payload_in_kb")?,
        max_event_batch_size: row.int("max_event_batch_size")?,
        enable_user_authentication: row.flag("enable_user_authentication")?,
        enable_watchlist_events: row.flag("enable_watchlist_events")?,
        policy: row.json("policy")?,
        webhooks: row.json("webhooks")?,
        allowed_origins: row.json("allowed_origins")?,
    })
}
