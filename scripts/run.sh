#!/usr/bin/env bash
# Sets everything up and starts the embedded default cluster, topology/local.yaml: 1 bootstrap (127.0.0.1:5000),
# 3 group managers (5001-5003, one elected leader) and 4 local controllers (5010-5013), each controller on its
# own fake host through libvirt's test driver (no daemon, no KVM needed). Every node is its own process.
#
#   scripts/run.sh               build, start the cluster in the background, wait until it answers, return
#   scripts/run.sh --foreground  same, but stay attached (Ctrl-C stops the cluster)
#   scripts/run.sh --stop        stop the cluster started here
#   TOPOLOGY=topology/other.yaml scripts/run.sh   another topology
#   RELEASE=1 scripts/run.sh      an optimized build (.build/release) instead of the debug one scripts/test.sh shares
#
# Node state (VMs of the fake hosts, quotas, pools, metrics) lives in .state/cluster-local and survives restarts.
set -euo pipefail
cd "$(dirname "$0")/.."
TOPOLOGY=${TOPOLOGY:-topology/local.yaml}
CONFIG=()
[ "${RELEASE:-0}" = 1 ] && CONFIG=(-c release)

build() {
  scripts/setup.sh
  scripts/build.sh "${CONFIG[@]}" --product doze
  BIN=$(swift build "${CONFIG[@]}" --show-bin-path)/doze
  [ -x "$BIN" ] || { echo "build failed: $BIN missing" >&2; exit 1; }
}

case "${1:-}" in
  --stop)
    BIN=$(swift build "${CONFIG[@]}" --show-bin-path 2>/dev/null)/doze
    [ -x "$BIN" ] || { echo "nothing built yet, so nothing runs" >&2; exit 0; }
    exec "$BIN" cluster down "$TOPOLOGY" ;;
  --foreground)
    build
    "$BIN" cluster down "$TOPOLOGY" >/dev/null
    exec "$BIN" cluster up "$TOPOLOGY" ;;
  "")
    build
    "$BIN" cluster down "$TOPOLOGY" >/dev/null
    "$BIN" cluster up "$TOPOLOGY" --detach
    sleep 1   # one heartbeat round: the leader is elected and controllers join
    "$BIN" hierarchy --bootstrap 127.0.0.1:5000 || true
    echo
    echo "try:  $BIN submit topology/xml/demo.xml --count 3 --wait"
    echo "      $BIN vm list          $BIN hierarchy"
    echo "      curl -s 'http://127.0.0.1:5000/bootstrap?getLocalControllerList'"
    echo "      curl -s -H \"Authorization: Bearer \$(cat ~/.config/doze/token)\" http://127.0.0.1:5000/v1/vms   # /v1 needs a token"
    echo "      $BIN token create --tenant NAME      (the admin token is ~/.config/doze/token; README: Tokens, tenants and quotas)"
    echo "stop: scripts/run.sh --stop" ;;
  *) echo "usage: scripts/run.sh [--foreground|--stop]" >&2; exit 2 ;;
esac
