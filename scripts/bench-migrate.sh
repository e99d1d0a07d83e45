#!/usr/bin/env bash
# Live migration: Doze against plain libvirt, same guest, same two hosts, same run. Brings up topology/netns.yaml
# (renamed: never meets a user's cluster), boots one real TCG guest through `doze submit`, then for each round
# moves it with `doze vm migrate --wait` one way and with `virsh migrate --live --p2p --persistent --undefinesource`
# (the source daemon dialing the destination, as Doze does) the way back. Prints each round and the medians of wall
# time (from the command's start to its end, as a user waits) and downtime (libvirt's measured one, read on the
# destination), and the ratio Doze/virsh.
#
#   scripts/bench-migrate.sh [ROUNDS]      root; default 12 rounds (even: each tool takes each direction equally often); builds doze (release) first
#   DOZE_ARGS='--convergence none' …      extra options for doze vm migrate
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${1:-12}
[ "$(id -u)" -eq 0 ] || { echo "bench-migrate: needs root (network namespaces, libvirtd)" >&2; exit 2; }
scripts/setup.sh --netns
swift build -c release --product doze 2>&1 | grep -E "error|Build complete" >&2 || true
BIN=$(swift build -c release --show-bin-path)/doze

W=$(mktemp -d /tmp/doze-bench-migrate.XXXXXX)
TOPO=$W/bench.yaml
BS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')   # a free port
cleanup() { "$BIN" cluster down "$TOPO" --run-dir "$W/cluster" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
sed -e 's/^name: netns$/name: benchmig/' -e 's#10\.77\.0\.#10.79.0.#g' -e "s#client_listen: 127.0.0.1:5100#client_listen: $BS#" \
    -e "s#\.\./\.build-guest#$ROOT/.build-guest#" -e "s#\.\./\.state/consoles#$W#" \
    -e "s#^fence_command: fence-netns.sh#fence_command: $ROOT/topology/fence-netns.sh#" topology/netns.yaml > "$TOPO"
scripts/guest-image.sh >/dev/null
"$BIN" cluster up "$TOPO" --detach --run-dir "$W/cluster" > "$W/up.out" 2>&1 || { cat "$W/up.out"; exit 1; }
doze() { "$BIN" "$@" --bootstrap "$BS"; }
socket() { echo "qemu+unix:///system?socket=$W/cluster/hosts/$1/run/libvirt-sock"; }
declare -A IP=([host-a]=10.79.0.11 [host-b]=10.79.0.12)

scripts/guest-xml.sh bench "$W/console.log" > "$W/bench.xml"
doze submit "$W/bench.xml" --wait --timeout 60 > /dev/null
for _ in $(seq 600); do grep -aq GUEST-READY "$W/console.log" 2>/dev/null && break; sleep 0.1; done
grep -aq GUEST-READY "$W/console.log" || { echo "the guest did not boot" >&2; exit 1; }

# host name (host-a/host-b) <-> controller id, from the controllers' addresses
eval "$(doze host list --json | python3 -c '
import json, sys
for h in json.load(sys.stdin)["hosts"]:
    name = "host_a" if h["address"]["address"].endswith(".11") else "host_b"
    print("ID_" + name + "=" + h["id"])')"
where() {
  local id
  id=$(doze vm show bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtualMachineLocation"]["localControllerId"])')
  [ "$id" = "$ID_host_a" ] && echo host-a || echo host-b
}
other() { [ "$1" = host-a ] && echo host-b || echo host-a; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# One migration each way, timed: Doze from wherever the guest is, virsh back (or the other way round).
# The guest dirties memory once a second (its console tick); a switch-over that meets a tick needs another pass
# and pauses the guest longer (~150 ms instead of ~10 ms). Each timed migration starts at a random point of that
# second, so neither tool is kept in step with the guest.
unphase() { sleep "$(printf '0.%03d' $((RANDOM % 1000)))"; }
doze_move() {  # doze_move FROM TO -> "wall downtime"
  local t0 t1 to_id=ID_${2/-/_}
  unphase
  t0=$(now_ms); doze vm migrate bench --to "${!to_id}" --wait --json ${DOZE_ARGS:-} > "$W/doze.json"; t1=$(now_ms)
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["state"]=="completed" and r["mode"]=="live", r; print(sys.argv[2], r["progress"].get("downtimeMs", -1))' \
    "$W/doze.json" $((t1 - t0))
  # Not timed: the cluster's heartbeats show the guest where it went before anything else moves it.
  for _ in $(seq 100); do [ "$(where)" = "$2" ] && break; sleep 0.1; done
}
virsh_move() {  # virsh_move FROM TO -> "wall downtime"
  local t0 t1
  unphase
  t0=$(now_ms)
  virsh -q -c "$(socket "$1")" migrate --live --p2p --persistent --undefinesource bench "qemu+tcp://${IP[$2]}/system"
  t1=$(now_ms)
  echo $((t1 - t0)) "$(virsh -q -c "$(socket "$2")" domjobinfo bench --completed | awk '/Total downtime:/{print $3}')"
  for _ in $(seq 100); do [ "$(where)" = "$2" ] && break; sleep 0.1; done
}

# Warm-up, not counted: a guest's first migration sends more than later ones (kvm.md §4).
a=$(where); b=$(other "$a")
virsh_move "$a" "$b" > /dev/null; virsh_move "$b" "$a" > /dev/null

echo "round  direction  doze wall ms  doze downtime ms  virsh wall ms  virsh downtime ms"
: > "$W/figures"
for r in $(seq "$ROUNDS"); do
  from=$(where); to=$(other "$from")
  # Alternate who goes first, so neither tool always takes the same direction.
  if [ $((r % 2)) = 1 ]; then d=$(doze_move "$from" "$to"); v=$(virsh_move "$to" "$from"); dir="doze $from>$to"
  else v=$(virsh_move "$from" "$to"); d=$(doze_move "$to" "$from"); dir="virsh $from>$to"; fi
  printf "%5d  %-20s %7d  %16s  %13d  %17s\n" "$r" "$dir" ${d% *} "${d#* }" ${v% *} "${v#* }"
  echo "$d $v" >> "$W/figures"
done
python3 - "$W/figures" <<'EOF'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
med = [statistics.median(col) for col in zip(*rows)]
print(f"median  doze {med[0]:.0f} ms (downtime {med[1]:.0f} ms)   virsh {med[2]:.0f} ms (downtime {med[3]:.0f} ms)   "
      f"ratio doze/virsh {med[0] / med[2]:.2f}   target <= 1.2")
EOF
