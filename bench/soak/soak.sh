#!/usr/bin/env bash
# The soak of issue 15: one node with its default settings under a realistic storefront mix for a bounded time
# (30 minutes by default), at 70% of the maximum of that mix measured at the start, with the node's resources and
# the retention-bound tables sampled every 10 s. Prints a table, appends a dated section to bench/results.md, and
# exits 1 when a check fails.
#
#   bench/soak/soak.sh [--minutes N] [options]
#
# What it does:
#   1. starts PostgreSQL and Redis (scripts/services start --profile run; MERCATO_PG_PORT / MERCATO_REDIS_PORT are
#      honoured) and a fresh database mercato_soak, then the node (build/bench/app/mercatod, or $MERCATOD) with
#      --demo on 127.0.0.1:--port. Default settings, rate limits ON; changed: every rate-limit budget raised to
#      1000000000/h (MERCATO_RATE_LIMIT_GLOBAL, _ANONYMOUS, _AUTHENTICATED, _SEARCH, _LOGIN, _REGISTER, _ORDERS) so
#      the mix is charged and checked but never refused; a JWT secret shared with the helper (it mints the
#      customers' tokens) and an access-token lifetime covering the run; a bootstrap admin (random password);
#      a Redis key prefix of its own. Logging stays at info (the access log is written, to a temp file).
#   2. bench/soak/soak_prepare.py: stock raised on every product but one (made sold out), customers' tokens,
#      registered accounts for the logins, guest carts, the admin's token for price changes;
#   3. the maximum: mercato_soak_driver --closed over the mix (--measure-s, default 120 s after 5 s warm-up);
#   4. the soak: the open model at --rate-fraction (0.7) of that maximum, for --minutes in all, of which the first
#      --warmup-s are warm-up (default: a tenth of the run, between 120 and 180 s, and at least 60 s left to measure:
#      the entities a mix creates stay resident until idle for 60 s, so the working set fills for ~90 s);
#   5. while 3 and 4 run, every --interval-s (10 s): the node's VmRSS, open fds (/proc/PID/fd), threads, the
#      database's connections (pg_stat_activity), the outbox's size (estimate) and undispatched/expired rows, the
#      idempotency keys inserted, the parked entities' memory (mercato_entities_parked_bytes);
#   6. checks (each can fail the run): RSS less the parked entities' memory after warm-up flat within
#      --rss-tolerance (10%): the level at the end (mean of the last samples covering 30 s) against the level just
#      after warm-up (first samples, 30 s) (parked entities are a cache that fills for entities.keep_parked_ms, 30
#      min, or up to entities.max_parked_mb, by design); RSS itself flat within the same band once the parked
#      entities stopped growing (from the first sample after which they stay within 3% or 1 MB of their end level, if
#      that leaves a third of the run and 3 minutes; otherwise NOT MEASURED, which fails nothing: with the default
#      budget the cache fills for longer than 30 minutes, so run with a small MERCATO_ENTITIES_MAX_PARKED_MB, e.g. 4,
#      for this check); the parked entities of each kind within that budget; no 5xx
#      (driver and the node's own /metrics); no reply the mix did not ask for (the deliberate 404s, 409s and 402s
#      are counted apart); no WebSocket subscriber closed by the node or refused; p99 of each route over the
#      last --window-s (default: 5 minutes, or a fifth of the measured time when that is shorter, at least 30 s) at most
#      --p99-ratio (2.0) times its p99 over the first window (a route needs 100 replies in each window; a growth
#      smaller than --p99-slack-ms, 5 ms, passes); open fds at the end within 10% (and at least 20 fds) of the
#      after-warm-up level; PostgreSQL connections max - min <= 2 after warm-up; the offered rate sustained
#      (<= 1% unsent); the outbox: nothing dispatched longer ago than outbox.retention_s + 2 sweep intervals left,
#      and the undispatched backlog at the end under 2 x outbox.batch_size; idempotency_keys: no key past its
#      expiry for more than 2 housekeeping intervals, and no more new rows than Idempotency-Keys sent; the node
#      still up at the end and stopping with exit status 0 on SIGTERM.
#
# Options:
#   --minutes N        length of the soak itself (default 30; a short check: --minutes 3)
#   --port P           the node's HTTP port (default 18480; must be free)
#   --connections N    driver connections of the closed-loop measurement (default 64; the soak uses twice as many)
#   --ws-clients N     WebSocket subscribers held open throughout (default 200)
#   --ws-lifetime-s S  mean lifetime of a subscriber before it closes and reconnects (default 60)
#   --measure-s S      closed-loop measurement seconds (default 120: a 30 s maximum, taken while the tables are
#                      still empty, overstated what the box sustains once they grow; bench/results.md)
#   --rate-fraction F  open-model rate as a fraction of the maximum (default 0.7)
#   --rate R           skip the measurement and soak at R requests/s
#   --warmup-s S       warm-up of the soak (default: minutes x 6 s, between 120 and 180, at most minutes x 60 - 60)
#   --window-s S       p99 comparison window (default: min(300, measured time / 5), at least 30)
#   --interval-s S     sampling interval (default 10)
#   --p99-ratio X      p99 growth that fails (default 2.0); --p99-slack-ms MS (default 5)
#   --rss-tolerance F  RSS band after warm-up (default 0.10)
#   --keep-db          keep the database mercato_soak afterwards (default: dropped)
#   --keep-services    leave PostgreSQL and Redis running even when this script started them
#   --keep-files       leave the run's files (driver output, samples, the node's log) in the temp dir it names; the
#                      report can be made again from them: (. DIR/report.env; SOAK_APPEND=0 python3
#                      bench/soak/soak_report.py)
#   --no-append        print the table only; do not append to bench/results.md
#   --note TEXT        added to the results heading line
#
# Needs: the Release build (cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DMERCATO_BUILD_TESTS=OFF
# && cmake --build build/bench --target mercatod mercato_soak_driver), psql, curl, python3. Loopback only. Every
# process it starts is stopped on every exit (trap, also Ctrl-C), the run's Redis keys are deleted, and PostgreSQL
# and Redis are stopped again if they were not running before.
set -euo pipefail

