#!/usr/bin/env bash
# Checks every deploy and dashboard file with the real tool for it:
#   deploy/systemd/*.service   systemd-analyze verify (any output fails:
#                              it exits 0 on lines it ignores)
#   deploy/collector/sidecar-config.yaml  the built Collector's validate
#   deploy/compose/prometheus/prometheus.yml  promtool check config
#   dashboards/**/*.rules.yaml promtool check rules
#   dashboards/**/*.test.yaml  promtool test rules
#   dashboards/grafana/*.json  PromQL through promtool, LogQL and TraceQL
#                              through Grafana's own grammars
#                              (scripts/check-dashboards.py)
#   deploy/kustomization.yaml  rendered by kustomize, every object decoded
#                              strictly against the Kubernetes API types
#                              (scripts/deploycheck)
#   deploy/compose/compose.yaml  compose-spec's loader and schema
# SAFEGUARD_BIN is the built agent the unit's ExecStart is pointed at for
# the check (verify wants an executable there). promtool is the one
# scripts/backends.sh builds (Prometheus v0.316.0: it knows the `otlp:`
# section), unless PROMTOOL names another.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SAFEGUARD_BIN:?set SAFEGUARD_BIN to the built safeguard binary}
fail=0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$HERE"/deploy/systemd/*.service; do
	name=$(basename "$unit")
	sed "s|/usr/bin/safeguard|$BIN|g" "$unit" >"$tmp/$name"
	out=$(systemd-analyze verify "$tmp/$name" 2>&1) || { echo "$out"; fail=1; }
	if [[ -n $out ]]; then
		echo "systemd-analyze verify $name:"
		echo "$out"
		fail=1
	else
		echo "ok: systemd-analyze verify $name"
	fi
done

"$HERE/scripts/collector.sh" validate "$HERE/deploy/collector/sidecar-config.yaml" || fail=1

PROMTOOL=${PROMTOOL:-$("$HERE/scripts/backends.sh" path promtool)}
export PROMTOOL
# Its rule_files glob is relative to where compose mounts it: checked here
# with the rules beside it, as in the container.
mkdir -p "$tmp/prometheus/rules"
cp "$HERE/deploy/compose/prometheus/prometheus.yml" "$tmp/prometheus/"
cp "$HERE"/dashboards/alerts/*.rules.yaml "$tmp/prometheus/rules/"
"$PROMTOOL" check config "$tmp/prometheus/prometheus.yml" || fail=1

shopt -s globstar nullglob
for rules in "$HERE"/dashboards/**/*.rules.yaml; do
	"$PROMTOOL" check rules "$rules" || fail=1
done
for tests in "$HERE"/dashboards/**/*.test.yaml; do
	(cd "$(dirname "$tests")" && "$PROMTOOL" test rules "$(basename "$tests")") || fail=1
done
TOOLS=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}/bin
"$TOOLS/deploycheck" kustomize "$HERE/deploy" || fail=1
"$TOOLS/deploycheck" compose "$HERE/deploy/compose/compose.yaml" || fail=1

QUERYCHECK=${QUERYCHECK:-${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}/querycheck} \
	python3 "$HERE/scripts/check-dashboards.py" "$HERE"/dashboards/grafana/*.json || fail=1
exit $fail
