//! Several Switchyard nodes with Redis between them (`ADAPTER_DRIVER=redis`):
//! real binaries, a real `redis-server` of the test's own on a free port,
//! real WebSocket clients and signed HTTP requests. A client must not be able
//! to tell which node it landed on; a Redis outage must not take local
//! service down.

mod common;

use common::cluster::*;
use common::redis::RedisServer;
use common::security::pick_port;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

async fn up_status(server: &Server) -> Resp {
    http_get(&format!("{}/up", server.http_base())).await
}

/// Poll `/up` until it answers `status`; panics after 15 s (more than the
/// bridge's longest backoff, 5 s, plus a connection attempt).
async fn wait_up(server: &Server, status: u16) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = up_status(server).await;
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "/up never answered {status}; last {} {:?}\n{}",
            r.status,
            r.text,
            server.logs()
        );
        tokio::time::sleep(ms(50)).await;
    }
}

/// Publish one event and return how long the API took to answer 200.
async fn timed_publish(server: &Server, channel: &str, name: &str, data: &str) -> Duration {
    let started = Instant::now();
    server.api().publish(channel, name, data).await;
    started.elapsed()
}

fn count_lines(logs: &str, needle: &str) -> usize {
    logs.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn an_api_event_reaches_subscribers_on_every_node_once_in_publish_order() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "t:").await;
    let b = node(&redis, "t:").await;
    let mut on_a = a.connect().await;
    let mut on_b = b.connect().await;
    on_a.subscribe("news").await;
    on_b.subscribe("news").await;

    for i in 0..5 {
        b.api().publish("news", "update", &format!("n{i}")).await;
    }
    for ws in [&mut on_a, &mut on_b] {
        for i in 0..5 {
            let f = ws.expect_channel_event("update", "news").await;
            assert_eq!(f.data_str(), format!("n{i}"));
        }
        // Once each: B's own echo from Redis is not delivered again.
        ws.expect_silence(SILENCE).await;
    }
    // And the other way round.
    a.api().publish("news", "update", "from-a").await;
    for ws in [&mut on_b, &mut on_a] {
        assert_eq!(
            ws.expect_channel_event("update", "news").await.data_str(),
            "from-a"
        );
        ws.expect_silence(SILENCE).await;
    }
}

