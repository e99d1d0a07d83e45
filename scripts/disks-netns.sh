#!/usr/bin/env bash
# Real disk images on a real multi-host cluster: topology/netns.yaml renamed `dk` (subnet 10.79.0.0/24, clients on
# 127.0.0.1:5190), two network-namespace hosts with their own libvirtd (QEMU under TCG). A tiny qcow2 image goes
# into both hosts' image pools; a kvm-app VM built from it (`disks: 1`, a VNC password) runs on a per-VM qcow2
# overlay of the image plus a 1 GiB data volume, both libvirt volumes in the host's VM-disk pool. The script writes
# a pattern into both disks through QEMU's block layer, migrates the VM live with copy-storage
# (VIR_MIGRATE_NON_SHARED_INC: the destination pre-creates the overlay, backed by its own copy of the image, and the
# data volume), and checks on the destination: the VM runs, its disks are the destination's volumes, the overlay's
# backing file is the destination's image, the patterns read back, and the source's volumes are gone. It also checks
# the VNC console (vncAddr, passwd) and that deleting the app deletes the volumes. Everything it creates goes.
#
#   scripts/disks-netns.sh [DOZE_BINARY]      root; default binary: the debug build
#   KEEP=1 scripts/disks-netns.sh              leave the cluster up for a look (then: doze cluster down /tmp/dk.yaml --run-dir DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-$(swift build --show-bin-path)/doze}
[ -x "$BIN" ] || { echo "disks-netns: no doze binary at $BIN (swift build first)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "disks-netns: needs root (network namespaces, libvirtd)" >&2; exit 2; }
command -v qemu-img >/dev/null || { echo "disks-netns: needs qemu-img (qemu-utils)" >&2; exit 2; }

W=$(mktemp -d /tmp/doze-disks-netns.XXXXXX)
TOPO=/tmp/dk.yaml
RUN=$W/cluster
BS=127.0.0.1:5190
START=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - START) / 1000000 )); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
say() { echo "[$(elapsed) s] $*"; }
fail() { echo "FAIL: $*" >&2; echo "--- logs" >&2; tail -n 15 "$RUN"/*.log >&2 2>/dev/null || true; exit 1; }
cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $BIN cluster down $TOPO --run-dir $RUN"; exit $rc; fi
  "$BIN" cluster down "$TOPO" --run-dir "$RUN" >/dev/null 2>&1 || echo "disks-netns: cluster down reported a problem" >&2
  rm -rf "$W" "$TOPO"
  exit $rc
}
trap cleanup EXIT

# The shipped topology as `dk`: its own subnet and client port; no fencing (nothing here kills a host).
sed -e 's/^name: netns$/name: dk/' -e 's#10\.77\.0\.#10.79.0.#g' -e "s#client_listen: 127.0.0.1:5100#client_listen: $BS#" \
    -e "s#\.\./\.build-guest#$ROOT/.build-guest#" -e "s#\.\./\.state/consoles#$W#" \
    -e '/^fence_command:/d' topology/netns.yaml > "$TOPO"
grep -q '^name: dk$' "$TOPO" && grep -q 'subnet: 10.79.0.0/24' "$TOPO" && grep -q "client_listen: $BS" "$TOPO" \
  || fail "could not derive the test topology from topology/netns.yaml"

"$BIN" cluster up "$TOPO" --detach --run-dir "$RUN" > "$W/up.out" 2>&1 || { cat "$W/up.out"; fail "cluster up"; }
say "cluster up: host-a and host-b, each its own netns + libvirtd + doze lc"
doze() { "$BIN" "$@" --bootstrap "$BS"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
controller_id() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$RUN/$1/controller.json"; }
for _ in $(seq 100); do [ "$(doze host list --json 2>/dev/null | grep -o '"id"' | wc -l)" = 2 ] && break; sleep 0.1; done
HOST_A=$(controller_id host-a); HOST_B=$(controller_id host-b)
virsh_on() { virsh -q -c "qemu+unix:///system?socket=$RUN/hosts/$1/run/libvirt-sock" "${@:2}"; }
host_of() { [ "$1" = "$HOST_A" ] && echo host-a || echo host-b; }

# A tiny image, the same file in both hosts' image pools (a blank disk: the guest sits in its BIOS, QEMU runs).
qemu-img create -q -f qcow2 "$W/tiny.qcow2" 64M
for h in host-a host-b; do cp "$W/tiny.qcow2" "$RUN/$h/images/tiny.qcow2"; done
say "tiny.qcow2 (64 MiB virtual, $(stat -c %s "$W/tiny.qcow2") bytes) in both image pools"

# A missing image: IMAGE_NOT_FOUND and no volume left anywhere.
doze app create lost --runas t --image nosuch.qcow2 --count 1 --mems 128 --disks 1 --wait > "$W/lost.out" 2>&1 || true
grep -q IMAGE_NOT_FOUND "$W/lost.out" || grep -q "is not in this host's image pool" "$W/lost.out" || fail "a missing image did not fail with IMAGE_NOT_FOUND: $(cat "$W/lost.out")"
[ -z "$(ls -A "$RUN/host-a/vm-disks" "$RUN/host-b/vm-disks" 2>/dev/null | grep -v ':$' | grep -v '^$' || true)" ] || fail "a failed VM left volumes: $(ls -R "$RUN"/host-*/vm-disks)"
doze app delete lost.t.default >/dev/null 2>&1 || true
say "a missing image fails the VM (IMAGE_NOT_FOUND) and leaves no volume"

