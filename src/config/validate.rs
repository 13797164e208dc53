//! Checks on the merged configuration, and the start-up warnings.
//!
//! Values that parse but cannot work (a socket path with `..`, a batch limit
//! of 0, a malformed origin pattern) stop start-up with the key that holds
//! them; the env variable that feeds the key is named alongside it. Settings
//! that work but are risky only produce warnings, because Sockudo's
//! permissive defaults must keep working for drop-in use.

use std::path::{Component, Path};

use switchyard_actors::origin::OriginPattern;

use super::error::ConfigError;
use super::Config;

fn at_least_one(value: u64, key: &str) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(())
}

const PATH_PREFIX_KEY: &str = "path_prefix (PATH_PREFIX)";

/// `path_prefix` normalized: `""` for none (empty, or Sockudo's default
/// `/`), else `/segment[/segment…]` as given. Refused, naming the key: no
/// leading `/`, a trailing `/`, an empty, `.` or `..` segment, or a
/// character other than ASCII letters, digits and `-._~` — a prefix is
/// matched against the request path as sent, so it must need no escaping.
pub(crate) fn path_prefix(raw: &str) -> Result<String, ConfigError> {
    if raw.is_empty() || raw == "/" {
        return Ok(String::new());
    }
    let invalid = |why: &str| {
        Err(ConfigError::invalid(
            PATH_PREFIX_KEY,
            format!("{raw:?} {why}; write it like /ws or /realtime/v1 (or / for none)"),
        ))
    };
    let Some(rest) = raw.strip_prefix('/') else {
        return invalid("must start with /");
    };
    if rest.ends_with('/') {
        return invalid("must not end with /");
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return invalid("has an empty segment (//)");
        }
        if segment == "." || segment == ".." {
            return invalid("has a . or .. segment");
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c)))
        {
            return invalid(&format!(
                "has {c:?}: only ASCII letters, digits, -, ., _, ~ and / are allowed"
            ));
        }
    }
    Ok(raw.to_string())
}

