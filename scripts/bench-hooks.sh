#!/usr/bin/env bash
# make bench, hook overhead: the cost the agent's programs add to openat,
# connect and fork+exec, on the BPF-LSM tier (in a QEMU VM, Debian's 6.12
# kernel) and on the audit tier (this host), against no agent in the same
# run. See tests/vm-guest/src/hook_bench.rs for the method.
#
#   scripts/bench-hooks.sh [SECONDS_PER_MEASUREMENT] [ROUNDS]
#
# Prints a Markdown table; the raw SGBENCH lines are kept in
# $SAFEGUARD_CACHE/bench-hooks-*.log.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${1:-1}
ROUNDS=${2:-3}
CACHE=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}
TARGET=${CARGO_TARGET_DIR:-$CACHE/target}
BIN=$TARGET/release

cd "$HERE"
cargo build --release --bin safeguard --bin safeguard-hook-bench >&2

host_log=$CACHE/bench-hooks-host.log
vm_log=$CACHE/bench-hooks-vm.log
echo "bench-hooks: audit tier on this host ($(uname -r))" >&2
"$BIN/safeguard-hook-bench" --agent "$BIN/safeguard" --tier tracepoint \
	--seconds "$SECONDS_EACH" --rounds "$ROUNDS" >"$host_log"
echo "bench-hooks: BPF-LSM tier in a VM (Debian 6.12, TCG)" >&2
tests/vm/run.sh --kernel 6.12 --timeout 3000 --log "$vm_log.console" \
	--bin "$BIN/safeguard" --bin "$BIN/safeguard-hook-bench" -- \
	/bin/safeguard-hook-bench --tier lsm --seconds "$SECONDS_EACH" --rounds "$ROUNDS" >&2
grep -a '^SGBENCH' "$vm_log.console" >"$vm_log"

echo "| tier | workload | agent | ns/op | × no agent | target |"
echo "|---|---|---|---:|---:|---|"
cat "$vm_log" "$host_log" | awk '$2 == "hook" {
	# SGBENCH hook <tier> <workload> <setup> <ns> <ratio>
	target = ($5 == "block,10000-rules") ? ($7 <= 1.05 ? "≤ 1.05×: met" : sprintf("≤ 1.05×: missed by %.0f %%", ($7 - 1.05) * 100)) : ""
	printf "| %s | %s | %s | %d | %.3f | %s |\n", ($3 == "lsm" ? "BPF-LSM (VM)" : "audit (host)"), $4, $5, $6, $7, target
}'
echo
echo "Per program, block mode with 10,000 rules (kernel.bpf_stats_enabled):"
echo
echo "| tier | program | ns/run | runs |"
echo "|---|---|---:|---:|"
cat "$vm_log" "$host_log" | awk '$2 == "prog" {
	printf "| %s | %s | %d | %d |\n", ($3 == "lsm" ? "BPF-LSM (VM)" : "audit (host)"), $4, $5, $6
}'