#[tokio::test]
async fn socket_id_exclusion_works_across_nodes() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "t:").await;
    let b = node(&redis, "t:").await;
    let mut skipped = a.connect().await;
    let mut other = a.connect().await;
    skipped.subscribe("news").await;
    other.subscribe("news").await;

    let r = b
        .api()
        .publish_body(json!({
            "name": "update", "channel": "news", "data": "x",
            "socket_id": skipped.socket_id,
        }))
        .await;
    r.assert_ok();
    other.expect_channel_event("update", "news").await;
    skipped.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn a_client_event_reaches_subscribers_on_other_nodes_but_not_its_sender() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "t:").await;
    let b = node(&redis, "t:").await;
    let mut sender = a.connect().await;
    let mut peer = b.connect().await;
    sender.subscribe_private("private-chat").await;
    peer.subscribe_private("private-chat").await;

    sender
        .client_event("private-chat", "client-typing", json!({"who": "a"}))
        .await;
    let f = peer
        .expect_channel_event("client-typing", "private-chat")
        .await;
    assert_eq!(f.data_json(), json!({"who": "a"}));
    peer.expect_silence(SILENCE).await;
    sender.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn a_cache_channel_replays_an_event_whichever_node_received_it() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "t:").await;
    let b = node(&redis, "t:").await;
    // Nobody anywhere is subscribed to the cache channel.
    b.api().publish("cache-prices", "price", "101").await;
    // B's events reach A in order: once this marker arrives on A, A has
    // stored the cached event.
    let mut watcher = a.connect().await;
    watcher.subscribe("marker").await;
    b.api().publish("marker", "m", "after").await;
    watcher.expect_channel_event("m", "marker").await;

    let mut late = a.connect().await;
    late.subscribe("cache-prices").await;
    let f = late.recv().await;
    assert_eq!(
        (f.event(), f.data_str()),
        ("price", "101"),
        "not a cache miss: {}",
        f.raw
    );
    late.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn clusters_with_different_prefixes_on_one_redis_do_not_see_each_other() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "one:").await;
    let same = node(&redis, "one:").await;
    let other = node(&redis, "two:").await;
    let mut on_a = a.connect().await;
    on_a.subscribe("news").await;

    other.api().publish("news", "update", "other-cluster").await;
    // A node of A's own cluster, published after: what A gets first is this
    // one, so the other cluster's event did not arrive before it either.
    same.api().publish("news", "update", "same-cluster").await;
    assert_eq!(
        on_a.expect_channel_event("update", "news").await.data_str(),
        "same-cluster"
    );
    on_a.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn a_node_started_while_redis_is_down_says_so_and_joins_when_it_is_back() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    redis.stop();
    let a = node_tcp_ready(&redis.url(), "t:").await;
    let address = format!("127.0.0.1:{}/0", redis.port());
    a.wait_for_logs("the Redis ERROR", ms(5000), |l| {
        l.lines().any(|line| {
            line.contains("ERROR")
                && line.contains(&format!("Redis unreachable at {address}"))
                && line.contains("this node does not see other nodes until it is back")
        })
    })
    .await;
    let r = up_status(&a).await;
    assert_eq!((r.status, r.text.as_str()), (503, "REDIS_UNAVAILABLE"));
    assert_eq!(
        http_get(&format!("{}/live", a.http_base())).await.status,
        200
    );
    // It serves its own clients meanwhile.
    let mut local = a.connect().await;
    local.subscribe("news").await;
    a.api().publish("news", "update", "local").await;
    local.expect_channel_event("update", "news").await;
    // Let it retry a few times (100, 200, 400, 800 ms): still one ERROR.
    tokio::time::sleep(ms(1600)).await;

    redis.restart().await;
    wait_up(&a, 200).await;
    a.wait_for_logs("the reconnection", ms(5000), |l| {
        l.contains(&format!("Redis is reachable again at {address}"))
    })
    .await;
    let logs = a.logs();
    assert_eq!(count_lines(&logs, "Redis unreachable at"), 1, "{logs}");

    let b = node(&redis, "t:").await;
    b.api().publish("news", "update", "from-b").await;
    assert_eq!(
        local
            .expect_channel_event("update", "news")
            .await
            .data_str(),
        "from-b"
    );
    local.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn a_redis_outage_keeps_local_service_and_delivers_nothing_twice_after() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "t:").await;
    let b = node(&redis, "t:").await;
    let mut on_a = a.connect().await;
    let mut on_b = b.connect().await;
    on_a.subscribe("news").await;
    on_b.subscribe("news").await;
    b.api().publish("news", "update", "before").await;
    on_a.expect_channel_event("update", "news").await;
    on_b.expect_channel_event("update", "news").await;

    redis.stop();
    assert_eq!(wait_up(&a, 503).await.text, "REDIS_UNAVAILABLE");
    wait_up(&b, 503).await;
    // Each node serves its own clients, and the API answers at once.
    let took = timed_publish(&a, "news", "update", "during-a").await;
    assert!(took < ms(500), "publish took {took:?} with Redis down");
    assert_eq!(
        on_a.expect_channel_event("update", "news").await.data_str(),
        "during-a"
    );
    let took = timed_publish(&b, "news", "update", "during-b").await;
    assert!(took < ms(500), "publish took {took:?} with Redis down");
    assert_eq!(
        on_b.expect_channel_event("update", "news").await.data_str(),
        "during-b"
    );
    let r = a.api().get("/channels", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for ws in [&mut on_a, &mut on_b] {
        ws.expect_silence(SILENCE).await;
    }
    // Logged once per node, not per event.
    for node in [&a, &b] {
        let logs = node.logs();
        assert_eq!(count_lines(&logs, "lost Redis at"), 1, "{logs}");
    }

    redis.restart().await;
    wait_up(&a, 200).await;
    wait_up(&b, 200).await;
    b.api().publish("news", "update", "after").await;
    // The next event each client sees is the new one: nothing from the
    // outage arrives late, nothing arrives twice.
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(
            ws.expect_channel_event("update", "news").await.data_str(),
            "after"
        );
        ws.expect_silence(SILENCE).await;
    }
    for node in [&a, &b] {
        assert_eq!(count_lines(&node.logs(), "Redis is reachable again"), 1);
    }
}

