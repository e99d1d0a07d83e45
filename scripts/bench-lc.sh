#!/usr/bin/env bash
# Benchmark: 1,000 VMs started and destroyed through `doze lc`'s HTTP API, and in the same run the same 1,000
# directly through the libvirt layer; prints both times and their ratio (target: ratio <= 3).
#   scripts/bench-lc.sh [--count N] [--concurrency N] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release 2>&1 | grep -E "error|Build complete" >&2 || true
BIN=$(swift build -c release --show-bin-path)

W=$(mktemp -d /tmp/doze-bench.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

# A host big enough for every VM at once: the quota defaults to the host's size.
cat >"$W/host.xml" <<XML
<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>1024</cores><threads>1</threads><active>1024</active></cpu>
<memory>$((256 * 1024 * 1024))</memory></node>
XML

"$BIN/doze" lc --listen 127.0.0.1:0 --hypervisor "test://$W/host.xml" --state-dir "$W/state" --log-level warning >"$W/lc.log" 2>&1 &
PID=$!
for _ in $(seq 200); do [ -s "$W/state/listen.addr" ] && break; sleep 0.05; done
[ -s "$W/state/listen.addr" ] || { cat "$W/lc.log"; exit 1; }
ADDR=$(cat "$W/state/listen.addr")
echo "machine: $(nproc) cores, $(uname -r); doze lc pid $PID on $ADDR"
"$BIN/doze-bench" lc --url "http://$ADDR" --host-file "$W/host.xml" "$@"
