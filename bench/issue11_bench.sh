#!/usr/bin/env bash
# The checkout benchmark of issue 11 (POST /api/v1/carts/{id}/checkout over HTTP, one node), in one bounded run:
#
#   1. spread   every checkout buys 1-3 products drawn from the whole demo catalog (~63 products)
#   2. hot      every checkout buys 1-3 products drawn from only --hot-products (50) of them: contention on
#               those inventory entities
#
# For each: the closed-loop maximum (checkouts/s), then p50/p99 in the open model (--rate) at 70% of it.
# A checkout consumes its cart, so every request of a run has a cart of its own, prepared beforehand by
# bench/issue11_prepare.py (one customer per cart with a token minted from the node's JWT key, 1-3 lines, stock
# raised by admin adjustments so nothing runs out) and its own Idempotency-Key; the requests file has exactly one
# checkout per cart. mercato_loadgen cycles its file, so each file is sized from the expected rate with a margin,
# and afterwards the last cart of the file is read back: still holding its lines means the run never wrapped
# (a wrapped run would resend checkouts that answer as cheap idempotent replays, or 409).
#
#   bench/issue11_bench.sh [options]
#
# Options:
#   --duration S          measured seconds per run (default 10)
#   --warmup S            warm-up seconds per run (default 3)
#   --connections N       connections of the closed-loop runs (default 64)
#   --open-connections N  connections of the open-model runs (default 2 x --connections)
#   --rate-fraction F     open-model rate as a fraction of the closed-loop maximum (default 0.7)
#   --hot-products K      products of the "hot" case (default 50)
#   --pilot-carts N       carts of the short pilot run that sizes the closed run's cart pool (default 1500)
#   --pilot-s S           seconds of the pilot run, after 1 s of warm-up (default 3)
#   --closed-carts N      carts of the closed runs instead of the pilot's estimate (skips the pilot)
#   --max-carts N         cap on one pool (default 60000; preparing takes ~1-2 ms per cart on 2 cores)
#   --threads T           loadgen io threads (default 1)
#   --only LIST           comma-separated subset of spread,hot (default both)
#   --no-append           print the table only; do not append to bench/results.md
#   --note TEXT           added to the results heading line
#
# Needs: a Release build (build/release/app/mercatod and build/release/bench/mercato_loadgen, or $MERCATOD and
# $MERCATO_LOADGEN), PostgreSQL and Redis (scripts/services start --profile run; MERCATO_PG_PORT /
# MERCATO_REDIS_PORT are honoured, or give MERCATO_PG_DSN / MERCATO_REDIS_URL), psql, curl, python3.
# Everything listens on 127.0.0.1 only. Each case runs on a fresh database mercato_bench_checkout (--demo),
# dropped at the end; its mercatod logs to a temp dir and is stopped on every exit (trap), and the run's Redis
# keys (own key prefix) are deleted at the end.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS_MD="$REPO_ROOT/bench/results.md"
PREPARE="$REPO_ROOT/bench/issue11_prepare.py"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
log() { echo "issue11_bench: $*" >&2; }
die() { echo "issue11_bench: $*" >&2; exit 1; }

duration=10
warmup=3
connections=64
open_connections=""
rate_fraction=0.7
hot_products=50
pilot_carts=1500
pilot_s=3
closed_carts=""
max_carts=60000
threads=1
only="spread,hot"
append=1
note=""
while (( $# )); do
  case "$1" in
    --duration) duration="${2:?}"; shift 2 ;;
    --warmup) warmup="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --open-connections) open_connections="${2:?}"; shift 2 ;;
    --rate-fraction) rate_fraction="${2:?}"; shift 2 ;;
    --hot-products) hot_products="${2:?}"; shift 2 ;;
    --pilot-carts) pilot_carts="${2:?}"; shift 2 ;;
    --pilot-s) pilot_s="${2:?}"; shift 2 ;;
    --closed-carts) closed_carts="${2:?}"; shift 2 ;;
    --max-carts) max_carts="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --only) only="${2:?}"; shift 2 ;;
    --no-append) append=0; shift ;;
    --note) note="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 )); }
for v in connections hot_products pilot_carts max_carts threads; do
  is_uint "${!v}" || die "--${v//_/-} needs a positive whole number, got '${!v}'"
