//! Which apps the server serves.
//!
//! 1. Inline apps from `app_manager.array.apps[]`.
//! 2. The `SOCKUDO_DEFAULT_APP_*` app, which replaces the inline ones. With
//!    `SOCKUDO_DEFAULT_APP_ENABLED=false` it is still served, as a disabled
//!    app: its sockets are refused with 4003 and its API calls with 403.
//! 3. The development app (`app-id`/`app-key`/`app-secret`) only when no app
//!    is configured anywhere: no inline app, no default-app variable. Its
//!    credentials are public, so it is never served in production mode unless
//!    `SWITCHYARD_DEV_APP=true` asks for it; when the mode is not set at all
//!    the server runs in `development` mode, so a bare `switchyard` starts.
//!
//! Limits an app leaves unset fall back to the global `presence`,
//! `channel_limits` and `event_limits` blocks. Validation names the offending
//! key (`app_manager.array.apps[1].max_event_batch_size`) or variable
//! (`SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE`).

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_actors::app::{App, AppLimits};

use super::env::Env;
use super::error::ConfigError;
use super::file::FileApp;
use super::Config;
use crate::webhooks::config::{Target, WebhookSettings};

const ID: &str = "SOCKUDO_DEFAULT_APP_ID";
const KEY: &str = "SOCKUDO_DEFAULT_APP_KEY";
const SECRET: &str = "SOCKUDO_DEFAULT_APP_SECRET";
const ENABLED: &str = "SOCKUDO_DEFAULT_APP_ENABLED";
/// Switchyard's explicit switch for the public development app.
pub(crate) const DEV_APP: &str = "SWITCHYARD_DEV_APP";

/// Where a served app was defined: named in errors and in the start-up line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSource {
    /// `app_manager.array.apps[i]` of the config file.
    File(usize),
    /// The `SOCKUDO_DEFAULT_APP_*` variables.
    Env,
    /// The built-in development app.
    Development,
    /// A row of the app manager's database table.
    Database,
}

impl AppSource {
    fn key(self, field: &str) -> String {
        match self {
            AppSource::File(i) => format!("app_manager.array.apps[{i}].{field}"),
            AppSource::Env => format!("SOCKUDO_DEFAULT_APP_{}", field.to_ascii_uppercase()),
            AppSource::Development => format!("development app {field}"),
            AppSource::Database => format!("column {field}"),
        }
    }
}

impl std::fmt::Display for AppSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppSource::File(i) => write!(f, "file:apps[{i}]"),
            AppSource::Env => f.write_str("env"),
            AppSource::Development => f.write_str("development"),
            AppSource::Database => f.write_str("database"),
        }
    }
}

pub(crate) struct Resolved {
    /// Every served app, enabled or not, with where it came from.
    pub apps: Vec<(AppSource, App)>,
    pub dev_credentials: bool,
    /// App id → its webhooks, for apps that have any.
    pub webhooks: HashMap<String, Arc<[Target]>>,
    pub warnings: Vec<String>,
}

/// The global fallbacks, as app limits.
pub(crate) fn global_limits(c: &Config) -> AppLimits {
    AppLimits {
        max_presence_members_per_channel: c.presence.max_members_per_channel as usize,
        max_presence_member_size_bytes: kb(c.presence.max_member_size_in_kb),
        max_channel_name_length: c.channel_limits.max_name_length as usize,
        max_event_channels_at_once: c.event_limits.max_channels_at_once as usize,
        max_event_name_length: c.event_limits.max_name_length as usize,
        max_event_payload_bytes: kb(c.event_limits.max_payload_in_kb),
        max_event_batch_size: c.event_limits.max_batch_size as usize,
        ..AppLimits::default()
    }
}

fn kb(kb: u32) -> usize {
    (kb as usize).saturating_mul(1024)
}

