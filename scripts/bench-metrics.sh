#!/usr/bin/env bash
# /metrics scrape time on a cluster of N local controllers (libvirt's test driver), next to GET /health on the same
# servers (the HTTP floor) in the same run: median and p95 of the leader's and one controller's scrape, body
# size and series count, and whether promtool accepts the leader's exposition at that size.
#   scripts/bench-metrics.sh [--controllers 200] [--managers 10] [--scrapes 200] [--binary PATH]
# The cluster is one topology file (written to a temporary directory) started with `doze cluster up --detach`
# and stopped with `doze cluster down`, on loopback ports from --base-port (default 27000) on.
set -euo pipefail
cd "$(dirname "$0")/.."

controllers=200 managers=10 scrapes=200 base=27000 binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --controllers) controllers=$2; shift 2 ;;
    --managers) managers=$2; shift 2 ;;
    --scrapes) scrapes=$2; shift 2 ;;
    --base-port) base=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "bench-metrics: unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/setup.sh python3 --promtool
if [ -z "$binary" ]; then
  swift build -c release --product doze 2>&1 | grep -E "error|Build complete" >&2 || true
  binary="$(swift build -c release --show-bin-path)/doze"
fi

work=$(mktemp -d /tmp/doze-bench-metrics.XXXXXX)
# `doze cluster up` puts the admin token where the CLI looks for it ($XDG_CONFIG_HOME/doze/token): keep this
# throwaway cluster's token out of the user's config, where it would be sent to every other cluster.
export XDG_CONFIG_HOME="$work/config"
topology="$work/metrics.yaml"
cleanup() {
  "$binary" cluster down "$topology" --run-dir "$work/run" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 - "$work" "$controllers" "$managers" "$base" <<'EOF'
import os, socket, sys
work, controllers, managers, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ports = [base] + [base + 1 + i for i in range(managers + 1)] + [base + 100 + i for i in range(controllers)]
for port in ports:  # refuse to start over someone else's node
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            sys.exit(f"bench-metrics: 127.0.0.1:{port} is taken; pass another --base-port")
os.makedirs(f"{work}/hosts")
# Heartbeats at 1 s with timeouts of several beats: 200 controllers of a debug build on 2 shared cores otherwise
# miss beats and the hierarchy churns instead of forming (the scrape, not the failure detector, is measured here).
lines = ["name: bench-metrics", "secret: bench-metrics-secret", "heartbeat:", "  interval_ms: 1000",
         "  controller_timeout_ms: 8000", "  manager_timeout_ms: 8000", "  leader_manager_timeout_ms: 10000",
         "  leader_timeout_ms: 12000",
         "bootstrap:", f"  - listen: 127.0.0.1:{base}", "managers:"]
lines += [f"  - listen: 127.0.0.1:{base + 1 + i}" for i in range(managers + 1)]
lines.append("controllers:")
for i in range(controllers):
    with open(f"{work}/hosts/host{i}.xml", "w") as f:
        f.write('<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>'
                '<threads>1</threads><active>8</active></cpu><memory>16777216</memory>'
                f'<domain type="test"><name>vm{i}</name><memory unit="MiB">64</memory><vcpu>1</vcpu>'
                '<os><type>hvm</type></os></domain></node>')
    lines += [f"  - listen: 127.0.0.1:{base + 100 + i}", f"    host: hosts/host{i}.xml"]
with open(f"{work}/metrics.yaml", "w") as f:
    f.write("\n".join(lines) + "\n")
EOF

echo "bench-metrics: starting 1 bootstrap, $((managers + 1)) group managers and $controllers local controllers ($binary)"
started=$(date +%s)
LOG_LEVEL=warning "$binary" cluster up "$topology" --run-dir "$work/run" --detach --ready-within 300 >"$work/up.log" 2>&1 || { tail -20 "$work/up.log"; exit 1; }

python3 - "$base" "$controllers" "$scrapes" "$started" <<'EOF'
import http.client, json, statistics, subprocess, sys, time
base, controllers, scrapes, started = (int(a) for a in sys.argv[1:5])
bs = ("127.0.0.1", base)

def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path} answered {response.status}: {body[:200]}")
    return body

def hierarchy():
    conn = http.client.HTTPConnection(*bs, timeout=10)
    try:
        return json.loads(get(conn, "/bootstrap?getCompleteHierarchy"))
    finally:
        conn.close()

deadline = time.monotonic() + 300
tree = None
while time.monotonic() < deadline:
    try:
        tree = hierarchy()
        joined = sum(len(m["localControllers"]) for m in tree["groupManagerDescriptions"])
        if tree.get("groupLeader") and joined == controllers:
            break
    except Exception:
        pass
    time.sleep(1)
else:
    raise SystemExit(f"bench-metrics: the hierarchy never held {controllers} controllers")
print(f"formed: {controllers} controllers under the leader's managers {time.time() - started:.0f} s after `cluster up`")
time.sleep(3)  # a few heartbeats, so every manager's summary reached the leader
leader = tree["groupLeader"]["listenSettings"]["controlDataAddress"]
targets = {"leader": (leader["address"], leader["port"]), "controller": ("127.0.0.1", base + 100)}

def measure(target, path):
    conn = http.client.HTTPConnection(*target, timeout=10)
    get(conn, path)  # warm: connection and first-scrape series
    samples, size = [], 0
    for _ in range(scrapes):
        t = time.perf_counter()
        body = get(conn, path)
        samples.append((time.perf_counter() - t) * 1000)
        size = len(body)
    conn.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], size, body

print(f"{scrapes} sequential GETs each, one kept-alive connection; milliseconds")
print(f"{'target':<34}{'median':>9}{'p95':>9}{'body bytes':>12}{'series':>8}")
for role, target in targets.items():
    for path in ["/health", "/v1/heartbeats", "/metrics"]:
        median, p95, size, body = measure(target, path)
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#")) if path == "/metrics" else 0
        print(f"{role + ' ' + path:<34}{median:>9.2f}{p95:>9.2f}{size:>12}{series or '':>8}")
        if path == "/metrics" and role == "leader":
            leader_text = body
checked = subprocess.run(["promtool", "check", "metrics"], input=leader_text, capture_output=True)
print(f"promtool check metrics on the leader's exposition: exit {checked.returncode}"
      + (f": {checked.stdout.decode()[:300]}{checked.stderr.decode()[:300]}" if checked.returncode else " (no problems)"))
EOF
echo "bench-metrics: stopping the cluster"
