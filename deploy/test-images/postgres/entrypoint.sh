#!/bin/sh
# The official image's start, for the variables compose.yaml uses: a new data folder is initialised with
# POSTGRES_USER/POSTGRES_PASSWORD and POSTGRES_DB, then the server listens on every interface with password auth.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >/run/postgresql/pw
    chown postgres /run/postgresql/pw
    runuser -u postgres -- initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/run/postgresql/pw --auth=scram-sha-256 -E UTF8 >/dev/null
    rm -f /run/postgresql/pw
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        PGPASSWORD="$POSTGRES_PASSWORD" runuser -u postgres -- createdb -U "$POSTGRES_USER" -h /run/postgresql "$POSTGRES_DB"
    fi
    runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
