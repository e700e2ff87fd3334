#!/usr/bin/env bash
# Checks the API against its contracts, on the running system:
#   1. every OpenAPI document is valid (openapi-spec-validator) and the services serve what contracts/openapi says
#      (scripts/contracts.py check);
#   2. schemathesis fuzzes the public API through the gateway, with the gateway's own document (/api/openapi.json), as a
#      signed-in customer, every check on (`--checks all`: no server errors, only documented statuses, content types
#      and headers, bodies that conform to their schemas, invalid input refused, valid input accepted, …), in a
#      bounded budget. Any failure fails the script.
#
#   scripts/test-api.sh                     # after `swift build` (uses .build/debug/shop)
#   FUZZ_EXAMPLES=100 FUZZ_SEED=random scripts/test-api.sh   # a longer, randomised run (its seed is printed)
#
# By default the generation is deterministic (the same requests every run, so CI is reproducible); FUZZ_SEED=N or
# FUZZ_SEED=random explores further, and a failure it finds is reproduced with the same FUZZ_SEED.
#
# The system runs from `shop up` on SQLite in a temporary folder, on free loopback ports, with the gateway's rate limit
# off (the fuzzer sends far more than a client may; the limit's 429 is checked by the tests) and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SHOP=${SHOP_BIN:-.build/debug/shop}
EXAMPLES=${FUZZ_EXAMPLES:-25}
BUDGET=${FUZZ_SECONDS:-420}
SEED=${FUZZ_SEED:-}
if [ "$SEED" = random ]; then SEED=$((RANDOM * 32768 + RANDOM)); fi
if [ -n "$SEED" ]; then generation=(--seed "$SEED"); else generation=(--generation-deterministic); fi

pip_install() {
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
if ! command -v schemathesis >/dev/null || ! python3 -c "import openapi_spec_validator, jsonschema, yaml" 2>/dev/null; then
    echo "==> installing schemathesis, openapi-spec-validator, jsonschema and PyYAML (PyPI)"
    pip_install "schemathesis>=4.3,<5" "openapi-spec-validator>=0.7" "jsonschema>=4.20" pyyaml
fi

echo "==> checking the OpenAPI documents"
python3 scripts/contracts.py check

if [ ! -x "$SHOP" ]; then
    echo "==> building shop"
    swift build --product shop
fi

# Eight consecutive free ports: the gateway's, the six services' and the payment provider's.
port=23100
while :; do
    busy=0
    for offset in 0 1 2 3 4 5 6 7; do
        if ss -ltn "sport = :$((port + offset))" 2>/dev/null | grep -q LISTEN; then busy=1; break; fi
    done
    [ "$busy" = 0 ] && break
    port=$((port + 10))
done
data=$(mktemp -d)
gateway="http://127.0.0.1:$port"
echo "==> starting the system (shop up, SQLite in $data, gateway $gateway)"
"$SHOP" up --data-dir "$data" --port-base "$port" --rate-limit off --log-level warning >"$data/up.log" 2>&1 &
shop_pid=$!
stop_system() {
    if kill -0 "$shop_pid" 2>/dev/null; then
        kill -TERM "$shop_pid" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$shop_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$shop_pid" 2>/dev/null || true
    fi
    wait "$shop_pid" 2>/dev/null || true
    rm -rf "$data"
}
trap stop_system EXIT

deadline=$((SECONDS + 180))
until curl -fsS -o /dev/null "$gateway/health/ready" 2>/dev/null && grep -q "Shop is up" "$data/up.log" 2>/dev/null; do
    if ! kill -0 "$shop_pid" 2>/dev/null; then
        echo "shop up exited:" >&2; cat "$data/up.log" >&2; exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        echo "the system was not ready within 180 s:" >&2; tail -50 "$data/up.log" >&2; exit 1
    fi
    sleep 0.5
done

echo "==> signing up and signing in a customer"
email="fuzz-$$-$RANDOM@example.com"
password="Fuzz-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')A1"
curl -fsS -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"name\":\"Fuzz Customer\",\"password\":\"$password\"}" "$gateway/api/users"
token=$(curl -fsS -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$gateway/api/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

echo "==> schemathesis: --checks all, at most $EXAMPLES examples an operation, ${BUDGET}s, $([ -n "$SEED" ] && echo "seed $SEED" || echo deterministic)"
started=$SECONDS
status=0
schemathesis --config-file contracts/schemathesis.toml run "$gateway/api/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $token" \
    --max-examples "$EXAMPLES" \
    --max-time "$BUDGET" \
    "${generation[@]}" \
    --workers 2 \
    --request-timeout 20 \
    --warnings off \
    --report junit --report-junit-path "$data/schemathesis.xml" || status=$?
echo "==> schemathesis: $((SECONDS - started)) s, exit status $status"
if [ "$status" -ne 0 ]; then
    echo "==> the system's log (warnings and errors):" >&2
    tail -80 "$data/up.log" >&2
fi
exit "$status"
