#!/bin/sh
# Inside a test VM: starts the agent with every module on the BPF-LSM tier
# and prints how many instructions the verifier processed for each of its
# programs (the limit is 1,000,000), largest last. Run it with
#
#   tests/vm/run.sh --kernel 6.12 --bin "$CARGO_TARGET_DIR/debug/safeguard" \
#       --file tests/vm/verifier-stats.sh:/bin/verifier-stats.sh -- /bin/verifier-stats.sh
#
# and read the figures from the console log (--log). With `--without-btrfs`
# (after the script's path) it first unloads btrfs, so the programs load as
# on a host that has no btrfs (the globals BTRFS_* are then 0, and the
# verifier follows other paths).
set -u
if [ "${1:-}" = --without-btrfs ]; then
	rmmod btrfs || echo "SGTEST FAIL verifier-stats could not unload btrfs"
fi
mkdir -p /tmp/v
cat >/tmp/v/c.yaml <<'YAML'
files:
  enable: true
  mode: block
  deny: [/srv/nothing]
process:
  enable: true
  mode: block
  deny: [/srv/nothing/x]
mount:
  enable: true
  mode: block
  deny: [/srv/nothing]
network:
  enable: true
  mode: block
  cidr:
    deny: [10.9.9.9/32]
kernel:
  tier: lsm
  protect: false
otel:
  enable: false
YAML
RUST_LOG=debug /bin/safeguard run --config /tmp/v/c.yaml -o /tmp/v/events.log >/tmp/v/log 2>&1 &
agent=$!
# Loading every program takes minutes under emulation.
for _ in $(seq 600); do
	grep -q 'safeguard ready' /tmp/v/log && break
	kill -0 "$agent" 2>/dev/null || break
	sleep 1
done
grep -a 'verified_insns' /tmp/v/log |
	sed 's/.*program=\("[a-z_0-9]*"\).*verified_insns=Some(\([0-9]*\)).*/\2 \1/' | sort -n
grep -a 'ERROR' /tmp/v/log
kill "$agent" 2>/dev/null
echo "SGTEST PASS verifier-stats"
