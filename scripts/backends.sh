#!/usr/bin/env bash
# Builds the backends the end-to-end tests send to, each from the Go module
# proxy at the version its tool module pins (tests/backends/<dir>/go.mod and
# go.sum), once, and caches the binaries:
#
#   scripts/backends.sh path NAME   build if needed; print NAME's absolute path
#   scripts/backends.sh all         build every one
#
# NAME: prometheus, promtool (tests/backends/prometheus: Prometheus v0.316.0),
# jaeger (tests/backends/jaeger: Jaeger v1.75.0), victoria-logs
# (tests/backends/victorialogs: VictoriaLogs v1.52.2); all Apache-2.0. Loki,
# Tempo and Grafana's server are AGPL and are not used.
#
# Only the path goes to stdout; progress and errors go to stderr. Caches,
# under SAFEGUARD_CACHE (default ~/.cache/safeguard): Go's module and build
# caches (go/, shared with scripts/collector.sh) and
# backends/<dir>-<hash>/<NAME>, <hash> from the tool module's go.mod and
# go.sum, so a changed pin builds anew and a second run returns at once.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SAFEGUARD_CACHE=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}
GO=/usr/local/go/bin/go

log() { printf 'backends: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	sed -n 's/^#   scripts/scripts/p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# NAME → the tool module's directory and the package its binary is built from.
module_of() {
	case $1 in
	prometheus) echo "prometheus github.com/prometheus/prometheus/cmd/prometheus" ;;
	promtool) echo "prometheus github.com/prometheus/prometheus/cmd/promtool" ;;
	jaeger) echo "jaeger github.com/jaegertracing/jaeger/cmd/jaeger" ;;
	victoria-logs) echo "victorialogs github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs" ;;
	*) die "unknown backend '$1' (prometheus, promtool, jaeger, victoria-logs)" ;;
	esac
}

# Sets BIN to NAME's cached binary, building it first if it is missing.
ensure_backend() {
	local name=$1 dir pkg src hash out tmp start
	read -r dir pkg < <(module_of "$name")
	src=$HERE/tests/backends/$dir
	hash=$(cat "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)
	out=$SAFEGUARD_CACHE/backends/$dir-$hash
	BIN=$out/$name
	[[ -x $BIN ]] && return

	[[ -x $GO ]] || die "$GO not found: run scripts/setup.sh host (it installs Go into /usr/local/go)"
	mkdir -p "$SAFEGUARD_CACHE/backends"
	# One build at a time; whoever waited finds the binary built.
	exec 9>"$SAFEGUARD_CACHE/backends/.lock"
	flock 9
	if [[ ! -x $BIN ]]; then
		mkdir -p "$out"
		tmp=$(mktemp "$out/.$name.XXXXXX")
		log "building $name ($pkg, pinned by tests/backends/$dir); the first build takes minutes"
		start=$SECONDS
		# -mod=readonly: exactly the versions go.sum pins, nothing resolved anew.
		(cd "$src" &&
			GOPATH=$SAFEGUARD_CACHE/go GOMODCACHE=$SAFEGUARD_CACHE/go/pkg/mod \
				GOCACHE=$SAFEGUARD_CACHE/go/cache GOTOOLCHAIN=local \
				GOFLAGS="-mod=readonly -modcacherw" CGO_ENABLED=0 \
				nice -n 10 "$GO" build -trimpath -o "$tmp" "$pkg") ||
			{
				rm -f "$tmp"
				die "building $name failed (the go command's output is above)"
			}
		mv -f "$tmp" "$BIN"
		log "built $BIN in $((SECONDS - start))s"
	fi
	exec 9>&-
}

case ${1:-} in
path)
	[[ $# -eq 2 ]] || usage
	ensure_backend "$2"
	printf '%s\n' "$BIN"
	;;
all)
	[[ $# -eq 1 ]] || usage
	for name in prometheus promtool jaeger victoria-logs; do
		ensure_backend "$name"
	done
	;;
*)
	usage
	;;
esac
