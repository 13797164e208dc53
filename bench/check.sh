#!/usr/bin/env bash
# Performance regression guard that does not depend on wall time.
#
#   make bench-check                        # or: bench/check.sh
#   make bench-baseline                     # or: BENCH_CHECK_UPDATE=1 bench/check.sh
#   BENCH_CHECK_REPEAT=1 bench/check.sh     # measure once (half the time)
#
# Counts the instructions the release `switchyard` executes per operation
# with callgrind (valgrind --tool=callgrind) and compares them with the
# baseline committed in bench/baseline.json; exits 1 when any figure is more
# than 10 % (BENCH_CHECK_TOLERANCE) above it. Instruction counts do not
# depend on the machine's load or speed, so the check is repeatable where a
# timing benchmark is not; they do depend on the compiler, so a baseline
# recorded with another rustc is warned about (and still compared).
#
# How: for each operation the server is started under callgrind twice, each
# time for a fixed count of that operation (`switchyard-bench fixed`, closed
# loop: every operation finished before the next starts), N1 and then N2
# times. Start-up, connecting the subscribers and shutdown are the same in
# both runs, so
#     instructions per operation = (Ir(N2) - Ir(N1)) / (N2 - N1).
# The operations:
#   fanout_per_delivery  one HTTP publish to a public channel with
#                        FANOUT_SUBSCRIBERS sockets, all of which receive it;
#                        per delivery (so it includes 1/FANOUT_SUBSCRIBERS of
#                        the publish itself)
#   publish_per_publish  one HTTP publish to a channel without subscribers
#   single_per_publish   one HTTP publish to a channel with one subscriber,
#                        which receives it (the private-channel-per-user
#                        pattern: the publish and its one delivery)
#   presence_per_cycle   subscribe to a presence channel (signed auth, member
#                        data), subscription_succeeded, unsubscribe
# The server runs on one core (taskset: one HTTP worker, one registry shard)
# with a clean environment, an app without limits and no metrics listener.
# Only user-space instructions of the server are counted (not the kernel's,
# not the load generator's).
#
# Each figure is measured BENCH_CHECK_REPEAT times (default 2; the spread
# between them is printed, typically under 1 %) and the lowest is compared.
# The fixed start-up cost is large and varies by millions of instructions
# from run to run (see EXCLUDED_FN), hence counts of 1000 to 10000 ops.
#
# Needs valgrind (3.19 tested; callgrind_annotate comes with it) and taskset;
# takes about a minute under valgrind, plus the release build. Not part of
# `make test`.
#
# Environment (all optional):
#   BENCH_CHECK_UPDATE=1      write bench/baseline.json from this run instead
#                             of comparing (then commit it)
#   BENCH_CHECK_TOLERANCE     allowed increase, percent          (default 10)
#   BENCH_CHECK_REPEAT        measurements per operation; the figure compared
#                             is the lowest, all are printed     (default 2)
#   BENCH_CHECK_BUILD=0       use the binaries already built in CARGO_TARGET_DIR
#   BENCH_CHECK_KEEP=1        keep the callgrind outputs and logs (path printed)
#   PORT                      port of the server under test      (default 16101)
#   SERVER_CORE, CLIENT_CORE  cores of the server and the load generator
#                             (default 0 and 1)
#   CARGO_TARGET_DIR          as for cargo (default <repo>/target)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASELINE="$ROOT/bench/baseline.json"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CARGO="${CARGO:-cargo}"
PORT="${PORT:-16101}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
TOLERANCE="${BENCH_CHECK_TOLERANCE:-10}"
REPEAT="${BENCH_CHECK_REPEAT:-2}"
UPDATE="${BENCH_CHECK_UPDATE:-0}"

# The workload. Changing it changes the figures: re-record the baseline.
FANOUT_SUBSCRIBERS=50
FANOUT_COUNTS=(20 220)    # publishes: 1000 and 11000 deliveries
PUBLISH_COUNTS=(100 1100)
PRESENCE_COUNTS=(50 1050)
SINGLE_COUNTS=(100 1100)
EVENT_SIZE=100
WORKLOAD="fanout ${FANOUT_SUBSCRIBERS} subscribers x ${FANOUT_COUNTS[*]} publishes; publish ${PUBLISH_COUNTS[*]}; presence ${PRESENCE_COUNTS[*]} cycles; single subscriber ${SINGLE_COUNTS[*]} publishes; ${EVENT_SIZE}-byte events"
METRICS=(fanout_per_delivery publish_per_publish presence_per_cycle single_per_publish)