/// A TCP relay to 127.0.0.1:`target` that holds each new connection for
/// `delay` before passing bytes either way: Redis behind a slow network, as
/// a node starting up sees it. Returns its port; it lives as long as the
/// test's runtime.
async fn slow_link(target: u16, delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_new_node_delivers_other_nodes_events_from_its_first_connection() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "t:").await;
    // C reaches Redis slowly (each of its two connections waits 400 ms) and
    // is taken as ready as soon as its port accepts: its first connection
    // comes as early as possible, and must still get A's event.
    let slow = slow_link(redis.port(), ms(400)).await;
    let c = node_tcp_ready(&format!("redis://127.0.0.1:{slow}"), "t:").await;
    let mut first = c.connect().await;
    first.subscribe("news").await;
    a.api().publish("news", "update", "to-the-newcomer").await;
    assert_eq!(
        first
            .expect_channel_event("update", "news")
            .await
            .data_str(),
        "to-the-newcomer"
    );
    // Subscribed before its listener opened.
    assert_eq!(up_status(&c).await.status, 200);
}

/// The metrics page of a node started with `METRICS_PORT=port`.
async fn metrics(port: u16) -> String {
    let r = http_get(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(r.status, 200);
    r.text
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.parse().ok()
    })
}

#[tokio::test]
async fn metrics_show_the_link_and_the_relayed_events() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (pa, pb) = (pick_port(), pick_port());
    let with_metrics = |port: u16| {
        vec![
            ("METRICS_ENABLED", "true".to_string()),
            ("METRICS_HOST", "127.0.0.1".to_string()),
            ("METRICS_PORT", port.to_string()),
        ]
    };
    let a = node_with(&redis, "t:", &with_metrics(pa)).await;
    let b = node_with(&redis, "t:", &with_metrics(pb)).await;
    let mut on_a = a.connect().await;
    on_a.subscribe("news").await;
    for i in 0..3 {
        b.api().publish("news", "update", &i.to_string()).await;
        on_a.expect_channel_event("update", "news").await;
    }

    // A PUBLISH is counted when Redis acknowledges it, which can be a moment
    // after the event reached A.
    let series = |name: &str, port: u16| format!("sockudo_{name}{{port=\"{port}\"}}");
    let mb = wait_metric(pb, &series("redis_relay_sent_total", b.port), 3.0).await;
    let ma = metrics(pa).await;
    assert_eq!(
        value(&ma, &series("redis_connected", a.port)),
        Some(1.0),
        "{ma}"
    );
    assert_eq!(
        value(&mb, &series("redis_connected", b.port)),
        Some(1.0),
        "{mb}"
    );
    assert_eq!(
        value(&ma, &series("redis_relay_received_total", a.port)),
        Some(3.0),
        "{ma}"
    );
    assert_eq!(
        value(&ma, &series("redis_relay_latency_seconds_count", a.port)),
        Some(3.0),
        "{ma}"
    );
    let inf = format!(
        "sockudo_redis_relay_latency_seconds_bucket{{port=\"{}\",le=\"+Inf\"}}",
        a.port
    );
    assert_eq!(value(&ma, &inf), Some(3.0), "{ma}");
    // B received nothing from A; its own three echoes are not "received".
    assert_eq!(
        value(&mb, &series("redis_relay_received_total", b.port)),
        Some(0.0),
        "{mb}"
    );
    assert_eq!(
        value(&ma, &series("redis_relay_sent_total", a.port)),
        Some(0.0),
        "{ma}"
    );
    let dropped = format!(
        "sockudo_redis_relay_dropped_total{{port=\"{}\",reason=\"disconnected\"}}",
        b.port
    );
    assert_eq!(value(&mb, &dropped), Some(0.0), "{mb}");
}

/// Poll a node's metrics until `series` reads `want`; returns the page.
async fn wait_metric(port: u16, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = metrics(port).await;
        if value(&page, series) == Some(want) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never read {want}:\n{page}"
        );
        tokio::time::sleep(ms(30)).await;
    }
}

/// An address the Redis client cannot use stops start-up (exit 2) naming the
/// setting, never echoing the URL, which may hold a password.
#[tokio::test]
async fn an_unusable_redis_url_is_refused_at_start_up_without_echoing_it() {
    let f = Server::start_expect_failure(
        &[
            ("ADAPTER_DRIVER", "redis"),
            ("REDIS_URL", "http://user:hunter2@example.invalid:6379"),
        ],
        None,
        &["--check-config"],
    )
    .await;
    assert_eq!(f.status.code(), Some(2), "{}", f.output);
    assert!(f.output.contains("REDIS_URL"), "{}", f.output);
    assert!(!f.output.contains("hunter2"), "{}", f.output);
}

