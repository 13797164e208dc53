//! Environment overrides, under Sockudo's variable names.
//!
//! Each variable overrides only its own field. Unlike Sockudo, a value that
//! does not parse is an error naming the variable, the value and what was
//! expected. The lookup is injected so tests never touch the process
//! environment; only `config::load` passes the real one.
//!
//! Secrets ([`SECRET_VARS`]) may instead be given as `<NAME>_FILE`, the path
//! of a file holding the value (the Docker / Kubernetes secrets convention),
//! so they need not sit in the environment, where `/proc/<pid>/environ`,
//! `docker inspect` and crash reports show them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::de::{parse_octal_mode, OCTAL_EXPECTED};
use super::error::ConfigError;
use super::Config;
use switchyard_actors::origin::OriginPattern;

/// The settings that also accept `<NAME>_FILE`. `REDIS_PASSWORD` is not a
/// Switchyard variable: Sockudo's example config file reads it through
/// `${REDIS_PASSWORD}`, and substitution goes through [`Env::raw`] too.
/// `REDIS_URL` may embed a password. The MySQL and Postgres passwords are
/// the database app manager's.
pub const SECRET_VARS: [&str; 6] = [
    "SOCKUDO_DEFAULT_APP_SECRET",
    "DATABASE_REDIS_PASSWORD",
    "REDIS_PASSWORD",
    "REDIS_URL",
    "DATABASE_MYSQL_PASSWORD",
    "DATABASE_POSTGRES_PASSWORD",
];

/// Reads variables through an injected lookup. An empty (or all-blank) value
/// counts as unset: docker-compose turns `${UNSET}` into `""`.
pub(crate) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Secrets read from the files their `<NAME>_FILE` names.
    from_files: HashMap<&'static str, String>,
}

/// Integer types readable from the environment, with the wording of the
/// "expected" part of the error.
pub(crate) trait EnvNum: FromStr {
    const EXPECTED: &'static str;
}

impl EnvNum for u16 {
    const EXPECTED: &'static str = "an integer 0-65535";
}
impl EnvNum for u32 {
    const EXPECTED: &'static str = "an integer 0-4294967295";
}
impl EnvNum for u64 {
    const EXPECTED: &'static str = "a non-negative integer";
}
impl EnvNum for usize {
    const EXPECTED: &'static str = "a non-negative integer";
}