SOAK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SOAK_DIR/../.." && pwd)"
RESULTS_MD="$REPO_ROOT/bench/results.md"
PREPARE="$SOAK_DIR/soak_prepare.py"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
log() { echo "soak: $*" >&2; }
die() { echo "soak: $*" >&2; exit 1; }

minutes=30
port=18480
connections=64
ws_clients=200
ws_lifetime_s=60
measure_s=120
rate_fraction=0.7
rate=""
warmup_s=""
window_s=""
interval_s=10
p99_ratio=2.0
p99_slack_ms=5
rss_tolerance=0.10
keep_db=0
keep_services=0
keep_tmp=0
append=1
note=""
while (( $# )); do
  case "$1" in
    --minutes) minutes="${2:?}"; shift 2 ;;
    --port) port="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --ws-clients) ws_clients="${2:?}"; shift 2 ;;
    --ws-lifetime-s) ws_lifetime_s="${2:?}"; shift 2 ;;
    --measure-s) measure_s="${2:?}"; shift 2 ;;
    --rate-fraction) rate_fraction="${2:?}"; shift 2 ;;
    --rate) rate="${2:?}"; shift 2 ;;
    --warmup-s) warmup_s="${2:?}"; shift 2 ;;
    --window-s) window_s="${2:?}"; shift 2 ;;
    --interval-s) interval_s="${2:?}"; shift 2 ;;
    --p99-ratio) p99_ratio="${2:?}"; shift 2 ;;
    --p99-slack-ms) p99_slack_ms="${2:?}"; shift 2 ;;
    --rss-tolerance) rss_tolerance="${2:?}"; shift 2 ;;
    --keep-db) keep_db=1; shift ;;
    --keep-services) keep_services=1; shift ;;
    --keep-files) keep_tmp=1; shift ;;
    --no-append) append=0; shift ;;
    --note) note="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 )); }
is_num() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
for v in minutes port connections ws_lifetime_s measure_s interval_s; do
  is_uint "${!v}" || die "--${v//_/-} needs a positive whole number, got '${!v}'"
