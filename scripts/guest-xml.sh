#!/usr/bin/env bash
# Prints the domain XML of the smallest real test guest (kvm.md §2): 128 MiB, 1 vCPU, TCG (type 'qemu', CPU qemu64),
# booted directly from scripts/guest-image.sh's cloud kernel and busybox initramfs, no disk, no network unless
# asked. Its serial console goes to CONSOLE_LOG, which shows GUEST-READY after ~2 s and then "tick N up=…" every second.
#
#   scripts/guest-xml.sh NAME [CONSOLE_LOG] [--nic BRIDGE MAC]...
#       default console: .state/consoles/NAME.log; builds the image if needed. Each --nic adds a virtio NIC on the
#       host's Linux bridge BRIDGE (e.g. a switch's dz-br<VNI>) with the given MAC; the guest takes eth0's address
#       by DHCP and prints GUEST-NET ip=… on its console (scripts/guest-image.sh).
#
# Every daemon must see the image and console paths (the network-namespace topology shares the filesystem).
set -euo pipefail
USAGE="usage: scripts/guest-xml.sh NAME [CONSOLE_LOG] [--nic BRIDGE MAC]..."
NAME=${1:?$USAGE}; shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONSOLE=$ROOT/.state/consoles/$NAME.log
if [ $# -gt 0 ] && [ "$1" != --nic ]; then CONSOLE=$1; shift; fi
NICS=""
while [ $# -gt 0 ]; do
  [ "$1" = --nic ] && [ $# -ge 3 ] || { echo "$USAGE" >&2; exit 2; }
  [[ $2 =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || { echo "guest-xml: bad bridge name '$2'" >&2; exit 2; }
  [[ $3 =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || { echo "guest-xml: bad MAC '$3'" >&2; exit 2; }
  NICS+="    <interface type='bridge'><source bridge='$2'/><mac address='$3'/><model type='virtio'/></interface>"$'\n'
  shift 3
done
IMG=$("$ROOT/scripts/guest-image.sh")
mkdir -p "$(dirname "$CONSOLE")"
CONSOLE=$(cd "$(dirname "$CONSOLE")" && pwd)/$(basename "$CONSOLE")
cat <<EOX
<domain type='qemu'>
  <name>$NAME</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$IMG/vmlinuz-cloud</kernel>
    <initrd>$IMG/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
${NICS}    <serial type='file'><source path='$CONSOLE' append='on'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOX
