#!/usr/bin/env bash
# One-command benchmark: Switchyard (and optionally Sockudo) on this machine.
#
#   bench/run.sh                                   # Switchyard only
#   SOCKUDO_BIN=/path/to/sockudo bench/run.sh      # plus Sockudo, side by side
#   OUT_DIR=/tmp/bench bench/run.sh                # choose where results go
#
# Builds Switchyard and switchyard-bench in release mode, starts the server
# pinned to SERVER_CORE with an app that allows the load, runs every scenario
# of `all` (idle, fanout — which ends by measuring the loopback floor with its
# own traffic, see `switchyard-bench floor` — publish, churn), then private,
# presence, batch and reconnect from CLIENT_CORE, each against a freshly
# started server (ONE_SERVER=1: `all`, then the others, against a single
# server), then
# the same for SOCKUDO_BIN if given, and writes <label>.<scenario>.json/.txt,
# <label>.server.log and the side-by-side comparison.md to OUT_DIR (default
# bench/results/<timestamp>, ignored by git).
#
# The cluster scenario (`SCENARIOS=cluster bench/run.sh` for it alone) starts,
# for each server under test, a fresh redis-server of its own on a free port
# (no persistence), two nodes of that server with ADAPTER_DRIVER=redis on it
# (node A on PORT, node B on PORT_B), runs `switchyard-bench cluster`
# (subscribers on both nodes, publishes to A) and stops all three. Nodes and
# Redis share SERVER_CORE, as one server does in the other scenarios, so that
# the load generator keeps CLIENT_CORE to itself; logs go to
# <label>.cluster-a.log, <label>.cluster-b.log and <label>.redis.log. It is
# skipped, with a warning, when redis-server is not installed. For Sockudo,
# SOCKUDO_BIN must be built with its `redis` feature (`--features redis`).
#
# Environment (all optional):
#   SOCKUDO_BIN   path to a built `sockudo` binary (not built by this script)
#   PORT          port for the servers under test      (default 16001)
#   SERVER_CORE   core for the server                   (default 0)
#   CLIENT_CORE   core for the load generator           (default 1)
#   BENCH_ARGS    extra switchyard-bench arguments, e.g. "--churn-secs 30"
#   ONE_SERVER    1 = run `all` against one server process instead (the
#                 cluster scenario still gets its own nodes and Redis)
#   SCENARIOS     scenarios to run, in order  (default "idle fanout publish
#                 churn cluster private presence batch reconnect")
#   PORT_B        port of the cluster's node B          (default PORT+1)
#   REDIS_SERVER  redis-server binary                   (default redis-server)
#   CARGO_TARGET_DIR  as for cargo (default <repo>/target)
#   SWITCHYARD_BIN    a built switchyard to measure instead of building one
#                     (before/after comparisons); nothing is built then
#   BENCH_BIN         the load generator (default: beside SWITCHYARD_BIN, or
#                     the one built)
#
# Default sizes fit a 2-core machine with a 20,000 open-file limit:
# idle 15,000 connections / 100 channels; fan-out 2,000 subscribers /
# 10 channels, 100-byte events at 200 publishes/s for 20 s (40,000
# deliveries/s); publish 15 s over 8 keep-alive connections; churn 60 s with
# 32 loops; cluster 2,000 subscribers (1,000 per node) / 10 channels, 100-byte
# events at 100 publishes/s to node A for 20 s (20,000 deliveries/s, half of
# them across Redis; both nodes and Redis share SERVER_CORE); private
# 10,000 sockets each on its own private-user-N channel (signed
# subscriptions), 2,000 publishes/s to random users for 20 s; presence 1,000
# users joining one presence channel over 5 s, then leaving over 5 s (about
# 500,000 member_added and as many member_removed); batch 400 subscribers
# over 10 channels, 100 batch_events/s of 10 events (one per channel) for
# 20 s (40,000 deliveries/s); reconnect 10,000 sockets over 100 channels,
# dropped at once and reconnecting within 1 s of jitter. Only 127.0.0.1
# is contacted; every phase is bounded in time.
#
# The app allows 20,000 presence members per channel
# (SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL; Sockudo also gets
# PRESENCE_MAX_MEMBERS): the default of 100 would refuse the presence storm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PORT:-16001}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
PORT_B="${PORT_B:-$((PORT + 1))}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
read -r -a SCENARIO_LIST <<<"${SCENARIOS:-idle fanout publish churn cluster private presence batch reconnect}"
for s in "${SCENARIO_LIST[@]}"; do
  case "$s" in
    idle | fanout | publish | churn | cluster | private | presence | batch | reconnect) ;;
    *) echo "unknown scenario in SCENARIOS: $s" >&2; exit 1 ;;
  esac