done
[[ "$ws_clients" =~ ^[0-9]+$ ]] || die "--ws-clients needs a whole number"
for v in p99_ratio p99_slack_ms rss_tolerance; do is_num "${!v}" || die "--${v//_/-} needs a number"; done
[[ "$rate_fraction" =~ ^0?\.[0-9]+$|^1(\.0*)?$ ]] || die "--rate-fraction needs a number in (0, 1]"
[[ -z "$rate" ]] || is_num "$rate" || die "--rate needs a number"
(( port < 65536 )) || die "--port must be below 65536"
total_s=$(( minutes * 60 ))
# The warm-up covers the node filling its working set: an entity (cart, order, payment) stays resident until it has
# been idle for 60 s, so the resident entities level off only ~90 s into the load.
if [[ -z "$warmup_s" ]]; then
  warmup_s=$(( minutes * 6 )); (( warmup_s < 120 )) && warmup_s=120; (( warmup_s > 180 )) && warmup_s=180
  (( warmup_s <= total_s - 60 )) || warmup_s=$(( total_s - 60 ))
fi
is_uint "$warmup_s" || die "--warmup-s needs a positive whole number"
(( total_s - warmup_s >= 60 )) || die "--warmup-s $warmup_s leaves less than 60 s of --minutes $minutes to measure"
measured_s=$(( total_s - warmup_s ))
# p99 windows: 5 minutes, or a fifth of a shorter measured time, but at least 30 s (the node's housekeeping runs every
# 30 s and its outbox sweep every 60 s: a window much shorter than that holds one such pass or none, and the tails of
# two windows then differ by luck).
if [[ -z "$window_s" ]]; then
  window_s=$(( measured_s / 5 )); (( window_s > 300 )) && window_s=300
  (( window_s >= 30 || measured_s < 60 )) || window_s=30
fi
is_uint "$window_s" || die "--window-s needs a positive whole number"
(( window_s * 2 <= measured_s )) || die "--window-s $window_s: two windows do not fit in $measured_s measured seconds"

# --- tools -----------------------------------------------------------------------------------------
pick() { for f in "$@"; do [[ -x "$f" ]] && { echo "$f"; return; }; done; echo ""; }
MERCATOD="${MERCATOD:-$(pick "$REPO_ROOT/build/bench/app/mercatod" "$REPO_ROOT/build/release/app/mercatod")}"
DRIVER="${MERCATO_SOAK_DRIVER:-$(pick "$REPO_ROOT/build/bench/bench/mercato_soak_driver" "$REPO_ROOT/build/release/bench/mercato_soak_driver")}"
[[ -n "$MERCATOD" ]] || die "mercatod not found under build/bench or build/release (build it, or set MERCATOD)"
[[ -n "$DRIVER" ]] || die "mercato_soak_driver not found (cmake --build build/bench --target mercato_soak_driver, or set MERCATO_SOAK_DRIVER)"
for tool in psql curl python3; do command -v "$tool" >/dev/null || die "$tool is required"; done
python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); s.close()' "$port" 2>/dev/null \
  || die "port $port on 127.0.0.1 is in use (--port)"

# --- cleanup: whatever was started is stopped, on every exit ---------------------------------------
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mercato-soak.XXXXXX")"
RUN_ID="$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
REDIS_PREFIX="soak-$RUN_ID:"
node_pid=""
driver_pid=""
progress_pid=""
sampler_pid=""
db_made=0
services_started=0
base_dsn=""
redis_host=""
redis_port=""
stop_pid() {  # PID SECONDS: SIGTERM, wait, SIGKILL; returns the exit status
  local pid="$1" wait_s="$2" i rc=0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || rc=$?; return "$rc"; }
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < wait_s * 10; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for $wait_s s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -z "$sampler_pid" ]] || stop_pid "$sampler_pid" 5 || true
  [[ -z "$driver_pid" ]] || stop_pid "$driver_pid" 5 || true
  [[ -z "$progress_pid" ]] || stop_pid "$progress_pid" 5 || true
  [[ -z "$node_pid" ]] || stop_pid "$node_pid" 20 || true
  if (( db_made && ! keep_db )); then
    psql -X -q "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_soak WITH (FORCE)' >/dev/null 2>&1 || true
  fi
  if [[ -n "$redis_port" ]] && command -v redis-cli >/dev/null; then
    redis-cli -h "$redis_host" -p "$redis_port" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null \
      | xargs -r -n 500 redis-cli -h "$redis_host" -p "$redis_port" UNLINK >/dev/null 2>&1 || true
  fi
  if (( services_started && ! keep_services )); then
    log "stopping the PostgreSQL and Redis this run started"
    "$REPO_ROOT/scripts/services" stop --profile run >/dev/null 2>&1 || true
  fi
  if (( keep_tmp )); then log "the run's files are left in $TMP_DIR"; else rm -rf "$TMP_DIR"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- services and the node ----------------------------------------------------------------------------
