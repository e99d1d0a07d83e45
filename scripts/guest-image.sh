#!/usr/bin/env bash
# Builds the smallest real guest Doze boots in its multi-host tests and demos, from Debian packages only:
# Debian's cloud kernel (fast to decompress under TCG) and a busybox-static initramfs that powers off on the
# ACPI power button and prints a heartbeat on its serial console every second (so a live migration can be seen
# not to interrupt it). Booted directly (<kernel>/<initrd>), no disk. See docs and ../shared/reference/kvm.md §2.
#
# With a virtio NIC (scripts/guest-xml.sh --nic BRIDGE MAC) the guest also configures eth0 by DHCP (busybox udhcpc;
# address, prefix and default route), prints "GUEST-NET ip=A/N router=R mac=M event=bound" on the console, and
# serves two TCP ports for network tests: 5001 a sink (reads each connection, then prints "GUEST-SINK bytes=N" on
# the console), 5000 a shell
# (nc -ll -e /bin/sh: a test guest on a private switch, never anything else). Without a NIC it boots as before.
#
#   scripts/guest-image.sh [OUTDIR]     default .build-guest/ (ignored by git); prints OUTDIR
#
# Reruns are instant: the kernel package is downloaded once, the initramfs rebuilt only when this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.build-guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP="$OUT/.built-by-$(sha256sum "$0" | cut -c1-16)"
if [ -f "$STAMP" ] && [ -s "$OUT/vmlinuz-cloud" ] && [ -s "$OUT/initrd.gz" ]; then
  echo "$OUT"
  exit 0
fi

# busybox-static and cpio for the initramfs; apt-get download needs package lists.
missing=()
for p in busybox-static cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "guest-image: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The versioned kernel package behind the cloud metapackage (linux-image-6.1.0-NN-cloud-amd64).
PKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$PKG" ] || { echo "guest-image: no linux-image-cloud-amd64 in the package lists" >&2; exit 1; }
cd "$OUT"
if [ ! -s "$PKG.deb" ]; then
  echo "guest-image: downloading $PKG" >&2
  apt-get download -qq -o APT::Sandbox::User=root "$PKG"
  mv "${PKG}"_*.deb "$PKG.deb"
fi
rm -rf x root
dpkg-deb -x "$PKG.deb" x
KV=$(ls x/lib/modules)
cp "x/boot/vmlinuz-$KV" vmlinuz-cloud

mkdir -p root/{bin,proc,sys,dev,tmp,etc,lib/modules}
cp "$(command -v busybox)" root/bin/busybox
# evdev + button: the ACPI power button reaches acpid, so a libvirt shutdown powers the guest off.
for m in drivers/input/evdev.ko drivers/acpi/button.ko; do
  [ -f "x/lib/modules/$KV/kernel/$m" ] && cp "x/lib/modules/$KV/kernel/$m" root/lib/modules/
done
# The virtio NIC: virtio_net and what it needs, in load order (the cloud kernel builds them all as modules; one that
# is built in, per modules.builtin, has no .ko and is skipped at boot).
NETMODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev
  drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci net/core/failover drivers/net/net_failover drivers/net/virtio_net"
: > root/lib/modules/net.order
for m in $NETMODS; do
  if [ -f "x/lib/modules/$KV/kernel/$m.ko" ]; then
    cp "x/lib/modules/$KV/kernel/$m.ko" root/lib/modules/
    echo "$(basename $m)" >> root/lib/modules/net.order
  elif ! grep -q "^kernel/$m.ko$" "x/lib/modules/$KV/modules.builtin"; then
    echo "guest-image: $m is neither a module nor built into $KV" >&2; exit 1
  fi
done
cat > root/bin/udhcpc.script <<'EOS'
#!/bin/sh
# busybox udhcpc's hook: $interface $ip $mask (prefix length) $router $mtu from the DHCP server.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    [ "$1" = bound ] && ip addr flush dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"   # a VXLAN switch's MTU is 50 below the underlay's
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "GUEST-NET ip=$ip/$mask router=${router%% *} mtu=$(cat /sys/class/net/$interface/mtu) mac=$(cat /sys/class/net/$interface/address) event=$1" >/dev/console ;;
esac
exit 0
EOS
chmod +x root/bin/udhcpc.script
cat > root/init <<'EOI'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
insmod /lib/modules/evdev.ko 2>/dev/null; insmod /lib/modules/button.ko 2>/dev/null
mkdir -p /etc/acpi/PWRF; printf '#!/bin/sh\necho GUEST-POWEROFF\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080; [ -e /dev/input/event0 ] && acpid -c /etc/acpi -l /dev/null
ip link set lo up
# The network, in the background so GUEST-READY comes as early as before: with a virtio NIC, DHCP on eth0 (udhcpc
# renews for as long as the guest runs), a TCP sink on 5001 and a test shell on 5000; without one, nothing.
( for m in $(cat /lib/modules/net.order); do insmod /lib/modules/$m.ko 2>/dev/null; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
  if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    udhcpc -f -i eth0 -s /bin/udhcpc.script -t 60 -T 1 -A 2 >/dev/null 2>&1 &
    # -e: the sink must not read nc's own stdin, whose EOF would end the connection early.
    ( while true; do nc -l -p 5001 -e sh -c 'echo "GUEST-SINK bytes=$(wc -c)" >/dev/console'; done ) >/dev/null 2>&1 &
    nc -ll -p 5000 -e /bin/sh >/dev/null 2>&1 &
  fi ) &
echo "GUEST-READY uptime=$(cut -d' ' -f1 /proc/uptime) mem=$(grep MemTotal /proc/meminfo)"
i=0; while true; do i=$((i+1)); echo "tick $i up=$(cut -d' ' -f1 /proc/uptime)"; sleep 1; done
EOI
chmod +x root/init
(cd root && find . | cpio -o -H newc --quiet | gzip -9) > initrd.gz
rm -rf x root
rm -f .built-by-*
touch "$STAMP"
echo "$OUT"
