#!/usr/bin/env bash
# Issue 13's cluster figures, in one run on loopback (node, load generator and PostgreSQL share the machine):
#   1. the cost of a hop: GET /api/v1/carts/{id} for carts node A owns, sent to A (local) and to B (one
#      forward through B's front door to A's gateway), closed loop; requests/s and p99 of each, and the ratio;
#   2. a node joining under load: while GETs run through A and B, node C starts; the seconds until C holds
#      its shards (its /readyz is 200) and the errors the load saw meanwhile;
#   3. a node killed under load: while GETs run through A, node B gets SIGKILL; the seconds until an
#      add-to-cart for a cart B owned is acknowledged through A (lease TTL and node timeout as configured).
# Appends a dated table to bench/results.md.
#
#   bench/cluster_bench.sh [--connections N] [--duration S] [--lease-ttl-ms MS] [--node-timeout-ms MS] [--no-append]
#
# Needs a Release mercatod ($MERCATOD, default build/bench/app/mercatod) and mercato_loadgen ($MERCATO_LOADGEN,
# default build/bench/bench/mercato_loadgen), psql, python3, and the `run` profile of scripts/services (started
# if needed); it works in its own database (mercato_cluster_bench, dropped and made again).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_MD="$BENCH_DIR/results.md"
die() { echo "cluster_bench: $*" >&2; exit 1; }
log() { echo "cluster_bench: $*" >&2; }

connections=32
duration=10
lease_ttl=10000
node_timeout=5000
append=1
while (( $# )); do
  case "$1" in
    --connections) connections="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --lease-ttl-ms) lease_ttl="$2"; shift 2 ;;
    --node-timeout-ms) node_timeout="$2"; shift 2 ;;
    --no-append) append=0; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

MERCATOD="${MERCATOD:-$REPO_ROOT/build/bench/app/mercatod}"
LOADGEN="${MERCATO_LOADGEN:-$REPO_ROOT/build/bench/bench/mercato_loadgen}"
[[ -x "$MERCATOD" ]] || die "no mercatod at $MERCATOD (cmake --build build/bench --target mercatod)"
[[ -x "$LOADGEN" ]] || die "no mercato_loadgen at $LOADGEN (cmake --build build/bench --target mercato_loadgen)"
PREP=("python3" "$BENCH_DIR/cluster_prepare.py")

"$REPO_ROOT/scripts/services" start --profile run >/dev/null
eval "$("$REPO_ROOT/scripts/services" env --profile run)"
base_dsn="$MERCATO_PG_DSN"
db=mercato_cluster_bench
dsn="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$base_dsn" "$db")"
psql "$base_dsn" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null

TMP_DIR="$(mktemp -d)"
declare -A pids ports
cleanup() {
  for n in "${!pids[@]}"; do kill -9 "${pids[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP_DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
start_node() {  # NAME
  local name="$1" port
  port="$(free_port)"
  ports[$name]="$port"
  # The node refuses MERCATO_* variables it does not know: the bench's own settings are not passed on.
  env -u MERCATO_LOADGEN -u MERCATO_PG_PORT -u MERCATO_REDIS_PORT MERCATO_PG_DSN="$dsn" MERCATO_REDIS_URL="$MERCATO_REDIS_URL" MERCATO_REDIS_KEY_PREFIX="clbench:" \
    MERCATO_NODE_ID="bench-$name" MERCATO_HTTP_PORT="$port" MERCATO_RATE_LIMITS=off MERCATO_JWT_SECRET="$JWT_SECRET" \
    MERCATO_LOG_LEVEL=warn MERCATO_CLUSTER_LEASE_TTL_MS="$lease_ttl" MERCATO_CLUSTER_NODE_TIMEOUT_MS="$node_timeout" \
    "$MERCATOD" --demo >"$TMP_DIR/$name.log" 2>&1 &
  pids[$name]=$!
}
url() { echo "http://127.0.0.1:${ports[$1]}"; }
owners() {  # live cart leases: "shard owner"
  psql "$dsn" -At -F' ' -c "SELECT shard, owner_node FROM shard_leases WHERE kind = 'cart' AND expires_at > now()" \
    >"$TMP_DIR/owners.txt"
}
await_split() {  # N: that many nodes hold all 256 leases
  for _ in $(seq 1 600); do
    [[ "$(psql "$dsn" -At -c "SELECT count(DISTINCT owner_node) = $1 AND count(*) = 256 FROM shard_leases
                               WHERE expires_at > now()")" == t ]] && return 0
    sleep 0.1
  done
  die "the cluster did not settle on $1 nodes"
}
run_load() {  # NAME BASE FILE [extra loadgen args]
  local name="$1" base="$2" file="$3"; shift 3
  "$LOADGEN" --base "$base" --requests-file "$file" --connections "$connections" --closed --duration "$duration" \
    --warmup 2 --label "$name" --json "$@" >"$TMP_DIR/$name.json" 2>"$TMP_DIR/$name.err" || true
}
field() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if v is not None else "")' \
            "$TMP_DIR/$1.json" "$2"; }

