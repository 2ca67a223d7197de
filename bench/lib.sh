# Shared by bench/run.sh and native/benches/peers/compare.sh (sourced, not run):
# CPU pinning, waiting for a quiet machine, starting and stopping a benchmark server, and
# the medians printer.
#
# After sourcing: PIN_SERVER / PIN_GEN (arrays, empty without taskset or two CPUs),
# SERVER_PID, and the functions below. The caller sets TMP (a scratch directory) and PORT,
# and calls bench_cleanup from its EXIT trap.
#
# Environment: WAIT_QUIET (1; 0 skips the wait), QUIET_PCT (15: percent of one core busy
# over 2 s that still counts as quiet), QUIET_MAX (900: seconds to wait at most).

PIN_SERVER=()
PIN_GEN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0)
  PIN_GEN=(taskset -c 1)
fi

SERVER_PID=
TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }

# Waits until the whole machine uses less than QUIET_PCT percent of a core over 2 s.
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

# True once GET http://127.0.0.1:$PORT/socket.io/?EIO=4&transport=polling answers 200 (an
# Engine.IO handshake: every Socket.IO server answers it the same way).
server_answers() {
  local url="http://127.0.0.1:$PORT/socket.io/?EIO=4&transport=polling"
  if command -v curl >/dev/null; then
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]
  else
    python3 -c 'import sys, urllib.request as u; sys.exit(u.urlopen(sys.argv[1], timeout=1).status != 200)' "$url" 2>/dev/null
  fi
}

# start_server NAME CMD [ARGS...]: starts CMD pinned to CPU 0 (its output in
# $TMP/server.out and .err), then waits up to 10 s until it answers. SERVER_PID is the
# server's own pid (taskset execs it), for `parlor bench --server-pid`.
start_server() {
  local name=$1
  shift
  : >"$TMP/server.out"
  "${PIN_SERVER[@]}" "$@" >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  for _ in $(seq 200); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      break
    fi
    server_answers && return 0
    sleep 0.05
  done
  echo "$name did not start ($*):" >&2
  cat "$TMP/server.out" "$TMP/server.err" >&2
  exit 1
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  sleep 1
}

bench_cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  [ -z "${TMP:-}" ] || rm -rf "$TMP"
}

# scenario_args SCENARIO: the generator flags of a scenario (FANOUT_ARGS ... ROOMS_ARGS,
# with run.sh's defaults).
scenario_args() {
  case $1 in
    fanout) echo "${FANOUT_ARGS:---clients 1000 --messages 2000 --size 100 --in-flight 64}" ;;
    echo) echo "${ECHO_ARGS:---clients 50 --seconds 10}" ;;
    idle) echo "${IDLE_ARGS:---clients 10000 --seconds 30}" ;;
    storm) echo "${STORM_ARGS:---clients 50 --seconds 10}" ;;
    rooms) echo "${ROOMS_ARGS:---rooms 200 --members 5 --seconds 10}" ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

# print_medians OUT RUNS [SERVER...]: Markdown tables of the summary lines in OUT (JSON
# lines starting with {"scenario"), the last RUNS per scenario (and server).
# Without servers: one table, median/min/max per scenario and metric (run.sh).
# With servers (lines tagged "server"): one table per scenario, a column per server with
# median (min–max), then the ratios first/other of the headline figures (compare.sh).
print_medians() {
  python3 - "$@" <<'EOF'
import json, sys
from collections import defaultdict

path, runs, servers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
lines = [json.loads(l) for l in open(path) if l.startswith('{"scenario"')]
shown = {
    "fanout": ["msgs_per_s", "lost", "p50_us", "p99_us", "max_us", "server_cpu_us_per_msg", "gen_cpu_us_per_msg", "server_busy", "gen_busy", "others_busy"],
    "echo": ["acks_per_s", "p50_us", "p99_us", "server_cpu_us_per_ack", "gen_cpu_us_per_ack", "server_busy", "gen_busy", "others_busy"],
    "idle": ["clients", "connect_failed", "server_rss_per_conn_kib", "gen_rss_per_conn_kib", "pings", "closed", "others_busy"],
    "storm": ["conns_per_s", "failures", "p50_us", "p99_us", "server_cpu_us_per_conn", "gen_cpu_us_per_conn", "server_busy", "gen_busy", "others_busy"],
    "rooms": ["msgs_per_s", "p50_us", "p99_us", "server_cpu_us_per_msg", "gen_cpu_us_per_msg", "server_busy", "gen_busy", "others_busy"],
}
# Errors of any kind, shown in the comparison when any run had one.
errors = ["lost", "mismatched", "connect_failed", "failures", "closed"]
# The figures whose ratio first/peer is printed.
headline = {
    "fanout": ["msgs_per_s", "server_cpu_us_per_msg", "p99_us", "lost"],
    "echo": ["acks_per_s", "server_cpu_us_per_ack", "p99_us"],
    "idle": ["server_rss_per_conn_kib"],
    "storm": ["conns_per_s", "server_cpu_us_per_conn"],
    "rooms": ["msgs_per_s", "p99_us", "server_cpu_us_per_msg"],
}
def fmt(x):
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:g}"
def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
def values(rs, k):
    return [r[k] for r in rs if isinstance(r.get(k), (int, float))]

if not servers:
    by = defaultdict(list)
    for l in lines:
        by[l["scenario"]].append(l)
    print("| scenario | metric | median | min | max | runs |")
    print("|---|---|---:|---:|---:|---:|")
    for scenario, keys in shown.items():
        rs = by.get(scenario, [])[-runs:]
        for k in keys:
            xs = values(rs, k)
            if xs:
                print(f"| {scenario} | {k} | {fmt(median(xs))} | {fmt(min(xs))} | {fmt(max(xs))} | {len(xs)} |")
    sys.exit(0)

by = defaultdict(list)
for l in lines:
    if l.get("server") in servers:
        by[(l["scenario"], l["server"])].append(l)
first, peers = servers[0], servers[1:]
for scenario, keys in shown.items():
    rs = {s: by.get((scenario, s), [])[-runs:] for s in servers}
    if not any(rs.values()):
        continue
    extra = [k for k in errors if k not in keys and any(any(values(rs[s], k)) for s in servers)]
    n = " / ".join(f"{s} {len(rs[s])}" for s in servers)
    print(f"\n### {scenario} (runs: {n}; median (min–max))\n")
    print("| metric | " + " | ".join(servers) + " | " + " | ".join(f"{first}/{p}" for p in peers) + " |")
    print("|---|" + "---:|" * (len(servers) + len(peers)))
    for k in keys + extra:
        cells, meds = [], {}
        for s in servers:
            xs = values(rs[s], k)
            if xs:
                meds[s] = median(xs)
                cells.append(f"{fmt(meds[s])} ({fmt(min(xs))}–{fmt(max(xs))})")
            else:
                cells.append("–")
        if all(c == "–" for c in cells):
            continue
        ratios = []
        for p in peers:
            if k in headline.get(scenario, []) and first in meds and p in meds:
                a, b = meds[first], meds[p]
                ratios.append(f"{a / b:.2f}" if b else ("=" if a == b else "∞"))
            else:
                ratios.append("")
        print(f"| {k} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    for s in servers:
        for r in rs[s]:
            if r.get("errors"):
                print(f"\n{s}, round {r.get('round', '?')}: errors {r['errors']}")
EOF
}
