#!/usr/bin/env bash
# Start the services the tests need (PostgreSQL on 127.0.0.1 only, in a throw-away
# data directory), run the given command with DATABASE URLs exported, stop them again.
set -euo pipefail

PG_PORT="${SMIS_TEST_PG_PORT:-54329}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "test-services: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi

WORK="$(mktemp -d /tmp/smis-test-services.XXXXXX)"
chmod 755 "$WORK"
PGDATA="$WORK/pgdata"
mkdir -p "$PGDATA"

as_postgres() {
  if [ "$(id -u)" = "0" ]; then
    chown -R postgres:postgres "$WORK"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

stop_services() {
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap stop_services EXIT INT TERM

as_postgres "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; exit 1; }
as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w \
  -o "-k $WORK -p $PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
  || { cat "$WORK/postgres.log" >&2; exit 1; }

export SMIS_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:${PG_PORT}/postgres"
echo "test-services: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:${PG_PORT}"
"$@"
