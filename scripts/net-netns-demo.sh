#!/usr/bin/env bash
# VM networks' data plane (issue 13, seed 004) proven with real packets on the network-namespace topology:
# topology/netns.yaml renamed (doze-netplane-*, 10.76.0.0/24, so it never meets a cluster a user started). On both
# hosts it sets up switch VNI 100 (10.200.0.0/24, anycast gateway 10.200.0.1) with the command lines that
# HostDataPlane runs (DataPlanePlan, mirrored here in shell: bridge dz-br100 + VXLAN dz-vx100 on multicast group
# 239.1.0.100, the nftables bridge filter, dnsmasq with static leases), boots three real TCG guests on it through
# each host's libvirtd (ga and gc on host-a, gb on host-b; a virtio NIC each, address by DHCP), and measures:
#   * guest-to-guest ping and a 20 MiB TCP stream across hosts (VXLAN) and, as the baseline, on one host;
#   * the hub pinging gb's floating IP 10.76.0.200 (DNAT/SNAT on gb's host, /32 on its underlay);
#   * gb live-migrated to host-a, the floating IP moved (unbind on host-b, bind + gratuitous ARP on host-a): the
#     time from the start of the rebind until the hub gets a reply again, and the hub's longest reply gap
#     across migration + rebind (an ICMP prober every 10 ms).
# Everything it creates goes, even on failure.
#
#   scripts/net-netns-demo.sh [DOZE_BINARY]     root; default binary: the debug build
#   KEEP=1 scripts/net-netns-demo.sh             leave it all up (then: kill the dnsmasqs, doze cluster down FILE --run-dir DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-$(swift build --show-bin-path)/doze}
[ -x "$BIN" ] || { echo "net-netns-demo: no doze binary at $BIN (swift build first)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "net-netns-demo: needs root (network namespaces, libvirtd, nftables)" >&2; exit 2; }
for t in nft dnsmasq busybox python3; do command -v $t >/dev/null || { echo "net-netns-demo: needs $t" >&2; exit 2; }; done

W=$(mktemp -d /tmp/doze-net-demo.XXXXXX)
chmod 755 "$W"   # dnsmasq re-reads its hosts file as an unprivileged user
TOPO=$W/netplane.yaml
RUN=$W/cluster
NAME=netplane
NET=10.76.0
HUB=doze-$NAME-hub
NS_A=doze-$NAME-host-a NS_B=doze-$NAME-host-b
BS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
START=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - START) / 1000000 )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
say() { echo "[$(elapsed) s] $*"; }
fail() { echo "FAIL: $*" >&2; for f in "$W"/console-*.log; do echo "--- $f" >&2; tail -n 5 "$f" >&2; done 2>/dev/null; exit 1; }
DNSMASQ_PIDS=()
PROBER=""
cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: kill ${DNSMASQ_PIDS[*]}; $BIN cluster down $TOPO --run-dir $RUN"; exit $rc; fi
  [ -n "$PROBER" ] && kill "$PROBER" 2>/dev/null
  # dnsmasq first: a process inside a namespace would keep it alive after `cluster down` deletes it.
  for p in "${DNSMASQ_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  "$BIN" cluster down "$TOPO" --run-dir "$RUN" >/dev/null 2>&1 || echo "net-netns-demo: cluster down reported a problem" >&2
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT

sed -e "s/^name: netns$/name: $NAME/" -e "s#10\.77\.0\.#$NET.#g" -e "s#client_listen: 127.0.0.1:5100#client_listen: $BS#" \
    -e "s#\.\./\.build-guest#$ROOT/.build-guest#" -e "s#\.\./\.state/consoles#$W#" \
    -e "s#^fence_command: fence-netns.sh#fence_command: $ROOT/topology/fence-netns.sh#" topology/netns.yaml > "$TOPO"
grep -q "name: $NAME" "$TOPO" && grep -q "$BS" "$TOPO" || fail "could not derive the test topology from topology/netns.yaml"

IMG=$(scripts/guest-image.sh)
say "guest image ready in $IMG"
"$BIN" cluster up "$TOPO" --detach --run-dir "$RUN" > "$W/up.out" 2>&1 || { cat "$W/up.out"; fail "cluster up"; }
say "cluster up: $NS_A ($NET.11) and $NS_B ($NET.12), each with its libvirtd, joined by the hub bridge"
SOCK_A="qemu+unix:///system?socket=$RUN/hosts/host-a/run/libvirt-sock"
SOCK_B="qemu+unix:///system?socket=$RUN/hosts/host-b/run/libvirt-sock"