done
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT_DIR="${OUT_DIR:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}"
read -r -a EXTRA <<<"${BENCH_ARGS:-}"

APP_ID=app-id
APP_KEY=app-key
APP_SECRET=app-secret

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

if [ -n "${SWITCHYARD_BIN:-}" ]; then
  # A given build (say, the one before a change): nothing is built, and the
  # load generator beside it is used.
  BENCH="${BENCH_BIN:-$(dirname "$SWITCHYARD_BIN")/switchyard-bench}"
else
  echo "== building (release)"
  # Without OUT_DIR: ring's build script declares rerun-if-env-changed=OUT_DIR,
  # so a results directory in the environment would rebuild it on every run.
  (cd "$ROOT" && env -u OUT_DIR cargo build --release -p switchyard -p switchyard-bench)
  BENCH="${BENCH_BIN:-$TARGET_DIR/release/switchyard-bench}"
  SWITCHYARD_BIN="$TARGET_DIR/release/switchyard"
fi

# Environment shared by both servers: one app without limits, no rate
# limiting, no metrics, deep per-socket buffers, quiet logs.
common_env=(
  HOST=127.0.0.1
  PORT="$PORT"
  SOCKUDO_DEFAULT_APP_ID="$APP_ID"
  SOCKUDO_DEFAULT_APP_KEY="$APP_KEY"
  SOCKUDO_DEFAULT_APP_SECRET="$APP_SECRET"
  SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=0
  SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=0
  SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=0
  SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL=20000
  RATE_LIMITER_ENABLED=false
  METRICS_ENABLED=false
  WEBSOCKET_MAX_MESSAGES=100000
  RUST_LOG=warn
)
# Sockudo also needs in-process drivers so that it runs without Redis.
sockudo_env=(
  ADAPTER_DRIVER=local
  CACHE_DRIVER=memory
  QUEUE_DRIVER=memory
  APP_MANAGER_DRIVER=memory
  RATE_LIMITER_DRIVER=memory
  SOCKUDO_MAX_CONNECTIONS=0
  # Its server-wide presence limit, besides the app's.
  PRESENCE_MAX_MEMBERS=20000
  # Sockudo preallocates a bounded queue of this many slots per socket
  # (~11 MB per socket at 100000): keep its default of 1000 so that 15,000
  # sockets fit in memory. Switchyard only counts against the limit.
  WEBSOCKET_MAX_MESSAGES=1000
)
# Sockudo in a cluster refuses to start with idempotency on and a node-local
# cache ("clustered Ably compatibility and idempotency require
# cache.driver=redis"). Switchyard has no idempotency keys and the benchmark
# sends none, so it is switched off rather than moving the cache to Redis.
sockudo_cluster_env=(
  IDEMPOTENCY_ENABLED=false
)
# Extra environment of the cluster nodes of the server being run.
cluster_extra=()

# The cluster's nodes: Redis on REDIS_PORT (chosen free per cluster), shared
# by both nodes; the key prefix is the same for both.
cluster_env() { # REDIS_PORT
  echo ADAPTER_DRIVER=redis REDIS_URL="redis://127.0.0.1:$1/" \
    DATABASE_REDIS_HOST=127.0.0.1 DATABASE_REDIS_PORT="$1" \
    DATABASE_REDIS_KEY_PREFIX=bench:
}

