#!/usr/bin/env bash
# Gateway benchmark: the shop gateway (SwiftNIO proxy) against nginx as a reverse proxy, side by side in one run,
# both forwarding to the same fixed-JSON upstream (an nginx `return 200`) over keep-alive connections.
#
#   scripts/bench-gateway.sh [seconds=10] [connections=64]
#   RATE_LIMIT=100000000/60s scripts/bench-gateway.sh   # with the rate limiter counting every request
#   PAIRS=5 scripts/bench-gateway.sh   # tracing off and on five times in turn, with medians
# The gateway runs tracing off, then on at full sampling (spans exported to a sink in the upstream), PAIRS times.
#
# Prints requests/s, latency and CPU time per request of each proxy (from /proc, user+system of the proxy processes).
# Needs nginx and wrk (apt-get install -y nginx wrk) and builds `shop` in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNECTIONS="${2:-64}"
UPSTREAM_PORT=18080
NGINX_PROXY_PORT=18081
GATEWAY_PORT=18082
WORK=$(mktemp -d /tmp/shop-bench.XXXXXX)

command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "install nginx and wrk first: apt-get install -y nginx wrk" >&2; exit 1; }
swift build -c release --product shop >/dev/null
SHOP="$(swift build -c release --show-bin-path)/shop"

# The upstream is its own nginx (one worker), so its work is counted for neither proxy.
cat > "$WORK/upstream.conf" <<CONF
worker_processes 1;
pid $WORK/upstream.pid;
error_log $WORK/upstream-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / { default_type application/json; return 200 '{"id":"product-1","name":"Wireless Mouse","price":29.99,"stock":100}'; }
        # The OTLP/HTTP sink of the tracing-on run: accepts and drops span batches.
        location /v1/traces { default_type application/x-protobuf; return 200 ''; }
    }
}
CONF
cat > "$WORK/proxy.conf" <<CONF
worker_processes auto;
pid $WORK/proxy.pid;
error_log $WORK/proxy-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream fixed { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
    server {
        listen 127.0.0.1:$NGINX_PROXY_PORT;
        location /api/inventory/ {
            proxy_pass http://fixed/inventory/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
nginx -c "$WORK/upstream.conf"
nginx -c "$WORK/proxy.conf"
cleanup() {
    [ -n "${GATEWAY_PID:-}" ] && kill "$GATEWAY_PID" 2>/dev/null || true
    nginx -c "$WORK/proxy.conf" -s quit 2>/dev/null || true
    nginx -c "$WORK/upstream.conf" -s quit 2>/dev/null || true
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

# RATE_LIMIT=off by default (wrk is one client); RATE_LIMIT=100000000/60s measures the limiter's cost too.
start_gateway() {  # extra environment assignments…
    env "$@" RATE_LIMIT="${RATE_LIMIT:-off}" PORT=$GATEWAY_PORT LOG_LEVEL=warning DATA_DIR="$WORK" INVENTORY_SERVICE_URL="http://127.0.0.1:$UPSTREAM_PORT" \
        AUTH_SERVICE_URL="http://127.0.0.1:1" GATEWAY_EVENT_LOOP_THREADS="${GATEWAY_EVENT_LOOP_THREADS:-}" "$SHOP" serve gateway >"$WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$GATEWAY_PORT/health/live" >/dev/null && break; sleep 0.1; done
}
stop_gateway() {
    kill "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
    GATEWAY_PID=""
}
start_gateway

cpu_ticks() {  # user+system clock ticks of the given pids
    local total=0
    for pid in "$@"; do
        read -r -a stat < "/proc/$pid/stat"
        total=$((total + stat[13] + stat[14]))
    done
    echo "$total"
}

run() {  # name port pids...
    local name=$1 port=$2; shift 2
    local url="http://127.0.0.1:$port/api/inventory/product-1"
    curl -fs "$url" >/dev/null
    wrk -t2 -c"$CONNECTIONS" -d2s "$url" >/dev/null  # warm-up
    local before after out requests rps latency
    before=$(cpu_ticks "$@")
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
    after=$(cpu_ticks "$@")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    latency=$(echo "$out" | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print p50 " / " p99}')
    local hz; hz=$(getconf CLK_TCK)
    local per_request; per_request=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t * 1000000 / hz / n }')
    printf "%-22s %10s req/s   p50/p99 %-18s %6s µs CPU/request\n" "$name" "$rps" "$latency" "$per_request"
}

NGINX_WORKERS=$(pgrep -P "$(cat "$WORK/proxy.pid")" | tr '\n' ' ')
echo "wrk: ${DURATION}s, $CONNECTIONS connections, 2 threads; upstream: nginx fixed JSON; $(nproc) cores"
run "nginx proxy" "$NGINX_PROXY_PORT" $NGINX_WORKERS | tee -a "$WORK/results"
# Tracing off, then on at full sampling (every request a span, exported over OTLP/HTTP in batches), PAIRS times in
# turn: this machine drifts by ±15 % within minutes, so one pair proves nothing; the medians are compared.
for pair in $(seq "${PAIRS:-1}"); do
    run "shop gateway (NIO)" "$GATEWAY_PORT" "$GATEWAY_PID" | tee -a "$WORK/results"
    stop_gateway
    start_gateway OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$UPSTREAM_PORT" OTEL_TRACES_SAMPLER=always_on
    run "gateway, tracing on" "$GATEWAY_PORT" "$GATEWAY_PID" | tee -a "$WORK/results"
    # Spans are only worth their cost if they arrive: the exporter's own counts (a full queue drops spans rather than
    # slowing requests).
    curl -fs "http://127.0.0.1:$GATEWAY_PORT/metrics" | awk '/^trace_spans_total/ { sub(/.*outcome="/, ""); sub(/"}/, ""); printf "  spans %s: %s\n", $1, $2 }'
    stop_gateway
    start_gateway
done
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2 }'; }
if [ "${PAIRS:-1}" -gt 1 ]; then
    for name in "shop gateway (NIO)" "gateway, tracing on"; do
        lines=$(grep -F "$name" "$WORK/results")
        rps=$(echo "$lines" | awk '{ for (i = 1; i <= NF; i++) if ($i == "req/s") print $(i - 1) }' | median)
        cpu=$(echo "$lines" | awk '{ for (i = 1; i <= NF; i++) if ($i == "µs") print $(i - 1) }' | median)
        printf "median of %s: %-22s %10s req/s %6s µs CPU/request\n" "$(echo "$lines" | wc -l)" "$name" "$rps" "$cpu"
    done
fi
