//! The Pusher HTTP API: publish events and query channels and users.
//!
//! Handlers validate everything before publishing anything and hand each
//! channel's event to the registry, which serialises its frame once.

use super::error::ApiError;
use super::signature::{authenticate, Signed};
use crate::state::ServerState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use switchyard_actors::app::App;
use switchyard_actors::command;
use switchyard_actors::protocol::{truncate, validate_channel_name, ChannelKind};
use switchyard_actors::registry::{ChannelInfo, ChannelStats, Publish, RegistryError, UserClose};
use switchyard_actors::socket::SocketId;
use switchyard_actors::stats::{self, RateLimit};

/// `200 {}`, Pusher's answer to a publish, without building a JSON value.
fn empty_ok() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body("{}")
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// Which attributes an `info` parameter asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct InfoFlags {
    user_count: bool,
    subscription_count: bool,
    cache: bool,
}

impl InfoFlags {
    fn parse(info: Option<&str>) -> InfoFlags {
        let mut flags = InfoFlags::default();
        for attr in info.unwrap_or("").split(',').map(str::trim) {
            match attr {
                "user_count" => flags.user_count = true,
                "subscription_count" => flags.subscription_count = true,
                "cache" => flags.cache = true,
                _ => {}
            }
        }
        flags
    }

    fn any(self) -> bool {
        self.user_count || self.subscription_count || self.cache
    }
}

/// One event of `/events` or `/batch_events` as the caller sent it.
#[derive(Deserialize)]
struct EventBody {
    name: Option<String>,
    data: Option<Box<RawValue>>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// An event that passed validation.
#[derive(Debug)]
struct Event {
    name: String,
    /// A JSON string token, relayed into the frame as it is.
    data: Box<RawValue>,
    channels: Vec<String>,
    except: Option<SocketId>,
    info: InfoFlags,
}

fn validate_event(app: &App, body: EventBody) -> Result<Event, ApiError> {
    let limits = &app.limits;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("Event must have a 'name'".into()))?;
    if name.len() > limits.max_event_name_length {
        return Err(ApiError::BadRequest(format!(
            "Event name is longer than {} characters",
            limits.max_event_name_length
        )));
    }
    let raw = body
        .data
        .ok_or_else(|| ApiError::BadRequest("Event must have 'data'".into()))?;
    // `data` is a string by the protocol, relayed byte for byte as the
    // backend encoded it (no unescape/escape round trip); any other JSON
    // value is relayed as its text, in a string.
    let limit = limits.max_event_payload_bytes;
    let (data, len) = if raw.get().starts_with('"') {
        // Unescaping never lengthens a string, so the token's length bounds
        // the data's; decode only when the bound is over the limit.
        let bound = raw.get().len() - 2;
        let len = if bound <= limit {
            bound
        } else {
            serde_json::from_str::<std::borrow::Cow<'_, str>>(raw.get()).map_or(bound, |s| s.len())
        };
        (raw, len)
    } else {
        let len = raw.get().len();
        let quoted = serde_json::to_string(raw.get())
            .ok()
            .and_then(|q| RawValue::from_string(q).ok())
            .ok_or_else(|| ApiError::BadRequest("Event 'data' could not be encoded".into()))?;
        (quoted, len)
    };
    if len > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "Event data is larger than {} KB",
            limits.max_event_payload_bytes / 1024
        )));
    }
    let channels = match (body.channels, body.channel) {
        (Some(list), _) if !list.is_empty() => list,
        (_, Some(one)) => vec![one],
        _ => {
            return Err(ApiError::BadRequest(
                "Request must contain 'channels' (list) or 'channel' (string)".into(),
            ))
        }
    };
    if channels.len() > limits.max_event_channels_at_once {
        return Err(ApiError::BadRequest(format!(
            "An event can be published to at most {} channels",
            limits.max_event_channels_at_once
        )));
    }
    for channel in &channels {
        validate_channel_name(channel, limits.max_channel_name_length)
            .map_err(|e| ApiError::BadRequest(format!("Invalid channel '{channel}': {e}")))?;
    }
    if channels.len() > 1 && channels.iter().any(|c| ChannelKind::of(c).is_encrypted()) {
        return Err(ApiError::BadRequest(
            "Encrypted channels cannot be published to together with other channels".into(),
        ));
    }
    let except = match body.socket_id {
        Some(id) => Some(
            id.parse::<SocketId>()
                .map_err(|_| ApiError::BadRequest(format!("Invalid socket_id '{id}'")))?,
        ),
        None => None,
    };
    Ok(Event {
        name,
        data,
        channels,
        except,
        info: InfoFlags::parse(body.info.as_deref()),
    })
}

