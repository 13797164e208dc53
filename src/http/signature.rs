//! Verification of signed HTTP API requests (PROTOCOL.md §4.5).
//!
//! Every `/apps/{id}/…` request passes through [`authenticate`] before a
//! handler sees it: app lookup, bounded body read, `auth_key`, timestamp
//! `auth_version` (1.0 only), timestamp window, `body_md5`, then the
//! constant-time HMAC comparison.

use super::error::ApiError;
use crate::state::ServerState;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::HttpRequest;
use futures_util::StreamExt;
use log::warn;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_actors::app::App;
use switchyard_actors::auth;
use switchyard_actors::stats::AuthFailure;

/// The only `auth_version` of Pusher's HTTP API.
pub const AUTH_VERSION: &str = "1.0";

/// Requests whose `auth_timestamp` is further than this from our clock are refused.
pub const TIMESTAMP_WINDOW_SECS: i64 = 600;

/// A request that passed authentication.
pub struct Signed<'r> {
    pub app: Arc<App>,
    pub body: Bytes,
    /// Decoded query parameters, as signed; borrowed from the request unless
    /// a value needed decoding.
    pub params: Params<'r>,
}

/// Query parameters as `(key, value)` pairs in request order.
pub type Params<'r> = Vec<(Cow<'r, str>, Cow<'r, str>)>;

/// Split and decode a query string (`application/x-www-form-urlencoded`).
/// Parameters without `%` or `+` — all of a Pusher SDK's — are borrowed.
/// The separators and escapes are found with `memchr`: most of a signed
/// query is long plain values (the signature, `body_md5`).
pub fn parse_query(query: &str) -> Result<Params<'_>, ApiError> {
    // One look over the whole query: a Pusher SDK's has nothing to decode,
    // and then no key or value needs looking at again.
    let escaped = memchr::memchr2(b'%', b'+', query.as_bytes()).is_some();
    let decode = |s| {
        if escaped {
            percent_decode(s)
        } else {
            Ok(Cow::Borrowed(s))
        }
    };
    fn percent_decode(s: &str) -> Result<Cow<'_, str>, ApiError> {
        if memchr::memchr2(b'%', b'+', s.as_bytes()).is_none() {
            return Ok(Cow::Borrowed(s));
        }
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|d| Cow::Owned(d.into_owned()))
            .map_err(|_| ApiError::BadRequest("Malformed query string".into()))
    }
    let mut params = Vec::with_capacity(8);
    let mut rest = query;
    while !rest.is_empty() {
        // Split at ASCII bytes, so every piece is still a `str`.
        let (pair, next) = match memchr::memchr(b'&', rest.as_bytes()) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match memchr::memchr(b'=', pair.as_bytes()) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        params.push((decode(key)?, decode(value)?));
    }
    Ok(params)
}

/// The value of `name` exactly as sent, without decoding.
fn raw_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The query's pairs exactly as sent, without decoding.
fn raw_pairs(query: &str) -> Vec<(&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect()
}

impl Signed<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }
}

