#!/usr/bin/env bash
# Gateway benchmark: the shop gateway (SwiftNIO proxy) against nginx as a reverse proxy, side by side in one run,
# both forwarding to the same fixed-JSON upstream (an nginx `return 200`) over keep-alive connections; then the
# gateway with tracing off against the gateway with tracing on at full sampling, both at the same time.
#
#   scripts/bench-gateway.sh [seconds=10] [connections=64]
#   RATE_LIMIT=100000000/60s scripts/bench-gateway.sh   # with the rate limiter counting every request
#   ROUNDS=5 scripts/bench-gateway.sh                   # five rounds of the tracing comparison (default 3)
#   BASELINE=/tmp/shop-old scripts/bench-gateway.sh     # instead of tracing on: another build's gateway (tracing off)
#                                                       # side by side with this one, ratio this/baseline
#   B_ENV="REDIS_URL=redis://127.0.0.1:16379" RATE_LIMIT=100000000/60s scripts/bench-gateway.sh
#                                                       # instead of tracing on: this build with B_ENV's settings
#   B_ENV="LOG_LEVEL=info" scripts/bench-gateway.sh     # the cost of logging every request (the gateways log at
#                                                       # warning otherwise), written to a file
#
# Prints requests/s, latency and CPU time per request of each proxy (from /proc, user+system of the proxy processes).
# Tracing off and on run simultaneously, not one after the other: this machine's speed drifts by ±15 % within minutes,
# which swamps a 10 % difference measured in turn. Both gateways (one event loop each) share one core, each in its own
# session so the scheduler gives each half of it; wrk and the upstream get the other core. Whatever tracing costs in
# CPU, on the request path or in the exporter's threads, the traced gateway then pays out of the same half core, and
# the ratio of the two throughputs is tracing's cost. Each gateway's share of the core is printed: near 50 % each
# means the gateways, not the clients, were the limit.
# Needs nginx, wrk and taskset (apt-get install -y nginx wrk util-linux), two cores, and builds `shop` in release mode
# (with `-Xswiftc -cross-module-optimization`, as the project's release builds; `RELEASE_FLAGS= scripts/…` without).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNECTIONS="${2:-64}"
UPSTREAM_PORT=18080
NGINX_PROXY_PORT=18081
GATEWAY_PORT=18082
TRACING_OFF_PORT=18083
TRACING_ON_PORT=18084
WORK=$(mktemp -d /tmp/shop-bench.XXXXXX)

command -v nginx >/dev/null && command -v wrk >/dev/null && command -v taskset >/dev/null ||
    { echo "install nginx, wrk and taskset first: apt-get install -y nginx wrk util-linux" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "the tracing comparison needs two cores" >&2; exit 1; }
# The project's own release builds add cross-module optimisation on the command line (Package.swift cannot carry it
# without becoming unusable as a versioned dependency); RELEASE_FLAGS= measures what a dependent's default build gets.
read -r -a RELEASE_FLAGS <<<"${RELEASE_FLAGS--Xswiftc -cross-module-optimization}"
swift build -c release --product shop "${RELEASE_FLAGS[@]}" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }
SHOP="$(swift build -c release "${RELEASE_FLAGS[@]}" --show-bin-path)/shop"

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
    local pids=(${GATEWAY_PID:-} ${OFF_PID:-} ${ON_PID:-})
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # The gateways stop gracefully (the traced one flushes its spans): give them 10 s, then kill what is left, so the
    # ports are free for the next run.
    for _ in $(seq 100); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    nginx -c "$WORK/proxy.conf" -s quit 2>/dev/null || true
    nginx -c "$WORK/upstream.conf" -s quit 2>/dev/null || true
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

