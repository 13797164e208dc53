//! Apps in MySQL/MariaDB and PostgreSQL when the database fails while the
//! server runs, on private servers of each test's own (`tests/common/sqlserver.rs`:
//! a free port, a temporary data directory; never the machine's shared
//! servers, which must not be stopped):
//!
//! - **stopped and restarted**: apps read before keep being served from the
//!   cache, stale, to open sockets, new sockets and signed API calls; unknown
//!   keys and ids, and apps never read, are refused within 3 s, and at once
//!   (under 0.5 s) once a lookup has failed, for the rest of the outage;
//!   one ERROR for the outage; after the restart, apps are read again (an app added
//!   before the outage appears, a rotated secret takes effect within the
//!   TTL) and one INFO says the database answers again;
//! - **hung** (a table lock held by the test) with a pool of one connection:
//!   a burst of unknown keys is refused within 3 s each, never hanging,
//!   and later bursts at once; cached apps connect, publish and answer pings promptly meanwhile; the
//!   server never holds more connections than the pool's maximum; once the
//!   lock is released, lookups work again.
//!
//! A machine without the servers' binaries is a skip locally and a failure
//! under CI (`tests/common/prereq.rs`).

#![allow(dead_code)]

mod common;

use common::sqlserver::{Engine, SqlServer};
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An unknown app is refused within this (WebSocket 4001, API 404), whether
/// the database is down or hung: the lookup's 2 s limit plus some slack.
const REFUSED_WITHIN: Duration = Duration::from_secs(3);
/// A cached app's new socket, ping or publish while the database is hung.
const PROMPT: Duration = Duration::from_secs(1);
/// Once a lookup has failed, until the database answers again: every
/// answer, cached app or refusal, comes without waiting for the database.
const AT_ONCE: Duration = Duration::from_millis(500);

/// A table name of the test's own (PostgreSQL folds names to lower case).
fn table(test: &str) -> String {
    format!("sy_{test}_{}", std::process::id()).to_ascii_lowercase()
}

fn start_env(
    engine: Engine,
    port: u16,
    table: &str,
    ttl: u64,
    pool_max: Option<u32>,
) -> Vec<(String, String)> {
    let (driver, prefix, user) = match engine {
        Engine::Mariadb => ("mysql", "DATABASE_MYSQL", "root"),
        Engine::Postgres => ("pgsql", "DATABASE_POSTGRES", "postgres"),
    };
    let mut env = vec![
        ("APP_MANAGER_DRIVER".into(), driver.into()),
        (format!("{prefix}_HOST"), "127.0.0.1".into()),
        (format!("{prefix}_PORT"), port.to_string()),
        (format!("{prefix}_USERNAME"), user.into()),
        (format!("{prefix}_DATABASE"), "test".into()),
        (format!("{prefix}_TABLE_NAME"), table.into()),
        ("APP_MANAGER_CACHE_TTL".into(), ttl.to_string()),
        // The connect-time limiter would count the many connects of one test.
        ("RATE_LIMITER_ENABLED".into(), "false".into()),
    ];
    if let Some(max) = pool_max {
        env.push((format!("{prefix}_POOL_MIN"), "1".into()));
        env.push((format!("{prefix}_POOL_MAX"), max.to_string()));
    }
    env
}

/// Switchyard on `db`, once it has created its table.
async fn start(
    engine: Engine,
    db: &SqlServer,
    table: &str,
    ttl: u64,
    pool_max: Option<u32>,
) -> Server {
    let env = start_env(engine, db.port(), table, ttl, pool_max);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start(&env).await;
    server
        .wait_for_logs("table created", Duration::from_secs(10), |l| {
            l.contains("apps are read from")
        })
        .await;
    server
}

fn insert(engine: Engine, table: &str, id: &str, key: &str, secret: &str) -> String {
    let key_column = match engine {
        Engine::Mariadb => "`key`",
        Engine::Postgres => "key",
    };
    format!(
        "INSERT INTO {table} (id, {key_column}, secret, max_connections, enable_client_messages, \
         enabled, max_client_events_per_second) VALUES ('{id}', '{key}', '{secret}', 100, TRUE, \
         TRUE, 0)"
    )
}