if ! "$REPO_ROOT/scripts/services" status --profile run >/dev/null 2>&1; then
  log "starting PostgreSQL and Redis (scripts/services start --profile run)"
  services_started=1
  "$REPO_ROOT/scripts/services" start --profile run >&2 || die "scripts/services start failed"
fi
services_env="$("$REPO_ROOT/scripts/services" env --profile run)"
base_dsn="$(sed -n "s/^export MERCATO_PG_DSN='\(.*\)'$/\1/p" <<<"$services_env")"
redis_url="$(sed -n "s/^export MERCATO_REDIS_URL='\(.*\)'$/\1/p" <<<"$services_env")"
soak_dsn="$(python3 - "$base_dsn" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
if not (p.hostname or "").startswith("127.") and p.hostname not in ("localhost", "::1"):
    sys.exit(f"soak: the PostgreSQL DSN must name a loopback host, got {p.hostname}")
print(u.urlunsplit((p.scheme, p.netloc, "/mercato_soak", p.query, p.fragment)))
PY
)"
read -r redis_host redis_port <<<"$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 6379)' "$redis_url")"
[[ "$redis_host" == 127.* || "$redis_host" == localhost ]] || die "Redis must be on a loopback host"
PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_soak WITH (FORCE)' \
  -c 'CREATE DATABASE mercato_soak' >/dev/null
db_made=1

JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
JWT_TTL_S=$(( total_s + measure_s + 1800 ))  # the minted tokens must outlive preparation, measurement and soak
export BENCH_JWT_SECRET="$JWT_SECRET" BENCH_JWT_TTL_S="$JWT_TTL_S"
export BENCH_ADMIN_EMAIL="soak-admin@example.com"
BENCH_ADMIN_PASSWORD="soak-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
export BENCH_ADMIN_PASSWORD
BUDGET=1000000000/h
URL="http://127.0.0.1:$port"
NODE_LOG="$TMP_DIR/mercatod.log"
log "starting $MERCATOD --demo on $URL (rate limits on, budgets $BUDGET; log $NODE_LOG)"
# mercatod rejects MERCATO_* variables it does not know: drop the ones of scripts/services.
env -u MERCATO_PG_PORT -u MERCATO_REDIS_PORT -u MERCATO_SERVICES_TIMEOUT -u MERCATO_URL -u MERCATO_LOADGEN \
  -u MERCATO_SOAK_DRIVER \
  MERCATO_PG_DSN="$soak_dsn" MERCATO_REDIS_URL="$redis_url" MERCATO_REDIS_KEY_PREFIX="$REDIS_PREFIX" \
  MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_HTTP_PORT="$port" MERCATO_RATE_LIMITS=on \
  MERCATO_RATE_LIMIT_GLOBAL="$BUDGET" MERCATO_RATE_LIMIT_ANONYMOUS="$BUDGET" MERCATO_RATE_LIMIT_AUTHENTICATED="$BUDGET" \
  MERCATO_RATE_LIMIT_SEARCH="$BUDGET" MERCATO_RATE_LIMIT_LOGIN="$BUDGET" MERCATO_RATE_LIMIT_REGISTER="$BUDGET" \
  MERCATO_RATE_LIMIT_ORDERS="$BUDGET" \
  MERCATO_JWT_SECRET="$JWT_SECRET" MERCATO_ACCESS_TOKEN_TTL_S="$JWT_TTL_S" \
  MERCATO_ADMIN_EMAIL="$BENCH_ADMIN_EMAIL" MERCATO_ADMIN_PASSWORD="$BENCH_ADMIN_PASSWORD" \
  "$MERCATOD" --demo >"$NODE_LOG" 2>&1 &
node_pid=$!
deadline=$((SECONDS + 90))
until curl -fsS -o /dev/null --max-time 2 "$URL/readyz" 2>/dev/null; do
  if ! kill -0 "$node_pid" 2>/dev/null; then
    tail -n 30 "$NODE_LOG" >&2 || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=""
    die "mercatod exited during start-up (log above)"
  fi
  (( SECONDS < deadline )) || { tail -n 30 "$NODE_LOG" >&2 || true; die "mercatod was not ready within 90 s"; }
  sleep 0.3
