//! Apps in MySQL/MariaDB and PostgreSQL (`APP_MANAGER_DRIVER=mysql|pgsql`),
//! against the real local servers: MariaDB on 127.0.0.1:3306 (root, no
//! password, database `test`) and PostgreSQL on 127.0.0.1:5432 (trust,
//! user `postgres`, database `test`). Each test has a table of its own, so
//! they run in parallel. A server that is not there is a skip locally and a
//! failure under CI (`tests/common/prereq.rs`).

#![allow(dead_code)]

mod common;

use common::cluster::{acquainted, node_with};
use common::receiver::Receiver;
use common::redis::RedisServer;
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
    // (which wins) says one connection and client events on. The policy
    // has no webhooks: the webhooks column's are used.
    let policy = r#"{"limits": {"max_connections": 1, "max_client_events_per_second": 0},
        "features": {"enable_client_messages": true}, "channels": {}}"#;
    let rx = Receiver::start().await;
    let webhooks = hook(&rx, &["channel_occupied"]).to_string();
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
    rx.wait_delivered(Duration::from_secs(5), "channel_occupied", |e| {
        e.iter()
            .any(|e| e["name"] == "channel_occupied" && e["channel"] == channel)
    })
    .await;
    rx.requests()[0].assert_signed("sockudo-key", "sockudo-secret");
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

/// `UPDATE … SET {column} = '{json}'` for a JSON column of `kind`.
fn set_json(table: &str, column: &str, json: &serde_json::Value) -> String {
    let text = json.to_string().replace('\'', "''");
    format!("UPDATE {table} SET {column} = '{text}' WHERE id = 'hook-app'")
}

/// Insert the app `hook-app` (key `hook-key`, secret `hook-secret`) with
/// `webhooks` in its webhooks column.
async fn insert_hook_app(db: &Db, kind: Kind, table: &str, webhooks: &serde_json::Value) {
    db.exec(&insert(
        kind,
        table,
        "hook-app",
        "hook-key",
        "hook-secret",
        0,
    ))
    .await;
    db.exec(&set_json(table, "webhooks", webhooks)).await;
}

fn hook(rx: &Receiver, events: &[&str]) -> serde_json::Value {
    serde_json::json!([{"url": rx.url("/"), "event_types": events}])
}

