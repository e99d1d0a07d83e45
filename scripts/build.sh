#!/usr/bin/env bash
# Builds doze the one way scripts/run.sh and scripts/test.sh share: debug, in .build/. run.sh builds the `doze`
# product, test.sh the same plus the test targets, so after run.sh only the tests are left to compile (and
# nothing is built twice). The release build (-c release) is for benchmarks: the bench-*.sh scripts make it.
#
#   scripts/build.sh                 the doze binary: .build/debug/doze
#   scripts/build.sh --build-tests   everything, tests included
#   scripts/build.sh -c release …    any other `swift build` arguments go through
#
# The compiler's progress goes to .build/build.log; errors and the final line are printed, and on a failure the
# end of the log too.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--product doze)
start=$SECONDS
echo "building doze (swift build ${args[*]}): progress in .build/build.log" >&2
swift build "${args[@]}" > .build/build.log 2>&1
rc=$?
grep -E "error:" .build/build.log | sort -u | head -n 40 >&2
if [ $rc -ne 0 ]; then
  echo "--- the end of .build/build.log" >&2
  tail -n 40 .build/build.log >&2
  echo "build failed (exit $rc) after $((SECONDS - start)) s" >&2
  exit $rc
fi
echo "$(grep -E "Build complete|Build of .* complete" .build/build.log | tail -n 1) ($((SECONDS - start)) s)" >&2
