#!/usr/bin/env bash
# Scenarios across a cluster: NODES bench_server nodes on the local Redis (a prefix of this
# run's), the clients spread over them round-robin (fanout: receivers spread, the
# publisher on the first; rooms: each room's members on different nodes), beside the same
# scenario against one node alone. Prints each run's summary line (server CPU summed over
# the nodes) with the bytes Redis sent to its clients during the run
# (`total_net_output_bytes`) per delivered message.
#
#   cargo build --release -j2 -p parlor --bin parlor -p parlor-bench --example bench_server
#   bench/cluster.sh                 # SCENARIOS="fanout rooms" NODES=3 RUNS=1 REDIS=redis://127.0.0.1:6379/0
#   FANOUT_ARGS="--clients 1000 --messages 2000" bench/cluster.sh
#
# The nodes share CPU 0 and the generator has CPU 1 (with taskset and two CPUs), so the
# figure to read is server CPU per delivered message, summed over the nodes, against the
# single node's.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODES=${NODES:-3}
RUNS=${RUNS:-1}
REDIS=${REDIS:-redis://127.0.0.1:6379/0}
BASE_PORT=${BASE_PORT:-3910}
SERVER=${SERVER:-$ROOT/target/release/examples/bench_server}
PARLOR=${PARLOR:-$ROOT/target/release/parlor}
SCENARIOS=${SCENARIOS:-fanout rooms}
FANOUT_ARGS=${FANOUT_ARGS:---clients 999 --messages 2000 --size 100 --in-flight 64}
OUT=${OUT:-bench-cluster.jsonl}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

redis_port=${REDIS#redis://*:}
redis_port=${redis_port%%/*}
redis_out() { redis-cli -p "$redis_port" INFO stats | awk -F: '/^total_net_output_bytes/{print $2+0}'; }

# start_nodes N [--redis ...]: N nodes on consecutive ports; URLS and NODE_PIDS after.
start_nodes() {
  local n=$1
  shift
  URLS=""
  NODE_PIDS=""
  for i in $(seq 0 $((n - 1))); do
    local port=$((BASE_PORT + i))
    "${PIN_SERVER[@]}" "$SERVER" --listen "127.0.0.1:$port" --log warn "$@" --node-id "n$i" \
      >"$TMP/node$i.out" 2>"$TMP/node$i.err" &
    local pid=$!
    PIDS+=("$pid")
    PORT=$port
    for _ in $(seq 200); do server_answers && break; sleep 0.05; done
    URLS="${URLS:+$URLS,}http://127.0.0.1:$port"
    NODE_PIDS="${NODE_PIDS:+$NODE_PIDS,}$pid"
  done
}

stop_nodes() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  sleep 1
}

for run in $(seq "$RUNS"); do
  for scenario in $SCENARIOS; do
    args=$(scenario_args "$scenario")
    wait_quiet
    start_nodes 1
    # shellcheck disable=SC2086
    line=$("${PIN_GEN[@]}" "$PARLOR" bench "$scenario" --url "$URLS" --server-pid "$NODE_PIDS" --json $args)
    echo "{\"setup\":\"one node\",\"run\":$run,\"result\":$line}" | tee -a "$OUT"
    stop_nodes

    wait_quiet
    start_nodes "$NODES" --redis "$REDIS" --cluster-prefix "bench-$$-$run-$scenario"
    sleep 4 # the nodes hear each other's heartbeats
    before=$(redis_out)
    # shellcheck disable=SC2086
    line=$("${PIN_GEN[@]}" "$PARLOR" bench "$scenario" --url "$URLS" --server-pid "$NODE_PIDS" --json $args)
    after=$(redis_out)
    delivered=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("received", 0))')
    per=$(python3 -c "import sys; d=int(sys.argv[2]); print(round(int(sys.argv[1]) / d, 2) if d else None)" "$((after - before))" "$delivered")
    echo "{\"setup\":\"$NODES nodes\",\"run\":$run,\"redis_out_bytes\":$((after - before)),\"redis_bytes_per_delivered\":$per,\"result\":$line}" | tee -a "$OUT"
    stop_nodes
  done
done