done
[[ -z "$open_connections" ]] || is_uint "$open_connections" || die "--open-connections needs a positive whole number"
[[ -z "$closed_carts" ]] || is_uint "$closed_carts" || die "--closed-carts needs a positive whole number"
open_connections="${open_connections:-$(( 2 * connections ))}"
for v in duration warmup pilot_s; do
  [[ "${!v}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--${v//_/-} needs seconds, got '${!v}'"
done
[[ "$rate_fraction" =~ ^0?\.[0-9]+$|^1(\.0*)?$ ]] || die "--rate-fraction needs a number in (0, 1]"
want() { [[ ",$only," == *",$1,"* ]]; }
for part in ${only//,/ }; do
  case "$part" in spread|hot) ;; *) die "--only: unknown part '$part' (spread, hot)" ;; esac
done
calc() { python3 -c "import math; print($1)"; }

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
bench_dsn="$(python3 - "$base_dsn" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
if not (p.hostname or "").startswith("127.") and p.hostname not in ("localhost", "::1"):
    sys.exit(f"issue11_bench: MERCATO_PG_DSN must name a loopback host, got {p.hostname}")
print(u.urlunsplit((p.scheme, p.netloc, "/mercato_bench_checkout", p.query, p.fragment)))
PY
)"
psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'SELECT 1' >/dev/null 2>&1 \
  || die "PostgreSQL is not reachable at $base_dsn; start it with: scripts/services start --profile run"
read -r redis_host redis_port <<<"$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 6379)' "$redis_url")"
[[ "$redis_host" == 127.* || "$redis_host" == localhost ]] || die "MERCATO_REDIS_URL must name a loopback host"
(exec 3<>"/dev/tcp/$redis_host/$redis_port") 2>/dev/null || die "Redis is not reachable at $redis_url"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- cleanup: whatever was started is stopped, on every exit ---------------------------------------
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mercato-issue11.XXXXXX")"
RUN_ID="$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
REDIS_PREFIX="bench11-$RUN_ID:"
mercatod_pid=""
db_made=0
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
  if (( db_made )); then
    psql -X -q "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_checkout WITH (FORCE)' >/dev/null 2>&1 || true
  fi
  if command -v redis-cli >/dev/null; then
    redis-cli -h "$redis_host" -p "$redis_port" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null \
      | xargs -r -n 500 redis-cli -h "$redis_host" -p "$redis_port" UNLINK >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The node's signing key, shared with the prepare script (which mints the customers' access tokens), and a token
# lifetime covering the whole run.
JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
JWT_TTL_S=3600
export BENCH_JWT_SECRET="$JWT_SECRET" BENCH_JWT_TTL_S="$JWT_TTL_S"
export BENCH_ADMIN_EMAIL="bench-admin@example.com"
BENCH_ADMIN_PASSWORD="bench-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
export BENCH_ADMIN_PASSWORD

# start_mercatod NAME: a node on a free port on a fresh mercato_bench_checkout (--demo); sets MERCATO_URL.
# mercatod rejects MERCATO_* variables it does not know: drop the ones of this script and scripts/services.
start_mercatod() {
  local name="$1" port deadline
  psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_checkout WITH (FORCE)' \
    -c 'CREATE DATABASE mercato_bench_checkout' >/dev/null
  db_made=1
  port="$(free_port)"
  MERCATO_URL="http://127.0.0.1:$port"
  MERCATOD_LOG="$TMP_DIR/mercatod-$name.log"
  log "starting mercatod ($name) --demo on $MERCATO_URL"
  env -u MERCATO_URL -u MERCATO_LOADGEN -u MERCATO_START_TIMEOUT -u MERCATO_PG_PORT -u MERCATO_REDIS_PORT \
    -u MERCATO_SERVICES_TIMEOUT \
    MERCATO_PG_DSN="$bench_dsn" MERCATO_REDIS_URL="$redis_url" MERCATO_REDIS_KEY_PREFIX="$REDIS_PREFIX$name:" \
    MERCATO_RATE_LIMITS=off MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_HTTP_PORT="$port" \
    MERCATO_LOG_LEVEL="${MERCATO_LOG_LEVEL:-warn}" MERCATO_JWT_SECRET="$JWT_SECRET" \
    MERCATO_ACCESS_TOKEN_TTL_S="$JWT_TTL_S" \
    MERCATO_ADMIN_EMAIL="$BENCH_ADMIN_EMAIL" MERCATO_ADMIN_PASSWORD="$BENCH_ADMIN_PASSWORD" \
    "$MERCATOD" --demo >"$MERCATOD_LOG" 2>&1 &
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
    cut -c1-300 "$MERCATOD_LOG" | sed -E 's/[0-9a-f]{8}-[0-9a-f-]{27}/<uuid>/g; s/[0-9]+/N/g' | sort | uniq -c \
      | sort -rn | head -n 5 >"$TMP_DIR/log_kinds_$1"
  fi
}

