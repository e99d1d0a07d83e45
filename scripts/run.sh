#!/usr/bin/env bash
# Sets everything up and starts the embedded default: a local controller on 127.0.0.1:5003 managing the
# fake host topology/hosts/host1.xml through libvirt's test driver (no daemon, no KVM needed).
#
#   scripts/run.sh               build, start in the background, wait until it answers, return
#   scripts/run.sh --foreground  same, but stay attached (Ctrl-C stops it)
#   scripts/run.sh --stop        stop the controller started here
#
# State (VMs of the fake host, quota, pools, metrics) lives in .state/lc1 and survives restarts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.state/lc1
PIDFILE=$ROOT/.state/lc1.pid
LOG=$ROOT/.state/lc1.log
LISTEN=${DOZE_LISTEN:-127.0.0.1:5003}

stop() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    echo "stopped the local controller (pid $(cat "$PIDFILE"))"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  --stop) stop; exit 0 ;;
  --foreground|"") ;;
  *) echo "usage: scripts/run.sh [--foreground|--stop]" >&2; exit 2 ;;
esac

scripts/setup.sh
echo "building doze (release)..." >&2
swift build -c release --product doze 2>&1 | grep -E "error|warning: unre|Compiling doze|Build complete" >&2 || true
BIN=$(swift build -c release --show-bin-path)/doze
[ -x "$BIN" ] || { echo "build failed: $BIN missing" >&2; exit 1; }

stop >/dev/null
mkdir -p "$STATE"
ARGS=(lc --listen "$LISTEN" --hypervisor "test://$ROOT/topology/hosts/host1.xml" --state-dir "$STATE"
      --xml-dir "$ROOT/topology/xml" --disk-dir "$ROOT/topology/images")

if [ "${1:-}" = "--foreground" ]; then
  exec "$BIN" "${ARGS[@]}"
fi

nohup "$BIN" "${ARGS[@]}" >"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 200); do
  if curl -sf "http://$LISTEN/health" >/dev/null 2>&1; then
    echo "doze lc is running on http://$LISTEN (pid $(cat "$PIDFILE"), log $LOG)"
    echo "try:  curl -s http://$LISTEN/hypervisor/usages"
    echo "stop: scripts/run.sh --stop"
    exit 0
  fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
  sleep 0.1
done
echo "doze lc did not come up; its log:" >&2
cat "$LOG" >&2
exit 1
