#!/usr/bin/env bash
# Benchmark: virtual clusters submitted through the bootstrap of a local cluster (1 bootstrap, 3 group managers,
# 20 local controllers on test-driver hosts), client-observed from POST to final answer: 200 1-VM clusters
# (p50, p99) and one 1,000-VM cluster; in the same run the floor, the same VMs created directly through libvirt.
#   scripts/bench-submit.sh [--controllers N] [--singles N] [--large N] [--base-port P]
set -euo pipefail
cd "$(dirname "$0")/.."
CONTROLLERS=20; BASE=7100; ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --controllers) CONTROLLERS=$2; shift 2;;
    --base-port) BASE=$2; shift 2;;
    *) ARGS+=("$1"); shift;;
  esac
done
scripts/setup.sh
swift build -c release --product doze 2>&1 | grep -E "error|Build complete" >&2 || true
swift build -c release --product doze-bench 2>&1 | grep -E "error|Build complete" >&2 || true
BIN=$(swift build -c release --show-bin-path)

W=$(mktemp -d /tmp/doze-bench-submit.XXXXXX)
cleanup() { "$BIN/doze" cluster down "$W/topology.yaml" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT

# Hosts big enough for every VM of the run.
{
  echo "name: bench-submit"
  echo "secret: bench-secret"
  echo "run_dir: $W/run"
  echo "vm_subnet: 10.96.0.0/16"
  echo "bootstrap:"
  echo "  - listen: 127.0.0.1:$BASE"
  echo "managers:"
  for i in 1 2 3; do echo "  - listen: 127.0.0.1:$((BASE + i))"; done
  echo "controllers:"
  for i in $(seq "$CONTROLLERS"); do
    cat >"$W/host$i.xml" <<XML
<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>256</cores><threads>1</threads><active>256</active></cpu>
<memory>$((512 * 1024 * 1024))</memory></node>
XML
    echo "  - listen: 127.0.0.1:$((BASE + 10 + i))"
    echo "    host: host$i.xml"
  done
} >"$W/topology.yaml"
LOG_LEVEL=warning "$BIN/doze" cluster up "$W/topology.yaml" --detach >/dev/null
# Every controller under a manager of the leader (bounded).
for _ in $(seq 200); do
  N=$(curl -s "http://127.0.0.1:$BASE/bootstrap?getLocalControllerList" | python3 -c 'import json,sys
try: print(len(json.load(sys.stdin)["localControllers"]))
except Exception: print(0)')
  [ "$N" = "$CONTROLLERS" ] && break
  sleep 0.1
done
[ "$N" = "$CONTROLLERS" ] || { echo "only $N of $CONTROLLERS controllers joined" >&2; exit 1; }
echo "machine: $(nproc) cores, $(uname -r); cluster: 1 bootstrap, 3 group managers, $CONTROLLERS local controllers"
HOSTS=$(seq -s, -f "$W/host%g.xml" "$CONTROLLERS")
"$BIN/doze-bench" submit --bootstrap "127.0.0.1:$BASE" --host-files "$HOSTS" "${ARGS[@]}"
