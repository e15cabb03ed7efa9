#!/usr/bin/env bash
# Contract test: runs the e2e programs that exercise the product API with MERCATO_TEST_CONTRACT_PROXY=1, so every
# node they start sits behind a Prism proxy (tests/tools, `prism proxy openapi.yaml <node>`) and every response
# that does not match openapi.yaml fails them (see tests/support/contract_proxy.hpp for what counts). The same
# programs also run on their own, without the proxy, as e2e/<name>.
#
# In the run: cart_api, product_admin, catalog_api, auth_api (carts, catalog, products, auth and /me), checkout_api,
# notifications_api (/me/notifications), analytics_api (GET /admin/analytics) and
# security_hardening (MFA, token refresh and revocation, password rules) except its one test of per-client-address
# login limits: behind a proxy every request comes from the proxy's address. (Its raw and malformed HTTP goes to
# the node directly anyway: http_client::raw never uses the proxy.)
# Not in the run, and why:
#   edge_errors         tests the transport edge itself: malformed and pipelined HTTP, connection reuse, and the
#                       access log's byte counts, which must equal the node's own bodies (Prism rewrites JSON).
#   shared_state        two nodes sharing rate-limit counters per client address (see above), and stops Redis.
#   shutdown            kills nodes and services mid-request and checks how connections end.
#   json_edge           starts no node (an in-process server) and sends malformed JSON on purpose.
#   live_updates        WebSocket frames after a 101 upgrade, which Prism does not proxy.
#
# Needs tests/tools/node_modules (scripts/setup --tests runs `npm ci` there): it FAILS when Prism is missing,
# never skips. Nothing is downloaded at run time. ctest sets MERCATO_SOURCE_DIR and MERCATO_TEST_BINARY_DIR;
# scripts/test exports the test services' settings (MERCATO_TEST_PG_DSN, ...).
set -euo pipefail

if [[ -z "${MERCATO_SOURCE_DIR:-}" ]]; then
  MERCATO_SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi
bin_dir="${MERCATO_TEST_BINARY_DIR:-$MERCATO_SOURCE_DIR/build/test/tests}"
prism="$MERCATO_SOURCE_DIR/tests/tools/node_modules/.bin/prism"
programs=(cart_api product_admin catalog_api auth_api notifications_api security_hardening checkout_api analytics_api order_lifecycle)
# doctest arguments per program
declare -A program_args=(
  [security_hardening]="--test-case-exclude=an attacker's failed logins do not lock the owner out*"
)

fail() { echo "contract_proxy_test: FAIL: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 18+ is needed for tests/tools); run scripts/setup --tests"
[[ -x "$prism" ]] || fail "$prism not found: the test tools are not installed; run \`scripts/setup --tests\` (it runs \`npm ci\` in tests/tools)"
[[ -f "$MERCATO_SOURCE_DIR/openapi.yaml" ]] || fail "$MERCATO_SOURCE_DIR/openapi.yaml not found"
for p in "${programs[@]}"; do
  [[ -x "$bin_dir/e2e_${p}_test" ]] || fail "$bin_dir/e2e_${p}_test not found (build the tests first)"
done
echo "contract_proxy_test: prism $("$prism" --version 2>/dev/null | tail -n1), spec $MERCATO_SOURCE_DIR/openapi.yaml"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

export MERCATO_TEST_CONTRACT_PROXY=1
failed=()
for p in "${programs[@]}"; do
  start=$SECONDS
  set +e
  args=()
  if [[ -n "${program_args[$p]:-}" ]]; then args+=("${program_args[$p]}"); fi
  "$bin_dir/e2e_${p}_test" "${args[@]}" >"$tmp/$p.log" 2>&1
  rc=$?
  set -e
  cat "$tmp/$p.log"
  # The program prints how many exchanges went through the proxy when it ends: none means the proxy was
  # never in the path (the variable lost on the way, a client that bypasses it), and that must not pass.
  validated="$(sed -n 's/^contract proxy: \([0-9][0-9]*\) exchanges validated.*/\1/p' "$tmp/$p.log" | tail -n1)"
  echo "contract_proxy_test: e2e_${p}_test exit $rc, ${validated:-no} exchanges validated, $((SECONDS - start))s"
  if (( rc != 0 )); then
    failed+=("$p (exit $rc)")
  elif [[ -z "$validated" || "$validated" -eq 0 ]]; then
    failed+=("$p (no exchange went through the proxy)")
  fi
done

if (( ${#failed[@]} > 0 )); then
  fail "against openapi.yaml: ${failed[*]}; look for 'contract proxy:' above for each response that breaks the spec"
fi
echo "contract_proxy_test: PASS"
