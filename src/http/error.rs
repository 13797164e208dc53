//! HTTP API errors, mapped to a status and a JSON body in one place.
//!
//! The body is Sockudo's shape, `{"error": "...", "code": "...", "status": N}`;
//! Pusher server SDKs only look at the status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
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
        let message = self.to_string();
        let mut resp = HttpResponse::build(status);
        if matches!(self, ApiError::TooManyRequests(_)) {
            resp.insert_header(("Retry-After", "1"));
        }
        resp.json(Body {
            error: &message,
            code: self.code(),
            status: status.as_u16(),
        })
    }
}
