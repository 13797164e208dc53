//! `GET /app/{key}`: admission checks, then the WebSocket upgrade.
//!
//! A refused connection is still upgraded so the client can read why: it gets
//! a `pusher:error` with the code and a close frame with the same code, which
//! is what pusher-js acts on (4000–4099: do not reconnect).

use super::upgrade::Upgradable;
use crate::state::ServerState;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use log::warn;
use std::sync::Arc;
use switchyard_actors::app::{App, ConnectionSlot};
use switchyard_actors::closing::Conn;
use switchyard_actors::connection::{Inbound, Outbound, Takeover};
use switchyard_actors::error::PusherError;
use switchyard_actors::frame_limit::FrameLimit;
use switchyard_actors::protocol::{truncate, MAX_PROTOCOL, MIN_PROTOCOL};
use switchyard_actors::session::{Rejected, Session};

/// Check the `protocol` query parameter.
fn check_protocol(query: &str) -> Result<(), PusherError> {
    let protocol = form_value(query, "protocol").ok_or(PusherError::NoProtocol)?;
    match protocol.parse::<u32>() {
        Ok(v) if (MIN_PROTOCOL..=MAX_PROTOCOL).contains(&v) => Ok(()),
        _ => Err(PusherError::UnsupportedProtocol(protocol)),
    }
}

fn form_value(query: &str, name: &str) -> Option<String> {
    super::signature::parse_query(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Everything a connection must pass, in order: app, enabled, protocol,
/// origin, app quota (4004), server capacity (4100).
fn admit(
    state: &ServerState,
    app: Option<Arc<App>>,
    req: &HttpRequest,
) -> Result<(Arc<App>, Vec<ConnectionSlot>), PusherError> {
    let app = app.ok_or(PusherError::AppNotFound)?;
    if !app.enabled {
        return Err(PusherError::AppDisabled);
    }
    check_protocol(req.query_string())?;
    let origin = req
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !switchyard_actors::origin::allowed(&app.allowed_origins, origin) {
        return Err(PusherError::OriginNotAllowed);
    }
    let app_slot = app.try_connect().ok_or(PusherError::OverQuota)?;
    let server_slot = state
        .connections
        .try_acquire(state.max_connections)
        .ok_or(PusherError::OverCapacity)?;
    Ok((app, vec![app_slot, server_slot]))
}

/// The handshake's `101 Switching Protocols`, carrying what runs the socket
/// once the server hands it over (see `super::upgrade`).
pub(crate) fn take_over(
    req: &HttpRequest,
    start: impl FnOnce(Inbound) -> Outbound + 'static,
) -> Result<HttpResponse, actix_web::Error> {
    if req.extensions().get::<Upgradable>().is_none() {
        return Err(actix_web::error::ErrorBadRequest(
            "WebSocket handshake without a connection to upgrade",
        ));
    }
    let mut res = ws::handshake(req)?.finish();
    res.extensions_mut().insert(Takeover::new(start));
    Ok(res)
}

pub async fn connect(
    req: HttpRequest,
    key: web::Path<String>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, actix_web::Error> {
    let peer = state.client_addr(&req, state.ws_trust_hops);
    let max_frame = state.session.max_message_bytes;
    // The socket under this request, recorded at accept: the session closes
    // it itself once the closing handshake is done.
    let conn = req.conn_data::<Conn>().copied().unwrap_or_default();
    let found = state.apps.find_by_key(&key).await;
    match admit(&state, found, &req) {
        Ok((app, slots)) => {
            let session = Session::new(
                app,
                slots,
                state.session.clone(),
                state.registry.clone(),
                peer,
                conn,
            );
            // The codec checks `frame_size` only once a frame is buffered
            // whole; FrameLimit refuses it on its header.
            take_over(&req, move |inbound| {
                session
                    .into_stream(FrameLimit::new(inbound, max_frame), max_frame)
                    .into()
            })
        }
        Err(error) => {
            let app = state.apps.by_key(&key);
            if let Some(kind) = error.connection_error() {
                match &app {
                    Some(app) => app.stats.connection_error(kind),
                    None => state.stats.connection_error(kind),
                }
            }
            let origin = req
                .headers()
                .get(actix_web::http::header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            warn!(
                event = "connection_refused", app_key = truncate(&key, 64),
                app_id = app.as_ref().map_or("", |a| a.id.as_ref()),
                peer = peer.as_str(), origin = truncate(origin, 200),
                code = error.code(), reason:% = error;
                "connection refused"
            );
            let rejected = Rejected::new(error, conn);
            take_over(&req, move |inbound| {
                rejected.into_stream(inbound, max_frame).into()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert_eq!(check_protocol("protocol=7&client=js"), Ok(()));
        assert_eq!(check_protocol("client=js&protocol=5"), Ok(()));
        assert_eq!(check_protocol("client=js"), Err(PusherError::NoProtocol));
        assert_eq!(
            check_protocol("protocol=8"),
            Err(PusherError::UnsupportedProtocol("8".into()))
        );
        assert_eq!(
            check_protocol("protocol=4"),
            Err(PusherError::UnsupportedProtocol("4".into()))
        );
        assert_eq!(
            check_protocol("protocol=seven"),
            Err(PusherError::UnsupportedProtocol("seven".into()))
        );
    }
}