/// `explicit_mode` is `ENVIRONMENT` / `mode` when either was set, `None`
/// when the mode is only the built-in default.
pub(crate) fn resolve(
    inline: Vec<FileApp>,
    base: &AppLimits,
    webhook_settings: &WebhookSettings,
    env: &Env,
    explicit_mode: Option<&str>,
    database: bool,
) -> Result<Resolved, ConfigError> {
    // Any app an operator defined or disabled counts as "configured", even if
    // nothing ends up served: the development app must never stand in for an
    // app that was disabled or cleared.
    let enabled = env.bool(ENABLED)?;
    let creds = [ID, KEY, SECRET].map(|var| env.word(var));
    // Apps in a database count too: the development app never stands in for them.
    let configured = database
        || !inline.is_empty()
        || enabled == Some(false)
        || creds.iter().any(Option::is_some);

    let mut specs: Vec<(AppSource, FileApp)> = inline
        .into_iter()
        .enumerate()
        .map(|(i, app)| (AppSource::File(i), app.flatten()))
        .collect();
    if env.bool("SOCKUDO_SKIP_INLINE_APPS")? == Some(true)
        || env.bool("APP_MANAGER_REGISTER_INLINE_APPS")? == Some(false)
    {
        specs.clear();
    }
    // As in Sockudo, any default-app variable replaces the inline apps.
    if creds.iter().any(Option::is_some) || enabled == Some(false) {
        specs.clear();
    }
    match creds {
        [Some(id), Some(key), Some(secret)] => {
            let mut spec = env_app(env, id, key, secret)?;
            spec.enabled = enabled != Some(false);
            specs.push((AppSource::Env, spec));
        }
        // A disabled default app needs no credentials: nothing is served for it.
        _ if enabled == Some(false) => {}
        [None, None, None] => {}
        _ => {
            let missing: Vec<&str> = [ID, KEY, SECRET]
                .into_iter()
                .zip(&creds)
                .filter(|(_, v)| v.is_none())
                .map(|(var, _)| var)
                .collect();
            return Err(ConfigError::invalid(
                "SOCKUDO_DEFAULT_APP_*",
                format!(
                    "partial default-app credentials: {} not set (set all of ID, KEY and SECRET, or none)",
                    missing.join(", ")
                ),
            ));
        }
    }

    let mut warnings = Vec::new();
    let mut webhooks = HashMap::new();
    for (source, spec) in &mut specs {
        let key = match source {
            AppSource::File(i) if spec.webhooks_in_policy => {
                format!("app_manager.array.apps[{i}].policy.webhooks")
            }
            _ => source.key("webhooks"),
        };
        // Sockudo reads nothing but id, key, secret and enabled beside
        // `policy`; say so for each flat field given, naming where it goes.
        if let AppSource::File(i) = source {
            for (flat, nested) in &spec.flat_ignored {
                warnings.push(format!(
                    "app_manager.array.apps[{i}].{flat}: ignored because the app has `policy` \
                     (as Sockudo does); set app_manager.array.apps[{i}].policy.{nested} instead"
                ));
            }
        }
        let Some(raw) = spec.webhooks.take() else {
            continue;
        };
        if raw.is_null() {
            continue;
        }
        let targets = webhook_settings.parse_targets(&raw, &key, &mut warnings)?;
        if !targets.is_empty() {
            webhooks.insert(spec.id.clone(), Arc::from(targets));
        }
    }
    let mut apps: Vec<(AppSource, App)> = specs
        .into_iter()
        .map(|(source, spec)| (source, build(spec, base)))
        .collect();
    let dev_credentials = !configured && dev_app_allowed(env, explicit_mode)?;
    if dev_credentials {
        apps.push((AppSource::Development, dev_app(base)));
    }
    validate(&apps)?;
    Ok(Resolved {
        apps,
        dev_credentials,
        webhooks,
        warnings,
    })
}

/// With no app configured: serve the development app, or refuse to start
/// with the one line that fixes it. Production mode (set explicitly) needs
/// `SWITCHYARD_DEV_APP=true`; an unset mode means a newcomer's first run.
fn dev_app_allowed(env: &Env, explicit_mode: Option<&str>) -> Result<bool, ConfigError> {
    let fix = "set SOCKUDO_DEFAULT_APP_ID, SOCKUDO_DEFAULT_APP_KEY and SOCKUDO_DEFAULT_APP_SECRET \
               (generate each with `openssl rand -hex 32`) or app_manager.array.apps in the config file";
    match env.bool(DEV_APP)? {
        Some(true) => Ok(true),
        Some(false) => Err(ConfigError::invalid(
            DEV_APP,
            format!("no app is configured and the development app is switched off: {fix}"),
        )),
        None if explicit_mode.is_some_and(|m| m.eq_ignore_ascii_case("production")) => {
            Err(ConfigError::invalid(
                "ENVIRONMENT",
                format!(
                    "no app is configured, and production mode never serves the public \
                     development app (app-id/app-key/app-secret): {fix}; or, for a test \
                     deployment only, SWITCHYARD_DEV_APP=true"
                ),
            ))
        }
        None => Ok(true),
    }
}