doze app create dk --runas t --image tiny.qcow2 --count 1 --mems 128 --disks 1 --vnc-password s3cret --constraint "hostname==10.79.0.11" --wait > "$W/app.out" 2>&1 \
  || { cat "$W/app.out"; fail "app create"; }
VM=0.dk.t.default
for _ in $(seq 100); do [ "$(doze vm show $VM --json 2>/dev/null | field '["status"]' 2>/dev/null)" = RUNNING ] && break; sleep 0.2; done
doze vm show $VM --json > "$W/vm.json" || fail "no VM $VM: $(cat "$W/app.out")"
[ "$(field '["status"]' < "$W/vm.json")" = RUNNING ] || fail "$VM is not RUNNING: $(cat "$W/vm.json")"
FROM=$(field '["virtualMachineLocation"]["localControllerId"]' < "$W/vm.json"); SRC=$(host_of "$FROM")
[ "$SRC" = host-a ] || fail "$VM was not placed on host-a"
TO=$HOST_B; DST=host-b
virsh_on $SRC domblklist $VM > "$W/blk-src.txt"
grep -q "vda .*$RUN/$SRC/vm-disks/$VM-root.qcow2" "$W/blk-src.txt" && grep -q "vdb .*$RUN/$SRC/vm-disks/$VM-data0.qcow2" "$W/blk-src.txt" \
  || fail "the VM's disks are not its volumes: $(cat "$W/blk-src.txt")"
qemu-img info -U "$RUN/$SRC/vm-disks/$VM-root.qcow2" > "$W/info-src.txt"
grep -q "backing file: $RUN/$SRC/images/tiny.qcow2" "$W/info-src.txt" || fail "the overlay is not backed by the image: $(cat "$W/info-src.txt")"
grep -q "virtual size: 1 GiB" <(qemu-img info -U "$RUN/$SRC/vm-disks/$VM-data0.qcow2") || fail "the data volume is not 1 GiB"
say "$VM runs on $SRC: vda = overlay of tiny.qcow2, vdb = 1 GiB data volume"

# VNC: the host picked a port; it is reported as vncAddr and the console has the app's password.
VNC=$(field '.get("vncAddr", "")' < "$W/vm.json")
PORT=$(virsh_on $SRC dumpxml $VM | sed -n "s/.*<graphics type='vnc' port='\([0-9]*\)'.*/\1/p")
[ -n "$PORT" ] && [ "$VNC" = "10.79.0.11:$PORT" ] || fail "vncAddr '$VNC' is not the live port $PORT"
virsh_on $SRC dumpxml --security-info $VM | grep -q "passwd='s3cret'" || fail "the VNC console has no password"
say "VNC console at $VNC (vncAddr), password protected"

