//! Start-up: turn a validated [`Config`] into running listeners.

use crate::apps::AppStore;
use crate::cluster;
use crate::config::{AdapterDriver, Config};
use crate::http;
use crate::http::head::HeadLimit;
use crate::http::limits::{AppLimiters, IpLimit, LimitContext};
use crate::http::shared_limits::RedisLimiter;
use crate::listen;
use crate::metrics::Metrics;
use crate::state::ServerState;
use crate::webhooks::config::QueueDriver;
use actix_web::dev::ServerHandle;
use actix_web::{web, App as ActixApp, HttpServer};
use log::{info, warn};
use std::sync::Arc;
use std::time::Duration;
use switchyard_actors::closing::{Conn, Transport};
use switchyard_actors::hub::{Hubs, Timing};
use switchyard_actors::registry::{Registry, TransitionListener};
use switchyard_actors::session::SessionSettings;
use switchyard_actors::stats::RateLimit;

/// A listener that cannot bind names its address and the setting to change.
fn bind_error<T>(result: std::io::Result<T>, address: &str, setting: &str) -> std::io::Result<T> {
    result.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(" (another process listens there; stop it or change {setting})")
        } else {
            String::new()
        };
        std::io::Error::new(e.kind(), format!("cannot listen on {address}: {e}{hint}"))
    })
}

/// Start-up warnings about settings unfit for production, once each (the
/// development-app warning among them).
fn warn_about(config: &Config) {
    for warning in &config.warnings {
        warn!("{warning}");
    }
}

fn session_settings(config: &Config) -> SessionSettings {
    SessionSettings {
        hubs: Hubs::new(Timing {
            activity_timeout: Duration::from_secs(config.activity_timeout.max(1)),
            pong_timeout: Duration::from_secs(config.pong_timeout.max(1)),
            signin_timeout: Duration::from_secs(config.user_authentication_timeout),
        }),
        max_message_bytes: config.websocket_max_payload_kb as usize * 1024,
        max_channels: config.max_channels_per_connection,
        outbox_max_messages: config.websocket.max_messages,
        outbox_max_bytes: config.websocket.max_bytes,
        disconnect_on_buffer_full: config.websocket.disconnect_on_buffer_full,
    }
}

/// How long written data may stay unacknowledged before the kernel drops the
/// connection. A peer that vanished while we had frames queued for it would
/// otherwise hold its socket (and the frames) until TCP gives up, ~15 minutes.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection lingers after a response that leaves the request
/// unread (an HTTP API error before the body was read) or after its
/// WebSocket ended: it reads and discards what the client still sends, so
/// the client gets the response, or its last frames, rather than a reset.
/// actix-web's default; also the bound on a WebSocket connection's close
/// (`switchyard_actors::connection`). Closes over TLS take up to this long
/// (see `switchyard_actors::closing`); plain WebSockets do not wait for it.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Per-connection set-up as each connection is accepted: socket options for
/// TCP, and the socket recorded ([`Conn`]) so a WebSocket session can close
/// its connection as soon as its closing handshake is done (see
/// `switchyard_actors::closing`).
fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    use actix_web::rt::net::{TcpStream, UnixStream};
    let tcp = match conn.downcast_ref::<TcpStream>() {
        Some(tcp) => Some((tcp, Transport::Plain)),
        None => conn
            .downcast_ref::<TlsStream<TcpStream>>()
            .map(|s| (s.get_ref().0, Transport::Tls)),
    };
    if let Some((tcp, transport)) = tcp {
        tune_tcp(tcp);
        if let Some(conn) = Conn::of(tcp, transport) {
            ext.insert(conn);
        }
    } else if let Some(unix) = conn.downcast_ref::<UnixStream>() {
        if let Some(conn) = Conn::of(unix, Transport::Plain) {
            ext.insert(conn);
        }
    }
}

