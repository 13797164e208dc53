//! Rate limits: per client address on the HTTP API and on WebSocket
//! connection attempts (actix-governor with the memory driver, our own
//! middleware over [`shared_limits`](super::shared_limits) with `redis`),
//! and per app on publishes and reads.
//!
//! Limits are token buckets (GCRA): `max_requests` per `window_seconds` means a
//! burst of `max_requests`, refilled evenly over the window — never more than
//! `max_requests` in any window, and no thundering herd at a window boundary.

use crate::apps::AppStore;
use crate::http::error::too_many_requests;
use crate::http::shared_limits::{Bucket, Decision, RedisLimiter};
use actix_governor::{
    GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use governor::clock::{Clock, DefaultClock, QuantaInstant};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, NotUntil, Quota, RateLimiter};
use log::warn;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use switchyard_actors::app::App;
use switchyard_actors::stats::{RateLimit, Stats};

/// The client's address. `X-Forwarded-For` is believed only as far as
/// `trust_hops` proxies we run ourselves: the entry `trust_hops` from the
/// right is the address the outermost trusted proxy saw. `X-Real-IP` is
/// believed only behind a trusted proxy too (Sockudo trusts it always, which
/// lets a directly exposed server be evaded by a spoofed header).
pub fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>, trust_hops: u32) -> Option<IpAddr> {
    if trust_hops > 0 {
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if !forwarded.is_empty() {
            let hops = trust_hops as usize;
            let entry = if hops <= forwarded.len() {
                forwarded[forwarded.len() - hops]
            } else {
                forwarded[0]
            };
            if let Ok(ip) = entry.parse::<IpAddr>() {
                return Some(ip);
            }
        }
        if let Some(ip) = headers
            .get("x-real-ip")
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Some(ip);
        }
    }
    peer.map(|p| p.ip())
}

thread_local! {
    /// The key actix-governor extracted last on this thread. Extraction, the
    /// check and the refusal happen in one synchronous call, so the refusal
    /// can name the client it refuses.
    static LAST_KEY: Cell<Option<IpAddr>> = const { Cell::new(None) };
    /// The app the refused request was for, when the path names a known one.
    static LAST_APP: RefCell<Option<Arc<App>>> = const { RefCell::new(None) };
}

/// What a per-address limiter reports to, whichever driver keeps its
/// buckets: the server's counters, the app store (to name the app in the
/// log line), and the limit for the log's reason.
#[derive(Clone)]
struct Reporter {
    scope: RateLimit,
    stats: Arc<Stats>,
    apps: Arc<AppStore>,
    limit: (u32, u64),
}

impl Reporter {
    /// The app the request is for: `/apps/{app_id}/…` names it by id,
    /// `/app/{key}` by key.
    fn app_of(&self, req: &ServiceRequest) -> Option<Arc<App>> {
        let info = req.match_info();
        match (info.get("app_id"), info.get("key")) {
            (Some(id), _) => self.apps.by_id(id),
            (None, Some(key)) => self.apps.by_key(key),
            _ => None,
        }
    }

    /// Count, log and render one refusal; `wait` is until the next request
    /// from this address would pass. Both drivers answer through here, so
    /// the body, `Retry-After` and the log line are the same.
    fn refuse(
        &self,
        client: Option<IpAddr>,
        app: Option<Arc<App>>,
        wait: Duration,
        response: HttpResponseBuilder,
    ) -> HttpResponse {
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.stats.rate_limited(self.scope);
        let peer = client.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        let (max, window) = self.limit;
        let reason = format!("more than {max} requests in {window} s from this address");
        warn!(
            event = "rate_limited", limiter = self.scope.label(),
            app_id = app.as_ref().map_or("", |a| a.id.as_ref()), peer = peer.as_str(),
            retry_after = retry_after, reason = reason.as_str();
            "rate limit hit"
        );
        too_many_requests(
            response,
            "Rate limit exceeded. Please try again later.",
            retry_after,
        )
    }
}

/// actix-governor key: the client address as [`client_ip`] finds it.
/// Unix-socket clients without a forwarded address share one bucket.
#[derive(Clone)]
pub struct ClientKey {
    trust_hops: u32,
    reporter: Reporter,
}

impl KeyExtractor for ClientKey {
    type Key = IpAddr;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<IpAddr, Self::KeyExtractionError> {
        let ip = client_ip(req.headers(), req.peer_addr(), self.trust_hops)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        LAST_KEY.with(|k| k.set(Some(ip)));
        let app = self.reporter.app_of(req);
        LAST_APP.with(|a| *a.borrow_mut() = app);
        Ok(ip)
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        response: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now());
        let client = LAST_KEY.with(|k| k.get());
        let app = LAST_APP.with(|a| a.borrow_mut().take());
        self.reporter.refuse(client, app, wait, response)
    }
}

