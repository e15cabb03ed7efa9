#!/usr/bin/env bash
# The Prometheus alert rules shipped in deploy/prometheus/mercato-alerts.yml: `promtool check rules`
# accepts them, and `promtool test rules` runs deploy/prometheus/mercato-alerts.test.yml, synthetic
# series proving each alert (5xx rate > 1%, p95 latency > 1 s, payment failures > 5%, cache hit ratio
# < 70%) fires above its threshold and stays quiet below it. Also checks that every metric the rules
# name is one mercatod serves (a renamed metric would leave an alert that can never fire).
#
# ctest runs it with MERCATO_SOURCE_DIR; standalone it defaults to ../.. of this script.
# Needs promtool (Debian package prometheus; scripts/setup --tests installs it): fails without it.
set -euo pipefail

name=alert_rules_test
fail() { echo "$name: FAIL: $*" >&2; exit 1; }
info() { echo "$name: $*"; }

if [[ -z "${MERCATO_SOURCE_DIR:-}" ]]; then
  MERCATO_SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi
rules_dir="$MERCATO_SOURCE_DIR/deploy/prometheus"
rules="$rules_dir/mercato-alerts.yml"
tests="$rules_dir/mercato-alerts.test.yml"

promtool="$(command -v promtool || true)"
[[ -n "$promtool" ]] || fail "promtool is not installed (Debian: apt-get install prometheus, it provides /usr/bin/promtool; scripts/setup --tests installs it)"
[[ -f "$rules" ]] || fail "$rules not found"
[[ -f "$tests" ]] || fail "$tests not found"

info "promtool check rules $rules"
"$promtool" check rules "$rules" || fail "promtool check rules rejected $rules"

# The seed's four alerts are all there.
for alert in MercatoHigh5xxRate MercatoHighLatencyP95 MercatoPaymentFailureRate MercatoCacheHitRatioLow; do
  grep -q "alert: $alert\$" "$rules" || fail "alert $alert is missing from $rules"
done

# Every mercato_* series the rules read is registered in the sources (telemetry/metrics.cpp for the HTTP
# and cache series, app/business_analytics.cpp for the payments); histogram suffixes are stripped.
missing=()
while read -r metric; do
  base="${metric%_bucket}"
  base="${base%_total}"
  if ! grep -rqs -- "\"$base\(_total\)\?\"" "$MERCATO_SOURCE_DIR/telemetry" "$MERCATO_SOURCE_DIR/app"; then
    missing+=("$metric")
  fi
done < <(grep -v '^\s*#' "$rules" | grep -o 'mercato_[a-z0-9_]*' | grep -v '^mercato_critical$\|^mercato_warning$' | sort -u)
((${#missing[@]} == 0)) || fail "the rules read metrics mercatod does not serve: ${missing[*]}"

info "promtool test rules $tests"
# promtool resolves rule_files relative to the working directory.
(cd "$rules_dir" && "$promtool" test rules "$(basename "$tests")") || fail "promtool test rules failed (see above)"
info "PASS"
