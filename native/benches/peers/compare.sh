#!/usr/bin/env bash
# The side-by-side comparison: every `parlor bench` scenario against parlor's bench_server,
# socketioxide 0.18 (socketioxide/, a small crate of its own) and Node socket.io 4.8 (node/),
# all with the same three handlers. Not run by CI; see README.md beside this file.
#
#   native/benches/peers/compare.sh                  # RUNS=3 OUT=peers-results.jsonl PORT=3999
#   RUNS=6 SCENARIOS="fanout echo" native/benches/peers/compare.sh
#   SUMMARY_ONLY=1 OUT=peers-results.jsonl native/benches/peers/compare.sh   # tables again
#
# It builds what it needs first (parlor's binary and bench_server example, the socketioxide
# crate, `npm ci` in node/; BUILD=0 skips that). Then, RUNS rounds; in each, for every
# scenario, every server in turn (interleaved, so that drift touches all alike): wait for a
# quiet machine (lib.sh: WAIT_QUIET, QUIET_PCT, QUIET_MAX), start the server pinned to CPU 0,
# wait until it answers an Engine.IO handshake, run `parlor bench SCENARIO --server-pid PID
# --json ARGS` pinned to CPU 1, tag the summary line with "server" and "round", append it to
# OUT, stop the server. At the end, a Markdown table per scenario: median (min–max) per
# server and the ratios parlor/peer of the headline figures.
#
# SERVERS (default "parlor socketioxide node"; the first is the one the ratios are of),
# SCENARIOS, and per-scenario generator flags FANOUT_ARGS, ECHO_ARGS, IDLE_ARGS, STORM_ARGS,
# ROOMS_ARGS (the defaults of bench/run.sh) can be overridden; NODE (node binary),
# PARLOR_SERVER_ARGS, SOCKETIOXIDE_ARGS and NODE_ARGS pass extra flags to a server.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
RUNS=${RUNS:-3}
OUT=${OUT:-peers-results.jsonl}
PORT=${PORT:-3999}
SCENARIOS=${SCENARIOS:-fanout echo idle storm rooms}
SERVERS=${SERVERS:-parlor socketioxide node}
NODE=${NODE:-node}
PARLOR=${PARLOR:-$ROOT/target/release/parlor}
BENCH_SERVER=${BENCH_SERVER:-$ROOT/target/release/examples/bench_server}
SIOX_TARGET=${SIOX_TARGET:-$HERE/socketioxide/target}
SIOX_SERVER=$SIOX_TARGET/release/socketioxide-bench-server

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# shellcheck disable=SC2206
servers=($SERVERS)

if [ "${SUMMARY_ONLY:-0}" = 1 ]; then
  print_medians "$OUT" "$RUNS" "${servers[@]}"
  exit 0
fi

if [ "${BUILD:-1}" = 1 ]; then
  for s in "${servers[@]}"; do
    case $s in
      parlor)
        echo "building parlor and bench_server" >&2
        (cd "$ROOT" && cargo build --release -j2 -p parlor --bin parlor -p parlor-bench --example bench_server) ;;
      socketioxide)
        echo "building the socketioxide server" >&2
        (cd "$HERE/socketioxide" && cargo build --release -j2 --locked --target-dir "$SIOX_TARGET") ;;
      node)
        echo "npm ci (socket.io)" >&2
        (cd "$HERE/node" && npm ci --no-audit --no-fund --silent) ;;
      *) echo "unknown server $s (parlor, socketioxide, node)" >&2; exit 1 ;;
    esac
  done
  # The generator is parlor's binary whichever servers run.
  [ -x "$PARLOR" ] || (cd "$ROOT" && cargo build --release -j2 -p parlor --bin parlor)
fi
[ -x "$PARLOR" ] || { echo "missing $PARLOR: cargo build --release -j2 -p parlor --bin parlor" >&2; exit 1; }

# The command line of a server listening on 127.0.0.1:$PORT.
server_cmd() {
  case $1 in
    # shellcheck disable=SC2086
    parlor) cmd=("$BENCH_SERVER" --listen "127.0.0.1:$PORT" --log warn ${PARLOR_SERVER_ARGS:-}) ;;
    # shellcheck disable=SC2086
    socketioxide) cmd=("$SIOX_SERVER" --listen "127.0.0.1:$PORT" ${SOCKETIOXIDE_ARGS:-}) ;;
    # shellcheck disable=SC2086
    node) cmd=("$NODE" "$HERE/node/server.js" --listen "127.0.0.1:$PORT" ${NODE_ARGS:-}) ;;
    *) echo "unknown server $1 (parlor, socketioxide, node)" >&2; exit 1 ;;
  esac
}

# 10,000 idle sockets need more descriptors than a default soft limit of 1024; the same limit
# for every server (parlor bench raises its own).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d)
trap bench_cleanup EXIT

for run in $(seq "$RUNS"); do
  for scenario in $SCENARIOS; do
    args=$(scenario_args "$scenario")
    for server in "${servers[@]}"; do
      server_cmd "$server"
      wait_quiet
      start_server "$server" "${cmd[@]}"
      echo "round $run/$RUNS: $server $scenario $args" >&2
      # shellcheck disable=SC2086
      if ! line=$("${PIN_GEN[@]}" "$PARLOR" bench "$scenario" --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json $args); then
        echo "parlor bench $scenario failed against $server" >&2
        cat "$TMP/server.err" >&2
        line=
      fi
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "$server exited during the run:" >&2
        cat "$TMP/server.err" >&2
      fi
      if [ -n "$line" ]; then
        line=$(printf '%s' "$line" | sed "s/}\$/,\"server\":\"$server\",\"round\":$run}/")
        echo "$line" | tee -a "$OUT" >&2
      fi
      stop_server
    done
  done
done

print_medians "$OUT" "$RUNS" "${servers[@]}"
