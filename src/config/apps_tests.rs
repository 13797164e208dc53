//! App resolution: inline apps, the env default app, the dev fallback, validation.

use crate::config::tests::cfg;
use crate::config::{app_from_row, AppRow, AppSource, Config, ConfigError};
use switchyard_actors::app::App;
use switchyard_actors::app::AppLimits;

const APP: &str = r#""id": "a", "key": "ka", "secret": "sa""#;

fn apps_json(apps: &[&str]) -> String {
    format!(
        r#"{{"app_manager": {{"array": {{"apps": [{}]}}}}}}"#,
        apps.join(",")
    )
}

fn one(c: &Config) -> &App {
    assert_eq!(
        c.apps.len(),
        1,
        "{:?}",
        c.apps.iter().map(|a| &a.id).collect::<Vec<_>>()
    );
    &c.apps[0]
}

fn invalid_key(result: Result<Config, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid { key, .. }) => key,
        Err(other) => panic!("expected Invalid, got {other}"),
        Ok(_) => panic!("expected Invalid, got a config"),
    }
}

const CREDS: [(&str, &str); 3] = [
    ("SOCKUDO_DEFAULT_APP_ID", "env-app"),
    ("SOCKUDO_DEFAULT_APP_KEY", "env-key"),
    ("SOCKUDO_DEFAULT_APP_SECRET", "env-secret"),
];

#[test]
fn inline_app_fields_map_onto_app() {
    let json = apps_json(&[&format!(
        r#"{{{APP}, "enabled": true, "max_connections": "10000", "enable_client_messages": true,
            "max_client_events_per_second": 50, "decay_seconds": 2, "terminate_on_limit": true,
            "max_backend_events_per_second": 1000, "max_read_requests_per_second": "30",
            "max_presence_members_per_channel": 20, "max_presence_member_size_in_kb": 4,
            "max_channel_name_length": 150, "max_event_channels_at_once": 5,
            "max_event_name_length": 60, "max_event_payload_in_kb": 20, "max_event_batch_size": 3,
            "enable_user_authentication": true, "enable_watchlist_events": true,
            "enable_subscription_count": true,
            "allowed_origins": [" https://app.example.com ", "*.staging.example.com"],
            "webhooks": [{{"url": "https://hook", "event_types": ["member_added"]}}], "message_rate_limit": {{"enabled": true}}}}"#
    )]);
    let c = cfg(Some(&json), &[]).unwrap();
    assert!(!c.dev_credentials);
    assert_eq!(c.webhooks.apps["a"].len(), 1, "the app's webhook is read");
    let app = one(&c);
    assert_eq!(
        (app.id.as_ref(), app.key.as_str(), app.secret.expose()),
        ("a", "ka", "sa")
    );
    assert!(app.enabled && app.enable_client_messages);
    assert!(app.enable_user_authentication && app.enable_watchlist_events);
    assert!(app.enable_subscription_count);
    assert_eq!(
        app.allowed_origins,
        vec!["https://app.example.com", "*.staging.example.com"]
    );
    let l = &app.limits;
    assert_eq!(l.max_connections, 10000);
    assert_eq!(
        (l.max_client_events_per_second, l.client_event_window_secs),
        (50, 2)
    );
    assert!(l.terminate_on_limit);
    assert_eq!(
        (
            l.max_backend_events_per_second,
            l.max_read_requests_per_second
        ),
        (1000, 30)
    );
    assert_eq!(
        (
            l.max_presence_members_per_channel,
            l.max_presence_member_size_bytes
        ),
        (20, 4096)
    );
    assert_eq!(
        (l.max_channel_name_length, l.max_event_channels_at_once),
        (150, 5)
    );
    assert_eq!(
        (l.max_event_name_length, l.max_event_payload_bytes),
        (60, 20 * 1024)
    );
    assert_eq!(l.max_event_batch_size, 3);
}

