//! HTTP API errors, mapped to a status and a JSON body in one place.
//!
//! The body is Sockudo's shape, `{"error": "...", "code": "...", "status": N}`;
//! Pusher server SDKs only look at the status. Every 429 — the per-address
//! limiter's and the per-app budgets' — has one shape of its own (see
//! [`too_many_requests`]).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("App not found")]
    AppNotFound,
    #[error("Not found")]
    NotFound,
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Request line and header fields over `HTTP_MAX_HEADER_SIZE_KB` (431).
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_input",
            ApiError::Unauthorized(_) => "auth_failed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::AppNotFound => "app_not_found",
            ApiError::NotFound => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::TooManyRequests(_) => "limit_exceeded",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    code: &'a str,
    status: u16,
}

/// The body of every 429: the rate limiter's documented body (CONFIG.md,
/// `error` + `message`) with the API's `code` and `status`, so a client
/// handles the per-address limit and an app's budget the same way.
#[derive(Serialize)]
struct TooManyRequestsBody<'a> {
    error: &'static str,
    message: &'a str,
    code: &'static str,
    status: u16,
}

/// A 429 with `Retry-After` (whole seconds, at least 1) and the one body.
/// `response` may already carry headers (the limiter's `X-RateLimit-*`).
pub fn too_many_requests(
    mut response: HttpResponseBuilder,
    message: &str,
    retry_after_secs: u64,
) -> HttpResponse {
    response
        .status(StatusCode::TOO_MANY_REQUESTS)
        .insert_header(("Retry-After", retry_after_secs.max(1).to_string()))
        .json(TooManyRequestsBody {
            error: "Too Many Requests",
            message,
            code: "limit_exceeded",
            status: 429,
        })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::AppNotFound | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::TooManyRequests(message) = self {
            // The per-app budgets are per second.
            return too_many_requests(HttpResponse::build(status), message, 1);
        }
        let message = self.to_string();
        HttpResponse::build(status).json(Body {
            error: &message,
            code: self.code(),
            status: status.as_u16(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use serde_json::{json, Value};

    /// One of each variant. The match has no wildcard arm, so a new variant
    /// does not compile until it is added here (and to the table below).
    fn every_variant() -> Vec<ApiError> {
        let all = vec![
            ApiError::BadRequest("Event must have a 'name'".into()),
            ApiError::Unauthorized("Invalid API signature".into()),
            ApiError::Forbidden("App is disabled".into()),
            ApiError::AppNotFound,
            ApiError::NotFound,
            ApiError::PayloadTooLarge("Event data is larger than 100 KB".into()),
            ApiError::HeadersTooLarge("Request headers are larger than 8 KB".into()),
            ApiError::TooManyRequests("Backend event rate limit exceeded".into()),
            ApiError::Unavailable("Channel registry unavailable".into()),
        ];
        for e in &all {
            match e {
                ApiError::BadRequest(_)
                | ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::AppNotFound
                | ApiError::NotFound
                | ApiError::PayloadTooLarge(_)
                | ApiError::HeadersTooLarge(_)
                | ApiError::TooManyRequests(_)
                | ApiError::Unavailable(_) => {}
            }
        }
        all
    }

    /// (status, code, message) expected of each variant, in the same order.
    const TABLE: [(u16, &str, &str); 9] = [
        (400, "invalid_input", "Event must have a 'name'"),
        (401, "auth_failed", "Invalid API signature"),
        (403, "forbidden", "App is disabled"),
        (404, "app_not_found", "App not found"),
        (404, "not_found", "Not found"),
        (413, "payload_too_large", "Event data is larger than 100 KB"),
        (
            431,
            "headers_too_large",
            "Request headers are larger than 8 KB",
        ),
        (429, "limit_exceeded", "Backend event rate limit exceeded"),
        (503, "unavailable", "Channel registry unavailable"),
    ];

    #[actix_web::test]
    async fn every_variant_has_its_status_code_and_json_body() {
        for (e, (status, code, message)) in every_variant().into_iter().zip(TABLE) {
            assert_eq!(e.status_code().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code, "{e:?}");
            let resp = e.error_response();
            assert_eq!(resp.status().as_u16(), status, "{e:?}");
            assert_eq!(
                resp.headers().get("content-type").unwrap(),
                "application/json",
                "{e:?}"
            );
            let body = to_bytes(resp.into_body()).await.unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            let expected = if status == 429 {
                // The one 429 shape, shared with the per-address limiter.
                json!({"error": "Too Many Requests", "message": message, "code": code, "status": status})
            } else {
                // Exactly these three fields, Sockudo's shape.
                json!({"error": message, "code": code, "status": status})
            };
            assert_eq!(body, expected, "{e:?}");
        }
    }

    #[test]
    fn retry_after_only_on_429() {
        for e in every_variant() {
            let resp = e.error_response();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap());
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(retry, Some("1"), "{e:?}");
            } else {
                assert_eq!(retry, None, "{e:?}");
            }
        }
    }

    #[actix_web::test]
    async fn messages_are_escaped_into_the_json_string() {
        let message = "Invalid channel 'a\"b\\c\n': \u{7f} caf\u{e9}";
        let resp = ApiError::BadRequest(message.into()).error_response();
        let body: Value = serde_json::from_slice(&to_bytes(resp.into_body()).await.unwrap())
            .expect("still valid JSON");
        assert_eq!(body["error"], message);
    }
}
