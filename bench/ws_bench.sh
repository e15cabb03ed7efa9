#!/usr/bin/env bash
# The live-updates benchmark of issue 12, in one bounded run: --connections WebSocket connections (10,000) on one
# node, each subscribed to the stock of the same --products (100) products; then --changes committed stock changes
# (admin adjustments over HTTP, one at a time, round-robin over the products), and for each the time until the
# LAST normal-speed subscriber has it (p50/p99), measured from the adjustment's acknowledgement (the commit is
# durable by then) and from the moment it was sent; and the node's resident memory per connection (VmRSS delta
# over the connections, after every connection got its current values). Two cases, each on a fresh node and
# database: all clients read at full speed; and 10% of them deliberately slow (small receive window, one message
# read per second after their current values).
#
#   bench/ws_bench.sh [--connections N] [--products P] [--changes K] [--slow-fraction F] [--no-append] [--note TEXT]
#
# Needs mercatod and mercato_ws_bench (build/release, else build/test; or $MERCATOD / $MERCATO_WS_BENCH),
# PostgreSQL (scripts/services start; MERCATO_PG_PORT is honoured, or give MERCATO_PG_DSN), psql, curl, python3.
# Loopback only. The node is stopped on every exit; the database mercato_bench_ws is dropped at the end.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS_MD="$REPO_ROOT/bench/results.md"
log() { echo "ws_bench: $*" >&2; }
die() { echo "ws_bench: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

connections=10000
products=100
changes=200
slow_fraction=0.1
append=1
note=""
while (( $# )); do
  case "$1" in
    --connections) connections="${2:?}"; shift 2 ;;
    --products) products="${2:?}"; shift 2 ;;
    --changes) changes="${2:?}"; shift 2 ;;
    --slow-fraction) slow_fraction="${2:?}"; shift 2 ;;
    --no-append) append=0; shift ;;
    --note) note="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
for v in connections products changes; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--$v needs a positive whole number"
done

pick() { for f in "$@"; do [[ -x "$f" ]] && { echo "$f"; return; }; done; echo ""; }
MERCATOD="${MERCATOD:-$(pick "$REPO_ROOT/build/release/app/mercatod" "$REPO_ROOT/build/test/app/mercatod")}"
WS_BENCH="${MERCATO_WS_BENCH:-$(pick "$REPO_ROOT/build/release/bench/mercato_ws_bench" "$REPO_ROOT/build/test/bench/mercato_ws_bench")}"
[[ -n "$MERCATOD" ]] || die "mercatod not found (build it, or set MERCATOD)"
[[ -n "$WS_BENCH" ]] || die "mercato_ws_bench not found (build target mercato_ws_bench, or set MERCATO_WS_BENCH)"
for tool in psql curl python3; do command -v "$tool" >/dev/null || die "$tool is required"; done

if [[ -z "${MERCATO_PG_DSN:-}" ]]; then
  MERCATO_PG_DSN="$("$REPO_ROOT/scripts/services" env --profile test | sed -n "s/^export MERCATO_PG_DSN='\(.*\)'$/\1/p")"
fi
base_dsn="$MERCATO_PG_DSN"
bench_dsn="$(python3 - "$base_dsn" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
if not (p.hostname or "").startswith("127.") and p.hostname not in ("localhost", "::1"):
    sys.exit(f"ws_bench: MERCATO_PG_DSN must name a loopback host, got {p.hostname}")