/// The middleware configuration of one per-address limit.
pub type IpLimitConfig =
    GovernorConfig<ClientKey, actix_governor::governor::middleware::StateInformationMiddleware>;

/// What every limiter needs: the counters, the apps, and Redis when the
/// driver is `redis` (`None`: the memory driver).
#[derive(Clone)]
pub struct LimitContext {
    pub stats: Arc<Stats>,
    pub apps: Arc<AppStore>,
    pub shared: Option<Arc<RedisLimiter>>,
}

/// A per-address limit and whether it is on. An off limit still has a (unused)
/// configuration so the middleware stack has one type either way.
#[derive(Clone)]
pub struct IpLimit {
    pub enabled: bool,
    pub config: IpLimitConfig,
    /// The `redis` driver's middleware; `None` with the memory driver.
    shared: Option<SharedIpLimit>,
}

impl IpLimit {
    /// `max_requests` per `window_seconds` per client address; a limit of 0 is off.
    pub fn new(
        enabled: bool,
        max_requests: u32,
        window_seconds: u64,
        trust_hops: u32,
        scope: RateLimit,
        ctx: &LimitContext,
    ) -> IpLimit {
        let enabled = enabled && max_requests > 0 && window_seconds > 0;
        let max_requests = max_requests.max(1);
        let window = Duration::from_secs(window_seconds.max(1));
        let period = (window / max_requests).max(Duration::from_nanos(1));
        let reporter = Reporter {
            scope,
            stats: ctx.stats.clone(),
            apps: ctx.apps.clone(),
            limit: (max_requests, window_seconds),
        };
        let shared = ctx.shared.as_ref().map(|redis| {
            let quota = Quota::with_period(period)
                .expect("period is non-zero")
                .allow_burst(NonZeroU32::new(max_requests).expect("at least 1"));
            SharedIpLimit(Some(Arc::new(SharedIpInner {
                redis: redis.clone(),
                // Sockudo's scope names: `api`, `websocket_connect`.
                key_prefix: redis.key(
                    match scope {
                        RateLimit::WsConnect => "websocket_connect",
                        _ => "api",
                    },
                    "",
                ),
                bucket: Bucket::new(max_requests, window),
                fallback: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
                trust_hops,
                reporter: reporter.clone(),
            })))
        });
        let config = GovernorConfigBuilder::default()
            .period(period)
            .burst_size(max_requests)
            .key_extractor(ClientKey {
                trust_hops,
                reporter,
            })
            .use_headers()
            .finish()
            .expect("period and burst are non-zero");
        IpLimit {
            enabled,
            config,
            shared,
        }
    }

    /// The memory driver's middleware (a no-op when the limit is off or the
    /// driver is `redis`).
    pub fn middleware(
        &self,
    ) -> actix_web::middleware::Condition<
        actix_governor::Governor<
            ClientKey,
            actix_governor::governor::middleware::StateInformationMiddleware,
        >,
    > {
        actix_web::middleware::Condition::new(
            self.enabled && self.shared.is_none(),
            actix_governor::Governor::new(&self.config),
        )
    }

    /// The `redis` driver's middleware (a no-op when the limit is off or the
    /// driver is `memory`). actix-governor checks synchronously in its
    /// key store, so the Redis round trip needs a middleware of its own.
    pub fn shared_middleware(&self) -> actix_web::middleware::Condition<SharedIpLimit> {
        match &self.shared {
            Some(shared) => actix_web::middleware::Condition::new(self.enabled, shared.clone()),
            None => actix_web::middleware::Condition::new(false, SharedIpLimit(None)),
        }
    }
}

/// The in-memory limiter of one per-address scope (a node's own fallback).
type KeyedLimiter =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

struct SharedIpInner {
    redis: Arc<RedisLimiter>,
    /// `<prefix>gcra:<scope>:`; the address follows.
    key_prefix: String,
    bucket: Bucket,
    /// Decides while Redis does not answer: the memory driver's limit, per node.
    fallback: KeyedLimiter,
    trust_hops: u32,
    reporter: Reporter,
}

impl SharedIpInner {
    async fn check(&self, ip: IpAddr) -> Decision {
        let key = format!("{}{ip}", self.key_prefix);
        if let Some(decision) = self.redis.check(&key, self.bucket, 1).await {
            return decision;
        }
        match self.fallback.check_key(&ip) {
            Ok(snapshot) => Decision {
                allowed: true,
                remaining: snapshot.remaining_burst_capacity(),
                wait: Duration::ZERO,
            },
            Err(negative) => Decision {
                allowed: false,
                remaining: 0,
                wait: negative.wait_time_from(DefaultClock::default().now()),
            },
        }
    }
}

