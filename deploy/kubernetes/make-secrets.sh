#!/usr/bin/env bash
# Writes an overlay's secret files that are missing, with fresh random values that agree with each other (the
# service secrets in SERVICE_CLIENTS and in each service's file; local: the passwords in the URLs and in the
# servers' files). Never overwrites a file. For production it leaves database.env, redis.env, mail.env and the CA
# files to you (the managed services' addresses and credentials), and says so.
#
#   deploy/kubernetes/make-secrets.sh local|production
set -euo pipefail

overlay="${1:-}"
case "$overlay" in
    local | production) ;;
    *)
        echo "usage: $0 local|production" >&2
        exit 64
        ;;
esac
root="$(cd "$(dirname "$0")" && pwd)"
dir="$root/overlays/$overlay/secrets"
umask 077

# 32 random bytes, base64url without padding (43 characters): also the form of an Ed25519 private key's "d".
random() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

# write NAME LINE...: creates $dir/NAME.env from the lines unless it exists.
write() {
    local file="$dir/$1.env"
    shift
    if [[ -e "$file" ]]; then
        echo "kept     $file"
        return
    fi
    printf '%s\n' "$@" >"$file"
    echo "written  $file"
}

# Reuses the services' secrets already written, so that SERVICE_CLIENTS stays in step with them.
existing() {
    if [[ -e "$dir/$1.env" ]]; then sed -n "s/^$2=//p" "$dir/$1.env" | head -n 1; fi
}
user_secret="$(existing user SERVICE_SECRET)"
order_secret="$(existing order SERVICE_SECRET)"
payment_secret="$(existing payment SERVICE_SECRET)"
user_secret="${user_secret:-$(random)}"
order_secret="${order_secret:-$(random)}"
payment_secret="${payment_secret:-$(random)}"

write auth "AUTH_SIGNING_KEY=$(random)" "SERVICE_CLIENTS=user=$user_secret,order=$order_secret,payment=$payment_secret"
write user "SERVICE_SECRET=$user_secret" "ADMIN_EMAIL=admin@shop.local" "ADMIN_PASSWORD=$(random)"
write order "SERVICE_SECRET=$order_secret"
write payment "SERVICE_SECRET=$payment_secret"
write payment-provider "PAYMENT_PROVIDER_KEY=sk_test_$(random)"

if [[ "$overlay" == local ]]; then
    if [[ -e "$dir/database.env" || -e "$dir/postgres-server.env" ]]; then
        echo "kept     $dir/database.env and postgres-server.env (write both or neither)"
    else
        password="$(random)"
        write postgres-server "POSTGRES_PASSWORD=$password"
        write database "DATABASE_URL=postgres://shop:$password@postgres:5432/shop?sslmode=disable"
    fi
    if [[ -e "$dir/redis.env" || -e "$dir/redis-server.env" ]]; then
        echo "kept     $dir/redis.env and redis-server.env (write both or neither)"
    else
        # A letter first: redis-server takes it as an argument, where a leading "--" would read as an option.
        password="r$(random)"
        write redis-server "REDIS_PASSWORD=$password"
        write redis "REDIS_URL=redis://:$password@redis:6379/0"
    fi
else
    for name in secrets/database.env secrets/redis.env secrets/mail.env certs/database-ca.pem certs/redis-ca.pem; do
        [[ -e "$root/overlays/production/$name" ]] ||
            echo "missing  overlays/production/$name: write it from $name.example (the managed service's own values)"
    done
fi
echo "The admin password is ADMIN_PASSWORD in $dir/user.env (used when the user service first creates the account)."
