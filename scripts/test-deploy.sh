#!/usr/bin/env bash
# The deployment, proven on this machine from nothing: installs what it needs (Debian's docker.io, docker-compose,
# debootstrap, podman, runc, kubectl; PyPI's kubernetes-validate and checkov through scripts/validate-kubernetes.sh),
# starts dockerd if none runs, builds the image, brings up compose.yaml on PostgreSQL and Redis, walks the guide's order
# flow through the gateway's published port, stops a service and sees the gateway answer 503 quickly and recover, stops
# the gateway with a request in flight (answered) and every service (each exits 0 on SIGTERM), runs the Kubernetes
# overlay `local`'s workloads with `podman kube play` and the flow through its gateway pod (scripts/podman-play.py says
# what podman cannot play and how it is covered), then renders and validates both overlays. Cleans up what it made
# (containers, pods, volumes, networks, secrets, the images it loaded into podman, the daemon it started); the Docker
# images it built stay, for the next run.
#
#   scripts/test-deploy.sh
#
# No registry is reachable here: the base image is made with debootstrap and the public images compose.yaml names are
# stood in for from Debian packages (deploy/test-images), each only when an image of that name is not present or is
# an older stand-in. The official Swift build image cannot be had either, so the binary is built on this (Debian 12)
# host with the same flags as the Dockerfile's build stage and passed in with `--build-arg BINARY_FROM=prebuilt`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d /tmp/shop-deploy.XXXXXX)
PROJECT="shopdeploy$$"
DOCKERD_PID=""
PODMAN_IMAGES=()
COMPOSE=(docker-compose -p "$PROJECT" -f "$ROOT/compose.yaml" --env-file "$WORK/.env")
# BuildKit (the Dockerfile's unused build stage is skipped) as Debian's own docker client has it built in; another
# client on the PATH may want a buildx plugin instead.
export DOCKER_BUILDKIT=1
# Debian's docker client (chosen once docker.io is installed): another client earlier on the PATH may want a buildx
# plugin for BuildKit that this machine does not have.
DOCKER=""
docker() { command "$DOCKER" "$@"; }

step() { echo "==> $*"; }