APP_ID=app-id
APP_KEY=app-key
APP_SECRET=app-secret

for tool in valgrind callgrind_annotate taskset awk; do
  command -v "$tool" >/dev/null || { echo "bench/check.sh: $tool is required" >&2; exit 2; }
done
if ! [[ "$REPEAT" =~ ^[1-9][0-9]*$ ]]; then
  echo "BENCH_CHECK_REPEAT must be a positive integer" >&2; exit 2
fi
if ! [[ "$TOLERANCE" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "BENCH_CHECK_TOLERANCE must be a number (percent)" >&2; exit 2
fi
if [ "$(nproc)" -lt 2 ]; then CLIENT_CORE="$SERVER_CORE"; fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-check.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_CHECK_KEEP:-0}" = 1 ]; then
    echo "outputs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

started=$SECONDS
if [ "${BENCH_CHECK_BUILD:-1}" != 0 ]; then
  echo "== building (release)"
  # Without OUT_DIR: ring's build script reruns when it changes (see run.sh).
  (cd "$ROOT" && env -u OUT_DIR "$CARGO" build --release -p switchyard -p switchyard-bench)
fi
SWITCHYARD_BIN="$TARGET_DIR/release/switchyard"
BENCH="$TARGET_DIR/release/switchyard-bench"
for b in "$SWITCHYARD_BIN" "$BENCH"; do
  [ -x "$b" ] || { echo "bench/check.sh: $b not built" >&2; exit 2; }
done
# From the repository, so that a rust-toolchain override applies as for cargo.
RUSTC_VERSION="$(cd "$ROOT" && rustc --version 2>/dev/null || echo unknown)"
VALGRIND_VERSION="$(valgrind --version)"

# The server's whole environment: nothing is inherited from the caller's
# shell, and it runs in an empty directory (no .env file is read).
server_env=(
  PATH="$PATH"
  HOST=127.0.0.1
  PORT="$PORT"
  SOCKUDO_DEFAULT_APP_ID="$APP_ID"
  SOCKUDO_DEFAULT_APP_KEY="$APP_KEY"
  SOCKUDO_DEFAULT_APP_SECRET="$APP_SECRET"
  SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=0
  SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=0
  SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=0
  RATE_LIMITER_ENABLED=false
  METRICS_ENABLED=false
  REGISTRY_SHARDS=1
  SHUTDOWN_GRACE_PERIOD=2
  WEBSOCKET_MAX_MESSAGES=100000
  LOG_COLORS_ENABLED=false
  RUST_LOG=warn
)

# Not counted: quanta's clock calibration (governor's clock, built at start-up
# for the rate limiters) loops on clock_gettime for a stretch of wall time,
# so its instruction count varies by millions from run to run. Its inclusive
# cost is subtracted from the total. (callgrind's --toggle-collect would
# leave collection off for every thread once it fires.)
EXCLUDED_FN='<quanta::Clock as core::default::Default>::default'

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# measure OP COUNT: runs the server under callgrind for COUNT operations and
# sets IR to the instructions it executed (callgrind's total Ir). Runs in
# this shell (not in $(...)) so that the EXIT trap can stop the server.
IR=
measure() {
  local op="$1" count="$2" subscribers="${3:-$FANOUT_SUBSCRIBERS}"
  local tag="$op-$count-$RANDOM"
  local out="$WORK/callgrind.$tag.out" log="$WORK/server.$tag.log"
  if port_open; then
    echo "port $PORT is already in use; set PORT=..." >&2
    return 1
  fi
  mkdir -p "$WORK/cwd"
  (cd "$WORK/cwd" && exec env -i "${server_env[@]}" taskset -c "$SERVER_CORE" \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$SWITCHYARD_BIN" \
    >"$log" 2>&1) &
  SERVER_PID=$!
  local i
  for i in $(seq 1 1200); do
    port_open && break
    kill -0 "$SERVER_PID" 2>/dev/null || {
      echo "the server exited during start-up:" >&2
      cat "$log" >&2
      return 1
    }
    sleep 0.1
  done
  port_open || { echo "the server did not open port $PORT" >&2; return 1; }
  if ! taskset -c "$CLIENT_CORE" "$BENCH" fixed --port "$PORT" --app-id "$APP_ID" \
    --key "$APP_KEY" --secret "$APP_SECRET" --server-pid "$SERVER_PID" \
    --fixed-op "$op" --fixed-count "$count" --fixed-subscribers "$subscribers" \
    --event-size "$EVENT_SIZE" --op-timeout-secs 120 \
    >"$WORK/bench.$tag.log" 2>&1; then
    echo "switchyard-bench fixed --fixed-op $op --fixed-count $count failed:" >&2
    tail -n 20 "$WORK/bench.$tag.log" >&2
    return 1
  fi
  kill -TERM "$SERVER_PID"
  for i in $(seq 1 1200); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server did not exit within 120 s of SIGTERM" >&2
    return 1
  fi
  wait "$SERVER_PID" || true
  SERVER_PID=""
  # `totals:` (or, in older formats, `summary:`): the Ir of every thread.
  local ir
  ir="$(awk '/^totals:/ {t=$2} /^summary:/ {s=$2} END {print (t != "" ? t : s)}' "$out" 2>/dev/null)"
  if ! [[ "$ir" =~ ^[0-9]+$ ]]; then
    echo "no instruction total in $out; server log:" >&2
    cat "$log" >&2
    return 1
  fi
  local excluded
  excluded="$(callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null |
    awk -v f=":$EXCLUDED_FN [" 'index($0, f) { gsub(",", "", $1); print $1; exit }')"
  IR="$((ir - ${excluded:-0}))"
}

# per_op OP N1 N2 UNITS_PER_OP [SUBSCRIBERS]: sets PER to the instructions per unit from
# two runs (and IRS to their totals).
PER=""
IRS=""
per_op() {
  local op="$1" n1="$2" n2="$3" units="$4" subscribers="${5:-$FANOUT_SUBSCRIBERS}"
  local ir1 ir2
  measure "$op" "$n1" "$subscribers" || exit 1
  ir1="$IR"
  measure "$op" "$n2" "$subscribers" || exit 1
  ir2="$IR"
  IRS="Ir($n1)=$ir1 Ir($n2)=$ir2"
  PER="$(awk -v a="$ir1" -v b="$ir2" -v n1="$n1" -v n2="$n2" -v u="$units" \
    'BEGIN { printf "%.0f\n", (b - a) / ((n2 - n1) * u) }')"
}

declare -A NOW
declare -A RUNS
echo "== counting instructions under callgrind ($REPEAT measurement(s) per operation)"
for r in $(seq 1 "$REPEAT"); do
  for metric in "${METRICS[@]}"; do
    t0=$SECONDS
    case "$metric" in
      fanout_per_delivery)
        per_op fanout "${FANOUT_COUNTS[0]}" "${FANOUT_COUNTS[1]}" "$FANOUT_SUBSCRIBERS" ;;
      publish_per_publish)
        per_op publish "${PUBLISH_COUNTS[0]}" "${PUBLISH_COUNTS[1]}" 1 ;;
      presence_per_cycle)
        per_op presence "${PRESENCE_COUNTS[0]}" "${PRESENCE_COUNTS[1]}" 1 ;;
      single_per_publish)
        per_op fanout "${SINGLE_COUNTS[0]}" "${SINGLE_COUNTS[1]}" 1 1 ;;
    esac
    v="$PER"
    if ! [[ "$v" =~ ^[0-9]+$ ]] || [ "$v" -le 0 ]; then
      echo "bench/check.sh: $metric came out as '$v' [$IRS]: the measurement is broken" >&2
      exit 2
    fi
    echo "   $metric: $v instructions  [$IRS; $((SECONDS - t0)) s]"
    RUNS[$metric]="${RUNS[$metric]:-}${RUNS[$metric]:+ }$v"
    if [ -z "${NOW[$metric]:-}" ] || [ "$v" -lt "${NOW[$metric]}" ]; then
      NOW[$metric]="$v"
    fi
  done