/// The `redis` driver's per-address limit: the memory driver's key (the
/// client address behind `trust_hops` proxies), bucket, headers and refusal,
/// with the bucket in Redis. `None` only inside the memory driver's
/// disabled `Condition`, which never builds it (and would pass through).
#[derive(Clone)]
pub struct SharedIpLimit(Option<Arc<SharedIpInner>>);

impl<S, B> Transform<S, ServiceRequest> for SharedIpLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SharedIpLimitService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SharedIpLimitService {
            service: Rc::new(service),
            inner: self.0.clone(),
        }))
    }
}

pub struct SharedIpLimitService<S> {
    service: Rc<S>,
    inner: Option<Arc<SharedIpInner>>,
}

impl<S, B> Service<ServiceRequest> for SharedIpLimitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let Some(inner) = self.inner.clone() else {
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        };
        Box::pin(async move {
            let ip = client_ip(req.headers(), req.peer_addr(), inner.trust_hops)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let decision = inner.check(ip).await;
            let burst = inner.bucket.burst();
            if decision.allowed {
                let mut response = service.call(req).await?;
                // The headers actix-governor adds to what it lets through.
                let headers = response.headers_mut();
                headers.insert(
                    HeaderName::from_static("x-ratelimit-limit"),
                    HeaderValue::from(burst),
                );
                headers.insert(
                    HeaderName::from_static("x-ratelimit-remaining"),
                    HeaderValue::from(decision.remaining),
                );
                return Ok(response.map_into_left_body());
            }
            // And those it puts on its refusals, before the shared rendering.
            let wait_secs = decision.wait.as_secs();
            let mut builder = HttpResponse::TooManyRequests();
            builder
                .insert_header(("retry-after", wait_secs))
                .insert_header(("x-ratelimit-after", wait_secs))
                .insert_header(("x-ratelimit-limit", burst))
                .insert_header(("x-ratelimit-remaining", 0));
            let app = inner.reporter.app_of(&req);
            let response = inner.reporter.refuse(Some(ip), app, decision.wait, builder);
            Ok(req.into_response(response).map_into_right_body())
        })
    }
}

/// Per-app limits on publishes and reads (`max_backend_events_per_second`,
/// `max_read_requests_per_second`); apps with 0 have no limiter. With the
/// `redis` driver the budgets are Redis's, and these limiters decide only
/// while Redis does not answer.
#[derive(Default)]
pub struct AppLimiters {
    backend: HashMap<Arc<str>, Budget>,
    read: HashMap<Arc<str>, Budget>,
    /// Database apps' budgets, made on first use and again when the app's
    /// limit changes: (publishes?, app id) → (limit, budget).
    #[allow(clippy::type_complexity)]
    later: std::sync::Mutex<HashMap<(bool, Arc<str>), (u32, Arc<Budget>)>>,
    shared: Option<Arc<RedisLimiter>>,
}

struct Budget {
    local: DefaultDirectRateLimiter,
    /// The Redis key (empty with the memory driver) and bucket.
    key: Box<str>,
    bucket: Bucket,
}

impl Budget {
    fn per_second(
        n: u32,
        scope: &str,
        app_id: &str,
        shared: Option<&Arc<RedisLimiter>>,
    ) -> Option<Budget> {
        let n = NonZeroU32::new(n)?;
        Some(Budget {
            local: RateLimiter::direct(Quota::per_second(n)),
            key: shared.map_or_else(Box::default, |r| r.key(scope, app_id).into()),
            bucket: Bucket::new(n.get(), Duration::from_secs(1)),
        })
    }
}

impl AppLimiters {
    pub fn new(apps: &AppStore, shared: Option<Arc<RedisLimiter>>) -> AppLimiters {
        let mut limiters = AppLimiters::default();
        for app in &apps.all() {
            let limits = &app.limits;
            let (id, redis) = (&app.id, shared.as_ref());
            if let Some(b) = Budget::per_second(
                limits.max_backend_events_per_second,
                "backend_events",
                id,
                redis,
            ) {
                limiters.backend.insert(id.clone(), b);
            }
            if let Some(b) = Budget::per_second(
                limits.max_read_requests_per_second,
                "read_requests",
                id,
                redis,
            ) {
                limiters.read.insert(id.clone(), b);
            }
        }
        limiters.shared = shared;
        limiters
    }

    /// Take `events` publishes from the app's budget; `false` = refuse (429).
    pub async fn allow_events(&self, app: &App, events: u32) -> bool {
        match self.backend.get(&*app.id) {
            Some(budget) => self.allow(Some(budget), events).await,
            None => {
                let budget = self.later(true, app);
                self.allow(budget.as_deref(), events).await
            }
        }
    }

