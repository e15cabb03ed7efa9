#!/usr/bin/env bash
# HTTP baseline: mercato's `GET /api/v1/products/{id}` against nginx serving a same-size static JSON body,
# on the same machine, with the same load generator, in one run. See bench/README.md.
#
#   bench/http_baseline.sh [options]
#
#   --start              start a private mercatod (binary: $MERCATOD, default build/release/app/mercatod) with
#                        --demo, MERCATO_RATE_LIMITS=off, a free port and the `run` services
#                        (scripts/services start --profile run); stopped at the end
#   --nginx-only         measure nginx only (no mercato needed): body of --body-bytes bytes
#   --body-bytes N       body size for --nginx-only (default 1200)
#   --duration S         measured seconds per run (default 10)
#   --warmup S           unmeasured seconds before each run (default 2)
#   --connections N      keep-alive connections (default 32)
#   --threads T          load generator io threads (default 1: one core for it, one for the server)
#   --rate R             open-model rate (req/s) for the latency comparison; default: half the lower of the
#                        two closed-loop rates, so both servers can sustain it
#   --no-open            skip the open-model runs
#   --no-append          do not append to bench/results.md
#   --note TEXT          free text stored with the results
#   -h, --help
#
# Environment: MERCATO_URL (default http://127.0.0.1:8080; loopback only), MERCATOD, MERCATO_LOADGEN
# (default: the first built mercato_loadgen under build-bench/, build/release/, build/*/),
# MERCATO_PG_DSN / MERCATO_REDIS_URL (with --start; default: the `run` profile of scripts/services),
# MERCATO_START_TIMEOUT (seconds to wait for a started mercatod, default 60).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_MD="$BENCH_DIR/results.md"

die() { echo "http_baseline: $*" >&2; exit 1; }
log() { echo "http_baseline: $*" >&2; }
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

# --- arguments --------------------------------------------------------------------------------
start_mercato=0
nginx_only=0
body_bytes=1200
duration=10
warmup=2
connections=32
threads=1
open_rate=""
run_open=1
append=1
note=""
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while (( $# )); do
  case "$1" in
    --start) start_mercato=1; shift ;;
    --nginx-only) nginx_only=1; shift ;;
    --body-bytes) need "$@"; body_bytes="$2"; shift 2 ;;
    --duration) need "$@"; duration="$2"; shift 2 ;;
    --warmup) need "$@"; warmup="$2"; shift 2 ;;
    --connections) need "$@"; connections="$2"; shift 2 ;;
    --threads) need "$@"; threads="$2"; shift 2 ;;
    --rate) need "$@"; open_rate="$2"; shift 2 ;;
    --no-open) run_open=0; shift ;;
    --no-append) append=0; shift ;;
    --note) need "$@"; note="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