/// The env app as a flat spec. Where a variable is unset: connections and the
/// three per-second rates default to 100 (Sockudo's env path), every other
/// limit to the global fallback.
fn env_app(env: &Env, id: String, key: String, secret: String) -> Result<FileApp, ConfigError> {
    let var = |field: &str| format!("SOCKUDO_DEFAULT_APP_{field}");
    let rate = |field: &str| -> Result<Option<u32>, ConfigError> {
        Ok(Some(env.num(&var(field))?.unwrap_or(100)))
    };
    let client_messages = match env.bool(&var("ENABLE_CLIENT_MESSAGES"))? {
        Some(v) => v,
        None => env.bool("SOCKUDO_ENABLE_CLIENT_MESSAGES")?.unwrap_or(false),
    };
    Ok(FileApp {
        id,
        key,
        secret,
        enabled: true,
        max_connections: rate("MAX_CONNECTIONS")?,
        enable_client_messages: Some(client_messages),
        max_client_events_per_second: rate("MAX_CLIENT_EVENTS_PER_SECOND")?,
        max_backend_events_per_second: rate("MAX_BACKEND_EVENTS_PER_SECOND")?,
        max_read_requests_per_second: rate("MAX_READ_REQUESTS_PER_SECOND")?,
        max_presence_members_per_channel: env.num(&var("MAX_PRESENCE_MEMBERS_PER_CHANNEL"))?,
        max_presence_member_size_in_kb: env.num(&var("MAX_PRESENCE_MEMBER_SIZE_IN_KB"))?,
        max_channel_name_length: env.num(&var("MAX_CHANNEL_NAME_LENGTH"))?,
        max_event_channels_at_once: env.num(&var("MAX_EVENT_CHANNELS_AT_ONCE"))?,
        max_event_name_length: env.num(&var("MAX_EVENT_NAME_LENGTH"))?,
        max_event_payload_in_kb: env.num(&var("MAX_EVENT_PAYLOAD_IN_KB"))?,
        max_event_batch_size: env.num(&var("MAX_EVENT_BATCH_SIZE"))?,
        enable_user_authentication: env.bool(&var("ENABLE_USER_AUTHENTICATION"))?,
        enable_watchlist_events: env.bool(&var("ENABLE_WATCHLIST_EVENTS"))?,
        enable_subscription_count: env.bool(&var("ENABLE_SUBSCRIPTION_COUNT"))?,
        allowed_origins: env.origins(&var("ALLOWED_ORIGINS"))?,
        webhooks: env_webhooks(env)?,
        ..FileApp::default()
    })
}

/// `SOCKUDO_DEFAULT_APP_WEBHOOKS` (or Soketi's `SOKETI_DEFAULT_APP_WEBHOOKS`):
/// the environment app's webhooks as a JSON array.
fn env_webhooks(env: &Env) -> Result<Option<serde_json::Value>, ConfigError> {
    let (var, text) = match (
        env.string("SOCKUDO_DEFAULT_APP_WEBHOOKS"),
        env.string("SOKETI_DEFAULT_APP_WEBHOOKS"),
    ) {
        (Some(text), _) => ("SOCKUDO_DEFAULT_APP_WEBHOOKS", text),
        (None, Some(text)) => ("SOKETI_DEFAULT_APP_WEBHOOKS", text),
        (None, None) => return Ok(None),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ConfigError::invalid(
            var,
            format!("is not JSON ({e}); expected an array of webhooks"),
        )
    })?;
    if !value.is_array() {
        return Err(ConfigError::invalid(
            var,
            "must be a JSON array of webhooks, e.g. [{\"url\":\"https://…\",\"event_types\":[\"channel_occupied\"]}]",
        ));
    }
    Ok(Some(value))
}

