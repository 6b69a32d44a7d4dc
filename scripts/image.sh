#!/usr/bin/env bash
# Builds the agent's and the Collector's container images with podman, from
# the binaries given, and writes them as OCI archives a user can push:
#
#   scripts/image.sh AGENT_BINARY OTELCOL_BINARY [OUT_DIR]
#
# Images: safeguard:<version> (the agent's `--version`) and
# safeguard-otelcol:<version> (the builder manifest's ocb-version), the
# names and tags deploy/kustomization.yaml gives. Archives, in OUT_DIR
# (default dist/): safeguard-<version>.oci.tar and
# safeguard-otelcol-<version>.oci.tar. Push one with
#   skopeo copy oci-archive:dist/safeguard-0.1.0.oci.tar docker://REGISTRY/safeguard:0.1.0
# or `podman load -i` it and `podman push`. Only the image names go to
# stdout, one per line.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# podman's defaults this machine's sandbox refuses (see the file).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/tests/image/containers.conf}

log() { printf 'image: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ $# -ge 2 && $# -le 3 ]] || {
	sed -n 's/^#   scripts/scripts/p' "${BASH_SOURCE[0]}" >&2
	exit 2
}
agent=$1
otelcol=$2
out=${3:-$HERE/dist}
[[ -x $agent ]] || die "$agent is not an executable"
[[ -x $otelcol ]] || die "$otelcol is not an executable"
command -v podman >/dev/null || die "podman not found: run scripts/setup.sh image"

version=$("$agent" --version | awk '{ print $2 }')
[[ -n $version ]] || die "$agent --version says no version"
otel_version=$(sed -n 's/^#[[:space:]]*ocb-version:[[:space:]]*v\([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$HERE/deploy/collector/builder-config.yaml")
[[ -n $otel_version ]] || die "no ocb-version in deploy/collector/builder-config.yaml"
source_url=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$HERE/Cargo.toml")
licenses=$(sed -n 's/^license = "\(.*\)"$/\1/p' "$HERE/Cargo.toml")
certs=/etc/ssl/certs/ca-certificates.crt
[[ -f $certs ]] || die "$certs not found (Debian package ca-certificates)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The agent: its binary and every library ldd names, at the same paths.
a=$stage/agent/rootfs
mkdir -p "$a/usr/bin" "$a/etc/ssl/certs" "$a/etc/safeguard" "$a/var/lib/safeguard" \
	"$a/var/log/safeguard" "$a/run/safeguard" "$a/tmp"
install -m 0755 "$agent" "$a/usr/bin/safeguard"
while read -r lib; do
	mkdir -p "$a$(dirname "$lib")"
	cp -L "$lib" "$a$lib"
done < <(ldd "$agent" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
cp "$certs" "$a/etc/ssl/certs/"
chmod 1777 "$a/tmp"

# The Collector: a static Go binary (CGO off in the builder), its default
# configuration, and its user.
ldd "$otelcol" >/dev/null 2>&1 && die "$otelcol is dynamically linked; the image holds no libraries for it"
o=$stage/otelcol/rootfs
mkdir -p "$o/usr/bin" "$o/etc/otelcol" "$o/etc/ssl/certs" "$o/var/lib/otelcol"
install -m 0755 "$otelcol" "$o/usr/bin/safeguard-otelcol"
install -m 0644 "$HERE/deploy/collector/sidecar-config.yaml" "$o/etc/otelcol/config.yaml"
cp "$certs" "$o/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/sbin/nologin\notelcol:x:10001:10001:otelcol:/var/lib/otelcol:/sbin/nologin\n' >"$o/etc/passwd"
printf 'root:x:0:\notelcol:x:10001:\n' >"$o/etc/group"
# The queue directory is the Collector user's (a volume there usually is).
chown -R 10001:10001 "$o/var/lib/otelcol"

mkdir -p "$out"
build() {
	local name=$1 tag=$2 dir=$3
	cp "$HERE/deploy/image/$name.Containerfile" "$dir/Containerfile"
	log "building $name:$tag"
	podman build --quiet --file "$dir/Containerfile" --tag "$name:$tag" \
		--build-arg VERSION="$tag" --build-arg SOURCE="$source_url" \
		--build-arg LICENSES="$licenses" "$dir" >/dev/null
	rm -f "$out/$name-$tag.oci.tar"
	podman save --quiet --format oci-archive --output "$out/$name-$tag.oci.tar" "$name:$tag"
	log "wrote $out/$name-$tag.oci.tar"
	printf '%s\n' "$name:$tag"
}
build safeguard "$version" "$stage/agent"
build safeguard-otelcol "$otel_version" "$stage/otelcol"
