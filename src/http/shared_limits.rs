//! `RATE_LIMITER_DRIVER=redis`: the per-address limits and the per-app
//! budgets, shared by every node that uses the same Redis and key prefix.
//!
//! Each check is one `EVALSHA` of [`SCRIPT`], the memory driver's algorithm
//! (governor's GCRA: a burst of `max`, refilled evenly over the window) with
//! the bucket's state in Redis. The script reads Redis's clock (`TIME`), not
//! the node's: nodes whose clocks disagree by more than a token's period
//! would otherwise write arrival times the others misread, granting or
//! refusing tokens that the bucket does not have.
//!
//! Redis never holds a request up. A check without an answer within
//! [`CHECK_TIMEOUT`] is decided by the node's own in-memory limiter (fail
//! open to per-node limits, which still hold), and while Redis is known to
//! be down every check is decided that way at once, until a background probe
//! reaches Redis again. Each outage is logged once when it starts and once
//! when it ends, and counted in the metrics ([`RedisHealth`]).

use crate::config::RedisConfig;
use log::{error, info};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, Script};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a request waits for Redis before its node decides alone. A
/// Redis on the same network answers in about a millisecond; 100 ms rides
/// out a busy moment without a spurious fallback, and is still short enough
/// that clients do not feel a stalled Redis (only the first checks after it
/// stalls wait this long: the node then stops asking until it is back).
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(100);

/// The background probe while Redis is down: first retry after
/// `PROBE_MIN`, doubling up to `PROBE_MAX`; each probe may take
/// `PROBE_TIMEOUT` (nobody waits for it, so a reconnect may finish in it).
const PROBE_MIN: Duration = Duration::from_millis(100);
const PROBE_MAX: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One GCRA bucket, as governor keeps it, in one atomic step. `KEYS[1]`
/// holds the theoretical arrival time (TAT) in microseconds of Redis's
/// clock and expires when the bucket is full again (a missing key is a full
/// bucket). `ARGV`: a token's period in µs, the burst, the cost. Returns
/// `{allowed (1/0), remaining tokens, µs until the cost would pass}`.
/// A refused check writes nothing, as in governor.
pub const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local earliest = tat + period * (cost - 1) - period * (burst - 1)
if now < earliest then
  return {0, 0, earliest - now}
end
local next_tat = tat + period * cost
redis.call('SET', KEYS[1], string.format('%d', next_tat),
  'PX', string.format('%d', math.ceil((next_tat - now) / 1000)))
return {1, math.floor((period * burst - (next_tat - now)) / period), 0}
";

/// Why a shared check had no answer; each is a reason to decide locally.
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitError {
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

/// Where Redis is: `REDIS_URL` when set, else the `DATABASE_REDIS_*`
/// parts. The error never repeats the URL (it may hold a password).
pub fn connection_info(config: &RedisConfig) -> Result<ConnectionInfo, String> {
    if let Some(url) = &config.url {
        return url.as_str().into_connection_info().map_err(|e| {
            // The crate's parse errors name the problem, never the URL.
            format!("REDIS_URL is not a Redis URL (redis://, rediss:// or unix://): {e}")
        });
    }
    let mut settings = RedisConnectionInfo::default().set_db(i64::from(config.db));
    if let Some(user) = config.username.as_deref().filter(|u| !u.is_empty()) {
        settings = settings.set_username(user);
    }
    if let Some(password) = config.password.as_deref().filter(|p| !p.is_empty()) {
        settings = settings.set_password(password);
    }
    ConnectionAddr::Tcp(config.host.clone(), config.port)
        .into_connection_info()
        .map(|info| info.set_redis_settings(settings))
        .map_err(|e| format!("DATABASE_REDIS_HOST / DATABASE_REDIS_PORT: {e}"))
}

/// A bucket's shape: a token every `period_us`, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    period_us: u64,
    burst: u32,
}

impl Bucket {
    /// `max` per `window`, as the memory driver's quota: burst `max`, a token
    /// every `window / max`.
    pub fn new(max: u32, window: Duration) -> Bucket {
        let max = max.max(1);
        let period = window.as_micros() / u128::from(max);
        Bucket {
            period_us: u64::try_from(period).unwrap_or(u64::MAX).max(1),
            burst: max,
        }
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// A check's outcome: passed or not, tokens left, and how long until the
/// refused cost would pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub remaining: u32,
    pub wait: Duration,
}

/// Whether Redis answers, and the counts the metrics show.
#[derive(Debug, Default)]
pub struct RedisHealth {
    down: AtomicBool,
    outages: AtomicU64,
    fallbacks: AtomicU64,
    /// Wakes the probe when an outage starts.
    wake: Notify,
}

impl RedisHealth {
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Outages since start-up.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Checks the node decided alone because Redis failed or was down.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// A check or probe failed: the first failure of an outage is logged and
    /// counted, and wakes the probe; later ones only count as fallbacks.
    fn failed(&self, e: &SharedLimitError) {
        if !self.down.swap(true, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            let error = e.to_string();
            error!(
                event = "rate_limiter_redis_down", error = error.as_str();
                "rate limiter: Redis unavailable ({error}); this node enforces the limits \
                 on its own until Redis is back"
            );
            self.wake.notify_one();
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            info!(
                event = "rate_limiter_redis_up";
                "rate limiter: Redis is back; limits are shared by every node again"
            );
        }
    }
}

/// The Redis side of the `redis` driver: one multiplexed connection that
/// reconnects by itself (with backoff), the script, the key prefix.
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    health: Arc<RedisHealth>,
}

