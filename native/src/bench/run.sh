#!/usr/bin/env bash
# Runs every `parlor bench` scenario RUNS times against a fresh bench_server per run (server
# pinned to CPU 0, generator to CPU 1 when taskset and two CPUs exist), appends each
# summary line to OUT, and prints the medians as a Markdown table.
#
#   cargo build --release -j2 -p parlor --bin parlor --example bench_server
#   native/src/bench/run.sh                      # RUNS=3 OUT=bench-results.jsonl PORT=3999
#   SCENARIOS="fanout echo" RUNS=5 native/src/bench/run.sh
#
# Before each run it waits (QUIET_MAX seconds at most, default 900) until the machine is
# quiet: under QUIET_PCT percent of a core busy (default 15) over 2 s; WAIT_QUIET=0 skips
# that. Every summary line carries `others_busy` (cores used by other processes during the
# measured window) so that a disturbed run shows.
#
# Extra server flags go in SERVER_ARGS, extra generator flags per scenario in the
# FANOUT_ARGS, ECHO_ARGS, IDLE_ARGS, STORM_ARGS and ROOMS_ARGS variables.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
RUNS=${RUNS:-3}
OUT=${OUT:-bench-results.jsonl}
PORT=${PORT:-3999}
SCENARIOS=${SCENARIOS:-fanout echo idle storm rooms}
SERVER=${SERVER:-$ROOT/target/release/examples/bench_server}
PARLOR=${PARLOR:-$ROOT/target/release/parlor}
SERVER_ARGS=${SERVER_ARGS:-}
FANOUT_ARGS=${FANOUT_ARGS:---clients 1000 --messages 2000 --size 100 --in-flight 64}
ECHO_ARGS=${ECHO_ARGS:---clients 50 --seconds 10}
IDLE_ARGS=${IDLE_ARGS:---clients 10000 --seconds 30}
STORM_ARGS=${STORM_ARGS:---clients 50 --seconds 10}
ROOMS_ARGS=${ROOMS_ARGS:---rooms 200 --members 5 --seconds 10}

PIN_SERVER=()
PIN_GEN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0)
  PIN_GEN=(taskset -c 1)
fi

for bin in "$SERVER" "$PARLOR"; do
  [ -x "$bin" ] || { echo "missing $bin: cargo build --release -j2 -p parlor --bin parlor --example bench_server" >&2; exit 1; }
done

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
wait_quiet() {
  [ "${WAIT_QUIET:-1}" = 1 ] || return 0
  local waited=0 a b pct
  while :; do
    a=$(busy_ticks); sleep 2; b=$(busy_ticks)
    pct=$(( (b - a) * 100 / (2 * TCK) ))
    [ "$pct" -lt "${QUIET_PCT:-15}" ] && return 0
    waited=$((waited + 2))
    if [ "$waited" -ge "${QUIET_MAX:-900}" ]; then
      echo "the machine is still busy ($pct% of a core) after ${waited}s; running anyway" >&2
      return 0
    fi
  done
}

start_server() {
  : >"$TMP/server.out"
  # shellcheck disable=SC2086
  "${PIN_SERVER[@]}" "$SERVER" --listen "127.0.0.1:$PORT" --log warn $SERVER_ARGS >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    grep -q "parlor listening on" "$TMP/server.out" && return 0
    sleep 0.05
  done
  echo "the server did not start:" >&2
  cat "$TMP/server.err" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  sleep 1
}

for run in $(seq "$RUNS"); do
  for scenario in $SCENARIOS; do
    case $scenario in
      fanout) args=$FANOUT_ARGS ;;
      echo) args=$ECHO_ARGS ;;
      idle) args=$IDLE_ARGS ;;
      storm) args=$STORM_ARGS ;;
      rooms) args=$ROOMS_ARGS ;;
      *) echo "unknown scenario $scenario" >&2; exit 1 ;;
    esac
    wait_quiet
    start_server
    echo "run $run/$RUNS: $scenario $args" >&2
    # shellcheck disable=SC2086
    line=$("${PIN_GEN[@]}" "$PARLOR" bench "$scenario" --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json $args)
    echo "$line" | tee -a "$OUT" >&2
    stop_server
  done
done

python3 - "$OUT" "$RUNS" <<'EOF'
import json, sys
from collections import defaultdict

path, runs = sys.argv[1], int(sys.argv[2])
lines = [json.loads(l) for l in open(path) if l.startswith('{"scenario"')]
# The last RUNS lines of each scenario: this invocation's.
by = defaultdict(list)
for l in lines:
    by[l["scenario"]].append(l)
shown = {
    "fanout": ["msgs_per_s", "lost", "p50_us", "p99_us", "max_us", "server_cpu_us_per_msg", "gen_cpu_us_per_msg", "server_busy", "gen_busy", "others_busy"],
    "echo": ["acks_per_s", "p50_us", "p99_us", "server_cpu_us_per_ack", "gen_cpu_us_per_ack", "server_busy", "gen_busy", "others_busy"],
    "idle": ["clients", "connect_failed", "server_rss_per_conn_kib", "gen_rss_per_conn_kib", "pings", "closed", "others_busy"],
    "storm": ["conns_per_s", "failures", "p50_us", "p99_us", "server_cpu_us_per_conn", "gen_cpu_us_per_conn", "server_busy", "gen_busy", "others_busy"],
    "rooms": ["msgs_per_s", "p50_us", "p99_us", "server_cpu_us_per_msg", "gen_cpu_us_per_msg", "server_busy", "gen_busy", "others_busy"],
}
def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
print("| scenario | metric | median | min | max | runs |")
print("|---|---|---:|---:|---:|---:|")
for scenario, keys in shown.items():
    rs = by.get(scenario, [])[-runs:]
    if not rs:
        continue
    for k in keys:
        xs = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
        if xs:
            print(f"| {scenario} | {k} | {median(xs):g} | {min(xs):g} | {max(xs):g} | {len(xs)} |")
EOF