/// One row of the app manager's table (Sockudo's `applications` columns),
/// as read: `None` is NULL or a column the table does not have.
#[derive(Debug, Default, Clone)]
pub struct AppRow {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: Option<bool>,
    pub max_connections: Option<i64>,
    pub enable_client_messages: Option<bool>,
    pub max_backend_events_per_second: Option<i64>,
    pub max_client_events_per_second: Option<i64>,
    pub max_read_requests_per_second: Option<i64>,
    pub max_presence_members_per_channel: Option<i64>,
    pub max_presence_member_size_in_kb: Option<i64>,
    pub max_channel_name_length: Option<i64>,
    pub max_event_channels_at_once: Option<i64>,
    pub max_event_name_length: Option<i64>,
    pub max_event_payload_in_kb: Option<i64>,
    pub max_event_batch_size: Option<i64>,
    pub enable_user_authentication: Option<bool>,
    pub enable_watchlist_events: Option<bool>,
    pub policy: Option<serde_json::Value>,
    pub webhooks: Option<serde_json::Value>,
    pub allowed_origins: Option<serde_json::Value>,
}

/// A database row as an app, through the same path as the config file's
/// apps (`policy` flattened, unset limits from `base`, the same checks).
/// Returns the app and its webhooks as JSON (parsed by the webhooks'
/// directory, which serves the app without them if they are invalid).
/// The error names the column.
pub fn app_from_row(
    row: AppRow,
    base: &AppLimits,
) -> Result<(App, Option<serde_json::Value>), String> {
    fn num(column: &str, v: Option<i64>) -> Result<Option<u32>, String> {
        v.map(|v| {
            u32::try_from(v).map_err(|_| format!("column {column}: {v} is not in 0-4294967295"))
        })
        .transpose()
    }
    fn json<T: serde::de::DeserializeOwned>(
        column: &str,
        v: Option<serde_json::Value>,
    ) -> Result<Option<T>, String> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| format!("column {column}: {e}")),
        }
    }
    let policy: Option<super::file::FilePolicy> = json("policy", row.policy)?;
    // As for the config file's apps: `policy.webhooks` wins when present.
    let webhooks = match policy.as_ref().and_then(|p| p.webhooks.clone()) {
        Some(w) if !w.is_null() => Some(w),
        _ => row.webhooks.filter(|w| !w.is_null()),
    };
    let spec = FileApp {
        id: row.id,
        key: row.key,
        secret: row.secret,
        enabled: row.enabled.unwrap_or(false),
        max_connections: num("max_connections", row.max_connections)?,
        enable_client_messages: row.enable_client_messages,
        max_client_events_per_second: num(
            "max_client_events_per_second",
            row.max_client_events_per_second,
        )?,
        max_backend_events_per_second: num(
            "max_backend_events_per_second",
            row.max_backend_events_per_second,
        )?,
        max_read_requests_per_second: num(
            "max_read_requests_per_second",
            row.max_read_requests_per_second,
        )?,
        max_presence_members_per_channel: num(
            "max_presence_members_per_channel",
            row.max_presence_members_per_channel,
        )?,
        max_presence_member_size_in_kb: num(
            "max_presence_member_size_in_kb",
            row.max_presence_member_size_in_kb,
        )?,
        max_channel_name_length: num("max_channel_name_length", row.max_channel_name_length)?,
        max_event_channels_at_once: num(
            "max_event_channels_at_once",
            row.max_event_channels_at_once,
        )?,
        max_event_name_length: num("max_event_name_length", row.max_event_name_length)?,
        max_event_payload_in_kb: num("max_event_payload_in_kb", row.max_event_payload_in_kb)?,
        max_event_batch_size: num("max_event_batch_size", row.max_event_batch_size)?,
        enable_user_authentication: row.enable_user_authentication,
        enable_watchlist_events: row.enable_watchlist_events,
        allowed_origins: json("allowed_origins", row.allowed_origins)?,
        policy: policy.map(Box::new),
        ..FileApp::default()
    }
    .flatten();
    let checked = [(AppSource::Database, build(spec, base))];
    validate(&checked).map_err(|e| e.to_string())?;
    let [(_, app)] = checked;
    Ok((app, webhooks))
}