/// Spend `events` from the app's publish budget, or refuse with 429.
async fn check_backend_budget(
    state: &ServerState,
    app: &App,
    events: usize,
) -> Result<(), ApiError> {
    if state.app_limiters.allow_events(app, events as u32).await {
        return Ok(());
    }
    app.stats.rate_limited(RateLimit::BackendEvent);
    log::warn!(
        event = "rate_limited", limiter = "backend_event", app_id = app.id.as_ref(),
        events = events, limit = app.limits.max_backend_events_per_second,
        reason = "more events than max_backend_events_per_second";
        "backend event rate limit hit"
    );
    Err(ApiError::TooManyRequests(format!(
        "Backend event rate limit exceeded ({} events per second)",
        app.limits.max_backend_events_per_second
    )))
}

/// Spend one read from the app's read budget, or refuse with 429.
async fn check_read_budget(state: &ServerState, app: &App) -> Result<(), ApiError> {
    if state.app_limiters.allow_read(app).await {
        return Ok(());
    }
    app.stats.rate_limited(RateLimit::ReadRequest);
    log::warn!(
        event = "rate_limited", limiter = "read_request", app_id = app.id.as_ref(),
        limit = app.limits.max_read_requests_per_second,
        reason = "more reads than max_read_requests_per_second";
        "read request rate limit hit"
    );
    Err(ApiError::TooManyRequests(format!(
        "Read request rate limit exceeded ({} requests per second)",
        app.limits.max_read_requests_per_second
    )))
}

/// A JSON object of the documented shape. serde's derive would also accept
/// an array for a struct (fields by position), so the object rule of
/// `command::object` applies here as it does to client frames.
fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("Invalid JSON body: not UTF-8".into()))?;
    command::object(text).map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))
}

async fn publish(state: &ServerState, app: &App, event: &Event) -> Result<(), ApiError> {
    for channel in &event.channels {
        // Wait until the registry has handed the frame to every subscriber's
        // queue: channels live on different threads, and this is what keeps
        // events in the order the backend published them — across channels,
        // across batch items and across consecutive requests. It is also the
        // publisher's backpressure (the registry's mailboxes are bounded).
        state
            .registry
            .publish(Publish {
                app_id: &app.id,
                channel,
                name: &event.name,
                data: &event.data,
                except: event.except,
            })
            .await?;
    }
    stats::add(&app.stats.api_events_published, event.channels.len() as u64);
    Ok(())
}

async fn channel_info(
    state: &ServerState,
    app: &App,
    channel: &str,
) -> Result<ChannelInfo, ApiError> {
    Ok(state.registry.channel(&app.id, channel).await?)
}

/// The attributes `info` asked for, for one channel (used by publish responses).
async fn info_attributes(
    state: &ServerState,
    app: &App,
    channel: &str,
    info: InfoFlags,
) -> Result<Map<String, Value>, ApiError> {
    let reply = channel_info(state, app, channel).await?;
    Ok(publish_attrs(channel, reply.stats, info))
}

/// A publish response's attributes for one channel: `user_count` only on
/// presence channels (silently left out elsewhere), 0 for a channel nobody
/// is subscribed to; `cache` is not reported here.
fn publish_attrs(
    channel: &str,
    stats: Option<ChannelStats>,
    info: InfoFlags,
) -> Map<String, Value> {
    let mut attrs = Map::new();
    let stats = stats.unwrap_or_default();
    if info.user_count && ChannelKind::of(channel).is_presence() {
        attrs.insert("user_count".into(), json!(stats.user_count.unwrap_or(0)));
    }
    if info.subscription_count {
        attrs.insert("subscription_count".into(), json!(stats.subscription_count));
    }
    attrs
}

