#!/usr/bin/env bash
# Lints openapi.yaml with Redocly CLI (recommended ruleset, see redocly.yaml) and fails on any error OR warning.
# ctest runs it with MERCATO_SOURCE_DIR set to the repository root; standalone it defaults to ../.. of this script.
# Needs tests/tools/node_modules (scripts/setup --tests runs `npm ci` there); no network access at run time.
set -euo pipefail

if [[ -z "${MERCATO_SOURCE_DIR:-}" ]]; then
  MERCATO_SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi

spec="$MERCATO_SOURCE_DIR/openapi.yaml"
config="$MERCATO_SOURCE_DIR/redocly.yaml"
redocly="$MERCATO_SOURCE_DIR/tests/tools/node_modules/.bin/redocly"

fail() { echo "openapi_lint_test: FAIL: $*" >&2; exit 1; }

[[ -f "$spec" ]] || fail "$spec not found"
[[ -f "$config" ]] || fail "$config not found"
command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 18+ is needed for tests/tools); run scripts/setup --tests"
if [[ ! -x "$redocly" ]]; then
  fail "$redocly not found: the test tools are not installed; run \`scripts/setup --tests\` (it runs \`npm ci\` in tests/tools)"
fi

# Never phone home: no telemetry, no update check (only the npm registry is reachable, and only at setup).
export REDOCLY_TELEMETRY=off
export REDOCLY_SUPPRESS_UPDATE_NOTICE=true
export NO_UPDATE_NOTIFIER=1
export CI="${CI:-true}"

cd "$MERCATO_SOURCE_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "openapi_lint_test: $("$redocly" --version 2>/dev/null | tail -n1) lint $spec --config $config"

# Human-readable report first (for the test log). redocly exits non-zero on errors only, so its status is
# recorded but the verdict comes from the JSON totals below, which also count warnings.
set +e
"$redocly" lint "$spec" --config "$config" --format=stylish 2>&1
stylish_rc=$?
"$redocly" lint "$spec" --config "$config" --format=json >"$tmp/report.json" 2>"$tmp/stderr.txt"
json_rc=$?
set -e

totals="$(node -e '
  const fs = require("fs");
  let r;
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { console.log("unparsable"); process.exit(0); }
  const t = r.totals || {};
  if (typeof t.errors !== "number" || typeof t.warnings !== "number") { console.log("unparsable"); process.exit(0); }
  console.log(`${t.errors} ${t.warnings}`);
' "$tmp/report.json")"

if [[ "$totals" == "unparsable" ]]; then
  cat "$tmp/stderr.txt" >&2 || true
  fail "could not read redocly's JSON report (exit codes: stylish $stylish_rc, json $json_rc)"
fi

read -r errors warnings <<<"$totals"
echo "openapi_lint_test: $errors error(s), $warnings warning(s)"
if (( errors > 0 || warnings > 0 || stylish_rc != 0 || json_rc != 0 )); then
  fail "openapi.yaml has lint problems (errors: $errors, warnings: $warnings); fix the spec, see the report above"
fi
echo "openapi_lint_test: PASS"