fn build(spec: FileApp, base: &AppLimits) -> App {
    let mut app = App::new(spec.id, spec.key, spec.secret);
    app.enabled = spec.enabled;
    app.enable_client_messages = spec.enable_client_messages.unwrap_or(false);
    app.enable_user_authentication = spec.enable_user_authentication.unwrap_or(false);
    app.enable_watchlist_events = spec.enable_watchlist_events.unwrap_or(false);
    app.enable_subscription_count = spec.enable_subscription_count.unwrap_or(false);
    app.allowed_origins = spec.allowed_origins.unwrap_or_default();
    let or = |v: Option<u32>, fallback: usize| v.map_or(fallback, |v| v as usize);
    app.limits = AppLimits {
        max_connections: spec.max_connections.unwrap_or(0) as usize,
        max_client_events_per_second: spec.max_client_events_per_second.unwrap_or(0),
        client_event_window_secs: spec.decay_seconds.unwrap_or(1),
        terminate_on_limit: spec.terminate_on_limit.unwrap_or(false),
        max_backend_events_per_second: spec.max_backend_events_per_second.unwrap_or(0),
        max_read_requests_per_second: spec.max_read_requests_per_second.unwrap_or(0),
        max_presence_members_per_channel: or(
            spec.max_presence_members_per_channel,
            base.max_presence_members_per_channel,
        ),
        max_presence_member_size_bytes: spec
            .max_presence_member_size_in_kb
            .map_or(base.max_presence_member_size_bytes, kb),
        max_channel_name_length: or(spec.max_channel_name_length, base.max_channel_name_length),
        max_event_channels_at_once: or(
            spec.max_event_channels_at_once,
            base.max_event_channels_at_once,
        ),
        max_event_name_length: or(spec.max_event_name_length, base.max_event_name_length),
        max_event_payload_bytes: spec
            .max_event_payload_in_kb
            .map_or(base.max_event_payload_bytes, kb),
        max_event_batch_size: or(spec.max_event_batch_size, base.max_event_batch_size),
    };
    app
}

/// Public, well-known credentials so a bare `switchyard` works out of the box.
fn dev_app(base: &AppLimits) -> App {
    let mut app = App::new("app-id", "app-key", "app-secret");
    app.enabled = true;
    app.enable_client_messages = true;
    app.limits = base.clone();
    app
}

fn validate(apps: &[(AppSource, App)]) -> Result<(), ConfigError> {
    let mut ids: HashMap<&str, AppSource> = HashMap::new();
    let mut keys: HashMap<&str, AppSource> = HashMap::new();
    for &(source, ref app) in apps {
        for (field, value) in [
            ("id", app.id.as_ref()),
            ("key", app.key.as_str()),
            ("secret", app.secret.expose()),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(source.key(field), "must not be empty"));
            }
        }
        if let Some(first) = ids.insert(&app.id, source) {
            return Err(ConfigError::invalid(
                source.key("id"),
                format!("duplicate app id {:?} (also {})", app.id, first.key("id")),
            ));
        }
        if let Some(first) = keys.insert(&app.key, source) {
            return Err(ConfigError::invalid(
                source.key("key"),
                format!("duplicate app key (also {})", first.key("key")),
            ));
        }
        let l = &app.limits;
        for (field, value) in [
            ("max_channel_name_length", l.max_channel_name_length),
            ("max_event_channels_at_once", l.max_event_channels_at_once),
            ("max_event_name_length", l.max_event_name_length),
            ("max_event_payload_in_kb", l.max_event_payload_bytes),
            ("max_event_batch_size", l.max_event_batch_size),
            (
                "max_presence_members_per_channel",
                l.max_presence_members_per_channel,
            ),
            (
                "max_presence_member_size_in_kb",
                l.max_presence_member_size_bytes,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(
                    source.key(field),
                    format!("must be at least 1 (app {:?})", app.id),
                ));
            }
        }
        if l.max_client_events_per_second > 0 && l.client_event_window_secs == 0 {
            return Err(ConfigError::invalid(
                source.key("decay_seconds"),
                format!(
                    "must be at least 1 when max_client_events_per_second is set (app {:?})",
                    app.id
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "apps_tests.rs"]
mod tests;