/// Socket options of every accepted TCP connection: `TCP_USER_TIMEOUT`
/// (a peer that vanished with data in flight is cut after 30 s) and
/// `TCP_NODELAY`. Failures are logged at debug and otherwise ignored.
fn tune_tcp<S: std::os::fd::AsFd>(tcp: &S) {
    let sock = socket2::SockRef::from(tcp);
    if let Err(e) = sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)) {
        log::debug!("could not set TCP_USER_TIMEOUT: {e}");
    }
    let _ = sock.set_nodelay(true);
}

/// The public listener's HTTP service for one worker, over sockets of type
/// `$io`: actix-web's App (made by `$make_app`) for requests, and again,
/// behind actix-http's upgrade hook, for WebSocket handshakes, whose sockets
/// are then handed to their sessions (`http::upgrade`). The settings are the
/// ones `HttpServer` used. A macro: the three socket types differ only in
/// `$io`, and the service types cannot be named.
macro_rules! public_service {
    ($make_app:ident, $stopping:ident, $io:ty) => {{
        // The App's own view of the listener (`connection_info`'s fallback
        // host) is not used on this listener.
        let app =
            || actix_service::map_config($make_app(), |_: ()| actix_web::dev::AppConfig::default());
        let stopping = $stopping.clone();
        actix_http::HttpService::build()
            .graceful_shutdown_signal(move || {
                let stopping = stopping.clone();
                async move { stopping.notified().await }
            })
            .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
            .on_connect_ext(|io: &$io, ext: &mut actix_web::dev::Extensions| {
                on_connect(io as &dyn std::any::Any, ext)
            })
            .upgrade(http::upgrade::handshakes(app(), CLIENT_DISCONNECT_TIMEOUT))
            .finish(app())
    }};
}

/// Every problem that would stop start-up once the configuration has
/// parsed: drivers this build cannot run, CORS lists, TLS files, the Unix
/// socket's directory. `--check-config` prints them all; `run` refuses to
/// start on any.
pub fn preflight(config: &Config) -> Vec<String> {
    use crate::config::RateLimiterDriver;
    let mut problems = Vec::new();
    let rl = &config.rate_limiter;
    if rl.enabled {
        match rl.driver {
            RateLimiterDriver::RedisCluster => problems.push(
                "RATE_LIMITER_DRIVER=redis-cluster: rate limits in a Redis Cluster are not \
                 available in this version; use RATE_LIMITER_DRIVER=redis (one Redis server, \
                 limits shared by every node) or memory (per node)"
                    .to_string(),
            ),
            // Only the settings: an unreachable Redis is no reason not to
            // start (each node limits on its own until it is reachable).
            RateLimiterDriver::Redis => {
                if let Err(e) = http::shared_limits::connection_info(&config.redis) {
                    problems.push(format!("RATE_LIMITER_DRIVER=redis: {e}"));
                }
            }
            RateLimiterDriver::Memory | RateLimiterDriver::None => {}
        }
    }
    if config.adapter_driver == AdapterDriver::Redis {
        if let Err(e) = cluster::Target::of(&config.redis) {
            // The error names the problem, never the URL (it may hold a password).
            problems.push(format!(
                "ADAPTER_DRIVER=redis: the Redis address (REDIS_URL or DATABASE_REDIS_*) is \
                 not usable: {e}"
            ));
        }
    }
    if let Err(e) = http::cors::validate(&config.cors) {
        problems.push(e);
    }
    if config.ssl.enabled && !config.unix_socket.enabled {
        if let Err(e) = listen::tls_config(&config.ssl) {
            problems.push(e);
        }
    }
    if config.unix_socket.enabled {
        if let Err(e) = listen::check_unix_socket_dir(&config.unix_socket) {
            problems.push(e);
        }
    }
    problems
}

