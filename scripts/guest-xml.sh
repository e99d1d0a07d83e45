#!/usr/bin/env bash
# Prints the domain XML of the smallest real test guest (kvm.md §2): 128 MiB, 1 vCPU, TCG (type 'qemu', CPU qemu64),
# booted directly from scripts/guest-image.sh's cloud kernel and busybox initramfs, no disk, no network. Its serial
# console goes to CONSOLE_LOG, which shows GUEST-READY after ~2 s and then "tick N up=…" every second.
#
#   scripts/guest-xml.sh NAME [CONSOLE_LOG]    default console: .state/consoles/NAME.log; builds the image if needed
#
# Every daemon must see the image and console paths (the network-namespace topology shares the filesystem).
set -euo pipefail
NAME=${1:?usage: scripts/guest-xml.sh NAME [CONSOLE_LOG]}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMG=$("$ROOT/scripts/guest-image.sh")
CONSOLE=${2:-$ROOT/.state/consoles/$NAME.log}
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
    <serial type='file'><source path='$CONSOLE' append='on'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOX
