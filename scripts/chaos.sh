#!/usr/bin/env bash
# Chaos on a cluster elected on etcd (README "Leader election and records on etcd"): a 3-member etcd, 3 group managers
# each on a host (network namespace) of its own, 3 controllers on test-driver hosts, the bootstrap in the hub. While
# several clients submit virtual clusters of 1-5 VMs, every 2-5 s a random leader, manager, controller or (now and
# then) etcd member is killed with SIGKILL and restarted, and the leader's host is cut off the network and healed.
# Then scripts/chaos.py checks: every task id answers a final result, no domain exists twice, every RUNNING VM is on
# the host its result names, no address was given twice, no two leaders in one term; and prints the figures.
#
#   scripts/chaos.sh                  1,000 submissions over 5 minutes (root)
#   scripts/chaos.sh --short          150 submissions over 40 s (what scripts/test.sh runs)
#   scripts/chaos.sh [DOZE_BINARY] [chaos.py options…]   e.g. --submissions 300 --duration 90 --seed 7
# Everything it creates (namespaces, etcd members, nodes) goes at the end, also on failure. KEEP=1 leaves it up.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "chaos: needs root (network namespaces)" >&2; exit 2; }
OPTS=(--submissions 1000 --duration 300 --clients 4)
BIN=""
for a in "$@"; do
  case "$a" in
    --short) OPTS=(--submissions 150 --duration 40 --clients 3) ;;
    -*) ;;
    *) [ -z "$BIN" ] && [ -x "$a" ] && BIN=$a ;;
  esac
done
EXTRA=(); skip=0
for a in "$@"; do
  if [ "$a" = --short ] || [ "$a" = "$BIN" ]; then continue; fi
  EXTRA+=("$a")
done
if [ -z "$BIN" ]; then
  scripts/setup.sh --netns --etcd
  swift build --product doze 2>&1 | grep -E "error|Build of" >&2 || true
  BIN=$(swift build --show-bin-path)/doze
fi

W=$(mktemp -d /tmp/doze-chaos.XXXXXX)
CLIENT_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')   # a free port
cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $BIN cluster down $W/chaos.yaml --run-dir $W/run"; exit $rc; fi
  "$BIN" cluster down "$W/chaos.yaml" --run-dir "$W/run" >/dev/null 2>&1 || echo "chaos: cluster down reported a problem" >&2
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT

# Test-driver hosts big enough for every VM of the run (4,096 CPUs and 16 TiB each).
for i in 1 2 3; do
  cat > "$W/host$i.xml" <<EOX
<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>16</sockets><cores>128</cores><threads>2</threads><active>4096</active></cpu>
<memory>17179869184</memory></node>
EOX
done
cat > "$W/chaos.yaml" <<EOY
name: chaos
secret: doze-chaos-secret
admin_token_file: $W/admin.token    # the cluster's own (off loopback tokens are required); chaos.py sends it
network: { subnet: 10.77.2.0/24, client_listen: 127.0.0.1:$CLIENT_PORT }
vm_subnet: 10.90.0.0/16
heartbeat: { interval_ms: 250, controller_timeout_ms: 1200, manager_timeout_ms: 1200, leader_timeout_ms: 2000 }
etcd:
  lease_ttl_s: 3
  prefix: /doze/chaos
  members:
    - { name: e1, client: 10.77.2.21:2379, peer: 10.77.2.21:2380 }
    - { name: e2, client: 10.77.2.22:2379, peer: 10.77.2.22:2380 }
    - { name: e3, client: 10.77.2.23:2379, peer: 10.77.2.23:2380 }
bootstrap:
  - listen: 10.77.2.1:5000
managers:
  - { name: gm-1, listen: 10.77.2.2:5001 }
  - { name: gm-2, listen: 10.77.2.3:5001 }
  - { name: gm-3, listen: 10.77.2.4:5001 }
controllers:
  - { name: lc-1, listen: 10.77.2.11:5010, host: host1.xml }
  - { name: lc-2, listen: 10.77.2.12:5010, host: host2.xml }
  - { name: lc-3, listen: 10.77.2.13:5010, host: host3.xml }
EOY
"$BIN" cluster up "$W/chaos.yaml" --detach --run-dir "$W/run" > "$W/up.out" 2>&1 || { cat "$W/up.out"; exit 1; }
echo "chaos: cluster up (3 etcd members, 3 managers on hosts of their own, 3 controllers); run directory $W/run"
DOZE_TOKEN_FILE="$W/admin.token" ip netns exec doze-chaos-hub python3 scripts/chaos.py "$W/run/layout.json" "${OPTS[@]}" "${EXTRA[@]}"
