#!/usr/bin/env bash
# Fault drill: the disk of PostgreSQL's data directory fills up under add-to-cart load, then space comes
# back. A private PostgreSQL runs with its whole data directory (tables and WAL) on a size-limited tmpfs;
# a mercatod (rate limits off, no Redis) serves carts from it while bench/drills/disk_full_load.py adds to
# carts with Idempotency-Keys, fills the disk, frees it (restarting PostgreSQL if it stopped), retries
# every request of unknown outcome with its key, and checks that every acknowledged add is in its cart
# exactly once and that the node answered clean 503s and served again without a restart.
#
#   bench/drills/pg_disk_full.sh [--no-append]
#
# Needs root (mount -t tmpfs, and PostgreSQL run as the postgres user). Where the machine does not allow
# mounting, it says so and exits 2 without running anything. Loopback only; bounded (about a minute).
# MERCATOD: the node binary (default build/bench/app/mercatod, else build/test/app/mercatod).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
append=1
[[ "${1:-}" == "--no-append" ]] && append=0

MERCATOD="${MERCATOD:-}"
if [[ -z "$MERCATOD" ]]; then
  for c in build/bench/app/mercatod build/test/app/mercatod build/release/app/mercatod; do
    [[ -x "$c" ]] && { MERCATOD="$c"; break; }
  done
fi
[[ -x "${MERCATOD:-}" ]] || { echo "pg_disk_full: no mercatod binary (build one, or set MERCATOD)" >&2; exit 1; }
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
[[ -x "$PG_BIN/initdb" ]] || { echo "pg_disk_full: PostgreSQL is not installed (scripts/setup installs it)" >&2; exit 1; }

work="$(mktemp -d /tmp/mercato-diskfull-XXXXXX)"
chmod 755 "$work"
disk="$work/disk"
mkdir -p "$disk"
node_pid=""
pg_started=0
cleanup() {
  [[ -n "$node_pid" ]] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
  if (( pg_started )); then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$disk/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  mountpoint -q "$disk" && umount "$disk" || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if ! mount -t tmpfs -o size=160m tmpfs "$disk" 2>"$work/mount.err"; then
  echo "pg_disk_full: not possible on this machine: cannot mount a size-limited tmpfs ($(cat "$work/mount.err"))" >&2
  exit 2
fi
chown postgres "$disk"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port="$(free_port)"
http_port="$(free_port)"
runuser -u postgres -- "$PG_BIN/initdb" -D "$disk/pg" -U postgres --auth=trust -E UTF8 >"$work/initdb.log"
pg_opts="-p $pg_port -k $disk -c listen_addresses=127.0.0.1 -c min_wal_size=32MB -c max_wal_size=48MB -c shared_buffers=16MB"
pg_start() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$disk/pg" -l "$disk/pg.log" -o "$pg_opts" -w -t 30 start >/dev/null; }
pg_start
pg_started=1
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
  -c "CREATE ROLE mercato LOGIN SUPERUSER" -c "CREATE DATABASE mercato OWNER mercato"

secret="disk-full-drill-signing-key-0123456789abcdef"
admin_email="drill-admin@example.com"
admin_password="drill-$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
MERCATO_PG_DSN="postgresql://mercato@127.0.0.1:$pg_port/mercato" MERCATO_HTTP_PORT="$http_port" \
  MERCATO_NODE_ID=disk-full-drill MERCATO_JWT_SECRET="$secret" MERCATO_RATE_LIMITS=off MERCATO_LOG_LEVEL=warn \
  MERCATO_ADMIN_EMAIL="$admin_email" MERCATO_ADMIN_PASSWORD="$admin_password" "$MERCATOD" --demo >"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null || { echo "pg_disk_full: the node did not become ready" >&2; cat "$work/node.log" >&2; exit 1; }

# The load script restarts PostgreSQL through this command when the full disk stopped it.
export DRILL_PG_START="runuser -u postgres -- $PG_BIN/pg_ctl -D $disk/pg -l $disk/pg.log -o '$pg_opts' -w -t 30 start"
export DRILL_PG_READY="$PG_BIN/pg_isready -q -h 127.0.0.1 -p $pg_port"
set +e
python3 -u bench/drills/disk_full_load.py --base "http://127.0.0.1:$http_port" --secret "$secret" \
  --fill "$disk/filler" --node-pid "$node_pid" \
  --admin-email "$admin_email" --admin-password "$admin_password" | tee "$work/report.txt"
rc=${PIPESTATUS[0]}
set -e
echo "--- PostgreSQL log (last lines) ---"
tail -5 "$disk/pg.log" || true
if (( append )); then
  {
    echo
    echo "## $(date -u +%Y-%m-%d) pg_disk_full drill ($(git rev-parse --short HEAD), nproc $(nproc))"
    echo
    echo '```'
    cat "$work/report.txt"
    echo '```'
  } >>bench/results.md
fi
exit "$rc"