/// `POST /apps/{app_id}/events`
pub async fn trigger(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, ApiError> {
    let signed = authenticate(&req, payload, &state, &path).await?;
    let event = validate_event(&signed.app, parse_json(&signed.body)?)?;
    check_backend_budget(&state, &signed.app, event.channels.len()).await?;
    publish(&state, &signed.app, &event).await?;
    if !event.info.any() {
        return Ok(empty_ok());
    }
    let mut channels = Map::new();
    for channel in &event.channels {
        let attrs = info_attributes(&state, &signed.app, channel, event.info).await?;
        channels.insert(channel.clone(), Value::Object(attrs));
    }
    Ok(HttpResponse::Ok().json(json!({ "channels": channels })))
}

/// `POST /apps/{app_id}/batch_events`
pub async fn trigger_batch(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, ApiError> {
    let signed = authenticate(&req, payload, &state, &path).await?;
    let app = &signed.app;
    let events = validate_batch(app, &signed.body)?;
    check_backend_budget(&state, app, events.len()).await?;
    for event in &events {
        publish(&state, app, event).await?;
    }
    if !events.iter().any(|e| e.info.any()) {
        return Ok(empty_ok());
    }
    let mut results = Vec::with_capacity(events.len());
    for event in &events {
        let attrs = if event.info.any() {
            info_attributes(&state, app, &event.channels[0], event.info).await?
        } else {
            Map::new()
        };
        results.push(Value::Object(attrs));
    }
    Ok(HttpResponse::Ok().json(json!({ "batch": results })))
}

/// The body of `/batch_events`: a `batch` list of at most
/// `max_event_batch_size` events, each naming a single channel and valid on
/// its own; the first bad item's error names its index.
fn validate_batch(app: &App, body: &[u8]) -> Result<Vec<Event>, ApiError> {
    #[derive(Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Option<Vec<&'a RawValue>>,
    }
    let batch = parse_json::<Batch>(body)?
        .batch
        .ok_or_else(|| ApiError::BadRequest("Body must contain a 'batch' list".into()))?;
    let max = app.limits.max_event_batch_size;
    if batch.len() > max {
        return Err(ApiError::BadRequest(format!(
            "Batch size ({}) exceeds limit ({max})",
            batch.len()
        )));
    }
    let mut events = Vec::with_capacity(batch.len());
    for (i, item) in batch.into_iter().enumerate() {
        let item: EventBody = command::object(item.get())
            .map_err(|e| ApiError::BadRequest(format!("Batch event {i}: {e}")))?;
        if item.channels.as_ref().is_some_and(|c| c.len() > 1) {
            return Err(ApiError::BadRequest(format!(
                "Batch event {i} must name a single 'channel'"
            )));
        }
        events.push(
            validate_event(app, item)
                .map_err(|e| prefix_error(e, &format!("Batch event {i}: ")))?,
        );
    }
    Ok(events)
}

fn prefix_error(e: ApiError, prefix: &str) -> ApiError {
    match e {
        ApiError::BadRequest(m) => ApiError::BadRequest(format!("{prefix}{m}")),
        ApiError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(format!("{prefix}{m}")),
        other => other,
    }
}

/// `GET /apps/{app_id}/channels`
pub async fn channels(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, ApiError> {
    let signed = authenticate(&req, payload, &state, &path).await?;
    check_read_budget(&state, &signed.app).await?;
    let (prefix, info) = list_query(signed.param("filter_by_prefix"), signed.param("info"))?;
    let mut channels = Map::new();
    for stats in state
        .registry
        .channels(&signed.app.id, prefix.as_deref())
        .await?
    {
        channels.insert(
            stats.name.to_string(),
            Value::Object(stats_attrs(&stats, info)),
        );
    }
    Ok(HttpResponse::Ok().json(json!({ "channels": channels })))
}

/// `filter_by_prefix` and `info` of `GET /channels`: `info=user_count` only
/// with a prefix that starts with `presence-` (every listed channel is then a
/// presence channel).
fn list_query(
    prefix: Option<&str>,
    info: Option<&str>,
) -> Result<(Option<String>, InfoFlags), ApiError> {
    let prefix = prefix.map(str::to_string);
    let info = InfoFlags::parse(info);
    if info.user_count && !prefix.as_deref().unwrap_or("").starts_with("presence-") {
        return Err(ApiError::BadRequest(
            "info=user_count is only allowed with filter_by_prefix=presence-".into(),
        ));
    }
    Ok((prefix, info))
}

fn stats_attrs(stats: &ChannelStats, info: InfoFlags) -> Map<String, Value> {
    let mut attrs = Map::new();
    if info.user_count {
        if let Some(n) = stats.user_count {
            attrs.insert("user_count".into(), json!(n));
        }
    }
    if info.subscription_count {
        attrs.insert("subscription_count".into(), json!(stats.subscription_count));
    }
    attrs
}

fn check_channel_param(app: &App, channel: &str) -> Result<(), ApiError> {
    validate_channel_name(channel, app.limits.max_channel_name_length)
        .map_err(|e| ApiError::BadRequest(format!("Invalid channel '{channel}': {e}")))
}

/// `GET /apps/{app_id}/channels/{channel_name}`
pub async fn channel(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String)>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, ApiError> {
    let (app_id, channel) = path.into_inner();
    let signed: Signed = authenticate(&req, payload, &state, &app_id).await?;
    check_read_budget(&state, &signed.app).await?;
    let info = channel_query(&signed.app, &channel, signed.param("info"))?;
    let reply = channel_info(&state, &signed.app, &channel).await?;
    Ok(HttpResponse::Ok().json(channel_body(&channel, &reply, info)))
}

/// The channel name and `info` of `GET /channels/{name}`: a valid name, and
/// `info=user_count` only for a presence channel.
fn channel_query(app: &App, channel: &str, info: Option<&str>) -> Result<InfoFlags, ApiError> {
    check_channel_param(app, channel)?;
    let info = InfoFlags::parse(info);
    if info.user_count && !ChannelKind::of(channel).is_presence() {
        return Err(ApiError::BadRequest(
            "info=user_count is only available for presence channels".into(),
        ));
    }
    Ok(info)
}

/// `{"occupied":…}` plus the counts `info` asked for (0 when unoccupied) and,
/// on a cache channel with `info=cache`, its cached event.
fn channel_body<'a>(channel: &str, reply: &'a ChannelInfo, info: InfoFlags) -> ChannelBody<'a> {
    let mut attrs = Map::new();
    attrs.insert("occupied".into(), json!(reply.stats.is_some()));
    if let Some(stats) = &reply.stats {
        attrs.extend(stats_attrs(stats, info));
    } else {
        if info.user_count {
            attrs.insert("user_count".into(), json!(0));
        }
        if info.subscription_count {
            attrs.insert("subscription_count".into(), json!(0));
        }
    }
    let cache = match &reply.cache {
        Some((frame, ttl)) if info.cache && ChannelKind::of(channel).is_cache() => {
            Some(CacheAttr::of(frame, *ttl))
        }
        _ => None,
    };
    ChannelBody { attrs, cache }
}