/// Read the body, refusing anything over `limit` bytes with 413 as soon as
/// the limit is crossed (the rest is never buffered). A body that arrives
/// as one chunk — a publish, usually — is that chunk, not a copy of it.
pub async fn read_body(mut payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut first: Option<Bytes> = None;
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("Could not read body: {e}")))?;
        let read = first.as_ref().map_or(0, Bytes::len) + body.len();
        if read + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "Request body is larger than {limit} bytes"
            )));
        }
        if read == 0 && first.is_none() {
            first = Some(chunk);
            continue;
        }
        if let Some(first) = first.take() {
            body.extend_from_slice(&first);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(match first {
        Some(only) => only,
        None => body.freeze(),
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Authenticate an API request for `app_id`. Failures are logged at warn
/// with the client address and reason, never the secret.
pub async fn authenticate<'r>(
    req: &'r HttpRequest,
    payload: Payload,
    state: &ServerState,
    app_id: &str,
) -> Result<Signed<'r>, ApiError> {
    let result = check(req, payload, state, app_id).await;
    if let Err(e) = &result {
        if matches!(e, ApiError::Unauthorized(_)) {
            if let Some(app) = state.apps.by_id(app_id) {
                app.stats.auth_failure(AuthFailure::Api);
            }
        }
        let event = match e {
            ApiError::Unauthorized(_) => "api_auth_failed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            _ => "api_request_rejected",
        };
        warn!(
            event = event, app_id = app_id, peer = state.client_addr(req, state.api_trust_hops).as_str(),
            method = req.method().as_str(), path = req.path(), reason:% = e;
            "API request rejected"
        );
    }
    result
}

async fn check<'r>(
    req: &'r HttpRequest,
    payload: Payload,
    state: &ServerState,
    app_id: &str,
) -> Result<Signed<'r>, ApiError> {
    let app = state
        .apps
        .find_by_id(app_id)
        .await
        .ok_or(ApiError::AppNotFound)?;
    let body = read_body(payload, state.http_body_limit).await?;
    // Under a `path_prefix` the path as sent comes first; the path without
    // the prefix is what an SDK signs whose prefix is only part of its base
    // URL (pusher-http-php's `path` signs `/apps/{id}/…`).
    let path = req.path();
    let unprefixed = match &*state.path_prefix {
        "" => None,
        prefix => path.strip_prefix(prefix),
    };
    let both;
    let paths: &[&str] = match unprefixed {
        Some(unprefixed) => {
            both = [path, unprefixed];
            &both
        }
        None => std::slice::from_ref(&path),
    };
    let params = verify_paths(
        &app,
        req.method().as_str(),
        paths,
        req.query_string(),
        &body,
        now_secs(),
    )?;
    Ok(Signed { app, body, params })
}

/// The checks of a signed request once its body is read, in order: the auth
/// parameters are present, `auth_key` is the app's, `auth_version` is 1.0,
/// the timestamp is within the window of `now`, `body_md5` matches, the
/// signature verifies, the app is enabled. Pure, so it is property-tested.
pub fn verify<'q>(
    app: &App,
    method: &str,
    path: &str,
    query: &'q str,
    body: &[u8],
    now: i64,
) -> Result<Params<'q>, ApiError> {
    verify_paths(app, method, &[path], query, body, now)
}