/// Everything except the apps (validated where they are resolved).
pub(crate) fn globals(c: &Config) -> Result<(), ConfigError> {
    if let Some(db) = c.database() {
        let prefix = match c.app_manager.driver {
            super::AppManagerDriver::Postgres => "DATABASE_POSTGRES",
            _ => "DATABASE_MYSQL",
        };
        let name_ok = |part: &str| {
            !part.is_empty()
                && part.len() <= 64
                && part
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                && !part.starts_with(|ch: char| ch.is_ascii_digit())
        };
        let parts: Vec<&str> = db.table_name.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| name_ok(p)) {
            return Err(ConfigError::invalid(
                format!("{prefix}_TABLE_NAME"),
                format!(
                    "{:?} is not a table name: letters, digits and _ (not first), at most 64, \
                     optionally schema.table",
                    db.table_name
                ),
            ));
        }
        if db.pool_max == 0 {
            return Err(ConfigError::invalid(
                format!("{prefix}_POOL_MAX"),
                "must be at least 1",
            ));
        }
        if db.pool_min > db.pool_max {
            return Err(ConfigError::invalid(
                format!("{prefix}_POOL_MIN"),
                format!("must not exceed the pool's maximum ({})", db.pool_max),
            ));
        }
    }
    let limits = [
        (
            c.channel_limits.max_name_length,
            "channel_limits.max_name_length",
        ),
        (
            c.event_limits.max_channels_at_once,
            "event_limits.max_channels_at_once",
        ),
        (
            c.event_limits.max_name_length,
            "event_limits.max_name_length",
        ),
        (
            c.event_limits.max_payload_in_kb,
            "event_limits.max_payload_in_kb",
        ),
        (c.event_limits.max_batch_size, "event_limits.max_batch_size"),
        (
            c.presence.max_members_per_channel,
            "presence.max_members_per_channel",
        ),
        (
            c.presence.max_member_size_in_kb,
            "presence.max_member_size_in_kb",
        ),
        (
            c.presence.update_rate_limit_per_member_per_second,
            "presence.update_rate_limit_per_member_per_second \
             (PRESENCE_UPDATE_RATE_LIMIT_PER_MEMBER_PER_SECOND)",
        ),
    ];
    for (value, key) in limits {
        at_least_one(value.into(), key)?;
    }
    if !(1..=64).contains(&c.http_max_header_size_kb) {
        return Err(ConfigError::invalid(
            "http_max_header_size_kb (HTTP_MAX_HEADER_SIZE_KB)",
            format!(
                "{} KiB: must be 1-64 (the HTTP parser itself refuses heads over 128 KiB \
                 without a body, and request targets over 64 KiB with 400)",
                c.http_max_header_size_kb
            ),
        ));
    }
    if c.rate_limiter.enabled {
        at_least_one(
            c.rate_limiter.api_rate_limit.window_seconds,
            "rate_limiter.api_rate_limit.window_seconds (RATE_LIMITER_API_WINDOW_SECONDS)",
        )?;
        at_least_one(
            c.rate_limiter.websocket_rate_limit.window_seconds,
            "rate_limiter.websocket_rate_limit.window_seconds (RATE_LIMITER_WS_WINDOW_SECONDS)",
        )?;
    }
    if c.unix_socket.enabled {
        let key = "unix_socket.path (UNIX_SOCKET_PATH)";
        let path = Path::new(&c.unix_socket.path);
        if !path.is_absolute() {
            return Err(ConfigError::invalid(
                key,
                format!("{path:?} must be an absolute path"),
            ));
        }
        if path.components().any(|part| part == Component::ParentDir) {
            return Err(ConfigError::invalid(
                key,
                format!("{path:?} must not contain `..`"),
            ));
        }
    }
    at_least_one(
        c.adapter.requests_timeout_ms,
        "adapter.redis.requests_timeout",
    )?;
    let health = &c.adapter.health;
    for (value, key) in [
        (
            health.heartbeat_interval,
            "cluster_health.heartbeat_interval_ms (CLUSTER_HEALTH_HEARTBEAT_INTERVAL)",
        ),
        (
            health.node_timeout,
            "cluster_health.node_timeout_ms (CLUSTER_HEALTH_NODE_TIMEOUT)",
        ),
        (
            health.cleanup_interval,
            "cluster_health.cleanup_interval_ms (CLUSTER_HEALTH_CLEANUP_INTERVAL)",
        ),
    ] {
        at_least_one(value.as_millis() as u64, key)?;
    }
    // One late heartbeat must not declare a live node dead.
    if health.node_timeout < health.heartbeat_interval * 2 {
        return Err(ConfigError::invalid(
            "cluster_health.node_timeout_ms (CLUSTER_HEALTH_NODE_TIMEOUT)",
            format!(
                "{} ms is less than twice the heartbeat interval ({} ms): a live node would be \
                 declared dead",
                health.node_timeout.as_millis(),
                health.heartbeat_interval.as_millis()
            ),
        ));
    }
    if c.unix_socket.permission_mode > 0o777 {
        return Err(ConfigError::invalid(
            "unix_socket.permission_mode (UNIX_SOCKET_PERMISSION_MODE)",
            format!("{:o} is above 777", c.unix_socket.permission_mode),
        ));
    }
    if c.ssl.enabled {
        for (value, key) in [
            (&c.ssl.cert_path, "ssl.cert_path (SSL_CERT_PATH)"),
            (&c.ssl.key_path, "ssl.key_path (SSL_KEY_PATH)"),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    "required when ssl.enabled is true",
                ));
            }
        }
    }
    ports(c)
}

