//! CORS for the HTTP API (actix-cors), from `CORS_ORIGINS`, `CORS_METHODS`,
//! `CORS_HEADERS` and `CORS_CREDENTIALS`. Origins use the same patterns as an
//! app's `allowed_origins` (see [`crate::origin`]).

use crate::config::CorsConfig;
use actix_cors::Cors;
use actix_web::http::header::HeaderName;
use actix_web::http::Method;

/// Check the lists once at start-up so a typo stops the server with a clear
/// message instead of failing inside the middleware.
pub fn validate(config: &CorsConfig) -> Result<(), String> {
    for m in &config.methods {
        Method::from_bytes(m.trim().as_bytes())
            .map_err(|_| format!("CORS_METHODS / cors.methods: {m:?} is not an HTTP method"))?;
    }
    for h in &config.allowed_headers {
        HeaderName::from_bytes(h.trim().as_bytes()).map_err(|_| {
            format!("CORS_HEADERS / cors.allowed_headers: {h:?} is not a header name")
        })?;
    }
    Ok(())
}

/// The middleware; build it per worker.
pub fn middleware(config: &CorsConfig) -> Cors {
    let mut cors = if config.any_origin() {
        Cors::default().allow_any_origin()
    } else {
        let patterns = config.origin.clone();
        Cors::default().allowed_origin_fn(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|o| crate::origin::allowed(&patterns, o))
        })
    };
    cors = cors
        .allowed_methods(
            config
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok()),
        )
        .allowed_headers(config.allowed_headers.iter().map(|h| h.trim().to_string()))
        .max_age(3600);
    if config.allows_credentials() {
        cors = cors.supports_credentials();
    }
    cors
}
