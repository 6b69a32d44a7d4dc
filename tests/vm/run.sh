#!/usr/bin/env bash
# run.sh: boot a Debian kernel under QEMU (TCG) with BPF-LSM enabled, run one
# command inside a busybox initramfs and report the SGTEST results it prints.
# See README.md in this directory for the protocol.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LSM_LIST="lockdown,capability,landlock,bpf"

KERNEL=""
TIMEOUT=600
LOG=""
MEM=1024
EXTRA_APPEND=""
BINS=()
FILES=()
CMD=()

TMP=""
ROOT=""
CPIO=()
MKE2FS=""
MKFS_BTRFS=""
BTRFS=""

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

usage() {
	cat >&2 <<-'EOF'
		usage: run.sh --kernel <6.1|6.12|/path/to/vmlinuz> [options] -- /guest/prog [arg...]

		  --kernel K          kernel series (fetched by kernel.sh) or a vmlinuz path
		  --bin PATH          copy a host binary to /bin/<name> plus its shared libs (repeatable)
		  --file SRC:DST      copy a host file or directory to DST in the guest (repeatable)
		  --timeout SECS      host-side limit for the whole VM run (default 600)
		  --log FILE          console log (default: a temp file, path printed)
		  --mem MB            guest memory (default 1024)
		  --append ARGS       extra kernel command line arguments
	EOF
	exit 2
}

