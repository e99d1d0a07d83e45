#!/usr/bin/env bash
# Installs the Debian packages Doze needs to build and run, if any are missing. Sourced by run.sh and test.sh.
# Usage: scripts/setup.sh [--netns] [--etcd] [--promtool] [extra-package ...]
#   --netns  also what real guests and the network-namespace topology (topology/netns.yaml) need: hand-started
#            libvirtd with its QEMU driver, virsh, QEMU, and the tools for the test guest image and namespaces
#   --etcd   also etcd and etcdctl (Debian's 3.4), for topologies with `etcd:` (topology/etcd.yaml); `doze cluster up`
#            runs its own members by hand (the package's etcd.service, where systemd runs, is not used)
#   --promtool  also Debian's prometheus package, for its promtool (the /metrics exposition test and
#            scripts/bench-metrics.sh); the server it ships is never started
set -euo pipefail

extra=()
for a in "$@"; do
  case "$a" in
    --netns) extra+=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 busybox-static cpio python3 iproute2 procps nftables dnsmasq-base) ;;
    --etcd) extra+=(etcd-server etcd-client) ;;
    --promtool) extra+=(prometheus) ;;
    *) extra+=("$a") ;;
  esac
done
packages=(libvirt-dev pkg-config libvirt0 curl "${extra[@]}")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.1 or newer is needed)" >&2; exit 1; }
pkg-config --exists libvirt || { echo "setup: pkg-config cannot find libvirt after installing libvirt-dev" >&2; exit 1; }
