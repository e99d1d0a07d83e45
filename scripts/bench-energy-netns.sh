#!/usr/bin/env bash
# Energy saving on a real multi-host cluster (issue 12): topology/netns.yaml with a third host, renamed, and an
# `energy:` map using topology/power-agent.py. Measures, ROUNDS times: how long after the start every idle host but
# one is asleep (their controller and libvirtd stopped), and the wake-to-placement time of a submission of two
# 2-vCPU TCG guests, more than the awake 2-CPU host holds, next to the same submission on a cluster whose hosts are
# all awake (the baseline, same run). Everything it creates goes, even on failure.
#
#   scripts/bench-energy-netns.sh [DOZE_BINARY] [ROUNDS]     root; default: the debug build, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-$(swift build --show-bin-path)/doze}
ROUNDS=${2:-3}
[ -x "$BIN" ] || { echo "bench-energy-netns: no doze binary at $BIN" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench-energy-netns: needs root (network namespaces, libvirtd)" >&2; exit 2; }
export DOZE_SCRIPTS=$ROOT/scripts   # the launcher's helpers, wherever the binary is
W=$(mktemp -d /tmp/doze-bench-energy.XXXXXX)
TOPO=$W/energy.yaml
BS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fail() { echo "FAIL: $*" >&2; cat "$W/up.out" >&2 2>/dev/null || true; tail -n 12 "$W"/cluster/gm-*.log >&2 2>/dev/null || true; exit 1; }
down() { "$BIN" cluster down "$TOPO" --run-dir "$W/cluster" >/dev/null 2>&1 || echo "bench-energy-netns: cluster down reported a problem" >&2; }
cleanup() { local rc=$?; down; rm -rf "$W"; exit $rc; }
trap cleanup EXIT
now() { date +%s%N; }
secs() { python3 -c "print(f'{($2 - $1) / 1e9:.2f}')"; }
doze() { "$BIN" "$@" --bootstrap "$BS"; }

IMG=$(scripts/guest-image.sh)
for g in w1 w2; do scripts/guest-xml.sh $g "$W/console-$g.log" | sed 's#<vcpu[^>]*>1</vcpu>#<vcpu>2</vcpu>#' > "$W/$g.xml"; done
grep -q '<vcpu>2</vcpu>' "$W/w1.xml" || fail "could not make a 2-vCPU guest from scripts/guest-xml.sh"

topology() {  # topology ENERGY(yes|no)
  sed -e 's/^name: netns$/name: benchen/' -e 's#10\.77\.0\.#10.79.0.#g' -e "s#client_listen: 127.0.0.1:5100#client_listen: $BS#" \
      -e "s#\.\./\.build-guest#$ROOT/.build-guest#" -e "s#\.\./\.state/consoles#$W#" topology/netns.yaml > "$TOPO"
  sed -i 's#^  - { name: host-b, listen: 10.79.0.12:5010, libvirtd: true }#&\n  - { name: host-c, listen: 10.79.0.13:5010, libvirtd: true }#' "$TOPO"
  grep -q host-c "$TOPO" || fail "could not add a third host to the topology"
  if [ "$1" = yes ]; then
    printf 'energy:\n  power_off: "%s off {layout}"\n  wake: "%s on {layout}"\n  idle_s: 5\n' \
      "$ROOT/topology/power-agent.py" "$ROOT/topology/power-agent.py" >> "$TOPO"
  fi
}

count() { doze host list --json 2>/dev/null | python3 -c "import json,sys; print(sum(1 for h in json.load(sys.stdin)['hosts'] if h.get('power') == '$1'))" 2>/dev/null || echo 0; }

run() {  # run ENERGY → prints "ASLEEP_S SUBMIT_S"
  topology "$1"
  rm -rf "$W/cluster"
  "$BIN" cluster up "$TOPO" --detach --run-dir "$W/cluster" > "$W/up.out" 2>&1 || fail "cluster up"
  local t0 asleep=- t1 t2
  t0=$(now)
  if [ "$1" = yes ]; then
    for _ in $(seq 600); do [ "$(count sleeping)" = 2 ] && break; sleep 0.1; done
    [ "$(count sleeping)" = 2 ] || fail "two idle hosts did not go to sleep within 60 s"
    asleep=$(secs "$t0" "$(now)")
  else
    for _ in $(seq 200); do [ "$(doze host list --json | grep -o '"id"' | wc -l)" = 3 ] && break; sleep 0.1; done
  fi
  t1=$(now)
  doze submit "$W/w1.xml" "$W/w2.xml" --wait --timeout 150 > "$W/submit.out" 2>&1 || { cat "$W/submit.out"; fail "submit"; }
  t2=$(now)
  grep -q "running 2/2" "$W/submit.out" || { cat "$W/submit.out"; fail "both guests should run"; }
  echo "$asleep $(secs "$t1" "$t2")"
  down
}

printf '%-6s %-22s %-26s %-26s\n' round "idle hosts asleep (s)" "submit, a host woken (s)" "submit, all awake (s)"
for r in $(seq "$ROUNDS"); do
  run yes > "$W/energy.out" || exit 1
  run no > "$W/awake.out" || exit 1
  read -r asleep woken < "$W/energy.out"
  read -r _ awake < "$W/awake.out"
  printf '%-6s %-22s %-26s %-26s\n' "$r" "$asleep" "$woken" "$awake"
done
