#!/usr/bin/env bash
# Starts mercatod --demo on a free port against the test PostgreSQL, makes a few requests (a 404 and
# a 400 among them), scrapes /metrics and checks it: the HTTP and pool series are there with their
# labels, and `promtool check metrics` reports nothing (it exits 3 and prints one line per lint
# problem, exits 1 on a parse error). Then SIGTERM must end the node with status 0.
#
# ctest runs it with MERCATOD_PATH and MERCATO_SOURCE_DIR; scripts/test exports MERCATO_TEST_PG_DSN.
# Needs curl, python3 (to pick a free port) and promtool (Debian package prometheus).
set -euo pipefail

name=metrics_promtool_test
fail() { echo "$name: FAIL: $*" >&2; exit 1; }
info() { echo "$name: $*"; }

[[ -n "${MERCATOD_PATH:-}" ]] || fail "MERCATOD_PATH is not set (ctest sets it to the built mercatod)"
[[ -x "$MERCATOD_PATH" ]] || fail "$MERCATOD_PATH is not an executable"
command -v curl >/dev/null 2>&1 || fail "curl is not installed"
command -v python3 >/dev/null 2>&1 || fail "python3 is not installed"
promtool="$(command -v promtool || true)"
[[ -n "$promtool" ]] || fail "promtool is not installed (Debian: apt-get install prometheus, it provides /usr/bin/promtool)"

pg_dsn="${MERCATO_TEST_PG_DSN:-postgresql://mercato@127.0.0.1:55433/mercato}"
redis_url="${MERCATO_TEST_REDIS_URL:-}"

tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

show_log() { echo "--- mercatod log ---" >&2; cat "$tmp/node.log" >&2 || true; echo "--- end of log ---" >&2; }

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"

# The node rejects unknown MERCATO_* variables: give it only the ones it knows. MERCATO_TEST_* are
# for the test runner, so they are dropped; MERCATO_SOURCE_DIR is on its allow-list.
child_env=(-u MERCATO_REDIS_URL)
while IFS='=' read -r var _; do
  if [[ "$var" == MERCATO_TEST_* ]]; then
    child_env+=(-u "$var")
  fi
done < <(env)
child_env+=(MERCATO_PG_DSN="$pg_dsn" MERCATO_HTTP_PORT="$port" MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_LOG_FORMAT=json
           MERCATO_NODE_ID="promtool-$$")  # its own id: other tests' nodes may share the database
if [[ -n "$redis_url" ]]; then
  child_env+=(MERCATO_REDIS_URL="$redis_url")
fi

info "starting $MERCATOD_PATH --demo on port $port"
env "${child_env[@]}" "$MERCATOD_PATH" --demo >"$tmp/node.log" 2>&1 &
pid=$!

# Ready within 60 s (polling every 100 ms), or fail early if the process died.
ready=""
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    show_log
    fail "mercatod exited before it became ready"
  fi
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz" || true)"
  if [[ "$code" == "200" ]]; then
    ready=yes
    break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || { show_log; fail "GET /readyz did not answer 200 within 60 s"; }
info "ready"

# A few requests, with the status each must get.
expect_status() {
  local want="$1" path="$2" got
  got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$base$path" || true)"
  [[ "$got" == "$want" ]] || fail "GET $path answered $got, expected $want"
}
expect_status 200 /healthz
expect_status 200 "/api/v1/products?limit=5"
expect_status 200 "/api/v1/products?sort=price&limit=3"
expect_status 200 /api/v1/categories
expect_status 404 /api/v1/no-such-route
expect_status 400 "/api/v1/products?limit=0"

# Scrape.
code="$(curl -s -D "$tmp/headers" -o "$tmp/metrics" -w '%{http_code}' --max-time 10 "$base/metrics" || true)"
[[ "$code" == "200" ]] || fail "GET /metrics answered $code"
content_type="$(grep -i '^content-type:' "$tmp/headers" | head -n1 | tr -d '\r' | cut -d' ' -f2-)"
[[ "$content_type" == text/plain* ]] || fail "GET /metrics has Content-Type '$content_type', expected text/plain (exposition format)"
[[ -s "$tmp/metrics" ]] || fail "GET /metrics returned an empty body"
info "scraped $(wc -l <"$tmp/metrics") lines"

