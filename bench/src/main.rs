//! switchyard-bench: load generator for Pusher Channels (protocol v7)
//! servers. Speaks the WebSocket protocol and the signed HTTP API itself,
//! measures the server process through /proc, and reports JSON plus a table.
//!
//! Only loopback targets are accepted; every scenario is bounded in count and
//! time.

mod client;
mod frame;
mod procfs;
mod report;
mod scenarios;
mod sign;
mod stats;
mod subscriber;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use client::Target;
use scenarios::{
    BatchOpts, ChurnOpts, ClusterOpts, ClusterProbes, FanoutOpts, FixedOp, FixedOpts, IdleOpts,
    PresenceOpts, PrivateOpts, Probe, PublishOpts, ReconnectOpts,
};
use sign::Credentials;

#[derive(Parser, Debug)]
#[command(name = "switchyard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    o: Opts,
}

#[derive(Subcommand, Debug, Clone)]
enum Cmd {
    /// N idle sockets subscribed to C channels: RSS per connection, connect rate.
    Idle,
    /// S subscribers, open-loop HTTP publishes: delivery rate, ratio, latency, CPU.
    Fanout,
    /// HTTP publishes with no subscribers over keep-alive connections.
    Publish,
    /// connect/subscribe/unsubscribe/disconnect loops: ops/s and RSS drift.
    Churn,
    /// The loopback floor alone (no server needed): kernel CPU of one plain
    /// write per fan-out delivery on this machine (fanout measures it too).
    Floor,
    /// Two nodes on one Redis (node A = --port, node B = --port-b):
    /// subscribers spread over both, publishes to A only; same-node and
    /// cross-node latency, delivery ratio, CPU per delivery of A, B and Redis.
    Cluster,
    /// N sockets, each on its own authorised `private-user-N` channel; HTTP
    /// publishes to random users: server CPU per publish, latency, ratio, RSS.
    Private,
    /// U users join one presence channel within a few seconds, then leave:
    /// time until all know all, member_added rate and latency, RSS, CPU.
    Presence,
    /// Open-loop `batch_events` (one event per channel, subscribers on
    /// each): server CPU per event, delivery ratio, latency.
    Batch,
    /// N subscribed sockets dropped at once, then reconnecting with
    /// pusher-js-like jitter and back-off: time until all are back,
    /// failures, peak RSS and CPU.
    Reconnect,
    /// Exactly --fixed-count operations of --fixed-op, closed loop (each
    /// finished before the next starts), then exit; fails unless all
    /// completed. Sizes and names are the same in every run, so that the
    /// server's instructions per operation can be counted under callgrind
    /// (bench/check.sh). Not a throughput measurement.
    Fixed,
    /// idle, fanout, publish and churn in that order (not cluster: it needs
    /// two nodes and Redis; nor private, presence, batch, reconnect).
    All,
    /// Side-by-side markdown of JSON result files (`--json` outputs); files
    /// with the same label (e.g. one per scenario) are merged.
    Compare {
        /// JSON files written by earlier runs.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
struct Opts {
    /// Server address; must be a loopback address.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, global = true, default_value_t = 6001)]
    port: u16,
    #[arg(long, global = true, default_value = "app-id")]
    app_id: String,
    #[arg(long, global = true, default_value = "app-key")]
    key: String,
    #[arg(long, global = true, default_value = "app-secret")]
    secret: String,
    /// Server PID for RSS/CPU; found from the listening port when omitted.
    #[arg(long, global = true)]
    server_pid: Option<i32>,
    /// Pin this process (all threads) to this core.
    #[arg(long, global = true)]
    pin_client: Option<usize>,
    /// Pin every server thread to this core.
    #[arg(long, global = true)]
    pin_server: Option<usize>,
    /// Name of the server in reports (default: its process name).
    #[arg(long, global = true)]
    label: Option<String>,
    /// Write results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Deadline for one protocol step (connect, subscribe, HTTP call), seconds.
    #[arg(long, global = true, default_value_t = 15)]
    op_timeout_secs: u64,
    /// Concurrent WebSocket handshakes while building up connections.
    #[arg(long, global = true, default_value_t = 128)]
    connect_concurrency: usize,
    /// Pause between scenarios of `all`, seconds.
    #[arg(long, global = true, default_value_t = 3)]
    settle_secs: u64,

    // idle
    #[arg(long, global = true, default_value_t = 15_000)]
    idle_connections: usize,
    #[arg(long, global = true, default_value_t = 100)]
    idle_channels: usize,
    /// Seconds to hold the idle connections before reading RSS.
    #[arg(long, global = true, default_value_t = 5)]
    idle_hold_secs: u64,

    // fanout
    #[arg(long, global = true, default_value_t = 2_000)]
    fanout_subscribers: usize,
    #[arg(long, global = true, default_value_t = 10)]
    fanout_channels: usize,
    /// Size of each event's `data` string, bytes.
    #[arg(long, global = true, default_value_t = 100)]
    event_size: usize,
    /// Publishes per second (open loop); deliveries/s = rate × subscribers/channels.
    #[arg(long, global = true, default_value_t = 200.0)]
    fanout_rate: f64,
    #[arg(long, global = true, default_value_t = 20.0)]
    fanout_secs: f64,
    /// Keep-alive HTTP connections publishing.
    #[arg(long, global = true, default_value_t = 4)]
    fanout_publishers: usize,
    /// Longest wait for in-flight deliveries after the last publish, seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    drain_secs: f64,
    /// Seconds of the floors measured after fanout (loopback writes) and
    /// publish (a do-nothing HTTP server); 0 = skip.
    #[arg(long, global = true, default_value_t = 10.0)]
    floor_secs: f64,

    // publish
    #[arg(long, global = true, default_value_t = 15.0)]
    publish_secs: f64,
    /// Concurrent keep-alive HTTP/1.1 connections.
    #[arg(long, global = true, default_value_t = 8)]
    publish_connections: usize,

    // churn
    #[arg(long, global = true, default_value_t = 60.0)]
    churn_secs: f64,
    /// Concurrent connect/subscribe/unsubscribe/disconnect loops.
    #[arg(long, global = true, default_value_t = 32)]
    churn_concurrency: usize,
    #[arg(long, global = true, default_value_t = 10)]
    churn_channels: usize,
    /// Seconds excluded from the RSS drift computation.
    #[arg(long, global = true, default_value_t = 10.0)]
    churn_warmup_secs: f64,
    #[arg(long, global = true, default_value_t = 1000)]
    rss_sample_ms: u64,

    // fixed
    /// The operation `fixed` repeats.
    #[arg(long, global = true, value_enum, default_value_t = FixedOp::Fanout)]
    fixed_op: FixedOp,
    /// How many times `fixed` does it.
    #[arg(long, global = true, default_value_t = 100)]
    fixed_count: u64,
    /// Subscribed sockets of `fixed --fixed-op fanout`.
    #[arg(long, global = true, default_value_t = 50)]
    fixed_subscribers: usize,

    // cluster
    /// Node B's port (cluster; node A is --port).
    #[arg(long, global = true, default_value_t = 6002)]
    port_b: u16,
    /// Node B's PID; found from --port-b when omitted.
    #[arg(long, global = true)]
    server_pid_b: Option<i32>,
    /// The Redis server's PID for its CPU and RSS (cluster).
    #[arg(long, global = true)]
    redis_pid: Option<i32>,
    /// Redis port, to find its PID when --redis-pid is omitted (cluster).
    #[arg(long, global = true)]
    redis_port: Option<u16>,
    /// Subscribers, half on node A and half on node B.
    #[arg(long, global = true, default_value_t = 2_000)]
    cluster_subscribers: usize,
    #[arg(long, global = true, default_value_t = 10)]
    cluster_channels: usize,
    /// Publishes per second to node A (open loop). 100 × 200 subscribers
    /// per channel = 20,000 deliveries/s: two nodes and Redis share one
    /// server core, and at 40,000 Sockudo's saturate it.
    #[arg(long, global = true, default_value_t = 100.0)]
    cluster_rate: f64,
    #[arg(long, global = true, default_value_t = 20.0)]
    cluster_secs: f64,
    /// Keep-alive HTTP connections publishing to node A.
    #[arg(long, global = true, default_value_t = 4)]
    cluster_publishers: usize,
    /// Longest wait for both nodes to deliver a warm-up round, seconds.
    #[arg(long, global = true, default_value_t = 15.0)]
    cluster_warmup_secs: f64,

    // private
    /// Sockets, one per user, each on its own `private-user-{i}` channel.
    #[arg(long, global = true, default_value_t = 10_000)]
    private_users: usize,
    /// Publishes per second, each to one random user (open loop).
    #[arg(long, global = true, default_value_t = 2_000.0)]
    private_rate: f64,
    #[arg(long, global = true, default_value_t = 20.0)]
    private_secs: f64,
    /// Keep-alive HTTP connections publishing.
    #[arg(long, global = true, default_value_t = 8)]
    private_publishers: usize,

    // presence
    /// Users (one socket each) of the one presence channel. Each pair costs
    /// one member_added and one member_removed: the load grows with U².
    #[arg(long, global = true, default_value_t = 1_000)]
    presence_users: usize,
    /// The joins are spread evenly over this many seconds.
    #[arg(long, global = true, default_value_t = 5.0)]
    presence_join_secs: f64,
    /// The leaves likewise.
    #[arg(long, global = true, default_value_t = 5.0)]
    presence_leave_secs: f64,
    /// Longest wait after the last join (leave) for every member to know
    /// every other (to be told of every leave), seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    presence_wait_secs: f64,

    // batch
    /// Subscribers, spread evenly over the batch's channels.
    #[arg(long, global = true, default_value_t = 400)]
    batch_subscribers: usize,
    /// Events per batch, each to its own channel (servers default to at most 10).
    #[arg(long, global = true, default_value_t = 10)]
    batch_size: usize,
    /// Batches per second (open loop); deliveries/s = rate × subscribers.
    #[arg(long, global = true, default_value_t = 100.0)]
    batch_rate: f64,
    #[arg(long, global = true, default_value_t = 20.0)]
    batch_secs: f64,
    /// Keep-alive HTTP connections publishing.
    #[arg(long, global = true, default_value_t = 4)]
    batch_publishers: usize,

    // reconnect
    #[arg(long, global = true, default_value_t = 10_000)]
    reconnect_sockets: usize,
    #[arg(long, global = true, default_value_t = 100)]
    reconnect_channels: usize,
    /// First attempt after a uniform random delay in [0, this), ms.
    #[arg(long, global = true, default_value_t = 1_000)]
    reconnect_jitter_ms: u64,
    /// Wait after a failed attempt (× 0.5–1.5), doubling per failure, ms.
    #[arg(long, global = true, default_value_t = 1_000)]
    reconnect_backoff_ms: u64,
    /// Cap of that wait, ms.
    #[arg(long, global = true, default_value_t = 10_000)]
    reconnect_backoff_max_ms: u64,
    /// A socket not back this long after the drop gives up, seconds.
    #[arg(long, global = true, default_value_t = 60.0)]
    reconnect_limit_secs: f64,
    /// Drop with a TCP reset (SO_LINGER 0) instead of a FIN.
    #[arg(long, global = true)]
    reconnect_rst: bool,
}

/// Upper bounds that keep every run finite and within this machine's limits.
fn validate(o: &Opts) -> Result<(), String> {
    let bounded = |name: &str, v: f64, max: f64| {
        if v.is_finite() && v > 0.0 && v <= max {
            Ok(())
        } else {
            Err(format!("--{name} must be in (0, {max}]"))
        }
    };
    bounded("fanout-secs", o.fanout_secs, 600.0)?;
    bounded("publish-secs", o.publish_secs, 600.0)?;
    bounded("churn-secs", o.churn_secs, 3600.0)?;
    bounded("fanout-rate", o.fanout_rate, 1_000_000.0)?;
    bounded("cluster-secs", o.cluster_secs, 600.0)?;
    bounded("cluster-rate", o.cluster_rate, 1_000_000.0)?;
    bounded("cluster-warmup-secs", o.cluster_warmup_secs, 120.0)?;
    bounded(
        "cluster-subscribers",
        o.cluster_subscribers as f64,
        19_000.0,
    )?;
    bounded("cluster-publishers", o.cluster_publishers as f64, 1_000.0)?;
    bounded("drain-secs", o.drain_secs, 120.0)?;
    if !(o.floor_secs.is_finite() && (0.0..=600.0).contains(&o.floor_secs)) {
        return Err("--floor-secs must be in [0, 600]".into());
    }
    bounded("idle-connections", o.idle_connections as f64, 19_000.0)?;
    bounded("fixed-count", o.fixed_count as f64, 1_000_000.0)?;
    bounded("fixed-subscribers", o.fixed_subscribers as f64, 5_000.0)?;
    bounded("fanout-subscribers", o.fanout_subscribers as f64, 19_000.0)?;
    bounded("churn-concurrency", o.churn_concurrency as f64, 5_000.0)?;
    bounded("publish-connections", o.publish_connections as f64, 1_000.0)?;
    bounded("event-size", o.event_size as f64, 1_000_000.0)?;
    bounded("private-users", o.private_users as f64, 19_000.0)?;
    bounded("private-rate", o.private_rate, 1_000_000.0)?;
    bounded("private-secs", o.private_secs, 600.0)?;
    bounded("private-publishers", o.private_publishers as f64, 1_000.0)?;
    bounded("presence-users", o.presence_users as f64, 5_000.0)?;
    if o.presence_users < 2 {
        return Err("--presence-users must be at least 2".into());
    }
    bounded("presence-join-secs", o.presence_join_secs, 600.0)?;
    bounded("presence-leave-secs", o.presence_leave_secs, 600.0)?;
    bounded("presence-wait-secs", o.presence_wait_secs, 600.0)?;
    bounded("batch-subscribers", o.batch_subscribers as f64, 19_000.0)?;
    bounded("batch-size", o.batch_size as f64, 100.0)?;
    bounded("batch-rate", o.batch_rate, 100_000.0)?;
    bounded("batch-secs", o.batch_secs, 600.0)?;
    bounded("batch-publishers", o.batch_publishers as f64, 1_000.0)?;
    // The dropped connections' ports may still be in TIME_WAIT while the
    // same number reconnect: both must fit one address's ephemeral range.
    bounded("reconnect-sockets", o.reconnect_sockets as f64, 14_000.0)?;
    bounded("reconnect-channels", o.reconnect_channels as f64, 10_000.0)?;
    bounded("reconnect-limit-secs", o.reconnect_limit_secs, 600.0)?;
    if o.reconnect_jitter_ms > 600_000 || o.reconnect_backoff_max_ms > 600_000 {
        return Err("--reconnect-jitter-ms and --reconnect-backoff-max-ms must be ≤ 600000".into());
    }
    for (name, rate, secs) in [
        ("private", o.private_rate, o.private_secs),
        ("batch", o.batch_rate, o.batch_secs),
    ] {
        if rate * secs > 10_000_000.0 {
            return Err(format!("{name} would publish more than 10 million times"));
        }
    }
    if o.fanout_rate * o.fanout_secs > 10_000_000.0 {
        return Err("fanout would publish more than 10 million events".into());
    }
    if o.cluster_rate * o.cluster_secs > 10_000_000.0 {
        return Err("cluster would publish more than 10 million events".into());
    }
    Ok(())
}

fn loopback(host: &str) -> Result<IpAddr, String> {
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| format!("--host {host}: give a loopback IP address"))?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "--host {host}: only loopback targets (127.0.0.0/8, ::1) are allowed"
        ));
    }
    Ok(ip)
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Compare { files } = &cli.cmd {
        let docs: Result<Vec<Value>, String> = files
            .iter()
            .map(|f| {
                let text =
                    std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))
            })
            .collect();
        match docs {
            Ok(d) => print!("{}", report::compare(&report::merge_by_label(d))),
            Err(e) => fail(&e),
        }
        return;
    }
    if let Err(e) = run(cli) {
        fail(&e);
    }
}

