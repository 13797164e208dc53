//! The durable queue (`QUEUE_DRIVER=redis`): each lane keeps its events in a
//! Redis list until the receiver has them, so a crash or a restart loses
//! nothing that reached Redis.
//!
//! One list per lane (`<prefix>webhooks:<app>:<webhook>:<lane>`), appended
//! with `RPUSH`, read from the head with `LRANGE`, and trimmed with `LTRIM`
//! only once the batch is delivered (or dead-lettered): at-least-once, with
//! the same `X-Switchyard-Webhook-Id` when a batch is sent again after a
//! restart. Nodes sharing the Redis share the lists; a lease
//! (`<list>:owner`, renewed while held) lets one node at a time deliver a
//! list, so its order holds. What cannot be delivered is kept, newest
//! 10 000, in `<prefix>webhooks:dead`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use log::{error, info};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use crate::config::RedisConfig;

/// How long a lane's lease lasts unless renewed: a node that dies hands its
/// lists to the others (or to itself, restarted) after this.
pub const LEASE: Duration = Duration::from_secs(10);
/// Dead letters kept in Redis (the newest).
pub const DEAD_LETTERS_KEPT: isize = 10_000;
/// Each Redis call's time budget.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Take or renew the lease: free, or already ours.
const LEASE_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

pub struct Store {
    conn: ConnectionManager,
    prefix: String,
    /// This node, as lease holder.
    owner: String,
    lease: Script,
    down: AtomicBool,
}

/// One stored event: `<id> <unix ms> <event JSON>`. The id makes a batch's
/// webhook id (its first event's id and its length) stable across
/// restarts; the time is when it happened, for the latency histogram.
pub fn item(id: u64, at_ms: u64, json: &str) -> String {
    format!("{id:016x} {at_ms} {json}")
}

/// `(id, at_ms, json)` of a stored event, if it is one.
pub fn parse_item(item: &str) -> Option<(&str, u64, &str)> {
    let (id, rest) = item.split_once(' ')?;
    let (at, json) = rest.split_once(' ')?;
    Some((id, at.parse().ok()?, json))
}

impl Store {
    /// Connect and check that Redis answers; an error (naming no URL, which
    /// may hold a password) refuses start-up rather than running with
    /// webhooks that would silently not be durable.
    pub async fn connect(config: &RedisConfig, prefix: &str, owner: &str) -> Result<Store, String> {
        let info = crate::http::shared_limits::connection_info(config)?;
        let client = redis::Client::open(info).map_err(|e| format!("Redis: {e}"))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(5));
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, manager),
        )
        .await
        .map_err(|_| "Redis did not answer within 5 s".to_string())?
        .map_err(|e| format!("Redis: {e}"))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        Ok(Store {
            conn,
            prefix: prefix.to_string(),
            owner: owner.to_string(),
            lease: Script::new(LEASE_SCRIPT),
            down: AtomicBool::new(false),
        })
    }

    /// The list of one lane of one webhook of one app.
    pub fn key(&self, app_id: &str, webhook: &str, lane: usize) -> String {
        format!("{}webhooks:{app_id}:{webhook}:{lane}", self.prefix)
    }

    /// The apps that have lane lists (events an earlier run left), so
    /// their lanes can start before the apps have anything new to tell.
    pub async fn apps_with_lists(&self) -> Result<Vec<String>, redis::RedisError> {
        let head = format!("{}webhooks:", self.prefix);
        let pattern = format!("{head}*");
        let mut conn = self.conn.clone();
        let mut cursor = 0u64;
        let mut apps = std::collections::BTreeSet::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .timed(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn),
                )
                .await?;
            for key in keys {
                // <prefix>webhooks:<app id>:<webhook>:<lane>; app ids may
                // hold ':', webhook names and lanes do not.
                let Some(rest) = key.strip_prefix(&head) else {
                    continue;
                };
                let mut parts = rest.rsplitn(3, ':');
                let (lane, webhook, app) = (parts.next(), parts.next(), parts.next());
                if let (Some(lane), Some(_), Some(app)) = (lane, webhook, app) {
                    if lane.parse::<usize>().is_ok() {
                        apps.insert(app.to_string());
                    }
                }
            }
            if next == 0 {
                return Ok(apps.into_iter().collect());
            }
            cursor = next;
        }
    }

    fn ok<T>(&self, r: Result<T, redis::RedisError>) -> Result<T, redis::RedisError> {
        match &r {
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    info!(event = "webhook_queue_redis_up"; "the webhook queue reaches Redis again");
                }
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    error!(
                        event = "webhook_queue_redis_down";
                        "the webhook queue cannot reach Redis ({e}): events wait in memory and \
                         delivery pauses until it is back"
                    );
                }
            }
        }
        r
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, redis::RedisError> {
        let r = match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer",
                format!("within {} ms", CALL_TIMEOUT.as_millis()),
            ))),
        };
        self.ok(r)
    }

    /// Append `items`; the list's length after.
    pub async fn append(&self, key: &str, items: &[String]) -> Result<usize, redis::RedisError> {
        let mut conn = self.conn.clone();
        self.timed(async move {
            redis::cmd("RPUSH")
                .arg(key)
                .arg(items)
                .query_async(&mut conn)
                .await
        })
        .await
    }

    pub async fn len(&self, key: &str) -> Result<usize, redis::RedisError> {
        let mut conn = self.conn.clone();
        self.timed(async move { redis::cmd("LLEN").arg(key).query_async(&mut conn).await })
            .await
    }

    /// The first `n` items.
    pub async fn head(&self, key: &str, n: usize) -> Result<Vec<String>, redis::RedisError> {
        let mut conn = self.conn.clone();
        let last = n.max(1) as isize - 1;
        self.timed(async move {
            redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(last)
                .query_async(&mut conn)
                .await
        })
        .await
    }

    /// Remove the first `n` items (delivered or dead-lettered).
    pub async fn pop(&self, key: &str, n: usize) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        self.timed(async move {
            redis::cmd("LTRIM")
                .arg(key)
                .arg(n)
                .arg(-1)
                .query_async(&mut conn)
                .await
        })
        .await
    }

    /// Take or renew the lease on `key`; `false` while another node holds it.
    pub async fn lease(&self, key: &str) -> Result<bool, redis::RedisError> {
        let mut conn = self.conn.clone();
        let owner_key = format!("{key}:owner");
        let mut call = self.lease.key(owner_key);
        call.arg(&self.owner).arg(LEASE.as_millis() as u64);
        let held: i64 = self
            .timed(async move { call.invoke_async(&mut conn).await })
            .await?;
        Ok(held == 1)
    }

    /// Keep an undeliverable batch, newest [`DEAD_LETTERS_KEPT`].
    pub async fn dead_letter(&self, record: &str) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        let key = format!("{}webhooks:dead", self.prefix);
        self.timed(async move {
            redis::pipe()
                .cmd("RPUSH")
                .arg(&key)
                .arg(record)
                .ignore()
                .cmd("LTRIM")
                .arg(&key)
                .arg(-DEAD_LETTERS_KEPT)
                .arg(-1)
                .ignore()
                .query_async(&mut conn)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_id_time_and_json() {
        let s = item(0xabc, 1_700_000_000_123, r#"{"name":"x y"}"#);
        assert_eq!(s, r#"0000000000000abc 1700000000123 {"name":"x y"}"#);
        assert_eq!(
            parse_item(&s),
            Some(("0000000000000abc", 1_700_000_000_123, r#"{"name":"x y"}"#))
        );
        assert_eq!(parse_item("garbage"), None);
        assert_eq!(parse_item("id notanumber {}"), None);
    }
}
