//! End-to-end tests of the layering: defaults < file < environment.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

pub(super) fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

/// Build from JSON text (or no file) and an env map.
pub(super) fn cfg(json: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    build(json.map(|t| (Path::new("config.json"), t)), &lookup(vars))
}

/// A fresh directory under the system temp dir (no tempfile crate needed).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-config-{name}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(dir.join("config")).unwrap();
    dir
}

#[test]
fn defaults_without_file_or_env() {
    // `build`, not `load_from`: a config/ directory in the package root must
    // not change this test.
    let c = build(None, &|_| None).unwrap();
    assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 6001));
    assert_eq!(
        c.mode, "development",
        "no app and no mode: a newcomer's first run, with the development app"
    );
    assert!(!c.debug);
    assert_eq!(c.activity_timeout, 120);
    assert_eq!(c.pong_timeout, 30);
    assert_eq!(c.shutdown_grace_period, 10);
    assert_eq!(c.user_authentication_timeout, 3600);
    assert_eq!(c.websocket_max_payload_kb, 64);
    assert_eq!(c.http_max_header_size_kb, 16);
    assert_eq!(c.max_connections, 0);
    assert!(c.registry_shards >= 1);
    assert_eq!(c.websocket, WebsocketConfig::default());
    assert_eq!(c.websocket.max_messages, Some(1000));
    assert_eq!(c.http_api.request_limit_in_mb, 10);
    assert!(c.http_api.usage_enabled);
    assert_eq!(c.channel_limits.cache_ttl, 3600);
    assert_eq!(c.event_limits.max_batch_size, 10);
    assert_eq!(c.presence.max_member_size_in_kb, 2);
    assert_eq!(c.cors.origin, vec!["*".to_string()]);
    assert!(c.rate_limiter.enabled);
    assert_eq!(c.rate_limiter.driver, RateLimiterDriver::Memory);
    assert_eq!(c.rate_limiter.redis.prefix, "sockudo_rl:");
    assert_eq!(c.ssl.http_port, 80);
    assert_eq!(c.unix_socket.permission_mode, 0o660);
    assert_eq!(
        (c.metrics.port, c.metrics.prefix.as_str()),
        (9601, "sockudo_")
    );
    assert!(!c.logging.json && c.logging.colors_enabled && c.logging.include_target);
    assert_eq!(c.adapter_driver, AdapterDriver::Local);
    assert_eq!(c.redis.key_prefix, "sockudo:");
    assert_eq!(c.server_role, ServerRole::Default);
    assert!(c.dev_credentials);
    assert_eq!(c.apps.len(), 1);
    assert!(c.config_file.is_none());
}