fn fail(e: &str) -> ! {
    eprintln!("switchyard-bench: {e}");
    std::process::exit(1);
}

fn run(cli: Cli) -> Result<(), String> {
    let o = cli.o;
    validate(&o)?;
    let ip = loopback(&o.host)?;
    let me = std::process::id() as i32;

    // Pin before the runtime exists so every worker thread inherits the mask.
    let mut pinning = json!({});
    if let Some(core) = o.pin_client {
        let n = procfs::pin_process(me, core).map_err(|e| format!("pin client: {e}"))?;
        pinning["client_core"] = json!(core);
        pinning["client_threads_pinned"] = json!(n);
    }
    let server_pid = o.server_pid.or_else(|| procfs::find_listener_pid(o.port));
    if server_pid.is_none() && !matches!(cli.cmd, Cmd::Floor) {
        eprintln!(
            "warning: no process found listening on port {}; server RSS/CPU will be missing",
            o.port
        );
    }
    if let (Some(core), Some(pid)) = (o.pin_server, server_pid) {
        let n = procfs::pin_process(pid, core).map_err(|e| format!("pin server: {e}"))?;
        pinning["server_core"] = json!(core);
        pinning["server_threads_pinned"] = json!(n);
    }
    // Cluster: node B and Redis share the server core with node A.
    let is_cluster = matches!(cli.cmd, Cmd::Cluster);
    let (pid_b, redis_pid) = if is_cluster {
        let b = o
            .server_pid_b
            .or_else(|| procfs::find_listener_pid(o.port_b));
        let r = o
            .redis_pid
            .or_else(|| o.redis_port.and_then(procfs::find_listener_pid));
        if b.is_none() {
            eprintln!(
                "warning: no process found listening on port {}; node B CPU will be missing",
                o.port_b
            );
        }
        if r.is_none() {
            eprintln!(
                "warning: no Redis PID (--redis-pid or --redis-port); Redis CPU will be missing"
            );
        }
        (b, r)
    } else {
        (None, None)
    };
    for (what, pid) in [("node_b", pid_b), ("redis", redis_pid)] {
        if let (Some(core), Some(pid)) = (o.pin_server, pid) {
            let n = procfs::pin_process(pid, core).map_err(|e| format!("pin {what}: {e}"))?;
            pinning[format!("{what}_threads_pinned")] = json!(n);
        }
    }
    let workers = procfs::allowed_cpus();
    // On one core (`--pin-client`) a current-thread runtime: a single
    // multi-thread worker would still pay for work stealing (atomic task
    // states, idle bookkeeping, a separate I/O driver hand-off) on every
    // wake-up of every socket.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;

    let (exe, comm) = server_pid.map(procfs::describe).unwrap_or_default();
    let machine = procfs::machine();
    let mut doc = json!({
        "tool": "switchyard-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "command_line": std::env::args().collect::<Vec<_>>().join(" "),
        "started_unix": client::unix_secs(),
        "machine": machine,
        "pinning": pinning,
        "client_worker_threads": workers,
        "target": {
            "host": ip.to_string(),
            "port": o.port,
            "app_id": o.app_id,
            "server_pid": server_pid,
            "server_exe": exe,
            "label": o.label.clone().unwrap_or_else(|| if comm.is_empty() { "server".into() } else { comm.clone() }),
        },
        "results": {},
    });
    if is_cluster {
        let (exe_b, _) = pid_b.map(procfs::describe).unwrap_or_default();
        let (redis_exe, _) = redis_pid.map(procfs::describe).unwrap_or_default();
        doc["target"]["node_b"] =
            json!({ "port": o.port_b, "server_pid": pid_b, "server_exe": exe_b });
        doc["target"]["redis"] =
            json!({ "port": o.redis_port, "pid": redis_pid, "exe": redis_exe });
    }
    print_machine(&doc);

    let target = Target {
        addr: SocketAddr::new(ip, o.port),
        creds: Credentials {
            app_id: o.app_id.clone(),
            key: o.key.clone(),
            secret: o.secret.clone(),
        },
        op_timeout: Duration::from_secs(o.op_timeout_secs.max(1)),
    };
    let probe = Probe { server_pid };
    let cluster = ClusterCtx {
        node_b: Target {
            addr: SocketAddr::new(ip, o.port_b),
            ..target.clone()
        },
        probes: ClusterProbes {
            a: probe,
            b: Probe { server_pid: pid_b },
            redis: Probe {
                server_pid: redis_pid,
            },
        },
    };
    let steps: Vec<Step> = match cli.cmd {
        Cmd::All => vec![Step::Idle, Step::Fanout, Step::Publish, Step::Churn],
        Cmd::Idle => vec![Step::Idle],
        Cmd::Fanout => vec![Step::Fanout],
        Cmd::Publish => vec![Step::Publish],
        Cmd::Churn => vec![Step::Churn],
        Cmd::Floor => vec![Step::Floor],
        Cmd::Cluster => vec![Step::Cluster],
        Cmd::Private => vec![Step::Private],
        Cmd::Presence => vec![Step::Presence],
        Cmd::Batch => vec![Step::Batch],
        Cmd::Reconnect => vec![Step::Reconnect],
        Cmd::Fixed => vec![Step::Fixed],
        Cmd::Compare { .. } => unreachable!("handled in main"),
    };
    let mut failed = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(o.settle_secs));
        }
        let (name, result) = rt.block_on(run_step(*step, &target, &probe, &cluster, &o));
        eprintln!("[{name}] done");
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                eprintln!("[{name}] failed: {e}");
                failed.push(name);
                json!({ "error": e })
            }
        };
        print!("{}", report::table(name, &v));
        doc["results"][name] = v;
        if let Some(path) = &o.json {
            write_json(path, &doc)?;
        }
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed scenarios: {}", failed.join(", ")))
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Idle,
    Fanout,
    Publish,
    Churn,
    Floor,
    Cluster,
    Private,
    Presence,
    Batch,
    Reconnect,
    Fixed,
}