# has_type NAME TYPE: a "# TYPE NAME TYPE" line.
has_type() { grep -Eq "^# TYPE $1 $2\$" "$tmp/metrics" || fail "no '# TYPE $1 $2' line in /metrics"; }
# has_sample NAME LABEL...: a sample of NAME whose labels include every given label="value" (any order).
has_sample() {
  local metric="$1"
  shift
  awk -v metric="$metric" -v want="$*" '
    BEGIN { n = split(want, labels, " ") }
    index($0, metric "{") == 1 {
      ok = 1
      for (i = 1; i <= n; i++) if (index($0, labels[i]) == 0) ok = 0
      if (ok) { found = 1; exit }
    }
    END { exit found ? 0 : 1 }' "$tmp/metrics" ||
    fail "no $metric sample with labels $* in /metrics; the $metric lines are:
$(grep "^$metric" "$tmp/metrics" | head -n 20)"
}

has_type mercato_http_requests_total counter
has_sample mercato_http_requests_total 'route="/api/v1/products"' 'method="GET"' 'status="200"'
has_sample mercato_http_requests_total 'route="/api/v1/products"' 'method="GET"' 'status="400"'
has_sample mercato_http_requests_total 'route="/api/v1/categories"' 'method="GET"' 'status="200"'
has_sample mercato_http_requests_total 'method="GET"' 'status="404"'
# Every requests_total sample has all three labels.
if grep -E '^mercato_http_requests_total' "$tmp/metrics" | grep -Ev 'route="[^"]*"' | grep -q .; then
  fail "a mercato_http_requests_total sample lacks the route label"
fi
if grep -E '^mercato_http_requests_total' "$tmp/metrics" | grep -Ev 'method="[^"]*"' | grep -q .; then
  fail "a mercato_http_requests_total sample lacks the method label"
fi
if grep -E '^mercato_http_requests_total' "$tmp/metrics" | grep -Ev 'status="[0-9]{3}"' | grep -q .; then
  fail "a mercato_http_requests_total sample lacks a three-digit status label"
fi
# The 404 went to no route: its route label must not be the raw path (unbounded cardinality).
if grep -E '^mercato_http_requests_total' "$tmp/metrics" | grep -q 'no-such-route'; then
  fail "the raw path of an unmatched request became a route label"
fi

has_type mercato_http_request_duration_seconds histogram
has_sample mercato_http_request_duration_seconds_bucket 'route="/api/v1/products"' 'le="+Inf"'
has_sample mercato_http_request_duration_seconds_bucket 'route="/api/v1/products"' 'le="0.1"'
grep -Eq '^mercato_http_request_duration_seconds_sum\{' "$tmp/metrics" || fail "no mercato_http_request_duration_seconds_sum"
grep -Eq '^mercato_http_request_duration_seconds_count\{' "$tmp/metrics" ||
  fail "no mercato_http_request_duration_seconds_count"

has_type mercato_http_requests_in_flight gauge
grep -Eq '^mercato_http_requests_in_flight [0-9.e+-]+$' "$tmp/metrics" || fail "no mercato_http_requests_in_flight sample"
has_type mercato_db_pool_in_use gauge
grep -Eq '^mercato_db_pool_in_use [0-9.e+-]+$' "$tmp/metrics" || fail "no mercato_db_pool_in_use sample"

# promtool: exit 0 and no output. Lint problems come as "<metric> <complaint>" lines on stderr with
# exit status 3; a parse error is exit status 1.
set +e
"$promtool" check metrics <"$tmp/metrics" >"$tmp/promtool.out" 2>&1
promtool_rc=$?
set -e
if (( promtool_rc != 0 )) || [[ -s "$tmp/promtool.out" ]]; then
  echo "--- promtool check metrics (exit $promtool_rc) ---" >&2
  cat "$tmp/promtool.out" >&2
  fail "promtool check metrics found problems in /metrics"
fi
info "promtool check metrics: clean"

# SIGTERM: exit 0 within 30 s.
kill -TERM "$pid"
for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  show_log
  fail "mercatod still runs 30 s after SIGTERM"
fi
set +e
wait "$pid"
rc=$?
set -e
pid=""
(( rc == 0 )) || { show_log; fail "mercatod exited with status $rc after SIGTERM"; }
info "SIGTERM: exit 0"
info "PASS"