/// Past the 1 s cache TTL of the outage tests.
async fn past_ttl() {
    tokio::time::sleep(Duration::from_millis(1300)).await;
}

/// `key` is refused with 4001 (error frame, then close) within
/// [`REFUSED_WITHIN`] of the connect; how long it took.
async fn refused_promptly(server: &Server, key: &str) -> Duration {
    refused_within(server, key, REFUSED_WITHIN).await
}

/// `key` is refused with 4001 (error frame, then close) within `within`
/// of the connect; how long it took.
async fn refused_within(server: &Server, key: &str, within: Duration) -> Duration {
    let t = Instant::now();
    let refused = tokio::time::timeout(within, async {
        let mut ws = server
            .connect_raw(&format!("/app/{key}?protocol=7&client=rust&version=1.0"))
            .await;
        ws.expect_error(4001).await;
        ws.expect_close(4001).await;
    })
    .await;
    assert!(
        refused.is_ok(),
        "{key}: not refused within {within:?}\n{}",
        server.logs()
    );
    t.elapsed()
}

/// A signed API call for an app id nobody knows: 404 within [`REFUSED_WITHIN`].
async fn api_refused_promptly(server: &Server) {
    let api = server.api_for("no-such-app", "no-such-key", "s");
    let t = Instant::now();
    let resp = tokio::time::timeout(REFUSED_WITHIN, api.get("/channels", &[]))
        .await
        .unwrap_or_else(|_| panic!("API call for an unknown app hung past {REFUSED_WITHIN:?}"));
    resp.assert_error(404, "app_not_found");
    assert!(t.elapsed() < REFUSED_WITHIN, "{:?}", t.elapsed());
}

/// A socket of `key`, connected (`connection_established`) within `within`.
async fn connects_within(server: &Server, key: &str, within: Duration) -> Ws {
    tokio::time::timeout(within, server.connect_key(key))
        .await
        .unwrap_or_else(|_| panic!("{key}: not connected within {within:?}\n{}", server.logs()))
}

/// A signed publish that is accepted within `within`.
async fn publishes_within(api: &Api, channel: &str, event: &str, within: Duration) {
    tokio::time::timeout(within, api.publish(channel, event, "{}"))
        .await
        .unwrap_or_else(|_| panic!("publish {event} not answered within {within:?}"));
}