stop_pid() { # PID
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$1" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

SERVER_PID=""
stop_server() {
  stop_pid "$SERVER_PID"
  SERVER_PID=""
}

NODE_A_PID=""
NODE_B_PID=""
REDIS_PID=""
REDIS_PORT=""
REDIS_DIR=""
stop_cluster() {
  stop_pid "$NODE_A_PID"
  stop_pid "$NODE_B_PID"
  stop_pid "$REDIS_PID"
  NODE_A_PID="" NODE_B_PID="" REDIS_PID=""
  if [ -n "$REDIS_DIR" ]; then rm -rf "$REDIS_DIR"; fi
  REDIS_DIR=""
}
trap 'stop_server; stop_cluster' EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/${1:-$PORT}") 2>/dev/null; }

# A port nothing listens on, for a fresh redis-server.
free_port() {
  local p
  for p in $(seq 16379 16479); do
    if [ "$p" != "$PORT" ] && [ "$p" != "$PORT_B" ] && ! port_open "$p"; then
      echo "$p"
      return
    fi
  done
  echo "no free port in 16379-16479 for redis-server" >&2
  exit 1
}

redis_ping() ( # PORT (in a subshell: a refused connection must not end the script)
  reply=""
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'PING\r\n' >&3
  read -r -t 1 reply <&3 || true
  [[ "$reply" == +PONG* ]]
)

start_server() { # LABEL BINARY [EXTRA_ENV...]
  local label="$1" bin="$2"
  shift 2
  if port_open; then
    echo "port $PORT is already in use; set PORT=..." >&2
    exit 1
  fi
  env "${common_env[@]}" "$@" taskset -c "$SERVER_CORE" "$bin" \
    >>"$OUT_DIR/$label.server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    port_open && break
    kill -0 "$SERVER_PID" 2>/dev/null || {
      echo "$label exited during start-up; see $OUT_DIR/$label.server.log" >&2
      exit 1
    }
    sleep 0.1
  done
  port_open || { echo "$label did not open port $PORT" >&2; exit 1; }
  sleep 1
}

# start_node LABEL LOG PORT BINARY [EXTRA_ENV...]: one cluster node on PORT;
# its PID in NODE_PID.
NODE_PID=""
start_node() {
  local label="$1" log="$2" port="$3" bin="$4"
  shift 4
  if port_open "$port"; then
    echo "port $port is already in use; set PORT / PORT_B" >&2
    exit 1
  fi
  env "${common_env[@]}" "$@" PORT="$port" taskset -c "$SERVER_CORE" "$bin" \
    >>"$OUT_DIR/$log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 300); do
    port_open "$port" && break
    kill -0 "$NODE_PID" 2>/dev/null || {
      echo "$label exited during start-up; see $OUT_DIR/$log" >&2
      exit 1
    }
    sleep 0.1
  done
  port_open "$port" || { echo "$label did not open port $port" >&2; exit 1; }
}

# start_cluster LABEL BINARY [EXTRA_ENV...]: a fresh redis-server on a free
# port, then nodes A (PORT) and B (PORT_B) on it, all on SERVER_CORE.
start_cluster() {
  local label="$1" bin="$2"
  shift 2
  REDIS_PORT="$(free_port)"
  REDIS_DIR="$(mktemp -d)"
  (cd "$REDIS_DIR" && exec taskset -c "$SERVER_CORE" "$REDIS_SERVER" --port "$REDIS_PORT" \
    --bind 127.0.0.1 --save '' --appendonly no --dir "$REDIS_DIR" \
    >>"$OUT_DIR/$label.redis.log" 2>&1) &
  REDIS_PID=$!
  for _ in $(seq 1 100); do
    redis_ping "$REDIS_PORT" 2>/dev/null && break
    kill -0 "$REDIS_PID" 2>/dev/null || {
      echo "redis-server exited during start-up; see $OUT_DIR/$label.redis.log" >&2
      exit 1
    }
    sleep 0.1
  done
  redis_ping "$REDIS_PORT" || { echo "redis-server did not answer PING" >&2; exit 1; }
  local -a cenv
  read -r -a cenv <<<"$(cluster_env "$REDIS_PORT")"
  start_node "$label node A" "$label.cluster-a.log" "$PORT" "$bin" "$@" "${cenv[@]}"
  NODE_A_PID="$NODE_PID"
  start_node "$label node B" "$label.cluster-b.log" "$PORT_B" "$bin" "$@" "${cenv[@]}"
  NODE_B_PID="$NODE_PID"
  sleep 1
}

bench_cluster() { # LABEL
  "$BENCH" cluster --port "$PORT" --port-b "$PORT_B" --app-id "$APP_ID" --key "$APP_KEY" \
    --secret "$APP_SECRET" --server-pid "$NODE_A_PID" --server-pid-b "$NODE_B_PID" \
    --redis-pid "$REDIS_PID" --redis-port "$REDIS_PORT" \
    --pin-server "$SERVER_CORE" --pin-client "$CLIENT_CORE" \
    --label "$1" --json "$OUT_DIR/$1.cluster.json" "${EXTRA[@]}" \
    | tee "$OUT_DIR/$1.cluster.txt" || echo "warning: $1 cluster reported failures" >&2
}

run_cluster() { # LABEL BINARY [EXTRA_ENV...]
  local label="$1" bin="$2"
  if ! command -v "$REDIS_SERVER" >/dev/null; then
    echo "warning: $REDIS_SERVER not found; skipping the cluster scenario" >&2
    return
  fi
  echo "== $label: cluster, two fresh nodes on a fresh redis-server ($bin, core $SERVER_CORE)"
  start_cluster "$@" "${cluster_extra[@]}"
  bench_cluster "$label"
  stop_cluster
  sleep 2
  files+=("$OUT_DIR/$label.cluster.json")
}

bench() { # LABEL SCENARIO
  "$BENCH" "$2" --port "$PORT" --app-id "$APP_ID" --key "$APP_KEY" --secret "$APP_SECRET" \
    --server-pid "$SERVER_PID" --pin-server "$SERVER_CORE" --pin-client "$CLIENT_CORE" \
    --label "$1" --json "$OUT_DIR/$1.$2.json" "${EXTRA[@]}" \
    | tee "$OUT_DIR/$1.$2.txt" || echo "warning: $1 $2 reported failures" >&2
}

# run_one LABEL BINARY [EXTRA_ENV...]: every scenario against a freshly
# started server (default), or `all` against one server with ONE_SERVER=1.
# A fresh server per scenario matters: allocators keep freed memory, so the
# churn leak check would otherwise run inside the heap left by 15,000 idle
# sockets and see no growth at all.
run_one() {
  local label="$1" bin="$2"
  shift 2
  if [ "${ONE_SERVER:-0}" = 1 ]; then
    echo "== $label: all scenarios against one server ($bin, core $SERVER_CORE)"
    start_server "$label" "$bin" "$@"
    bench "$label" all
    files+=("$OUT_DIR/$label.all.json")
    # The scenarios `all` leaves out, listed in SCENARIOS, on the same server.
    for scenario in "${SCENARIO_LIST[@]}"; do
      case "$scenario" in
        private | presence | batch | reconnect)
          sleep 3
          bench "$label" "$scenario"
          files+=("$OUT_DIR/$label.$scenario.json")
          ;;
      esac
    done
    stop_server
    sleep 2
    if [[ " ${SCENARIO_LIST[*]} " == *" cluster "* ]]; then
      run_cluster "$label" "$bin" "$@"
    fi
    return
  fi
  for scenario in "${SCENARIO_LIST[@]}"; do
    if [ "$scenario" = cluster ]; then
      run_cluster "$label" "$bin" "$@"
      continue
    fi
    echo "== $label: $scenario against a fresh server ($bin, core $SERVER_CORE)"
    start_server "$label" "$bin" "$@"
    bench "$label" "$scenario"
    stop_server
    sleep 2
    files+=("$OUT_DIR/$label.$scenario.json")
  done
}

files=()
run_one switchyard "$SWITCHYARD_BIN"
if [ -n "${SOCKUDO_BIN:-}" ]; then
  cluster_extra=("${sockudo_cluster_env[@]}")
  run_one sockudo "$SOCKUDO_BIN" "${sockudo_env[@]}"
fi

if [ "${#files[@]}" -eq 0 ]; then
  echo "no results to compare" >&2
  exit 1
fi
{
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, $(free -m | awk '/^Mem:/{print $2}') MiB, kernel $(uname -r)"
  echo "Server core $SERVER_CORE, client core $CLIENT_CORE; git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  "$BENCH" compare "${files[@]}"
} >"$OUT_DIR/comparison.md"
echo "== results in $OUT_DIR"
cat "$OUT_DIR/comparison.md"