#[test]
fn instance_id_is_random_unless_configured() {
    let a = cfg(None, &[]).unwrap().instance_id;
    let b = cfg(None, &[]).unwrap().instance_id;
    assert_ne!(a, b);
    assert!(
        a.starts_with("switchyard-") && a.len() == "switchyard-".len() + 16,
        "{a}"
    );
    let c = cfg(Some(r#"{"instance": {"process_id": "node-1"}}"#), &[]).unwrap();
    assert_eq!(c.instance_id, "node-1");
    let c = cfg(
        Some(r#"{"instance": {"process_id": "node-1"}}"#),
        &[("INSTANCE_PROCESS_ID", "node-2")],
    );
    assert_eq!(c.unwrap().instance_id, "node-2");
}

#[test]
fn environment_beats_file_beats_defaults() {
    let file = r#"{"port": 7000, "host": "127.0.0.1", "activity_timeout": 60,
                   "metrics": {"port": 9700}, "rate_limiter": {"driver": "redis"}}"#;
    let c = cfg(Some(file), &[]).unwrap();
    assert_eq!(
        (c.host.as_str(), c.port, c.activity_timeout),
        ("127.0.0.1", 7000, 60)
    );
    assert_eq!(c.rate_limiter.driver, RateLimiterDriver::Redis);
    let c = cfg(
        Some(file),
        &[("PORT", "8000"), ("RATE_LIMITER_DRIVER", "none")],
    )
    .unwrap();
    assert_eq!(c.port, 8000, "env wins");
    assert_eq!(c.host, "127.0.0.1", "file value kept where env is silent");
    assert_eq!(c.metrics.port, 9700);
    assert_eq!(c.rate_limiter.driver, RateLimiterDriver::None);
    let c = cfg(Some(file), &[("PORT", "")]).unwrap();
    assert_eq!(c.port, 7000, "an empty variable counts as unset");
}

#[test]
fn every_documented_variable_is_read() {
    let vars = [
        ("HOST", " :: "),
        ("PORT", "7001"),
        ("DEBUG_MODE", "yes"),
        ("ENVIRONMENT", "development"),
        ("ACTIVITY_TIMEOUT", "30"),
        ("PONG_TIMEOUT", "5"),
        ("SHUTDOWN_GRACE_PERIOD", "2"),
        ("USER_AUTHENTICATION_TIMEOUT", "60"),
        ("WEBSOCKET_MAX_PAYLOAD_KB", "128"),
        ("SOCKUDO_MAX_CONNECTIONS", "5000"),
        ("REGISTRY_SHARDS", "4"),
        ("HEALTH_CHECK_TIMEOUT_MS", "500"),
        ("SOCKUDO_SERVER_ROLE", "api"),
        ("ADAPTER_DRIVER", "nats"),
        ("HTTP_API_USAGE_ENABLED", "off"),
        ("HTTP_API_REQUEST_LIMIT_IN_MB", "2"),
        ("CACHE_TTL_SECONDS", "99"),
        ("PRESENCE_UPDATE_RATE_LIMIT_PER_MEMBER_PER_SECOND", "3"),
        ("WEBSOCKET_MAX_MESSAGES", "none"),
        ("WEBSOCKET_MAX_BYTES", "1048576"),
        ("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL", "false"),
        ("REDIS_URL", "redis://r:6379/0"),
        ("DATABASE_REDIS_HOST", "redis"),
        ("DATABASE_REDIS_PORT", "6380"),
        ("DATABASE_REDIS_USERNAME", "u"),
        ("DATABASE_REDIS_PASSWORD", "p"),
        ("DATABASE_REDIS_DB", "2"),
        ("DATABASE_REDIS_KEY_PREFIX", "sy:"),
        ("RATE_LIMITER_ENABLED", "0"),
        ("RATE_LIMITER_API_MAX_REQUESTS", "7"),
        ("RATE_LIMITER_API_WINDOW_SECONDS", "8"),
        ("RATE_LIMITER_API_TRUST_HOPS", "1"),
        ("RATE_LIMITER_WS_MAX_REQUESTS", "9"),
        ("RATE_LIMITER_WS_WINDOW_SECONDS", "10"),
        ("RATE_LIMITER_WS_TRUST_HOPS", "2"),
        ("RATE_LIMITER_REDIS_PREFIX", "rl:"),
        ("SSL_ENABLED", "true"),
        ("SSL_CERT_PATH", "/c.pem"),
        ("SSL_KEY_PATH", "/k.pem"),
        ("SSL_REDIRECT_HTTP", "on"),
        ("SSL_HTTP_PORT", "8080"),
        ("DOMAIN", "rt.example.com"),
        ("CORS_ORIGINS", "https://a.test, https://b.test"),
        ("CORS_METHODS", "GET, POST"),
        ("CORS_HEADERS", "Authorization"),
        ("CORS_CREDENTIALS", "false"),
        ("UNIX_SOCKET_ENABLED", "false"),
        ("UNIX_SOCKET_PATH", "/run/sy.sock"),
        ("UNIX_SOCKET_PERMISSION_MODE", "600"),
        ("METRICS_ENABLED", "true"),
        ("METRICS_HOST", "127.0.0.1"),
        ("METRICS_PORT", "9700"),
        ("METRICS_PROMETHEUS_PREFIX", "sy_"),
        ("LOG_OUTPUT_FORMAT", "json"),
        ("LOG_COLORS_ENABLED", "no"),
        ("LOG_INCLUDE_TARGET", "0"),
    ];
    let c = cfg(None, &vars).unwrap();
    assert_eq!((c.host.as_str(), c.port, c.debug), ("::", 7001, true));
    assert_eq!(c.mode, "development");
    assert_eq!(
        (c.activity_timeout, c.pong_timeout, c.shutdown_grace_period),
        (30, 5, 2)
    );
    assert_eq!(c.user_authentication_timeout, 60);
    assert_eq!((c.websocket_max_payload_kb, c.max_connections), (128, 5000));
    assert_eq!((c.registry_shards, c.health_check_timeout_ms), (4, 500));
    assert_eq!(c.server_role, ServerRole::Api);
    assert_eq!(c.adapter_driver, AdapterDriver::Nats);
    assert_eq!(
        c.http_api,
        HttpApiConfig {
            request_limit_in_mb: 2,
            usage_enabled: false
        }
    );
    assert_eq!(c.channel_limits.cache_ttl, 99);
    assert_eq!(c.presence.update_rate_limit_per_member_per_second, 3);
    assert_eq!(
        c.websocket,
        WebsocketConfig {
            max_messages: None,
            max_bytes: Some(1048576),
            disconnect_on_buffer_full: false
        }
    );
    let r = &c.redis;
    assert_eq!(r.url.as_deref(), Some("redis://r:6379/0"));
    assert_eq!(
        (r.host.as_str(), r.port, r.db, r.key_prefix.as_str()),
        ("redis", 6380, 2, "sy:")
    );
    assert_eq!(
        (r.username.as_deref(), r.password.as_deref()),
        (Some("u"), Some("p"))
    );
    let rl = &c.rate_limiter;
    assert!(!rl.enabled);
    assert_eq!(
        rl.api_rate_limit,
        RateLimit {
            max_requests: 7,
            window_seconds: 8,
            trust_hops: 1
        }
    );
    assert_eq!(
        rl.websocket_rate_limit,
        RateLimit {
            max_requests: 9,
            window_seconds: 10,
            trust_hops: 2
        }
    );
    assert_eq!(rl.redis.prefix, "rl:");
    let ssl = &c.ssl;
    assert!(ssl.enabled && ssl.redirect_http);
    assert_eq!(
        (ssl.cert_path.as_str(), ssl.key_path.as_str()),
        ("/c.pem", "/k.pem")
    );
    assert_eq!(
        (ssl.http_port, ssl.domain.as_deref()),
        (8080, Some("rt.example.com"))
    );
    assert_eq!(c.cors.origin, vec!["https://a.test", "https://b.test"]);
    assert_eq!(c.cors.methods, vec!["GET", "POST"]);
    assert_eq!(c.cors.allowed_headers, vec!["Authorization"]);
    assert_eq!(c.cors.credentials, Some(false));
    assert_eq!(c.unix_socket.path, "/run/sy.sock");
    assert_eq!(c.unix_socket.permission_mode, 0o600);
    assert_eq!(
        c.metrics,
        MetricsConfig {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 9700,
            prefix: "sy_".into()
        }
    );
    assert!(c.logging.json && !c.logging.colors_enabled && !c.logging.include_target);
}

#[test]
fn debug_can_only_force_debug_on() {
    assert!(cfg(None, &[("DEBUG", "true")]).unwrap().debug);
    let c = cfg(Some(r#"{"debug": true}"#), &[("DEBUG", "false")]).unwrap();
    assert!(c.debug, "DEBUG=false does not turn it off");
    let c = cfg(Some(r#"{"debug": true}"#), &[("DEBUG_MODE", "false")]).unwrap();
    assert!(!c.debug, "DEBUG_MODE does");
}

#[test]
fn malformed_env_values_stop_start_up_naming_the_variable() {
    let cases = [
        ("PORT", "abc", "an integer 0-65535"),
        ("DEBUG_MODE", "sure", "a boolean"),
        ("SOCKUDO_SERVER_ROLE", "worker", "default or api"),
        ("ADAPTER_DRIVER", "zeromq", "one of local"),
        ("RATE_LIMITER_DRIVER", "disk", "one of memory"),
        ("UNIX_SOCKET_PERMISSION_MODE", "888", "octal"),
        ("CORS_ORIGINS", "*.", "origin patterns"),
        ("WEBSOCKET_MAX_MESSAGES", "lots", "none/0"),
        ("METRICS_PORT", "-1", "0-65535"),
    ];
    for (var, value, expected) in cases {
        match cfg(None, &[(var, value)]) {
            Err(ConfigError::Env {
                var: v,
                value: got,
                expected: e,
            }) => {
                assert_eq!((v.as_str(), got.as_str()), (var, value));
                assert!(e.contains(expected), "{var}: {e}");
            }
            other => panic!("{var}={value}: expected an Env error, got {other:?}"),
        }
    }
}

#[test]
fn file_errors_stop_start_up_naming_file_and_key() {
    let e = cfg(Some(r#"{"ssl": {"http_port": "eighty"}}"#), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("config file config.json: ssl.http_port: invalid type"),
        "{msg}"
    );
    let e = cfg(
        Some(r#"{"cors": {"origin": ["https://ok.test", "https://"]}}"#),
        &[],
    );
    let msg = e.unwrap_err().to_string();
    assert!(
        msg.contains(r#"cors.origin[1]: "https://": missing host after `://`"#),
        "{msg}"
    );
}

#[test]
fn variables_are_substituted_before_parsing() {
    let file = r#"{"database": {"redis": {"password": "${REDIS_PASSWORD}", "port": ${REDIS_PORT}}},
                   "metrics": {"prometheus": {"prefix": "${MISSING_PREFIX}x_"}}}"#;
    let c = cfg(
        Some(file),
        &[("REDIS_PASSWORD", "pw"), ("REDIS_PORT", "6390")],
    )
    .unwrap();
    assert_eq!(c.redis.password.as_deref(), Some("pw"));
    assert_eq!(c.redis.port, 6390);
    assert_eq!(c.metrics.prefix, "x_");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("${MISSING_PREFIX} is not set")),
        "{:?}",
        c.warnings
    );
    let e = cfg(Some(r#"{"port": ${NOPE}}"#), &[]).unwrap_err();
    assert!(
        matches!(e, ConfigError::Parse { .. }),
        "an empty substitution can break syntax"
    );
}

#[test]
fn http_max_header_size_comes_from_file_and_env_and_is_bounded() {
    let file = Some(r#"{"http_max_header_size_kb": 8}"#);
    assert_eq!(cfg(file, &[]).unwrap().http_max_header_size_kb, 8);
    let c = cfg(file, &[("HTTP_MAX_HEADER_SIZE_KB", "64")]).unwrap();
    assert_eq!(c.http_max_header_size_kb, 64);
    for bad in ["0", "65"] {
        match cfg(None, &[("HTTP_MAX_HEADER_SIZE_KB", bad)]) {
            Err(ConfigError::Invalid { key, message }) => {
                assert!(key.contains("HTTP_MAX_HEADER_SIZE_KB"), "{key}");
                assert!(message.contains("1-64"), "{message}");
            }
            Err(other) => panic!("{bad}: {other}"),
            Ok(_) => panic!("{bad} accepted"),
        }
    }
    let e = cfg(None, &[("HTTP_MAX_HEADER_SIZE_KB", "big")]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("environment variable HTTP_MAX_HEADER_SIZE_KB=\"big\""),
        "{e}"
    );
}

#[test]
fn buffer_limits_of_zero_mean_unlimited_in_the_file_too() {
    let c = cfg(
        Some(r#"{"websocket": {"max_messages": 0, "max_bytes": 0}}"#),
        &[],
    )
    .unwrap();
    assert_eq!(
        (c.websocket.max_messages, c.websocket.max_bytes),
        (None, None)
    );
    let c = cfg(Some(r#"{"websocket": {"max_messages": null}}"#), &[]).unwrap();
    assert_eq!(c.websocket.max_messages, None);
    let c = cfg(Some(r#"{"websocket": {"max_messages": 50}}"#), &[]).unwrap();
    assert_eq!(c.websocket.max_messages, Some(50));
}

#[test]
fn unsupported_app_manager_driver_warns() {
    let c = cfg(None, &[("APP_MANAGER_DRIVER", "dynamodb")]).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("\"dynamodb\"")),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.app_manager.driver, AppManagerDriver::Memory);
    let c = cfg(Some(r#"{"app_manager": {"driver": "memory"}}"#), &[]).unwrap();
    assert!(!c.warnings.iter().any(|w| w.contains("app manager")));
}

#[test]
fn file_location_precedence() {
    let dir = temp_dir("discovery");
    let none = |_: &str| None;
    assert_eq!(config_path(None, &none, &dir), None);
    std::fs::write(dir.join("config/config.json"), "{}").unwrap();
    assert_eq!(
        config_path(None, &none, &dir),
        Some(dir.join("config/config.json"))
    );
    std::fs::write(dir.join("config/config.toml"), "").unwrap();
    assert_eq!(
        config_path(None, &none, &dir),
        Some(dir.join("config/config.toml"))
    );
    let env = lookup(&[("CONFIG_FILE", "/etc/sy.json")]);
    assert_eq!(
        config_path(None, &env, &dir),
        Some(PathBuf::from("/etc/sy.json"))
    );
    let cli = Path::new("cli.toml");
    assert_eq!(
        config_path(Some(cli), &env, &dir),
        Some(PathBuf::from("cli.toml"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn load_from_reads_the_named_file_by_extension() {
    let dir = temp_dir("load");
    let json = dir.join("sy.json");
    std::fs::write(&json, r#"{"port": 7100, "host": "${BIND}"}"#).unwrap();
    let c = load_from(Some(&json), &lookup(&[("BIND", "127.0.0.2")])).unwrap();
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.2", 7100));
    assert_eq!(c.config_file.as_deref(), Some(json.as_path()));

    let toml = dir.join("sy.toml");
    std::fs::write(&toml, "port = 7200\n[metrics]\nenabled = false\n").unwrap();
    let env = lookup(&[("CONFIG_FILE", toml.to_str().unwrap())]);
    let c = load_from(None, &env).unwrap();
    assert_eq!(c.port, 7200);
    assert!(!c.metrics.enabled);

    let missing = dir.join("missing.json");
    match load_from(Some(&missing), &|_| None) {
        Err(ConfigError::Read { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    std::fs::write(&json, "{\"port\": 1,").unwrap();
    let e = load_from(Some(&json), &|_| None).unwrap_err().to_string();
    assert!(e.contains(&json.display().to_string()), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn summary_and_debug_carry_no_secrets() {
    let c = cfg(
        None,
        &[
            ("SOCKUDO_DEFAULT_APP_ID", "prod-app"),
            ("SOCKUDO_DEFAULT_APP_KEY", "pubkey-123"),
            ("SOCKUDO_DEFAULT_APP_SECRET", "topsecret-456"),
            ("REDIS_URL", "redis://:redispw-789@r:6379"),
            ("DATABASE_REDIS_PASSWORD", "redispw-789"),
        ],
    )
    .unwrap();
    let summary = c.summary();
    assert!(summary.contains("apps=[prod-app(env)]"), "{summary}");
    assert!(summary.contains("mode=production"), "{summary}");
    assert!(summary.contains("listen=http://0.0.0.0:6001"), "{summary}");
    let debug = format!("{c:?}");
    for secret in ["pubkey-123", "topsecret-456", "redispw-789"] {
        assert!(!summary.contains(secret), "{summary}");
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(cfg(None, &[])
        .unwrap()
        .summary()
        .contains("(development credentials)"));
}

#[test]
fn secrets_from_files_reach_every_reader() {
    let dir = temp_dir("secrets");
    let write = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    };
    let app = write("app_secret", "app-secret-from-file-0123456789abcdef\n");
    let redis = write("redis", "redispw-from-file\r\n");
    let url = write("url", "redis://:urlpw-from-file@r:6379\n");
    let sub = write("sub", "subpw-from-file\n");
    let mysql = write("mysql", "mysqlpw-from-file\n");
    let postgres = write("postgres", "pgpw-from-file");
    let c = cfg(
        Some(r#"{"metrics": {"prometheus": {"prefix": "${REDIS_PASSWORD}_"}}}"#),
        &[
            ("SOCKUDO_DEFAULT_APP_ID", "file-app"),
            ("SOCKUDO_DEFAULT_APP_KEY", "file-key"),
            ("SOCKUDO_DEFAULT_APP_SECRET_FILE", &app),
            ("DATABASE_REDIS_PASSWORD_FILE", &redis),
            ("REDIS_URL_FILE", &url),
            ("REDIS_PASSWORD_FILE", &sub),
            ("DATABASE_MYSQL_PASSWORD_FILE", &mysql),
            ("DATABASE_POSTGRES_PASSWORD_FILE", &postgres),
        ],
    )
    .unwrap();
    assert_eq!(
        c.apps[0].secret.expose(),
        "app-secret-from-file-0123456789abcdef"
    );
    assert!(!c.dev_credentials);
    assert_eq!(c.redis.password.as_deref(), Some("redispw-from-file"));
    assert_eq!(
        c.redis.url.as_deref(),
        Some("redis://:urlpw-from-file@r:6379")
    );
    assert_eq!(
        c.metrics.prefix, "subpw-from-file_",
        "`${{REDIS_PASSWORD}}` in the file"
    );
    assert_eq!(c.mysql.password.as_deref(), Some("mysqlpw-from-file"));
    assert_eq!(c.postgres.password.as_deref(), Some("pgpw-from-file"));
    let debug = format!("{c:?}");
    for secret in ["app-secret", "redispw", "urlpw", "mysqlpw", "pgpw"] {
        assert!(!debug.contains(secret), "{debug}");
        assert!(!c.summary().contains(secret));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_plain_sql_passwords_are_held_too() {
    let c = cfg(
        None,
        &[
            ("DATABASE_MYSQL_PASSWORD", "m"),
            ("DATABASE_POSTGRES_PASSWORD", "p"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.mysql.password.as_deref(), c.postgres.password.as_deref()),
        (Some("m"), Some("p"))
    );
    let c = cfg(None, &[]).unwrap();
    assert_eq!((c.mysql.password, c.postgres.password), (None, None));
}

#[test]
fn an_empty_secret_file_acts_like_an_empty_variable() {
    let dir = temp_dir("empty-secret");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let creds = [
        ("SOCKUDO_DEFAULT_APP_ID", "a"),
        ("SOCKUDO_DEFAULT_APP_KEY", "k"),
    ];
    let path = empty.to_string_lossy().into_owned();
    let with_file = [
        &creds[..],
        &[("SOCKUDO_DEFAULT_APP_SECRET_FILE", path.as_str())],
    ]
    .concat();
    let with_var = [&creds[..], &[("SOCKUDO_DEFAULT_APP_SECRET", "")]].concat();
    let from_file = cfg(None, &with_file).unwrap_err().to_string();
    assert_eq!(from_file, cfg(None, &with_var).unwrap_err().to_string());
    assert!(
        from_file.contains("SOCKUDO_DEFAULT_APP_SECRET"),
        "{from_file}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn secret_file_problems_stop_start_up() {
    let e = cfg(
        None,
        &[
            ("SOCKUDO_DEFAULT_APP_SECRET", "s"),
            ("SOCKUDO_DEFAULT_APP_SECRET_FILE", "/run/secrets/app_secret"),
        ],
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::SecretConflict { .. }), "{e}");
    let e = cfg(
        None,
        &[("DATABASE_POSTGRES_PASSWORD_FILE", "/nonexistent/pg")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("environment variable DATABASE_POSTGRES_PASSWORD_FILE=/nonexistent/pg: "),
        "{e}"
    );
}

/// The example from the configuration reference (CONFIG.md §3.2), verbatim.
const SOCKUDO_EXAMPLE: &str = include_str!("testdata/sockudo_example.json");

#[test]
fn the_reference_example_loads_unchanged() {
    let c = cfg(
        Some(SOCKUDO_EXAMPLE),
        &[
            ("APP_SECRET", "a-secret-of-at-least-thirty-two-bytes"),
            ("REDIS_PASSWORD", "pw"),
        ],
    )
    .unwrap();
    // Its Sockudo-only blocks are reported, nothing else.
    assert_eq!(
        c.warnings,
        [
            "config file config.json: cache: not supported by Switchyard, ignored",
            "config file config.json: metrics.driver: not supported by Switchyard, ignored",
        ]
    );
    assert_eq!(c.instance_id, "switchyard-1");
    assert_eq!(c.adapter_driver, AdapterDriver::Redis);
    assert_eq!(c.redis.password.as_deref(), Some("pw"));
    let app = &c.apps[0];
    assert_eq!(
        (app.id.as_ref(), app.secret.expose()),
        ("app-id", "a-secret-of-at-least-thirty-two-bytes")
    );
    assert_eq!(app.limits.max_connections, 10000);
    assert_eq!(app.limits.max_backend_events_per_second, 1000);
    assert_eq!(app.allowed_origins.len(), 2);
    assert_eq!(c.rate_limiter.api_rate_limit.trust_hops, 1);
    assert!(c.ssl.enabled && c.ssl.redirect_http);
    assert_eq!(c.unix_socket.permission_mode, 0o660);
    assert_eq!(c.metrics.host, "127.0.0.1");
    assert!(!c.logging.colors_enabled);
}

/// Every variable the loader asks for is in the `--help-env` table: build
/// under environments that take each branch (no app, an env app, a file app,
/// every secret from a file) and record the names looked up.
#[test]
fn every_variable_the_loader_reads_is_in_the_help_table() {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    let dir = temp_dir("vars");
    let secret = dir.join("secret");
    std::fs::write(&secret, "from-a-file-0123456789abcdef0123456789\n").unwrap();
    let secret = secret.to_str().unwrap().to_string();
    let seen = RefCell::new(BTreeSet::new());
    let environments: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![
            ("SOCKUDO_DEFAULT_APP_ID", "a"),
            ("SOCKUDO_DEFAULT_APP_KEY", "k"),
            ("SOCKUDO_DEFAULT_APP_SECRET", "s"),
        ],
        vec![
            ("SOCKUDO_DEFAULT_APP_ID", "a"),
            ("SOCKUDO_DEFAULT_APP_KEY", "k"),
            ("SOCKUDO_DEFAULT_APP_SECRET_FILE", &secret),
            ("DATABASE_REDIS_PASSWORD_FILE", &secret),
            ("REDIS_URL_FILE", &secret),
            ("REDIS_PASSWORD_FILE", &secret),
            ("DATABASE_MYSQL_PASSWORD_FILE", &secret),
            ("DATABASE_POSTGRES_PASSWORD_FILE", &secret),
            ("SSL_ENABLED", "false"),
            ("DEBUG", "true"),
        ],
    ];
    let file = r#"{"app_manager": {"array": {"apps": [{"id": "f", "key": "fk", "secret": "fs", "enabled": true}]}}}"#;
    for vars in &environments {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| {
            seen.borrow_mut().insert(k.to_string());
            map.get(k).cloned()
        };
        for source in [None, Some((Path::new("config.json"), file))] {
            build(source, &lookup).unwrap_or_else(|e| panic!("{vars:?}: {e}"));
        }
        let _ = config_path(None, &lookup, &dir);
    }
    let table: BTreeSet<&str> = super::vars::names().collect();
    let seen = seen.into_inner();
    let missing: Vec<&String> = seen
        .iter()
        .filter(|n| !table.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "read but not in vars.rs: {missing:?}");
    assert!(
        seen.len() > 80,
        "the recording saw the loader: {}",
        seen.len()
    );
    // And nothing in the table that the loader never reads (RUST_LOG is
    // env_logger's; the _FILE lookups above cover the secrets).
    let unread: Vec<&&str> = table
        .iter()
        .filter(|n| !seen.contains(**n) && **n != "RUST_LOG")
        .collect();
    assert!(unread.is_empty(), "in vars.rs but never read: {unread:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `.env.example` shows every variable (set or commented), and the README
/// carries the `--help-env` text verbatim.
#[test]
fn env_example_and_readme_list_every_variable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let missing: Vec<&str> = super::vars::names()
        .filter(|name| {
            !example.lines().any(|l| {
                l.trim_start_matches(['#', ' '])
                    .starts_with(&format!("{name}="))
            })
        })
        .collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```text\n{}```", super::vars::help())),
        "README.md must contain the output of `switchyard --help-env` in a ```text block; \
         regenerate it with `cargo run -- --help-env`"
    );
}

/// The defaults `--help-env` (and so the README and `.env.example`) shows are
/// the loader's: setting a variable to its documented default changes
/// nothing in the resolved configuration or the default app. Descriptive
/// defaults ("none", "CPUs", "Host header", …) have no value to set.
#[test]
fn each_documented_default_is_the_default() {
    const DESCRIPTIVE: &[&str] = &[
        "none",
        "unset",
        "CPUs",
        "random",
        "Host header",
        "all",
        "standard",
        "list: true",
        "any",
    ];
    // The default app exists, so its variables are read; the mode stays the
    // one a configured server runs in.
    let creds = [
        ("SOCKUDO_DEFAULT_APP_ID", "defaults-app"),
        ("SOCKUDO_DEFAULT_APP_KEY", "defaults-key"),
        ("SOCKUDO_DEFAULT_APP_SECRET", "defaults-secret"),
        // Otherwise random per build.
        ("INSTANCE_PROCESS_ID", "defaults-node"),
    ];
    let shape = |c: &Config| format!("{c:?} {:?}", c.apps);
    let base = shape(&cfg(None, &creds).unwrap());
    let mut checked = 0;
    for var in super::vars::VARIABLES.iter().flat_map(|g| g.vars) {
        if DESCRIPTIVE.contains(&var.default) || var.name == "RUST_LOG" {
            continue;
        }
        let mut env = creds.to_vec();
        env.push((var.name, var.default));
        let c = cfg(None, &env)
            .unwrap_or_else(|e| panic!("{}={} is refused: {e}", var.name, var.default));
        assert_eq!(
            shape(&c),
            base,
            "{}={} (its documented default) changed the configuration",
            var.name,
            var.default
        );
        checked += 1;
    }
    assert!(checked > 60, "only {checked} defaults checked");
}

/// The cluster's prefix: the config file's `adapter.redis.prefix` (the
/// adapter's own key) wins; else the database prefix, environment over file
/// over `sockudo:`. `requests_timeout` is read from the same block.
#[test]
fn the_adapter_prefix_and_requests_timeout() {
    let c = cfg(None, &[]).unwrap();
    assert_eq!(c.adapter.prefix, "sockudo:");
    assert_eq!(c.adapter.requests_timeout_ms, 5000);

    let db_file = r#"{"database": {"redis": {"key_prefix": "file-db:"}}}"#;
    assert_eq!(cfg(Some(db_file), &[]).unwrap().adapter.prefix, "file-db:");
    let env = [("DATABASE_REDIS_KEY_PREFIX", "env-db:")];
    assert_eq!(cfg(Some(db_file), &env).unwrap().adapter.prefix, "env-db:");

    let adapter_file = r#"{"adapter": {"driver": "redis",
        "redis": {"prefix": "file-adapter:", "requests_timeout": 1500,
                  "redis_pub_options": {}, "cluster_mode": false}},
        "database": {"redis": {"key_prefix": "file-db:"}}}"#;
    let c = cfg(Some(adapter_file), &env).unwrap();
    assert_eq!(c.adapter_driver, AdapterDriver::Redis);
    assert_eq!(c.adapter.prefix, "file-adapter:");
    assert_eq!(c.adapter.requests_timeout_ms, 1500);
    assert_eq!(c.redis.key_prefix, "env-db:", "the database prefix itself");

    let e = cfg(
        Some(r#"{"adapter": {"redis": {"requests_timeout": 0}}}"#),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("adapter.redis.requests_timeout"), "{e}");
}

/// Node health: Switchyard's defaults (a dead node is forgotten within
/// 3.5 s), Sockudo's names in both places of the file (top level wins over
/// `adapter.cluster_health`), the environment over both, and a timeout too
/// short for the heartbeat refused.
#[test]
fn cluster_health_settings() {
    let ms = Duration::from_millis;
    let h = cfg(None, &[]).unwrap().adapter.health;
    assert!(h.enabled);
    assert_eq!(
        (h.heartbeat_interval, h.node_timeout, h.cleanup_interval),
        (ms(1000), ms(3000), ms(500))
    );
    // Sockudo's `_ms` names in one place, the names without `_ms` (read by
    // earlier versions) in the other.
    let file = r#"{"adapter": {"cluster_health": {"enabled": false, "heartbeat_interval_ms": 200,
                                                  "node_timeout_ms": 900}},
                   "cluster_health": {"node_timeout": 1200, "cleanup_interval": 100}}"#;
    let h = cfg(Some(file), &[]).unwrap().adapter.health;
    assert!(!h.enabled);
    assert_eq!(
        (h.heartbeat_interval, h.node_timeout, h.cleanup_interval),
        (ms(200), ms(1200), ms(100))
    );
    let env = [
        ("CLUSTER_HEALTH_ENABLED", "true"),
        ("CLUSTER_HEALTH_HEARTBEAT_INTERVAL", "500"),
        ("CLUSTER_HEALTH_NODE_TIMEOUT", "2000"),
        ("CLUSTER_HEALTH_CLEANUP_INTERVAL", "250"),
    ];
    let h = cfg(Some(file), &env).unwrap().adapter.health;
    assert!(h.enabled);
    assert_eq!(
        (h.heartbeat_interval, h.node_timeout, h.cleanup_interval),
        (ms(500), ms(2000), ms(250))
    );
    let e = cfg(None, &[("CLUSTER_HEALTH_NODE_TIMEOUT", "1500")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CLUSTER_HEALTH_NODE_TIMEOUT") && e.contains("twice"),
        "{e}"
    );
    let e = cfg(None, &[("CLUSTER_HEALTH_CLEANUP_INTERVAL", "0")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("CLUSTER_HEALTH_CLEANUP_INTERVAL"), "{e}");
    let e = cfg(None, &[("CLUSTER_HEALTH_HEARTBEAT_INTERVAL", "soon")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("CLUSTER_HEALTH_HEARTBEAT_INTERVAL"), "{e}");
}

/// The guide's `REDIS_PASSWORD` is the Redis password when Sockudo's
/// `DATABASE_REDIS_PASSWORD` is not set; the latter wins.
#[test]
fn redis_password_from_the_guides_variable() {
    let c = cfg(None, &[("REDIS_PASSWORD", "guide")]).unwrap();
    assert_eq!(c.redis.password.as_deref(), Some("guide"));
    let c = cfg(
        None,
        &[
            ("REDIS_PASSWORD", "guide"),
            ("DATABASE_REDIS_PASSWORD", "sockudo"),
        ],
    )
    .unwrap();
    assert_eq!(c.redis.password.as_deref(), Some("sockudo"));
    let file = r#"{"database": {"redis": {"password": "from-file"}}}"#;
    assert_eq!(
        cfg(Some(file), &[]).unwrap().redis.password.as_deref(),
        Some("from-file")
    );
}

/// Issue 13: every key nothing reads is a warning naming its full path,
/// Sockudo features told apart from typos; inside webhook entries too.
#[test]
fn ignored_keys_are_warnings_with_their_full_path() {
    let file = r#"{"delta_compression": {"enabled": true}, "activity_timout": 5,
        "app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s", "enabled": true,
            "policy": {"limits": {"max_conections": 5}},
            "webhooks": [{"url": "https://h.test/", "event_types": ["channel_occupied"], "evnt": 1}]},
            {"id": "b", "key": "k2", "secret": "s2", "enabled": true,
            "webhooks": [{"url": "https://h.test/", "event_types": ["channel_occupied"], "evnt": 1}]}]}}}"#;
    let c = cfg(Some(file), &[]).unwrap();
    // Without the production-mode warnings (short secrets, CORS, metrics).
    let w: Vec<&String> = c
        .warnings
        .iter()
        .filter(|w| w.starts_with("config file") || w.starts_with("app_manager"))
        .collect();
    let has = |s: &str| w.iter().any(|x| x.as_str() == s);
    assert!(
        has("config file config.json: delta_compression: not supported by Switchyard, ignored"),
        "{w:#?}"
    );
    assert!(
        has("config file config.json: activity_timout: unknown key, ignored — a typo?"),
        "{w:#?}"
    );
    assert!(
        has(
            "config file config.json: app_manager.array.apps[0].policy.limits.max_conections: \
             unknown key, ignored — a typo?"
        ),
        "{w:#?}"
    );
    // App 0's flat webhooks are ignored for its `policy`: said once, as such.
    assert!(
        has(
            "app_manager.array.apps[0].webhooks: ignored because the app has `policy` (as \
             Sockudo does); set app_manager.array.apps[0].policy.webhooks instead"
        ),
        "{w:#?}"
    );
    assert!(
        has("app_manager.array.apps[1].webhooks[0].evnt: unknown key, ignored — a typo?"),
        "{w:#?}"
    );
    assert_eq!(w.len(), 5, "{w:#?}");
}

/// Beside `policy`, Sockudo reads no flat field but id, key, secret and
/// enabled: one warning per flat field given, naming where it belongs.
#[test]
fn each_flat_field_ignored_for_policy_is_named() {
    let file = r#"{"app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s",
        "enabled": true, "max_connections": 5, "enable_client_messages": true,
        "max_event_batch_size": "3", "allowed_origins": ["https://x.test"],
        "policy": {"limits": {"max_connections": 50}}}]}}}"#;
    let c = cfg(Some(file), &[]).unwrap();
    let expected: Vec<String> = [
        ("max_connections", "limits.max_connections"),
        ("enable_client_messages", "features.enable_client_messages"),
        ("max_event_batch_size", "limits.max_event_batch_size"),
        ("allowed_origins", "channels.allowed_origins"),
    ]
    .iter()
    .map(|(flat, nested)| {
        format!(
            "app_manager.array.apps[0].{flat}: ignored because the app has `policy` (as Sockudo \
             does); set app_manager.array.apps[0].policy.{nested} instead"
        )
    })
    .collect();
    let ignored: Vec<&String> = c
        .warnings
        .iter()
        .filter(|w| w.contains("because the app has `policy`"))
        .collect();
    assert_eq!(ignored, expected.iter().collect::<Vec<_>>());
    let app = &c.apps[0];
    assert_eq!(app.limits.max_connections, 50);
    assert!(!app.enable_client_messages, "the flat value is not used");
    assert!(app.allowed_origins.is_empty());
}

/// `path_prefix` (file) < `PATH_PREFIX` (environment); Sockudo's default `/`
/// is no prefix; a bad one stops start-up naming the key and variable.
#[test]
fn path_prefix_from_file_and_environment() {
    assert_eq!(cfg(None, &[]).unwrap().path_prefix, "");
    let file = r#"{"path_prefix": "/"}"#;
    assert_eq!(cfg(Some(file), &[]).unwrap().path_prefix, "");
    let file = r#"{"path_prefix": "/from-file"}"#;
    let c = cfg(Some(file), &[]).unwrap();
    assert_eq!(c.path_prefix, "/from-file");
    assert!(
        c.summary().contains(" path_prefix=/from-file "),
        "{}",
        c.summary()
    );
    let c = cfg(Some(file), &[("PATH_PREFIX", "/from-env")]).unwrap();
    assert_eq!(c.path_prefix, "/from-env");
    assert!(
        !c.warnings.iter().any(|w| w.contains("path_prefix")),
        "{:?}",
        c.warnings
    );
    let e = cfg(None, &[("PATH_PREFIX", "/ws/")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("path_prefix (PATH_PREFIX)") && e.contains("end with /"),
        "{e}"
    );
}

/// The database app manager: the driver's spellings, Sockudo's
/// `database.mysql` / `database.postgres` blocks under the environment,
/// each database's defaults, and no development app in its place.
#[test]
fn database_app_manager_from_file_and_environment() {
    for (name, driver) in [
        ("mysql", AppManagerDriver::Mysql),
        ("pgsql", AppManagerDriver::Postgres),
        ("postgres", AppManagerDriver::Postgres),
        ("PostgreSQL", AppManagerDriver::Postgres),
    ] {
        let c = cfg(None, &[("APP_MANAGER_DRIVER", name)]).unwrap();
        assert_eq!(c.app_manager.driver, driver, "{name}");
        assert!(c.apps.is_empty() && !c.dev_credentials, "{name}");
        assert!(!c.warnings.iter().any(|w| w.contains("app manager")));
    }
    let c = cfg(None, &[("APP_MANAGER_DRIVER", "pgsql")]).unwrap();
    let pg = c.database().unwrap();
    assert_eq!((pg.port, pg.username.as_str()), (5432, "postgres"));
    assert_eq!(
        (pg.database.as_str(), pg.table_name.as_str()),
        ("sockudo", "applications")
    );
    assert_eq!(c.mysql.port, 3306);
    assert_eq!(c.app_manager.cache_ttl, 300);

    let file = r#"{"app_manager": {"driver": "mysql", "cache": {"ttl": 7}},
        "database": {"mysql": {"host": "db", "port": "3307", "username": "u",
            "password": "p", "database": "d", "table_name": "apps", "connection_pool_size": 4,
            "cache_ttl": 60}}}"#;
    let c = cfg(Some(file), &[]).unwrap();
    let config_warnings: Vec<&String> = c
        .warnings
        .iter()
        .filter(|w| w.starts_with("config file"))
        .collect();
    assert_eq!(
        config_warnings,
        ["config file config.json: database.mysql.cache_ttl: not supported by Switchyard, ignored"],
        "app_manager.cache is read; the database's own cache keys are not"
    );
    let my = c.database().unwrap();
    assert_eq!(
        (my.host.as_str(), my.port, my.username.as_str()),
        ("db", 3307, "u")
    );
    assert_eq!(my.password.as_deref(), Some("p"));
    assert_eq!(
        (my.database.as_str(), my.table_name.as_str()),
        ("d", "apps")
    );
    assert_eq!((my.pool_min, my.pool_max), (0, 4));
    assert_eq!(c.app_manager.cache_ttl, 7);
    assert!(!format!("{c:?}").contains("\"p\""), "password redacted");

    let c = cfg(
        Some(file),
        &[
            ("DATABASE_MYSQL_HOST", "env-db"),
            ("DATABASE_MYSQL_PORT", "3308"),
            ("DATABASE_MYSQL_USERNAME", "eu"),
            ("DATABASE_MYSQL_DATABASE", "ed"),
            ("DATABASE_MYSQL_TABLE_NAME", "tenant.apps"),
            ("DATABASE_MYSQL_POOL_MIN", "1"),
            ("DATABASE_MYSQL_POOL_MAX", "3"),
            ("APP_MANAGER_CACHE_TTL", "1"),
        ],
    )
    .unwrap();
    let my = c.database().unwrap();
    assert_eq!(
        (
            my.host.as_str(),
            my.port,
            my.username.as_str(),
            my.database.as_str()
        ),
        ("env-db", 3308, "eu", "ed")
    );
    assert_eq!(
        (my.table_name.as_str(), my.pool_min, my.pool_max),
        ("tenant.apps", 1, 3)
    );
    assert_eq!(c.app_manager.cache_ttl, 1);
    let c = cfg(
        Some(r#"{"app_manager": {"driver": "pgsql", "cache": {"enabled": false}}}"#),
        &[("DATABASE_POSTGRES_TABLE_NAME", "t1")],
    )
    .unwrap();
    assert_eq!(c.app_manager.cache_ttl, 0);
    assert_eq!(c.database().unwrap().table_name, "t1");
    // CACHE_TTL_SECONDS does not turn a disabled app cache back on.
    let c = cfg(
        Some(r#"{"app_manager": {"driver": "pgsql", "cache": {"enabled": false}}}"#),
        &[("CACHE_TTL_SECONDS", "60")],
    )
    .unwrap();
    assert_eq!(c.app_manager.cache_ttl, 0);
}

/// Sockudo's shared settings reach the app databases: CACHE_TTL_SECONDS
/// is the app cache's TTL too (APP_MANAGER_CACHE_TTL wins), and the
/// shared pool bounds apply under each database's own.
#[test]
fn sockudo_shared_cache_and_pool_settings_reach_the_app_databases() {
    let c = cfg(
        None,
        &[("APP_MANAGER_DRIVER", "mysql"), ("CACHE_TTL_SECONDS", "42")],
    )
    .unwrap();
    assert_eq!(
        (c.app_manager.cache_ttl, c.channel_limits.cache_ttl),
        (42, 42)
    );
    let c = cfg(
        None,
        &[
            ("APP_MANAGER_DRIVER", "mysql"),
            ("CACHE_TTL_SECONDS", "42"),
            ("APP_MANAGER_CACHE_TTL", "5"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.app_manager.cache_ttl, c.channel_limits.cache_ttl),
        (5, 42)
    );

    let pools = |c: &Config| {
        (
            (c.mysql.pool_min, c.mysql.pool_max),
            (c.postgres.pool_min, c.postgres.pool_max),
        )
    };
    let env = [
        ("DATABASE_POOL_MIN", "2"),
        ("DATABASE_POOL_MAX", "7"),
        ("DATABASE_POSTGRES_POOL_MAX", "9"),
    ];
    assert_eq!(pools(&cfg(None, &env).unwrap()), ((2, 7), (2, 9)));
    let off = [
        ("DATABASE_POOLING_ENABLED", "false"),
        ("DATABASE_POOL_MIN", "2"),
        ("DATABASE_POOL_MAX", "7"),
        ("DATABASE_CONNECTION_POOL_SIZE", "4"),
    ];
    assert_eq!(pools(&cfg(None, &off).unwrap()), ((0, 4), (0, 4)));
    let size = [
        ("DATABASE_CONNECTION_POOL_SIZE", "4"),
        ("DATABASE_POOL_MAX", "6"),
    ];
    assert_eq!(pools(&cfg(None, &size).unwrap()), ((0, 6), (0, 6)));

    // The file's database_pooling, under each database's own keys.
    let file = r#"{"database_pooling": {"enabled": true, "min": 1, "max": 8},
        "database": {"mysql": {"pool_max": 3}, "postgres": {"connection_pool_size": 5}}}"#;
    let c = cfg(Some(file), &[]).unwrap();
    assert_eq!(pools(&c), ((1, 3), (1, 8)));
    assert!(
        !c.warnings.iter().any(|w| w.contains("database_pooling")),
        "{:?}",
        c.warnings
    );
    let file = r#"{"database_pooling": {"enabled": false, "min": 1, "max": 8},
        "database": {"postgres": {"connection_pool_size": 5}}}"#;
    assert_eq!(pools(&cfg(Some(file), &[]).unwrap()), ((0, 10), (0, 5)));
}

#[test]
fn database_table_names_and_pools_are_checked() {
    for (var, value) in [
        ("DATABASE_MYSQL_TABLE_NAME", "apps; DROP TABLE x"),
        ("DATABASE_MYSQL_TABLE_NAME", "a.b.c"),
        ("DATABASE_MYSQL_TABLE_NAME", "1apps"),
        ("DATABASE_MYSQL_POOL_MAX", "0"),
    ] {
        let err = cfg(None, &[("APP_MANAGER_DRIVER", "mysql"), (var, value)]).unwrap_err();
        assert!(err.to_string().contains(var), "{var}={value}: {err}");
    }
    let err = cfg(
        None,
        &[
            ("APP_MANAGER_DRIVER", "pgsql"),
            ("DATABASE_POSTGRES_POOL_MIN", "5"),
            ("DATABASE_POSTGRES_POOL_MAX", "2"),
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("DATABASE_POSTGRES_POOL_MIN"),
        "{err}"
    );
    // The memory driver does not look at the databases.
    assert!(cfg(None, &[("DATABASE_MYSQL_TABLE_NAME", "a.b.c")]).is_ok());
}