fn warn_unsupported(config: &Config) {
    if !matches!(
        config.adapter_driver,
        AdapterDriver::Local | AdapterDriver::Redis
    ) {
        warn!(
            "ADAPTER_DRIVER={} is not available in this version: running as a single node \
             (local adapter). Events published on one node will NOT reach clients of another.",
            config.adapter_driver.name()
        );
    }
}

/// Run the server until it is stopped.
pub async fn run(mut config: Config) -> std::io::Result<()> {
    let problems = preflight(&config);
    if !problems.is_empty() {
        return Err(std::io::Error::other(problems.join("\n")));
    }
    warn_unsupported(&config);
    warn_about(&config);
    // Before the apps move into the store: the summary lists their ids.
    info!("{}", config.summary());
    let shards = match config.registry_shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // The bridge between nodes listens to channel transitions (it replicates
    // this node's state to the others), so it exists before the registry.
    let bridge = (config.adapter_driver == AdapterDriver::Redis).then(|| {
        let stats = Arc::new(cluster::BridgeStats::default());
        let (bridge, outbox) =
            cluster::Bridge::new(stats.clone(), config.adapter.health.node_timeout);
        (bridge, outbox, stats)
    });
    let mut listeners: Vec<Arc<dyn TransitionListener>> = Vec::new();
    if let Some((bridge, _, _)) = &bridge {
        listeners.push(bridge.clone());
    }
    // The app database connects lazily: down now, it is retried (and logged
    // once) while the server runs; only its apps are refused meanwhile.
    let cache_ttl = Duration::from_secs(config.app_manager.cache_ttl);
    let database_ttl = config.database().map(|_| cache_ttl);
    // Which apps have webhooks: the configured ones now, database apps as
    // their rows are read (any row may have some, so webhooks then run).
    let directory = Arc::new(crate::webhooks::directory::Directory::new(
        &config.webhooks,
        &config.apps,
        database_ttl,
    ));
    let database = config.database().map(|db| {
        Arc::new(
            crate::apps::database::AppDatabase::new(
                config.app_manager.driver,
                db,
                cache_ttl,
                config.global_app_limits(),
            )
            .with_webhooks(directory.clone()),
        )
    });
    // Webhooks listen too; nothing starts when no app can have any.
    // QUEUE_DRIVER=redis: the queue must work before anything is accepted;
    // webhooks are never silently off or silently not durable.
    let store = match config.webhooks.queue {
        QueueDriver::Redis if !directory.is_idle() => {
            let store = crate::webhooks::store::Store::connect(
                &config.redis,
                &config.adapter.prefix,
                &config.instance_id,
            )
            .await
            .map_err(|e| {
                std::io::Error::other(format!(
                    "queue.driver (QUEUE_DRIVER) is redis, but the webhook queue cannot start: {e}"
                ))
            })?;
            Some(Arc::new(store))
        }
        _ => None,
    };
    // In a cluster, one node tells each channel's changes; events another
    // node was to tell are kept until that node would have been forgotten
    // had it died (node timeout + cleanup interval), and a second more.
    let health = &config.adapter.health;
    let cluster_view = bridge.as_ref().map(|(bridge, _, _)| {
        let horizon = health.node_timeout + health.cleanup_interval + Duration::from_secs(1);
        (bridge.members(), horizon)
    });
    let webhooks = match crate::webhooks::Webhooks::start(
        &config.webhooks,
        directory,
        database.clone(),
        store,
        cluster_view,
    ) {
        Some((webhooks, listener)) => {
            listeners.push(listener);
            Some(webhooks)
        }
        None => None,
    };
    let registry = Registry::start(
        shards,
        Duration::from_secs(config.channel_limits.cache_ttl.max(1)),
        listeners,
    );
    let mut apps = AppStore::new(std::mem::take(&mut config.apps));
    if let Some(database) = database {
        actix_web::rt::spawn(database.clone().prepare());
        apps = apps.with_database(database);
    }
    let apps = Arc::new(apps);
    let cluster = match bridge {
        Some((bridge, outbox, stats)) => {
            join_cluster(&config, &registry, &apps, bridge, outbox).await?;
            Some(stats)
        }
        None => None,
    };
    let grace = Duration::from_secs(config.shutdown_grace_period);
    let rl = &config.rate_limiter;
    let limiter_on = rl.enabled && rl.driver != crate::config::RateLimiterDriver::None;
    // RATE_LIMITER_DRIVER=redis: the per-address limits and the per-app
    // budgets in Redis; `watch` makes first contact and probes during outages.
    let shared = if limiter_on && rl.driver == crate::config::RateLimiterDriver::Redis {
        let redis =
            RedisLimiter::new(&config.redis, &rl.redis.prefix).map_err(std::io::Error::other)?;
        actix_web::rt::spawn(redis.clone().watch());
        Some(redis)
    } else {
        None
    };
    let state = ServerState {
        app_limiters: Arc::new(AppLimiters::new(&apps, shared.clone())),
        api_trust_hops: rl.api_rate_limit.trust_hops,
        ws_trust_hops: rl.websocket_rate_limit.trust_hops,
        apps,
        registry,
        session: Arc::new(session_settings(&config)),
        http_body_limit: config.http_api.request_limit_in_mb as usize * 1024 * 1024,
        stats: Arc::default(),
        connections: Arc::default(),
        max_connections: config.max_connections as usize,
        usage_enabled: config.http_api.usage_enabled,
        path_prefix: Arc::from(config.path_prefix.as_str()),
        cluster: cluster.clone(),
    };
    let data = web::Data::new(state.clone());
    // HTTP request metrics are only recorded when something can read them.
    let metrics_on = config.metrics.enabled;
    let (mut metrics, middleware) = Metrics::new(
        &config.metrics.prefix,
        config.port,
        state.apps.clone(),
        state.stats.clone(),
        cluster,
    )
    .map_err(std::io::Error::other)?;
    if let Some(redis) = &shared {
        metrics.show_rate_limiter_redis(redis.health().clone());
    }
    if let Some(webhooks) = &webhooks {
        metrics.show_webhooks(webhooks.stats.clone());
    }
    let limit_ctx = LimitContext {
        stats: state.stats.clone(),
        apps: state.apps.clone(),
        shared,
    };
    let api_limit = IpLimit::new(
        limiter_on,
        rl.api_rate_limit.max_requests,
        rl.api_rate_limit.window_seconds,
        rl.api_rate_limit.trust_hops,
        RateLimit::Api,
        &limit_ctx,
    );
    let ws_limit = IpLimit::new(
        limiter_on,
        rl.websocket_rate_limit.max_requests,
        rl.websocket_rate_limit.window_seconds,
        rl.websocket_rate_limit.trust_hops,
        RateLimit::WsConnect,
        &limit_ctx,
    );
    let cors = config.cors.clone();
    // Outermost on every listener (TCP, TLS, Unix socket, redirect, metrics):
    // an oversized head is refused before anything else looks at it.
    let max_head = config.http_max_header_size_kb as usize * 1024;
    let head_limit = HeadLimit::new(max_head, state.api_trust_hops, state.ws_trust_hops)
        .with_path_prefix(&config.path_prefix);
    let prefix = config.path_prefix.clone();
    let make_app = move || {
        ActixApp::new()
            .wrap(actix_web::middleware::Condition::new(
                metrics_on,
                middleware.clone(),
            ))
            .wrap(head_limit.clone())
            .app_data(data.clone())
            .configure(|cfg| http::routes(cfg, &prefix, &api_limit, &ws_limit, &cors))
    };
    // Built from actix-web's parts rather than with `HttpServer`, for the
    // upgrade hook (see `http::upgrade`); the settings are HttpServer's.
    let public = actix_server::Server::build()
        .backlog(1024)
        .disable_signals()
        .shutdown_timeout(grace.as_secs());
    let stopping = public.graceful_shutdown_signal();
    let mut servers = Vec::new();
    let public = if config.unix_socket.enabled {
        // The socket replaces the TCP listener: only local proxies reach us.
        let uds = &config.unix_socket;
        listen::prepare_unix_socket(uds).map_err(std::io::Error::other)?;
        let listener = bind_error(
            std::os::unix::net::UnixListener::bind(&uds.path),
            &format!("unix:{}", uds.path),
            "UNIX_SOCKET_PATH",
        )?;
        let server = public.listen_uds("switchyard-unix", listener, move || {
            use actix_service::ServiceFactoryExt as _;
            actix_service::fn_service(|io: actix_web::rt::net::UnixStream| async {
                Ok((io, actix_http::Protocol::Http1, None))
            })
            .and_then(public_service!(
                make_app,
                stopping,
                actix_web::rt::net::UnixStream
            ))
        })?;
        listen::set_socket_mode(uds).map_err(std::io::Error::other)?;
        info!(
            "listening on unix:{} (mode {:o}, {} apps, {} registry shards)",
            uds.path,
            uds.permission_mode,
            state.apps.len(),
            shards
        );
        server
    } else if config.ssl.enabled {
        let tls = listen::tls_config(&config.ssl).map_err(std::io::Error::other)?;
        let server = bind_error(
            public.bind(
                "switchyard-tls",
                (config.host.as_str(), config.port),
                move || {
                    public_service!(
                        make_app,
                        stopping,
                        actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>
                    )
                    .rustls_0_23(tls.clone())
                },
            ),
            &format!("{}:{}", config.host, config.port),
            "HOST / PORT",
        )?;
        info!(
            "listening on https://{}:{} (TLS 1.2/1.3, {} apps, {} registry shards)",
            config.host,
            config.port,
            state.apps.len(),
            shards
        );
        if config.ssl.redirect_http {
            let target = web::Data::new(listen::RedirectTarget {
                domain: config.ssl.domain.clone(),
                https_port: config.port,
            });
            let redirect = HttpServer::new(move || {
                ActixApp::new()
                    .wrap(HeadLimit::new(max_head, 0, 0))
                    .app_data(target.clone())
                    .default_service(web::to(listen::redirect))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(grace.as_secs());
            let redirect = bind_error(
                redirect.bind((config.host.as_str(), config.ssl.http_port)),
                &format!("{}:{}", config.host, config.ssl.http_port),
                "SSL_HTTP_PORT",
            )?
            .run();
            info!(
                "redirecting http://{}:{} to https",
                config.host, config.ssl.http_port
            );
            servers.push(redirect);
        }
        server
    } else {
        let server = bind_error(
            public.bind(
                "switchyard",
                (config.host.as_str(), config.port),
                move || public_service!(make_app, stopping, actix_web::rt::net::TcpStream).tcp(),
            ),
            &format!("{}:{}", config.host, config.port),
            "HOST / PORT",
        )?;
        info!(
            "listening on http://{}:{} ({} apps, {} registry shards)",
            config.host,
            config.port,
            state.apps.len(),
            shards
        );
        server
    };
    servers.push(public.run());

    if config.metrics.enabled {
        let metrics = web::Data::new(metrics);
        let bound = HttpServer::new(move || {
            ActixApp::new()
                .wrap(HeadLimit::new(max_head, 0, 0))
                .app_data(metrics.clone())
                .route("/metrics", web::get().to(crate::metrics::endpoint))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        .bind((config.metrics.host.as_str(), config.metrics.port));
        // The internal metrics port must not take the realtime service down:
        // a clash (say, two nodes on one host) is an error in the log, not an exit.
        match bound {
            Ok(server) => {
                info!(
                    "metrics on http://{}:{}/metrics",
                    config.metrics.host, config.metrics.port
                );
                servers.push(server.run());
            }
            Err(e) => log::error!(
                event = "metrics_unavailable";
                "metrics listener could not bind {}:{}: {e}; serving without metrics",
                config.metrics.host, config.metrics.port
            ),
        }
    }
    let handles: Vec<ServerHandle> = servers.iter().map(|s| s.handle()).collect();
    let hubs = state.session.hubs.clone();
    let signalled = Arc::new(std::sync::OnceLock::<std::time::Instant>::new());
    let signalled_at = signalled.clone();
    actix_web::rt::spawn(async move {
        let signal = wait_for_signal().await;
        let _ = signalled_at.set(std::time::Instant::now());
        info!(
            event = "shutdown", signal = signal, grace_secs = grace.as_secs();
            "shutting down: refusing new connections, telling clients to reconnect (4200)"
        );
        hubs.shutdown();
        // Stop accepting and drain in-flight requests; sockets end as their
        // sessions close. actix-server force-closes what is left after `grace`.
        futures_util::future::join_all(handles.iter().map(|h| h.stop(true))).await;
    });
    let result = futures_util::future::try_join_all(servers)
        .await
        .map(|_| ());
    if let Some(webhooks) = &webhooks {
        // The leaves of the sockets just closed become transitions first;
        // then what they caused (member_removed, channel_vacated, without
        // waiting for the grace) is delivered within what is left of
        // SHUTDOWN_GRACE_PERIOD (at least a second).
        let _ = state.registry.sync().await;
        let started = signalled
            .get()
            .copied()
            .unwrap_or_else(std::time::Instant::now);
        let deadline = (started + grace).max(std::time::Instant::now() + Duration::from_secs(1));
        webhooks.drain(deadline).await;
    }
    if config.unix_socket.enabled {
        let _ = std::fs::remove_file(&config.unix_socket.path);
    }
    info!("stopped");
    result
}

/// Start the Redis bridge and attach it to the registry, then wait (at most
/// [`cluster::STARTUP_WAIT`]) for its subscription, so that once the
/// listeners open, this node delivers what other nodes publish from its
/// first connection. Redis being away does not stop start-up: the bridge
/// has logged it and keeps retrying, and `/up` says so.
async fn join_cluster(
    config: &Config,
    registry: &Registry,
    apps: &Arc<AppStore>,
    bridge: Arc<cluster::Bridge>,
    outbox: cluster::Outbox,
) -> std::io::Result<()> {
    // `preflight` has refused an unusable address already.
    let target = cluster::Target::of(&config.redis).map_err(std::io::Error::other)?;
    let address = target.address.clone();
    let mut link = cluster::start(
        target,
        cluster::events_channel(&config.adapter.prefix),
        registry.clone(),
        apps.clone(),
        bridge.clone(),
        outbox,
        config.adapter.health,
    );
    if !registry.attach_cluster(bridge) {
        return Err(std::io::Error::other("a cluster was already attached"));
    }
    // `is_ok` at once: the answer borrows the watch, which the bridge writes.
    let answered = tokio::time::timeout(
        cluster::STARTUP_WAIT,
        link.wait_for(|l| *l != cluster::Link::Connecting),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !answered {
        warn!(
            event = "redis_pending", address = address.as_str();
            "no answer from Redis at {address} after {:?}; accepting connections anyway \
             (events from other nodes reach this node once it answers)",
            cluster::STARTUP_WAIT
        );
    }
    Ok(())
}

/// SIGTERM (orchestrators) or SIGINT (Ctrl-C); returns the signal's name.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `on_connect` does to an accepted connection, read back from the
    /// kernel on a real accepted socket.
    #[test]
    fn accepted_tcp_connections_get_a_30_s_user_timeout_and_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let sock = socket2::SockRef::from(&accepted);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            None,
            "kernel default first"
        );
        assert!(!sock.nodelay().unwrap());

        tune_tcp(&accepted);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(30))
        );
        assert!(sock.nodelay().unwrap());
    }
}