# prepare NAME CARTS PRODUCTS: CARTS carts ready to check out, requests in $TMP_DIR/NAME.jsonl, facts in NAME.setup
prepare() {
  local name="$1" carts="$2" products="$3"
  log "$name: preparing $carts carts ($([[ "$products" == 0 ]] && echo "all products" || echo "$products products"))"
  python3 "$PREPARE" checkouts "$MERCATO_URL" "$TMP_DIR/$name.jsonl" --carts "$carts" --products "$products" \
    --seed "$RANDOM" --key-prefix "bench11-$RUN_ID-$name" >"$TMP_DIR/$name.setup" || die "preparing $name failed"
  log "$name: $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d.pop("first_cart"); d.pop("last_cart"); print(json.dumps(d))' "$TMP_DIR/$name.setup")"
}
paid_orders() { psql -X -qtA "$bench_dsn" -c "SELECT COUNT(*) FROM orders WHERE status = 'paid'"; }

# run NAME WARMUP DURATION MODE_ARGS...: one loadgen run over $TMP_DIR/NAME.jsonl; JSON in NAME.json; then the
# checks: paid orders made during the run (warm-up included) and whether the file's last cart is untouched.
run() {
  local name="$1" w="$2" d="$3" before rc=0
  shift 3
  before="$(paid_orders)"
  log "run $name: $* ($d s + $w s warm-up, $(wc -l <"$TMP_DIR/$name.jsonl") carts)"
  cut -d' ' -f1 /proc/loadavg >"$TMP_DIR/$name.load"  # the 1-minute load average just before the run
  "$LOADGEN" --base "$MERCATO_URL" --threads "$threads" --duration "$d" --warmup "$w" --label "$name" --json \
    --requests-file "$TMP_DIR/$name.jsonl" "$@" >"$TMP_DIR/$name.json" || rc=$?
  (( rc != 2 )) || die "mercato_loadgen rejected its arguments"
  (( rc == 0 )) || log "WARNING: run $name had no successful request"
  echo $(( $(paid_orders) - before )) >"$TMP_DIR/$name.paid"
  python3 - "$TMP_DIR/$name.setup" "$MERCATO_URL" "$PREPARE" >"$TMP_DIR/$name.last" <<'PY'
import json, subprocess, sys
setup, base, prepare = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
c = setup["last_cart"]
print(subprocess.run([sys.executable, prepare, "cart-state", base, c["id"], c["token"]], check=True,
                     capture_output=True, text=True).stdout.strip())
PY
  log "run $name: $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("%.1f/s ok, p50 %s ms, p99 %s ms, errors %s, unsent %s" % (r["rate"], r["p50_ms"], r["p99_ms"], r["errors_by_kind"], r["unsent"]))' "$TMP_DIR/$name.json"); paid orders $(cat "$TMP_DIR/$name.paid"); last cart $(cat "$TMP_DIR/$name.last")"
}
field() {  # NAME KEY
  python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if v is not None else "")' \
    "$TMP_DIR/$1.json" "$2"
}
wrapped() {  # NAME: true if the last cart of NAME's file was checked out (the run went past the file's end)
  python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(0 if s["lines"] == 0 or s["status"] != "open" else 1)' \
    "$TMP_DIR/$1.last"
}

started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
git_rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
if [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]]; then git_rev="$git_rev+dirty"; fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
runs=()

# case NAME PRODUCTS (0: all)
bench_case() {
  local name="$1" products="$2" pool estimate rate open_rate
  start_mercatod "$name"
  # The closed run's pool: from a short pilot's rate (x1.5, + 200), unless --closed-carts is given.
  if [[ -n "$closed_carts" ]]; then
    pool="$closed_carts"
  else
    prepare "${name}_pilot" "$pilot_carts" "$products"
    run "${name}_pilot" 1 "$pilot_s" --connections "$connections" --closed
    estimate="$(field "${name}_pilot" rate)"
    if wrapped "${name}_pilot"; then  # replays inflate the rate: take what the file could hold, twice over
      log "$name: the pilot went past its $pilot_carts carts; sizing from that"
      estimate="$(calc "2 * $pilot_carts / (1 + $pilot_s)")"
    fi
    pool="$(calc "math.ceil($estimate * ($warmup + $duration + 1) * 1.5) + 200")"
  fi
  if (( pool > max_carts )); then
    log "WARNING: $name: the closed run would need $pool carts; capped at --max-carts $max_carts"
    pool="$max_carts"
  fi
  prepare "${name}_closed" "$pool" "$products"
  runs+=("${name}_closed")
  run "${name}_closed" "$warmup" "$duration" --connections "$connections" --closed
  rate="$(field "${name}_closed" rate)"
  open_rate="$(calc "max(1, round($rate * $rate_fraction))")"
  # The open model sends at most rate x (warm-up + duration) requests: 5% + 100 spare carts.
  prepare "${name}_open" "$(calc "math.ceil($open_rate * ($warmup + $duration) * 1.05) + 100")" "$products"
  runs+=("${name}_open")
  run "${name}_open" "$warmup" "$duration" --connections "$open_connections" --rate "$open_rate"
  stop_mercatod
  log_problems "$name"
}

want spread && bench_case spread 0
want hot && bench_case hot "$hot_products"

