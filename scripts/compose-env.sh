#!/usr/bin/env bash
# Writes `.env` for compose.yaml with freshly generated secrets (mode 0600), unless it exists. Nothing secret is
# committed: `.env` is ignored by git; `.env.example` shows the names.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.env}"
if [ -e "$target" ]; then
    echo "$target exists; keeping it"
    exit 0
fi
random() { openssl rand -hex "${1:-24}"; }
umask 077
{
    echo "POSTGRES_PASSWORD=$(random)"
    echo "ADMIN_PASSWORD=Aa1$(random 12)"
    # The auth service's Ed25519 signing key: 32 random bytes, base64url without padding (the JWK's `d`).
    echo "AUTH_SIGNING_KEY=$(openssl rand 32 | base64 | tr '+/' '-_' | tr -d '=\n')"
    echo "PAYMENT_PROVIDER_KEY=sk_test_$(random)"
    for service in USER ORDER PAYMENT INVENTORY NOTIFICATION GATEWAY AUTH; do
        echo "SECRET_$service=$(random)"
    done
} >"$target"
echo "wrote $target (keep it private)"
