#!/usr/bin/env bash
# Runs every `parlor bench` scenario RUNS times against a fresh bench_server per run (server
# pinned to CPU 0, generator to CPU 1 when taskset and two CPUs exist), appends each
# summary line to OUT, and prints the medians as a Markdown table.
#
#   cargo build --release -j2 -p parlor --bin parlor -p parlor-bench --example bench_server
#   bench/run.sh                      # RUNS=3 OUT=bench-results.jsonl PORT=3999
#   SCENARIOS="fanout echo" RUNS=5 bench/run.sh
#   SUMMARY_ONLY=1 OUT=bench-results.jsonl bench/run.sh   # medians again
#
# Before each run it waits (QUIET_MAX seconds at most, default 900) until the machine is
# quiet: under QUIET_PCT percent of a core busy (default 15) over 2 s; WAIT_QUIET=0 skips
# that. Every summary line carries `others_busy` (cores used by other processes during the
# measured window) so that a disturbed run shows.
#
# Extra server flags go in SERVER_ARGS, extra generator flags per scenario in the
# FANOUT_ARGS, ECHO_ARGS, IDLE_ARGS, STORM_ARGS and ROOMS_ARGS variables (defaults in
# lib.sh's scenario_args, shared with native/benches/peers/compare.sh, which runs the same
# scenarios against parlor, socketioxide and Node socket.io).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
OUT=${OUT:-bench-results.jsonl}
PORT=${PORT:-3999}
SCENARIOS=${SCENARIOS:-fanout echo idle storm rooms}
SERVER=${SERVER:-$ROOT/target/release/examples/bench_server}
PARLOR=${PARLOR:-$ROOT/target/release/parlor}
SERVER_ARGS=${SERVER_ARGS:-}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

for bin in "$SERVER" "$PARLOR"; do
  [ -x "$bin" ] || { echo "missing $bin: cargo build --release -j2 -p parlor --bin parlor -p parlor-bench --example bench_server" >&2; exit 1; }
done

TMP=$(mktemp -d)
trap bench_cleanup EXIT

# SUMMARY_ONLY=1: no runs, only the medians of the last RUNS lines per scenario in OUT.
[ "${SUMMARY_ONLY:-0}" = 1 ] && RUNS_TO_DO=0 || RUNS_TO_DO=$RUNS
for run in $(seq "$RUNS_TO_DO"); do
  for scenario in $SCENARIOS; do
    args=$(scenario_args "$scenario")
    wait_quiet
    # shellcheck disable=SC2086
    start_server parlor "$SERVER" --listen "127.0.0.1:$PORT" --log warn $SERVER_ARGS
    echo "run $run/$RUNS: $scenario $args" >&2
    # shellcheck disable=SC2086
    line=$("${PIN_GEN[@]}" "$PARLOR" bench "$scenario" --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json $args)
    echo "$line" | tee -a "$OUT" >&2
    stop_server
  done
done

print_medians "$OUT" "$RUNS"
