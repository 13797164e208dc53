//! actix-web wiring: the WebSocket endpoint, the signed HTTP API and the
//! unsigned operational endpoints, all on the one public listener.

pub mod api;
pub mod cors;
pub mod error;
pub mod head;
pub mod health;
pub mod limits;
pub mod shared_limits;
pub mod signature;
pub mod upgrade;
pub mod ws;

use actix_web::web;

/// Every route of the public listener, with the per-address limits of the
/// HTTP API and of WebSocket connection attempts (of the two middlewares of
/// each, the one of the configured driver is on, the other a no-op).
///
/// `prefix` (`path_prefix`, validated: `""` or `/segment[/…]`) goes in front
/// of the WebSocket endpoint and the HTTP API; without it they answer 404.
/// The health endpoints stay at the root, where load balancers, container
/// health checks and `switchyard --health` probe the node itself.
pub fn routes(
    cfg: &mut web::ServiceConfig,
    prefix: &str,
    api_limit: &limits::IpLimit,
    ws_limit: &limits::IpLimit,
    cors: &crate::config::CorsConfig,
) {
    // The HTTP API first: routes are tried in order, each dynamic one a
    // regex match, and publishes are the requests to answer cheaply. No
    // path matches both this scope (`…/apps/`) and the WebSocket endpoint
    // (`…/app/`), so the order changes nothing else.
    cfg.service(
        web::scope(&format!("{prefix}/apps/{{app_id}}"))
            // CORS outermost: preflights are answered before the rate limit,
            // and refusals (429, 401) still carry CORS headers browsers need.
            .wrap(api_limit.middleware())
            .wrap(api_limit.shared_middleware())
            .wrap(cors::middleware(cors))
            .route("/events", web::post().to(api::trigger))
            .route("/batch_events", web::post().to(api::trigger_batch))
            .route("/channels", web::get().to(api::channels))
            .route("/channels/{channel_name}", web::get().to(api::channel))
            .route(
                "/channels/{channel_name}/users",
                web::get().to(api::channel_users),
            )
            .route(
                "/users/{user_id}/terminate_connections",
                web::post().to(api::terminate_user),
            )
            .route(
                "/users/{user_id}/force_reconnect",
                web::post().to(api::force_reconnect),
            ),
    )
    .service(
        // `{key:.+}`: a key made by `openssl rand -base64` may contain `/`,
        // and pusher-js puts the key in the path unencoded.
        web::resource(format!("{prefix}/app/{{key:.+}}"))
            .wrap(ws_limit.middleware())
            .wrap(ws_limit.shared_middleware())
            .route(web::get().to(ws::connect)),
    )
    .route("/", web::get().to(health::root))
    .route("/up", web::get().to(health::up))
    .route("/live", web::get().to(health::live))
    .route("/up/{app_id}", web::get().to(health::up_app))
    .route("/usage", web::get().to(health::usage))
    .default_service(web::to(health::not_found));
}