/// Listeners of this process must not collide (port 0 = OS-assigned, never a clash).
fn ports(c: &Config) -> Result<(), ConfigError> {
    let mut listeners: Vec<(&str, &str, u16)> = Vec::new();
    if !c.unix_socket.enabled {
        listeners.push(("port (PORT)", c.host.as_str(), c.port));
        if c.ssl.enabled && c.ssl.redirect_http {
            listeners.push((
                "ssl.http_port (SSL_HTTP_PORT)",
                c.host.as_str(),
                c.ssl.http_port,
            ));
        }
    }
    if c.metrics.enabled {
        listeners.push((
            "metrics.port (METRICS_PORT)",
            c.metrics.host.as_str(),
            c.metrics.port,
        ));
    }
    for (i, (key, host, port)) in listeners.iter().enumerate() {
        for (other_key, other_host, other_port) in &listeners[..i] {
            let same_host = host == other_host || is_wildcard(host) || is_wildcard(other_host);
            if *port != 0 && port == other_port && same_host {
                return Err(ConfigError::invalid(
                    *key,
                    format!("{port} is already used by {other_key}"),
                ));
            }
        }
    }
    Ok(())
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "::" | "[::]" | "")
}

/// The global webhook settings, and the queue that webhooks need: a driver
/// Switchyard cannot run refuses to start when any app has webhooks (they
/// would be silently off), and is only a warning when none has.
pub(crate) fn webhooks(c: &mut Config) -> Result<(), ConfigError> {
    c.webhooks.validate()?;
    let key = "queue.driver (QUEUE_DRIVER)";
    let Some(driver) = c.queue_driver.as_deref() else {
        return Ok(());
    };
    match driver.parse::<crate::webhooks::config::QueueDriver>() {
        Ok(q) => c.webhooks.queue = q,
        Err(e) if c.webhooks.apps.is_empty() => c.warnings.push(format!(
            "{key}: {e}; no app has webhooks, so nothing is queued"
        )),
        Err(e) => {
            return Err(ConfigError::invalid(
                key,
                format!("{e}: apps have webhooks, and they would not be delivered"),
            ))
        }
    }
    Ok(())
}

