#!/usr/bin/env bash
# make bench, hook overhead: the cost the agent's programs add to openat,
# rename, connect and fork+exec, on the BPF-LSM tier (in a QEMU VM,
# Debian's 6.12 kernel) and on the audit tier (this host), against no agent
# in the same run. See tests/vm-guest/src/hook_bench.rs for the method.
#
#   scripts/bench-hooks.sh [SECONDS_PER_MEASUREMENT] [ROUNDS]
#
# Prints a Markdown table; the raw SGBENCH lines are kept in
# $SAFEGUARD_CACHE/bench-hooks-*.log.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${1:-1}
ROUNDS=${2:-5}
CACHE=${SAFEGUARD_CACHE:-$HOME/.cache/safeguard}
# Built where it is run from, also when called without make.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
TARGET=$CARGO_TARGET_DIR
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

echo "| tier | workload | agent | ns/op | × no agent | rounds' range | target |"
echo "|---|---|---|---:|---:|---|---|"
# The target is checked on block mode with 10,000 rules, and set beside
# what being attached costs at all (the programs attached, the workload out
# of their scope): the part of the overhead the programs' work can change.
cat "$vm_log" "$host_log" | awk '$2 == "hook" {
	# SGBENCH hook <tier> <workload> <setup> <ns> <ratio> <lowest> <highest>
	n++; tier[n] = $3; work[n] = $4; setup[n] = $5; ns[n] = $6; ratio[n] = $7
	range[n] = sprintf("%.3f–%.3f", $8, $9)
	if ($5 == "attached,out-of-scope") floor[$3, $4] = $7
}
END {
	for (i = 1; i <= n; i++) {
		target = ""
		if (setup[i] == "block,10000-rules") {
			target = (ratio[i] <= 1.05) ? "≤ 1.05×: met" : sprintf("≤ 1.05×: missed by %.0f %%", (ratio[i] - 1.05) * 100)
			if ((tier[i], work[i]) in floor)
				target = target sprintf(" (attached alone: %.3f×)", floor[tier[i], work[i]])
		}
		printf "| %s | %s | %s | %d | %.3f | %s | %s |\n", (tier[i] == "lsm" ? "BPF-LSM (VM)" : "audit (host)"), work[i], setup[i], ns[i], ratio[i], range[i], target
	}
}'
echo
echo "Per program, block mode with 10,000 rules (kernel.bpf_stats_enabled):"
echo
echo "| tier | program | ns/run | runs |"
echo "|---|---|---:|---:|"
cat "$vm_log" "$host_log" | awk '$2 == "prog" {
	printf "| %s | %s | %d | %d |\n", ($3 == "lsm" ? "BPF-LSM (VM)" : "audit (host)"), $4, $5, $6
}'
