#!/usr/bin/env bash
# Browser e2e of the demo storefront: starts mercatod --demo (rate limits on, its own scratch database and
# Redis key prefix) and runs tests/e2e/browser/storefront.mjs, which drives Debian's chromium headless with
# Playwright (playwright-core from tests/tools): search, product, guest cart, registration (the cart is claimed),
# checkout with tok_ok, the order in the order list, a declined card, and a second page whose stock drops
# without a reload (over the WebSocket; see storefront.mjs for the one condition under which polling may stand
# in for it). Screenshots: <build>/artifacts/storefront/.
#
# Needs chromium (Debian package, /usr/bin/chromium), node and tests/tools/node_modules (scripts/setup --tests
# installs all three): it FAILS when one is missing, never skips. ctest sets MERCATOD_PATH, MERCATO_SOURCE_DIR
# and MERCATO_TEST_BINARY_DIR; scripts/test exports MERCATO_TEST_PG_DSN (and MERCATO_TEST_REDIS_URL).
set -euo pipefail

name=storefront_browser_test
fail() { echo "$name: FAIL: $*" >&2; exit 1; }
info() { echo "$name: $*"; }

if [[ -z "${MERCATO_SOURCE_DIR:-}" ]]; then
  MERCATO_SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi
bin_dir="${MERCATO_TEST_BINARY_DIR:-$MERCATO_SOURCE_DIR/build/test/tests}"
artifacts="$(cd "$bin_dir/.." && pwd)/artifacts/storefront"
tools="$MERCATO_SOURCE_DIR/tests/tools"
chromium="${MERCATO_TEST_CHROMIUM:-/usr/bin/chromium}"

[[ -n "${MERCATOD_PATH:-}" ]] || fail "MERCATOD_PATH is not set (ctest sets it to the built mercatod)"
[[ -x "$MERCATOD_PATH" ]] || fail "$MERCATOD_PATH is not an executable"
command -v node >/dev/null 2>&1 || fail "node is not installed; run scripts/setup --tests"
[[ -x "$chromium" ]] || fail "$chromium not found: run scripts/setup --tests (it installs Debian's chromium)"
[[ -f "$tools/node_modules/playwright-core/package.json" ]] ||
  fail "playwright-core is not installed in tests/tools; run scripts/setup --tests (npm ci there)"
for tool in psql curl python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

admin_dsn="${MERCATO_TEST_PG_DSN:-postgresql://mercato@127.0.0.1:55433/mercato}"
redis_url="${MERCATO_TEST_REDIS_URL:-}"
# A scratch database of its own: the checkout changes stock, and other tests must not see (or cause) that.
db="mercato_browser_$$_${RANDOM}"
dsn="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$admin_dsn" "$db")"

tmp="$(mktemp -d)"
pid=""
db_created=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [[ -n "$db_created" ]]; then
    psql "$admin_dsn" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
show_log() { echo "--- mercatod log (last 80 lines) ---" >&2; tail -n 80 "$tmp/node.log" >&2 || true; echo "--- end of log ---" >&2; }

psql "$admin_dsn" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null || fail "cannot create database $db"
db_created=yes

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"

# The node rejects unknown MERCATO_* variables: MERCATO_TEST_* stay with the runner.
child_env=(-u MERCATO_REDIS_URL -u MERCATO_HTTP_STATIC_DIR)
while IFS='=' read -r var _; do
  if [[ "$var" == MERCATO_TEST_* ]]; then
    child_env+=(-u "$var")
  fi
done < <(env)
# Rate limits on, as a visitor of `scripts/run` has them, with counters of its own.
child_env+=(MERCATO_PG_DSN="$dsn" MERCATO_HTTP_PORT="$port" MERCATO_HTTP_ADDRESS=127.0.0.1 MERCATO_LOG_FORMAT=json
  MERCATO_RATE_LIMITS=on MERCATO_REDIS_KEY_PREFIX="$db:")
if [[ -n "$redis_url" ]]; then
  child_env+=(MERCATO_REDIS_URL="$redis_url")
fi

info "starting $MERCATOD_PATH --demo on port $port (database $db)"
env "${child_env[@]}" "$MERCATOD_PATH" --demo >"$tmp/node.log" 2>&1 &
pid=$!

ready=""
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    show_log
    fail "mercatod exited before it became ready"
  fi
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz" || true)" == "200" ]]; then
    ready=yes
    break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || { show_log; fail "GET /readyz did not answer 200 within 60 s"; }
info "ready; chromium: $("$chromium" --version 2>/dev/null | head -n1), playwright-core $(node -p "require('$tools/node_modules/playwright-core/package.json').version")"

set +e
BASE_URL="$base" ARTIFACTS_DIR="$artifacts" TOOLS_DIR="$tools" CHROMIUM="$chromium" \
  node "$MERCATO_SOURCE_DIR/tests/e2e/browser/storefront.mjs"
rc=$?
set -e
if (( rc != 0 )); then
  show_log
  fail "the browser run failed (exit $rc); screenshots and page dumps in $artifacts"
fi

kill -TERM "$pid"
for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
set +e
wait "$pid"
node_rc=$?
set -e
pid=""
(( node_rc == 0 )) || { show_log; fail "mercatod exited with status $node_rc after SIGTERM"; }
info "screenshots in $artifacts"
info "PASS"