done

if [ "$REPEAT" -gt 1 ]; then
  echo "== run-to-run spread ((max - min) / min)"
  for metric in "${METRICS[@]}"; do
    # shellcheck disable=SC2086
    printf '   %-22s %s\n' "$metric" "$(echo ${RUNS[$metric]} | awk '{
      mn = $1; mx = $1
      for (i = 2; i <= NF; i++) { if ($i < mn) mn = $i; if ($i > mx) mx = $i }
      printf "%s  -> %.2f %%", $0, (mx - mn) * 100 / mn }')"
  done
fi

# baseline_field NAME: a value of bench/baseline.json (one key per line).
baseline_field() {
  sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\} *$/\1/p" "$BASELINE" | head -n 1
}

if [ "$UPDATE" = 1 ]; then
  {
    echo "{"
    echo "  \"note\": \"Server instructions per operation counted by bench/check.sh under callgrind; regenerate with make bench-baseline (and commit) after an intended change or a compiler update.\","
    echo "  \"rustc\": \"$RUSTC_VERSION\","
    echo "  \"valgrind\": \"$VALGRIND_VERSION\","
    echo "  \"arch\": \"$(uname -m)\","
    echo "  \"git\": \"$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)\","
    echo "  \"recorded\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"workload\": \"$WORKLOAD\","
    last=$((${#METRICS[@]} - 1))
    for i in "${!METRICS[@]}"; do
      sep=","
      [ "$i" = "$last" ] && sep=""
      echo "  \"${METRICS[$i]}\": ${NOW[${METRICS[$i]}]}$sep"
    done
    echo "}"
  } >"$BASELINE"
  echo "== baseline written to bench/baseline.json (commit it) in $((SECONDS - started)) s"
  for metric in "${METRICS[@]}"; do
    printf '   %-22s %12s\n' "$metric" "${NOW[$metric]}"
  done
  exit 0
fi

if [ ! -f "$BASELINE" ]; then
  echo "no bench/baseline.json: record one with BENCH_CHECK_UPDATE=1 bench/check.sh" >&2
  exit 2
fi
base_rustc="$(baseline_field rustc)"
if [ "$base_rustc" != "$RUSTC_VERSION" ]; then
  echo
  echo "WARNING: the baseline was recorded with '$base_rustc', this build uses"
  echo "         '$RUSTC_VERSION'. Instruction counts change with the compiler:"
  echo "         a difference below may be the compiler's. Re-record the baseline"
  echo "         (make bench-baseline) on the new compiler from an unchanged tree."
fi
base_valgrind="$(baseline_field valgrind)"
if [ "$base_valgrind" != "$VALGRIND_VERSION" ]; then
  echo "WARNING: baseline recorded with $base_valgrind, this is $VALGRIND_VERSION."
fi
if [ "$(baseline_field arch)" != "$(uname -m)" ]; then
  echo "WARNING: baseline recorded on $(baseline_field arch), this is $(uname -m)."
fi
if [ "$(baseline_field workload)" != "$WORKLOAD" ]; then
  echo "WARNING: the baseline's workload differs from this script's; re-record it."
fi

echo
printf '%-22s %12s %12s %7s\n' "instructions per op" baseline now ratio
failed=()
for metric in "${METRICS[@]}"; do
  base="$(baseline_field "$metric")"
  now="${NOW[$metric]}"
  if ! [[ "$base" =~ ^[0-9]+$ ]]; then
    printf '%-22s %12s %12s %7s\n' "$metric" "-" "$now" "-"
    echo "   (not in the baseline: re-record it)"
    continue
  fi
  verdict="$(awk -v b="$base" -v n="$now" -v tol="$TOLERANCE" 'BEGIN {
    r = n / b
    v = (r > 1 + tol / 100) ? "REGRESSION" : ((r < 1 - tol / 100) ? "faster" : "ok")
    printf "%.3f %s", r, v }')"
  ratio="${verdict% *}"
  verdict="${verdict#* }"
  printf '%-22s %12s %12s %7s  %s\n' "$metric" "$base" "$now" "$ratio" "$verdict"
  [ "$verdict" = REGRESSION ] && failed+=("$metric")
done
echo
echo "(baseline: rustc '$base_rustc', git $(baseline_field git); took $((SECONDS - started)) s)"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "bench-check FAILED: ${failed[*]} more than ${TOLERANCE} % above the baseline"
  exit 1
fi
echo "bench-check passed (tolerance ${TOLERANCE} %)"
