//! Apps in MySQL/MariaDB and PostgreSQL (`APP_MANAGER_DRIVER=mysql|pgsql`),
//! against the real local servers: MariaDB on 127.0.0.1:3306 (root, no
//! password, database `test`) and PostgreSQL on 127.0.0.1:5432 (trust,
//! user `postgres`, database `test`). Each test has a table of its own, so
//! they run in parallel. A server that is not there is a skip locally and a
//! failure under CI (`tests/common/prereq.rs`).

#![allow(dead_code)]

mod common;

use common::*;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::postgres::PgPoolOptions;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Mysql,
    Postgres,
}

enum Db {
    Mysql(sqlx::MySqlPool),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// The test database, or `None` (skip; a failure under CI).
    async fn open(kind: Kind) -> Option<Db> {
        let t = Duration::from_secs(5);
        let result = match kind {
            Kind::Mysql => MySqlPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(t)
                .connect("mysql://root@127.0.0.1:3306/test")
                .await
                .map(Db::Mysql),
            Kind::Postgres => PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(t)
                .connect("postgres://postgres@127.0.0.1:5432/test")
                .await
                .map(Db::Postgres),
        };
        match result {
            Ok(db) => Some(db),
            Err(e) => prereq::missing(
                &format!("{kind:?} test database not reachable ({e})"),
                match kind {
                    Kind::Mysql => {
                        "apt-get install -y mariadb-server && service mariadb start \
                                   && mariadb -uroot -e 'create database if not exists test'"
                    }
                    Kind::Postgres => {
                        "apt-get install -y postgresql && service postgresql start \
                                      (trust auth on 127.0.0.1, database test)"
                    }
                },
            ),
        }
    }

