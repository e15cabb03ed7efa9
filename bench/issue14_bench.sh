#!/usr/bin/env bash
# Issue 14's GET comparison in one go: nginx, mercato with its defaults (rate limits on, budgets raised so that
# nothing is refused, logging at info: the access log is written) and mercato with rate limits off, each mercato
# run against nginx in the same http_baseline.sh run (GET /api/v1/products/{id}, same body size, same load), plus
# the node's resident memory idle and under that load. Appends a dated summary table to bench/results.md
# (http_baseline.sh appends its own detailed tables too).
#
#   bench/issue14_bench.sh [--connections N] [--duration S] [--warmup S] [--no-append] [--note TEXT]
#
# Needs what http_baseline.sh needs (nginx, curl, python3, a built mercato_loadgen) and a mercatod: $MERCATOD,
# default build/release/app/mercatod. PostgreSQL and Redis: MERCATO_PG_DSN / MERCATO_REDIS_URL, else the
# `run` profile of scripts/services (MERCATO_PG_PORT / MERCATO_REDIS_PORT honoured). The other rows of the
# issue's table come from bench/issue10_bench.sh --only carts (durable add-to-cart) and mercato_entity_bench
# --only 1,3 (snapshot writer against raw libpqxx; memory per cart).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_MD="$BENCH_DIR/results.md"

die() { echo "issue14_bench: $*" >&2; exit 1; }
log() { echo "issue14_bench: $*" >&2; }

connections=64
duration=10
warmup=2
append=1
note=""
while (( $# )); do
  case "$1" in
    --connections) connections="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --no-append) append=0; shift ;;
    --note) note="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

MERCATOD="${MERCATOD:-$REPO_ROOT/build/release/app/mercatod}"
[[ -x "$MERCATOD" ]] || die "mercatod not found at $MERCATOD (build it, or set MERCATOD)"
pg_dsn="${MERCATO_PG_DSN:-postgresql://mercato@127.0.0.1:${MERCATO_PG_PORT:-55432}/mercato}"
redis_url="${MERCATO_REDIS_URL:-redis://127.0.0.1:${MERCATO_REDIS_PORT:-56379}}"

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mercato-issue14.XXXXXX")"
node_pid=""
stop_node() {
  [[ -n "$node_pid" ]] || return 0
  kill -TERM "$node_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$node_pid" 2>/dev/null || true
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
}
trap 'stop_node; rm -rf "$TMP_DIR"' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null || echo 0; }

started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
summary="$TMP_DIR/summary.tsv"
: >"$summary"

for mode in defaults limits-off; do
  port="$(free_port)"
  url="http://127.0.0.1:$port"
  limits=on
  [[ "$mode" == limits-off ]] && limits=off
  log "$mode: starting $MERCATOD --demo on $url (rate limits $limits; log: $TMP_DIR/$mode.log)"
  # Budgets of 1e9 per hour: every request is charged and checked, none is refused.
  env -u MERCATO_PG_PORT -u MERCATO_REDIS_PORT -u MERCATO_URL -u MERCATO_LOADGEN \
    MERCATO_PG_DSN="$pg_dsn" MERCATO_REDIS_URL="$redis_url" MERCATO_RATE_LIMITS="$limits" \
    MERCATO_RATE_LIMIT_GLOBAL=1000000000/h MERCATO_RATE_LIMIT_ANONYMOUS=1000000000/h \
    MERCATO_RATE_LIMIT_AUTHENTICATED=1000000000/h \
    MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_HTTP_PORT="$port" \
    "$MERCATOD" --demo >"$TMP_DIR/$mode.log" 2>&1 &
  node_pid=$!
  deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null --max-time 2 "$url/api/v1/products?limit=1" 2>/dev/null; do
    kill -0 "$node_pid" 2>/dev/null || { tail -n 30 "$TMP_DIR/$mode.log" >&2; node_pid=""; die "mercatod exited"; }
    (( SECONDS < deadline )) || die "mercatod did not answer within 60 s"
    sleep 0.3
  done
  sleep 2
  idle_kb="$(rss_kb "$node_pid")"
  # Peak RSS while the baseline runs (sampled every 0.5 s).
  ( peak=0; while kill -0 "$node_pid" 2>/dev/null; do r="$(rss_kb "$node_pid")"; (( r > peak )) && peak=$r; \
      echo "$peak" >"$TMP_DIR/$mode.peak"; sleep 0.5; done ) &
  sampler=$!
  MERCATO_URL="$url" "$BENCH_DIR/http_baseline.sh" --connections "$connections" --duration "$duration" \
    --warmup "$warmup" --no-open $([[ $append == 1 ]] || echo --no-append) \
    --note "issue14_bench.sh: mercato $mode" | tee "$TMP_DIR/$mode.out"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  stop_node
  # The closed-loop rows of the table http_baseline.sh printed.
  nginx_row="$(grep -E '^nginx +closed' "$TMP_DIR/$mode.out" | head -n 1)"
  mercato_row="$(grep -E '^mercato +closed' "$TMP_DIR/$mode.out" | head -n 1)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$nginx_row" "$mercato_row" "$idle_kb" "$(cat "$TMP_DIR/$mode.peak" 2>/dev/null || echo 0)" \
    >>"$summary"
done

git_rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
export SUMMARY="$summary" APPEND="$append" RESULTS="$RESULTS_MD" STARTED="$started_at" REV="$git_rev" \
  LOAD="$load_before" CONNS="$connections" DURATION="$duration" NOTE="$note"
python3 - <<'PY'
import os
rows = []
for line in open(os.environ["SUMMARY"]):
    mode, nginx, mercato, idle_kb, peak_kb = line.rstrip("\n").split("\t")
    n, m = nginx.split(), mercato.split()
    # columns: target mode req/s p50 p90 p99 p99.9 max errors ratio-rate ratio-p99
    rows.append((mode, float(n[2]), float(m[2]), float(n[5]), float(m[5]), m[8], int(idle_kb) / 1024,
                 int(peak_kb) / 1024))
header = ("GET /products/{id}, mercato with", "nginx req/s", "mercato req/s", "mercato/nginx req/s", "nginx p99 ms",
          "mercato p99 ms", "mercato/nginx p99", "errors", "RSS idle MB", "RSS peak under load MB")
table = [header] + [(mode, f"{nr:.0f}", f"{mr:.0f}", f"{mr / nr:.2f}", f"{np99:.2f}", f"{mp99:.2f}",
                     f"{mp99 / np99:.2f}x", err, f"{idle:.1f}", f"{peak:.1f}")
                    for mode, nr, mr, np99, mp99, err, idle, peak in rows]
for row in table:
    print(" | ".join(row))
e = os.environ
if e["APPEND"] == "1":
    with open(e["RESULTS"], "a") as out:
        out.write(f"\n## {e['STARTED']} — issue 14 summary (bench/issue14_bench.sh), rev {e['REV']}, nproc {os.cpu_count()}\n\n")
        out.write(f"{e['CONNS']} connections, closed loop, {e['DURATION']} s per run; each mercato row against nginx in "
                  f"the same http_baseline.sh run (its tables above); load average before {e['LOAD']}"
                  + (f"; {e['NOTE']}" if e["NOTE"] else "") + "\n\n")
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|---|" + "|".join(["---:"] * (len(header) - 2)) + "|---:|\n")
        for row in table[1:]:
            out.write("| " + " | ".join(row) + " |\n")
    print(f"appended to {e['RESULTS']}")
PY