/// The channels `rx` was told `name` about, in order.
fn told(rx: &Receiver, name: &str) -> Vec<String> {
    rx.delivered()
        .iter()
        .filter(|e| e["name"] == name)
        .map(|e| e["channel"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Wait until `rx` was told `name` about `channel`; the request carrying
/// it is signed with `secret`.
async fn expect_told(rx: &Receiver, name: &str, channel: &str, secret: &str) {
    rx.wait_delivered(Duration::from_secs(5), &format!("{name} {channel}"), |e| {
        e.iter()
            .any(|e| e["name"] == name && e["channel"] == channel)
    })
    .await;
    let request = rx
        .requests()
        .into_iter()
        .find(|r| {
            r.events()
                .iter()
                .any(|e| e["name"] == name && e["channel"] == channel)
        })
        .unwrap();
    request.assert_signed("hook-key", secret);
}

/// An app's webhooks come from its row — the `webhooks` column, or
/// `policy.webhooks`, which wins — and a change to them (another receiver,
/// other events, a rotated secret, invalid JSON) applies within the TTL to
/// channels of sockets that were open all along.
async fn webhooks_from_the_row(kind: Kind, test: &str) {
    let Some(db) = Db::open(kind).await else {
        return;
    };
    let table = table(test);
    db.exec(&format!("DROP TABLE IF EXISTS {table}")).await;
    let (rx1, rx2) = (Receiver::start().await, Receiver::start().await);
    let mut env = env_for(kind, &table, None);
    env.push(("WEBHOOK_LEAVE_GRACE_MS".into(), "0".into()));
    env.push(("WEBHOOK_BATCHING_ENABLED".into(), "false".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start(&env).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.has_table(&table).await {
        assert!(Instant::now() < deadline, "table not created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    insert_hook_app(
        &db,
        kind,
        &table,
        &hook(&rx1, &["channel_occupied", "channel_vacated"]),
    )
    .await;

    let mut ws = server.connect_key("hook-key").await;
    ws.subscribe("public-a").await;
    expect_told(&rx1, "channel_occupied", "public-a", "hook-secret").await;
    ws.unsubscribe("public-a").await;
    expect_told(&rx1, "channel_vacated", "public-a", "hook-secret").await;

    // Another receiver, occupied only: the socket open all along, and no
    // new connection or API call to read the row again.
    db.exec(&set_json(
        &table,
        "webhooks",
        &hook(&rx2, &["channel_occupied"]),
    ))
    .await;
    past_ttl().await;
    ws.subscribe("public-b").await;
    expect_told(&rx2, "channel_occupied", "public-b", "hook-secret").await;
    ws.unsubscribe("public-b").await;

    // policy.webhooks wins over the column.
    let policy = serde_json::json!({"webhooks": hook(&rx1, &["channel_occupied"])});
    db.exec(&set_json(&table, "policy", &policy)).await;
    past_ttl().await;
    ws.subscribe("public-c").await;
    expect_told(&rx1, "channel_occupied", "public-c", "hook-secret").await;

    // A rotated secret signs the next requests.
    db.exec(&format!(
        "UPDATE {table} SET secret = 'rotated' WHERE id = 'hook-app'"
    ))
    .await;
    past_ttl().await;
    ws.subscribe("public-d").await;
    expect_told(&rx1, "channel_occupied", "public-d", "rotated").await;

    // Invalid webhooks: the app is served without them, and says why.
    let bad = serde_json::json!([{"url": "ftp://nowhere", "event_types": ["channel_occupied"]}]);
    // One statement: the row never holds the column's earlier webhooks
    // (rx2) without the policy; a read of the row between two statements
    // would serve those for a TTL more.
    db.exec(&format!(
        "UPDATE {table} SET policy = NULL, webhooks = '{}' WHERE id = 'hook-app'",
        bad.to_string().replace('\'', "''")
    ))
    .await;
    past_ttl().await;
    ws.subscribe("public-e").await;
    let mut second = server.connect_key("hook-key").await;
    second.subscribe("public-f").await;
    server
        .wait_for_logs("invalid webhooks", Duration::from_secs(5), |l| {
            l.contains("app_webhooks_invalid") || l.contains("served without webhooks")
        })
        .await;
    // Webhooks back on rx2: what happens from now on is told again.
    db.exec(&set_json(
        &table,
        "webhooks",
        &hook(&rx2, &["channel_occupied"]),
    ))
    .await;
    past_ttl().await;
    ws.subscribe("public-g").await;
    expect_told(&rx2, "channel_occupied", "public-g", "rotated").await;

    assert_eq!(
        told(&rx1, "channel_occupied"),
        ["public-a", "public-c", "public-d"]
    );
    assert_eq!(told(&rx1, "channel_vacated"), ["public-a"]);
    assert_eq!(told(&rx2, "channel_occupied"), ["public-b", "public-g"]);
    assert!(told(&rx2, "channel_vacated").is_empty());
    db.exec(&format!("DROP TABLE {table}")).await;
}

#[tokio::test]
async fn mysql_webhooks_come_from_the_row_and_follow_its_changes() {
    webhooks_from_the_row(Kind::Mysql, "mysql_hooks").await;
}

#[tokio::test]
async fn postgres_webhooks_come_from_the_row_and_follow_its_changes() {
    webhooks_from_the_row(Kind::Postgres, "pg_hooks").await;
}

/// Two nodes, one database app with a webhook, sockets only on node A:
/// node B never served the app, yet it keeps A's state of it (its API
/// lists A's channels) and tells the changes of the channels it owns (it
/// reads the app itself), so each channel is told once.
#[tokio::test]
async fn a_node_that_never_served_a_database_app_still_tells_its_channels() {
    let Some(db) = Db::open(Kind::Mysql).await else {
        return;
    };
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let table = fresh_table(&db, Kind::Mysql, "mysql_hooks_cluster").await;
    let rx = Receiver::start().await;
    insert_hook_app(
        &db,
        Kind::Mysql,
        &table,
        &hook(&rx, &["channel_occupied", "channel_vacated"]),
    )
    .await;
    let mut env: Vec<(&'static str, String)> = env_for(Kind::Mysql, &table, None)
        .into_iter()
        .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v))
        .collect();
    env.extend([
        ("WEBHOOK_LEAVE_GRACE_MS", "0".to_string()),
        ("CLUSTER_HEALTH_HEARTBEAT_INTERVAL", "200".into()),
        ("CLUSTER_HEALTH_NODE_TIMEOUT", "1000".into()),
        ("CLUSTER_HEALTH_CLEANUP_INTERVAL", "200".into()),
    ]);
    let a = node_with(&redis, "dbh1:", &env).await;
    let b = node_with(&redis, "dbh1:", &env).await;
    acquainted(&a, &b).await;
    // Past the warm-up: B owns channels.
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let channels: Vec<String> = (0..12).map(|i| format!("public-{i}")).collect();
    let mut ws = a.connect_key("hook-key").await;
    for c in &channels {
        ws.subscribe(c).await;
    }
    let all = |name: &'static str| {
        let channels = channels.clone();
        move |e: &[serde_json::Value]| {
            channels
                .iter()
                .all(|c| e.iter().any(|e| e["name"] == name && e["channel"] == *c))
        }
    };
    // B kept A's state of the app it had not read: its API lists them all.
    let api_b = b.api_for("hook-app", "hook-key", "hook-secret");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = api_b.get("/channels", &[]).await.assert_ok();
        if channels.iter().all(|c| listed["channels"].get(c).is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "B lists {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rx.wait_delivered(
        Duration::from_secs(5),
        "every channel occupied",
        all("channel_occupied"),
    )
    .await;
    for c in &channels {
        ws.unsubscribe(c).await;
    }
    rx.wait_delivered(
        Duration::from_secs(5),
        "every channel vacated",
        all("channel_vacated"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in ["channel_occupied", "channel_vacated"] {
        let mut seen = told(&rx, name);
        seen.sort();
        let mut want = channels.clone();
        want.sort();
        assert_eq!(seen, want, "{name}: each channel once");
    }
    for r in rx.requests() {
        r.assert_signed("hook-key", "hook-secret");
    }
    db.exec(&format!("DROP TABLE {table}")).await;
}

/// A new table of the test's own, created as the server would.
async fn fresh_table(db: &Db, kind: Kind, test: &str) -> String {
    let table = table(test);
    db.exec(&format!("DROP TABLE IF EXISTS {table}")).await;
    db.exec(&create_table_sql(kind, &table)).await;
    table
}

/// Sockudo's table, as the server would create it.
fn create_table_sql(kind: Kind, table: &str) -> String {
    use switchyard::config::AppManagerDriver;
    let driver = match kind {
        Kind::Mysql => AppManagerDriver::Mysql,
        Kind::Postgres => AppManagerDriver::Postgres,
    };
    switchyard::apps::database::create_table_sql(driver, table)
}

/// `QUEUE_DRIVER=redis` with a database app: events queued in Redis when
/// the node is killed are delivered after the restart before the app has
/// anything new to tell (its lanes start from the lists in Redis).
#[tokio::test]
async fn queued_events_of_a_database_app_are_delivered_after_a_restart() {
    use common::receiver::Reply;
    let Some(db) = Db::open(Kind::Postgres).await else {
        return;
    };
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let table = fresh_table(&db, Kind::Postgres, "pg_hooks_queue").await;
    let rx = Receiver::start().await;
    rx.then(Reply::Status(503));
    let hooks = serde_json::json!([{"url": rx.url("/"), "event_types": ["channel_occupied"],
        "retry": {"initial_backoff_ms": 200, "max_backoff_ms": 400}}]);
    insert_hook_app(&db, Kind::Postgres, &table, &hooks).await;
    let mut env = env_for(Kind::Postgres, &table, None);
    env.extend([
        ("QUEUE_DRIVER".to_string(), "redis".to_string()),
        ("REDIS_URL".into(), redis.url()),
        ("DATABASE_REDIS_KEY_PREFIX".into(), "dbq1:".into()),
        ("INSTANCE_PROCESS_ID".into(), "db-queue-node".into()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = Server::start(&env).await;
    let mut ws = server.connect_key("hook-key").await;
    let channels: Vec<String> = (0..5).map(|i| format!("queued-{i}")).collect();
    for c in &channels {
        ws.subscribe(c).await;
    }
    rx.wait_requests(1, Duration::from_secs(5)).await;
    let queued = || redis.queued_webhook_events("dbq1:");
    let deadline = Instant::now() + Duration::from_secs(5);
    while queued() < 5 {
        assert!(Instant::now() < deadline, "only {} of 5 in Redis", queued());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.signal("KILL");
    assert!(server.wait_exit(Duration::from_secs(5)).await.is_some());
    drop(ws);
    rx.then(Reply::Status(200));
    // No socket, no API call: nothing but the lists makes the app read.
    let restarted = Server::start(&env).await;
    rx.wait_delivered(Duration::from_secs(10), "every queued event", |e| {
        channels
            .iter()
            .all(|c| e.iter().any(|e| e["channel"] == c.as_str()))
    })
    .await;
    for r in rx.requests() {
        r.assert_signed("hook-key", "hook-secret");
    }
    drop(restarted);
    db.exec(&format!("DROP TABLE {table}")).await;
}
