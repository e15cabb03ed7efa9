#!/usr/bin/env bash
# The benchmarks of issue 10 (catalog, inventory, carts over HTTP), in one bounded run:
#
#   1. carts    durable add-to-cart, POST /api/v1/carts/{id}/items, spread over many guest carts and all the
#               demo products: the closed-loop maximum, then p50/p99 in the open model at 70% of it, with
#               the disk's own fdatasync sampled beside the open run (bench/fsync_probe.py on var/, or on
#               $BENCH_FSYNC_DIR: the volume of PostgreSQL's data directory)
#   2. search   GET /api/v1/products?q=... on a generated 100,000-product catalog, with Redis: "cold" (every
#               request a query never asked before in this run: L1 and Redis miss, PostgreSQL answers) and
#               "cached" (a few queries repeated: L1 hits)
#   3. baseline bench/http_baseline.sh --start as it is (GET /products/{id}, mercato against nginx)
#
#   bench/issue10_bench.sh [options]
#
# Options:
#   --carts N             guest carts the adds are spread over (default 10000)
#   --cart-connections L  comma-separated connection counts for the closed-loop add-to-cart runs; the
#                         maximum over them is the reported maximum (default 64)
#   --rate-fraction F     open-model rate as a fraction of the add-to-cart maximum (default 0.7)
#   --cart-rate R         open-model rate in adds/s instead (skips the fraction)
#   --open-connections N  connections of the open-model run (default 2 x the largest --cart-connections)
#   --timeline-ms MS      the open run's timeline in buckets of MS ms instead of seconds (a stall that recurs
#                         within each second shows as one slow bucket in every 1000/MS)
#   --catalog N           products in the generated search catalog (default 100000)
#   --cold-queries N      distinct search queries of the cold run (default 200000; more than a run sends)
#   --cached-queries N    queries of the cached run (default 20)
#   --search-connections N  (default 32)
#   --duration S          measured seconds per run (default 10)
#   --warmup S            warm-up seconds per run (default 3)
#   --threads T           loadgen io threads (default 1)
#   --only LIST           comma-separated subset of carts,search,baseline (default all three)
#   --fresh-catalog       drop and regenerate the search catalog database even if it is complete
#   --keep-catalog-db / --drop-catalog-db   keep (default) or drop the search database at the end
#   --rate-limits on|off  the nodes' rate limits (default off). on: the defaults' rules with the global,
#                         anonymous and authenticated budgets raised so that nothing is refused (as
#                         issue14_bench.sh runs the GET), so admission's cost is in the figures
#   --no-append           print the table only; do not append to bench/results.md
#   --note TEXT           added to the results heading line
#
# Needs: a Release build (build/release/app/mercatod and build/release/bench/mercato_loadgen, or $MERCATOD and
# $MERCATO_LOADGEN), PostgreSQL and Redis (scripts/services start --profile run; MERCATO_PG_PORT /
# MERCATO_REDIS_PORT are honoured, or give MERCATO_PG_DSN / MERCATO_REDIS_URL), psql, curl, python3, nginx.
# Everything listens on 127.0.0.1 only. Databases it creates in that PostgreSQL: mercato_bench_carts (fresh
# each run, dropped at the end) and mercato_bench_catalog (kept for the next run: generating takes a while;
# --drop-catalog-db removes it). Its mercatod processes log to a temp dir, are stopped on every exit (trap),
# and their Redis keys (own key prefix per run) are deleted at the end.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS_MD="$REPO_ROOT/bench/results.md"
PREPARE="$REPO_ROOT/bench/issue10_prepare.py"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
log() { echo "issue10_bench: $*" >&2; }
die() { echo "issue10_bench: $*" >&2; exit 1; }