done

# The retention settings the table checks are bounded by: the node's defaults unless the environment sets them.
outbox_retention_s="${MERCATO_OUTBOX_RETENTION_S:-604800}"
outbox_retention_interval_s="${MERCATO_OUTBOX_RETENTION_INTERVAL_S:-60}"
outbox_batch_size="${MERCATO_OUTBOX_BATCH_SIZE:-500}"
housekeeping_interval_s="${MERCATO_HOUSEKEEPING_INTERVAL_S:-30}"

# --- preparation -------------------------------------------------------------------------------------------
log "preparing: stock, a sold-out product, customers' tokens, accounts, guest carts"
python3 "$PREPARE" setup "$URL" "$TMP_DIR/setup.json" --seed "$RANDOM" >"$TMP_DIR/setup.facts" \
  || die "preparation failed"
log "prepared: $(cat "$TMP_DIR/setup.facts")"

# --- the sampler: every interval, one TSV line ----------------------------------------------------------------
# epoch, VmRSS kB, open fds, threads, database connections, outbox rows (estimate), outbox undispatched, outbox rows
# past retention, idempotency keys inserted so far, idempotency rows past expiry (beyond two housekeeping
# intervals), the machine's 1-minute load average, the node's CPU time so far (utime + stime, clock ticks), then what
# lines the latency up with the machine and the database: PostgreSQL's CPU time so far (every process of the server:
# its live processes' utime + stime, and the postmaster's cutime + cstime for the exited ones), the machine's CPU
# time so far (busy, iowait, all; /proc/stat), WAL bytes written (pg_stat_wal), checkpoints (timed + requested),
# pages written by checkpoints and by backends themselves (pg_stat_bgwriter), autovacuum + autoanalyze runs, and the
# parked entities' memory (kB, all kinds and the largest kind; from the node's /metrics)
SAMPLES="$TMP_DIR/samples.tsv"
# The sample must stay cheap as the tables grow (a count(*) over a million outbox rows every 10 s was itself a
# growing load): the outbox's size is the statistics' live-row estimate, the idempotency keys are counted as rows
# inserted (the statistics' cumulative counter, exact to within the ~1 s the backends take to report), and the
# three counts that the checks need exactly read only the few rows they match (the events after the dispatch cursor,
# the outbox's BRIN index on occurred_at, idx_idempotency_expiry).
sample_sql="SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()),
  (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'outbox'::regclass),
  (SELECT count(*) FROM outbox_undispatched),
  @PAST_RETENTION@,
  (SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'idempotency_keys'::regclass),
  (SELECT count(*) FROM idempotency_keys WHERE expires_at < now() - make_interval(secs => 2 * $housekeeping_interval_s)),
  (SELECT wal_bytes::bigint FROM pg_stat_wal),
  (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
  (SELECT buffers_checkpoint FROM pg_stat_bgwriter),
  (SELECT buffers_backend FROM pg_stat_bgwriter),
  (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables),
  (SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'
     AND pid <> pg_backend_pid() ORDER BY backend_start LIMIT 1)"
postmaster_pid=""
# The outbox rows past retention are counted once a minute and in the last sample, not every 10 s: the count reads
# every outbox page the BRIN index has not summarised yet (all written since autovacuum last passed), which a
# statement profile of a 30-minute run showed doubling (16.8 -> 31.4 ms of PostgreSQL time a second); the other
# samples carry -1 there, which the report skips.
past_retention_sql="(SELECT count(*) FROM outbox o WHERE o.occurred_at < now() - make_interval(secs => $outbox_retention_s + 2 * $outbox_retention_interval_s)
     AND (o.tx, o.seq) <= (SELECT c.tx, c.seq FROM outbox_cursor c))"
