#!/usr/bin/env bash
# Idle connections past one process's open-file limit: NODES bench_server processes (each its
# own port, pinned to CPU 0) and as many `parlor bench idle` generators (pinned to CPU 1), one
# per server, PER_NODE connections each, all at once. Prints every generator's summary line and
# one total line {"scenario":"idle_nodes",...}: connections, connect errors, pings answered,
# closes, and server RSS per connection over all nodes.
#
#   cargo build --release -j2 -p parlor --bin parlor -p parlor-bench --example bench_server
#   bench/idle_nodes.sh               # NODES=6 PER_NODE=16667 (100,002) HOLD=30
#
# Why several processes: every connection is a file descriptor of the process holding it, and
# a process cannot go past its hard RLIMIT_NOFILE without CAP_SYS_RESOURCE. Where the hard
# limit is high enough, `parlor bench idle --clients 100000` against one server is the test.
# The nodes do not share rooms (each is a whole server); the run measures what the machine
# and the per-connection state cost, not a cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODES=${NODES:-6}
PER_NODE=${PER_NODE:-16667}
HOLD=${HOLD:-30}
BASE_PORT=${BASE_PORT:-4100}
SERVER=${SERVER:-$ROOT/target/release/examples/bench_server}
PARLOR=${PARLOR:-$ROOT/target/release/parlor}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

for bin in "$SERVER" "$PARLOR"; do
  [ -x "$bin" ] || { echo "missing $bin: cargo build --release -j2 -p parlor --bin parlor -p parlor-bench --example bench_server" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "hard open-file limit here: $(ulimit -Hn); $NODES nodes x $PER_NODE connections" >&2
wait_quiet
for i in $(seq 0 $((NODES - 1))); do
  PORT=$((BASE_PORT + i))
  TMP=$WORK/node$i
  mkdir -p "$TMP"
  start_server "node $i" "$SERVER" --listen "127.0.0.1:$PORT" --log warn
  PIDS+=("$SERVER_PID")
  SERVER_PID=
done

GENS=()
for i in $(seq 0 $((NODES - 1))); do
  "${PIN_GEN[@]}" "$PARLOR" bench idle --url "http://127.0.0.1:$((BASE_PORT + i))" --server-pid "${PIDS[$i]}" \
    --clients "$PER_NODE" --seconds "$HOLD" --json >"$WORK/gen$i.json" 2>"$WORK/gen$i.err" &
  GENS+=("$!")
done
status=0
for i in "${!GENS[@]}"; do
  wait "${GENS[$i]}" || { status=1; echo "generator $i failed:" >&2; cat "$WORK/gen$i.err" >&2; }
done
cat "$WORK"/gen*.json >&2

python3 - "$WORK" "$NODES" "$PER_NODE" <<'EOF'
import glob, json, sys
work, nodes, per_node = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = [json.loads(l) for f in sorted(glob.glob(f"{work}/gen*.json")) for l in open(f) if l.startswith('{"scenario"')]
total = lambda k: sum(l.get(k) or 0 for l in lines)
conns = total("clients")
grown = total("server_rss_after_kib") - total("server_rss_before_kib")
print(json.dumps({
    "scenario": "idle_nodes",
    "nodes": nodes,
    "wanted": nodes * per_node,
    "generators_reporting": len(lines),
    "clients": conns,
    "connect_failed": total("connect_failed"),
    "pings": total("pings"),
    "closed": total("closed"),
    "server_rss_total_kib": total("server_rss_after_kib"),
    "server_rss_per_conn_kib": round(grown / conns, 2) if conns else None,
    "errors": [e for l in lines for e in l.get("errors", [])],
}))
ok = len(lines) == nodes and conns == nodes * per_node and total("connect_failed") == 0 and total("closed") == 0
sys.exit(0 if ok else 1)
EOF
exit $status
