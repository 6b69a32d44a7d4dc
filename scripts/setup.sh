#!/usr/bin/env bash
# Installs what building and testing safeguard needs, idempotently: Debian
# packages, the rust-src component, bpf-linker, Go, the test Collector and
# the test backends (Prometheus with promtool, Jaeger, VictoriaLogs), and
# the test kernels. A second run only checks and returns.
#
#   scripts/setup.sh          everything (build + tests)
#   scripts/setup.sh build    what `make run` needs
#   scripts/setup.sh host     what `make test-host` needs (build, Go, the Collector, the backends)
set -euo pipefail

WHAT=${1:-all}
case $WHAT in
all | build | host) ;;
*)
	sed -n 's/^#   scripts/scripts/p' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# bpf-linker against Debian's LLVM 22 (the default features want LLVM 23).
BPF_LINKER_VERSION=0.13.0
LLVM_VERSION=22

BUILD_PACKAGES=(llvm-${LLVM_VERSION}-dev libpolly-${LLVM_VERSION}-dev)
# podman, runc and catatonit (a pod's pause process): the images (make
# image) and the container tests;
# busybox-static: the tests' workload image.
HOST_PACKAGES=(openssl python3 systemd ca-certificates podman runc catatonit busybox-static)
VM_PACKAGES=(qemu-system-x86 busybox-static cpio xz-utils e2fsprogs btrfs-progs)

log() { printf 'setup: %s\n' "$*" >&2; }

sudo_() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

missing_packages() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
	done
}

install_packages() {
	local missing
	mapfile -t missing < <(missing_packages "$@")
	[[ ${#missing[@]} -eq 0 ]] && return
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! sudo_ apt-get install -y --no-install-recommends "${missing[@]}"; then
		log "refreshing the package lists and retrying"
		sudo_ apt-get update
		sudo_ apt-get install -y --no-install-recommends "${missing[@]}"
	fi
}

ensure_rust() {
	command -v cargo >/dev/null || { log "error: cargo not found; install Rust with rustup"; exit 1; }
	if command -v rustup >/dev/null; then
		local sysroot
		sysroot=$(rustc --print sysroot)
		if [[ ! -d $sysroot/lib/rustlib/src/rust/library/core ]]; then
			log "adding the rust-src component (for -Z build-std=core)"
			rustup component add rust-src
		fi
	fi
}

ensure_bpf_linker() {
	if command -v bpf-linker >/dev/null &&
		[[ $(bpf-linker --version 2>/dev/null) == *"$BPF_LINKER_VERSION"* ]]; then
		return
	fi
	log "building bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM_VERSION (a few minutes, once)"
	LLVM_PREFIX=/usr/lib/llvm-${LLVM_VERSION} cargo install bpf-linker \
		--version "$BPF_LINKER_VERSION" --locked \
		--no-default-features --features "llvm-${LLVM_VERSION}"
}

# Go for building the test Collector (scripts/collector.sh): Go >= 1.26 in
# /usr/local/go. Debian 12's golang-go (1.19) is too old, so the official
# toolchain is fetched from the Go module proxy, where the go command itself
# gets toolchains (module golang.org/toolchain), and linked there.
GO_VERSION=1.26.8
ensure_go() {
	local go=/usr/local/go/bin/go version minor
	if [[ -x $go ]]; then
		version=$(GOTOOLCHAIN=local "$go" env GOVERSION)
		minor=$(sed -n 's/^go1\.\([0-9]*\).*/\1/p' <<<"$version")
		[[ -n $minor && $minor -ge 26 ]] && return
	fi
	# Only a link this function made is replaced: `ln -sfn` onto a real
	# directory would put the link inside it.
	if [[ -e /usr/local/go && ! -L /usr/local/go ]]; then
		log "error: /usr/local/go holds ${version:-no working Go}; Go >= 1.26 is needed: remove or move it and run again"
		exit 1
	fi
	install_packages curl unzip ca-certificates
	local proxy cache zip root
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	cache=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}/go-toolchain
	zip=$cache/go$GO_VERSION.zip
	root=$cache/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64
	if [[ ! -x $root/bin/go ]]; then
		log "fetching Go $GO_VERSION from the Go module proxy ($proxy)"
		mkdir -p "$cache"
		curl -fsSL --retry 3 -o "$zip.part" \
			"$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip"
		mv "$zip.part" "$zip"
		rm -rf "$root"
		unzip -q -o "$zip" -d "$cache"
		rm -f "$zip"
		# Module zips keep no file modes.
		chmod -R a+rX "$root"
		chmod a+x "$root"/bin/* "$root"/pkg/tool/*/*
	fi
	sudo_ ln -sfn "$root" /usr/local/go
	"$go" version >&2
}

# The deploy checks' small Go command, built from scripts/<name> into the
# cache and rebuilt when its sources change: deploycheck (kustomize, the
# Kubernetes API types and compose-spec's loader). The first build fetches
# its module graph from the Go module proxy.
ensure_go_tool() {
	local name=$1 src bin stamp want
	src=$HERE/scripts/$name
	bin=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}/bin/$name
	stamp=$bin.sum
	want=$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -d' ' -f1)
	[[ -x $bin && -f $stamp && $(cat "$stamp") == "$want" ]] && return
	log "building $name (scripts/$name)"
	mkdir -p "$(dirname "$bin")"
	(cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly /usr/local/go/bin/go build -o "$bin" .)
	echo "$want" >"$stamp"
}

# The dashboards' LogQL and TraceQL checker (scripts/querycheck: the
# grammars Grafana's query editors use, from npm), installed into the cache
# and again when its sources change. Loki's and Tempo's own parsers are
# AGPL, which nothing here may use.
ensure_querycheck() {
	local src dst stamp want
	src=$HERE/scripts/querycheck
	dst=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}/querycheck
	stamp=$dst/.sum
	want=$(cat "$src"/package.json "$src"/package-lock.json "$src"/check.mjs | sha256sum | cut -d' ' -f1)
	[[ -f $stamp && $(cat "$stamp") == "$want" && -d $dst/node_modules ]] && return
	command -v node >/dev/null || install_packages nodejs
	command -v npm >/dev/null || install_packages npm
	log "installing querycheck (scripts/querycheck) from npm"
	rm -rf "$dst"
	mkdir -p "$dst"
	cp "$src"/package.json "$src"/package-lock.json "$src"/check.mjs "$dst"/
	(cd "$dst" && npm ci --no-audit --no-fund --loglevel=error) >&2
	echo "$want" >"$stamp"
}

ensure_kernels() {
	local k
	for k in 6.1 6.12; do
		"$HERE/tests/vm/kernel.sh" "$k" >/dev/null
	done
}

install_packages "${BUILD_PACKAGES[@]}"
ensure_rust
ensure_bpf_linker
if [[ $WHAT == all || $WHAT == host ]]; then
	install_packages "${HOST_PACKAGES[@]}"
	ensure_go
	"$HERE/scripts/collector.sh" path >/dev/null
	"$HERE/scripts/backends.sh" all
	ensure_querycheck
	ensure_go_tool deploycheck
fi
if [[ $WHAT == all ]]; then
	install_packages "${VM_PACKAGES[@]}"
	ensure_kernels
fi
log "ready"
