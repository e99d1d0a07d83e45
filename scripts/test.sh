#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: core logic, the libvirt layer on libvirt's test driver,
# the HTTP API through the real router, and the real `doze` binary as a process on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