/// [`verify`] where the signature may cover any of `paths` (the request path
/// with and without the `path_prefix`), tried in order.
pub fn verify_paths<'q>(
    app: &App,
    method: &str,
    paths: &[&str],
    query: &'q str,
    body: &[u8],
    now: i64,
) -> Result<Params<'q>, ApiError> {
    let params = parse_query(query)?;
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| &**v);

    let (Some(key), Some(timestamp), Some(signature)) = (
        get("auth_key"),
        get("auth_timestamp"),
        get("auth_signature"),
    ) else {
        return Err(ApiError::Unauthorized(
            "Missing authentication query parameters (auth_key, auth_timestamp, auth_signature)"
                .into(),
        ));
    };
    // The Node `pusher` SDK sends the query it signed without escaping it,
    // so a key with `+` (base64) arrives decoded as a space: compare the
    // value as sent too.
    if key != app.key && raw_value(query, "auth_key") != Some(app.key.as_str()) {
        return Err(ApiError::Unauthorized(
            "auth_key does not belong to this app".into(),
        ));
    }
    // Pusher's API has one signature scheme; a request naming another (or
    // none) is not one we know how to check, however well it is signed.
    match get("auth_version") {
        Some(AUTH_VERSION) => {}
        Some(_) => {
            return Err(ApiError::Unauthorized(format!(
                "Unsupported auth_version: only {AUTH_VERSION} is accepted"
            )))
        }
        None => {
            return Err(ApiError::Unauthorized(format!(
                "Missing auth_version (must be {AUTH_VERSION})"
            )))
        }
    }
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| ApiError::Unauthorized("auth_timestamp is not a number".into()))?;
    // `abs_diff`: a timestamp near i64::MIN must not overflow the subtraction.
    if now.abs_diff(timestamp) > TIMESTAMP_WINDOW_SECS.unsigned_abs() {
        return Err(ApiError::Unauthorized(
            "Timestamp expired or too far in the future (allowed: 600 s)".into(),
        ));
    }
    match get("body_md5") {
        Some(md5) if !auth::md5_matches(body, md5) => {
            return Err(ApiError::Unauthorized(
                "body_md5 does not match the request body".into(),
            ))
        }
        None if !body.is_empty() => {
            return Err(ApiError::Unauthorized(
                "body_md5 is required for a request with a body".into(),
            ))
        }
        _ => {}
    }
    // PROTOCOL.md §4.5 signs the values unescaped. SDKs that escape the
    // query they send signed the decoded values; SDKs that send what they
    // signed as is (the Node SDK) signed the raw text. Either must verify;
    // both are HMACs under the app's secret over this exact request.
    let key = app.secret.signing_key();
    let verified = paths.iter().any(|path| {
        let to_sign = auth::api_string_to_sign(method, path, &params);
        key.verify(&[&to_sign], signature) || {
            // Only when the decoded form failed: no extra work on the hot path.
            let raw_to_sign = auth::api_string_to_sign(method, path, &raw_pairs(query));
            raw_to_sign != to_sign && key.verify(&[&raw_to_sign], signature)
        }
    });
    if !verified {
        return Err(ApiError::Unauthorized("Invalid API signature".into()));
    }
    if !app.enabled {
        return Err(ApiError::Forbidden("Application disabled".into()));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_split_and_decoded() {
        let q = parse_query("auth_key=k&info=user_count,subscription_count&filter_by_prefix=presence-&x=a%20b+c&flag").unwrap();
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(
            pairs,
            vec![
                ("auth_key", "k"),
                ("info", "user_count,subscription_count"),
                ("filter_by_prefix", "presence-"),
                ("x", "a b c"),
                ("flag", ""),
            ]
        );
        assert!(
            matches!(q[0].1, Cow::Borrowed(_)),
            "plain values are not copied"
        );
        assert!(parse_query("a=%ff").is_err(), "invalid UTF-8 is refused");
        assert!(parse_query("").unwrap().is_empty());
    }

    /// The splitting and decoding `parse_query` did with `str::split`
    /// before it looked for the separators with `memchr`.
    fn parse_query_by_split(query: &str) -> Result<Vec<(String, String)>, ()> {
        fn decode(s: &str) -> Result<String, ()> {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|d| d.into_owned())
                .map_err(|_| ())
        }
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                Ok((decode(k)?, decode(v)?))
            })
            .collect()
    }

    #[test]
    fn memchr_parsing_splits_and_decodes_as_str_split_did() {
        let queries = [
            "",
            "&",
            "&&",
            "a",
            "a=",
            "=",
            "=b",
            "a==b",
            "a=b=c",
            "a=b&",
            "&a=b",
            "a=1&&b=2&",
            "a&b=&c",
            "%41=b",
            "a=%42",
            "a%3Db=c",
            "a=b%26c",
            "a+b=c+d",
            "+=+",
            "a=%",
            "a=%zz",
            "%=x",
            "k=%ff",
            "%ff=k",
            "k=%C3%A9&x=%E2%82%AC+1",
            "é=ü&ß",
            "auth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=8240c4f8c3620c8f8787db3801c800c2&auth_signature=0600ad67",
            "auth_key=k%2Bey%2F%3D&info=a%20b&x=+&y",
        ];
        for query in queries {
            let ours = parse_query(query).map(|params| {
                params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(ours.ok(), parse_query_by_split(query).ok(), "{query:?}");
        }
        // What needs no decoding is borrowed, key and value apart.
        let q = parse_query("a%20b=c&d=e+f").unwrap();
        assert!(matches!(q[0], (Cow::Owned(_), Cow::Borrowed(_))));
        assert!(matches!(q[1], (Cow::Borrowed(_), Cow::Owned(_))));
        let q = parse_query("auth_key=k&auth_timestamp=1&auth_signature=ab").unwrap();
        assert!(q
            .iter()
            .all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_)))));
    }

    /// The body `read_body` makes of `chunks` as they arrive, under `limit`.
    async fn read_chunks(chunks: &[&'static str], limit: usize) -> Result<Bytes, ApiError> {
        use actix_web::error::PayloadError;
        use actix_web::FromRequest;
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, PayloadError>(Bytes::from_static(c.as_bytes())))
                .collect::<Vec<_>>(),
        );
        let boxed: std::pin::Pin<
            Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>,
        > = Box::pin(stream);
        let mut payload = actix_web::dev::Payload::from(boxed);
        let (req, _) = actix_web::test::TestRequest::default().to_http_parts();
        let payload = Payload::from_request(&req, &mut payload).await.unwrap();
        read_body(payload, limit).await
    }

    #[actix_web::test]
    async fn a_body_is_its_chunks_in_order_up_to_the_limit() {
        let bodies: [&[&str]; 6] = [
            &[],
            &[""],
            &["{\"a\":1}"],
            &["{\"a\"", ":1}"],
            &["", "{\"a\":1}"],
            &["{", "", "\"a\":", "1}"],
        ];
        for chunks in bodies {
            let body = read_chunks(chunks, 7).await.unwrap();
            assert_eq!(&body[..], chunks.concat().as_bytes(), "{chunks:?}");
        }
        let over: [&[&str]; 3] = [&["12345678"], &["1234", "5678"], &["1234567", "8"]];
        for chunks in over {
            let Err(ApiError::PayloadTooLarge(m)) = read_chunks(chunks, 7).await else {
                panic!("{chunks:?}: not refused");
            };
            assert_eq!(m, "Request body is larger than 7 bytes");
        }
    }

    #[test]
    fn under_a_prefix_the_full_path_or_the_path_without_it_verifies() {
        let app = App::new("id", "key", "s3cret");
        let query = "auth_key=key&auth_timestamp=1700000000&auth_version=1.0";
        let signed = |path: &str| {
            let sig = auth::sign("s3cret", &[&format!("GET\n{path}\n{query}")]);
            format!("{query}&auth_signature={sig}")
        };
        let paths = ["/ws/apps/id/channels", "/apps/id/channels"];
        let now = 1_700_000_000;
        for path in paths {
            assert!(
                verify_paths(&app, "GET", &paths, &signed(path), b"", now).is_ok(),
                "{path}"
            );
        }
        // Any other path is another request.
        let other = signed("/other/apps/id/channels");
        assert!(verify_paths(&app, "GET", &paths, &other, b"", now).is_err());
        // Without a prefix only the path as sent counts.
        let full = signed("/ws/apps/id/channels");
        assert!(verify(&app, "GET", "/apps/id/channels", &full, b"", now).is_err());
    }

    #[test]
    fn a_query_sent_as_signed_verifies_even_with_plus_signs() {
        // The Node SDK signs `auth_key=k+ey&...` and sends exactly that.
        let app = App::new("id", "k+ey/=", "s3cret");
        let raw = "auth_key=k+ey/=&auth_timestamp=1700000000&auth_version=1.0&info=a+b";
        let to_sign = format!("GET\n/apps/id/channels\n{raw}");
        let sig = auth::sign("s3cret", &[&to_sign]);
        let query = format!("{raw}&auth_signature={sig}");
        let params = verify(&app, "GET", "/apps/id/channels", &query, b"", 1_700_000_000).unwrap();
        assert!(params.iter().any(|(k, v)| k == "info" && v == "a b"));
        // ... and escaped the way other SDKs send it, signed decoded.
        let decoded = "auth_key=k+ey/=&auth_timestamp=1700000000&auth_version=1.0&info=a b";
        let sig = auth::sign("s3cret", &[&format!("GET\n/apps/id/channels\n{decoded}")]);
        let query = format!(
            "auth_key=k%2Bey%2F%3D&auth_timestamp=1700000000&auth_version=1.0&info=a%20b&auth_signature={sig}"
        );
        assert!(verify(&app, "GET", "/apps/id/channels", &query, b"", 1_700_000_000).is_ok());
        // Neither form with another secret.
        let bad = auth::sign("other", &[&to_sign]);
        let query = format!("{raw}&auth_signature={bad}");
        assert!(verify(&app, "GET", "/apps/id/channels", &query, b"", 1_700_000_000).is_err());
    }
}