is_number() { [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }
is_number "$duration" || die "--duration must be a number of seconds"
is_number "$warmup" || die "--warmup must be a number of seconds"
[[ "$connections" =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer"
[[ "$body_bytes" =~ ^[1-9][0-9]*$ ]] || die "--body-bytes must be a positive integer"
[[ -z "$open_rate" ]] || is_number "$open_rate" || die "--rate must be a number (req/s)"
(( start_mercato && nginx_only )) && die "--start and --nginx-only exclude each other"

# --- tools ------------------------------------------------------------------------------------
NGINX=/usr/sbin/nginx
[[ -x "$NGINX" ]] || die "nginx not found at $NGINX (Debian package nginx-light)"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"

LOADGEN="${MERCATO_LOADGEN:-}"
if [[ -z "$LOADGEN" ]]; then
  for candidate in "$REPO_ROOT/build-bench/bench/mercato_loadgen" "$REPO_ROOT/build/release/bench/mercato_loadgen" \
                   "$REPO_ROOT"/build/*/bench/mercato_loadgen; do
    if [[ -x "$candidate" ]]; then LOADGEN="$candidate"; break; fi
  done
fi
[[ -n "$LOADGEN" && -x "$LOADGEN" ]] || die "mercato_loadgen not built; build it with
  cmake -S $REPO_ROOT -B $REPO_ROOT/build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DMERCATO_BUILD_TESTS=OFF
  cmake --build $REPO_ROOT/build-bench --target mercato_loadgen
or point MERCATO_LOADGEN at the binary"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- cleanup: whatever was started is stopped, on every exit -----------------------------------
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mercato-bench.XXXXXX")"
nginx_pid=""
mercatod_pid=""
stop_process() {  # pid name
  local pid="$1" name="$2" i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 100; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_process "$nginx_pid" nginx
  stop_process "$mercatod_pid" mercatod
  rm -rf "$TMP_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- mercato: started here, or the one at MERCATO_URL ------------------------------------------
MERCATO_URL="${MERCATO_URL:-http://127.0.0.1:8080}"
MERCATO_URL="${MERCATO_URL%/}"
if (( ! nginx_only )); then
  if (( start_mercato )); then
    MERCATOD="${MERCATOD:-$REPO_ROOT/build/release/app/mercatod}"
    [[ -x "$MERCATOD" ]] || die "mercatod not found at $MERCATOD (build it, or set MERCATOD)"
    pg_dsn="${MERCATO_PG_DSN:-postgresql://mercato@127.0.0.1:55432/mercato}"
    redis_url="${MERCATO_REDIS_URL:-redis://127.0.0.1:56379}"
    pg_hostport="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 5432)' "$pg_dsn")"
    read -r pg_host pg_port <<<"$pg_hostport"
    (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null \
      || die "PostgreSQL is not reachable at $pg_host:$pg_port; start it with: scripts/services start --profile run"
    port="$(free_port)"
    MERCATO_URL="http://127.0.0.1:$port"
    log "starting $MERCATOD --demo on $MERCATO_URL (log: $TMP_DIR/mercatod.log)"
    # mercatod rejects MERCATO_* variables it does not know: drop this script's and scripts/services' own.
    # Logging at warn, like nginx's access_log off; MERCATO_LOG_LEVEL overrides.
    env -u MERCATO_URL -u MERCATO_LOADGEN -u MERCATO_START_TIMEOUT -u MERCATO_PG_PORT -u MERCATO_REDIS_PORT \
      -u MERCATO_SERVICES_TIMEOUT \
      MERCATO_PG_DSN="$pg_dsn" MERCATO_REDIS_URL="$redis_url" MERCATO_RATE_LIMITS=off \
      MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_HTTP_PORT="$port" MERCATO_LOG_LEVEL="${MERCATO_LOG_LEVEL:-warn}" \
      "$MERCATOD" --demo >"$TMP_DIR/mercatod.log" 2>&1 &
    mercatod_pid=$!
    deadline=$((SECONDS + ${MERCATO_START_TIMEOUT:-60}))
    until curl -fsS -o /dev/null --max-time 2 "$MERCATO_URL/api/v1/products?limit=1" 2>/dev/null; do
      if ! kill -0 "$mercatod_pid" 2>/dev/null; then
        tail -n 30 "$TMP_DIR/mercatod.log" >&2 || true
        mercatod_pid=""
        die "mercatod exited during start-up (log above)"
      fi
      if (( SECONDS >= deadline )); then
        tail -n 30 "$TMP_DIR/mercatod.log" >&2 || true
        die "mercatod did not answer GET /api/v1/products within ${MERCATO_START_TIMEOUT:-60} s (log above)"
      fi
      sleep 0.3
    done
  fi

  [[ "$MERCATO_URL" =~ ^http://(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|localhost|\[::1\])(:[0-9]{1,5})?$ ]] \
    || die "MERCATO_URL must be http://<loopback>[:port] with no path (127.0.0.0/8, localhost or [::1]); got '$MERCATO_URL'"

  # Product ids to spread the load over, and one product's body (nginx serves a copy of it: same size).
  if ! curl -fsS --max-time 5 -o "$TMP_DIR/products.json" "$MERCATO_URL/api/v1/products?limit=100" \
        2>"$TMP_DIR/curl.err"; then
    die "mercato is not reachable at $MERCATO_URL: $(tr -d '\n' <"$TMP_DIR/curl.err")
  start it (scripts/run, or build/release/app/mercatod --demo with MERCATO_RATE_LIMITS=off), set MERCATO_URL,
  or let this script start one with --start; --nginx-only measures nginx alone"
  fi
  python3 - "$TMP_DIR/products.json" "$TMP_DIR/paths.txt" <<'PY' || die "unexpected reply to GET $MERCATO_URL/api/v1/products?limit=100"
import json, sys, urllib.parse
try:
    doc = json.load(open(sys.argv[1]))
    ids = [str(p["id"]) for p in doc["data"] if isinstance(p, dict) and p.get("id")]
except Exception as e:  # noqa: BLE001 - any shape problem is reported the same way
    sys.exit(f"http_baseline: cannot read product ids: {e}")
if not ids:
    sys.exit("http_baseline: the catalog is empty (start mercatod with --demo, or add products)")
with open(sys.argv[2], "w") as out:
    for i in ids:
        out.write("/api/v1/products/" + urllib.parse.quote(i, safe="") + "\n")
PY
  product_count="$(wc -l <"$TMP_DIR/paths.txt")"
  first_path="$(head -n 1 "$TMP_DIR/paths.txt")"
  curl -fsS --max-time 5 -o "$TMP_DIR/product.json" "$MERCATO_URL$first_path" \
    || die "GET $MERCATO_URL$first_path failed"
  body_bytes="$(wc -c <"$TMP_DIR/product.json")"
  log "mercato at $MERCATO_URL: $product_count product ids; product body $body_bytes bytes"
fi

# --- nginx: private config, one worker, same body ----------------------------------------------
mkdir -p "$TMP_DIR/www"
if (( nginx_only )); then
  python3 - "$body_bytes" "$TMP_DIR/www/product.json" <<'PY'
import sys
n = int(sys.argv[1])
head, tail = '{"id":"00000000-0000-0000-0000-000000000000","pad":"', '"}'
if n < len(head) + len(tail):
    sys.exit("http_baseline: --body-bytes is too small for a JSON object")
open(sys.argv[2], "w").write(head + "x" * (n - len(head) - len(tail)) + tail)
PY
else
  cp "$TMP_DIR/product.json" "$TMP_DIR/www/product.json"
fi
# nginx's worker drops root privileges: let it read the body.
chmod 755 "$TMP_DIR" "$TMP_DIR/www"
chmod 644 "$TMP_DIR/www/product.json"

nginx_port="$(free_port)"
cat >"$TMP_DIR/nginx.conf" <<EOF
# Written by bench/http_baseline.sh; lives only for one run.
worker_processes 1;
daemon off;
pid $TMP_DIR/nginx.pid;
error_log $TMP_DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP_DIR/nginx-body;
  proxy_temp_path $TMP_DIR/nginx-proxy;
  fastcgi_temp_path $TMP_DIR/nginx-fastcgi;
  uwsgi_temp_path $TMP_DIR/nginx-uwsgi;
  scgi_temp_path $TMP_DIR/nginx-scgi;
  types { }
  default_type application/json;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  sendfile on;
  tcp_nodelay on;
  open_file_cache max=16 inactive=60s;
  server {
    listen 127.0.0.1:$nginx_port;
    root $TMP_DIR/www;
    location / { try_files /product.json =404; }
  }
}
EOF
"$NGINX" -p "$TMP_DIR" -c "$TMP_DIR/nginx.conf" -e "$TMP_DIR/nginx-error.log" -t >"$TMP_DIR/nginx-test.log" 2>&1 \
  || { cat "$TMP_DIR/nginx-test.log" >&2; die "nginx rejected the generated config"; }
"$NGINX" -p "$TMP_DIR" -c "$TMP_DIR/nginx.conf" -e "$TMP_DIR/nginx-error.log" >"$TMP_DIR/nginx.out" 2>&1 &
nginx_pid=$!
NGINX_URL="http://127.0.0.1:$nginx_port"
deadline=$((SECONDS + 10))
until curl -fsS -o "$TMP_DIR/nginx-check.json" --max-time 2 "$NGINX_URL/api/v1/products/check" 2>/dev/null; do
  kill -0 "$nginx_pid" 2>/dev/null || { cat "$TMP_DIR/nginx.out" "$TMP_DIR/nginx-error.log" >&2 2>/dev/null; nginx_pid=""; die "nginx exited at start-up"; }
  (( SECONDS < deadline )) || die "nginx did not answer on $NGINX_URL within 10 s"
  sleep 0.1
done
[[ "$(wc -c <"$TMP_DIR/nginx-check.json")" == "$body_bytes" ]] || die "nginx serves a body of the wrong size"
log "nginx (1 worker) on $NGINX_URL serving a $body_bytes-byte JSON body"

# nginx gets the same paths as mercato, so request lines and Host headers are alike.
if (( nginx_only )); then
  printf '/api/v1/products/00000000-0000-0000-0000-%012d\n' $(seq 1 100) >"$TMP_DIR/paths.txt"
fi

# --- runs -------------------------------------------------------------------------------------
# run NAME BASE_URL MODE_ARGS... : one loadgen run; its JSON line goes to $TMP_DIR/NAME.json
run() {
  local name="$1" base="$2"; shift 2
  log "run $name: $* ($duration s + $warmup s warm-up)"
  local rc=0
  "$LOADGEN" --base "$base" --urls-file "$TMP_DIR/paths.txt" --connections "$connections" --threads "$threads" \
    --duration "$duration" --warmup "$warmup" --label "$name" --json "$@" >"$TMP_DIR/$name.json" || rc=$?
  if (( rc == 2 )); then die "mercato_loadgen rejected its arguments"; fi
  if (( rc != 0 )); then log "WARNING: run $name had no successful request"; fi
}
field() {  # NAME KEY
  python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if v is not None else "")' \
    "$TMP_DIR/$1.json" "$2"
}

started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
runs=(nginx_closed)
run nginx_closed "$NGINX_URL" --closed
if (( ! nginx_only )); then
  runs+=(mercato_closed)
  run mercato_closed "$MERCATO_URL" --closed
fi
if (( run_open )); then
  if [[ -z "$open_rate" ]]; then
    open_rate="$(python3 -c 'import sys; r = [float(x) for x in sys.argv[1:] if x and float(x) > 0]; print(f"{0.5 * min(r):.0f}" if r else "")' \
                 "$(field nginx_closed rate)" "$( (( nginx_only )) || field mercato_closed rate)")"
  fi
  if [[ -z "$open_rate" || "$open_rate" == "0" ]]; then
    log "WARNING: no closed-loop rate to derive an open-model rate from; skipping the open-model runs"
    run_open=0
  else
    runs+=(nginx_open)
    run nginx_open "$NGINX_URL" --rate "$open_rate"
    if (( ! nginx_only )); then
      runs+=(mercato_open)
      run mercato_open "$MERCATO_URL" --rate "$open_rate"
    fi
  fi
fi

# --- table ------------------------------------------------------------------------------------
git_rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
if [[ -n "$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | head -n 1)" ]]; then git_rev="$git_rev+dirty"; fi
cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
export BENCH_TMP="$TMP_DIR" BENCH_RUNS="${runs[*]}" BENCH_STARTED="$started_at" BENCH_REV="$git_rev" \
  BENCH_NPROC="$(nproc)" BENCH_CPU="${cpu_model:-unknown}" BENCH_LOAD="$load_before" BENCH_BODY="$body_bytes" \
  BENCH_CONNS="$connections" BENCH_THREADS="$threads" BENCH_DURATION="$duration" BENCH_WARMUP="$warmup" \
  BENCH_NOTE="$note" BENCH_RESULTS="$RESULTS_MD" BENCH_APPEND="$append"
python3 - <<'PY'
import json, os

tmp = os.environ["BENCH_TMP"]
runs = {name: json.load(open(os.path.join(tmp, name + ".json"))) for name in os.environ["BENCH_RUNS"].split()}

def ratio(a, b, key):
    if a is None or b is None or not b[key]:
        return None
    return a[key] / b[key]

def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"

rows = []  # (target, mode, run, ratio_rate, ratio_p99)
for mode in ("closed", "open"):
    n, m = runs.get(f"nginx_{mode}"), runs.get(f"mercato_{mode}")
    for target, r in (("nginx", n), ("mercato", m)):
        if r is None:
            continue
        is_m = target == "mercato"
        rows.append((target, mode, r, ratio(m, n, "rate") if is_m else None, ratio(m, n, "p99_ms") if is_m else None))

def mode_text(r):
    return "closed" if r["mode"] == "closed" else f"open@{r['target_rate']:.0f}"

def errors_text(r):
    parts = [f"{k}={v}" for k, v in r["errors_by_kind"].items()]
    if r["unsent"]:
        parts.append(f"unsent={r['unsent']}")
    return ", ".join(parts) if parts else "0"

header = ("target", "mode", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors",
          "mercato/nginx req/s", "mercato/nginx p99")
table = [header]
for target, mode, r, rr, rp in rows:
    table.append((target, mode_text(r), f"{r['rate']:.0f}", fmt(r["p50_ms"], 3), fmt(r["p90_ms"], 3),
                  fmt(r["p99_ms"], 3), fmt(r["p999_ms"], 3), fmt(r["max_ms"], 3), errors_text(r),
                  fmt(rr), "—" if rp is None else f"{rp:.2f}x"))
widths = [max(len(row[i]) for row in table) for i in range(len(header))]
print()
for i, row in enumerate(table):
    print("  ".join(cell.ljust(widths[j]) if j < 2 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
    if i == 0:
        print("  ".join("-" * w for w in widths))
e = os.environ
print(f"\n{e['BENCH_CONNS']} connections, {e['BENCH_THREADS']} loadgen thread(s), {e['BENCH_DURATION']} s per run "
      f"after {e['BENCH_WARMUP']} s warm-up; body {e['BENCH_BODY']} bytes; nproc {e['BENCH_NPROC']}; "
      f"load average before: {e['BENCH_LOAD']}")
for target, mode, r, rr, rp in rows:
    if r["errors"] or r["unsent"]:
        print(f"WARNING: {target} {mode}: {errors_text(r)} — the figures of this row are not a clean measurement")

if e["BENCH_APPEND"] == "1":
    path = e["BENCH_RESULTS"]
    new_file = not os.path.exists(path)
    with open(path, "a") as out:
        if new_file:
            out.write("# HTTP baseline results\n\nRows appended by `bench/http_baseline.sh`; columns are explained in "
                      "`bench/README.md`.\n")
        out.write(f"\n## {e['BENCH_STARTED']} — rev {e['BENCH_REV']}, nproc {e['BENCH_NPROC']}\n\n")
        out.write(f"{e['BENCH_CPU']}; {e['BENCH_CONNS']} connections, {e['BENCH_THREADS']} loadgen thread(s), "
                  f"{e['BENCH_DURATION']} s + {e['BENCH_WARMUP']} s warm-up per run; body {e['BENCH_BODY']} bytes; "
                  f"load average before {e['BENCH_LOAD']}"
                  + (f"; {e['BENCH_NOTE']}" if e["BENCH_NOTE"] else "") + "\n\n")
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|\n")
        for row in table[1:]:
            out.write("| " + " | ".join(row) + " |\n")
    print(f"appended to {path}")
PY
