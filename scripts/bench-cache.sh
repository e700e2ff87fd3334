#!/usr/bin/env bash
# Cache benchmark: product reads of a whole system (`shop up`, release build) with the caches on and off, side by side
# in one run, on SQLite and (when a server is given or the test script's private one runs) PostgreSQL; then how long a
# price change takes to reach every instance's cache, through the event log and through Redis.
#
#   scripts/bench-cache.sh [seconds=10] [connections=32]
#   BENCH_DATABASE_URL=postgres://user@host:port/db scripts/bench-cache.sh   # PostgreSQL server to use
#
# For each engine and cache setting it prints, for the inventory service's trivial route (`GET /health/live`, the
# reference), `GET /inventory/product-1` called directly and `GET /api/inventory/product-1` through the gateway:
# requests/s, p50/p99 latency and the inventory process's CPU time per request (user+system from /proc), and the
# cache's hit ratio from the service's /metrics. Needs wrk, curl, python3, redis-server (apt-get install -y wrk curl
# redis-server) and builds `shop` in release mode (with `-Xswiftc -cross-module-optimization`, as the project's
# release builds).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNECTIONS="${2:-32}"
BASE=19000
REDIS_PORT=19379
WORK=$(mktemp -d /tmp/shop-bench-cache.XXXXXX)
command -v wrk >/dev/null && command -v redis-server >/dev/null && command -v python3 >/dev/null ||
    { echo "install wrk, redis-server and python3 first: apt-get install -y wrk redis-server python3" >&2; exit 1; }
read -r -a RELEASE_FLAGS <<<"${RELEASE_FLAGS--Xswiftc -cross-module-optimization}"
swift build -c release --product shop "${RELEASE_FLAGS[@]}" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }
SHOP="$(swift build -c release "${RELEASE_FLAGS[@]}" --show-bin-path)/shop"
export SHOP_ADMIN_PASSWORD="BenchAdmin1"

UP_PID=""
stop_system() {
    [ -n "$UP_PID" ] || return 0
    kill -TERM "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
    UP_PID=""
}
cleanup() {
    stop_system
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start_system() {  # name, then `shop up` arguments
    local name=$1; shift
    rm -rf "$WORK/$name"
    "$SHOP" up --data-dir "$WORK/$name" --port-base "$BASE" --rate-limit off --log-level warning "$@" >"$WORK/$name.log" 2>&1 &
    UP_PID=$!
    for _ in $(seq 600); do
        grep -q "Shop is up" "$WORK/$name.log" 2>/dev/null && return 0
        kill -0 "$UP_PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "the system did not start:" >&2
    tail -20 "$WORK/$name.log" >&2
    exit 1
}

cpu_ticks() {  # user+system clock ticks of the given pids
    local total=0
    for pid in "$@"; do
        read -r -a stat <"/proc/$pid/stat"
        total=$((total + stat[13] + stat[14]))
    done
    echo "$total"
}

run() {  # name url pids…
    local name=$1 url=$2; shift 2
    curl -fs "$url" >/dev/null
    wrk -t2 -c"$CONNECTIONS" -d2s "$url" >/dev/null  # warm-up
    local before after out requests rps latency hz per_request
    before=$(cpu_ticks "$@")
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
    after=$(cpu_ticks "$@")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    latency=$(echo "$out" | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print p50 " / " p99}')
    hz=$(getconf CLK_TCK)
    per_request=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t * 1000000 / hz / n }')
    printf "  %-34s %9s req/s   p50/p99 %-18s %7s µs inventory CPU/request\n" "$name" "$rps" "$latency" "$per_request"
}

hit_ratio() {  # inventory URL
    curl -fs "$1/metrics" | python3 -c '
import re, sys
counts = {}
for line in sys.stdin:
    m = re.match(r"cache_requests_total\{(.*)\} (\S+)", line)
    if m and "cache=\"inventory-products\"" in m.group(1):
        result = re.search(r"result=\"([^\"]+)\"", m.group(1)).group(1)
        counts[result] = counts.get(result, 0) + float(m.group(2))
answered = sum(v for k, v in counts.items() if k in ("hit", "shared_hit", "stale"))
total = answered + counts.get("miss", 0) + counts.get("bypass", 0)
print("%.4f (%d of %d reads)" % (answered / total, answered, total) if total else "no reads counted")'
}