impl RedisLimiter {
    /// Never waits for Redis: the connection is made by the first check or
    /// by [`RedisLimiter::watch`]. Must run on a Tokio runtime (the
    /// connection manager's tasks are spawned on it).
    pub fn new(config: &RedisConfig, prefix: &str) -> Result<Arc<RedisLimiter>, String> {
        let info = connection_info(config)?;
        let client = redis::Client::open(info).map_err(|e| format!("Redis: {e}"))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            // The checks time out sooner ([`CHECK_TIMEOUT`]); this one only
            // ends requests nobody waits for any more on a stalled server.
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            // Bounded: past these, a check waits for room, and past
            // CHECK_TIMEOUT its node decides alone.
            .set_pipeline_buffer_size(1024)
            .set_concurrency_limit(1024);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| format!("Redis: {e}"))?;
        Ok(Arc::new(RedisLimiter {
            conn,
            script: Script::new(SCRIPT),
            prefix: prefix.to_string(),
            health: Arc::default(),
        }))
    }

    /// The key of one bucket: `<prefix>gcra:<scope>:<id>`. The `gcra:`
    /// segment keeps these apart from Sockudo's fixed-window counters
    /// (`<prefix><scope>:<id>`), which a shared prefix would otherwise
    /// overwrite and misread.
    pub fn key(&self, scope: &str, id: &str) -> String {
        format!("{}gcra:{scope}:{id}", self.prefix)
    }

    pub fn health(&self) -> &Arc<RedisHealth> {
        &self.health
    }

    /// Take `cost` tokens from the shared bucket at `key`; `None` when Redis
    /// has no answer (the caller decides with its own limiter).
    pub async fn check(&self, key: &str, bucket: Bucket, cost: u32) -> Option<Decision> {
        if !self.health.is_up() {
            self.health.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match self.eval(key, bucket, cost).await {
            Ok(decision) => Some(decision),
            Err(e) => {
                self.health.fallbacks.fetch_add(1, Ordering::Relaxed);
                self.health.failed(&e);
                None
            }
        }
    }

    async fn eval(
        &self,
        key: &str,
        bucket: Bucket,
        cost: u32,
    ) -> Result<Decision, SharedLimitError> {
        let mut conn = self.conn.clone();
        let mut call = self.script.key(key);
        call.arg(bucket.period_us).arg(bucket.burst).arg(cost);
        let reply: (i64, i64, i64) =
            tokio::time::timeout(CHECK_TIMEOUT, call.invoke_async(&mut conn))
                .await
                .map_err(|_| SharedLimitError::Timeout(CHECK_TIMEOUT))??;
        let (allowed, remaining, wait_us) = reply;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            wait: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
        })
    }

    /// Load the script (so the first checks are one `EVALSHA`); the probe.
    async fn probe(&self) -> Result<(), SharedLimitError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(PROBE_TIMEOUT, self.script.load_async(&mut conn))
            .await
            .map_err(|_| SharedLimitError::Timeout(PROBE_TIMEOUT))??;
        Ok(())
    }

    /// Runs for the server's life: first contact at start-up, then, during
    /// each outage, a probe with backoff until Redis answers.
    pub async fn watch(self: Arc<Self>) {
        match self.probe().await {
            Ok(()) => info!(
                "rate limiter: limits are shared through Redis (keys {}gcra:*)",
                self.prefix
            ),
            Err(e) => self.health.failed(&e),
        }
        let mut delay = PROBE_MIN;
        loop {
            if self.health.is_up() {
                self.health.wake.notified().await;
                delay = PROBE_MIN;
                continue;
            }
            tokio::time::sleep(delay).await;
            match self.probe().await {
                Ok(()) => self.health.recovered(),
                Err(_) => delay = (delay * 2).min(PROBE_MAX),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_have_the_memory_drivers_shape() {
        // 4 per minute: a token every 15 s.
        assert_eq!(
            Bucket::new(4, Duration::from_secs(60)),
            Bucket {
                period_us: 15_000_000,
                burst: 4
            }
        );
        // Per second, as the per-app budgets.
        assert_eq!(Bucket::new(3, Duration::from_secs(1)).period_us, 333_333);
        // Never a zero period, never a zero burst.
        assert_eq!(Bucket::new(5_000_000, Duration::from_secs(1)).period_us, 1);
        assert_eq!(Bucket::new(0, Duration::from_secs(1)).burst, 1);
    }

    #[test]
    fn connection_settings_come_from_the_url_or_the_parts() {
        let mut c = RedisConfig {
            host: "redis.internal".into(),
            port: 6380,
            username: Some("rl".into()),
            password: Some("pw".into()),
            db: 2,
            ..RedisConfig::default()
        };
        let info = connection_info(&c).unwrap();
        assert!(
            matches!(info.addr(), ConnectionAddr::Tcp(h, 6380) if h == "redis.internal"),
            "{:?}",
            info.addr()
        );
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(info.redis_settings().username(), Some("rl"));
        assert_eq!(info.redis_settings().password(), Some("pw"));

        c.url = Some("redis://127.0.0.1:7000/3".into());
        let info = connection_info(&c).unwrap();
        assert!(matches!(info.addr(), ConnectionAddr::Tcp(_, 7000)));
        assert_eq!(info.redis_settings().db(), 3);

        c.url = Some("mysql://user:hunter2@db".into());
        let e = connection_info(&c).unwrap_err();
        assert!(e.starts_with("REDIS_URL"), "{e}");
        assert!(!e.contains("hunter2"), "the URL may hold a password: {e}");
    }
}