/// Working but risky settings, for the start-up log.
pub(crate) fn warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let production = c.mode.eq_ignore_ascii_case("production");
    if c.dev_credentials {
        out.push(format!(
            "no apps configured: serving the development app (id app-id, key app-key, \
             secret app-secret) in {} mode; set SOCKUDO_DEFAULT_APP_ID/KEY/SECRET or \
             app_manager.array.apps for real credentials",
            c.mode
        ));
    }
    if c.apps.iter().all(|app| !app.enabled) {
        out.push(
            "no enabled app: every WebSocket connection and HTTP API call will be refused"
                .to_string(),
        );
    }
    for (app, source) in c.apps.iter().zip(&c.app_sources) {
        if !app.enabled {
            out.push(format!(
                "app {} ({source}) is disabled: its connections are refused with 4003 and \
                 its HTTP API calls with 403",
                app.id
            ));
        }
    }
    if c.cors.any_origin() && c.cors.credentials == Some(true) {
        out.push(
            "cors.credentials (CORS_CREDENTIALS) is true with origin \"*\": credentials are never \
             allowed for a wildcard origin (browsers refuse them, and echoing every origin with \
             credentials would let any site call the API as its user), so CORS answers without \
             them; list your front-end origins in CORS_ORIGINS / cors.origin"
                .to_string(),
        );
    }
    if production && c.cors.any_origin() {
        out.push(
            "CORS allows any origin (CORS_ORIGINS=*); set CORS_ORIGINS / cors.origin \
             to your front-end origins"
                .to_string(),
        );
    }
    for app in &c.apps {
        if app.allowed_origins.iter().any(OriginPattern::is_any) {
            out.push(format!(
                "app {}: allowed_origins contains \"*\": WebSocket connections are accepted \
                 from any web page; list your front-end origins instead",
                app.id
            ));
        }
        if !c.dev_credentials && app.secret.len() < 32 {
            out.push(format!(
                "app {}: secret is shorter than 32 bytes; generate a strong one with \
                 `openssl rand -hex 32`",
                app.id
            ));
        }
    }
    if production && c.metrics.enabled && is_wildcard(c.metrics.host.trim()) {
        out.push(format!(
            "metrics listen on all interfaces ({}:{}); firewall the port or set \
             METRICS_HOST=127.0.0.1",
            c.metrics.host, c.metrics.port
        ));
    }
    if c.unix_socket.enabled && c.unix_socket.permission_mode & 0o002 != 0 {
        out.push(format!(
            "unix socket {} is world-writable (mode {:o})",
            c.unix_socket.path, c.unix_socket.permission_mode
        ));
    }
    if production && c.unix_socket.enabled && c.unix_socket.path.starts_with("/tmp/") {
        out.push(format!(
            "unix socket {} is under /tmp in production",
            c.unix_socket.path
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::build;

    fn defaults() -> Config {
        build(None, &|_| None).unwrap()
    }

    fn invalid_key(c: &Config) -> String {
        match globals(c) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_warn_about_permissive_cors_only_in_production() {
        let mut c = defaults();
        c.mode = "production".into();
        assert!(globals(&c).is_ok());
        assert!(warnings(&c).iter().any(|w| w.contains("CORS")));
        c.mode = "development".into();
        assert!(!warnings(&c).iter().any(|w| w.contains("CORS")));
    }

    #[test]
    fn path_prefixes_are_normalized_or_refused_naming_the_key() {
        assert_eq!(path_prefix("").unwrap(), "");
        assert_eq!(path_prefix("/").unwrap(), "", "Sockudo's default: none");
        assert_eq!(path_prefix("/ws").unwrap(), "/ws");
        assert_eq!(
            path_prefix("/realtime/v1.2_a~b-c").unwrap(),
            "/realtime/v1.2_a~b-c"
        );
        for (bad, why) in [
            ("ws", "must start with /"),
            ("/ws/", "must not end with /"),
            ("//", "must not end with /"),
            ("/a//b", "empty segment"),
            ("/a/../b", ". or .. segment"),
            ("/a b", "has ' '"),
            ("/ws?x=1", "has '?'"),
            ("/%41", "has '%'"),
            ("/é", "has 'é'"),
            ("/{key}", "has '{'"),
        ] {
            match path_prefix(bad) {
                Err(ConfigError::Invalid { key, message }) => {
                    assert_eq!(key, "path_prefix (PATH_PREFIX)", "{bad}");
                    assert!(message.contains(why), "{bad}: {message}");
                }
                Err(other) => panic!("{bad}: {other}"),
                Ok(p) => panic!("{bad}: accepted as {p}"),
            }
        }
    }

    #[test]
    fn zero_limits_are_rejected_with_their_key() {
        let mut c = defaults();
        c.event_limits.max_batch_size = 0;
        assert_eq!(invalid_key(&c), "event_limits.max_batch_size");
        let mut c = defaults();
        c.channel_limits.max_name_length = 0;
        assert_eq!(invalid_key(&c), "channel_limits.max_name_length");
        let mut c = defaults();
        c.presence.update_rate_limit_per_member_per_second = 0;
        assert!(invalid_key(&c).starts_with("presence.update_rate_limit_per_member_per_second"));
        let mut c = defaults();
        c.rate_limiter.websocket_rate_limit.window_seconds = 0;
        assert!(invalid_key(&c).starts_with("rate_limiter.websocket_rate_limit.window_seconds"));
        c.rate_limiter.enabled = false;
        assert!(globals(&c).is_ok(), "a disabled limiter is not checked");
    }

    #[test]
    fn weak_settings_are_warned_about() {
        let mut c = defaults();
        c.mode = "production".into();
        let mut app = switchyard_actors::app::App::new("prod", "key", "short-secret");
        app.allowed_origins = vec![OriginPattern::any()];
        c.apps = vec![app];
        c.dev_credentials = false;
        let w = warnings(&c);
        assert!(
            w.iter()
                .any(|w| w.contains("app prod: allowed_origins contains")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|w| w.contains("app prod: secret is shorter")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("metrics listen on all interfaces")),
            "{w:?}"
        );
        let mut strong = switchyard_actors::app::App::new("prod", "key", "s".repeat(32));
        strong.allowed_origins = vec![OriginPattern::parse("https://app.example.com").unwrap()];
        c.apps = vec![strong];
        c.metrics.host = "127.0.0.1".into();
        let w = warnings(&c);
        assert!(!w.iter().any(|w| w.contains("app prod")), "{w:?}");
        assert!(!w.iter().any(|w| w.contains("metrics")), "{w:?}");
    }

    #[test]
    fn cors_wildcard_with_credentials_starts_without_credentials() {
        let mut c = defaults();
        assert!(
            !c.cors.allows_credentials(),
            "default * origin: no credentials"
        );
        c.cors.credentials = Some(true);
        assert!(globals(&c).is_ok(), "Sockudo's shipped config must start");
        assert!(!c.cors.allows_credentials(), "never with a wildcard");
        assert!(
            warnings(&c).iter().any(|w| w.contains("CORS_CREDENTIALS")),
            "{:?}",
            warnings(&c)
        );
        c.cors.origin = vec![OriginPattern::parse("https://app.example.com").unwrap()];
        assert!(c.cors.allows_credentials());
        assert!(!warnings(&c).iter().any(|w| w.contains("CORS_CREDENTIALS")));
        c.cors.credentials = None;
        assert!(
            c.cors.allows_credentials(),
            "explicit origins: credentials by default"
        );
        c.cors.credentials = Some(false);
        assert!(!c.cors.allows_credentials());
    }

    #[test]
    fn unix_socket_path_and_mode() {
        let mut c = defaults();
        c.unix_socket.enabled = true;
        c.unix_socket.path = "run/sy.sock".into();
        assert!(invalid_key(&c).starts_with("unix_socket.path"));
        c.unix_socket.path = "/var/run/../tmp/sy.sock".into();
        let err = globals(&c).unwrap_err().to_string();
        assert!(err.contains("must not contain `..`"), "{err}");
        c.unix_socket.path = "/tmp/sy.sock".into();
        c.unix_socket.permission_mode = 0o666;
        assert!(globals(&c).is_ok());
        let w = warnings(&c);
        assert!(w.iter().any(|w| w.contains("world-writable")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("/tmp")), "{w:?}");
        c.unix_socket.permission_mode = 0o1000;
        assert!(invalid_key(&c).starts_with("unix_socket.permission_mode"));
    }

    #[test]
    fn ssl_needs_cert_and_key() {
        let mut c = defaults();
        c.ssl.enabled = true;
        assert_eq!(invalid_key(&c), "ssl.cert_path (SSL_CERT_PATH)");
        c.ssl.cert_path = "/c.pem".into();
        assert_eq!(invalid_key(&c), "ssl.key_path (SSL_KEY_PATH)");
        c.ssl.key_path = "/k.pem".into();
        assert!(globals(&c).is_ok());
    }

    #[test]
    fn listener_ports_must_not_collide() {
        let mut c = defaults();
        c.metrics.port = c.port;
        assert_eq!(invalid_key(&c), "metrics.port (METRICS_PORT)");
        c.metrics.host = "127.0.0.1".into();
        c.host = "10.0.0.1".into();
        assert!(globals(&c).is_ok(), "different interfaces may share a port");
        let mut c = defaults();
        c.port = 0;
        c.metrics.port = 0;
        assert!(globals(&c).is_ok(), "port 0 is OS-assigned");
        let mut c = defaults();
        c.ssl = crate::config::SslConfig {
            enabled: true,
            cert_path: "/c".into(),
            key_path: "/k".into(),
            redirect_http: true,
            http_port: 6001,
            ..Default::default()
        };
        assert_eq!(invalid_key(&c), "ssl.http_port (SSL_HTTP_PORT)");
    }
}