cleanup() {
	if [[ -n "$TMP" ]]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT

parse_args() {
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--kernel) KERNEL="${2:?--kernel needs a value}"; shift 2 ;;
		--bin) BINS+=("${2:?--bin needs a value}"); shift 2 ;;
		--file) FILES+=("${2:?--file needs a value}"); shift 2 ;;
		--timeout) TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
		--log) LOG="${2:?--log needs a value}"; shift 2 ;;
		--mem) MEM="${2:?--mem needs a value}"; shift 2 ;;
		--append) EXTRA_APPEND="${2:?--append needs a value}"; shift 2 ;;
		-h | --help) usage ;;
		--) shift; CMD=("$@"); break ;;
		*) log "unknown argument: $1"; usage ;;
		esac
	done
	[[ -n "$KERNEL" ]] || { log "--kernel is required"; usage; }
	[[ ${#CMD[@]} -gt 0 ]] || { log "no guest command given after --"; usage; }
	[[ "$TIMEOUT" =~ ^[0-9]+$ && "$TIMEOUT" -gt 0 ]] || die "--timeout must be a positive integer"
	[[ "$MEM" =~ ^[0-9]+$ ]] || die "--mem must be an integer (MB)"
}

# The host packages are installed by a separate setup script; only check here.
check_tools() {
	local missing=() t
	for t in qemu-system-x86_64 busybox gzip timeout ldd; do
		command -v "$t" >/dev/null || missing+=("$t")
	done
	MKE2FS=$(PATH="$PATH:/usr/sbin:/sbin" command -v mke2fs) || missing+=(mke2fs)
	MKFS_BTRFS=$(PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.btrfs) || missing+=(mkfs.btrfs)
	BTRFS=$(PATH="$PATH:/usr/sbin:/sbin" command -v btrfs) || missing+=(btrfs)
	[[ ${#missing[@]} -eq 0 ]] ||
		die "missing host tools: ${missing[*]} (apt-get install qemu-system-x86 busybox-static cpio gzip e2fsprogs btrfs-progs)"
	# The dynamic `busybox` package would need host libraries in the guest.
	if ldd "$(command -v busybox)" >/dev/null 2>&1; then
		die "$(command -v busybox) is dynamically linked; install busybox-static"
	fi
	# Prefer GNU cpio; busybox's cpio can write newc archives too.
	if command -v cpio >/dev/null; then
		CPIO=(cpio)
	else
		log "cpio not found, using busybox cpio"
		CPIO=(busybox cpio)
	fi
}

resolve_kernel() {
	if [[ -f "$KERNEL" ]]; then
		VMLINUZ=$(realpath "$KERNEL")
		LABEL=$(basename "$KERNEL")
		KSOURCE="$VMLINUZ"
	else
		VMLINUZ=$("$HERE/kernel.sh" "$KERNEL") || die "could not get kernel $KERNEL"
		LABEL="$KERNEL"
		KSOURCE=$(basename "$(dirname "$VMLINUZ")") # the package name
	fi
}

# Copy a host file to the same path (or DST) under the initramfs root.
# Dereferences symlinks; removes an existing entry first so a busybox applet
# symlink is replaced rather than written through (which would clobber busybox).
install_file() {
	local src="$1" dst="$ROOT$2"
	mkdir -p "$(dirname "$dst")"
	rm -rf "$dst"
	cp -L "$src" "$dst"
}

# Copy the shared libraries (and the dynamic loader) a binary needs, at the
# paths ldd reports, e.g. /lib64/ld-linux-x86-64.so.2.
install_libs() {
	local bin="$1" out line lib
	# ldd exits non-zero for static binaries ("not a dynamic executable").
	out=$(ldd "$bin" 2>&1) || return 0
	if grep -q 'not found' <<<"$out"; then
		die "missing libraries for $bin:"$'\n'"$out"
	fi
	while read -r line; do
		# "libc.so.6 => /lib/.../libc.so.6 (0x..)" or "/lib64/ld-linux-x86-64.so.2 (0x..)"
		lib=$(grep -o '/[^ ]*' <<<"$line" | head -n1 || true)
		[[ -n "$lib" && -e "$lib" ]] || continue
		[[ -e "$ROOT$lib" ]] || install_file "$lib" "$lib"
	done <<<"$out"
}

install_busybox() {
	local bb applet
	bb=$(command -v busybox)
	install_file "$bb" /bin/busybox
	for applet in $("$bb" --list); do
		[[ "$applet" == busybox ]] && continue
		ln -sf busybox "$ROOT/bin/$applet"
	done
}

# Quote a string for the guest's sh: 'it'\''s'.
sh_quote() {
	local s="$1" q="'"
	printf "'%s'" "${s//$q/$q\\$q$q}"
}

write_init() {
	local quoted="" a
	for a in "${CMD[@]}"; do quoted+=" $(sh_quote "$a")"; done

	cat >"$ROOT/init" <<-'EOF'
		#!/bin/sh
		# PID 1 of the test VM. It must never exit (that panics the kernel):
		# no `set -e`, and it ends in poweroff followed by an endless loop.
		export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root SGVM=1

		mnt() { # mnt <fstype> <dir>
			mkdir -p "$2" 2>/dev/null
			mount -t "$1" "$1" "$2" || echo "SGVM-WARN could not mount $1 on $2"
		}

		mnt proc /proc
		mnt sysfs /sys
		mnt devtmpfs /dev
		# If the kernel found no /dev/console before devtmpfs existed, our
		# stdio is closed; (re)open it on the console.
		exec </dev/console >/dev/console 2>&1
		mnt securityfs /sys/kernel/security
		mnt bpf /sys/fs/bpf
		mnt tracefs /sys/kernel/tracing
		mnt debugfs /sys/kernel/debug
		mnt cgroup2 /sys/fs/cgroup
		mnt tmpfs /tmp
		mnt tmpfs /run
		mkdir -p /dev/pts /dev/shm
		mount -t devpts devpts /dev/pts 2>/dev/null
		if [ -f /lib/modules/order ]; then
			while read -r module; do
				insmod "/lib/modules/$module" || echo "SGVM-WARN could not load $module"
			done </lib/modules/order
		fi
		ip link set lo up || echo "SGVM-WARN could not bring lo up"
		hostname sgvm
		ulimit -l unlimited 2>/dev/null # memlock, for BPF maps on old kernels

		echo # the firmware's last line has no newline
		echo "SGVM-KERNEL $(uname -r)"
		echo "SGVM-LSM $(cat /sys/kernel/security/lsm 2>/dev/null)"
		echo "SGVM-START"

		cd /
	EOF
	# The only generated line: the guest command, quoted for sh.
	printf 'set --%s\n' "$quoted" >>"$ROOT/init"
	cat >>"$ROOT/init" <<-'EOF'
		"$@" </dev/null
		status=$?
		echo "SGVM-EXIT $status"

		# Kernel problems logged below the console loglevel would be
		# invisible on the console; repeat them so the host can see them.
		dmesg | grep -E 'Kernel panic|Oops|BUG:|WARNING:|general protection' |
			sed 's/^/SGVM-DMESG /'

		poweroff -f
		echo o >/proc/sysrq-trigger
		while :; do sleep 1; done
	EOF
	chmod 755 "$ROOT/init"
}

build_initramfs() {
	local b f src dst name
	ROOT="$TMP/root"
	mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,tmp,run,lib,lib64}
	install_busybox

	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
	printf 'root:x:0:\n' >"$ROOT/etc/group"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$ROOT/etc/hosts"

	for b in ${BINS[@]+"${BINS[@]}"}; do
		[[ -f "$b" ]] || die "--bin $b: no such file"
		name=$(basename "$b")
		install_file "$b" "/bin/$name"
		chmod 755 "$ROOT/bin/$name"
		install_libs "$b"
	done

	# The host's mke2fs replaces busybox's, which makes ext2 only: ext4 with
	# a journal gives a freed inode number to the next new file at once
	# (the inode-reuse rows), where ext2 holds it back for a minute.
	install_file "$MKE2FS" /bin/mke2fs
	install_libs "$MKE2FS"
	# btrfs (the subvolume rows): each subvolume has a device number of its own.
	install_file "$MKFS_BTRFS" /bin/mkfs.btrfs
	install_libs "$MKFS_BTRFS"
	install_file "$BTRFS" /bin/btrfs
	install_libs "$BTRFS"

	for f in ${FILES[@]+"${FILES[@]}"}; do
		[[ "$f" == *:/* ]] || die "--file $f: expected /host/src:/guest/dst"
		src="${f%%:/*}"
		dst="/${f#*:/}"
		[[ -e "$src" ]] || die "--file $f: $src does not exist"
		mkdir -p "$(dirname "$ROOT$dst")"
		# Replace a file or applet symlink; merge a directory into an existing one.
		if [[ -L "$ROOT$dst" || -f "$ROOT$dst" ]]; then rm -f "$ROOT$dst"; fi
		cp -aT "$src" "$ROOT$dst"
	done

	# The modules kept beside a cached kernel (kernel.sh), loaded by init
	# in the order listed.
	if [[ -f "$(dirname "$VMLINUZ")/modules/order" ]]; then
		mkdir -p "$ROOT/lib/modules"
		cp "$(dirname "$VMLINUZ")"/modules/* "$ROOT/lib/modules/"
	fi

	write_init

	# The kernel's built-in initramfs normally provides /dev/console; add
	# one anyway when we are allowed to (root).
	mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true

	# cpio's stderr is chatty ("N blocks"); keep it for when it fails.
	if ! (cd "$ROOT" && find . -print0 | LC_ALL=C sort -z |
		"${CPIO[@]}" -0 -o -H newc -R 0:0 2>"$TMP/cpio.err") | gzip -1 >"$TMP/initrd.gz"; then
		cat "$TMP/cpio.err" >&2
		die "building the initramfs failed"
	fi
	log "initramfs: $(du -h "$TMP/initrd.gz" | cut -f1)"
}

run_qemu() {
	local rc
	log "booting $VMLINUZ (timeout ${TIMEOUT}s, log $LOG)"
	START=$(date +%s)
	# stdin from /dev/null: the guest must not read the host terminal, and
	# QEMU then leaves the terminal alone so Ctrl-C stops it.
	# sed -u (unbuffered) strips the serial console's \r and the SeaBIOS
	# terminal escapes (clear screen, no line wrap) that would otherwise wipe
	# the user's terminal and glue themselves onto the guest's first line.
	# --foreground keeps QEMU in our process group so Ctrl-C reaches it too.
	# -nic none: the guest only uses lo, and skipping the iPXE ROM saves ~1 s.
	# loglevel=5: warnings reach the console with their backtraces (a soft
	# lockup's, say), boot chatter does not.
	set +e
	timeout --foreground --kill-after=10 "$TIMEOUT" \
		qemu-system-x86_64 -accel tcg -cpu max -m "$MEM" -smp 2 \
		-nographic -no-reboot -nic none \
		-kernel "$VMLINUZ" -initrd "$TMP/initrd.gz" \
		-append "console=ttyS0 loglevel=5 panic=-1 lsm=$LSM_LIST $EXTRA_APPEND" \
		</dev/null 2>&1 | sed -u 's/\r//g; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$LOG"
	rc=${PIPESTATUS[0]}
	set -e
	ELAPSED=$(($(date +%s) - START))
	QEMU_RC=$rc
}

# Parse the log and print the summary. Returns non-zero on any failure.
report() {
	local clean pass=0 fail=0 skip=0 failed=0 line verdict name reason
	local kver lsm exit_line kern reasons=()
	clean=$(tr -d '\r' <"$LOG")

	echo
	echo "=== summary for kernel $LABEL ($KSOURCE) ==="
	while read -r line; do
		[[ -n "$line" ]] || continue
		read -r _ verdict name reason <<<"$line"
		case "$verdict" in
		PASS) pass=$((pass + 1)); printf 'PASS  %s %s\n' "$LABEL" "$name" ;;
		FAIL) fail=$((fail + 1)); printf 'FAIL  %s %s  %s\n' "$LABEL" "$name" "${reason:-}" ;;
		SKIP) skip=$((skip + 1)); printf 'SKIP  %s %s  %s\n' "$LABEL" "$name" "${reason:-}" ;;
		*) fail=$((fail + 1)); printf 'FAIL  %s ?  malformed line: %s\n' "$LABEL" "$line" ;;
		esac
	done < <(grep -a '^SGTEST ' <<<"$clean" || true)

	kver=$(grep -a '^SGVM-KERNEL ' <<<"$clean" | tail -n1 | cut -d' ' -f2- || true)
	lsm=$(grep -a '^SGVM-LSM' <<<"$clean" | tail -n1 | cut -s -d' ' -f2- || true)
	exit_line=$(grep -aE '^SGVM-EXIT [0-9]+$' <<<"$clean" | tail -n1 || true)
	# Kernel trouble, ignoring the test's own protocol lines.
	kern=$(grep -av '^SGTEST ' <<<"$clean" || true)

	[[ $fail -eq 0 ]] || reasons+=("$fail test(s) failed")
	[[ $((pass + fail + skip)) -gt 0 ]] || reasons+=("no tests reported (no SGTEST lines)")
	if [[ $QEMU_RC -eq 124 || $QEMU_RC -eq 137 ]]; then
		reasons+=("timed out after $TIMEOUT s")
	elif [[ $QEMU_RC -ne 0 ]]; then
		reasons+=("qemu exited with status $QEMU_RC")
	fi
	if [[ -z "$kver" ]]; then
		reasons+=("kernel did not boot (no SGVM-KERNEL line)")
	elif [[ ",$lsm," != *,bpf,* ]]; then
		reasons+=("BPF-LSM not active: /sys/kernel/security/lsm is '${lsm}'")
	fi
	if [[ -z "$exit_line" ]]; then
		[[ -z "$kver" ]] || reasons+=("test command did not finish (no SGVM-EXIT line)")
	elif [[ "$exit_line" != "SGVM-EXIT 0" ]]; then
		reasons+=("test command exited with status ${exit_line#SGVM-EXIT }")
	fi
	grep -aq 'Kernel panic' <<<"$kern" && reasons+=("kernel panic (see log)")
	grep -aqE 'Oops|BUG:' <<<"$kern" && reasons+=("kernel Oops/BUG (see log)")
	grep -aq 'WARNING:' <<<"$kern" && log "note: kernel WARNING in the log (not a failure)"

	echo "kernel $LABEL: uname ${kver:-?}, lsm ${lsm:-?}, took ${ELAPSED}s, log $LOG"
	for reason in ${reasons[@]+"${reasons[@]}"}; do
		echo "ERROR $LABEL: $reason"
		failed=1
	done
	if [[ $failed -eq 0 ]]; then
		echo "RESULT $LABEL: OK ($pass passed, $skip skipped)"
	else
		echo "RESULT $LABEL: FAILED ($pass passed, $fail failed, $skip skipped)"
	fi
	return "$failed"
}

main() {
	parse_args "$@"
	check_tools
	resolve_kernel
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/sgvm.XXXXXX")
	if [[ -z "$LOG" ]]; then
		LOG=$(mktemp "${TMPDIR:-/tmp}/sgvm-$(basename "$LABEL").XXXXXX.log")
	fi
	: >"$LOG"
	build_initramfs
	run_qemu
	report
}

main "$@"