carts=10000
cart_connections=64
rate_fraction=0.7
cart_rate=""
open_connections=""
timeline_ms=1000
catalog=100000
cold_queries=200000
cached_queries=20
search_connections=32
duration=10
warmup=3
threads=1
only="carts,search,baseline"
rate_limits=off
fresh_catalog=0
drop_catalog=0
append=1
note=""
while (( $# )); do
  case "$1" in
    --carts) carts="${2:?}"; shift 2 ;;
    --rate-limits) rate_limits="${2:?}"; shift 2 ;;
    --cart-connections) cart_connections="${2:?}"; shift 2 ;;
    --rate-fraction) rate_fraction="${2:?}"; shift 2 ;;
    --cart-rate) cart_rate="${2:?}"; shift 2 ;;
    --open-connections) open_connections="${2:?}"; shift 2 ;;
    --timeline-ms) timeline_ms="${2:?}"; shift 2 ;;
    --catalog) catalog="${2:?}"; shift 2 ;;
    --cold-queries) cold_queries="${2:?}"; shift 2 ;;
    --cached-queries) cached_queries="${2:?}"; shift 2 ;;
    --search-connections) search_connections="${2:?}"; shift 2 ;;
    --duration) duration="${2:?}"; shift 2 ;;
    --warmup) warmup="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --only) only="${2:?}"; shift 2 ;;
    --fresh-catalog) fresh_catalog=1; shift ;;
    --keep-catalog-db) drop_catalog=0; shift ;;
    --drop-catalog-db) drop_catalog=1; shift ;;
    --no-append) append=0; shift ;;
    --note) note="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 )); }
for v in carts catalog cold_queries cached_queries search_connections threads; do
  is_uint "${!v}" || die "--${v//_/-} needs a positive whole number, got '${!v}'"
