//! Rate limits: per client address on the HTTP API and on WebSocket
//! connection attempts (actix-governor), and per app on publishes and reads.
//!
//! Limits are token buckets (GCRA): `max_requests` per `window_seconds` means a
//! burst of `max_requests`, refilled evenly over the window — never more than
//! `max_requests` in any window, and no thundering herd at a window boundary.

use crate::apps::AppStore;
use crate::http::error::too_many_requests;
use actix_governor::{
    GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderMap, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use governor::clock::{Clock, DefaultClock, QuantaInstant};
use governor::{DefaultDirectRateLimiter, NotUntil, Quota, RateLimiter};
use log::warn;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
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

/// actix-governor key: the client address as [`client_ip`] finds it.
/// Unix-socket clients without a forwarded address share one bucket.
#[derive(Clone)]
pub struct ClientKey {
    trust_hops: u32,
    scope: RateLimit,
    stats: Arc<Stats>,
    apps: Arc<AppStore>,
    limit: (u32, u64),
}

impl KeyExtractor for ClientKey {
    type Key = IpAddr;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<IpAddr, Self::KeyExtractionError> {
        let ip = client_ip(req.headers(), req.peer_addr(), self.trust_hops)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        LAST_KEY.with(|k| k.set(Some(ip)));
        // `/apps/{app_id}/…` names the app by id, `/app/{key}` by key.
        let info = req.match_info();
        let app = match (info.get("app_id"), info.get("key")) {
            (Some(id), _) => self.apps.by_id(id),
            (None, Some(key)) => self.apps.by_key(key),
            _ => None,
        };
        LAST_APP.with(|a| *a.borrow_mut() = app);
        Ok(ip)
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        response: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now());
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let client = LAST_KEY.with(|k| k.get());
        let app = LAST_APP.with(|a| a.borrow_mut().take());
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

/// The middleware configuration of one per-address limit.
pub type IpLimitConfig =
    GovernorConfig<ClientKey, actix_governor::governor::middleware::StateInformationMiddleware>;

/// A per-address limit and whether it is on. An off limit still has a (unused)
/// configuration so the middleware stack has one type either way.
#[derive(Clone)]
pub struct IpLimit {
    pub enabled: bool,
    pub config: IpLimitConfig,
}

impl IpLimit {
    /// `max_requests` per `window_seconds` per client address; a limit of 0 is off.
    pub fn new(
        enabled: bool,
        max_requests: u32,
        window_seconds: u64,
        trust_hops: u32,
        scope: RateLimit,
        stats: Arc<Stats>,
        apps: Arc<AppStore>,
    ) -> IpLimit {
        let enabled = enabled && max_requests > 0 && window_seconds > 0;
        let max_requests = max_requests.max(1);
        let period = Duration::from_secs(window_seconds.max(1)) / max_requests;
        let config = GovernorConfigBuilder::default()
            .period(period.max(Duration::from_nanos(1)))
            .burst_size(max_requests)
            .key_extractor(ClientKey {
                trust_hops,
                scope,
                stats,
                apps,
                limit: (max_requests, window_seconds),
            })
            .use_headers()
            .finish()
            .expect("period and burst are non-zero");
        IpLimit { enabled, config }
    }

    /// The middleware (a no-op when the limit is off).
    pub fn middleware(
        &self,
    ) -> actix_web::middleware::Condition<
        actix_governor::Governor<
            ClientKey,
            actix_governor::governor::middleware::StateInformationMiddleware,
        >,
    > {
        actix_web::middleware::Condition::new(
            self.enabled,
            actix_governor::Governor::new(&self.config),
        )
    }
}

/// Per-app limits on publishes and reads (`max_backend_events_per_second`,
/// `max_read_requests_per_second`); apps with 0 have no limiter.
#[derive(Default)]
pub struct AppLimiters {
    backend: HashMap<Arc<str>, DefaultDirectRateLimiter>,
    read: HashMap<Arc<str>, DefaultDirectRateLimiter>,
}

fn per_second(n: u32) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(n).map(|n| RateLimiter::direct(Quota::per_second(n)))
}

impl AppLimiters {
    pub fn new(apps: &AppStore) -> AppLimiters {
        let mut limiters = AppLimiters::default();
        for app in apps.all() {
            if let Some(l) = per_second(app.limits.max_backend_events_per_second) {
                limiters.backend.insert(app.id.clone(), l);
            }
            if let Some(l) = per_second(app.limits.max_read_requests_per_second) {
                limiters.read.insert(app.id.clone(), l);
            }
        }
        limiters
    }

    /// Take `events` publishes from the app's budget; `false` = refuse (429).
    pub fn allow_events(&self, app_id: &str, events: u32) -> bool {
        allow(self.backend.get(app_id), events)
    }

    /// Take one read request from the app's budget.
    pub fn allow_read(&self, app_id: &str) -> bool {
        allow(self.read.get(app_id), 1)
    }
}

fn allow(limiter: Option<&DefaultDirectRateLimiter>, n: u32) -> bool {
    let (Some(limiter), Some(n)) = (limiter, NonZeroU32::new(n)) else {
        return true;
    };
    // More than the whole burst can never pass: refuse rather than error.
    matches!(limiter.check_n(n), Ok(Ok(())))
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

    #[test]
    fn app_limiters_allow_the_budget_and_refuse_beyond_it() {
        let mut app = switchyard_actors::app::App::new("a", "k", "s");
        app.limits.max_backend_events_per_second = 3;
        let store = AppStore::new(vec![app, switchyard_actors::app::App::new("b", "k2", "s")]);
        let limiters = AppLimiters::new(&store);
        assert!(limiters.allow_events("a", 2));
        assert!(limiters.allow_events("a", 1));
        assert!(
            !limiters.allow_events("a", 1),
            "budget of 3 per second is spent"
        );
        assert!(
            !limiters.allow_events("a", 10),
            "more than the burst never passes"
        );
        assert!(limiters.allow_events("b", 1000), "app without a limit");
        assert!(limiters.allow_read("a"), "reads are limited separately");
    }
}