# --- The data plane, exactly DataPlanePlan's command lines (run inside the host's namespace, as the LC does) -----
VNI=100 GW=10.200.0.1/24 NETWORK=10.200.0.0 NETMASK=255.255.255.0
BR=dz-br$VNI VX=dz-vx$VNI GWMAC=02:d0:7a:00:00:64 GROUP=239.1.0.100 MTU=1450   # MTU: underlay 1500 - 50 (VXLAN)
BRIDGE_RULESET='table bridge doze {}
delete table bridge doze
table bridge doze {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "dz-vx*" drop
	}
	chain output {
		type filter hook output priority 0; policy accept;
		oifname "dz-vx*" drop
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname "dz-vx*" ether saddr & ff:ff:ff:00:00:00 == 02:d0:7a:00:00:00 drop
		oifname "dz-vx*" udp dport { 67, 68 } drop
		iifname "dz-vx*" udp dport { 67, 68 } drop
	}
}'
nat_ruleset() { cat <<EOF
table ip doze {
	map fip_dnat {
		type ipv4_addr : ipv4_addr
	}
	map fip_snat {
		type ipv4_addr : ipv4_addr
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		dnat to ip daddr map @fip_dnat
	}
	chain output {
		type nat hook output priority -100; policy accept;
		dnat to ip daddr map @fip_dnat
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "$1" snat to ip saddr map @fip_snat
	}
}
EOF
}
ensure_switch() {  # NS TAG -- HostDataPlane.ensureSwitch(vni: 100, gateway: "10.200.0.1/24") on a fresh host
  local ns=$1 tag=$2 x="ip netns exec $1"
  $x ip link add name $BR address $GWMAC mtu $MTU type bridge stp_state 0 forward_delay 0
  $x ip addr add $GW dev $BR
  $x ip link add name $VX mtu $MTU type vxlan id $VNI group $GROUP dev eth0 dstport 4789
  $x ip link set dev $VX master $BR up
  $x ip link set dev $BR up
  echo "$BRIDGE_RULESET" | $x nft -f -
  echo 1 | $x tee /proc/sys/net/ipv4/ip_forward >/dev/null
  : > "$W/$tag-$BR.hosts"; chmod 644 "$W/$tag-$BR.hosts"
  $x dnsmasq --conf-file=/dev/null --port=0 --interface=$BR --bind-interfaces --except-interface=lo \
    --dhcp-range=$NETWORK,static,$NETMASK,1h --dhcp-option=option:router,${GW%/*} --dhcp-option-force=option:mtu,$MTU \
    --dhcp-authoritative --dhcp-hostsfile="$W/$tag-$BR.hosts" --dhcp-leasefile="$W/$tag-$BR.leases" \
    --pid-file="$W/$tag-$BR.pid" --log-dhcp --log-facility="$W/$tag-$BR.log"
  DNSMASQ_PIDS+=("$(cat "$W/$tag-$BR.pid")")
}
add_lease() {  # TAG MAC IP HOSTNAME -- HostDataPlane.addLease: rewrite the hosts file, SIGHUP dnsmasq
  echo "$2,$3,$4" >> "$W/$1-$BR.hosts"
  kill -HUP "$(cat "$W/$1-$BR.pid")"
}
bind_fip() {  # NS FIP PRIVATE -- HostDataPlane.bindFloatingIP (on a host where neither address is bound yet)
  local x="ip netns exec $1"
  $x nft list table ip doze >/dev/null 2>&1 || nat_ruleset eth0 | $x nft -f -
  $x ip addr replace $2/32 dev eth0
  printf 'add element ip doze fip_dnat { %s : %s }\nadd element ip doze fip_snat { %s : %s }\n' $2 $3 $3 $2 | $x nft -f -
  $x busybox arping -U -c 2 -I eth0 -s $2 $2 >/dev/null
}
unbind_fip() {  # NS FIP PRIVATE -- HostDataPlane.unbindFloatingIP
  local x="ip netns exec $1"
  printf 'delete element ip doze fip_dnat { %s }\ndelete element ip doze fip_snat { %s }\n' $2 $3 | $x nft -f -
  $x ip addr del $2/32 dev eth0
}

ensure_switch $NS_A a
ensure_switch $NS_B b
# Idempotence as the LC sees it: a second ensureSwitch finds everything in place (DataPlanePlan returns no commands);
# here: the devices are there with the right VNI, group, underlay and master.
ip -n $NS_A -d link show $VX | grep -q "vxlan id $VNI group $GROUP dev eth0 .*dstport 4789" || fail "$VX on host-a"
ip -n $NS_B -d link show $VX | grep -q "master $BR" || fail "$VX not in $BR on host-b"
say "switch $VNI on both hosts: $BR ($GW, MAC $GWMAC) + $VX (group $GROUP over eth0) + nft bridge doze + dnsmasq"

MAC_A=52:54:00:c8:00:0a IP_A=10.200.0.10
MAC_B=52:54:00:c8:00:0b IP_B=10.200.0.20
MAC_C=52:54:00:c8:00:0c IP_C=10.200.0.30
FIP=$NET.200
add_lease a $MAC_A $IP_A ga
add_lease a $MAC_C $IP_C gc
add_lease b $MAC_B $IP_B gb
for g in ga gb gc; do
  v=MAC_${g#g}; v=${v^^}; mac=${!v}
  scripts/guest-xml.sh $g "$W/console-$g.log" --nic $BR "${mac}" > "$W/$g.xml"
done
boot() {  # SOCKET GUEST -- define and start; a daemon still probing QEMU refuses for a moment, so retried (30 s)
  local i
  for i in $(seq 60); do virsh -q -c "$1" define "$W/$2.xml" >"$W/define-$2.out" 2>&1 && break; sleep 0.5; done
  virsh -q -c "$1" dominfo "$2" >/dev/null 2>&1 || fail "define $2: $(cat "$W/define-$2.out")"
  virsh -q -c "$1" start "$2" >/dev/null || fail "start $2"
}
boot "$SOCK_A" ga
boot "$SOCK_A" gc
boot "$SOCK_B" gb
say "ga, gc started on host-a and gb on host-b, each with a virtio NIC on $BR"
for g in ga gb gc; do
  for _ in $(seq 1200); do grep -q GUEST-NET "$W/console-$g.log" 2>/dev/null && break; sleep 0.1; done
  grep -q GUEST-NET "$W/console-$g.log" 2>/dev/null || fail "$g got no address by DHCP within 120 s"
  echo "  $g: $(grep -a -m1 GUEST-NET "$W/console-$g.log" | tr -d '\r')"
done
grep -aq "GUEST-NET ip=$IP_B/24 router=10.200.0.1" "$W/console-gb.log" || fail "gb has the wrong address"
say "every guest has its address from its own host's dnsmasq"

# A command in a guest, through its test shell on TCP 5000, from the guest's host (the gateway reaches its own VMs).
gsh() {  # NS IP SECONDS COMMAND -- its output; retried while the shell does not answer at all
  local out="" i
  for i in 1 2 3 4 5; do
    out=$(echo "$4" | ip netns exec "$1" timeout "$3" busybox nc "$2" 5000 2>&1) || true
    [ -n "$out" ] && break
    sleep 0.5
  done
  echo "$out"
}
ping_avg() {  # NS FROM_IP TO_IP -> "avg ms (loss)"
  local out
  out=$(gsh "$1" "$2" 60 "ping -c 20 -i 0.2 $3 2>&1") || true
  echo "$out" | grep -q ' 0% packet loss' || fail "ping $2 -> $3: $out"
  echo "$out" | awk -F'[/ ]' '/round-trip/ {print "min/avg/max " $(NF-3) "/" $(NF-2) "/" $(NF-1) " ms"}'
}
stream() {  # NS FROM_IP TO_IP TO_GUEST -> MiB/s of 20 MiB over TCP into the peer's sink (port 5001), checked there
  local out before i
  before=$(grep -ac GUEST-SINK "$W/console-$4.log" || true)
  out=$(gsh "$1" "$2" 300 "a=\$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero bs=64k count=320 2>/dev/null | nc $3 5001; r=\$?; b=\$(cut -d' ' -f1 /proc/uptime); echo STREAM \$a \$b \$r")
  echo "$out" | grep -q '^STREAM .* 0$' || fail "stream $2 -> $3: $out"
  for i in $(seq 100); do [ "$(grep -ac GUEST-SINK "$W/console-$4.log")" -gt "$before" ] && break; sleep 0.1; done
  got=$(grep -a GUEST-SINK "$W/console-$4.log" | tail -1 | tr -d '\r')
  [ "$got" = "GUEST-SINK bytes=20971520" ] || fail "stream $2 -> $3: the receiver $4 reports '$got', not 20971520 bytes"
  echo "$out" | awk '/^STREAM/ {t = $3 - $2; if (t <= 0) t = 0.01; printf "20 MiB in %.2f s = %.1f MiB/s (all 20971520 bytes received)", t, 20 / t}'
}
for _ in $(seq 100); do gsh $NS_A $IP_A 5 'echo up' 2>/dev/null | grep -q up && break; sleep 0.2; done

PING_X=$(ping_avg $NS_A $IP_A $IP_B); say "ping ga -> gb (host-a -> host-b over VXLAN): $PING_X"
PING_L=$(ping_avg $NS_A $IP_A $IP_C); say "ping ga -> gc (both on host-a):              $PING_L"
STREAM_X=$(stream $NS_A $IP_A $IP_B gb); say "TCP ga -> gb (across hosts): $STREAM_X"
STREAM_L=$(stream $NS_A $IP_A $IP_C gc); say "TCP ga -> gc (one host):     $STREAM_L"
GWPING=$(gsh $NS_B $IP_B 20 'ping -c 3 10.200.0.1 2>&1 | tail -1')
say "gb -> its gateway 10.200.0.1 on host-b: $GWPING"
# DHCP and the gateway stayed local: host-a's dnsmasq never answered gb, host-b's never answered ga/gc.
grep -q "$MAC_B" "$W/a-$BR.log" && fail "host-a's dnsmasq saw gb's DHCP (it should not cross VXLAN)"
grep -q "$MAC_A" "$W/b-$BR.log" && fail "host-b's dnsmasq saw ga's DHCP (it should not cross VXLAN)"

# --- Floating IP of gb on host-b ---------------------------------------------------------------------------------
bind_fip $NS_B $FIP $IP_B
HUBPING=$(ip netns exec $HUB busybox ping -c 5 -W 1 $FIP 2>&1 | tail -1)
echo "$HUBPING" | grep -q round-trip || fail "the hub cannot ping $FIP: $HUBPING"
say "hub -> floating IP $FIP (gb via host-b): $HUBPING"
OUT=$(gsh $NS_B $IP_B 20 "ping -c 3 $NET.1 2>&1 | tail -1")
echo "$OUT" | grep -q round-trip || fail "gb cannot reach the hub through SNAT: $OUT"
say "gb -> hub $NET.1 (SNAT to $FIP): $OUT"

# --- Live migration of gb to host-a, then the floating IP follows ---------------------------------------------------
add_lease a $MAC_B $IP_B gb   # the destination's dnsmasq must renew gb's lease
cat > "$W/prober.py" <<'EOP'
import os, socket, struct, sys, time
# ICMP echo to sys.argv[1] every 10 ms; prints "ns" of every reply until killed.
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
ip netns exec $HUB python3 "$W/prober.py" $FIP "$W/replies" & PROBER=$!
for _ in $(seq 100); do [ -s "$W/replies" ] && break; sleep 0.05; done
[ -s "$W/replies" ] || fail "the prober gets no reply from $FIP"
M0=$(date +%s%N)
virsh -q -c "$SOCK_B" migrate --live --p2p --persistent --undefinesource gb qemu+tcp://$NET.11/system || fail "migrate gb"
M1=$(date +%s%N)
[ "$(virsh -q -c "$SOCK_A" domstate gb)" = running ] || fail "gb is not running on host-a"
say "gb live-migrated to host-a in $(( (M1 - M0) / 1000000 )) ms"
R0=$(date +%s%N)
unbind_fip $NS_B $FIP $IP_B
bind_fip $NS_A $FIP $IP_B
R1=$(date +%s%N)
for _ in $(seq 500); do [ "$(tail -1 "$W/replies")" -gt "$R0" ] 2>/dev/null && break; sleep 0.01; done
FIRST=$(awk -v r=$R0 '$1 > r {print; exit}' "$W/replies")
[ -n "$FIRST" ] || fail "the hub gets no reply from $FIP within 5 s of the rebind"
sleep 0.5
kill $PROBER; PROBER=""
GAP=$(awk -v a=$M0 '$1 > a { if (p && $1 - p > g) g = $1 - p; p = $1 } END {printf "%.0f", g / 1e6}' "$W/replies")
REBIND_MS=$(( (FIRST - R0) / 1000000 )); CMDS_MS=$(( (R1 - R0) / 1000000 ))
say "floating IP $FIP moved to host-a: the hub's first reply $REBIND_MS ms after the rebind began (commands: $CMDS_MS ms)"
ip -n $NS_B addr show dev eth0 | grep -q "$FIP/32" && fail "$FIP still on host-b"
HUBPING=$(ip netns exec $HUB busybox ping -c 5 -W 1 $FIP 2>&1)
echo "$HUBPING" | grep -q ' 0% packet loss' || fail "hub -> $FIP after the move: $HUBPING"
HUBPING=$(echo "$HUBPING" | tail -1)
PING_M=$(ping_avg $NS_A $IP_A $IP_B)
say "after the move: hub -> $FIP $HUBPING; ga -> gb (now both on host-a): $PING_M"

echo
echo "FIGURES (TCG guests, 1 vCPU, 128 MiB; switch VNI $VNI over multicast VXLAN)"
echo "  ping ga->gb across hosts (VXLAN):  $PING_X"
echo "  ping ga->gc on one host:           $PING_L"
echo "  TCP ga->gb across hosts:           $STREAM_X"
echo "  TCP ga->gc on one host:            $STREAM_L"
echo "  gb live migration (virsh):         $(( (M1 - M0) / 1000000 )) ms"
echo "  floating IP rebind -> hub reply:   $REBIND_MS ms (unbind+bind+GARP commands $CMDS_MS ms)"
echo "  hub's longest reply gap, migration + rebind (10 ms probes): $GAP ms"
echo "RESULT: PASS ($(elapsed) s)"
