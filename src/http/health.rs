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

/// 503 `REDIS_UNAVAILABLE` while this node is one of a cluster
/// (`ADAPTER_DRIVER=redis`) and cut off from Redis: it serves its own
/// clients, but they miss what the other nodes publish.
fn cluster_down(state: &ServerState) -> Option<HttpResponse> {
    let down = state.cluster.as_ref().is_some_and(|c| !c.connected());
    down.then(|| {
        health(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "REDIS_UNAVAILABLE",
        )
    })
}

/// `GET /up`: 200 once the server accepts connections (and, in a cluster,
/// while it reaches Redis).
pub async fn up(state: web::Data<ServerState>) -> HttpResponse {
    cluster_down(&state).unwrap_or_else(|| health(actix_web::http::StatusCode::OK, "OK"))
}

/// `GET /live`: liveness — the process answers HTTP. Unlike `/up` it says
/// nothing about apps, so an orchestrator restarts only a hung process.
pub async fn live() -> HttpResponse {
    health(actix_web::http::StatusCode::OK, "OK")
}

/// `GET /up/{app_id}`: 404 for an unknown app, 503 `APP_DISABLED` for a
/// disabled one (its clients are refused, so it is not up), and
/// `REDIS_UNAVAILABLE` as for `/up`.
pub async fn up_app(path: web::Path<String>, state: web::Data<ServerState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    match state.apps.find_by_id(&path).await {
        Some(app) if app.enabled => {
            cluster_down(&state).unwrap_or_else(|| health(StatusCode::OK, "OK"))
        }
        Some(_) => health(StatusCode::SERVICE_UNAVAILABLE, "APP_DISABLED"),
        None => health(StatusCode::NOT_FOUND, "NOT_FOUND"),
    }
}

/// Unmatched routes: a JSON 404, or — for a WebSocket upgrade — the
/// protocol's answer, `pusher:error` 4005 and a close with 4005.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    let upgrade = req
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        let error = switchyard_actors::error::PusherError::PathNotFound;
        let conn = req
            .conn_data::<switchyard_actors::closing::Conn>()
            .copied()
            .unwrap_or_default();
        let rejected = switchyard_actors::session::Rejected::new(error, conn);
        let max_frame = switchyard_actors::defaults::WEBSOCKET_MAX_PAYLOAD_KB as usize * 1024;
        return super::ws::take_over(&req, move |inbound| {
            rejected.into_stream(inbound, max_frame).into()
        });
    }
    Err(ApiError::NotFound.into())
}

/// Bytes from a `/proc/meminfo` line such as `MemTotal:  16316412 kB`.
fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn process_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    meminfo_bytes(&status, "VmRSS:")
}

/// `GET /usage`: machine memory (Sockudo's shape), this process's RSS and
/// the live connections per app. 404 when `HTTP_API_USAGE_ENABLED=false`.
pub async fn usage(state: web::Data<ServerState>) -> Result<HttpResponse, ApiError> {
    if !state.usage_enabled {
        return Err(ApiError::NotFound);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo_bytes(&meminfo, "MemTotal:").unwrap_or(0);
    let free = meminfo_bytes(&meminfo, "MemAvailable:").unwrap_or(0);
    let used = total.saturating_sub(free);
    let percent = if total > 0 {
        used as f64 * 100.0 / total as f64
    } else {
        0.0
    };
    let apps: serde_json::Map<String, serde_json::Value> = state
        .apps
        .all()
        .iter()
        .map(|app| (app.id.to_string(), app.connection_count().into()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "memory": { "free": free, "used": used, "total": total, "percent": percent },
        "process": { "rss": process_rss().unwrap_or(0) },
        "connections": state.connections.count(),
        "apps": apps,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_values_are_read_in_bytes() {
        let text =
            "MemTotal:       16316412 kB\nMemFree:         1000 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal:"), Some(16316412 * 1024));
        assert_eq!(meminfo_bytes(text, "MemAvailable:"), Some(2048 * 1024));
        assert_eq!(meminfo_bytes(text, "Nope:"), None);
        assert!(process_rss().unwrap() > 0);
    }
}
