//! CORS for the HTTP API (actix-cors), from `CORS_ORIGINS`, `CORS_METHODS`,
//! `CORS_HEADERS` and `CORS_CREDENTIALS`. Origins use the same patterns as an
//! app's `allowed_origins` (see [`switchyard_actors::origin`]).

use crate::config::CorsConfig;
use actix_cors::Cors;
use actix_web::http::header::HeaderName;
use actix_web::http::Method;
use switchyard_actors::origin;

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
            origin.to_str().is_ok_and(|o| origin::allowed(&patterns, o))
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

#[cfg(test)]
mod tests {
    //! The middleware built from a `CorsConfig`, driven in process with
    //! actix-web's test service (no socket). tests/security_cors.rs checks
    //! the same over the real binary, through the environment variables.

    use super::*;
    use crate::http::error::ApiError;
    use actix_web::http::header::HeaderMap;
    use actix_web::http::StatusCode;
    use actix_web::test::{call_service, init_service, TestRequest};
    use actix_web::{web, HttpResponse};

    const APP: &str = "https://app.example.com";

    fn config(origins: &[&str], credentials: Option<bool>) -> CorsConfig {
        CorsConfig {
            origin: origins.iter().map(|s| s.parse().unwrap()).collect(),
            credentials,
            ..CorsConfig::default()
        }
    }

    /// Send `req` through the middleware in front of `/apps/1/events` (200)
    /// and `/apps/1/refused` (a 401 `ApiError`).
    async fn send(config: &CorsConfig, req: TestRequest) -> (StatusCode, HeaderMap) {
        let app = init_service(
            actix_web::App::new()
                .wrap(middleware(config))
                .route("/apps/1/events", web::post().to(HttpResponse::Ok))
                .route(
                    "/apps/1/refused",
                    web::post().to(|| async {
                        Err::<HttpResponse, _>(ApiError::Unauthorized(
                            "Invalid API signature".into(),
                        ))
                    }),
                ),
        )
        .await;
        let res = call_service(&app, req.to_request()).await;
        (res.status(), res.headers().clone())
    }

    fn preflight(origin: &str, method: &str, headers: Option<&str>) -> TestRequest {
        let mut req = TestRequest::default()
            .method(Method::OPTIONS)
            .uri("/apps/1/events")
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", method));
        if let Some(list) = headers {
            req = req.insert_header(("Access-Control-Request-Headers", list));
        }
        req
    }

    fn post(path: &str, origin: Option<&str>) -> TestRequest {
        let req = TestRequest::post().uri(path);
        match origin {
            Some(o) => req.insert_header(("Origin", o)),
            None => req,
        }
    }

    fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    /// A comma-separated header as a sorted lowercase list.
    fn list(h: &HeaderMap, name: &str) -> Vec<String> {
        let mut items: Vec<String> = header(h, name)
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        items.sort();
        items
    }

