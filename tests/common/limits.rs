//! What every rate-limit test checks of a refusal, whatever the driver
//! (`memory` in tests/security_rate_limit.rs, `redis` in
//! tests/rate_limit_redis.rs): the one 429 body, `Retry-After`, and signed
//! requests that keep the response's headers.

use super::security::RawResp;
use super::{Api, Sign};
use serde_json::Value;

/// `Retry-After`, in whole seconds.
pub fn retry_after(r: &RawResp) -> u64 {
    let shown = || format!("{} {:?} {}", r.status, r.headers, r.text());
    r.header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After missing: {}", shown()))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After not whole seconds: {}", shown()))
}

/// The one 429 body: `error`, a non-empty `message`, `code`, `status`, JSON.
pub fn assert_429_body(r: &RawResp) -> Value {
    assert_eq!(r.status, 429, "expected 429: {r:?} {}", r.text());
    let v = r.json();
    assert_eq!(v["error"], "Too Many Requests", "{v}");
    assert_eq!(v["code"], "limit_exceeded", "{v}");
    assert_eq!(v["status"], 429, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message missing: {v}"
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "429 must be JSON: {r:?}"
    );
    v
}

/// A per-app refusal (backend events, reads): the same body as the
/// per-address limiter's, saying which budget was exceeded, and a
/// `Retry-After` of one second (the budgets are per second).
pub fn assert_app_429(r: &RawResp) {
    let v = assert_429_body(r);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("per second")),
        "the message names the budget: {v}"
    );
    assert_eq!(
        retry_after(r),
        1,
        "Retry-After of a per-second budget: {r:?}"
    );
}

/// A signed POST (`suffix` under `/apps/{id}`), headers kept.
pub async fn signed_post(api: &Api, suffix: &str, body: &Value) -> RawResp {
    let body = body.to_string();
    api.request_full(
        "POST",
        &api.path(suffix),
        &[],
        body.as_bytes(),
        &Sign::default(),
        &[],
    )
    .await
}

/// A signed GET (`suffix` under `/apps/{id}`), headers kept.
pub async fn signed_get(api: &Api, suffix: &str) -> RawResp {
    api.request_full("GET", &api.path(suffix), &[], b"", &Sign::default(), &[])
        .await
}