log "starting nodes a and b (lease ttl $lease_ttl ms, node timeout $node_timeout ms)"
start_node a
"${PREP[@]}" ready "$(url a)" >/dev/null
start_node b
"${PREP[@]}" ready "$(url b)" >/dev/null
await_split 2
product="$(curl -fsS "$(url a)/api/v1/products?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')"
"${PREP[@]}" carts "$(url a)" "$TMP_DIR" --carts 400
owners
n_a="$("${PREP[@]}" requests "$TMP_DIR" "$TMP_DIR/owners.txt" --owner bench-a --product "$product")"
n_b="$("${PREP[@]}" requests "$TMP_DIR" "$TMP_DIR/owners.txt" --owner bench-b --product "$product")"
log "$n_a carts on a, $n_b on b"

log "1. hop cost: carts owned by a, through a and through b"
run_load local "$(url a)" "$TMP_DIR/get_bench-a.jsonl"
run_load hop "$(url b)" "$TMP_DIR/get_bench-a.jsonl"

log "2. node c joins while GETs run through a and b"
cat "$TMP_DIR/get_bench-a.jsonl" "$TMP_DIR/get_bench-b.jsonl" >"$TMP_DIR/get_both.jsonl"
"$LOADGEN" --base "$(url a)" --requests-file "$TMP_DIR/get_both.jsonl" \
  --connections "$connections" --closed --duration 20 --warmup 1 --label join --json >"$TMP_DIR/join.json" \
  2>"$TMP_DIR/join.err" &
load_pid=$!
sleep 4
start_node c
join_s="$("${PREP[@]}" ready "$(url c)" --timeout 120)"
await_split 3
wait "$load_pid" || true

log "3. node b killed while GETs run through a"
owners
"$LOADGEN" --base "$(url a)" --requests-file "$TMP_DIR/get_bench-a.jsonl" --connections "$connections" --closed \
  --duration 30 --warmup 1 --label kill --json >"$TMP_DIR/kill.json" 2>"$TMP_DIR/kill.err" &
load_pid=$!
sleep 3
kill -9 "${pids[b]}"
unset 'pids[b]'
kill_s="$("${PREP[@]}" probe "$(url a)" "$TMP_DIR" "$TMP_DIR/owners.txt" --owner bench-b --product "$product" --timeout 120)"
wait "$load_pid" || true

ratio="$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$(field hop rate)" "$(field local rate)")"
table="$(cat <<EOF

## Issue 13 cluster ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$REPO_ROOT" rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))
Release nodes on loopback with PostgreSQL and the load generator on the same machine; $connections connections, closed loop,
GET /api/v1/carts/{id} of carts node a owns; lease TTL $lease_ttl ms, node timeout $node_timeout ms.

| measure | value |
|---|---|
| through the owner (a): req/s, p50 / p99 | $(field local rate) /s, $(field local p50_ms) / $(field local p99_ms) ms |
| through another node (b, one hop): req/s, p50 / p99 | $(field hop rate) /s, $(field hop p50_ms) / $(field hop p99_ms) ms |
| hop / owner throughput | ${ratio}x |
| node c joining under load: until it holds its shards | ${join_s} s (load: $(field join rate) req/s, p99 $(field join p99_ms) ms, $(field join errors) errors) |
| node b killed under load: until its carts are served again | ${kill_s} s (load through a: p99 $(field kill p99_ms) ms, $(field kill errors) errors) |
EOF
)"
echo "$table"
if (( append )); then
  echo "$table" >>"$RESULTS_MD"
  log "appended to $RESULTS_MD"
fi
