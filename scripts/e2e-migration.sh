#!/usr/bin/env bash
# End-to-end live migration on a real multi-host cluster: topology/netns.yaml (renamed so it never meets a cluster
# a user started) with two network-namespace hosts, each with its own hand-started libvirtd and `doze lc`.
# Boots two real TCG guests through `doze submit`, migrates one across hosts and proves the guest kept running
# (its console heartbeat goes on from the destination's QEMU), migrates it back, aborts a throttled migration and
# sees the VM still running at its source, and drains a host. Everything it creates goes, even on failure.
#
#   scripts/e2e-migration.sh [DOZE_BINARY]      root; default binary: the debug build
#   KEEP=1 scripts/e2e-migration.sh              leave the cluster up for a look (then: doze cluster down FILE --run-dir DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-$(swift build --show-bin-path)/doze}
[ -x "$BIN" ] || { echo "e2e-migration: no doze binary at $BIN (swift build first)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "e2e-migration: needs root (network namespaces, libvirtd)" >&2; exit 2; }

W=$(mktemp -d /tmp/doze-e2e-migration.XXXXXX)
TOPO=$W/e2e.yaml
BS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')   # a free port
START=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - START) / 1000000 )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
say() { echo "[$(elapsed) s] $*"; }
fail() { echo "FAIL: $*" >&2; echo "--- logs" >&2; tail -n 15 "$W"/cluster/*.log >&2 2>/dev/null || true; exit 1; }
cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $BIN cluster down $TOPO --run-dir $W/cluster"; exit $rc; fi
  "$BIN" cluster down "$TOPO" --run-dir "$W/cluster" >/dev/null 2>&1 || echo "e2e-migration: cluster down reported a problem" >&2
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT

# The shipped topology under another name, subnet and client port; absolute image path.
sed -e 's/^name: netns$/name: e2emig/' -e 's#10\.77\.0\.#10.78.0.#g' -e "s#client_listen: 127.0.0.1:5100#client_listen: $BS#" \
    -e "s#\.\./\.build-guest#$ROOT/.build-guest#" -e "s#\.\./\.state/consoles#$W#" \
    -e "s#^fence_command: fence-netns.sh#fence_command: $ROOT/topology/fence-netns.sh#" topology/netns.yaml > "$TOPO"
grep -q 'name: e2emig' "$TOPO" && grep -q "$BS" "$TOPO" || fail "could not derive the test topology from topology/netns.yaml"

IMG=$(scripts/guest-image.sh)
say "guest image ready in $IMG"
"$BIN" cluster up "$TOPO" --detach --run-dir "$W/cluster" > "$W/up.out" 2>&1 || { cat "$W/up.out"; fail "cluster up"; }
say "cluster up: 2 hosts, each its own netns + libvirtd + doze lc"
doze() { "$BIN" "$@" --bootstrap "$BS"; }

for _ in $(seq 100); do [ "$(doze host list --json 2>/dev/null | grep -o '"id"' | wc -l)" = 2 ] && break; sleep 0.1; done
HOSTS=($(doze host list --json | python3 -c 'import json,sys; print(" ".join(h["id"] for h in json.load(sys.stdin)["hosts"]))'))
[ ${#HOSTS[@]} = 2 ] || fail "expected 2 hosts, got ${HOSTS[*]:-none}"

for g in g1 g2; do scripts/guest-xml.sh $g "$W/console-$g.log" > "$W/$g.xml"; done
doze submit "$W/g1.xml" "$W/g2.xml" --wait --timeout 60 > "$W/submit.out" 2>&1 || { cat "$W/submit.out"; fail "submit"; }
say "submitted g1 and g2: $(grep -c RUNNING "$W/submit.out") RUNNING"

waitfor() {  # waitfor FILE PATTERN SECONDS
  local i
  for i in $(seq $(($3 * 10))); do grep -aq -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "'$2' did not appear in $1 within $3 s"
}
waitfor "$W/console-g1.log" GUEST-READY 60
waitfor "$W/console-g2.log" GUEST-READY 60
say "both guests booted (GUEST-READY on their consoles)"

where() { doze vm show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtualMachineLocation"]["localControllerId"])'; }
other() { [ "$1" = "${HOSTS[0]}" ] && echo "${HOSTS[1]}" || echo "${HOSTS[0]}"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
ticks() { grep -ac '^tick ' "$W/console-$1.log"; }

# 1. Live migration across hosts: the guest keeps ticking, now from the destination.
FROM=$(where g1); TO=$(other "$FROM")
before=$(ticks g1)
doze vm migrate g1 --to "$TO" --wait --json > "$W/m1.json" || { cat "$W/m1.json"; fail "migrating g1"; }
[ "$(field '["state"]' < "$W/m1.json")" = completed ] || fail "g1 migration: $(cat "$W/m1.json")"
[ "$(field '["mode"]' < "$W/m1.json")" = live ] || fail "g1 was not migrated live: $(cat "$W/m1.json")"
[ "$(where g1)" = "$TO" ] || fail "the cluster does not show g1 on its destination"
waitfor "$W/console-g1.log" "tick $((before + 2)) " 20
say "g1 migrated live ${FROM:0:8} -> ${TO:0:8} in $(field '["durationMs"]' < "$W/m1.json") ms (libvirt job $(field '["progress"]["elapsedMs"]' < "$W/m1.json") ms, downtime $(field '["progress"].get("downtimeMs")' < "$W/m1.json") ms); console ticks on: $before -> $(ticks g1)"

# The guest's QEMU now runs in the destination's namespaces (its daemon's), not the source's.
QPID=$(pgrep -f "qemu-system-x86_64 .*guest=g1," | head -1 || true)
[ -n "$QPID" ] || fail "no QEMU process for g1"
DEST_NS=$(ip netns identify "$QPID")
case "$DEST_NS" in *e2emig*) ;; *) fail "g1's QEMU is in netns '$DEST_NS'";; esac
say "g1's QEMU (pid $QPID) runs in netns $DEST_NS"

# 2. And back.
doze vm migrate g1 --to "$FROM" --wait --json > "$W/m2.json" || { cat "$W/m2.json"; fail "migrating g1 back"; }
[ "$(field '["state"]' < "$W/m2.json")" = completed ] && [ "$(where g1)" = "$FROM" ] || fail "g1 did not come back: $(cat "$W/m2.json")"
now=$(ticks g1); waitfor "$W/console-g1.log" "tick $((now + 1)) " 20
say "g1 migrated back in $(field '["durationMs"]' < "$W/m2.json") ms; still ticking"

# 3. Abort: a migration throttled to 1 MiB/s cannot finish 128 MiB soon; abort it, the VM stays running at its source.
doze vm migrate g1 --to "$TO" --bandwidth 1 --json > "$W/m3.json" || { cat "$W/m3.json"; fail "starting the throttled migration"; }
M3=$(field '["id"]' < "$W/m3.json")
for _ in $(seq 100); do
  [ "$(doze migration show "$M3" --json | field '["progress"]["dataProcessed"]')" -gt 0 ] 2>/dev/null && break; sleep 0.1
done
doze migration show "$M3" --json > "$W/m3-progress.json"
[ "$(field '["progress"]["dataProcessed"]' < "$W/m3-progress.json")" -gt 0 ] || fail "no progress on the throttled migration: $(cat "$W/m3-progress.json")"
say "throttled migration $M3 running: $(field '["progress"]["dataProcessed"]' < "$W/m3-progress.json") of $(field '["progress"]["dataTotal"]' < "$W/m3-progress.json") bytes"
doze migration abort "$M3" --json > "$W/m3-abort.json" || { cat "$W/m3-abort.json"; fail "abort"; }
[ "$(field '["state"]' < "$W/m3-abort.json")" = aborted ] || fail "abort: $(cat "$W/m3-abort.json")"
[ "$(where g1)" = "$FROM" ] || fail "after the abort g1 is not at its source"
[ "$(doze vm show g1 --json | field '["status"]')" = RUNNING ] || fail "after the abort g1 is not RUNNING"
now=$(ticks g1); waitfor "$W/console-g1.log" "tick $((now + 1)) " 20
say "aborted: g1 RUNNING at its source and still ticking"

# 4. Drain the source: both guests end up on the other host, which keeps ticking them.
doze host drain "$FROM" --wait --json > "$W/drain.json" || { cat "$W/drain.json"; fail "drain"; }
[ "$(where g1)" = "$TO" ] && [ "$(where g2)" = "$TO" ] || fail "after the drain: g1 on $(where g1), g2 on $(where g2)"
[ "$(doze host list --json | python3 -c "import json,sys; print([h['draining'] for h in json.load(sys.stdin)['hosts'] if h['id']=='$FROM'][0])")" = True ] \
  || fail "the drained host does not say so"
for g in g1 g2; do now=$(ticks $g); waitfor "$W/console-$g.log" "tick $((now + 1)) " 20; done
doze host undrain "$FROM" > /dev/null
say "drained ${FROM:0:8}: g1 and g2 run on ${TO:0:8}; undrained"

echo "RESULT: PASS ($(elapsed) s)"