done
[[ -z "$cart_rate" ]] || is_uint "$cart_rate" || die "--cart-rate needs a positive whole number"
[[ -z "$open_connections" ]] || is_uint "$open_connections" || die "--open-connections needs a positive whole number"
is_uint "$timeline_ms" || die "--timeline-ms needs a positive whole number"
[[ "$cart_connections" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--cart-connections needs a list like 32,128"
[[ "$duration" =~ ^[0-9]+(\.[0-9]+)?$ && "$warmup" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration/--warmup need seconds"
[[ "$rate_limits" == on || "$rate_limits" == off ]] || die "--rate-limits needs on or off, got '$rate_limits'"
[[ "$rate_fraction" =~ ^0?\.[0-9]+$|^1(\.0*)?$ ]] || die "--rate-fraction needs a number in (0, 1]"
want() { [[ ",$only," == *",$1,"* ]]; }
for part in ${only//,/ }; do
  case "$part" in carts|search|baseline) ;; *) die "--only: unknown part '$part' (carts, search, baseline)" ;; esac
done

# --- tools and services -------------------------------------------------------------------------
MERCATOD="${MERCATOD:-$REPO_ROOT/build/release/app/mercatod}"
LOADGEN="${MERCATO_LOADGEN:-$REPO_ROOT/build/release/bench/mercato_loadgen}"
[[ -x "$MERCATOD" ]] || die "mercatod not found at $MERCATOD (build Release, or set MERCATOD)"
[[ -x "$LOADGEN" ]] || die "mercato_loadgen not found at $LOADGEN (build it, or set MERCATO_LOADGEN)"
for tool in psql curl python3; do command -v "$tool" >/dev/null || die "$tool is required"; done
"$LOADGEN" --help | grep -q -- --requests-file || die "$LOADGEN has no --requests-file (rebuild mercato_loadgen)"

if [[ -z "${MERCATO_PG_DSN:-}" || -z "${MERCATO_REDIS_URL:-}" ]]; then
  services_env="$("$REPO_ROOT/scripts/services" env --profile run)"
  [[ -n "${MERCATO_PG_DSN:-}" ]] || MERCATO_PG_DSN="$(sed -n "s/^export MERCATO_PG_DSN='\(.*\)'$/\1/p" <<<"$services_env")"
  [[ -n "${MERCATO_REDIS_URL:-}" ]] || MERCATO_REDIS_URL="$(sed -n "s/^export MERCATO_REDIS_URL='\(.*\)'$/\1/p" <<<"$services_env")"
fi
base_dsn="$MERCATO_PG_DSN"
redis_url="$MERCATO_REDIS_URL"
# dsn_for DB: the DSN with its database replaced; loopback hosts only.
dsn_for() {
  python3 - "$base_dsn" "$1" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
if not (p.hostname or "").startswith("127.") and p.hostname not in ("localhost", "::1"):
    sys.exit(f"issue10_bench: MERCATO_PG_DSN must name a loopback host, got {p.hostname}")
print(u.urlunsplit((p.scheme, p.netloc, "/" + sys.argv[2], p.query, p.fragment)))
PY
}
carts_dsn="$(dsn_for mercato_bench_carts)"
catalog_dsn="$(dsn_for mercato_bench_catalog)"
psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'SELECT 1' >/dev/null 2>&1 \
  || die "PostgreSQL is not reachable at $base_dsn; start it with: scripts/services start --profile run"
redis_hostport="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 6379)' "$redis_url")"
read -r redis_host redis_port <<<"$redis_hostport"
[[ "$redis_host" == 127.* || "$redis_host" == localhost ]] || die "MERCATO_REDIS_URL must name a loopback host"
(exec 3<>"/dev/tcp/$redis_host/$redis_port") 2>/dev/null || die "Redis is not reachable at $redis_url"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- cleanup: whatever was started is stopped, on every exit ---------------------------------------
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mercato-issue10.XXXXXX")"
RUN_ID="$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
REDIS_PREFIX="bench10-$RUN_ID:"
mercatod_pid=""
carts_db_made=0
stop_mercatod() {
  local pid="$mercatod_pid" i
  mercatod_pid=""
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 150; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "mercatod (pid $pid) ignored SIGTERM for 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_mercatod
  if (( carts_db_made )); then
    psql -X -q "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_carts WITH (FORCE)' >/dev/null 2>&1 || true
  fi
  if (( drop_catalog )); then
    psql -X -q "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_catalog WITH (FORCE)' >/dev/null 2>&1 || true
  fi
  if command -v redis-cli >/dev/null; then  # this run's cache keys (the catalog cache's L2 TTL is an hour)
    redis-cli -h "$redis_host" -p "$redis_port" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null \
      | xargs -r -n 500 redis-cli -h "$redis_host" -p "$redis_port" UNLINK >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_mercatod NAME DSN [mercatod args...]: a node on a free port; sets MERCATO_URL. Logging at warn.
# mercatod rejects MERCATO_* variables it does not know: drop the ones of this script and scripts/services.
start_mercatod() {
  local name="$1" dsn="$2" port deadline
  shift 2
  port="$(free_port)"
  MERCATO_URL="http://127.0.0.1:$port"
  MERCATOD_LOG="$TMP_DIR/mercatod-$name.log"
  log "starting mercatod ($name) $* on $MERCATO_URL"
  env -u MERCATO_URL -u MERCATO_LOADGEN -u MERCATO_START_TIMEOUT -u MERCATO_PG_PORT -u MERCATO_REDIS_PORT \
    -u MERCATO_SERVICES_TIMEOUT \
    MERCATO_PG_DSN="$dsn" MERCATO_REDIS_URL="$redis_url" MERCATO_REDIS_KEY_PREFIX="$REDIS_PREFIX" \
    MERCATO_RATE_LIMITS="$rate_limits" MERCATO_RATE_LIMIT_GLOBAL=1000000000/h \
    MERCATO_RATE_LIMIT_ANONYMOUS=1000000000/h MERCATO_RATE_LIMIT_AUTHENTICATED=1000000000/h \
    MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_HTTP_PORT="$port" \
    MERCATO_LOG_LEVEL="${MERCATO_LOG_LEVEL:-warn}" MERCATO_JWT_SECRET="$JWT_SECRET" \
    MERCATO_ADMIN_EMAIL="$BENCH_ADMIN_EMAIL" MERCATO_ADMIN_PASSWORD="$BENCH_ADMIN_PASSWORD" \
    "$MERCATOD" "$@" >"$MERCATOD_LOG" 2>&1 &
  mercatod_pid=$!
  deadline=$((SECONDS + 90))
  until curl -fsS -o /dev/null --max-time 2 "$MERCATO_URL/api/v1/products?limit=1" 2>/dev/null; do
    if ! kill -0 "$mercatod_pid" 2>/dev/null; then
      tail -n 30 "$MERCATOD_LOG" >&2 || true
      mercatod_pid=""
      die "mercatod ($name) exited during start-up (log above)"
    fi
    (( SECONDS < deadline )) || { tail -n 30 "$MERCATOD_LOG" >&2 || true; die "mercatod ($name) did not answer within 90 s"; }
    sleep 0.3
  done
}
# log_problems NAME: warn/error lines the node logged (at warn level, everything it logged)
log_problems() {
  local n
  n="$(grep -c . "$MERCATOD_LOG" 2>/dev/null || true)"
  echo "${n:-0}" >"$TMP_DIR/log_lines_$1"
  if (( ${n:-0} > 0 )); then
    log "mercatod ($1) logged $n line(s) at warn or above; the first ones:"
    head -n 5 "$MERCATOD_LOG" | cut -c1-300 >&2
    cp "$MERCATOD_LOG" "$TMP_DIR/kept-$1.log"
  fi
}

# run NAME BASE MODE_ARGS...: one loadgen run; its JSON line goes to $TMP_DIR/NAME.json
run() {
  local name="$1" base="$2"; shift 2
  log "run $name: $* ($duration s + $warmup s warm-up)"
  cut -d' ' -f1 /proc/loadavg >"$TMP_DIR/$name.load"  # the 1-minute load average just before the run
  local rc=0
  "$LOADGEN" --base "$base" --threads "$threads" --duration "$duration" --warmup "$warmup" --label "$name" --json \
    "$@" >"$TMP_DIR/$name.json" || rc=$?
  (( rc != 2 )) || die "mercato_loadgen rejected its arguments"
  (( rc == 0 )) || log "WARNING: run $name had no successful request"
}
field() {  # NAME KEY
  python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if v is not None else "")' \
    "$TMP_DIR/$1.json" "$2"
}

# One signing key per run (mercatod warns when it makes up its own); MERCATO_JWT_SECRET overrides.
JWT_SECRET="${MERCATO_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')}"
export BENCH_ADMIN_EMAIL="bench-admin@example.com"
BENCH_ADMIN_PASSWORD="bench-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
export BENCH_ADMIN_PASSWORD
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
# Before anything is appended to results.md (http_baseline.sh appends its own section first).
git_rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
if [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]]; then git_rev="$git_rev+dirty"; fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
runs=()

# --- 1. durable add-to-cart ---------------------------------------------------------------------------
if want carts; then
  psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_carts WITH (FORCE)' \
    -c 'CREATE DATABASE mercato_bench_carts' >/dev/null
  carts_db_made=1
  start_mercatod carts "$carts_dsn" --demo
  log "carts: raising stock, opening $carts guest carts, writing the add-to-cart requests"
  python3 "$PREPARE" carts "$MERCATO_URL" "$TMP_DIR/adds.jsonl" --carts "$carts" >"$TMP_DIR/carts_setup.json" \
    || die "preparing the carts failed"
  log "carts: $(cat "$TMP_DIR/carts_setup.json")"
  best=""
  for conns in ${cart_connections//,/ }; do
    runs+=("add_closed_c$conns")
    run "add_closed_c$conns" "$MERCATO_URL" --requests-file "$TMP_DIR/adds.jsonl" --connections "$conns" --closed
    rate="$(field "add_closed_c$conns" rate)"
    if [[ -z "$best" ]] || python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' \
         "$rate" "$(field "$best" rate)"; then
      best="add_closed_c$conns"
    fi
  done
  echo "$best" >"$TMP_DIR/add_best"
  open_rate="${cart_rate:-$(python3 -c 'import sys; print(f"{float(sys.argv[1]) * float(sys.argv[2]):.0f}")' \
               "$(field "$best" rate)" "$rate_fraction")}"
  if [[ "$open_rate" == "0" ]]; then
    log "WARNING: no add-to-cart throughput to derive an open-model rate from; skipping the open run"
  else
    # Enough connections that a slow reply does not hold the schedule back (latency counts from the schedule).
    open_conns="${open_connections:-$(python3 -c 'import sys; print(max(int(x) for x in sys.argv[1].split(",")) * 2)' "$cart_connections")}"
    runs+=(add_open)
    # --timeline: each second's p99 and max on stderr, to tell a steady tail from stalls.
    curl -fsS --max-time 5 "$MERCATO_URL/metrics" >"$TMP_DIR/metrics_before_open.txt" || true
    # The disk's own fdatasync beside the open run (bench/fsync_probe.py, paced at 100/s, on the services'
    # volume): every durable add waits for one WAL flush, so a stall of the disk shows in that second's p99
    # whatever the node does. The flushes over 20 ms are listed by the timeline's second.
    probe_dir="${BENCH_FSYNC_DIR:-$REPO_ROOT/var}" probe_pid="" open_start="$(date +%s.%N)"
    if [[ -d "$probe_dir" ]]; then
      python3 "$REPO_ROOT/bench/fsync_probe.py" --dir "$probe_dir" --seconds "$((duration + warmup))" \
        --interval-ms 10 --json >"$TMP_DIR/open_fsync.json" 2>/dev/null &
      probe_pid=$!
    else
      log "no $probe_dir: the disk is not probed beside the open run (set BENCH_FSYNC_DIR)"
    fi
    run add_open "$MERCATO_URL" --requests-file "$TMP_DIR/adds.jsonl" --connections "$open_conns" --rate "$open_rate" \
      --timeline-ms "$timeline_ms"
    if [[ -n "$probe_pid" ]] && wait "$probe_pid"; then
      python3 - "$TMP_DIR/open_fsync.json" "$open_start" "$warmup" >"$TMP_DIR/open_fsync.txt" <<'PY' \
        || log "WARNING: could not read the fsync probe"
import json, sys
p = json.load(open(sys.argv[1]))
start = float(sys.argv[2]) + float(sys.argv[3])  # the timeline's second 0
slow = ", ".join(f"{ms:.0f} ms in second {int(t - start)}" for t, ms in p["slow"]) or "none"
print(f"fdatasync of 8 kB every 10 ms: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, max {p['max_ms']} ms; "
      f"over 20 ms: {slow}")
PY
      log "open run, the disk beside it: $(cat "$TMP_DIR/open_fsync.txt" 2>/dev/null)"
    fi
    curl -fsS --max-time 5 "$MERCATO_URL/metrics" >"$TMP_DIR/metrics_after_open.txt" || true
    # Where an add spent its time during the open run (warm-up included): mercato_stage_seconds, after - before.
    python3 - "$TMP_DIR/metrics_before_open.txt" "$TMP_DIR/metrics_after_open.txt" >"$TMP_DIR/open_stages.txt" <<'PY' \
      || log "WARNING: could not read the stage histograms"
import re, sys
def read(path):
    out = {}
    for line in open(path):
        m = re.match(r'mercato_stage_seconds_(sum|count|bucket)\{([^}]*)\} (\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        out[(labels["stage"], m.group(1), labels.get("le"))] = float(m.group(3))
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
def delta(key):
    return after.get(key, 0.0) - before.get(key, 0.0)
parts = []
for stage in ("admission", "handler", "writer_queue", "writer_commit"):
    n = delta((stage, "count", None))
    if n <= 0:
        continue
    mean_ms = delta((stage, "sum", None)) / n * 1000
    # p99: the smallest bucket bound holding 99 % of the run's observations
    buckets = sorted((float(k[2]), k) for k in after if k[0] == stage and k[1] == "bucket" and k[2] != "+Inf")
    p99 = next((le * 1000 for le, key in buckets if delta(key) >= 0.99 * n), None)
    parts.append(f"{stage} {mean_ms:.1f}" + (f" (p99 <= {p99:g})" if p99 is not None else " (p99 > top bucket)"))
print("; ".join(parts))
PY
    log "open run, mean ms per stage: $(cat "$TMP_DIR/open_stages.txt" 2>/dev/null)"
  fi
  # One cart after the runs: its lines and units (a sanity check that the adds landed).
  python3 - "$MERCATO_URL" "$TMP_DIR/carts_setup.json" >"$TMP_DIR/sample_cart.json" <<'PY' || log "WARNING: could not read the sample cart"
import json, sys, urllib.request
base, setup = sys.argv[1], json.load(open(sys.argv[2]))
c = setup["sample_cart"]
req = urllib.request.Request(f"{base}/api/v1/carts/{c['id']}", headers={"X-Cart-Token": c["token"]})
doc = json.load(urllib.request.urlopen(req, timeout=10))
print(json.dumps({"lines": len(doc["items"]), "units": sum(i["quantity"] for i in doc["items"]),
                  "version": doc["version"]}))
PY
  log "sample cart after the runs: $(cat "$TMP_DIR/sample_cart.json" 2>/dev/null)"
  stop_mercatod
  log_problems carts
fi

# --- 2. search on the generated catalog ------------------------------------------------------------------
if want search; then
  if (( fresh_catalog )); then
    psql -X -q "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_catalog WITH (FORCE)' >/dev/null
  fi
  if [[ -z "$(psql -X -qtA "$base_dsn" -c "SELECT 1 FROM pg_database WHERE datname = 'mercato_bench_catalog'")" ]]; then
    psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'CREATE DATABASE mercato_bench_catalog' >/dev/null
  fi
  # The node applies the migrations at start; the catalog is generated into that schema if incomplete.
  start_mercatod search "$catalog_dsn"
  have="$(psql -X -qtA "$catalog_dsn" -c "SELECT COUNT(*) FROM products WHERE sku LIKE 'BENCH-%'")"
  if (( have < catalog )); then
    log "search: generating $catalog products in mercato_bench_catalog (has $have)"
    t0=$SECONDS
    psql -X -q -v ON_ERROR_STOP=1 -v products="$catalog" "$catalog_dsn" -f "$REPO_ROOT/bench/seed_catalog.sql" >/dev/null
    log "search: catalog generated in $((SECONDS - t0)) s"
  fi
  catalog_size="$(psql -X -qtA "$catalog_dsn" -c "SELECT COUNT(*) FROM products WHERE status = 'active'")"
  python3 "$PREPARE" search-queries "$TMP_DIR/search_cold.txt" "$TMP_DIR/search_cached.txt" \
    --cold "$cold_queries" --cached "$cached_queries"
  # A query of each set must find products (else the bench would measure empty pages).
  for f in search_cold search_cached; do
    path="$(head -n 1 "$TMP_DIR/$f.txt")"
    n="$(curl -fsS --max-time 10 "$MERCATO_URL$path" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]))')" \
      || die "GET $path failed"
    (( n > 0 )) || die "GET $path found no products: the generated catalog does not match the queries"
    echo "$n" >"$TMP_DIR/$f.hits"
  done
  curl -fsS --max-time 10 -o "$TMP_DIR/search_page.json" "$MERCATO_URL$(head -n 1 "$TMP_DIR/search_cached.txt")"
  search_body_bytes="$(wc -c <"$TMP_DIR/search_page.json")"
  for f in search_cold search_cached; do
    python3 "$PREPARE" cache-metrics "$MERCATO_URL" >"$TMP_DIR/$f.metrics_before"
    runs+=("$f")
    run "$f" "$MERCATO_URL" --urls-file "$TMP_DIR/$f.txt" --connections "$search_connections" --closed
    python3 "$PREPARE" cache-metrics "$MERCATO_URL" >"$TMP_DIR/$f.metrics_after"
  done
  stop_mercatod
  log_problems search
fi

# --- 3. GET /products/{id} against nginx: http_baseline.sh as it is ----------------------------------------
if want baseline; then
  if ! want carts; then
    psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_carts WITH (FORCE)' \
      -c 'CREATE DATABASE mercato_bench_carts' >/dev/null
    carts_db_made=1
  fi
  log "baseline: bench/http_baseline.sh --start (its own mercatod --demo on mercato_bench_carts, and nginx)"
  baseline_args=(--start --duration "$duration" --warmup "$warmup" --threads "$threads")
  (( append )) || baseline_args+=(--no-append)
  baseline_args+=(--note "run by issue10_bench.sh${note:+; $note}")
  # The same Redis key prefix (http_baseline.sh passes MERCATO_* through to its mercatod), so the keys go at the end.
  env MERCATO_PG_DSN="$carts_dsn" MERCATO_REDIS_URL="$redis_url" MERCATO_REDIS_KEY_PREFIX="$REDIS_PREFIX" \
    MERCATO_LOADGEN="$LOADGEN" MERCATOD="$MERCATOD" \
    "$REPO_ROOT/bench/http_baseline.sh" "${baseline_args[@]}" | tee "$TMP_DIR/baseline.out" \
    || log "WARNING: http_baseline.sh failed"
fi

# --- table ----------------------------------------------------------------------------------------------------
cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
nproc_now="$(nproc)"
export BENCH_TMP="$TMP_DIR" BENCH_RUNS="${runs[*]}" BENCH_STARTED="$started_at" BENCH_REV="$git_rev" \
  BENCH_NPROC="$nproc_now" BENCH_CPU="${cpu_model:-unknown}" BENCH_LOAD="$load_before" BENCH_THREADS="$threads" \
  BENCH_DURATION="$duration" BENCH_WARMUP="$warmup" BENCH_NOTE="$note" BENCH_RESULTS="$RESULTS_MD" \
  BENCH_APPEND="$append" BENCH_CARTS="$carts" BENCH_FRACTION="$rate_fraction" \
  BENCH_CATALOG="${catalog_size:-}" BENCH_SEARCH_BODY="${search_body_bytes:-}"
python3 - <<'PY'
import json, os

e = os.environ
tmp = e["BENCH_TMP"]
names = e["BENCH_RUNS"].split()
runs = {n: json.load(open(os.path.join(tmp, n + ".json"))) for n in names}

def read(name, default=None):
    p = os.path.join(tmp, name)
    return open(p).read().strip() if os.path.exists(p) else default

def fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"

def errors_text(r):
    parts = [f"{k}={v}" for k, v in r["errors_by_kind"].items()]
    if r["unsent"]:
        parts.append(f"unsent={r['unsent']}")
    return ", ".join(parts) if parts else "0"

def cache_text(name):
    before, after = read(name + ".metrics_before"), read(name + ".metrics_after")
    if not before or not after:
        return ""
    b, a = json.loads(before), json.loads(after)
    d = {k: a.get(k, 0) - b.get(k, 0) for k in a}
    l1 = d.get("l1_hit", 0) + d.get("l1_miss", 0)
    loads = sum(v for k, v in d.items() if k.startswith("loads"))
    if not l1:
        return "no cache reads counted"
    return (f"L1 hit {100 * d.get('l1_hit', 0) / l1:.1f}%, L2 hit {d.get('l2_hit', 0):.0f} / miss {d.get('l2_miss', 0):.0f}"
            f" / err {d.get('l2_error', 0):.0f}, loads {loads:.0f} (warm-up included)")

best = read("add_best")
setup = json.loads(read("carts_setup.json", "null") or "null")
rows = []  # (benchmark, mode, run, note)
for n in names:
    r = runs[n]
    if n.startswith("add_closed"):
        what = "add-to-cart (durable)"
        extra = f"{r['connections']} conns" + (" — max" if n == best else "")
    elif n == "add_open":
        what = "add-to-cart (durable)"
        share = r["target_rate"] / runs[best]["rate"] if best and runs[best]["rate"] else 0
        extra = f"{share:.0%} of max, {r['connections']} conns"
    elif n == "search_cold":
        what = "search cold (distinct q)"
        extra = cache_text(n)
        reqs = r["requests"]
        # The warm-up also consumed distinct queries: the whole run must stay within the set.
        if r["targets"] < reqs * (1 + float(e["BENCH_WARMUP"]) / float(e["BENCH_DURATION"])) + r["connections"]:
            extra += "; WARNING: the run may have wrapped around the query set (repeats hit the cache)"
    else:
        what = "search cached (repeated q)"
        extra = cache_text(n)
    load = read(n + ".load")
    if load:
        extra = (extra + "; " if extra else "") + f"load {load} before"
    rows.append((what, "closed" if r["mode"] == "closed" else f"open@{r['target_rate']:.0f}", r, extra))

header = ("benchmark", "mode", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "non-2xx / errors", "notes")
table = [header]
for what, mode, r, extra in rows:
    table.append((what, mode, f"{r['rate']:.0f}", fmt(r["p50_ms"]), fmt(r["p90_ms"]), fmt(r["p99_ms"]),
                  fmt(r["p999_ms"]), fmt(r["max_ms"]), errors_text(r), extra))

summary = []
if best:
    summary.append(f"add-to-cart max {runs[best]['rate']:.0f}/s (closed loop, {runs[best]['connections']} connections)")
    if "add_open" in runs:
        o = runs["add_open"]
        summary.append(f"at {o['target_rate']:.0f}/s (open model): p50 {o['p50_ms']:.3f} ms, p99 {o['p99_ms']:.3f} ms, "
                       f"achieved {o['rate']:.0f}/s")
    if setup:
        summary.append(f"{setup['carts']} guest carts (opened at {setup['carts_per_s']}/s), {setup['products']} demo "
                       f"products, {setup['products_per_cart']} per cart; {setup['requests']} distinct requests cycled")
    disk = read("open_fsync.txt")
    if disk:
        summary.append(f"disk beside the open run (negative seconds: warm-up): {disk}")
    sample = read("sample_cart.json")
    if sample:
        summary.append(f"sample cart after the runs: {sample}")
if "search_cold" in runs and "search_cached" in runs:
    c, h = runs["search_cold"], runs["search_cached"]
    summary.append(f"search on {e['BENCH_CATALOG']} products: cold {c['rate']:.0f} q/s, cached {h['rate']:.0f} q/s, "
                   f"cached/cold {h['rate'] / c['rate']:.1f}x" if c["rate"] else "search: cold run had no success")
    summary.append(f"queries: q=\"<adjective> <noun>\"&max_price=N (relevance, 20 per page, ~{e['BENCH_SEARCH_BODY']} "
                   f"bytes); cold: {c['targets']} distinct, cached: {h['targets']} repeated")
# The baseline's own table (printed by http_baseline.sh, which appends its own section too): its rows here as well.
base_out = read("baseline.out")
for line in (base_out or "").splitlines():
    cells = line.split()
    if len(cells) >= 11 and cells[0] in ("nginx", "mercato") and (cells[1] == "closed" or cells[1].startswith("open@")):
        target, mode, rest, ratios = cells[0], cells[1], cells[2:-2], cells[-2:]
        note = "" if target == "nginx" else f"mercato/nginx: req/s {ratios[0]}, p99 {ratios[1]}"
        table.append((f"GET /products/{{id}} ({target})", mode, *rest[:6], " ".join(rest[6:]), note))
for n in ("carts", "search"):
    lines = read(f"log_lines_{n}")
    if lines and lines != "0":
        summary.append(f"mercatod ({n}) logged {lines} line(s) at warn or above")

widths = [max(len(row[i]) for row in table) for i in range(len(header))]
print()
for i, row in enumerate(table):
    print("  ".join(cell.ljust(widths[j]) if j in (0, 1, 9) else cell.rjust(widths[j]) for j, cell in enumerate(row)))
    if i == 0:
        print("  ".join("-" * w for w in widths))
print()
for s in summary:
    print(s)
print(f"{e['BENCH_THREADS']} loadgen thread(s), {e['BENCH_DURATION']} s per run after {e['BENCH_WARMUP']} s warm-up; "
      f"nproc {e['BENCH_NPROC']}; load average before: {e['BENCH_LOAD']}")
for what, mode, r, extra in rows:
    if r["errors"] or r["unsent"]:
        print(f"WARNING: {what} {mode}: {errors_text(r)} — not a clean measurement")

if e["BENCH_APPEND"] == "1" and len(table) > 1:
    with open(e["BENCH_RESULTS"], "a") as out:
        out.write(f"\n## {e['BENCH_STARTED']} — issue 10 benchmarks (issue10_bench.sh) — rev {e['BENCH_REV']}, "
                  f"nproc {e['BENCH_NPROC']}\n\n")
        out.write(f"{e['BENCH_CPU']}; {e['BENCH_THREADS']} loadgen thread(s), {e['BENCH_DURATION']} s + "
                  f"{e['BENCH_WARMUP']} s warm-up per run; load average before {e['BENCH_LOAD']}"
                  + (f"; {e['BENCH_NOTE']}" if e["BENCH_NOTE"] else "") + "\n\n")
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|" + "|".join(["---", "---"] + ["---:"] * 7 + ["---"]) + "|\n")
        for row in table[1:]:
            out.write("| " + " | ".join(row) + " |\n")
        out.write("\n" + "".join(f"- {s}\n" for s in summary))
    print(f"appended to {e['BENCH_RESULTS']}")
PY