# RATE_LIMIT=off by default (wrk is one client); RATE_LIMIT=100000000/60s measures the limiter's cost too.
start_gateway() {  # extra environment assignments…
    env LOG_LEVEL=warning "$@" RATE_LIMIT="${RATE_LIMIT:-off}" PORT=$GATEWAY_PORT DATA_DIR="$WORK" INVENTORY_SERVICE_URL="http://127.0.0.1:$UPSTREAM_PORT" \
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
run "shop gateway (NIO)" "$GATEWAY_PORT" "$GATEWAY_PID" | tee -a "$WORK/results"
stop_gateway

# Tracing off and on, side by side on core 1 (see the top of this file); the clients and the upstream on core 0.
traced_gateway() {  # binary port log extra environment assignments…
    local binary=$1 port=$2 log=$3; shift 3
    mkdir -p "$WORK/data-$port"
    # (A script's background job is no process-group leader, so setsid runs the gateway itself and $! is its pid.)
    setsid taskset -c 1 env LOG_LEVEL=warning "$@" RATE_LIMIT="${RATE_LIMIT:-off}" PORT="$port" DATA_DIR="$WORK/data-$port" \
        INVENTORY_SERVICE_URL="http://127.0.0.1:$UPSTREAM_PORT" AUTH_SERVICE_URL="http://127.0.0.1:1" GATEWAY_EVENT_LOOP_THREADS=1 \
        "$binary" serve gateway >"$WORK/$log" 2>&1 &
    LAST_PID=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
    kill -0 "$LAST_PID" 2>/dev/null && curl -fs "http://127.0.0.1:$port/health/live" >/dev/null ||
        { echo "the gateway on port $port did not start (is core 1 allowed here?):" >&2; cat "$WORK/$log" >&2; exit 1; }
}
traced_gateway "$SHOP" "$TRACING_OFF_PORT" off.log
OFF_PID=$LAST_PID
if [ -n "${B_ENV:-}" ]; then
    # The second slot runs this build with other settings (word-split assignments), tracing off as well.
    # shellcheck disable=SC2086
    traced_gateway "$SHOP" "$TRACING_ON_PORT" on.log $B_ENV
    PAIR="this build as configured and with $B_ENV, tracing off"
    OFF_NAME="a"; ON_NAME="b"; RATIO="b/a"
elif [ -n "${BASELINE:-}" ]; then
    # The second slot runs the other build, tracing off as well: "off" is this build, "on" the baseline.
    traced_gateway "$BASELINE" "$TRACING_ON_PORT" on.log
    PAIR="this build and the baseline ($BASELINE), tracing off"
    OFF_NAME="this"; ON_NAME="base"; RATIO="base/this"
else
    traced_gateway "$SHOP" "$TRACING_ON_PORT" on.log OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$UPSTREAM_PORT" OTEL_TRACES_SAMPLER=always_on
    PAIR="tracing off and on at full sampling"
    OFF_NAME="off"; ON_NAME="on"; RATIO="on/off"
fi
ON_PID=$LAST_PID
for pid in $(cat "$WORK/upstream.pid") $(pgrep -P "$(cat "$WORK/upstream.pid")"); do taskset -a -p -c 0 "$pid" >/dev/null; done

wrk_field() { awk -v f="$2" '$0 ~ f { print ($1 == "Requests/sec:" ? $2 : $1) }' "$1"; }
echo "$PAIR, simultaneously, one event loop each on core 1 (wrk: 1 thread each on core 0)"
hz=$(getconf CLK_TCK)
measured=0
for round in $(seq "${ROUNDS:-3}"); do
    for port in "$TRACING_OFF_PORT" "$TRACING_ON_PORT"; do curl -fs "http://127.0.0.1:$port/api/inventory/product-1" >/dev/null; done
    clients=()
    for port in "$TRACING_OFF_PORT" "$TRACING_ON_PORT"; do
        taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/api/inventory/product-1" >/dev/null &  # warm-up
        clients+=($!)
    done
    for pid in "${clients[@]}"; do wait "$pid"; done
    off_before=$(cpu_ticks "$OFF_PID"); on_before=$(cpu_ticks "$ON_PID")
    taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$TRACING_OFF_PORT/api/inventory/product-1" >"$WORK/off.wrk" &
    clients=($!)
    taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$TRACING_ON_PORT/api/inventory/product-1" >"$WORK/on.wrk" &
    clients+=($!)
    for pid in "${clients[@]}"; do wait "$pid"; done  # (set -e: a failed wrk ends the run)
    off_after=$(cpu_ticks "$OFF_PID"); on_after=$(cpu_ticks "$ON_PID")
    measured=$((measured + $(wrk_field "$WORK/on.wrk" 'requests in')))
    awk -v round="$round" -v hz="$hz" -v seconds="$DURATION" -v a="$OFF_NAME" -v b="$ON_NAME" -v ratio="$RATIO" \
        -v off_rps="$(wrk_field "$WORK/off.wrk" 'Requests/sec')" -v on_rps="$(wrk_field "$WORK/on.wrk" 'Requests/sec')" \
        -v off_n="$(wrk_field "$WORK/off.wrk" 'requests in')" -v on_n="$(wrk_field "$WORK/on.wrk" 'requests in')" \
        -v off_t=$((off_after - off_before)) -v on_t=$((on_after - on_before)) 'BEGIN {
            printf "round %d: %s %9.0f req/s %5.1f µs CPU/request %3.0f %% of the core | %s %9.0f req/s %5.1f µs CPU/request %3.0f %% of the core | %s %.3f\n",
                round, a, off_rps, off_t * 1e6 / hz / off_n, off_t * 100 / hz / seconds, b, on_rps, on_t * 1e6 / hz / on_n, on_t * 100 / hz / seconds, ratio, on_rps / off_rps
        }' | tee -a "$WORK/tracing"
done
awk -v ratio="$RATIO" '{ for (i = 1; i <= NF; i++) if ($i == ratio) print $(i + 1) }' "$WORK/tracing" | sort -n |
    awk -v ratio="$RATIO" '{ v[NR] = $1 } END { printf "%s throughput: median %.3f (min %.3f, max %.3f) over %d rounds\n", ratio, (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2, v[1], v[NR], NR }'
# Spans are only worth their cost if they arrive: the exporter's own counts (a full queue drops spans rather than
# slowing requests), once they stop moving (the last batch goes after the exporter's schedule delay), beside the
# requests of the measured rounds (warm-ups, health checks and these reads are traced too).
spans() { curl -fs "http://127.0.0.1:$TRACING_ON_PORT/metrics" | awk '/^trace_spans_total/ { sub(/.*outcome="/, ""); sub(/"}/, ""); printf "%s=%s ", $1, $2 }'; }
[ -z "${BASELINE:-}${B_ENV:-}" ] || exit 0
previous=""
for _ in $(seq 30); do
    current=$(spans)
    [ "$current" = "$previous" ] && break
    previous=$current
    sleep 1
done
echo "spans of the traced gateway: ${current:-none counted} (requests in the measured rounds: $measured)"
