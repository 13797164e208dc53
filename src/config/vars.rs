//! Every environment variable the loader reads, with its default and meaning:
//! the source of `switchyard --help-env` and of the README's list.
//!
//! A test records every name the loader asks for and fails if one is missing
//! here, and another checks this table against `.env.example` and the
//! README, so the three cannot drift from the code.

/// One variable. `(S)` in `meaning` marks a Switchyard extension or difference.
pub struct Var {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// The groups of [`VARIABLES`], in `--help-env` order.
pub struct Group {
    pub title: &'static str,
    pub vars: &'static [Var],
}

const fn v(name: &'static str, default: &'static str, meaning: &'static str) -> Var {
    Var {
        name,
        default,
        meaning,
    }
}

pub const VARIABLES: &[Group] = &[
    Group {
        title: "Server",
        vars: &[
            v("HOST", "0.0.0.0", "Listen address of the WebSocket + HTTP API listener."),
            v("PORT", "6001", "Listen port."),
            v("PATH_PREFIX", "/", "(S) Serve /app/{key} and /apps/{id}/... under this prefix (e.g. /ws); health endpoints stay at the root; / = none. Sockudo's config key path_prefix, which Sockudo itself never applies."),
            v("ENVIRONMENT", "production", "Mode; production warns about permissive settings and never serves the development app (S: development when unset and no app is configured)."),
            v("DEBUG_MODE", "false", "Debug mode."),
            v("DEBUG", "false", "true forces debug mode on (false does not turn it off)."),
            v("CONFIG_FILE", "none", "Config file path (same as --config)."),
            v("ACTIVITY_TIMEOUT", "120", "Seconds; advertised to clients, a silent client is pinged after it."),
            v("PONG_TIMEOUT", "30", "(S) Seconds a pinged client has to answer before close 4201."),
            v("MAX_CHANNELS_PER_CONNECTION", "1000", "(S) Channels one socket may hold at once (0 = no limit)."),
            v("USER_AUTHENTICATION_TIMEOUT", "3600", "Seconds to pusher:signin on apps that require it (4009)."),
            v("SHUTDOWN_GRACE_PERIOD", "10", "Seconds to drain on SIGTERM/SIGINT."),
            v("SOCKUDO_MAX_CONNECTIONS", "0", "Server-wide socket cap (0 = none); over it: 4100."),
            v("WEBSOCKET_MAX_PAYLOAD_KB", "64", "Largest inbound message; over it: close 1009."),
            v("WEBSOCKET_MAX_MESSAGES", "1000", "Frames queued per socket before it is a slow consumer (0/none = unbounded)."),
            v("WEBSOCKET_MAX_BYTES", "none", "Bytes queued per socket, likewise."),
            v("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL", "true", "Close a slow consumer (4100) rather than drop its frames."),
            v("HTTP_API_REQUEST_LIMIT_IN_MB", "10", "HTTP API body limit; over it: 413."),
            v("HTTP_API_USAGE_ENABLED", "true", "Serve GET /usage."),
            v("HTTP_MAX_HEADER_SIZE_KB", "16", "(S) Request line + headers of any request, KiB (1-64); over it: 431."),
            v("HEALTH_CHECK_TIMEOUT_MS", "2000", "Health check time budget, milliseconds."),
            v("REGISTRY_SHARDS", "CPUs", "(S) Channel-registry actors (0 = one per CPU)."),
            v("INSTANCE_PROCESS_ID", "random", "Node identity."),
            v("SOCKUDO_SERVER_ROLE", "default", "Sockudo's server role; parsed (one process serves everything)."),
            v("CACHE_TTL_SECONDS", "unset", "Seconds a cache channel keeps its last event (unset: 3600); as in Sockudo, also the database app cache's TTL (unset: 300; APP_MANAGER_CACHE_TTL wins)."),
            v("PRESENCE_UPDATE_RATE_LIMIT_PER_MEMBER_PER_SECOND", "10", "Parsed and validated (Sockudo's presence block)."),
        ],
    },
    Group {
        title: "Apps",
        vars: &[
            v("SOCKUDO_DEFAULT_APP_ID", "none", "The environment app's id (set ID, KEY and SECRET, or none)."),
            v("SOCKUDO_DEFAULT_APP_KEY", "none", "Its key (generate with openssl rand -hex 16)."),
            v("SOCKUDO_DEFAULT_APP_SECRET", "none", "Its secret (openssl rand -hex 32); or SOCKUDO_DEFAULT_APP_SECRET_FILE."),
            v("SOCKUDO_DEFAULT_APP_SECRET_FILE", "none", "(S) A file holding the secret (one trailing newline trimmed)."),
            v("SOCKUDO_DEFAULT_APP_ENABLED", "true", "false serves the app disabled (4003, 403)."),
            v("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "100", "Sockets of the app; over it: 4004 (0 = unlimited)."),
            v("SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "false", "Allow client-* events."),
            v("SOCKUDO_ENABLE_CLIENT_MESSAGES", "false", "The same, when the app variable is unset."),
            v("SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND", "100", "Client events per socket per second; over it: 4301."),
            v("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "100", "HTTP publishes per second; over it: 429."),
            v("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", "100", "HTTP channel queries per second; over it: 429."),
            v("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL", "100", "Distinct users per presence channel."),
            v("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB", "2", "channel_data size."),
            v("SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH", "200", "Channel name length."),
            v("SOCKUDO_DEFAULT_APP_MAX_EVENT_CHANNELS_AT_ONCE", "100", "Channels of one HTTP publish."),
            v("SOCKUDO_DEFAULT_APP_MAX_EVENT_NAME_LENGTH", "200", "Event name length."),
            v("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "100", "Event data size; over it: 413 / 4301."),
            v("SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE", "10", "Events of one batch publish."),
            v("SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION", "false", "Require pusher:signin within the timeout (4009)."),
            v("SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS", "false", "Send pusher_internal:watchlist_events to signed-in sockets about the users in their user_data.watchlist."),
            v("SOCKUDO_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT", "false", "(S) Send pusher_internal:subscription_count."),
            v("SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS", "any", "WebSocket origin allow-list, comma-separated."),
            v("SOCKUDO_SKIP_INLINE_APPS", "false", "true ignores the config file's apps."),
            v("APP_MANAGER_REGISTER_INLINE_APPS", "true", "false ignores the config file's apps."),
            v("APP_MANAGER_DRIVER", "memory", "memory: apps of the config file and environment; mysql or pgsql (postgres, postgresql): also the apps in the database's table (DATABASE_MYSQL_* / DATABASE_POSTGRES_*)."),
            v("APP_MANAGER_CACHE_TTL", "300", "(S) Seconds a database app is served before it is read again (config app_manager.cache.ttl; 0 = every lookup; over CACHE_TTL_SECONDS); unknown keys are remembered at most 5 s."),
            v("SWITCHYARD_DEV_APP", "unset", "(S) true: serve the public development app even in production when no app is configured; false: never."),
        ],
    },
    Group {
        title: "TLS, origins, rate limits, CORS, Unix socket",
        vars: &[
            v("SSL_ENABLED", "false", "HTTPS/WSS on PORT."),
            v("SSL_CERT_PATH", "none", "PEM certificate (chain allowed)."),
            v("SSL_KEY_PATH", "none", "PEM private key."),
            v("SSL_REDIRECT_HTTP", "false", "A plain listener that redirects to https."),
            v("SSL_HTTP_PORT", "80", "Its port."),
            v("DOMAIN", "Host header", "Host of the redirect target."),
            v("RATE_LIMITER_ENABLED", "true", "Per-address limits (and, with the redis driver, the per-app budgets in Redis)."),
            v("RATE_LIMITER_DRIVER", "memory", "memory (per node); redis: shared by every node on REDIS_URL / DATABASE_REDIS_* (per node while Redis is down); redis-cluster is refused."),
            v("RATE_LIMITER_API_MAX_REQUESTS", "100", "HTTP API requests per address per window; over it: 429."),
            v("RATE_LIMITER_API_WINDOW_SECONDS", "60", "Its window."),
            v("RATE_LIMITER_API_TRUST_HOPS", "0", "Proxies in front whose X-Forwarded-For is believed."),
            v("RATE_LIMITER_WS_MAX_REQUESTS", "20", "WebSocket connection attempts per address per window."),
            v("RATE_LIMITER_WS_WINDOW_SECONDS", "60", "Its window."),
            v("RATE_LIMITER_WS_TRUST_HOPS", "0", "Proxies in front, likewise."),
            v("RATE_LIMITER_REDIS_PREFIX", "sockudo_rl:", "Key prefix of the redis driver; nodes on one Redis share limits only with the same prefix."),
            v("CORS_ORIGINS", "*", "Allowed origins of the HTTP API, comma-separated."),
            v("CORS_METHODS", "all", "Allowed methods."),
            v("CORS_HEADERS", "standard", "Allowed request headers."),
            v("CORS_CREDENTIALS", "list: true", "Allow credentials; never with origin * (warned)."),
            v("UNIX_SOCKET_ENABLED", "false", "Serve on a Unix socket instead of TCP."),
            v("UNIX_SOCKET_PATH", "/var/run/sockudo/sockudo.sock", "Its path (absolute)."),
            v("UNIX_SOCKET_PERMISSION_MODE", "660", "Its mode, octal."),
        ],
    },
    Group {
        title: "Logging and metrics",
        vars: &[
            v("LOG_OUTPUT_FORMAT", "text", "json: one JSON object per line."),
            v("LOG_COLORS_ENABLED", "true", "Colours in text logs."),
            v("LOG_INCLUDE_TARGET", "true", "Module target in each line."),
            v("RUST_LOG", "info", "Log filter."),
            v("METRICS_ENABLED", "true", "Prometheus on its own listener."),
            v("METRICS_HOST", "0.0.0.0", "Its address (127.0.0.1 or firewall it)."),
            v("METRICS_PORT", "9601", "Its port."),
            v("METRICS_PROMETHEUS_PREFIX", "sockudo_", "Series prefix."),
        ],
    },
    Group {
        title: "Webhooks",
        vars: &[
            v("SOCKUDO_DEFAULT_APP_WEBHOOKS", "none", "(S) The environment app's webhooks: a JSON array of {url, event_types, filter, headers, retry, request_timeout_ms}."),
            v("SOKETI_DEFAULT_APP_WEBHOOKS", "none", "(S) Soketi's name for the same, read when SOCKUDO_DEFAULT_APP_WEBHOOKS is unset."),
            v("WEBHOOK_BATCHING_ENABLED", "true", "Gather one webhook's events into one request."),
            v("WEBHOOK_BATCHING_DURATION", "50", "Milliseconds events gather before their request is sent."),
            v("WEBHOOK_BATCHING_SIZE", "100", "Most events in one request."),
            v("WEBHOOK_LEAVE_GRACE_MS", "2000", "(S) Milliseconds channel_vacated and member_removed wait, so a page reload tells the backend nothing (0 = at once)."),
            v("QUEUE_DRIVER", "memory", "Where webhook events wait: memory, or redis (durable: a crash or restart loses nothing that reached Redis)."),
        ],
    },
    Group {
        title: "Scale-out (Redis) and databases",
        vars: &[
            v("ADAPTER_DRIVER", "local", "local: one node; redis: nodes share events through Redis; others run as one node, with a warning."),
            v("CLUSTER_HEALTH_HEARTBEAT_INTERVAL", "1000", "Milliseconds between a node's heartbeats to the others (redis adapter)."),
            v("CLUSTER_HEALTH_NODE_TIMEOUT", "3000", "A node silent this long (ms) is dead: its members leave everywhere. At least twice the heartbeat interval."),
            v("CLUSTER_HEALTH_CLEANUP_INTERVAL", "500", "How often (ms) silence is checked; a dead node is forgotten within NODE_TIMEOUT + this."),
            v("CLUSTER_HEALTH_ENABLED", "true", "false: a silent node is never forgotten (its members stay until it is back)."),
            v("REDIS_URL", "none", "Redis URL, redis:// or rediss:// (TLS); overrides the DATABASE_REDIS_* parts."),
            v("REDIS_URL_FILE", "none", "(S) A file holding REDIS_URL."),
            v("REDIS_PASSWORD", "none", "Redis password when DATABASE_REDIS_PASSWORD is unset (also ${REDIS_PASSWORD} in the config file); or REDIS_PASSWORD_FILE."),
            v("REDIS_PASSWORD_FILE", "none", "(S) A file holding REDIS_PASSWORD."),
            v("DATABASE_REDIS_HOST", "127.0.0.1", "Redis host."),
            v("DATABASE_REDIS_PORT", "6379", "Redis port."),
            v("DATABASE_REDIS_USERNAME", "none", "Redis user (ACL)."),
            v("DATABASE_REDIS_PASSWORD", "none", "Redis password; or DATABASE_REDIS_PASSWORD_FILE."),
            v("DATABASE_REDIS_PASSWORD_FILE", "none", "(S) A file holding it."),
            v("DATABASE_REDIS_DB", "0", "Redis database."),
            v("DATABASE_REDIS_KEY_PREFIX", "sockudo:", "Prefix of every Redis key and channel (the config file's adapter.redis.prefix wins); one per cluster."),
            v("DATABASE_MYSQL_HOST", "localhost", "MySQL/MariaDB host of APP_MANAGER_DRIVER=mysql."),
            v("DATABASE_MYSQL_PORT", "3306", "Its port."),
            v("DATABASE_MYSQL_USERNAME", "root", "Its user."),
            v("DATABASE_MYSQL_PASSWORD", "none", "Its password."),
            v("DATABASE_MYSQL_PASSWORD_FILE", "none", "(S) A file holding it."),
            v("DATABASE_MYSQL_DATABASE", "sockudo", "Its database."),
            v("DATABASE_MYSQL_TABLE_NAME", "applications", "The apps table (created with Sockudo's columns when missing, never altered)."),
            v("DATABASE_MYSQL_POOL_MIN", "0", "Connections kept open."),
            v("DATABASE_MYSQL_POOL_MAX", "10", "Most connections at once."),
            v("DATABASE_POSTGRES_HOST", "localhost", "PostgreSQL host of APP_MANAGER_DRIVER=pgsql."),
            v("DATABASE_POSTGRES_PORT", "5432", "Its port."),
            v("DATABASE_POSTGRES_USERNAME", "postgres", "Its user."),
            v("DATABASE_POSTGRES_PASSWORD", "none", "Its password."),
            v("DATABASE_POSTGRES_PASSWORD_FILE", "none", "(S) A file holding it."),
            v("DATABASE_POSTGRES_DATABASE", "sockudo", "Its database."),
            v("DATABASE_POSTGRES_TABLE_NAME", "applications", "(S) The apps table, likewise."),
            v("DATABASE_POSTGRES_POOL_MIN", "0", "Connections kept open."),
            v("DATABASE_POSTGRES_POOL_MAX", "10", "Most connections at once."),
            v("DATABASE_POOLING_ENABLED", "true", "Sockudo's shared pool switch (config database_pooling.enabled): false ignores DATABASE_POOL_MIN/MAX."),
            v("DATABASE_POOL_MIN", "0", "Both databases' POOL_MIN unless their own is set (database_pooling.min)."),
            v("DATABASE_POOL_MAX", "10", "Both databases' POOL_MAX unless their own is set (database_pooling.max)."),
            v("DATABASE_CONNECTION_POOL_SIZE", "10", "Both databases' POOL_MAX when neither theirs nor DATABASE_POOL_MAX is set (config database.*.connection_pool_size)."),
        ],
    },
];

/// Every variable name, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    VARIABLES.iter().flat_map(|g| g.vars.iter().map(|v| v.name))
}

/// The text of `switchyard --help-env`: each variable with its default on
/// one line, what it does on the next.
pub fn help() -> String {
    let mut out = String::from(
        "Environment variables (Sockudo's names; (S) marks a Switchyard extension).\n\
         They override the config file; a .env file in the working directory is\n\
         read first and never overrides the process environment.\n",
    );
    for group in VARIABLES {
        out.push_str(&format!("\n{}\n", group.title));
        for var in group.vars {
            out.push_str(&format!(
                "  {} (default: {})\n      {}\n",
                var.name, var.default, var.meaning
            ));
        }
    }
    out
}
