#!/usr/bin/env bash
# kernel.sh <6.1|6.12>
#
# Makes sure the newest Debian bookworm kernel of the given series is in the
# cache and prints the absolute path of its vmlinuz on stdout. Progress goes
# to stderr.
#
# Cache layout: $SAFEGUARD_CACHE/kernels/<package-name>/{vmlinuz,config,package}
# (SAFEGUARD_CACHE defaults to ~/.cache/safeguard). An entry only appears once
# it is complete (extract into a temp dir next to it, then rename).
set -euo pipefail

CACHE="${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}"
KDIR="$CACHE/kernels"
WORK=""

log() { printf 'kernel.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	cat >&2 <<-EOF
		usage: $0 <series>     e.g. 6.1 or 6.12
		Prints the path of the cached vmlinuz of the newest Debian kernel of
		that series (downloading it with apt-get download if needed).
	EOF
	exit 2
}

cleanup() {
	if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Regex matching the image package names of a series, e.g. for 6.1
# "linux-image-6.1.0-56-amd64" and for 6.12 "linux-image-6.12.117+deb12-amd64".
# The dot after the series keeps 6.1 from matching 6.12.
name_regex() {
	local series_re="${1//./\\.}"
	printf '^linux-image-%s\\.[0-9][^ ]*-amd64%s$' "$series_re" "$2"
}

# Print the newest package name of the series known to apt (local indexes,
# no network). Prefers the signed image; falls back to -unsigned.
# -cloud and -rt flavours are excluded.
newest_available() {
	local series="$1" suffix re names
	for suffix in "" "-unsigned"; do
		re=$(name_regex "$series" "$suffix")
		names=$(apt-cache search --names-only "$re" 2>/dev/null | awk '{print $1}' |
			grep -E -- "$re" | grep -Ev -- '-(cloud|rt)-amd64' | sort -V || true)
		if [[ -n "$names" ]]; then
			tail -n1 <<<"$names"
			return 0
		fi
	done
	return 1
}

# Print the newest package of the series that is already cached.
newest_cached() {
	local series="$1" d names=""
	[[ -d "$KDIR" ]] || return 1
	for d in "$KDIR"/linux-image-*; do
		is_cached "$(basename "$d")" || continue
		names+="$(basename "$d")"$'\n'
	done
	names=$(grep -E "$(name_regex "$series" "")|$(name_regex "$series" "-unsigned")" <<<"$names" |
		sort -V || true)
	[[ -n "$names" ]] || return 1
	tail -n1 <<<"$names"
}

# The modules the VM tests load (the initramfs has no /lib/modules), in
# load order, by their path below kernel/: overlayfs (the overlay rows),
# SCTP with what it needs (the SCTP rows), ext4 on a loop device (a
# filesystem that gives a freed inode number to the next new file), and
# btrfs with what it needs (subvolumes: a device number per subvolume;
# zstd_compress is built into 6.12).
MODULES=(
	fs/overlayfs/overlay
	crypto/crc32c_generic
	lib/libcrc32c
	net/ipv4/udp_tunnel
	net/ipv6/ip6_udp_tunnel
	net/sctp/sctp
	drivers/block/loop
	lib/crc16
	fs/mbcache
	fs/jbd2/jbd2
	fs/ext4/ext4
	crypto/xor
	lib/raid6/raid6_pq
	lib/zstd/zstd_compress
	fs/btrfs/btrfs
)

# A cached kernel has its vmlinuz and the modules (modules/order lists them
# in load order), extracted for this list of modules (modules/wanted).
is_cached() {
	[[ -f "$KDIR/$1/vmlinuz" && -f "$KDIR/$1/modules/order" ]] &&
		[[ "$(cat "$KDIR/$1/modules/wanted" 2>/dev/null)" == "${MODULES[*]}" ]]
}

apt_update() {
	log "running apt-get update"
	if ! apt-get update >&2; then
		log "warning: apt-get update failed"
		return 1
	fi
}

# Download one kernel package into a fresh work dir ($WORK). Returns non-zero
# if apt cannot get it. Kept separate from unpack() because functions called
# as an `if` condition run without `set -e`.
download() {
	local pkg="$1"
	mkdir -p "$KDIR"
	# Leftovers of interrupted runs (older than an hour, so a concurrent run's
	# work dir is left alone).
	find "$KDIR" -maxdepth 1 -name '.tmp-*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true

	# The work dir lives inside $KDIR so the final rename is atomic.
	WORK=$(mktemp -d "$KDIR/.tmp-$pkg.XXXXXX")
	log "downloading $pkg"
	# Running as root, apt would try to drop to the _apt user, which cannot
	# write into our private work dir; download as the calling user instead.
	if ! (cd "$WORK" && apt-get -q -o APT::Sandbox::User="$(id -un)" download "$pkg" >&2); then
		rm -rf "$WORK"
		WORK=""
		return 1
	fi
}

# Unpack the .deb fetched by download() and move the result into the cache.
unpack() {
	local pkg="$1" deb vmlinuz config
	deb=$(find "$WORK" -maxdepth 1 -name '*.deb' | head -n1)
	[[ -n "$deb" ]] || die "apt-get download produced no .deb for $pkg"

	# Only /boot and the modules are needed: this is `dpkg -x` restricted
	# to them, which skips writing /lib/modules (~400 MB for 6.1).
	log "extracting $(basename "$deb")"
	mkdir -p "$WORK/x" "$WORK/out/modules"
	local patterns=() m module name
	for m in "${MODULES[@]}"; do patterns+=("*/kernel/$m.ko*"); done
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$WORK/x" --wildcards './boot/*' "${patterns[@]}" ||
		log "warning: not every module is in $pkg"
	for m in "${MODULES[@]}"; do
		name=$(basename "$m")
		module=$(find "$WORK/x" -path "*/kernel/$m.ko*" | head -n1)
		if [[ -z "$module" ]]; then
			[[ "$name" != overlay ]] || die "no overlay.ko in $pkg"
			log "warning: no $name.ko in $pkg (built in, or not built)"
			continue
		fi
		case "$module" in
		# busybox's insmod hands the kernel the bytes as they are: store the
		# module uncompressed (its signature is inside, unchanged).
		*.xz) xz -dc "$module" >"$WORK/out/modules/$name.ko" ;;
		*.zst) zstd -dcq "$module" >"$WORK/out/modules/$name.ko" ;;
		*) cp "$module" "$WORK/out/modules/$name.ko" ;;
		esac
		echo "$name.ko" >>"$WORK/out/modules/order"
	done
	vmlinuz=$(find "$WORK/x/boot" -name 'vmlinuz-*' | head -n1)
	config=$(find "$WORK/x/boot" -name 'config-*' | head -n1)
	[[ -n "$vmlinuz" ]] || die "no vmlinuz in $pkg"
	cp "$vmlinuz" "$WORK/out/vmlinuz"
	if [[ -n "$config" ]]; then
		cp "$config" "$WORK/out/config"
		grep -qx 'CONFIG_BPF_LSM=y' "$config" || log "warning: $pkg lacks CONFIG_BPF_LSM=y"
	fi
	dpkg-deb -f "$deb" Package Version >"$WORK/out/package"
	echo "${MODULES[*]}" >"$WORK/out/modules/wanted"

	# A directory cached for another list of modules is replaced.
	if [[ -d "$KDIR/$pkg" ]] && ! is_cached "$pkg"; then
		rm -rf "$KDIR/$pkg"
	fi
	# mv -T fails instead of moving into an existing directory, which happens
	# only if a concurrent run finished the same package first: keep theirs.
	if ! mv -T "$WORK/out" "$KDIR/$pkg" 2>/dev/null; then
		is_cached "$pkg" || die "could not move $pkg into the cache"
	fi
	rm -rf "$WORK"
	WORK=""
	log "cached $pkg in $KDIR/$pkg"
}