    #[test]
    fn validate_refuses_what_is_not_a_method_or_a_header_name() {
        assert_eq!(validate(&CorsConfig::default()), Ok(()));
        let ok = CorsConfig {
            methods: vec!["GET".into(), " post ".into()],
            allowed_headers: vec![" Content-Type ".into(), "X-Custom".into()],
            ..CorsConfig::default()
        };
        assert_eq!(validate(&ok), Ok(()));
        for bad in ["GE T", "", "GET,POST"] {
            let c = CorsConfig {
                methods: vec!["GET".into(), bad.into()],
                ..CorsConfig::default()
            };
            let e = validate(&c).unwrap_err();
            assert!(
                e.contains("CORS_METHODS") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
        for bad in ["Content Type", "", "X-Ü"] {
            let c = CorsConfig {
                allowed_headers: vec![bad.into()],
                ..CorsConfig::default()
            };
            let e = validate(&c).unwrap_err();
            assert!(
                e.contains("CORS_HEADERS") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[actix_web::test]
    async fn an_origin_list_allows_its_origins_with_credentials() {
        let c = config(&[APP, "*.trusted.test"], None);
        for origin in [APP, "http://a.trusted.test", "https://trusted.test"] {
            let (status, h) = send(&c, preflight(origin, "POST", Some("content-type"))).await;
            assert_eq!(status, StatusCode::OK, "{origin}");
            assert_eq!(header(&h, "access-control-allow-origin"), Some(origin));
            assert_eq!(
                header(&h, "access-control-allow-credentials"),
                Some("true"),
                "a list and credentials not configured: allowed"
            );
            assert_eq!(header(&h, "access-control-max-age"), Some("3600"));
            assert!(list(&h, "access-control-allow-methods").contains(&"post".into()));
            assert!(list(&h, "access-control-allow-headers").contains(&"content-type".into()));
        }
        for evil in [
            "https://evil.example",
            "http://app.example.com",
            "https://app.example.com.evil.io",
            "https://trusted.test.evil.io",
        ] {
            let (status, h) = send(&c, preflight(evil, "POST", None)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{evil}");
            assert_eq!(header(&h, "access-control-allow-origin"), None, "{evil}");
            assert_eq!(header(&h, "access-control-allow-credentials"), None);
        }

        // Actual requests: headers for a listed origin only; the request
        // itself is served either way (CORS is the browser's check).
        let (status, h) = send(&c, post("/apps/1/events", Some(APP))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        let (status, h) = send(&c, post("/apps/1/events", Some("https://evil.example"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "access-control-allow-origin"), None);
        let (status, h) = send(&c, post("/apps/1/events", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "access-control-allow-origin"), None);
    }

    #[actix_web::test]
    async fn credentials_can_be_turned_off_for_a_list() {
        let c = config(&[APP], Some(false));
        let (status, h) = send(&c, preflight(APP, "POST", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
        assert_eq!(header(&h, "access-control-allow-credentials"), None);
        let (_, h) = send(&c, post("/apps/1/events", Some(APP))).await;
        assert_eq!(header(&h, "access-control-allow-credentials"), None);

        let c = config(&[APP], Some(true));
        let (_, h) = send(&c, preflight(APP, "POST", None)).await;
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    }

    #[actix_web::test]
    async fn a_wildcard_echoes_any_origin_and_never_allows_credentials() {
        let origin = "https://anyone.example";
        for origins in [&["*"][..], &[" * "], &["any"], &["ANY"], &[APP, "*"]] {
            for credentials in [None, Some(true), Some(false)] {
                let c = config(origins, credentials);
                let (status, h) = send(&c, preflight(origin, "POST", Some("content-type"))).await;
                assert_eq!(status, StatusCode::OK, "{origins:?}");
                assert_eq!(
                    header(&h, "access-control-allow-origin"),
                    Some(origin),
                    "the origin is echoed, not `*`"
                );
                assert_eq!(
                    header(&h, "access-control-allow-credentials"),
                    None,
                    "{origins:?} with credentials {credentials:?}"
                );
                let (_, h) = send(&c, post("/apps/1/events", Some(origin))).await;
                assert_eq!(header(&h, "access-control-allow-origin"), Some(origin));
                assert_eq!(header(&h, "access-control-allow-credentials"), None);
            }
        }
    }

    #[actix_web::test]
    async fn preflights_are_checked_against_the_methods_and_headers_lists() {
        let c = CorsConfig {
            methods: vec!["get".into(), " Post ".into(), "NOT A METHOD".into()],
            allowed_headers: vec![" Content-Type ".into(), "X-Requested-With".into()],
            ..config(&[APP], None)
        };
        let (status, h) = send(&c, preflight(APP, "GET", Some("x-requested-with"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            list(&h, "access-control-allow-methods"),
            ["get", "post"],
            "names are trimmed and upper-cased; an unusable one is left out"
        );
        assert_eq!(
            list(&h, "access-control-allow-headers"),
            ["content-type", "x-requested-with"]
        );
        let (status, _) = send(&c, preflight(APP, "POST", Some("content-type"))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(&c, preflight(APP, "DELETE", None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "DELETE is not listed");
        let (status, _) = send(&c, preflight(APP, "POST", Some("x-other"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "X-Other is not listed");
    }

    #[actix_web::test]
    async fn refusals_carry_cors_headers_too() {
        // A browser can only read the 401 if it carries the CORS headers.
        let c = config(&[APP], None);
        let (status, h) = send(&c, post("/apps/1/refused", Some(APP))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    }
}