/// The body of `GET /channels/{name}`.
#[derive(Serialize)]
struct ChannelBody<'a> {
    #[serde(flatten)]
    attrs: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<CacheAttr<'a>>,
}

/// A cache channel's last event, read back from its frame. `data` stays raw
/// text: a client event's data is any JSON, nested as deep as the client
/// chose, and a `Value` (serde_json's recursion limit, 128) would turn
/// deeper data into `null`.
#[derive(Serialize)]
struct CacheAttr<'a> {
    event: Option<Cow<'a, str>>,
    data: Option<&'a RawValue>,
    ttl: u64,
}

impl<'a> CacheAttr<'a> {
    fn of(frame: &'a str, ttl: u64) -> Self {
        #[derive(Deserialize)]
        struct Cached<'a> {
            #[serde(borrow)]
            event: Option<Cow<'a, str>>,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        let cached = serde_json::from_str::<Cached>(frame).unwrap_or(Cached {
            event: None,
            data: None,
        });
        CacheAttr {
            event: cached.event,
            data: cached.data,
            ttl,
        }
    }
}

/// `GET /apps/{app_id}/channels/{channel_name}/users`
pub async fn channel_users(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String)>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, ApiError> {
    let (app_id, channel) = path.into_inner();
    let signed = authenticate(&req, payload, &state, &app_id).await?;
    check_read_budget(&state, &signed.app).await?;
    users_query(&signed.app, &channel)?;
    let ids = state.registry.users(&signed.app.id, &channel).await?;
    let users: Vec<Value> = ids.iter().map(|id| json!({ "id": &**id })).collect();
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

/// The channel of `GET /channels/{name}/users`: a valid presence channel name.
fn users_query(app: &App, channel: &str) -> Result<(), ApiError> {
    check_channel_param(app, channel)?;
    if !ChannelKind::of(channel).is_presence() {
        return Err(ApiError::BadRequest(
            "Users can only be listed for presence channels".into(),
        ));
    }
    Ok(())
}

/// `POST /apps/{app_id}/users/{user_id}/terminate_connections`
pub async fn terminate_user(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String)>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, ApiError> {
    close_user(req, payload, path, state, UserClose::Terminate).await
}

/// `POST /apps/{app_id}/users/{user_id}/force_reconnect` (Sockudo's): the
/// user's sockets are closed with 4200, so clients reconnect at once (and
/// sign in again, picking up new user data or rights).
pub async fn force_reconnect(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String)>,
    state: web::Data<ServerState>,
) -> Result<HttpResponse, ApiError> {
    close_user(req, payload, path, state, UserClose::Reconnect).await
}

async fn close_user(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String)>,
    state: web::Data<ServerState>,
    how: UserClose,
) -> Result<HttpResponse, ApiError> {
    let (app_id, user_id) = path.into_inner();
    let signed = authenticate(&req, payload, &state, &app_id).await?;
    let closed = state
        .registry
        .close_user(&signed.app.id, &user_id, how)
        .await?;
    let what = match how {
        UserClose::Terminate => "terminate_connections",
        UserClose::Reconnect => "force_reconnect",
    };
    log::info!(
        app_id = signed.app.id.as_ref(), user_id = truncate(&user_id, 128), sockets = closed;
        "{what}"
    );
    Ok(empty_ok())
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