/// A socket of `key` once the server serves it (refusals with 4001 until
/// then, e.g. while the database comes back), within `within`.
async fn served_within(server: &Server, key: &str, within: Duration) -> Ws {
    let deadline = Instant::now() + within;
    loop {
        let mut ws = server
            .connect_raw(&format!("/app/{key}?protocol=7&client=rust&version=1.0"))
            .await;
        let f = ws.recv().await;
        if f.event() == "pusher:connection_established" {
            return ws;
        }
        assert_eq!(f.event(), "pusher:error", "{}", f.raw);
        assert_eq!(f.json["data"]["code"], 4001, "{}", f.raw);
        assert!(
            Instant::now() < deadline,
            "{key}: still refused after {within:?}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many log lines contain all of `words`.
fn lines_with(logs: &str, words: &[&str]) -> usize {
    logs.lines()
        .filter(|line| words.iter().all(|w| line.contains(w)))
        .count()
}

/// The ERROR of the current failure is there, once (`what`: the failure).
async fn one_error(server: &Server, what: &str) {
    server
        .wait_for_logs(
            &format!("the ERROR of {what}"),
            Duration::from_secs(5),
            |l| lines_with(l, &["ERROR", "cannot be read"]) >= 1,
        )
        .await;
    let logs = server.logs();
    assert_eq!(
        logs.matches("cannot be read").count(),
        1,
        "one ERROR for {what}\n{logs}"
    );
}

/// The INFO of the recovery is there, once.
async fn one_recovery(server: &Server) {
    server
        .wait_for_logs("the recovery's INFO", Duration::from_secs(5), |l| {
            lines_with(l, &["INFO", "answers again"]) >= 1
        })
        .await;
    let logs = server.logs();
    assert_eq!(logs.matches("answers again").count(), 1, "{logs}");
}

/// The database stops while the server runs, and comes back.
async fn outage(engine: Engine, test: &str) {
    let Some(mut db) = SqlServer::start(engine).await else {
        return;
    };
    let table = table(test);
    let server = start(engine, &db, &table, 1, None).await;
    db.exec(&insert(engine, &table, "app-a", "key-a", "secret-a"))
        .await;
    // B is in the table before the outage but never read before it.
    db.exec(&insert(engine, &table, "app-b", "key-b", "secret-b"))
        .await;

    let mut a1 = server.connect_key("key-a").await;
    a1.subscribe("news").await;
    let api_a = server.api_for("app-a", "key-a", "secret-a");
    api_a.publish("news", "before", "{}").await;
    a1.expect_channel_event("before", "news").await;

    db.stop();
    past_ttl().await;

    // (a) The open socket still gets what A publishes: A's id is served
    // from the cache, stale.
    let t = Instant::now();
    publishes_within(&api_a, "news", "during", REFUSED_WITHIN).await;
    let published = t.elapsed();
    a1.expect_channel_event("during", "news").await;
    // (b) A new socket of A connects.
    let t = Instant::now();
    let mut a2 = connects_within(&server, "key-a", REFUSED_WITHIN).await;
    let connected = t.elapsed();
    a2.assert_alive().await;
    // (c) Unknown keys and ids, and B (never read), are refused promptly.
    let unknown = refused_promptly(&server, "no-such-key").await;
    let unread = refused_promptly(&server, "key-b").await;
    api_refused_promptly(&server).await;
    eprintln!(
        "{engine:?} down: stale publish {published:?}, stale connect {connected:?}, \
         unknown key refused {unknown:?}, unread key refused {unread:?}"
    );
    // The outage is known now: for the rest of it, past the first second
    // too, the same answers come at once, without waiting on the database.
    let mut later = Vec::new();
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        later.push(connects_within(&server, "key-a", AT_ONCE).await);
        refused_within(&server, "key-b", AT_ONCE).await;
        refused_within(&server, &format!("unknown-{round}"), AT_ONCE).await;
        let event = format!("still-{round}");
        publishes_within(&api_a, "news", &event, AT_ONCE).await;
        a1.expect_channel_event(&event, "news").await;
    }
    for mut ws in later {
        ws.assert_alive().await;
    }
    // (d) One ERROR for the outage.
    one_error(&server, "the outage").await;
    let logs = server.logs();
    assert_eq!(logs.matches("answers again").count(), 0, "{logs}");

    db.restart().await;
    // B, in the table all along, is served once the database answers.
    let mut b = served_within(&server, "key-b", Duration::from_secs(5)).await;
    b.assert_alive().await;
    one_recovery(&server).await;

    // A's row changes again take effect within the TTL.
    db.exec(&format!(
        "UPDATE {table} SET secret = 'rotated-a' WHERE id = 'app-a'"
    ))
    .await;
    past_ttl().await;
    let status = api_a
        .post("/events", r#"{"name":"old","channel":"news","data":"{}"}"#)
        .await
        .status;
    assert_eq!(status, 401, "the old secret after the rotation");
    let rotated = server.api_for("app-a", "key-a", "rotated-a");
    rotated.publish("news", "after", "{}").await;
    a1.expect_channel_event("after", "news").await;
    a2.assert_alive().await;

    let logs = server.logs();
    assert_eq!(logs.matches("cannot be read").count(), 1, "{logs}");
    assert_eq!(logs.matches("answers again").count(), 1, "{logs}");
}

#[tokio::test]
async fn mariadb_stopped_and_restarted_cached_apps_keep_working_others_refused_promptly() {
    outage(Engine::Mariadb, "my_outage").await;
}

#[tokio::test]
async fn postgres_stopped_and_restarted_cached_apps_keep_working_others_refused_promptly() {
    outage(Engine::Postgres, "pg_outage").await;
}

/// The app table hangs (locked by the test) and the pool has one connection.
async fn hung(engine: Engine, test: &str) {
    let Some(db) = SqlServer::start(engine).await else {
        return;
    };
    let table = table(test);
    // A long TTL: A stays fresh in the cache while the table is locked.
    let server = start(engine, &db, &table, 60, Some(1)).await;
    for (id, key) in [("app-a", "key-a"), ("app-b", "key-b"), ("app-c", "key-c")] {
        db.exec(&insert(engine, &table, id, key, "secret")).await;
    }
    let mut a1 = server.connect_key("key-a").await;
    a1.subscribe("news").await;
    let mut b1 = server.connect_key("key-b").await;
    let api_a = server.api_for("app-a", "key-a", "secret");
    api_a.publish("news", "before", "{}").await;
    a1.expect_channel_event("before", "news").await;

    // The test's own connections: one holds the lock, one counts the others.
    let mut lock = db.connect().await;
    let mut watch = db.connect().await;
    let ours = [lock.id().await, watch.id().await];
    let idle = watch.clients(&ours).await;
    assert!(idle <= 1, "{idle} connections from a pool of one");
    match engine {
        Engine::Mariadb => lock.exec(&format!("LOCK TABLES {table} WRITE")).await,
        Engine::Postgres => {
            lock.exec(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
        }
    }
    let done = Arc::new(AtomicBool::new(false));
    let counting = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                most = most.max(watch.clients(&ours).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (most, watch)
        })
    };

    // A burst of unknown keys, and C (in the table, never read): each is
    // refused within REFUSED_WITHIN, none hangs on the locked table or on
    // the pool's one connection.
    let s = &server;
    let burst = futures_util::future::join_all(
        (0..20)
            .map(|i| format!("unknown-{i}"))
            .chain(["key-c".to_string()])
            .map(|key| async move { (refused_promptly(s, &key).await, key) }),
    );
    // Meanwhile the cached app is served without waiting, and open
    // sockets (A's and another app's) answer.
    let cached = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut opened = Vec::new();
        for i in 0..3 {
            let t = Instant::now();
            opened.push(connects_within(&server, "key-a", PROMPT).await);
            tokio::time::timeout(PROMPT, b1.assert_alive())
                .await
                .expect("B's open socket answers a ping");
            tokio::time::timeout(PROMPT, a1.assert_alive())
                .await
                .expect("A's open socket answers a ping");
            let event = format!("during-{i}");
            publishes_within(&api_a, "news", &event, PROMPT).await;
            a1.expect_channel_event(&event, "news").await;
            assert!(t.elapsed() < PROMPT * 2, "{:?}", t.elapsed());
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        opened
    };
    let (refusals, opened) = tokio::join!(burst, cached);
    let slowest = refusals.iter().max().unwrap();
    eprintln!("refusals while hung: slowest {slowest:?}");
    for mut ws in opened {
        ws.assert_alive().await;
    }
    // The hang is known now: past the first second too, another burst is
    // refused at once, without waiting on the database again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for wave in 0..2 {
        let burst = futures_util::future::join_all((0..20).map(|i| async move {
            refused_within(s, &format!("later-{wave}-{i}"), AT_ONCE).await
        }));
        burst.await;
        connects_within(&server, "key-a", AT_ONCE).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // The database was really asked, and did not answer in time.
    one_error(&server, "the hang").await;

    match engine {
        Engine::Mariadb => lock.exec("UNLOCK TABLES").await,
        Engine::Postgres => lock.exec("COMMIT").await,
    }
    // C, in the table all along, is served once the lock is gone.
    let mut c = served_within(&server, "key-c", Duration::from_secs(5)).await;
    c.assert_alive().await;
    one_recovery(&server).await;
    done.store(true, Ordering::Relaxed);
    let (most, mut watch) = counting.await.unwrap();
    let after = watch.clients(&ours).await;
    assert_eq!(
        most, 1,
        "the server's connections to the database while hung, with a pool of 1 (0: none seen)"
    );
    assert!(after <= 1, "{after} connections after the lock, pool of 1");
}

#[tokio::test]
async fn mariadb_hung_table_pool_of_one_refuses_unknown_keys_promptly_and_serves_cached_apps() {
    hung(Engine::Mariadb, "my_hung").await;
}

#[tokio::test]
async fn postgres_hung_table_pool_of_one_refuses_unknown_keys_promptly_and_serves_cached_apps() {
    hung(Engine::Postgres, "pg_hung").await;
}