measure() {  # label, then `shop up` arguments
    local label=$1; shift
    start_system bench "$@"
    local inventory_pid gateway="http://127.0.0.1:$BASE" inventory="http://127.0.0.1:$((BASE + 5))"
    inventory_pid=$(pgrep -P "$UP_PID" -f "serve inventory" | head -n 1 || true)
    [ -n "$inventory_pid" ] || { echo "no inventory process found under shop up ($UP_PID)" >&2; exit 1; }
    echo "$label"
    run "inventory GET /health/live" "$inventory/health/live" "$inventory_pid"
    run "inventory GET /inventory/:id" "$inventory/inventory/product-1" "$inventory_pid"
    run "gateway GET /api/inventory/:id" "$gateway/api/inventory/product-1" "$inventory_pid"
    echo "  product cache hit ratio: $(hit_ratio "$inventory")"
    stop_system
}

# PostgreSQL: the given server, or the test script's private one when it runs.
PG_URL="${BENCH_DATABASE_URL:-}"
if [ -z "$PG_URL" ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 54329 2>/dev/null; then
    PG_URL="postgres://postgres@127.0.0.1:54329/postgres"
fi

echo "wrk: ${DURATION}s, $CONNECTIONS connections, 2 threads; whole system on this machine ($(nproc) cores)"
for engine in sqlite postgres; do
    database=()
    if [ "$engine" = postgres ]; then
        [ -n "$PG_URL" ] || { echo "PostgreSQL: skipped (no server; set BENCH_DATABASE_URL)"; continue; }
        name="bench_cache_$$"
        PGOPTIONS="--client-min-messages=warning" psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
        database=(--database "${PG_URL%/*}/$name")
    fi
    CACHE=off measure "$engine, cache off" "${database[@]}"
    CACHE=on measure "$engine, cache on" "${database[@]}"
done

# Invalidation delay: a price changed through one gateway, until every inventory instance answers it (each asked
# directly, so no cache on the way hides a stale one). 30 changes each.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --dir "$WORK" --pidfile "$WORK/redis.pid" >/dev/null
delay() {  # label, gateways, inventory instances, then `shop up` arguments
    local label=$1; shift
    local gateways=$1 instances=$2; shift 2
    start_system delay "$@"
    # Until the registry lists every gateway and inventory instance, all ready.
    for _ in $(seq 150); do
        "$SHOP" status --json --port-base "$BASE" --data-dir "$WORK/delay" >"$WORK/status.json" 2>/dev/null || true
        python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); c = [i["service"] for i in s["instances"] if i["ready"]]
sys.exit(0 if c.count("gateway") == int(sys.argv[2]) and c.count("inventory") == int(sys.argv[3]) else 1)' \
            "$WORK/status.json" "$gateways" "$instances" 2>/dev/null && break
        sleep 0.2
    done || true
    python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); c = [i["service"] for i in s["instances"] if i["ready"]]
sys.exit(0 if c.count("gateway") == int(sys.argv[2]) and c.count("inventory") == int(sys.argv[3]) else 1)' \
        "$WORK/status.json" "$gateways" "$instances" || { echo "not every instance became ready:" >&2; cat "$WORK/status.json" >&2; exit 1; }
    python3 - "$label" "$WORK/status.json" <<'PY'
import json, sys, time, urllib.request
label, status = sys.argv[1], json.load(open(sys.argv[2]))
gateways = [i["url"] for i in status["instances"] if i["service"] == "gateway"]
instances = [i["url"] for i in status["instances"] if i["service"] == "inventory"]
def call(method, url, body=None, token=None):
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("content-type", "application/json")
    if token: request.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=5) as response: return json.load(response)
token = call("POST", gateways[0] + "/api/auth/login", {"email": "admin@shop.local", "password": "BenchAdmin1"})["token"]
delays = []
for round in range(30):
    price = 40 + round + 0.5
    for url in instances:  # every instance holds the product before the change
        for _ in range(3): call("GET", url + "/inventory/product-1")
    call("PUT", gateways[round % len(gateways)] + "/api/inventory/product-1", {"name": "Wireless Mouse", "price": price, "stock": 100}, token)
    start = time.monotonic()
    pending = set(instances)
    while pending:
        if time.monotonic() - start > 10:
            sys.exit("%s: %s still answer the old price after 10 s" % (label, sorted(pending)))
        pending = {url for url in pending if call("GET", url + "/inventory/product-1")["price"] != price}
        if pending: time.sleep(0.0005)
    delays.append((time.monotonic() - start) * 1000)
delays.sort()
print("  %-40s p50 %6.1f ms   p90 %6.1f ms   max %6.1f ms  (%d gateways, %d inventory instances, 30 changes)" % (
    label, delays[len(delays) // 2], delays[int(len(delays) * 0.9)], delays[-1], len(gateways), len(instances)))
PY
    stop_system
}
echo "invalidation delay (PUT through a gateway → every inventory instance answers the new price):"
delay "SQLite, event log (no Redis)" 1 2 --replicas inventory=2
delay "SQLite, Redis" 2 2 --replicas inventory=2,gateway=2 --redis "redis://127.0.0.1:$REDIS_PORT"
