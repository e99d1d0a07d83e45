#!/usr/bin/env bash
# Hierarchy benchmark on real processes: failover times and a 200-controller scale run.
#   scripts/bench-hierarchy.sh [--controllers N] [--managers N] [--rounds N] [--skip-scale]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh python3
swift build -c release --product doze 2>&1 | grep -E "error|Build complete" >&2 || true
exec python3 scripts/bench-hierarchy.py "$(swift build -c release --show-bin-path)/doze" "$@"