cleanup() {
    local status=$?
    if [ -s "$WORK/.env" ]; then
        if [ "$status" -ne 0 ]; then
            "${COMPOSE[@]}" ps || true
            "${COMPOSE[@]}" logs --no-color --tail=40 || true
        fi
        "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    if [ ${#PODMAN_IMAGES[@]} -gt 0 ]; then podman rmi -f "${PODMAN_IMAGES[@]}" >/dev/null 2>&1 || true; fi
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

install_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v nsenter >/dev/null || missing+=(util-linux)
    command -v podman >/dev/null || missing+=(podman)
    command -v catatonit >/dev/null || missing+=(catatonit)
    command -v runc >/dev/null || missing+=(runc)
    command -v kubectl >/dev/null || missing+=(kubernetes-client)
    python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing ${missing[*]} (Debian packages)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

start_docker() {
    if docker info >/dev/null 2>&1; then return; fi
    step "starting dockerd"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 100); do
        docker info >/dev/null 2>&1 && return
        sleep 0.3
    done
    tail -20 "$WORK/dockerd.log" >&2
    echo "dockerd did not start" >&2
    exit 1
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

base_images() {
    if ! have_image debian:bookworm-slim; then
        step "making debian:bookworm-slim with debootstrap (minbase)"
        debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
            { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
        tar -C "$WORK/rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
        rm -rf "$WORK/rootfs"
    fi
    # A stand-in is rebuilt when its folder changed (the hash in its label); an image of that name that is not a
    # stand-in (the real one, pulled by someone) is left alone.
    local image folder hash label
    for pair in postgres:15-bookworm=postgres redis:7-bookworm=redis prom/prometheus:v2.53.0=prometheus jaegertracing/all-in-one:1.57=otlp-sink; do
        image=${pair%%=*}
        folder=${pair#*=}
        hash=$(cat "$ROOT/deploy/test-images/$folder"/* | sha256sum | cut -c1-16)
        label=$(docker image inspect --format '{{index .Config.Labels "org.swift-shop.test-image"}}' "$image" 2>/dev/null || echo absent)
        [ "$label" != "<no value>" ] || label=""
        if [ "$label" = absent ] || { [ -n "$label" ] && [ "$label" != "$hash" ]; }; then
            step "standing in for $image (deploy/test-images/$folder)"
            docker build -q --label "org.swift-shop.test-image=$hash" -t "$image" "$ROOT/deploy/test-images/$folder" >/dev/null
        fi
    done
}

shop_image() {
    step "building the shop binary (release, static Swift standard library)"
    local flags=(-c release --product shop --static-swift-stdlib -Xswiftc -cross-module-optimization)
    swift build "${flags[@]}" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; exit 1; }
    mkdir -p "$WORK/context"
    cp "$(swift build "${flags[@]}" --show-bin-path)/shop" "$WORK/context/shop"
    strip "$WORK/context/shop"
    step "building the image swift-shop:test (runtime stage of ./Dockerfile)"
    docker build -q -f "$ROOT/Dockerfile" --build-arg BINARY_FROM=prebuilt --build-arg REVISION="$(git rev-parse --short HEAD)" \
        -t swift-shop:test "$WORK/context" >/dev/null
    local size
    size=$(docker image inspect --format '{{.Size}}' swift-shop:test)
    echo "    image size: $((size / 1000000)) MB (binary $(($(stat -c %s "$WORK/context/shop") / 1000000)) MB)"
    # The image runs as its fixed non-root user and has the one entry point.
    [ "$(docker image inspect --format '{{.Config.User}}' swift-shop:test)" = "10001:10001" ]
    [ "$(docker image inspect --format '{{json .Config.Entrypoint}}' swift-shop:test)" = '["shop","serve"]' ]
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

compose_up() {
    step "compose: generated secrets, then up (PostgreSQL, Redis, Prometheus, trace backend, every service)"
    scripts/compose-env.sh "$WORK/.env" >/dev/null
    GATEWAY_PORT=$(free_port)
    PROMETHEUS_PORT=$(free_port)
    JAEGER_UI_PORT=$(free_port)
    GATEWAY_INTERNAL_HOST_PORT=$(free_port)
    export SHOP_IMAGE=swift-shop:test GATEWAY_PORT PROMETHEUS_PORT JAEGER_UI_PORT GATEWAY_INTERNAL_HOST_PORT
    "${COMPOSE[@]}" up -d >"$WORK/compose-up.log" 2>&1 || { cat "$WORK/compose-up.log" >&2; exit 1; }
    GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
    INTERNAL="http://127.0.0.1:$GATEWAY_INTERNAL_HOST_PORT"
    local ready=""
    for _ in $(seq 1 240); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$INTERNAL/health")" = 200 ]; then
            ready=yes
            break
        fi
        sleep 0.5
    done
    if [ -z "$ready" ]; then
        echo "the stack did not become healthy at $INTERNAL/health" >&2
        curl -s "$INTERNAL/health" >&2 || true
        exit 1
    fi
    # The published public port answers the API only; health in detail, metrics and the registry are on the internal
    # port (published on loopback only).
    for path in /health /metrics /services; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$GATEWAY$path")
        [ "$code" = 404 ] || { echo "public port answered $code for $path" >&2; exit 1; }
    done
    echo "    public port: /api only; internal port: health, metrics, registry"
}

install_tools
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker); fi
export DOCKER
start_docker
base_images
shop_image
compose_up
step "the guide's flow through $GATEWAY (sign-up, login, order, checkout, paid → shipped, mail)"
ADMIN_PASSWORD=$(sed -n 's/^ADMIN_PASSWORD=//p' "$WORK/.env")
python3 "$ROOT/scripts/deploy-flow.py" "$GATEWAY" "$ADMIN_PASSWORD"
mail_container=$("${COMPOSE[@]}" ps -q notification)
docker cp "$mail_container:/data/mail" "$WORK/mail" >/dev/null
mails=$(find "$WORK/mail" -name '*.eml' | wc -l)
echo "    mail written by the notification container: $mails message(s)"
[ "$mails" -ge 1 ]

step "a service stopped: the gateway answers 503 quickly, and recovers when it is back"
"${COMPOSE[@]}" stop inventory >/dev/null 2>&1
python3 "$ROOT/scripts/deploy-flow.py" "$GATEWAY" "$ADMIN_PASSWORD" --expect-down /api/inventory/product-1
"${COMPOSE[@]}" start inventory >/dev/null 2>&1
python3 "$ROOT/scripts/deploy-flow.py" "$GATEWAY" "$ADMIN_PASSWORD" --expect-up /api/inventory/product-1

step "observability: Prometheus scrapes every service, traces reach the backend"
python3 - "$PROMETHEUS_PORT" "$JAEGER_UI_PORT" <<'PY'
import json, sys, time, urllib.request
deadline = time.monotonic() + 60
while True:
    targets = json.load(urllib.request.urlopen("http://127.0.0.1:%s/api/v1/targets" % sys.argv[1]))["data"]["activeTargets"]
    down = [t["labels"]["instance"] for t in targets if t["health"] != "up"]
    if targets and not down:
        print("    prometheus: %d targets up" % len(targets))
        break
    if time.monotonic() > deadline:
        raise SystemExit("prometheus targets not up: %s" % down)
    time.sleep(1)
while True:
    services = json.load(urllib.request.urlopen("http://127.0.0.1:%s/api/services" % sys.argv[2]))["data"]
    if {"shop-gateway", "shop-order", "shop-inventory"} <= set(services):
        print("    traces: spans from %s" % ", ".join("%s (%d)" % kv for kv in sorted(services.items())))
        break
    if time.monotonic() > deadline:
        raise SystemExit("no traces from gateway, order and inventory: %s" % services)
    time.sleep(1)
PY

step "SIGTERM: a request in flight when the gateway is stopped is answered; every container drains and exits by itself"
python3 "$ROOT/scripts/deploy-flow.py" "$GATEWAY" "$ADMIN_PASSWORD" --drain "$("${COMPOSE[@]}" ps -q gateway)"
stops=()
for service in order payment inventory notification user auth payment-provider; do
    id=$("${COMPOSE[@]}" ps -q "$service")
    started=$(date +%s%N)
    docker stop -t 45 "$id" >/dev/null
    took=$((($(date +%s%N) - started) / 1000000))
    code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
    [ "$code" = 0 ] || { echo "$service exited with $code after SIGTERM" >&2; exit 1; }
    [ "$took" -lt 45000 ] || { echo "$service took $took ms to stop" >&2; exit 1; }
    stops+=("$service $took ms")
done
echo "    exited 0 on SIGTERM: $(IFS=,; echo "${stops[*]}" | sed 's/,/, /g')"
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1

step "Kubernetes: the overlay local's workloads with podman kube play"
# As this machine needs for podman (no systemd, a container's limits within the host's): runc, and fixed limits.
cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"
cp -R "$ROOT/deploy/kubernetes" "$WORK/kubernetes"
"$WORK/kubernetes/make-secrets.sh" local >/dev/null
kubectl kustomize "$WORK/kubernetes/overlays/local" >"$WORK/local.yaml"
docker save swift-shop:test postgres:15-bookworm redis:7-bookworm | podman load -q >/dev/null
PODMAN_IMAGES=(localhost/swift-shop:test localhost/postgres:15-bookworm localhost/redis:7-bookworm)
mkdir -p "$WORK/podman"
python3 "$ROOT/scripts/podman-play.py" "$WORK/local.yaml" "$WORK/podman" swift-shop:dev=localhost/swift-shop:test \
    postgres:16-bookworm=localhost/postgres:15-bookworm redis:7-bookworm=localhost/redis:7-bookworm
podman rmi "${PODMAN_IMAGES[@]}" >/dev/null
PODMAN_IMAGES=()

step "Kubernetes: render and validate every overlay"
scripts/validate-kubernetes.sh
step "deployment checks passed"