impl<'a> Env<'a> {
    /// The environment seen through `lookup`, with every `<NAME>_FILE` of
    /// [`SECRET_VARS`] read now. The file's content is the value, less one
    /// trailing newline (`\n` or `\r\n`); an empty file is an empty value
    /// (unset, like `NAME=`). Errors: `NAME` and `NAME_FILE` both set, or a
    /// file that cannot be read (the message names the variable and the
    /// path, never the content).
    pub fn load(lookup: &'a dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let mut from_files = HashMap::new();
        for var in SECRET_VARS {
            let file_var = format!("{var}_FILE");
            let Some(path) = set(&file_var) else {
                continue;
            };
            if set(var).is_some() {
                return Err(ConfigError::SecretConflict {
                    var: var.to_string(),
                    file_var,
                });
            }
            let path = PathBuf::from(path.trim());
            let mut value =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                    file_var,
                    path,
                    source,
                })?;
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            from_files.insert(var, value);
        }
        Ok(Env { lookup, from_files })
    }

    /// The value as given: from its file for a secret set by `<NAME>_FILE`,
    /// else the variable. `${VAR}` substitution in the config file reads this.
    pub fn raw(&self, var: &str) -> Option<String> {
        match self.from_files.get(var) {
            Some(value) => Some(value.clone()),
            None => (self.lookup)(var),
        }
    }

    /// The value, `None` when unset or blank.
    pub fn string(&self, var: &str) -> Option<String> {
        self.raw(var).filter(|v| !v.trim().is_empty())
    }

    /// The value without surrounding whitespace, for names, hosts and paths
    /// (a stray space in `.env` should not break a bind or a lookup).
    pub fn word(&self, var: &str) -> Option<String> {
        self.string(var).map(|v| v.trim().to_string())
    }

    /// Lenient boolean: true/1/yes/on, false/0/no/off (any case).
    pub fn bool(&self, var: &str) -> Result<Option<bool>, ConfigError> {
        let Some(raw) = self.string(var) else {
            return Ok(None);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::env(
                var,
                raw,
                "a boolean (true/false, 1/0, yes/no, on/off)",
            )),
        }
    }

    pub fn num<T: EnvNum>(&self, var: &str) -> Result<Option<T>, ConfigError> {
        self.parsed(var, |s| s.parse().ok(), T::EXPECTED)
    }

    /// Parse with a `FromStr` whose error says what was expected (drivers, role).
    pub fn named<T: FromStr<Err = String>>(&self, var: &str) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.string(var) else {
            return Ok(None);
        };
        raw.parse()
            .map(Some)
            .map_err(|expected| ConfigError::env(var, raw, expected))
    }

    fn parsed<T>(
        &self,
        var: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.string(var) else {
            return Ok(None);
        };
        match parse(raw.trim()) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfigError::env(var, raw, expected)),
        }
    }

    /// Comma-separated list, items trimmed, empty items dropped; `None` when
    /// unset or when nothing is left.
    pub fn list(&self, var: &str) -> Option<Vec<String>> {
        let items: Vec<String> = self
            .string(var)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        (!items.is_empty()).then_some(items)
    }

    /// A list of origin patterns, each validated like the config file's.
    pub fn origins(&self, var: &str) -> Result<Option<Vec<OriginPattern>>, ConfigError> {
        let Some(list) = self.list(var) else {
            return Ok(None);
        };
        list.iter()
            .map(|pattern| {
                OriginPattern::parse(pattern).map_err(|why| {
                    let expected = format!("comma-separated origin patterns ({pattern:?}: {why})");
                    ConfigError::env(var, self.string(var).unwrap_or_default(), expected)
                })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// A buffer limit: a number, or `none`/`0` for unlimited.
    fn buffer_limit(&self, var: &str) -> Result<Option<Option<usize>>, ConfigError> {
        self.parsed(
            var,
            |s| match s.to_ascii_lowercase().as_str() {
                "none" | "0" => Some(None),
                n => n.parse().ok().map(Some),
            },
            "a non-negative integer, or none/0 for unlimited",
        )
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// Layer 3: apply every known variable to the config built from file and
/// defaults. Apps are handled by `apps::resolve` (they need the final globals).
pub(crate) fn apply(c: &mut Config, env: &Env) -> Result<(), ConfigError> {
    set(&mut c.host, env.word("HOST"));
    set(&mut c.port, env.num("PORT")?);
    set(&mut c.path_prefix, env.word("PATH_PREFIX"));
    set(&mut c.debug, env.bool("DEBUG_MODE")?);
    // `DEBUG` can only force debug on, as in Sockudo.
    if env.bool("DEBUG")? == Some(true) {
        c.debug = true;
    }
    set(&mut c.mode, env.word("ENVIRONMENT"));
    set(&mut c.activity_timeout, env.num("ACTIVITY_TIMEOUT")?);
    set(&mut c.pong_timeout, env.num("PONG_TIMEOUT")?);
    set(
        &mut c.max_channels_per_connection,
        env.num("MAX_CHANNELS_PER_CONNECTION")?,
    );
    set(
        &mut c.shutdown_grace_period,
        env.num("SHUTDOWN_GRACE_PERIOD")?,
    );
    set(
        &mut c.user_authentication_timeout,
        env.num("USER_AUTHENTICATION_TIMEOUT")?,
    );
    set(
        &mut c.websocket_max_payload_kb,
        env.num("WEBSOCKET_MAX_PAYLOAD_KB")?,
    );
    set(
        &mut c.http_max_header_size_kb,
        env.num("HTTP_MAX_HEADER_SIZE_KB")?,
    );
    set(&mut c.max_connections, env.num("SOCKUDO_MAX_CONNECTIONS")?);
    set(&mut c.registry_shards, env.num("REGISTRY_SHARDS")?);
    set(
        &mut c.health_check_timeout_ms,
        env.num("HEALTH_CHECK_TIMEOUT_MS")?,
    );
    set(&mut c.instance_id, env.word("INSTANCE_PROCESS_ID"));
    set(&mut c.server_role, env.named("SOCKUDO_SERVER_ROLE")?);
    set(&mut c.adapter_driver, env.named("ADAPTER_DRIVER")?);
    let health = &mut c.adapter.health;
    set(&mut health.enabled, env.bool("CLUSTER_HEALTH_ENABLED")?);
    let ms = |var| -> Result<Option<Duration>, ConfigError> {
        Ok(env.num::<u64>(var)?.map(Duration::from_millis))
    };
    set(
        &mut health.heartbeat_interval,
        ms("CLUSTER_HEALTH_HEARTBEAT_INTERVAL")?,
    );
    set(&mut health.node_timeout, ms("CLUSTER_HEALTH_NODE_TIMEOUT")?);
    set(
        &mut health.cleanup_interval,
        ms("CLUSTER_HEALTH_CLEANUP_INTERVAL")?,
    );

    let hooks = &mut c.webhooks;
    set(&mut hooks.batching, env.bool("WEBHOOK_BATCHING_ENABLED")?);
    set(&mut hooks.batch_duration, ms("WEBHOOK_BATCHING_DURATION")?);
    set(&mut hooks.batch_size, env.num("WEBHOOK_BATCHING_SIZE")?);
    set(&mut hooks.leave_grace, ms("WEBHOOK_LEAVE_GRACE_MS")?);
    if let Some(driver) = env.word("QUEUE_DRIVER") {
        c.queue_driver = Some(driver);
    }

    set(
        &mut c.http_api.usage_enabled,
        env.bool("HTTP_API_USAGE_ENABLED")?,
    );
    set(
        &mut c.http_api.request_limit_in_mb,
        env.num("HTTP_API_REQUEST_LIMIT_IN_MB")?,
    );
    set(
        &mut c.channel_limits.cache_ttl,
        env.num("CACHE_TTL_SECONDS")?,
    );
    set(
        &mut c.presence.update_rate_limit_per_member_per_second,
        env.num("PRESENCE_UPDATE_RATE_LIMIT_PER_MEMBER_PER_SECOND")?,
    );

    let ws = &mut c.websocket;
    set(
        &mut ws.max_messages,
        env.buffer_limit("WEBSOCKET_MAX_MESSAGES")?,
    );
    set(&mut ws.max_bytes, env.buffer_limit("WEBSOCKET_MAX_BYTES")?);
    set(
        &mut ws.disconnect_on_buffer_full,
        env.bool("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL")?,
    );

    let r = &mut c.redis;
    if let Some(url) = env.string("REDIS_URL") {
        r.url = Some(url);
    }
    set(&mut r.host, env.word("DATABASE_REDIS_HOST"));
    set(&mut r.port, env.num("DATABASE_REDIS_PORT")?);
    if let Some(user) = env.string("DATABASE_REDIS_USERNAME") {
        r.username = Some(user);
    }
    // The guide's `REDIS_PASSWORD` stands in when Sockudo's variable is unset.
    if let Some(password) = env
        .string("DATABASE_REDIS_PASSWORD")
        .or_else(|| env.string("REDIS_PASSWORD"))
    {
        r.password = Some(password);
    }
    set(&mut r.db, env.num("DATABASE_REDIS_DB")?);
    set(&mut r.key_prefix, env.string("DATABASE_REDIS_KEY_PREFIX"));

    // The databases of the app manager (APP_MANAGER_DRIVER=mysql|pgsql).
    // Sockudo's shared pool settings first, each database's own over them.
    let pool_size: Option<u32> = env.num("DATABASE_CONNECTION_POOL_SIZE")?;
    let (shared_min, shared_max): (Option<u32>, Option<u32>) =
        match env.bool("DATABASE_POOLING_ENABLED")? {
            Some(false) => (None, None),
            _ => (env.num("DATABASE_POOL_MIN")?, env.num("DATABASE_POOL_MAX")?),
        };
    for (db, prefix) in [
        (&mut c.mysql, "DATABASE_MYSQL"),
        (&mut c.postgres, "DATABASE_POSTGRES"),
    ] {
        let var = |field: &str| format!("{prefix}_{field}");
        set(&mut db.host, env.word(&var("HOST")));
        set(&mut db.port, env.num(&var("PORT"))?);
        set(&mut db.username, env.word(&var("USERNAME")));
        if let Some(password) = env.string(&var("PASSWORD")) {
            db.password = Some(password);
        }
        set(&mut db.database, env.word(&var("DATABASE")));
        set(&mut db.table_name, env.word(&var("TABLE_NAME")));
        set(&mut db.pool_max, pool_size);
        set(&mut db.pool_max, shared_max);
        set(&mut db.pool_min, shared_min);
        set(&mut db.pool_min, env.num(&var("POOL_MIN"))?);
        set(&mut db.pool_max, env.num(&var("POOL_MAX"))?);
    }
    // Sockudo's CACHE_TTL_SECONDS is every cache's TTL, the app cache's
    // too (unless the config file turned that cache off);
    // APP_MANAGER_CACHE_TTL is the app cache's alone and wins.
    if c.app_manager.cache_ttl != 0 {
        set(&mut c.app_manager.cache_ttl, env.num("CACHE_TTL_SECONDS")?);
    }
    set(
        &mut c.app_manager.cache_ttl,
        env.num("APP_MANAGER_CACHE_TTL")?,
    );

    let rl = &mut c.rate_limiter;
    set(&mut rl.enabled, env.bool("RATE_LIMITER_ENABLED")?);
    set(&mut rl.driver, env.named("RATE_LIMITER_DRIVER")?);
    set(
        &mut rl.api_rate_limit.max_requests,
        env.num("RATE_LIMITER_API_MAX_REQUESTS")?,
    );
    set(
        &mut rl.api_rate_limit.window_seconds,
        env.num("RATE_LIMITER_API_WINDOW_SECONDS")?,
    );
    set(
        &mut rl.api_rate_limit.trust_hops,
        env.num("RATE_LIMITER_API_TRUST_HOPS")?,
    );
    set(
        &mut rl.websocket_rate_limit.max_requests,
        env.num("RATE_LIMITER_WS_MAX_REQUESTS")?,
    );
    set(
        &mut rl.websocket_rate_limit.window_seconds,
        env.num("RATE_LIMITER_WS_WINDOW_SECONDS")?,
    );
    set(
        &mut rl.websocket_rate_limit.trust_hops,
        env.num("RATE_LIMITER_WS_TRUST_HOPS")?,
    );
    set(
        &mut rl.redis.prefix,
        env.string("RATE_LIMITER_REDIS_PREFIX"),
    );

    let ssl = &mut c.ssl;
    set(&mut ssl.enabled, env.bool("SSL_ENABLED")?);
    set(&mut ssl.cert_path, env.word("SSL_CERT_PATH"));
    set(&mut ssl.key_path, env.word("SSL_KEY_PATH"));
    set(&mut ssl.redirect_http, env.bool("SSL_REDIRECT_HTTP")?);
    set(&mut ssl.http_port, env.num("SSL_HTTP_PORT")?);
    if let Some(domain) = env.word("DOMAIN") {
        ssl.domain = Some(domain);
    }

    let cors = &mut c.cors;
    set(&mut cors.origin, env.origins("CORS_ORIGINS")?);
    set(&mut cors.methods, env.list("CORS_METHODS"));
    set(&mut cors.allowed_headers, env.list("CORS_HEADERS"));
    if let Some(credentials) = env.bool("CORS_CREDENTIALS")? {
        cors.credentials = Some(credentials);
    }

    let unix = &mut c.unix_socket;
    set(&mut unix.enabled, env.bool("UNIX_SOCKET_ENABLED")?);
    set(&mut unix.path, env.word("UNIX_SOCKET_PATH"));
    set(
        &mut unix.permission_mode,
        env.parsed(
            "UNIX_SOCKET_PERMISSION_MODE",
            parse_octal_mode,
            OCTAL_EXPECTED,
        )?,
    );

    let m = &mut c.metrics;
    set(&mut m.enabled, env.bool("METRICS_ENABLED")?);
    set(&mut m.host, env.word("METRICS_HOST"));
    set(&mut m.port, env.num("METRICS_PORT")?);
    set(&mut m.prefix, env.string("METRICS_PROMETHEUS_PREFIX"));

    let log = &mut c.logging;
    if let Some(format) = env.string("LOG_OUTPUT_FORMAT") {
        log.json = format.trim().eq_ignore_ascii_case("json");
    }
    set(&mut log.colors_enabled, env.bool("LOG_COLORS_ENABLED")?);
    set(&mut log.include_target, env.bool("LOG_INCLUDE_TARGET")?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with<R>(vars: &[(&str, &str)], f: impl FnOnce(&Env) -> R) -> R {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| map.get(k).cloned();
        f(&Env::load(&lookup).unwrap())
    }

    /// A file with `content` in a fresh temp directory; the directory is
    /// removed by the caller.
    fn secret_file(test: &str, content: &[u8]) -> (PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-secret-{test}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, content).unwrap();
        let path_str = path.to_string_lossy().into_owned();
        (dir, path_str)
    }

    fn load(vars: &[(&str, &str)]) -> Result<HashMap<String, Option<String>>, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| map.get(k).cloned();
        let env = Env::load(&lookup)?;
        Ok(["DATABASE_REDIS_PASSWORD", "REDIS_URL", "PORT"]
            .into_iter()
            .map(|v| (v.to_string(), env.raw(v)))
            .collect())
    }

    #[test]
    fn secrets_are_read_from_their_file_less_one_trailing_newline() {
        for (content, want) in [
            ("s3cret", "s3cret"),
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret\n\n", "s3cret\n"),
            ("s3cret\r", "s3cret\r"),
            (" s3 cret \n", " s3 cret "),
            ("line1\nline2\n", "line1\nline2"),
        ] {
            let (dir, path) = secret_file("trim", content.as_bytes());
            let got = load(&[("DATABASE_REDIS_PASSWORD_FILE", &path)]).unwrap();
            assert_eq!(
                got["DATABASE_REDIS_PASSWORD"].as_deref(),
                Some(want),
                "{content:?}"
            );
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn an_empty_file_is_an_empty_value() {
        for content in ["", "\n", "\r\n"] {
            let (dir, path) = secret_file("empty", content.as_bytes());
            let map: HashMap<String, String> =
                HashMap::from([("REDIS_URL_FILE".to_string(), path.clone())]);
            let lookup = move |k: &str| map.get(k).cloned();
            let env = Env::load(&lookup).unwrap();
            assert_eq!(env.raw("REDIS_URL").as_deref(), Some(""), "{content:?}");
            assert_eq!(
                env.string("REDIS_URL"),
                None,
                "like REDIS_URL= ({content:?})"
            );
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_blank_name_or_name_file_counts_as_unset() {
        let (dir, path) = secret_file("blank", b"from-file\n");
        // `NAME=` next to `NAME_FILE` (docker-compose's `${UNSET}`): the file wins.
        let got = load(&[
            ("DATABASE_REDIS_PASSWORD", " "),
            ("DATABASE_REDIS_PASSWORD_FILE", &path),
        ])
        .unwrap();
        assert_eq!(got["DATABASE_REDIS_PASSWORD"].as_deref(), Some("from-file"));
        // `NAME_FILE=` next to `NAME`: the variable.
        let got = load(&[
            ("DATABASE_REDIS_PASSWORD", "from-env"),
            ("DATABASE_REDIS_PASSWORD_FILE", ""),
        ])
        .unwrap();
        assert_eq!(got["DATABASE_REDIS_PASSWORD"].as_deref(), Some("from-env"));
        // only the listed secrets have a `_FILE`
        let got = load(&[("PORT_FILE", &path)]).unwrap();
        assert_eq!(got["PORT"], None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn name_and_name_file_together_are_refused_naming_both() {
        let (dir, path) = secret_file("both", b"from-file");
        let err = load(&[("REDIS_URL", "redis://x"), ("REDIS_URL_FILE", &path)]).unwrap_err();
        assert!(matches!(err, ConfigError::SecretConflict { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("REDIS_URL and REDIS_URL_FILE are both set"),
            "{msg}"
        );
        assert!(
            !msg.contains("from-file") && !msg.contains("redis://x"),
            "{msg}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_files_are_refused_naming_variable_and_path_never_content() {
        let (dir, path) = secret_file("unreadable", b"hunter2\xff\n");
        let missing = dir.join("missing").to_string_lossy().into_owned();
        let dir_path = dir.to_string_lossy().into_owned();
        for bad in [&missing, &dir_path, &path] {
            let err = load(&[("DATABASE_REDIS_PASSWORD_FILE", bad)]).unwrap_err();
            assert!(matches!(err, ConfigError::SecretFile { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!(
                    "environment variable DATABASE_REDIS_PASSWORD_FILE={bad}: cannot read the file: "
                )),
                "{msg}"
            );
            assert!(!msg.contains("hunter2"), "{msg}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn booleans_are_lenient_but_not_anything_goes() {
        for (raw, want) in [("TRUE", true), ("1", true), ("yes", true), (" On ", true)]
            .into_iter()
            .chain([
                ("false", false),
                ("0", false),
                ("No", false),
                ("OFF", false),
            ])
        {
            assert_eq!(
                with(&[("B", raw)], |e| e.bool("B").unwrap()),
                Some(want),
                "{raw}"
            );
        }
        assert_eq!(with(&[("B", "")], |e| e.bool("B").unwrap()), None);
        assert_eq!(with(&[], |e| e.bool("B").unwrap()), None);
        let err = with(&[("B", "maybe")], |e| e.bool("B").unwrap_err()).to_string();
        assert_eq!(
            err,
            "environment variable B=\"maybe\": expected a boolean (true/false, 1/0, yes/no, on/off)"
        );
    }

    #[test]
    fn numbers_name_the_variable_value_and_range() {
        assert_eq!(
            with(&[("PORT", " 7001 ")], |e| e.num::<u16>("PORT").unwrap()),
            Some(7001)
        );
        let err = with(&[("PORT", "abc")], |e| e.num::<u16>("PORT").unwrap_err());
        assert_eq!(
            err.to_string(),
            "environment variable PORT=\"abc\": expected an integer 0-65535"
        );
        assert!(with(&[("PORT", "70000")], |e| e.num::<u16>("PORT")).is_err());
        assert!(with(&[("N", "-1")], |e| e.num::<u64>("N")).is_err());
    }

    #[test]
    fn lists_are_trimmed_and_empty_means_unset() {
        let l = with(&[("L", " a , b,,c ")], |e| e.list("L"));
        assert_eq!(l, Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(with(&[("L", " , ")], |e| e.list("L")), None);
        assert_eq!(with(&[("L", "")], |e| e.list("L")), None);
    }

    #[test]
    fn origin_lists_are_validated() {
        let ok = with(&[("O", "https://a.test, *.b.test")], |e| {
            e.origins("O").unwrap()
        });
        assert_eq!(ok.unwrap().len(), 2);
        let err = with(&[("O", "https://a.test,*..b")], |e| {
            e.origins("O").unwrap_err()
        });
        let msg = err.to_string();
        assert!(
            msg.starts_with("environment variable O=\"https://a.test,*..b\""),
            "{msg}"
        );
        assert!(msg.contains("\"*..b\""), "{msg}");
    }

    #[test]
    fn buffer_limits_accept_none_and_zero() {
        let get = |v: &str| with(&[("W", v)], |e| e.buffer_limit("W"));
        assert_eq!(get("none").unwrap(), Some(None));
        assert_eq!(get("NONE").unwrap(), Some(None));
        assert_eq!(get("0").unwrap(), Some(None));
        assert_eq!(get("250").unwrap(), Some(Some(250)));
        assert!(get("many").is_err());
    }

    #[test]
    fn drivers_and_role_from_env() {
        use crate::config::drivers::{AdapterDriver, ServerRole};
        let d: Option<AdapterDriver> = with(&[("D", "Redis-Cluster")], |e| e.named("D").unwrap());
        assert_eq!(d, Some(AdapterDriver::RedisCluster));
        let err = with(&[("R", "worker")], |e| {
            e.named::<ServerRole>("R").unwrap_err()
        });
        assert_eq!(
            err.to_string(),
            "environment variable R=\"worker\": expected default or api"
        );
    }
}