#[test]
fn omitted_app_fields_use_sockudo_defaults_and_global_fallbacks() {
    let json = format!(
        r#"{{"presence": {{"max_members_per_channel": 7, "max_member_size_in_kb": 3}},
            "channel_limits": {{"max_name_length": 99}},
            "event_limits": {{"max_channels_at_once": 8, "max_name_length": 77,
                              "max_payload_in_kb": 9, "max_batch_size": 4}},
            "app_manager": {{"array": {{"apps": [{{{APP}, "max_event_batch_size": null}}]}}}}}}"#
    );
    let c = cfg(Some(&json), &[]).unwrap();
    let app = one(&c);
    assert!(
        !app.enabled,
        "Sockudo defaults an omitted `enabled` to false"
    );
    assert!(!app.enable_client_messages && !app.enable_user_authentication);
    assert!(app.allowed_origins.is_empty());
    let l = &app.limits;
    assert_eq!(l.max_connections, 0);
    assert_eq!(
        (l.max_client_events_per_second, l.client_event_window_secs),
        (0, 1)
    );
    assert_eq!(
        (
            l.max_backend_events_per_second,
            l.max_read_requests_per_second
        ),
        (0, 0)
    );
    assert_eq!(
        (
            l.max_presence_members_per_channel,
            l.max_presence_member_size_bytes
        ),
        (7, 3072)
    );
    assert_eq!(
        (l.max_channel_name_length, l.max_event_channels_at_once),
        (99, 8)
    );
    assert_eq!(
        (l.max_event_name_length, l.max_event_payload_bytes),
        (77, 9 * 1024)
    );
    assert_eq!(l.max_event_batch_size, 4, "null falls back too");
}

#[test]
fn nested_policy_shape_is_read() {
    let json = apps_json(&[&format!(
        r#"{{{APP}, "enabled": true, "max_connections": 1,
            "policy": {{"limits": {{"max_connections": "25", "max_client_events_per_second": 5}},
                        "features": {{"enable_client_messages": true}},
                        "channels": {{"allowed_origins": ["https://x.test"]}}}}}}"#
    )]);
    let c = cfg(Some(&json), &[]).unwrap();
    let app = one(&c);
    assert_eq!(
        app.limits.max_connections, 25,
        "flat fields are ignored when policy is set"
    );
    assert_eq!(app.limits.max_client_events_per_second, 5);
    assert!(app.enable_client_messages);
    assert_eq!(app.allowed_origins, vec!["https://x.test"]);
}

#[test]
fn env_app_replaces_inline_apps_with_env_path_defaults() {
    let json = format!(
        r#"{{"event_limits": {{"max_batch_size": 6}}, {}"#,
        &apps_json(&[&format!("{{{APP}, \"enabled\": true}}")])[1..]
    );
    let c = cfg(Some(&json), &CREDS).unwrap();
    assert!(!c.dev_credentials);
    let app = one(&c);
    assert_eq!(
        (app.id.as_ref(), app.key.as_str(), app.secret.expose()),
        ("env-app", "env-key", "env-secret")
    );
    assert!(app.enabled);
    assert!(!app.enable_client_messages);
    let l = &app.limits;
    assert_eq!(l.max_connections, 100);
    assert_eq!(l.max_client_events_per_second, 100);
    assert_eq!(l.max_backend_events_per_second, 100);
    assert_eq!(l.max_read_requests_per_second, 100);
    assert_eq!(l.client_event_window_secs, 1);
    assert_eq!(
        l.max_event_batch_size, 6,
        "global fallback, not Sockudo's 100"
    );
    assert_eq!(l.max_presence_member_size_bytes, 2048);
    assert_eq!(l.max_channel_name_length, 200);
    assert!(app.allowed_origins.is_empty());
}

