#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: core logic, the libvirt layer on libvirt's test driver,
# the HTTP API through the real router, the real `doze` binary as processes on loopback, the README's examples,
# schemathesis fuzzing of the native API against its OpenAPI document,
# live migration of real guests between real libvirt daemons on network-namespace hosts, HA restart of real guests
# after a host is killed and fenced, VM networks with real packets between guests on two hosts, and a short chaos run
# of a cluster elected on etcd (root only).
#
# Every step runs even when an earlier one failed (a README drift must not hide a failing migration), and the
# summary at the end names each step, its time and its outcome; the exit status is non-zero if any failed.
# Extra arguments go to `swift test` (e.g. --filter ClusterCoreTests), and then only the Swift tests run.
set -uo pipefail
cd "$(dirname "$0")/.."

#
# CLOCK_AHEAD_DAYS=30 scripts/test.sh runs every step with the wall clock of doze and of the Swift tests a month
# ahead (scripts/clock-ahead.sh, libfaketime): nothing may depend on the day the README or a test was written.
scripts/setup.sh --netns --etcd --promtool || exit 1
# The same debug build scripts/run.sh makes: after run.sh only the test targets are left to compile.
scripts/build.sh --build-tests || { echo "test.sh: the build failed; nothing was tested" >&2; exit 1; }
BIN=$(swift build --show-bin-path)/doze
ahead=()
if [ -n "${CLOCK_AHEAD_DAYS:-}" ]; then
  BIN=$(scripts/clock-ahead.sh "$CLOCK_AHEAD_DAYS" --wrap "$BIN") || exit 1
  ahead=(scripts/clock-ahead.sh "$CLOCK_AHEAD_DAYS")
  echo "test.sh: doze and the Swift tests run with the clock at $("${ahead[@]}" date -u +%FT%TZ) (real: $(date -u +%FT%TZ))"
fi

logs=.build/test-logs
rm -rf "$logs"; mkdir -p "$logs"
results=()
failures=()
failed=0
step() {   # step NAME COMMAND…: runs it (its output also kept in .build/test-logs), records its time and outcome
  local name=$1 start=$SECONDS rc log
  shift
  log=$logs/$(( ${#results[@]} + 1 )).log
  echo "=== $name"
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ $rc -eq 0 ]; then results+=("ok      $(printf '%5d' $((SECONDS - start))) s  $name")
  else results+=("FAILED  $(printf '%5d' $((SECONDS - start))) s  $name (exit $rc)"); failed=$((failed + 1)); failures+=("$name|$log"); fi
}

# Swift Testing's and XCTest's own summaries, and every failed expectation, from a test log
swift_test_failures() { grep -E "✘|error:|failed|Test run with|Executed [0-9]+ tests" "$1" | tail -n 25; }

step "swift test" "${ahead[@]}" swift test --skip-build "$@"
if [ $# -eq 0 ]; then
  # The README's API examples, replayed against the real binary: they must work as printed.
  step "README examples (scripts/check-readme.py)" python3 scripts/check-readme.py "$BIN"
  # schemathesis against a throwaway cluster with the served OpenAPI document: no 5xx, every answer as documented. About 3 min.
  step "API fuzzing (scripts/fuzz-api.sh)" scripts/fuzz-api.sh "$BIN"
  if [ "$(id -u)" -eq 0 ]; then
    # Real guests, real daemons, several hosts (topology/netns.yaml): live migration end to end, about 20 s.
    step "live migration end to end (scripts/e2e-migration.sh)" scripts/e2e-migration.sh "$BIN"
    # VM high availability: kill -9 a host with HA guests; they run again once, elsewhere, after fencing. About 20 s.
    step "HA restart after a host kill (scripts/ha-netns.sh)" scripts/ha-netns.sh "$BIN"
    # VM networks: a switch over VXLAN, guests pinging across hosts, a floating IP kept through a migration. About 70 s.
    step "VM networks with real packets (scripts/net-netns.sh)" scripts/net-netns.sh "$BIN"
    # Disks: an overlay and a data volume copied by a live migration between the hosts. About 15 s.
    step "disks and copy-storage migration (scripts/disks-netns.sh)" scripts/disks-netns.sh "$BIN"
    # Leader election and records on etcd under kill -9 and a partition: 150 submissions over 40 s.
    step "chaos on etcd (scripts/chaos.sh --short)" scripts/chaos.sh --short "$BIN"
  else
    echo "test.sh: skipping scripts/e2e-migration.sh, scripts/ha-netns.sh, scripts/net-netns.sh, scripts/disks-netns.sh and scripts/chaos.sh --short (network namespaces need root)" >&2
  fi
fi

echo
# Why each failed step failed, here at the end: CI often shows only the end of the output.
for f in "${failures[@]}"; do
  name=${f%%|*}; log=${f#*|}
  echo "--- $name failed; the end of its output ($log):"
  if [ "$name" = "swift test" ]; then swift_test_failures "$log"; else tail -n 25 "$log"; fi
done
echo
echo "test.sh summary:"
printf '  %s\n' "${results[@]}"
if [ $failed -gt 0 ]; then
  echo "test.sh: $failed of ${#results[@]} steps failed"
  exit 1
fi
echo "test.sh: all ${#results[@]} steps passed"