/// Node B and the probes of the cluster scenario.
struct ClusterCtx {
    node_b: Target,
    probes: ClusterProbes,
}

async fn run_step(
    step: Step,
    t: &Target,
    p: &Probe,
    c: &ClusterCtx,
    o: &Opts,
) -> (&'static str, Result<Value, String>) {
    fn to_value<T: serde::Serialize>(r: Result<T, String>) -> Result<Value, String> {
        r.and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
    }
    match step {
        Step::Idle => {
            eprintln!(
                "[idle] {} connections over {} channels",
                o.idle_connections, o.idle_channels
            );
            let opts = IdleOpts {
                connections: o.idle_connections,
                channels: o.idle_channels,
                concurrency: o.connect_concurrency,
                hold_secs: o.idle_hold_secs,
            };
            ("idle", to_value(scenarios::idle(t, p, &opts).await))
        }
        Step::Fanout => {
            eprintln!(
                "[fanout] {} subscribers over {} channels, {} publishes/s for {} s",
                o.fanout_subscribers, o.fanout_channels, o.fanout_rate, o.fanout_secs
            );
            let opts = FanoutOpts {
                subscribers: o.fanout_subscribers,
                channels: o.fanout_channels,
                event_size: o.event_size,
                rate: o.fanout_rate,
                secs: o.fanout_secs,
                publishers: o.fanout_publishers,
                drain_secs: o.drain_secs,
                concurrency: o.connect_concurrency,
                floor_secs: o.floor_secs,
                server_core: o.pin_server,
            };
            ("fanout", to_value(scenarios::fanout(t, p, &opts).await))
        }
        Step::Publish => {
            eprintln!(
                "[publish] {} connections for {} s",
                o.publish_connections, o.publish_secs
            );
            let opts = PublishOpts {
                connections: o.publish_connections,
                secs: o.publish_secs,
                event_size: o.event_size,
                floor_secs: o.floor_secs.min(o.publish_secs),
                server_core: o.pin_server,
            };
            ("publish", to_value(scenarios::publish(t, p, &opts).await))
        }
        Step::Churn => {
            eprintln!(
                "[churn] {} loops for {} s",
                o.churn_concurrency, o.churn_secs
            );
            let opts = ChurnOpts {
                secs: o.churn_secs,
                concurrency: o.churn_concurrency,
                channels: o.churn_channels,
                warmup_secs: o.churn_warmup_secs,
                sample_ms: o.rss_sample_ms,
            };
            ("churn", to_value(scenarios::churn(t, p, &opts).await))
        }
        Step::Floor => {
            let secs = if o.floor_secs > 0.0 {
                o.floor_secs
            } else {
                10.0
            };
            let frame_bytes = scenarios::frame_bytes(o.event_size);
            eprintln!(
                "[floor] {} sockets over {} channels, {} writes of a {}-byte frame per second for {} s",
                o.fanout_subscribers,
                o.fanout_channels,
                o.fanout_rate * (o.fanout_subscribers / o.fanout_channels.max(1)) as f64,
                frame_bytes,
                secs
            );
            let opts = scenarios::FloorOpts {
                sockets: o.fanout_subscribers,
                channels: o.fanout_channels,
                frame_bytes,
                rate: o.fanout_rate,
                secs,
                writer_core: o.pin_server,
            };
            ("floor", to_value(scenarios::floor(&opts).await))
        }
        Step::Fixed => {
            eprintln!(
                "[fixed] {} × {:?}{}",
                o.fixed_count,
                o.fixed_op,
                if o.fixed_op == FixedOp::Fanout {
                    format!(" to {} subscribers", o.fixed_subscribers)
                } else {
                    String::new()
                }
            );
            let opts = FixedOpts {
                op: o.fixed_op,
                count: o.fixed_count,
                subscribers: o.fixed_subscribers,
                event_size: o.event_size,
            };
            let r = scenarios::fixed(t, &opts)
                .await
                .and_then(|r| scenarios::verify_fixed(&r).map(|()| r));
            ("fixed", to_value(r))
        }
        Step::Cluster => {
            eprintln!(
                "[cluster] {} subscribers over {} channels on nodes :{} and :{}, {} publishes/s to :{} for {} s",
                o.cluster_subscribers,
                o.cluster_channels,
                t.addr.port(),
                c.node_b.addr.port(),
                o.cluster_rate,
                t.addr.port(),
                o.cluster_secs
            );
            let opts = ClusterOpts {
                node_b: c.node_b.clone(),
                subscribers: o.cluster_subscribers,
                channels: o.cluster_channels,
                event_size: o.event_size,
                rate: o.cluster_rate,
                secs: o.cluster_secs,
                publishers: o.cluster_publishers,
                drain_secs: o.drain_secs,
                concurrency: o.connect_concurrency,
                warmup_secs: o.cluster_warmup_secs,
                floor_secs: o.floor_secs,
                server_core: o.pin_server,
            };
            (
                "cluster",
                to_value(scenarios::cluster(t, &c.probes, &opts).await),
            )
        }
        Step::Private => {
            eprintln!(
                "[private] {} users on private-user-N channels, {} publishes/s to random users for {} s",
                o.private_users, o.private_rate, o.private_secs
            );
            let opts = PrivateOpts {
                users: o.private_users,
                event_size: o.event_size,
                rate: o.private_rate,
                secs: o.private_secs,
                publishers: o.private_publishers,
                drain_secs: o.drain_secs,
                concurrency: o.connect_concurrency,
            };
            let r = match fits_nofile(o.private_users) {
                Ok(()) => scenarios::private(t, p, &opts).await,
                Err(e) => Err(e),
            };
            ("private", to_value(r))
        }
        Step::Presence => {
            eprintln!(
                "[presence] {} users join one presence channel over {} s, then leave over {} s",
                o.presence_users, o.presence_join_secs, o.presence_leave_secs
            );
            let opts = PresenceOpts {
                users: o.presence_users,
                join_secs: o.presence_join_secs,
                leave_secs: o.presence_leave_secs,
                wait_secs: o.presence_wait_secs,
                concurrency: o.connect_concurrency,
            };
            let r = match fits_nofile(o.presence_users) {
                Ok(()) => scenarios::presence(t, p, &opts).await,
                Err(e) => Err(e),
            };
            ("presence", to_value(r))
        }
        Step::Batch => {
            eprintln!(
                "[batch] {} subscribers over {} channels, {} batches/s of {} events for {} s",
                o.batch_subscribers, o.batch_size, o.batch_rate, o.batch_size, o.batch_secs
            );
            let opts = BatchOpts {
                subscribers: o.batch_subscribers,
                size: o.batch_size,
                event_size: o.event_size,
                rate: o.batch_rate,
                secs: o.batch_secs,
                publishers: o.batch_publishers,
                drain_secs: o.drain_secs,
                concurrency: o.connect_concurrency,
            };
            ("batch", to_value(scenarios::batch(t, p, &opts).await))
        }
        Step::Reconnect => {
            eprintln!(
                "[reconnect] {} sockets over {} channels dropped at once ({}), reconnecting within {} ms of jitter",
                o.reconnect_sockets,
                o.reconnect_channels,
                if o.reconnect_rst { "RST" } else { "FIN" },
                o.reconnect_jitter_ms
            );
            let opts = ReconnectOpts {
                sockets: o.reconnect_sockets,
                channels: o.reconnect_channels,
                concurrency: o.connect_concurrency,
                jitter_ms: o.reconnect_jitter_ms,
                backoff_ms: o.reconnect_backoff_ms,
                backoff_max_ms: o.reconnect_backoff_max_ms,
                limit_secs: o.reconnect_limit_secs,
                rst: o.reconnect_rst,
                drain_secs: o.drain_secs,
            };
            let r = match fits_nofile(o.reconnect_sockets) {
                Ok(()) => scenarios::reconnect(t, p, &opts).await,
                Err(e) => Err(e),
            };
            ("reconnect", to_value(r))
        }
    }
}