#[test]
fn env_app_variables() {
    let mut vars = CREDS.to_vec();
    vars.extend([
        ("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "10000"),
        ("SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND", "10"),
        ("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "1000"),
        ("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", "0"),
        ("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL", "50"),
        ("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB", "1"),
        ("SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH", "120"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_CHANNELS_AT_ONCE", "11"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_NAME_LENGTH", "12"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "13"),
        ("SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE", "14"),
        ("SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION", "true"),
        ("SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS", "1"),
        ("SOCKUDO_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT", "yes"),
        (
            "SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS",
            "https://a.test, *.b.test",
        ),
        ("SOCKUDO_ENABLE_CLIENT_MESSAGES", "true"),
    ]);
    let c = cfg(None, &vars).unwrap();
    let app = one(&c);
    assert!(
        app.enable_client_messages,
        "legacy SOCKUDO_ENABLE_CLIENT_MESSAGES fallback"
    );
    assert!(app.enable_user_authentication && app.enable_watchlist_events);
    assert!(app.enable_subscription_count);
    assert_eq!(app.allowed_origins, vec!["https://a.test", "*.b.test"]);
    let l = &app.limits;
    assert_eq!(l.max_connections, 10000);
    assert_eq!(l.max_client_events_per_second, 10);
    assert_eq!(
        (
            l.max_backend_events_per_second,
            l.max_read_requests_per_second
        ),
        (1000, 0)
    );
    assert_eq!(
        (
            l.max_presence_members_per_channel,
            l.max_presence_member_size_bytes
        ),
        (50, 1024)
    );
    assert_eq!(
        (l.max_channel_name_length, l.max_event_channels_at_once),
        (120, 11)
    );
    assert_eq!(
        (l.max_event_name_length, l.max_event_payload_bytes),
        (12, 13 * 1024)
    );
    assert_eq!(l.max_event_batch_size, 14);

    vars.push(("SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "false"));
    vars.push(("SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS", " "));
    let c = cfg(None, &vars[..]).unwrap();
    let app = one(&c);
    assert!(
        !app.enable_client_messages,
        "the specific variable wins over the legacy one"
    );
    assert!(
        app.allowed_origins.is_empty(),
        "an empty list means unset (any origin)"
    );
}

#[test]
fn partial_credentials_are_refused_naming_the_missing_variables() {
    let err = cfg(None, &CREDS[..1]).unwrap_err().to_string();
    assert!(
        err.contains("SOCKUDO_DEFAULT_APP_KEY, SOCKUDO_DEFAULT_APP_SECRET not set"),
        "{err}"
    );
    let err = cfg(None, &[CREDS[0], CREDS[2]]).unwrap_err().to_string();
    assert!(
        err.contains("SOCKUDO_DEFAULT_APP_KEY not set") && !err.contains("SECRET not"),
        "{err}"
    );
    let mut vars = CREDS[..1].to_vec();
    vars.push(("SOCKUDO_DEFAULT_APP_ENABLED", "false"));
    assert!(
        cfg(None, &vars).is_ok(),
        "a disabled default app is not checked"
    );
}

#[test]
fn a_disabled_default_app_is_served_disabled_never_as_the_dev_app() {
    let json = apps_json(&[&format!("{{{APP}, \"enabled\": true}}")]);
    for file in [None, Some(json.as_str())] {
        for off in ["false", "off", "0"] {
            let mut vars = CREDS.to_vec();
            vars.push(("SOCKUDO_DEFAULT_APP_ENABLED", off));
            let c = cfg(file, &vars).unwrap();
            assert!(!c.dev_credentials, "{file:?} {off}");
            let app = one(&c);
            assert_eq!(&*app.id, "env-app", "the env app replaces inline apps");
            assert!(!app.enabled, "{file:?} {off}: served, but disabled");
            assert_eq!(c.app_sources, vec![AppSource::Env]);
            assert!(
                c.warnings
                    .iter()
                    .any(|w| w.contains("app env-app (env) is disabled")),
                "{:?}",
                c.warnings
            );
            assert!(c.summary().contains("apps=[env-app(env,disabled)]"));
        }
    }
    // In production mode too, and whatever SWITCHYARD_DEV_APP says.
    let mut vars = CREDS.to_vec();
    vars.extend([
        ("SOCKUDO_DEFAULT_APP_ENABLED", "false"),
        ("ENVIRONMENT", "production"),
        ("SWITCHYARD_DEV_APP", "true"),
    ]);
    let c = cfg(None, &vars).unwrap();
    assert!(!one(&c).enabled && !c.dev_credentials);
}

#[test]
fn clearing_every_app_serves_nothing_rather_than_the_dev_app() {
    let json = apps_json(&[&format!("{{{APP}, \"enabled\": true}}")]);
    assert_eq!(&*one(&cfg(Some(&json), &[]).unwrap()).id, "a");
    for vars in [
        [("SOCKUDO_DEFAULT_APP_ENABLED", "false")],
        [("SOCKUDO_SKIP_INLINE_APPS", "true")],
        [("APP_MANAGER_REGISTER_INLINE_APPS", "false")],
    ] {
        let c = cfg(Some(&json), &vars).unwrap();
        assert!(!c.dev_credentials, "{vars:?}");
        assert!(c.apps.is_empty(), "{vars:?}");
        assert!(
            c.warnings.iter().any(|w| w.contains("no enabled app")),
            "{:?}",
            c.warnings
        );
    }
    // ENABLED=false with no file and no credentials: disabled, not the dev app.
    let c = cfg(None, &[("SOCKUDO_DEFAULT_APP_ENABLED", "false")]).unwrap();
    assert!(c.apps.is_empty() && !c.dev_credentials);
    let c = cfg(Some(&json), &[("APP_MANAGER_REGISTER_INLINE_APPS", "true")]).unwrap();
    assert_eq!(&*one(&c).id, "a");
    assert_eq!(c.app_sources, vec![AppSource::File(0)]);
    assert!(
        c.summary().contains("apps=[a(file:apps[0])]"),
        "{}",
        c.summary()
    );
}

#[test]
fn the_dev_app_needs_an_unset_mode_or_an_explicit_switch() {
    // Nothing set: the newcomer's first run starts, in development mode.
    let c = cfg(None, &[]).unwrap();
    assert!(c.dev_credentials);
    assert_eq!(c.mode, "development");
    assert_eq!(c.app_sources, vec![AppSource::Development]);
    // ENABLED=true without credentials is no app either.
    let c = cfg(None, &[("SOCKUDO_DEFAULT_APP_ENABLED", "true")]).unwrap();
    assert!(c.dev_credentials);
    // An explicit non-production mode keeps its name.
    let c = cfg(None, &[("ENVIRONMENT", "staging")]).unwrap();
    assert!(c.dev_credentials);
    assert_eq!(c.mode, "staging");

    // Production, from the environment or the file: refused, with the fix.
    for (file, vars) in [
        (None, vec![("ENVIRONMENT", "production")]),
        (None, vec![("ENVIRONMENT", "Production")]),
        (Some(r#"{"mode": "production"}"#), vec![]),
        (None, vec![("SWITCHYARD_DEV_APP", "false")]),
    ] {
        let err = cfg(file, &vars).err().map(|e| e.to_string());
        let err = err.unwrap_or_else(|| panic!("{file:?} {vars:?} must refuse"));
        assert!(err.contains("SOCKUDO_DEFAULT_APP_ID"), "{err}");
        assert!(err.contains("openssl rand -hex 32"), "{err}");
    }
    // ... unless asked for explicitly.
    let c = cfg(
        None,
        &[("ENVIRONMENT", "production"), ("SWITCHYARD_DEV_APP", "yes")],
    )
    .unwrap();
    assert!(c.dev_credentials);
    assert_eq!(c.mode, "production");
    // A configured app is served in production as usual.
    let mut vars = CREDS.to_vec();
    vars.push(("ENVIRONMENT", "production"));
    let c = cfg(None, &vars).unwrap();
    assert_eq!(&*one(&c).id, "env-app");
    assert!(one(&c).enabled && !c.dev_credentials);
}

#[test]
fn dev_app_is_permissive_with_global_limits() {
    let c = cfg(Some(r#"{"event_limits": {"max_batch_size": 5}}"#), &[]).unwrap();
    assert!(c.dev_credentials);
    assert!(
        c.warnings.iter().any(|w| w.contains("development app")),
        "{:?}",
        c.warnings
    );
    let app = one(&c);
    assert_eq!(
        (app.id.as_ref(), app.key.as_str(), app.secret.expose()),
        ("app-id", "app-key", "app-secret")
    );
    assert!(app.enabled && app.enable_client_messages);
    assert_eq!(app.limits.max_connections, 0);
    assert_eq!(app.limits.max_event_batch_size, 5);
}

#[test]
fn invalid_apps_are_named_by_key() {
    let bad = |app: &str| invalid_key(cfg(Some(&apps_json(&[app])), &[]));
    assert_eq!(
        bad(r#"{"id": "", "key": "k", "secret": "s"}"#),
        "app_manager.array.apps[0].id"
    );
    assert_eq!(
        bad(r#"{"id": "a", "key": " ", "secret": "s"}"#),
        "app_manager.array.apps[0].key"
    );
    assert_eq!(
        bad(r#"{"id": "a", "key": "k"}"#),
        "app_manager.array.apps[0].secret"
    );
    for field in [
        "max_channel_name_length",
        "max_event_channels_at_once",
        "max_event_name_length",
        "max_event_payload_in_kb",
        "max_event_batch_size",
        "max_presence_members_per_channel",
        "max_presence_member_size_in_kb",
    ] {
        let app = format!(r#"{{{APP}, "{field}": 0}}"#);
        assert_eq!(bad(&app), format!("app_manager.array.apps[0].{field}"));
    }
    let app = format!(r#"{{{APP}, "max_client_events_per_second": 5, "decay_seconds": 0}}"#);
    assert_eq!(bad(&app), "app_manager.array.apps[0].decay_seconds");
    let app = format!(r#"{{{APP}, "decay_seconds": 0}}"#);
    assert!(
        cfg(Some(&apps_json(&[&app])), &[]).is_ok(),
        "no limiter, no window needed"
    );
    // Origin patterns are parsed with the file, so the error is the file's,
    // naming the key path and the pattern.
    let app = format!(r#"{{{APP}, "allowed_origins": ["https://ok.test", "*.*.bad"]}}"#);
    let err = cfg(Some(&apps_json(&[&app])), &[]).unwrap_err().to_string();
    assert!(
        err.contains(r#"app_manager.array.apps[0].allowed_origins[1]: "*.*.bad": at most one `*`"#),
        "{err}"
    );
}

#[test]
fn duplicate_ids_and_keys_are_refused() {
    let a = r#"{"id": "a", "key": "k1", "secret": "s"}"#;
    let same_id = r#"{"id": "a", "key": "k2", "secret": "s"}"#;
    let same_key = r#"{"id": "b", "key": "k1", "secret": "s"}"#;
    let err = cfg(Some(&apps_json(&[a, same_id])), &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid configuration: app_manager.array.apps[1].id: duplicate app id \"a\" \
         (also app_manager.array.apps[0].id)"
    );
    let err = cfg(Some(&apps_json(&[a, same_key])), &[]).unwrap_err();
    assert!(
        !err.to_string().contains("k1"),
        "keys are not echoed: {err}"
    );
    assert_eq!(invalid_key(Err(err)), "app_manager.array.apps[1].key");
}

#[test]
fn invalid_env_app_values_name_the_variable() {
    let mut vars = CREDS.to_vec();
    vars.push(("SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE", "0"));
    assert_eq!(
        invalid_key(cfg(None, &vars)),
        "SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE"
    );
    let mut vars = CREDS.to_vec();
    vars.push(("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "many"));
    match cfg(None, &vars) {
        Err(ConfigError::Env { var, .. }) => assert_eq!(var, "SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut vars = CREDS.to_vec();
    vars.push(("SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS", "https://"));
    match cfg(None, &vars) {
        Err(ConfigError::Env { var, .. }) => assert_eq!(var, "SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// A database row goes the config file's way: `policy` wins over the flat
/// columns, unset limits fall back to the global blocks, the checks apply.
#[test]
fn database_rows_are_apps_like_the_file_ones() {
    let base = AppLimits::default();
    let row = AppRow {
        id: "db1".into(),
        key: "dbkey".into(),
        secret: "dbsecret".into(),
        enabled: Some(true),
        max_connections: Some(5),
        enable_client_messages: Some(true),
        max_client_events_per_second: Some(10),
        max_event_batch_size: Some(3),
        allowed_origins: Some(serde_json::json!(["https://a.example"])),
        ..AppRow::default()
    };
    let (app, webhooks) = app_from_row(row.clone(), &base).unwrap();
    assert_eq!(webhooks, None);
    assert!(app.enabled && app.enable_client_messages);
    assert_eq!(app.limits.max_connections, 5);
    assert_eq!(app.limits.max_event_batch_size, 3);
    assert_eq!(
        app.limits.max_event_payload_bytes,
        base.max_event_payload_bytes
    );
    assert_eq!(app.allowed_origins.len(), 1);

    let with_policy = AppRow {
        policy: Some(serde_json::json!({
            "limits": {"max_connections": 7, "max_event_batch_size": 4},
            "features": {"enable_client_messages": false},
            "webhooks": [{"url": "https://h.example/hook", "event_types": ["channel_occupied"]}]
        })),
        ..row.clone()
    };
    let column =
        serde_json::json!([{"url": "https://column.example/", "event_types": ["cache_miss"]}]);
    let both = AppRow {
        webhooks: Some(column.clone()),
        ..with_policy.clone()
    };
    let (_, webhooks) = app_from_row(both, &base).unwrap();
    assert_eq!(
        webhooks.unwrap()[0]["url"],
        "https://h.example/hook",
        "policy.webhooks wins over the column"
    );
    let column_only = AppRow {
        webhooks: Some(column.clone()),
        ..row.clone()
    };
    let (_, webhooks) = app_from_row(column_only, &base).unwrap();
    assert_eq!(webhooks, Some(column));
    let (app, webhooks) = app_from_row(with_policy, &base).unwrap();
    assert!(webhooks.is_some());
    assert!(!app.enable_client_messages);
    assert_eq!(app.limits.max_connections, 7);
    assert_eq!(app.limits.max_event_batch_size, 4);
    assert!(app.allowed_origins.is_empty(), "policy.channels wins");

    let zero = AppRow {
        max_event_batch_size: Some(0),
        ..row.clone()
    };
    let err = app_from_row(zero, &base).unwrap_err();
    assert!(err.contains("column max_event_batch_size"), "{err}");
    let negative = AppRow {
        max_connections: Some(-1),
        ..row
    };
    assert!(app_from_row(negative, &base)
        .unwrap_err()
        .contains("column max_connections"));
}