print(u.urlunsplit((p.scheme, p.netloc, "/mercato_bench_ws", p.query, p.fragment)))
PY
)"
psql -X -q "$base_dsn" -c 'SELECT 1' >/dev/null 2>&1 || die "PostgreSQL is not reachable at $base_dsn (scripts/services start)"

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mercato-ws-bench.XXXXXX")"
node_pid=""
stop_node() {
  local pid="$node_pid" i
  node_pid=""
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 300; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_node
  psql -X -q "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_ws WITH (FORCE)' >/dev/null 2>&1 || true
  rm -rf "$TMP_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
ADMIN_EMAIL="ws-bench-admin@example.com"
ADMIN_PASSWORD="bench-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"

# A fresh database with --products generated products, a node on it; sets PORT, node_pid, TOKEN, the ids file.
start_case() {
  local name="$1" i
  psql -X -q -v ON_ERROR_STOP=1 "$base_dsn" -c 'DROP DATABASE IF EXISTS mercato_bench_ws WITH (FORCE)' \
    -c 'CREATE DATABASE mercato_bench_ws' >/dev/null
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    MERCATO_PG_DSN="$bench_dsn" MERCATO_RATE_LIMITS=off MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_HTTP_PORT="$PORT" \
    MERCATO_HTTP_THREADS=2 MERCATO_LOG_LEVEL=warn MERCATO_JWT_SECRET="$JWT_SECRET" \
    MERCATO_WS_MAX_CONNECTIONS=$(( connections + 1000 )) MERCATO_WS_MAX_SUBSCRIPTIONS="$products" \
    MERCATO_WS_SEND_QUEUE_ITEMS=$(( products + 64 )) \
    MERCATO_ADMIN_EMAIL="$ADMIN_EMAIL" MERCATO_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    "$MERCATOD" >"$TMP_DIR/mercatod-$name.log" 2>&1 &
  node_pid=$!
  for (( i = 0; i < 600; i++ )); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$TMP_DIR/mercatod-$name.log" >&2; die "mercatod exited"; }
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || die "mercatod did not become ready"
  psql -X -q -v ON_ERROR_STOP=1 -v products="$products" "$bench_dsn" -f "$REPO_ROOT/bench/seed_catalog.sql" >/dev/null
  psql -X -At "$bench_dsn" -c "SELECT id FROM products WHERE sku LIKE 'BENCH-%' ORDER BY sku LIMIT $products" \
    >"$TMP_DIR/products.txt"
  TOKEN="$(curl -fsS -H 'Content-Type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" "http://127.0.0.1:$PORT/api/v1/auth/login" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"
}

metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

run_case() {
  local name="$1" fraction="$2"
  log "case $name: $connections connections x $products products, slow fraction $fraction"
  start_case "$name"
  "$WS_BENCH" --port "$PORT" --products "$TMP_DIR/products.txt" --token "$TOKEN" --node-pid "$node_pid" \
    --connections "$connections" --slow-fraction "$fraction" --changes "$changes" --timeout-s 300 \
    >"$TMP_DIR/$name.json"
  python3 - "$TMP_DIR/$name.json" "$(metric mercato_ws_messages_coalesced_total)" "$(metric mercato_ws_closed_slow_total)" \
    "$(metric mercato_ws_messages_sent_total)" >"$TMP_DIR/$name.full.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["node_coalesced"] = float(sys.argv[2] or 0)
d["node_closed_slow"] = float(sys.argv[3] or 0)
d["node_messages_sent"] = float(sys.argv[4] or 0)
print(json.dumps(d))
PY
  cat "$TMP_DIR/$name.full.json" >&2
  stop_node
}

run_case all-fast 0
run_case slow-10 "$slow_fraction"

table="$(python3 - "$TMP_DIR/all-fast.full.json" "$TMP_DIR/slow-10.full.json" <<'PY'
import json, sys
rows = [("all clients read", json.load(open(sys.argv[1]))), ("10% slow clients", json.load(open(sys.argv[2])))]
print("| case | connections (with current values) | products | changes measured | last subscriber p50 / p99 from ack (ms) | p50 / p99 from send (ms) | RSS per connection (bytes) | coalesced | closed slow |")
print("|---|---|---|---|---|---|---|---|---|")
for name, d in rows:
    print(f"| {name} | {d['connections']} ({d['with_current_values']}) | {d['products']} | {d['changes_measured']} "
          f"(timed out {d['changes_timed_out']}) | {d['last_subscriber_ms_from_ack_p50']:.1f} / {d['last_subscriber_ms_from_ack_p99']:.1f} "
          f"| {d['last_subscriber_ms_from_send_p50']:.1f} / {d['last_subscriber_ms_from_send_p99']:.1f} "
          f"| {d['bytes_per_connection']:.0f} | {d['node_coalesced']:.0f} | {d['node_closed_slow']:.0f} |")
PY
)"
echo "$table"
if (( append )); then
  {
    echo
    echo "## Live updates over WebSocket (issue 12), $(date -u +%Y-%m-%d)${note:+ — $note}"
    echo
    echo "bench/ws_bench.sh: $connections connections on one node (2 HTTP threads), each subscribed to the stock of the"
    echo "same $products products; $changes committed stock changes one at a time; latency = until the last normal-speed"
    echo "subscriber has the change. Memory = node VmRSS delta after all connections got their $products current values."
    echo "Binary: $(basename "$(dirname "$(dirname "$MERCATOD")")") build; loopback; 2 cores shared with the load generator."
    echo
    echo "$table"
  } >>"$RESULTS_MD"
  log "appended to $RESULTS_MD"
fi
