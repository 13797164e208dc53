//! Unsigned operational endpoints, shaped as Sockudo serves them.

use super::error::ApiError;
use crate::state::ServerState;
use actix_web::{web, HttpResponse};

fn health(status: actix_web::http::StatusCode, text: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("X-Health-Check", text))
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// `GET /`: a plain answer for load balancers that probe the root.
pub async fn root() -> HttpResponse {
    health(actix_web::http::StatusCode::OK, "OK")
}

/// `GET /up`: 200 once the server accepts connections.
pub async fn up() -> HttpResponse {
    health(actix_web::http::StatusCode::OK, "OK")
}

/// `GET /up/{app_id}`: 404 for an unknown app.
pub async fn up_app(path: web::Path<String>, state: web::Data<ServerState>) -> HttpResponse {
    match state.apps.by_id(&path) {
        Some(_) => health(actix_web::http::StatusCode::OK, "OK"),
        None => health(actix_web::http::StatusCode::NOT_FOUND, "NOT_FOUND"),
    }
}

/// Unmatched routes.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
