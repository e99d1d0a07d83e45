#!/usr/bin/env bash
# VM networks (seed 004) end to end through doze, with real packets, on the network-namespace topology
# (topology/netns.yaml renamed: doze-netnet-*, 10.74.0.0/24, so it never meets a cluster a user started):
#   doze network create blue, three real TCG guests submitted with --network blue (ga pinned to host-a, gb and gc to
#   host-b); each host's controller makes the switch (bridge + VXLAN + anycast gateway + dnsmasq) and the guests get
#   their addresses by DHCP. Measured: ping and a 20 MiB TCP stream guest to guest across hosts and, as the
#   baseline in the same run, on one host; the hub pinging gb's floating IP (doze fip allocate + bind); then
#   `doze vm migrate gb` to host-a and the time until the hub gets replies again (the leader moves the floating
#   IP to gb's new host by itself). Then the VMs are destroyed and the switch must be gone from both hosts.
# Everything it creates goes, even on failure.
#
#   scripts/net-netns.sh [DOZE_BINARY]      root; default binary: the debug build
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-$(swift build --show-bin-path)/doze}
[ -x "$BIN" ] || { echo "net-netns: no doze binary at $BIN (swift build first)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "net-netns: needs root (network namespaces, libvirtd, nftables)" >&2; exit 2; }
for t in nft dnsmasq busybox python3; do command -v $t >/dev/null || { echo "net-netns: needs $t (scripts/setup.sh --netns)" >&2; exit 2; }; done

W=$(mktemp -d /tmp/doze-net-netns.XXXXXX)
chmod 755 "$W"
TOPO=$W/netnet.yaml
RUN=$W/cluster
NET=10.74.0
NS_A=doze-netnet-host-a NS_B=doze-netnet-host-b HUB=doze-netnet-hub
BS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
START=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - START) / 1000000 )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
say() { echo "[$(elapsed) s] $*"; }
fail() { echo "FAIL: $*" >&2; for f in "$W"/console-*.log; do echo "--- $f" >&2; tail -n 5 "$f" >&2; done 2>/dev/null; tail -n 20 "$RUN"/host-*.log >&2 2>/dev/null; exit 1; }
PROBER=""
cleanup() {
  local rc=$?
  [ -n "$PROBER" ] && kill "$PROBER" 2>/dev/null
  # The controllers' dnsmasqs would outlive their namespaces: stop any the VM destroys did not.
  for p in $(find "$RUN" -path '*dataplane*' -name '*.pid' 2>/dev/null); do kill "$(cat "$p")" 2>/dev/null || true; done
  "$BIN" cluster down "$TOPO" --run-dir "$RUN" >/dev/null 2>&1 || echo "net-netns: cluster down reported a problem" >&2
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT

sed -e 's/^name: netns$/name: netnet/' -e "s#10\.77\.0\.#$NET.#g" -e "s#client_listen: 127.0.0.1:5100#client_listen: $BS#" \
    -e "s#\.\./\.build-guest#$ROOT/.build-guest#" -e "s#\.\./\.state/consoles#$W#" \
    -e "s#^fence_command: fence-netns.sh#fence_command: $ROOT/topology/fence-netns.sh#" topology/netns.yaml > "$TOPO"
grep -q 'name: netnet' "$TOPO" && grep -q "floating_range: $NET.200-$NET.250" "$TOPO" || fail "could not derive the test topology"

IMG=$(scripts/guest-image.sh)
say "guest image ready in $IMG"
"$BIN" cluster up "$TOPO" --detach --run-dir "$RUN" > "$W/up.out" 2>&1 || { cat "$W/up.out"; fail "cluster up"; }
say "cluster up: $NS_A ($NET.11) and $NS_B ($NET.12), each with its libvirtd and doze lc"
doze() { "$BIN" "$@" --bootstrap "$BS"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
controller_id() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$RUN/$1/controller.json"; }
HOST_A=$(controller_id host-a); HOST_B=$(controller_id host-b)
where() { doze vm show "$1" --json | field '["virtualMachineLocation"]["localControllerId"]'; }

doze network create blue --subnet 10.200.0.0/24 > "$W/net.out" || { cat "$W/net.out"; fail "network create"; }
for g in ga gb gc; do scripts/guest-xml.sh $g "$W/console-$g.log" > "$W/$g.xml"; done
# A hand-started libvirtd refuses domains while it still probes QEMU (a few seconds after start): retried, 30 s.
submit() {  # OUT HOST TEMPLATE...
  local out=$1 host=$2 i; shift 2
  for i in $(seq 30); do
    doze submit --host "$host" --network blue "$@" --wait --timeout 90 > "$out" 2>&1 && return 0
    grep -q "for probing QEMU" "$out" || break
    sleep 1
  done
  cat "$out"; fail "submit $*"
}
submit "$W/submit-a.out" "$HOST_A" "$W/ga.xml"
submit "$W/submit-b.out" "$HOST_B" "$W/gb.xml" "$W/gc.xml"
say "ga on host-a, gb and gc on host-b submitted with --network blue"
ip_of() { doze network show blue --json | python3 -c "import json,sys; print([l['ip'] for l in json.load(sys.stdin)['leases'] if l['vm'] == sys.argv[1]][0])" "$1"; }
IP_A=$(ip_of ga) IP_B=$(ip_of gb) IP_C=$(ip_of gc)
ip -n $NS_A -d link show dz-vx100 | grep -q "vxlan id 100" || fail "host-a has no VXLAN device for the switch"
ip -n $NS_B link show dz-br100 >/dev/null || fail "host-b has no bridge for the switch"
for g in ga gb gc; do
  for _ in $(seq 1200); do grep -q GUEST-NET "$W/console-$g.log" 2>/dev/null && break; sleep 0.1; done
  grep -q GUEST-NET "$W/console-$g.log" 2>/dev/null || fail "$g got no address by DHCP within 120 s"
  echo "  $g: $(grep -a -m1 GUEST-NET "$W/console-$g.log" | tr -d '\r')"
done
grep -aq "GUEST-NET ip=$IP_B/24 router=10.200.0.1" "$W/console-gb.log" || fail "gb has not the address doze gave it ($IP_B)"
say "every guest has the address doze handed out, by DHCP from its own host"

# A command in a guest through its test shell on TCP 5000, from the guest's host (the gateway reaches its VMs).
gsh() {
  local out="" i
  for i in 1 2 3 4 5; do
    out=$(echo "$4" | ip netns exec "$1" timeout "$3" busybox nc "$2" 5000 2>&1) || true
    [ -n "$out" ] && break
    sleep 0.5
  done
  echo "$out"
}
ping_avg() {
  local out
  out=$(gsh "$1" "$2" 60 "ping -c 20 -i 0.2 $3 2>&1") || true
  echo "$out" | grep -q ' 0% packet loss' || fail "ping $2 -> $3: $out"
  echo "$out" | awk -F'[/ ]' '/round-trip/ {print "min/avg/max " $(NF-3) "/" $(NF-2) "/" $(NF-1) " ms"}'
}
stream() {
  local out before i got
  before=$(grep -ac GUEST-SINK "$W/console-$4.log" || true)
  out=$(gsh "$1" "$2" 300 "a=\$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero bs=64k count=320 2>/dev/null | nc $3 5001; r=\$?; b=\$(cut -d' ' -f1 /proc/uptime); echo STREAM \$a \$b \$r")
  echo "$out" | grep -q '^STREAM .* 0$' || fail "stream $2 -> $3: $out"
  for i in $(seq 100); do [ "$(grep -ac GUEST-SINK "$W/console-$4.log")" -gt "$before" ] && break; sleep 0.1; done
  got=$(grep -a GUEST-SINK "$W/console-$4.log" | tail -1 | tr -d '\r')
  [ "$got" = "GUEST-SINK bytes=20971520" ] || fail "stream $2 -> $3: the receiver $4 reports '$got', not 20971520 bytes"
  echo "$out" | awk '/^STREAM/ {t = $3 - $2; if (t <= 0) t = 0.01; printf "20 MiB in %.2f s = %.1f MiB/s", t, 20 / t}'
}
for _ in $(seq 100); do gsh $NS_A $IP_A 5 'echo up' 2>/dev/null | grep -q up && break; sleep 0.2; done
PING_X=$(ping_avg $NS_A $IP_A $IP_B); say "ping ga -> gb (host-a -> host-b over VXLAN): $PING_X"
for _ in $(seq 100); do gsh $NS_B $IP_B 5 'echo up' 2>/dev/null | grep -q up && break; sleep 0.2; done
PING_L=$(ping_avg $NS_B $IP_B $IP_C); say "ping gb -> gc (both on host-b):              $PING_L"
STREAM_X=$(stream $NS_A $IP_A $IP_B gb); say "TCP ga -> gb (across hosts): $STREAM_X"
STREAM_L=$(stream $NS_B $IP_B $IP_C gc); say "TCP gb -> gc (one host):     $STREAM_L"

FIP=$(doze fip allocate --json | field '["address"]')
doze fip bind "$FIP" gb --json > "$W/bind.json" || { cat "$W/bind.json"; fail "fip bind"; }
[ "$(field '["dataPlane"]' < "$W/bind.json")" = linux ] || fail "the binding was not applied on a data plane: $(cat "$W/bind.json")"
[ "$(field '["host"]' < "$W/bind.json")" = "$HOST_B" ] || fail "the floating IP is not on gb's host: $(cat "$W/bind.json")"
HUBPING=$(ip netns exec $HUB busybox ping -c 5 -W 1 "$FIP" 2>&1 | tail -1)
echo "$HUBPING" | grep -q round-trip || fail "the hub cannot ping $FIP: $HUBPING"
say "hub -> floating IP $FIP (gb on host-b): $HUBPING"

cat > "$W/prober.py" <<'EOP'
import os, socket, struct, sys, time
# ICMP echo to sys.argv[1] every 10 ms; writes the time (ns) of every reply until killed.
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.setblocking(False)
ident = os.getpid() & 0xffff; seq = 0; out = open(sys.argv[2], "w", buffering=1)
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16; return ~t & 0xffff
nxt = time.monotonic()
while True:
    if time.monotonic() >= nxt:
        seq = (seq + 1) & 0xffff
        h = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"doze" * 8
        s.sendto(struct.pack("!BBHHH", 8, 0, csum(h), ident, seq) + b"doze" * 8, (sys.argv[1], 0)); nxt += 0.01
    try:
        d = s.recv(2048)
        if d[20] == 0 and struct.unpack("!H", d[24:26])[0] == ident: out.write("%d\n" % time.time_ns())
    except BlockingIOError:
        time.sleep(0.002)
EOP
ip netns exec $HUB python3 "$W/prober.py" "$FIP" "$W/replies" & PROBER=$!
for _ in $(seq 100); do [ -s "$W/replies" ] && break; sleep 0.05; done
[ -s "$W/replies" ] || fail "the prober gets no reply from $FIP"
M0=$(date +%s%N)
doze vm migrate gb --to "$HOST_A" --wait --json > "$W/migrate.json" || { cat "$W/migrate.json"; fail "migrating gb"; }
M1=$(date +%s%N)
[ "$(where gb)" = "$HOST_A" ] || fail "gb is not on host-a after the migration"
fip_host() { doze fip list --json | python3 -c "import json,sys; print([f.get('host', '-') for f in json.load(sys.stdin)['floatingIPs'] if f['address'] == sys.argv[1]][0])" "$1"; }
# The leader moves the floating IP to gb's new host by itself (bounded: 10 s).
for _ in $(seq 200); do [ "$(fip_host "$FIP")" = "$HOST_A" ] && break; sleep 0.05; done
R1=$(date +%s%N)
[ "$(fip_host "$FIP")" = "$HOST_A" ] || fail "the leader did not move $FIP to host-a within 10 s of the migration"
for _ in $(seq 1000); do [ "$(tail -1 "$W/replies")" -gt "$R1" ] 2>/dev/null && break; sleep 0.01; done
FIRST=$(awk -v r=$R1 '$1 > r {print; exit}' "$W/replies")
[ -n "$FIRST" ] || fail "the hub gets no reply from $FIP within 10 s of its move to host-a"
sleep 0.5
kill $PROBER; PROBER=""
GAP=$(awk -v a=$M0 '$1 > a { if (p && $1 - p > g) g = $1 - p; p = $1 } END {printf "%.0f", g / 1e6}' "$W/replies")
REBIND_MS=$(( (R1 - M1) / 1000000 ))
ip -n $NS_B addr show | grep -q "$FIP/32" && fail "$FIP is still on host-b"
say "gb migrated to host-a in $(( (M1 - M0) / 1000000 )) ms; the leader had $FIP on host-a $REBIND_MS ms after; the hub's longest reply gap $GAP ms"
HUBPING=$(ip netns exec $HUB busybox ping -c 5 -W 1 "$FIP" 2>&1)
echo "$HUBPING" | grep -q ' 0% packet loss' || fail "hub -> $FIP after the move: $HUBPING"
PING_M=$(ping_avg $NS_A $IP_A $IP_B)
say "after the move: hub -> $FIP $(echo "$HUBPING" | tail -1); ga -> gb (now both on host-a): $PING_M"

# Deleting in use is refused; destroying the VMs takes the switch off both hosts, then it can go.
doze network delete blue > "$W/del.out" 2>&1 && fail "a switch in use was deleted"
grep -q "in use by 3 VM" "$W/del.out" || fail "unexpected refusal: $(cat "$W/del.out")"
doze vm destroy ga gb gc > /dev/null || fail "destroy"
for _ in $(seq 100); do ! ip -n $NS_A link show dz-br100 >/dev/null 2>&1 && ! ip -n $NS_B link show dz-br100 >/dev/null 2>&1 && break; sleep 0.1; done
ip -n $NS_A link show dz-br100 >/dev/null 2>&1 && fail "host-a kept the switch after its last VM went"
ip -n $NS_B link show dz-br100 >/dev/null 2>&1 && fail "host-b kept the switch after its last VM went"
for _ in $(seq 200); do doze network delete blue >/dev/null 2>&1 && break; sleep 0.1; done
doze network list | grep -q "no networks" || fail "the switch could not be deleted after its VMs went"

echo
echo "FIGURES (TCG guests, 1 vCPU, 128 MiB; switch blue = VXLAN 100 over multicast, driven by doze)"
echo "  ping ga->gb across hosts (VXLAN):  $PING_X"
echo "  ping gb->gc on one host:           $PING_L"
echo "  TCP ga->gb across hosts:           $STREAM_X"
echo "  TCP gb->gc on one host:            $STREAM_L"
echo "  gb live migration (doze vm migrate --wait): $(( (M1 - M0) / 1000000 )) ms"
echo "  floating IP on the new host (seen in doze fip list) after the migration ended: $REBIND_MS ms"
echo "  hub -> floating IP, longest reply gap across migration + rebind (10 ms probes): $GAP ms"
echo "RESULT: PASS ($(elapsed) s)"
