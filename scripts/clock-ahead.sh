#!/usr/bin/env bash
# Runs a command with the wall clock DAYS ahead for doze and everything it starts (libfaketime, from Debian's
# `faketime` package, installed if missing). The monotonic clocks stay real, so timeouts and heartbeats behave.
#
#   scripts/clock-ahead.sh DAYS COMMAND [ARG ...]    e.g. scripts/clock-ahead.sh 30 .build/debug/doze …
#   scripts/clock-ahead.sh DAYS --wrap BINARY        prints the path of a wrapper that runs BINARY DAYS ahead
#
# scripts/test.sh uses --wrap when CLOCK_AHEAD_DAYS is set: `CLOCK_AHEAD_DAYS=30 scripts/test.sh` replays the
# README, the e2e migration and the chaos run with every doze process a month in the future, and runs the
# Swift tests (which start doze themselves) under the same clock. Python harnesses keep the real clock:
# libfaketime breaks Python's time.sleep (clock_nanosleep answers EINVAL).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
days=$1; shift
[[ "$days" =~ ^[0-9]+$ ]] || { echo "clock-ahead: DAYS must be a whole number, not '$days'" >&2; exit 2; }

scripts/setup.sh faketime >/dev/null
lib=$( (ls /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 2>/dev/null || true) | head -n 1)
[ -n "$lib" ] || { echo "clock-ahead: libfaketime.so.1 not found after installing faketime" >&2; exit 1; }

out=$PWD/.build/clock-ahead
mkdir -p "$out"
shim=$out/timerfd-passthrough.so
src=scripts/clock-ahead/timerfd-passthrough.c
if [ ! -f "$shim" ] || [ "$src" -nt "$shim" ]; then
  cc -shared -fPIC -O2 -o "$shim" "$src"
fi

# FAKETIME_SHARED names the shared-memory segment libfaketime would otherwise create in the first process;
# creating it there leaves a Swift program with an empty CommandLine.arguments (libfaketime 0.9.10). The segment
# only synchronises a faketime that moves, so a fixed offset does without it: a name that does not exist.
envs=(LD_PRELOAD="$shim:$lib" FAKETIME="+${days}d" FAKETIME_DONT_FAKE_MONOTONIC=1
      FAKETIME_SHARED="/doze-no-faketime-sem /doze-no-faketime-shm")

if [ "$1" = "--wrap" ]; then
  [ $# -eq 2 ] || { echo "clock-ahead: --wrap takes one binary" >&2; exit 2; }
  binary=$(realpath "$2")
  wrapper=$out/$(basename "$binary")
  {
    echo '#!/bin/sh'
    echo "# $binary with the wall clock $days days ahead (scripts/clock-ahead.sh)"
    printf 'exec env'; printf " '%s'" "${envs[@]}"; printf " '%s' \"\$@\"\n" "$binary"
  } > "$wrapper"
  chmod +x "$wrapper"
  echo "$wrapper"
  exit 0
fi
exec env "${envs[@]}" "$@"