# --- table ----------------------------------------------------------------------------------------------------
cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
export BENCH_TMP="$TMP_DIR" BENCH_RUNS="${runs[*]}" BENCH_STARTED="$started_at" BENCH_REV="$git_rev" \
  BENCH_NPROC="$(nproc)" BENCH_CPU="${cpu_model:-unknown}" BENCH_LOAD="$load_before" BENCH_THREADS="$threads" \
  BENCH_DURATION="$duration" BENCH_WARMUP="$warmup" BENCH_NOTE="$note" BENCH_RESULTS="$RESULTS_MD" \
  BENCH_APPEND="$append" BENCH_FRACTION="$rate_fraction" BENCH_HOT="$hot_products"
python3 - <<'PY'
import json, os

e = os.environ
tmp = e["BENCH_TMP"]
names = e["BENCH_RUNS"].split()

def read(name, default=None):
    p = os.path.join(tmp, name)
    return open(p).read().strip() if os.path.exists(p) else default

runs = {n: json.loads(read(n + ".json")) for n in names}
setups = {n: json.loads(read(n + ".setup")) for n in names}

def fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"

def errors_text(r):
    parts = [f"{k}={v}" for k, v in r["errors_by_kind"].items()]
    if r["unsent"]:
        parts.append(f"unsent={r['unsent']}")
    return ", ".join(parts) if parts else "0"

def wrapped(n):
    s = json.loads(read(n + ".last"))
    return s["lines"] == 0 or s["status"] != "open"

header = ("checkout", "mode", "checkouts/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "non-2xx / errors",
          "notes")
table = [header]
problems = []
for n in names:
    r, s = runs[n], setups[n]
    case = n.rsplit("_", 1)[0]
    what = (f"spread ({s['products']} products)" if case == "spread" else f"hot ({s['products']} products)")
    mode = "closed" if r["mode"] == "closed" else f"open@{r['target_rate']:.0f}"
    notes = (f"{r['connections']} conns; {s['carts']} carts ({s['lines_per_cart']} lines avg), "
             f"{read(n + '.paid')} paid orders incl. warm-up; load {read(n + '.load')}")
    if wrapped(n):
        notes += "; WRAPPED past the last cart (replays/409s)"
        problems.append(f"{what} {mode}: the run went past the end of its requests file — not a clean measurement")
    if r["errors"] or r["unsent"]:
        problems.append(f"{what} {mode}: {errors_text(r)} — not a clean measurement")
    table.append((what, mode, f"{r['rate']:.1f}", fmt(r["p50_ms"]), fmt(r["p90_ms"]), fmt(r["p99_ms"]),
                  fmt(r["p999_ms"]), fmt(r["max_ms"]), errors_text(r), notes))

summary = []
for case in ("spread", "hot"):
    c, o = runs.get(case + "_closed"), runs.get(case + "_open")
    if c:
        line = f"{case} ({setups[case + '_closed']['products']} products): max {c['rate']:.1f} checkouts/s (closed loop, " \
               f"{c['connections']} connections)"
        if o:
            line += (f"; at {o['target_rate']:.0f}/s = {e['BENCH_FRACTION']} of it (open model, {o['connections']} "
                     f"connections): p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms, achieved {o['rate']:.1f}/s")
        summary.append(line)
    lines = read(f"log_lines_{case}")
    if lines and lines != "0":
        kinds = read(f"log_kinds_{case}", "")
        summary.append(f"mercatod ({case}) logged {lines} line(s) at warn or above; most frequent: "
                       + "; ".join(" ".join(k.split()) for k in kinds.splitlines()[:3]))

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
for p in problems:
    print("WARNING: " + p)

if e["BENCH_APPEND"] == "1" and len(table) > 1:
    with open(e["BENCH_RESULTS"], "a") as out:
        out.write(f"\n## {e['BENCH_STARTED']} — issue 11 checkout (issue11_bench.sh) — rev {e['BENCH_REV']}, "
                  f"nproc {e['BENCH_NPROC']}\n\n")
        out.write(f"{e['BENCH_CPU']}; one node; {e['BENCH_THREADS']} loadgen thread(s), {e['BENCH_DURATION']} s + "
                  f"{e['BENCH_WARMUP']} s warm-up per run; open model at {e['BENCH_FRACTION']} of the closed-loop "
                  f"maximum; load average before {e['BENCH_LOAD']}"
                  + (f"; {e['BENCH_NOTE']}" if e["BENCH_NOTE"] else "") + "\n\n")
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|" + "|".join(["---", "---"] + ["---:"] * 7 + ["---"]) + "|\n")
        for row in table[1:]:
            out.write("| " + " | ".join(row) + " |\n")
        out.write("\n" + "".join(f"- {s}\n" for s in summary + ["WARNING: " + p for p in problems]))
    print(f"appended to {e['BENCH_RESULTS']}")
PY