main() {
	[[ $# -eq 1 ]] || usage
	local series="$1" pkg="" cached=""
	[[ "$series" =~ ^[0-9]+\.[0-9]+$ ]] || usage
	command -v apt-cache >/dev/null || die "apt-cache not found (this needs a Debian host)"
	mkdir -p "$KDIR"
	KDIR=$(cd "$KDIR" && pwd) # the printed path must be absolute

	cached=$(newest_cached "$series" || true)

	if ! pkg=$(newest_available "$series"); then
		log "no linux-image-$series.* package in apt's indexes"
		apt_update || true
		pkg=$(newest_available "$series" || true)
	fi

	if [[ -n "$pkg" ]] && ! is_cached "$pkg"; then
		if download "$pkg"; then
			unpack "$pkg"
		else
			# The index may be stale (the archive drops superseded kernels):
			# refresh once and retry with whatever is newest then.
			log "download of $pkg failed"
			pkg=""
			if apt_update; then
				pkg=$(newest_available "$series" || true)
				if [[ -n "$pkg" ]] && ! is_cached "$pkg"; then
					if download "$pkg"; then unpack "$pkg"; else pkg=""; fi
				fi
			fi
		fi
	fi

	if [[ -z "$pkg" ]]; then
		# Offline (or the archive is unreachable): fall back to the cache.
		[[ -n "$cached" ]] || die "no kernel of series $series available (apt failed and nothing cached)"
		log "warning: using cached $cached (could not get the newest package from apt)"
		pkg="$cached"
	fi

	log "using $pkg"
	printf '%s\n' "$KDIR/$pkg/vmlinuz"
}

main "$@"
