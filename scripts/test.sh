#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: core logic, the libvirt layer on libvirt's test driver,
# the HTTP API through the real router, the real `doze` binary as processes on loopback, the README's examples,
# live migration of real guests between real libvirt daemons on network-namespace hosts, and a short chaos run
# of a cluster elected on etcd (root only).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --netns --etcd
swift build --build-tests
swift test --skip-build "$@"

# The README's API examples, replayed against the real binary: they must work as printed.
if [ $# -eq 0 ]; then
  python3 scripts/check-readme.py "$(swift build --show-bin-path)/doze"
fi

# Real guests, real daemons, several hosts (topology/netns.yaml): live migration end to end, about 20 s.
if [ $# -eq 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    scripts/e2e-migration.sh "$(swift build --show-bin-path)/doze"
    # Leader election and records on etcd under kill -9 and a partition: 150 submissions over 40 s.
    scripts/chaos.sh --short "$(swift build --show-bin-path)/doze"
  else
    echo "test.sh: skipping scripts/e2e-migration.sh and scripts/chaos.sh --short (network namespaces need root)" >&2
  fi
fi