    /// Take one read request from the app's budget.
    pub async fn allow_read(&self, app: &App) -> bool {
        match self.read.get(&*app.id) {
            Some(budget) => self.allow(Some(budget), 1).await,
            None => {
                let budget = self.later(false, app);
                self.allow(budget.as_deref(), 1).await
            }
        }
    }

    /// The budget of an app not known at start (a database app), as its
    /// current limit says; `None` when it has none.
    fn later(&self, publishes: bool, app: &App) -> Option<Arc<Budget>> {
        let (n, scope) = if publishes {
            (app.limits.max_backend_events_per_second, "backend_events")
        } else {
            (app.limits.max_read_requests_per_second, "read_requests")
        };
        if n == 0 {
            return None;
        }
        let mut later = self.later.lock().unwrap_or_else(|e| e.into_inner());
        let key = (publishes, app.id.clone());
        if let Some((limit, budget)) = later.get(&key) {
            if *limit == n {
                return Some(budget.clone());
            }
        }
        if later.len() >= 20_000 {
            later.clear();
        }
        let budget = Arc::new(Budget::per_second(n, scope, &app.id, self.shared.as_ref())?);
        later.insert(key, (n, budget.clone()));
        Some(budget)
    }

    async fn allow(&self, budget: Option<&Budget>, n: u32) -> bool {
        let (Some(budget), Some(n)) = (budget, NonZeroU32::new(n)) else {
            return true;
        };
        if let Some(redis) = &self.shared {
            // More than the whole burst can never pass: no round trip for it.
            if n.get() > budget.bucket.burst() {
                return false;
            }
            if let Some(decision) = redis.check(&budget.key, budget.bucket, n.get()).await {
                return decision.allowed;
            }
        }
        // More than the whole burst can never pass: refuse rather than error.
        matches!(budget.local.check_n(n), Ok(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn forwarded_addresses_are_trusted_only_as_far_as_the_hops() {
        let peer: Option<SocketAddr> = Some("10.0.0.1:5555".parse().unwrap());
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4")]);
        // No trusted proxy: the header is ignored, however it looks.
        assert_eq!(client_ip(&xff, peer, 0), Some("10.0.0.1".parse().unwrap()));
        let real = headers(&[("x-real-ip", "6.6.6.6")]);
        assert_eq!(client_ip(&real, peer, 0), Some("10.0.0.1".parse().unwrap()));
        // One trusted proxy: the rightmost entry is what it saw; the spoofed
        // entry the client sent itself (left) is ignored.
        assert_eq!(client_ip(&xff, peer, 1), Some("1.2.3.4".parse().unwrap()));
        // Two hops: the second from the right.
        assert_eq!(client_ip(&xff, peer, 2), Some("6.6.6.6".parse().unwrap()));
        // More hops than entries: the first entry.
        assert_eq!(client_ip(&xff, peer, 5), Some("6.6.6.6".parse().unwrap()));
        // Repeated headers count as one list.
        let two = headers(&[
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-for", "8.8.8.8"),
        ]);
        assert_eq!(client_ip(&two, peer, 1), Some("8.8.8.8".parse().unwrap()));
        // Garbage falls back to X-Real-IP, then the peer.
        let bad = headers(&[("x-forwarded-for", "not-an-ip"), ("x-real-ip", "9.9.9.9")]);
        assert_eq!(client_ip(&bad, peer, 1), Some("9.9.9.9".parse().unwrap()));
        let bad = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(&bad, peer, 1), Some("10.0.0.1".parse().unwrap()));
        // Unix socket, no header: unknown.
        assert_eq!(client_ip(&HeaderMap::new(), None, 1), None);
    }

    #[actix_web::test]
    async fn app_limiters_allow_the_budget_and_refuse_beyond_it() {
        let mut app = switchyard_actors::app::App::new("a", "k", "s");
        app.limits.max_backend_events_per_second = 3;
        let store = AppStore::new(vec![app, switchyard_actors::app::App::new("b", "k2", "s")]);
        let limiters = AppLimiters::new(&store, None);
        let (a, b) = (store.by_id("a").unwrap(), store.by_id("b").unwrap());
        assert!(limiters.allow_events(&a, 2).await);
        assert!(limiters.allow_events(&a, 1).await);
        assert!(
            !limiters.allow_events(&a, 1).await,
            "budget of 3 per second is spent"
        );
        assert!(
            !limiters.allow_events(&a, 10).await,
            "more than the burst never passes"
        );
        assert!(limiters.allow_events(&b, 1000).await, "app without a limit");
        assert!(
            limiters.allow_read(&a).await,
            "reads are limited separately"
        );
    }
}
