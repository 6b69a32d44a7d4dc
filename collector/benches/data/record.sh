#!/bin/bash
# Re-records host-audit.rec.gz, the pipeline benchmark's input: the agent
# runs on this host's audit tier (tracepoints) with `--record`, while Python
# opens a denied file 4,000 times (a quarter by relative path) and a shell
# runs `cat` and `sh -c true` 550 times. Needs root. The configuration
# here is RECORDED_WITH in ../pipeline.rs: change both together.
#
#   collector/benches/data/record.sh [path/to/safeguard]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/safeguard/target}/release/safeguard}
WORK=/tmp/sgb
rm -rf "$WORK"
mkdir -p "$WORK"
echo data >"$WORK/deny"

"$BIN" run --mode monitor --set kernel.tier=tracepoint \
	--set files.enable=true --set "files.deny=[$WORK/deny]" \
	--set process.enable=true --set "process.deny=[$WORK/nothing]" \
	--set network.enable=false --set otel.enable=false \
	-o "$WORK/events.log" --record "$WORK/rec.bin" 2>"$WORK/agent.log" &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	grep -q "safeguard ready" "$WORK/agent.log" && break
	kill -0 $agent
	sleep 0.1
done
grep -q "safeguard ready" "$WORK/agent.log"

python3 - "$WORK" <<'EOF'
import os, sys
os.chdir(sys.argv[1])
for i in range(4000):
    os.close(os.open("deny" if i % 4 == 0 else sys.argv[1] + "/deny", os.O_RDONLY))
EOF
for _ in $(seq 550); do
	cat "$WORK/deny" >/dev/null
	sh -c true
done
sleep 1
kill -INT $agent
wait $agent
trap - EXIT
gzip -9 <"$WORK/rec.bin" >"$HERE/host-audit.rec.gz"
echo "recorded $(stat -c %s "$WORK/rec.bin") bytes into $HERE/host-audit.rec.gz"