/// Fails if `sockets` client sockets would not fit the open-file limit.
fn fits_nofile(sockets: usize) -> Result<(), String> {
    let limit = procfs::nofile_limit();
    if (sockets as u64) + 100 > limit {
        return Err(format!(
            "{sockets} sockets need more than the open-file limit {limit} allows"
        ));
    }
    Ok(())
}

fn print_machine(doc: &Value) {
    let m = &doc["machine"];
    println!(
        "machine: {} | {} logical cores | {} MiB | kernel {} | nofile {}",
        m["cpu_model"].as_str().unwrap_or("?"),
        m["logical_cores"],
        m["mem_total_mib"],
        m["kernel"].as_str().unwrap_or("?"),
        m["nofile_limit"]
    );
    println!(
        "target: {} (pid {}, {}) | pinning {}",
        doc["target"]["label"].as_str().unwrap_or("?"),
        doc["target"]["server_pid"],
        doc["target"]["server_exe"].as_str().unwrap_or(""),
        doc["pinning"]
    );
}

fn write_json(path: &PathBuf, doc: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(doc).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts() {
        assert!(loopback("127.0.0.1").is_ok());
        assert!(loopback("localhost").is_ok());
        assert!(loopback("::1").is_ok());
        assert!(loopback("10.0.0.1").is_err());
        assert!(loopback("example.com").is_err());
    }

    #[test]
    fn defaults_are_valid_and_bounded() {
        let cli = Cli::try_parse_from(["switchyard-bench", "all"]).unwrap();
        assert!(validate(&cli.o).is_ok());
        let cli = Cli::try_parse_from(["switchyard-bench", "idle", "--idle-connections", "50000"])
            .unwrap();
        assert!(validate(&cli.o).is_err());
        let cli =
            Cli::try_parse_from(["switchyard-bench", "cluster", "--cluster-rate", "0"]).unwrap();
        assert!(validate(&cli.o).is_err());
        let cli = Cli::try_parse_from([
            "switchyard-bench",
            "cluster",
            "--port-b",
            "16002",
            "--redis-port",
            "16379",
        ])
        .unwrap();
        assert!(validate(&cli.o).is_ok());
        assert_eq!((cli.o.port_b, cli.o.redis_port), (16002, Some(16379)));
        for cmd in ["private", "presence", "batch", "reconnect"] {
            let cli = Cli::try_parse_from(["switchyard-bench", cmd]).unwrap();
            assert!(validate(&cli.o).is_ok(), "{cmd}");
        }
        for bad in [
            ["--presence-users", "1"],
            ["--presence-users", "6000"],
            ["--reconnect-sockets", "20000"],
            ["--batch-size", "0"],
        ] {
            let cli =
                Cli::try_parse_from(["switchyard-bench", "presence", bad[0], bad[1]]).unwrap();
            assert!(validate(&cli.o).is_err(), "{bad:?}");
        }
    }
}