sample_count=0
sample_once() {  # [full]: count the outbox rows past retention in this sample
  local rss fds threads db cpu backend pg_cpu machine parked sql
  sample_count=$(( sample_count + 1 ))
  if [[ "${1:-}" == full ]] || (( sample_count % 6 == 1 )); then
    sql="${sample_sql/@PAST_RETENTION@/$past_retention_sql}"
  else
    sql="${sample_sql/@PAST_RETENTION@/-1}"
  fi
  rss="$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$node_pid/status" 2>/dev/null)"
  threads="$(sed -n 's/^Threads:[[:space:]]*\([0-9]*\)/\1/p' "/proc/$node_pid/status" 2>/dev/null)"
  fds="$(ls "/proc/$node_pid/fd" 2>/dev/null | wc -l)"
  cpu="$(awk '{ print $14 + $15 }' "/proc/$node_pid/stat" 2>/dev/null)"
  db="$(psql -X -qtA -F $'\t' "$soak_dsn" -c "$sql" 2>/dev/null || echo "")"
  [[ -n "$rss" && -n "$db" && -n "$cpu" ]] || return 0
  # The last column is one of the node's (long-lived) backends: its parent is the postmaster.
  backend="${db##*$'\t'}"
  db="${db%$'\t'*}"
  if [[ -z "$postmaster_pid" && "$backend" =~ ^[0-9]+$ ]]; then
    postmaster_pid="$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$backend/status" 2>/dev/null)"
  fi
  [[ -n "$postmaster_pid" ]] || return 0
  # Field 2 of /proc/PID/stat is "(postgres)" for every server process, so the fields after it do not shift. (A
  # process may exit between the glob and the read: cat then fails, which must not end the sampler under set -e.)
  pg_cpu="$({ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$postmaster_pid" '
    $2 == "(postgres)" && $4 == pm { t += $14 + $15 }
    $1 == pm { t += $14 + $15 + $16 + $17 }
    END { print t + 0 }')"
  machine="$(awk '$1 == "cpu" { all = 0; for (i = 2; i <= NF; i++) all += $i
    print $2 + $3 + $4 + $7 + $8 + $9 "\t" $6 "\t" all; exit }' /proc/stat)"
  # The parked entities' memory as the node counts it (mercato_entities_parked_bytes): all kinds, and the largest
  # kind (the budget entities.max_parked_mb is per kind).
  parked="$(curl -fsS --max-time 5 "$URL/metrics" 2>/dev/null | awk '/^mercato_entities_parked_bytes[{]/ {
      t += $2; if ($2 > m) m = $2 } END { printf "%d\t%d", t / 1024, m / 1024 }')"
  [[ "$parked" =~ ^[0-9]+$'\t'[0-9]+$ ]] || return 0
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%s.%N | cut -c1-14)" "$rss" "$fds" "$threads" "$db" \
    "$(cut -d' ' -f1 /proc/loadavg)" "$cpu" "$pg_cpu" "$machine" "$parked" >>"$SAMPLES"
}
: >"$SAMPLES"
( set +e  # a failed read skips one sample; it must not end the sampler
  nap=""; trap '[[ -z "$nap" ]] || kill "$nap" 2>/dev/null; exit 0' TERM
  while true; do sample_once; sleep "$interval_s" & nap=$!; wait "$nap"; nap=""; done ) &
sampler_pid=$!

started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
git_rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
if [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]]; then git_rev="$git_rev+dirty"; fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# run_driver NAME ARGS...: the driver in the background (so Ctrl-C reaches the trap at once); its JSON lines in
# NAME.jsonl, one progress line per interval on stderr.
run_driver() {
  local name="$1" rc=0
  shift
  "$DRIVER" --port "$port" --setup "$TMP_DIR/setup.json" --ws-clients "$ws_clients" --ws-lifetime-s "$ws_lifetime_s" \
    --interval "$interval_s" --run-id "soak-$RUN_ID-$name" --seed "$RANDOM" "$@" >"$TMP_DIR/$name.jsonl" \
    2>"$TMP_DIR/$name.err" &
  driver_pid=$!
  python3 - "$TMP_DIR/$name.jsonl" "$driver_pid" "$name" <<'PY' >&2 &
import json, os, sys, time
path, pid, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
pos = 0
while True:
    running = alive()
    if not os.path.exists(path):
        break
    with open(path) as f:
        f.seek(pos)
        for line in f:
            if not line.endswith("\n"):
                break
            pos += len(line)
            d = json.loads(line)
            if d["type"] == "interval":
                p99 = max((r["p99_ms"] for r in d["routes"].values()), default=0)
                print(f"soak: {name} t={d['t']:+.0f}s sent {d['sent']} | {d['measured']} measured in the interval, "
                      f"{d['unexpected']} unexpected, worst route p99 {p99:.1f} ms | ws open {d['ws_open']}, "
                      f"{d['ws_messages']} msgs", flush=True)
    if not running:
        break
    time.sleep(1)
PY
  progress_pid=$!
  wait "$driver_pid" || rc=$?
  driver_pid=""
  wait "$progress_pid" 2>/dev/null || true
  progress_pid=""
  (( rc == 0 )) || { cat "$TMP_DIR/$name.err" >&2; die "mercato_soak_driver ($name) failed with status $rc"; }
  kill -0 "$node_pid" 2>/dev/null || { tail -n 30 "$NODE_LOG" >&2; die "mercatod died during $name"; }
}
summary_field() {  # NAME KEY
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["type"] == "summary": print(d[sys.argv[2]])' "$TMP_DIR/$1.jsonl" "$2"
}

