#!/usr/bin/env bash
# Builds safeguard's OpenTelemetry Collector (deploy/collector/builder-config.yaml)
# with the official builder (OCB), once, and caches the binary:
#
#   scripts/collector.sh path             build if needed; print the binary's absolute path
#   scripts/collector.sh validate CONFIG  run the binary's `validate --config CONFIG`
#
# Only the binary's path goes to stdout; progress and errors go to stderr.
#
# Caches, under SAFEGUARD_CACHE (default ~/.cache/safeguard):
#   go/bin/builder                      OCB, at the version the manifest names
#   go/pkg/mod, go/cache                Go's module and build caches (GOPATH=go)
#   otelcol/<hash>/safeguard-otelcol    the collector, <hash> from the manifest
# A second run finds the binary and returns at once. Needs Go >= 1.26 (the
# machine's is /usr/local/go/bin/go; Debian 12's golang-go is 1.19, too old)
# and the Go module proxy (GOPROXY as set in the environment).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MANIFEST=$HERE/deploy/collector/builder-config.yaml
NAME=safeguard-otelcol
GO_MIN_MINOR=26 # Go 1.26: what the v0.162 modules' go.mod files ask for

SAFEGUARD_CACHE=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}

log() { printf 'collector: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	sed -n 's/^#   scripts/scripts/p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# The builder's version, from the manifest's "# ocb-version: vX.Y.Z" line. Every
# v0.x module in the manifest must have that same version (core and contrib
# release together); the v1.x ones are core's stable modules of that release.
ocb_version() {
	local v bad
	v=$(sed -n 's/^#[[:space:]]*ocb-version:[[:space:]]*\(v[0-9][0-9.]*\)[[:space:]]*$/\1/p' "$MANIFEST")
	[[ -n $v ]] || die "$MANIFEST has no '# ocb-version: vX.Y.Z' line"
	bad=$(grep -E '^[[:space:]]*-?[[:space:]]*gomod:.* v0\.' "$MANIFEST" | grep -v " $v\$" || true)
	[[ -z $bad ]] || die "modules in $MANIFEST not at $v: $bad"
	printf '%s\n' "$v"
}

ensure_go() {
	if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
		PATH=/usr/local/go/bin:$PATH
	fi
	command -v go >/dev/null ||
		die "go not found: install Go >= 1.$GO_MIN_MINOR (e.g. into /usr/local/go; Debian 12's golang-go is 1.19, too old)"
	local v minor
	v=$(GOTOOLCHAIN=local go env GOVERSION)
	minor=$(sed -n 's/^go1\.\([0-9]*\).*/\1/p' <<<"$v")
	[[ -n $minor && $minor -ge $GO_MIN_MINOR ]] ||
		die "$(command -v go) is $v: install Go >= 1.$GO_MIN_MINOR (e.g. into /usr/local/go)"

	export GOPATH=$SAFEGUARD_CACHE/go
	export GOMODCACHE=$GOPATH/pkg/mod
	export GOCACHE=$GOPATH/cache
	export GOBIN=$GOPATH/bin
	# Never download another Go toolchain: use this one or fail.
	export GOTOOLCHAIN=local
	# A module cache that a plain `rm -rf` (make clean-cache) can remove.
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
}

# Installs OCB at the manifest's version into $GOBIN, unless it is there.
ensure_builder() {
	local want=$1 have
	BUILDER=$GOBIN/builder
	have=$(go version -m "$BUILDER" 2>/dev/null | awk '$1 == "mod" { print $3 }' || true)
	[[ $have == "$want" ]] && return
	log "installing the collector builder $want into $GOBIN"
	mkdir -p "$GOBIN"
	nice -n 10 go install "go.opentelemetry.io/collector/cmd/builder@$want" >&2
}

# Sets BIN to the cached collector, building it first if it is missing.
ensure_collector() {
	local hash dir tmp start
	hash=$(sha256sum "$MANIFEST" | cut -c1-16)
	dir=$SAFEGUARD_CACHE/otelcol/$hash
	BIN=$dir/$NAME
	[[ -x $BIN ]] && return

	mkdir -p "$SAFEGUARD_CACHE/otelcol"
	# One build at a time; whoever waited finds the binary built.
	exec 9>"$SAFEGUARD_CACHE/otelcol/.lock"
	flock 9
	if [[ -x $BIN ]]; then
		exec 9>&-
		return
	fi
	# Holding the lock, any build directory left is one a killed run left.
	rm -rf "$SAFEGUARD_CACHE"/otelcol/.build.*

	local version
	version=$(ocb_version)
	ensure_go
	ensure_builder "$version"

	# Build in a temporary directory beside the result, so that the final
	# move is a rename on one file system.
	tmp=$(mktemp -d "$SAFEGUARD_CACHE/otelcol/.build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	log "building $NAME ($version, manifest hash $hash); the first build takes several minutes"
	start=$SECONDS
	# GOFLAGS=-e reaches only the builder's `go mod tidy` (no other go command
	# it runs has that flag): tidy also loads the tests of the components'
	# packages, and the module proxy serves no source for some of their
	# test-only dependencies (fileexporter's tests import contrib's
	# otlpencodingextension, a module that proxy does not serve), which would
	# fail the build although the collector never compiles them. Anything
	# the collector itself needs and cannot get still fails `go build`.
	(cd "$tmp" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-e" nice -n 10 "$BUILDER" --config="$MANIFEST" >&2) ||
		die "the builder failed (its output is above)"
	[[ -x $tmp/build/$NAME ]] || die "the builder made no $tmp/build/$NAME"
	"$tmp/build/$NAME" --version >&2 || die "the built collector does not run"

	mkdir -p "$dir"
	cp "$MANIFEST" "$dir/builder-config.yaml"
	mv -f "$tmp/build/$NAME" "$BIN"
	rm -rf "$tmp"
	trap - EXIT
	exec 9>&-
	log "built $BIN in $((SECONDS - start))s"
}

cmd=${1:-}
case $cmd in
path)
	[[ $# -eq 1 ]] || usage
	ensure_collector
	printf '%s\n' "$BIN"
	;;
validate)
	[[ $# -eq 2 ]] || usage
	config=$2
	[[ -f $config ]] || die "no such file: $config"
	ensure_collector
	# Harmless values for what test-config.yaml reads from the environment;
	# validate binds no port and writes no file.
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
	OTLP_GRPC_PORT=${OTLP_GRPC_PORT:-4317} OTLP_HTTP_PORT=${OTLP_HTTP_PORT:-4318} \
		HEALTH_PORT=${HEALTH_PORT:-13133} OUTPUT_DIR=${OUTPUT_DIR:-$out} \
		"$BIN" validate --config="$config" >&2 || die "$config is not valid"
	log "$config is valid"
	;;
*)
	usage
	;;
esac
