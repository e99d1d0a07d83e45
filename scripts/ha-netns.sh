#!/usr/bin/env bash
# VM high availability on a real multi-host cluster: topology/netns.yaml (renamed so it never meets a cluster a user
# started), whose group managers fence with topology/fence-netns.sh. Boots two real TCG guests marked HA on host-a,
# then kills host-a the hard way: kill -9 its `doze lc`, its libvirtd and its QEMU processes. Checks that every HA
# guest runs again exactly once (one QEMU process in the whole machine, in host-b's namespace, RUNNING in doze and in
# host-b's libvirtd, booting again on its console) and prints the time from the kill to that: detection + fence +
# start. Everything it creates goes, even on failure.
#
#   scripts/ha-netns.sh [DOZE_BINARY]      root; default binary: the debug build
#   KEEP=1 scripts/ha-netns.sh              leave the cluster up for a look (then: doze cluster down FILE --run-dir DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-$(swift build --show-bin-path)/doze}
[ -x "$BIN" ] || { echo "ha-netns: no doze binary at $BIN (swift build first)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "ha-netns: needs root (network namespaces, libvirtd)" >&2; exit 2; }

W=$(mktemp -d /tmp/doze-ha-netns.XXXXXX)
TOPO=$W/ha.yaml
RUN=$W/cluster
BS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')   # a free port
START=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - START) / 1000000 )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
say() { echo "[$(elapsed) s] $*"; }
fail() { echo "FAIL: $*" >&2; echo "--- logs" >&2; tail -n 15 "$RUN"/*.log >&2 2>/dev/null || true; exit 1; }
cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $BIN cluster down $TOPO --run-dir $RUN"; exit $rc; fi
  "$BIN" cluster down "$TOPO" --run-dir "$RUN" >/dev/null 2>&1 || echo "ha-netns: cluster down reported a problem" >&2
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT

# The shipped topology under another name, subnet and client port; absolute image, console and fence paths.
sed -e 's/^name: netns$/name: hanetns/' -e 's#10\.77\.0\.#10.75.0.#g' -e "s#client_listen: 127.0.0.1:5100#client_listen: $BS#" \
    -e "s#\.\./\.build-guest#$ROOT/.build-guest#" -e "s#\.\./\.state/consoles#$W#" \
    -e "s#^fence_command: fence-netns.sh#fence_command: $ROOT/topology/fence-netns.sh#" topology/netns.yaml > "$TOPO"
grep -q 'name: hanetns' "$TOPO" && grep -q "$BS" "$TOPO" && grep -q "fence_command: /" "$TOPO" \
  || fail "could not derive the test topology from topology/netns.yaml"

IMG=$(scripts/guest-image.sh)
say "guest image ready in $IMG"
"$BIN" cluster up "$TOPO" --detach --run-dir "$RUN" > "$W/up.out" 2>&1 || { cat "$W/up.out"; fail "cluster up"; }
say "cluster up: host-a and host-b, each its own netns + libvirtd + doze lc; managers fence with fence-netns.sh"
doze() { "$BIN" "$@" --bootstrap "$BS"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
controller_id() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$RUN/$1/controller.json"; }
HOST_A=$(controller_id host-a); HOST_B=$(controller_id host-b)
SOCK_B="qemu+unix:///system?socket=$RUN/hosts/host-b/run/libvirt-sock"

GUESTS=(ha1 ha2)
for g in "${GUESTS[@]}"; do scripts/guest-xml.sh $g "$W/console-$g.log" > "$W/$g.xml"; done
doze submit --ha --host "$HOST_A" "$W/ha1.xml" "$W/ha2.xml" --wait --timeout 60 > "$W/submit.out" 2>&1 || { cat "$W/submit.out"; fail "submit"; }
say "submitted ha1 and ha2 (--ha) pinned to host-a: $(grep -c RUNNING "$W/submit.out") RUNNING"
readies() { grep -ac GUEST-READY "$W/console-$1.log" 2>/dev/null || true; }
for g in "${GUESTS[@]}"; do
  for _ in $(seq 600); do [ "$(readies $g)" -ge 1 ] && break; sleep 0.1; done
  [ "$(readies $g)" -ge 1 ] || fail "$g did not boot on host-a"
  [ "$(doze vm show $g --json | field '["ha"]')" = True ] || fail "$g is not shown as HA"
done
say "both guests booted on host-a (GUEST-READY on their consoles)"

# kill -9 host-a: its controller, its libvirtd, its QEMU processes (the namespace itself stays, as a hung host's would).
LC_PID=$(cat "$RUN/pids/host-a.pid")
DAEMON_PID=$(cat "$RUN/hosts/host-a/libvirtd.pid")
QEMU_PIDS=$(for g in "${GUESTS[@]}"; do cat "$RUN/hosts/host-a/run/qemu/$g.pid" 2>/dev/null; echo; done | tr '\n' ' ')
[ -n "${QEMU_PIDS// /}" ] || fail "no QEMU pid files for host-a's guests"
KILLED=$(date +%s%N)
kill -9 $LC_PID $DAEMON_PID $QEMU_PIDS
say "kill -9 host-a: doze lc $LC_PID, libvirtd $DAEMON_PID, QEMU $QEMU_PIDS"

# Every HA guest RUNNING again, on host-b, in its libvirtd.
running_on_b() { virsh -q -c "$SOCK_B" list --state-running --name 2>/dev/null | grep -cxE 'ha1|ha2' || true; }
for _ in $(seq 600); do [ "$(running_on_b)" = 2 ] && break; sleep 0.05; done
[ "$(running_on_b)" = 2 ] || fail "the HA guests are not both running on host-b within 30 s: $(virsh -q -c "$SOCK_B" list --all 2>&1)"
RESTARTED=$(date +%s%N)
ms=$(( (RESTARTED - KILLED) / 1000000 ))
HA_SECONDS=$(printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)))
say "both HA guests RUNNING on host-b"

# Exactly once: one QEMU per guest in the whole machine, in host-b's namespace; doze lists each once, on host-b.
for g in "${GUESTS[@]}"; do
  pids=$(pgrep -f "qemu-system-x86_64 .*guest=$g," || true)
  [ "$(echo "$pids" | grep -c .)" = 1 ] || fail "$g has $(echo "$pids" | grep -c .) QEMU processes: $pids"
  ns=$(ip netns identify "$pids")
  [ "$ns" = doze-hanetns-host-b ] || fail "$g's QEMU runs in netns '$ns'"
done
for _ in $(seq 100); do
  [ "$(doze vm list --json | python3 -c "import json,sys; v=json.load(sys.stdin)['virtualMachines']; print(sorted((m['virtualMachineLocation']['virtualMachineId'], m['status'], m['virtualMachineLocation'].get('localControllerId')) for m in v))")" \
    = "[('ha1', 'RUNNING', '$HOST_B'), ('ha2', 'RUNNING', '$HOST_B')]" ] && break
  sleep 0.1
done
doze vm list > "$W/list.out"
[ "$(grep -c RUNNING "$W/list.out")" = 2 ] && [ "$(grep -cE '^ha[12] ' "$W/list.out")" = 2 ] || fail "doze vm list after the failover: $(cat "$W/list.out")"
grep -q "host fenced" "$RUN"/gm-*.log || fail "no manager log says the host was fenced"
echo "  fence: $(grep -oh "fence-netns: host .* is off: no process left in its namespace" "$RUN"/gm-*.log | head -1); $(grep -oh "took=[0-9.]* seconds \[ClusterNode\] host fenced" "$RUN"/gm-*.log | head -1)"
# And they boot again there (their console files are appended to).
for g in "${GUESTS[@]}"; do
  for _ in $(seq 600); do [ "$(readies $g)" -ge 2 ] && break; sleep 0.1; done
  [ "$(readies $g)" -ge 2 ] || fail "$g did not boot again on host-b"
done
say "each HA guest runs exactly once (one QEMU, in host-b's netns) and booted again"

echo "HA restart: ${HA_SECONDS} s from kill -9 of host-a to both HA guests RUNNING on host-b (detection + fence + start)"
echo "RESULT: PASS ($(elapsed) s)"