# --- 1. the maximum of the mix (closed loop) ----------------------------------------------------------------
if [[ -z "$rate" ]]; then
  log "measuring the mix's maximum: closed loop, $connections connections, $measure_s s after 5 s warm-up"
  echo "$(date +%s)" >"$TMP_DIR/closed.start"
  run_driver closed --closed --connections "$connections" --duration "$measure_s" --warmup 5 --window "$measure_s"
  max_rate="$(python3 -c "print(round($(summary_field closed rate), 1))")"
  rate="$(python3 -c "print(round(max(1.0, $max_rate * $rate_fraction), 1))")"
  log "maximum $max_rate req/s; the soak runs at $rate req/s ($rate_fraction of it)"
else
  max_rate=""
  log "soaking at the given --rate $rate req/s (no measurement)"
fi

# --- 2. the soak (open model) -------------------------------------------------------------------------------
log "soak: $rate req/s for $minutes min ($warmup_s s warm-up, then $measured_s s measured; p99 windows of $window_s s)"
soak_start="$(date +%s.%N | cut -c1-14)"
run_driver soak --rate "$rate" --connections "$(( 2 * connections ))" --warmup "$warmup_s" --duration "$measured_s" \
  --window "$window_s"
sample_once full
stop_pid "$sampler_pid" 5 || true
sampler_pid=""

# --- the node's own view, and its shutdown --------------------------------------------------------------------
curl -fsS --max-time 10 "$URL/metrics" >"$TMP_DIR/metrics.txt" 2>/dev/null || : >"$TMP_DIR/metrics.txt"
node_rc=0
stop_pid "$node_pid" 30 || node_rc=$?
node_pid=""
echo "$node_rc" >"$TMP_DIR/node.rc"

# --- analysis, table, checks ------------------------------------------------------------------------------
cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
export SOAK_TMP="$TMP_DIR" SOAK_STARTED="$started_at" SOAK_REV="$git_rev" SOAK_NPROC="$(nproc)" \
  SOAK_CPU="${cpu_model:-unknown}" SOAK_LOAD="$load_before" SOAK_NOTE="$note" SOAK_RESULTS="$RESULTS_MD" \
  SOAK_APPEND="$append" SOAK_MINUTES="$minutes" SOAK_WARMUP="$warmup_s" SOAK_MEASURED="$measured_s" \
  SOAK_WINDOW="$window_s" SOAK_START_EPOCH="$soak_start" SOAK_MAX_RATE="$max_rate" SOAK_RATE="$rate" \
  SOAK_FRACTION="$rate_fraction" SOAK_P99_RATIO="$p99_ratio" SOAK_P99_SLACK="$p99_slack_ms" \
  SOAK_RSS_TOL="$rss_tolerance" SOAK_PARKED_BUDGET_MB="${MERCATO_ENTITIES_MAX_PARKED_MB:-64}" SOAK_INTERVAL="$interval_s" SOAK_BUDGET="$BUDGET" SOAK_WS="$ws_clients" SOAK_WS_LIFETIME="$ws_lifetime_s" \
  SOAK_CONNECTIONS="$connections" SOAK_OUTBOX_RETENTION="$outbox_retention_s" \
  SOAK_OUTBOX_BATCH="$outbox_batch_size" SOAK_NODE_LOG="$NODE_LOG" SOAK_CLK_TCK="$(getconf CLK_TCK)"
export -p | grep '^declare -x SOAK_' >"$TMP_DIR/report.env" || true
python3 "$SOAK_DIR/soak_report.py"
