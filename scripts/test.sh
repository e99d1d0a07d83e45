#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: core logic, the libvirt layer on libvirt's test driver,
# the HTTP API through the real router, the real `doze` binary as processes on loopback, and the README's examples.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh python3
swift build --build-tests
swift test --skip-build "$@"

# The README's API examples, replayed against the real binary: they must work as printed.
if [ $# -eq 0 ]; then
  python3 scripts/check-readme.py "$(swift build --show-bin-path)/doze"
fi
