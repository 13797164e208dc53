//! Nodes of a Switchyard cluster on a test's own `redis-server`.

use super::redis::RedisServer;
use super::security::Ready;
use super::{app_env, Server};

/// The cluster settings of a node on `url` with key prefix `prefix`.
pub fn cluster_env(url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ADAPTER_DRIVER", "redis".to_string()),
        ("REDIS_URL", url.to_string()),
        ("DATABASE_REDIS_KEY_PREFIX", prefix.to_string()),
    ]
}

pub fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A node of the standard test app on `redis`, ready (`/up` 200: subscribed).
pub async fn node(redis: &RedisServer, prefix: &str) -> Server {
    node_with(redis, prefix, &[]).await
}

pub async fn node_with(
    redis: &RedisServer,
    prefix: &str,
    extra: &[(&'static str, String)],
) -> Server {
    let mut env = cluster_env(&redis.url(), prefix);
    env.extend_from_slice(extra);
    Server::start_app(&borrowed(&env)).await
}

/// A node started without waiting for `/up` (which says 503 while Redis is
/// away): ready once its port accepts connections.
pub async fn node_tcp_ready(url: &str, prefix: &str) -> Server {
    let mut env: Vec<(&str, &str)> = app_env();
    let cluster = cluster_env(url, prefix);
    env.extend(borrowed(&cluster));
    Server::start_ready(&env, None, Ready::TcpOpen).await
}

/// Wait until each node sees a subscription made on the other (they know
/// each other, so each other's state), with the standard test app.
pub async fn acquainted(a: &Server, b: &Server) {
    for (x, y) in [(a, b), (b, a)] {
        let mut ws = x.connect().await;
        ws.subscribe("acquainted").await;
        y.api()
            .wait_channel_info("acquainted", "subscription_count", |v| {
                v["subscription_count"] == 1
            })
            .await;
        ws.close().await;
    }
}