# Data in both disks, written through the guest's QEMU (4 MiB each, distinct patterns) and flushed; read back from
# the files (qemu-io -U reads beside the running QEMU).
hmp() { virsh_on "$1" qemu-monitor-command "$VM" --hmp "$2"; }
blk() { hmp "$1" "qemu-io -d /machine/peripheral/virtio-disk$2/virtio-backend \"$3\""; }
check() {  # check HOST FILE PATTERN OFFSET
  qemu-io -U -r -f qcow2 -c "read -P $3 $4 4M" "$RUN/$1/vm-disks/$2" > "$W/read.txt" 2>&1 || true
  grep -q "read 4194304/4194304" "$W/read.txt" && ! grep -q "Pattern verification failed" "$W/read.txt"
}
blk $SRC 0 "write -P 0x5a 0 4M"; blk $SRC 0 flush
blk $SRC 1 "write -P 0xa5 1M 4M"; blk $SRC 1 flush
check $SRC "$VM-root.qcow2" 0x5a 0 || fail "the pattern is not in the overlay: $(cat "$W/read.txt")"
check $SRC "$VM-data0.qcow2" 0xa5 1M || fail "the pattern is not in the data volume: $(cat "$W/read.txt")"
! check $SRC "$VM-data0.qcow2" 0x5a 1M || fail "the pattern check cannot tell patterns apart"
say "wrote 4 MiB into the overlay and 4 MiB into the data volume (read back from the files)"

doze vm migrate $VM --to "$TO" --wait --json > "$W/m.json" || { cat "$W/m.json"; fail "migrating $VM"; }
[ "$(field '["state"]' < "$W/m.json")" = completed ] || fail "migration: $(cat "$W/m.json")"
[ "$(field '["mode"]' < "$W/m.json")" = live ] || fail "not migrated live: $(cat "$W/m.json")"
say "migrated live $SRC -> $DST with its storage in $(field '["durationMs"]' < "$W/m.json") ms ($(field '["progress"]["dataProcessed"]' < "$W/m.json") bytes of memory)"

[ "$(virsh_on $DST domstate $VM)" = running ] || fail "$VM does not run on $DST"
virsh_on $SRC list --all --name | grep -qx "$VM" && fail "$VM is still defined on $SRC"
virsh_on $DST domblklist $VM > "$W/blk-dst.txt"
grep -q "vda .*$RUN/$DST/vm-disks/$VM-root.qcow2" "$W/blk-dst.txt" && grep -q "vdb .*$RUN/$DST/vm-disks/$VM-data0.qcow2" "$W/blk-dst.txt" \
  || fail "on $DST the disks are not its volumes: $(cat "$W/blk-dst.txt")"
qemu-img info -U "$RUN/$DST/vm-disks/$VM-root.qcow2" > "$W/info-dst.txt"
grep -q "backing file: $RUN/$DST/images/tiny.qcow2" "$W/info-dst.txt" || fail "the destination overlay is not backed by its image: $(cat "$W/info-dst.txt")"
blk $DST 0 flush; blk $DST 1 flush
check $DST "$VM-root.qcow2" 0x5a 0 || fail "the overlay's data did not arrive on $DST: $(cat "$W/read.txt")"
check $DST "$VM-data0.qcow2" 0xa5 1M || fail "the data volume's data did not arrive on $DST: $(cat "$W/read.txt")"
[ -z "$(ls -A "$RUN/$SRC/vm-disks")" ] || fail "the source kept volumes: $(ls "$RUN/$SRC/vm-disks")"
say "on $DST: running, vda/vdb are its volumes, overlay backed by its tiny.qcow2, both patterns read back; $SRC's volumes are gone"
say "destination overlay: $(stat -c %s "$RUN/$DST/vm-disks/$VM-root.qcow2") bytes on disk; data volume: $(stat -c %s "$RUN/$DST/vm-disks/$VM-data0.qcow2") bytes"

doze app delete dk.t.default > "$W/del.out" 2>&1 || { cat "$W/del.out"; fail "app delete"; }
for _ in $(seq 50); do [ -z "$(ls -A "$RUN/$DST/vm-disks")" ] && break; sleep 0.1; done
[ -z "$(ls -A "$RUN/$DST/vm-disks")" ] || fail "deleting the app left volumes: $(ls "$RUN/$DST/vm-disks")"
say "app deleted: its VM and both volumes are gone"
say "PASS"