/// Relayed traffic leaves nothing behind: after a warm-up, 6000 more 4 KiB
/// events through B to a reader on A grow A's memory by far less than they
/// weigh (24 MiB).
#[tokio::test]
async fn memory_stays_flat_under_relayed_traffic() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "t:").await;
    let b = node(&redis, "t:").await;
    let mut reader = a.connect().await;
    reader.subscribe("firehose").await;
    let (counted, mut count) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut n = 0;
        loop {
            let f = reader.recv_timeout(Duration::from_secs(20)).await;
            assert_eq!(f.event(), "big", "{}", &f.raw[..f.raw.len().min(200)]);
            n += 1;
            counted.send_replace(n);
        }
    });
    let api = b.api();
    let pid = a.pid().expect("A runs");
    send_big(&api, 200).await;
    tokio::time::timeout(Duration::from_secs(30), count.wait_for(|n| *n >= 2000))
        .await
        .expect("the warm-up arrived")
        .unwrap();
    let before = rss_kb(pid);
    send_big(&api, 600).await;
    tokio::time::timeout(Duration::from_secs(60), count.wait_for(|n| *n >= 8000))
        .await
        .expect("every event arrived")
        .unwrap();
    let after = rss_kb(pid);
    reading.abort();
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "A's RSS grew from {before} KiB to {after} KiB over 6000 relayed 4 KiB events"
    );
}

/// `requests` batches of ten 4 KiB events to `firehose`.
async fn send_big(api: &Api, requests: usize) {
    let data = "d".repeat(4096);
    for _ in 0..requests {
        let items: Vec<_> = (0..10)
            .map(|_| json!({"channel": "firehose", "name": "big", "data": data}))
            .collect();
        let r = api
            .post("/batch_events", &json!({ "batch": items }).to_string())
            .await;
        assert_eq!(r.status, 200, "{:?}", r.text);
    }
}

/// `rediss://`: the nodes talk to Redis over TLS and verify its certificate
/// against the trust store (`SSL_CERT_FILE`: here a private CA). A node that
/// does not trust the issuer stays disconnected and says so; it never falls
/// back to plain text or to an unverified connection.
#[tokio::test]
async fn rediss_urls_connect_over_verified_tls() {
    let ca = security::TestCa::root("Switchyard Test Redis CA");
    let leaf = ca.leaf();
    let Some(redis) = RedisServer::start_tls(&leaf.cert_pem, &leaf.key_pem, &ca.pem()).await else {
        return;
    };
    let url = redis.tls_url();
    let mut env = cluster_env(&url, "tls:");
    env.push(("SSL_CERT_FILE", redis.ca_file().display().to_string()));
    let a = Server::start_app(&borrowed(&env)).await;
    let b = Server::start_app(&borrowed(&env)).await;
    let mut on_a = a.connect().await;
    on_a.subscribe("secure").await;
    b.api().publish("secure", "update", "over-tls").await;
    assert_eq!(
        on_a.expect_channel_event("update", "secure")
            .await
            .data_str(),
        "over-tls"
    );
    // Both nodes' connections are TLS clients of this server.
    let clients = match redis.command(&["CLIENT", "LIST"]) {
        common::redis::Reply::Bulk(Some(list)) => list,
        other => panic!("CLIENT LIST: {other:?}"),
    };
    assert!(
        clients
            .lines()
            .filter(|l| l.contains("cmd=subscribe"))
            .count()
            >= 2,
        "{clients}"
    );

    // A node trusting another CA: no connection, one ERROR, /up 503.
    let stranger = dir_with_ca(&security::TestCa::root("Someone Else").pem());
    let mut env = cluster_env(&url, "tls:");
    env.push(("SSL_CERT_FILE", stranger.display().to_string()));
    let mut plain = app_env();
    plain.extend(borrowed(&env));
    let c = Server::start_ready(&plain, None, security::Ready::TcpOpen).await;
    c.wait_for_logs("the certificate ERROR", ms(5000), |l| {
        l.lines().any(|line| {
            line.contains("ERROR")
                && line.contains("Redis unreachable at")
                && line.contains("invalid peer certificate")
        })
    })
    .await;
    tokio::time::sleep(ms(500)).await;
    let r = up_status(&c).await;
    assert_eq!((r.status, r.text.as_str()), (503, "REDIS_UNAVAILABLE"));
    let _ = std::fs::remove_dir_all(stranger.parent().unwrap());
}

/// A file holding `pem` in a directory of its own.
fn dir_with_ca(pem: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-ca-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("CA dir");
    let file = dir.join("ca.crt");
    std::fs::write(&file, pem).expect("write CA");
    file
}