    async fn exec(&self, sql: &str) {
        let result = match self {
            Db::Mysql(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Whether `table` exists in the test database.
    async fn has_table(&self, table: &str) -> bool {
        let sql =
            format!("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '{table}'");
        match self {
            Db::Mysql(pool) => {
                let n: i64 = sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap();
                n > 0
            }
            Db::Postgres(pool) => {
                let n: i64 = sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap();
                n > 0
            }
        }
    }

    /// The names of `table`'s columns, with their types, in order.
    async fn columns(&self, table: &str) -> Vec<(String, String)> {
        let sql = format!(
            "SELECT CAST(column_name AS CHAR(64)), CAST(data_type AS CHAR(64)) \
             FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
        );
        match self {
            Db::Mysql(pool) => sqlx::query_as(&sql).fetch_all(pool).await.unwrap(),
            Db::Postgres(pool) => sqlx::query_as(&sql.replace("CHAR(64)", "TEXT"))
                .fetch_all(pool)
                .await
                .unwrap(),
        }
    }
}

/// A table name of the test's own (PostgreSQL folds names to lower case).
fn table(test: &str) -> String {
    format!("sy_{test}_{}", std::process::id()).to_ascii_lowercase()
}

fn env_for(kind: Kind, table: &str, port: Option<u16>) -> Vec<(String, String)> {
    let (driver, prefix, default_port, user) = match kind {
        Kind::Mysql => ("mysql", "DATABASE_MYSQL", 3306, "root"),
        Kind::Postgres => ("pgsql", "DATABASE_POSTGRES", 5432, "postgres"),
    };
    let port = port.unwrap_or(default_port).to_string();
    vec![
        ("APP_MANAGER_DRIVER".into(), driver.into()),
        (format!("{prefix}_HOST"), "127.0.0.1".into()),
        (format!("{prefix}_PORT"), port),
        (format!("{prefix}_USERNAME"), user.into()),
        (format!("{prefix}_DATABASE"), "test".into()),
        (format!("{prefix}_TABLE_NAME"), table.into()),
        ("APP_MANAGER_CACHE_TTL".into(), "1".into()),
        // The connect-time limiter would count the many connects of one test.
        ("RATE_LIMITER_ENABLED".into(), "false".into()),
    ]
}

async fn start(kind: Kind, table: &str, port: Option<u16>) -> Server {
    let env = env_for(kind, table, port);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&env).await
}

async fn expect_refused(server: &Server, key: &str, code: u16) {
    let mut ws = server
        .connect_raw(&format!("/app/{key}?protocol=7&client=rust&version=1.0"))
        .await;
    ws.expect_error(code as u64).await;
    ws.expect_close(code).await;
}

/// Past the 1 s cache TTL of these tests.
async fn past_ttl() {
    tokio::time::sleep(Duration::from_millis(1300)).await;
}

const FLAT_COLUMNS: &str = "(id, `key`, secret, max_connections, enable_client_messages, enabled, \
                            max_client_events_per_second)";

fn insert(kind: Kind, table: &str, id: &str, key: &str, secret: &str, max: u32) -> String {
    let columns = match kind {
        Kind::Mysql => FLAT_COLUMNS.to_string(),
        Kind::Postgres => FLAT_COLUMNS.replace('`', ""),
    };
    format!(
        "INSERT INTO {table} {columns} VALUES ('{id}', '{key}', '{secret}', {max}, TRUE, TRUE, 0)"
    )
}

fn key_column(kind: Kind) -> &'static str {
    match kind {
        Kind::Mysql => "`key`",
        Kind::Postgres => "key",
    }
}

/// The table is created with Sockudo's columns; an app inserted by SQL
/// connects and signs API calls; a rotated secret, a raised limit, a
/// disabled app and a deleted one take effect within the TTL; an unknown
/// key is refused at once.
async fn lifecycle(kind: Kind, test: &str) {
    let Some(db) = Db::open(kind).await else {
        return;
    };
    let table = table(test);
    db.exec(&format!("DROP TABLE IF EXISTS {table}")).await;
    let server = start(kind, &table, None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.has_table(&table).await {
        assert!(
            Instant::now() < deadline,
            "table not created\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let columns: Vec<String> = db.columns(&table).await.into_iter().map(|c| c.0).collect();
    assert_eq!(
        columns,
        [
            "id",
            "key",
            "secret",
            "max_connections",
            "enable_client_messages",
            "enabled",
            "max_backend_events_per_second",
            "max_client_events_per_second",
            "max_read_requests_per_second",
            "max_presence_members_per_channel",
            "max_presence_member_size_in_kb",
            "max_channel_name_length",
            "max_event_channels_at_once",
            "max_event_name_length",
            "max_event_payload_in_kb",
            "max_event_batch_size",
            "enable_user_authentication",
            "enable_watchlist_events",
            "policy",
            "webhooks",
            "allowed_origins",
            "created_at",
            "updated_at"
        ]
    );

    db.exec(&insert(kind, &table, "db-app", "db-key", "db-secret", 2))
        .await;
    let mut first = server.connect_key("db-key").await;
    first.assert_alive().await;
    let api = server.api_for("db-app", "db-key", "db-secret");
    api.get("/channels", &[]).await.assert_ok();
    api.publish("public-x", "e", "{}").await;

    // Unknown keys and ids: refused at once.
    let t = Instant::now();
    expect_refused(&server, "no-such-key", 4001).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let other = server.api_for("no-such-app", "k", "s");
    other
        .get("/channels", &[])
        .await
        .assert_error(404, "app_not_found");

    // max_connections 2: one more, then 4004; raised to 3 by SQL: one more.
    let _second = server.connect_key("db-key").await;
    expect_refused(&server, "db-key", 4004).await;
    db.exec(&format!(
        "UPDATE {table} SET max_connections = 3 WHERE id = 'db-app'"
    ))
    .await;
    past_ttl().await;
    let _third = server.connect_key("db-key").await;
    expect_refused(&server, "db-key", 4004).await;
    first.assert_alive().await;

    // The secret rotated: the old one is refused, the new one signs.
    db.exec(&format!(
        "UPDATE {table} SET secret = 'rotated' WHERE id = 'db-app'"
    ))
    .await;
    past_ttl().await;
    let status = api.get("/channels", &[]).await.status;
    assert_eq!(status, 401, "old secret after rotation");
    server
        .api_for("db-app", "db-key", "rotated")
        .get("/channels", &[])
        .await
        .assert_ok();

    // Disabled: new sockets are refused with 4003.
    drop((first, _second, _third));
    db.exec(&format!(
        "UPDATE {table} SET enabled = FALSE WHERE id = 'db-app'"
    ))
    .await;
    past_ttl().await;
    expect_refused(&server, "db-key", 4003).await;

    // Enabled again, then deleted: refused with 4001.
    db.exec(&format!(
        "UPDATE {table} SET enabled = TRUE WHERE id = 'db-app'"
    ))
    .await;
    past_ttl().await;
    server.connect_key("db-key").await.assert_alive().await;
    db.exec(&format!(
        "DELETE FROM {table} WHERE {} = 'db-key'",
        key_column(kind)
    ))
    .await;
    past_ttl().await;
    expect_refused(&server, "db-key", 4001).await;
    server
        .api_for("db-app", "db-key", "rotated")
        .get("/channels", &[])
        .await
        .assert_error(404, "app_not_found");
    db.exec(&format!("DROP TABLE {table}")).await;
}

#[tokio::test]
async fn mysql_apps_are_served_and_changes_take_effect_within_the_ttl() {
    lifecycle(Kind::Mysql, "mysql_lifecycle").await;
}

#[tokio::test]
async fn postgres_apps_are_served_and_changes_take_effect_within_the_ttl() {
    lifecycle(Kind::Postgres, "pg_lifecycle").await;
}

/// Sockudo's own `CREATE TABLE` (crates/sockudo-app, with the columns its
/// later versions add), and a row in its nested `policy` shape: read as is.
const SOCKUDO_MYSQL: &str = "CREATE TABLE {table} (
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
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    channel_delta_compression JSON NULL,
    idempotency JSON NULL,
    connection_recovery JSON NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

const SOCKUDO_POSTGRES: &str = "CREATE TABLE {table} (
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
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    channel_delta_compression JSONB,
    idempotency JSONB,
    connection_recovery JSONB
)";

async fn sockudo_table(kind: Kind, test: &str) {
    let Some(db) = Db::open(kind).await else {
        return;
    };
    let table = table(test);
    db.exec(&format!("DROP TABLE IF EXISTS {table}")).await;
    let create = match kind {
        Kind::Mysql => SOCKUDO_MYSQL,
        Kind::Postgres => SOCKUDO_POSTGRES,
    };
    db.exec(&create.replace("{table}", &table)).await;
    // Flat columns say 100 connections and no client events; the policy
    // (which wins) says one connection and client events on. The webhooks
    // column is not used yet (a warning says so).
    let policy = r#"{"limits": {"max_connections": 1, "max_client_events_per_second": 0},
        "features": {"enable_client_messages": true}, "channels": {}}"#;
    let webhooks = r#"[{"url": "http://127.0.0.1:9/hook", "event_types": ["channel_occupied"]}]"#;
    db.exec(&format!(
        "INSERT INTO {table} (id, {}, secret, max_connections, enable_client_messages, enabled, \
         max_client_events_per_second, policy, webhooks, allowed_origins) VALUES \
         ('sockudo-app', 'sockudo-key', 'sockudo-secret', 100, FALSE, TRUE, 0, '{policy}', \
         '{webhooks}', '[]')",
        key_column(kind)
    ))
    .await;
    let server = start(kind, &table, None).await;
    let mut ws = server.connect_key("sockudo-key").await;
    expect_refused(&server, "sockudo-key", 4004).await;
    // Client events are on (policy.features): a private channel takes them.
    let channel = "private-c";
    let auth = channel_auth("sockudo-key", "sockudo-secret", &ws.socket_id, channel);
    ws.send_subscribe(serde_json::json!({"channel": channel, "auth": auth}))
        .await;
    ws.expect_channel_event("pusher_internal:subscription_succeeded", channel)
        .await;
    ws.client_event(channel, "client-x", serde_json::json!({}))
        .await;
    ws.expect_silence(SILENCE).await;
    server
        .api_for("sockudo-app", "sockudo-key", "sockudo-secret")
        .get("/channels", &[])
        .await
        .assert_ok();
    server
        .wait_for_logs("webhooks warning", Duration::from_secs(5), |l| {
            l.contains("webhooks in the database are not used yet")
        })
        .await;
    // Never altered: the table keeps Sockudo's extra columns.
    assert_eq!(db.columns(&table).await.len(), 26);
    db.exec(&format!("DROP TABLE {table}")).await;
}

#[tokio::test]
async fn mysql_table_created_by_sockudo_is_read_as_is() {
    sockudo_table(Kind::Mysql, "mysql_sockudo").await;
}

#[tokio::test]
async fn postgres_table_created_by_sockudo_is_read_as_is() {
    sockudo_table(Kind::Postgres, "pg_sockudo").await;
}

/// A database on a closed port: the server starts, says so once at ERROR,
/// and refuses unknown keys and ids promptly.
async fn unreachable(kind: Kind, test: &str) {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Instant::now();
    let server = start(kind, &table(test), Some(closed)).await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "start-up waited on the database"
    );
    server
        .wait_for_logs("database error", Duration::from_secs(5), |l| {
            l.lines()
                .any(|line| line.contains("ERROR") && line.contains("cannot be read"))
        })
        .await;
    for _ in 0..3 {
        let t = Instant::now();
        expect_refused(&server, "any-key", 4001).await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
    let t = Instant::now();
    server
        .api_for("any-app", "k", "s")
        .get("/channels", &[])
        .await
        .assert_error(404, "app_not_found");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logs = server.logs();
    assert_eq!(
        logs.matches("cannot be read").count(),
        1,
        "one ERROR per outage\n{logs}"
    );
}

#[tokio::test]
async fn mysql_unreachable_at_start_up_refuses_unknown_keys_without_hanging() {
    unreachable(Kind::Mysql, "mysql_down").await;
}

#[tokio::test]
async fn postgres_unreachable_at_start_up_refuses_unknown_keys_without_hanging() {
    unreachable(Kind::Postgres, "pg_down").await;
}
