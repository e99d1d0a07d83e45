#!/usr/bin/env bash
# Fuzzes the native /v1 API with schemathesis against a throwaway embedded cluster (topology/local.yaml, moved to
# free loopback ports, state in a temporary directory): every operation of the document the bootstrap serves at
# GET /v1/openapi.json, with the checks not_a_server_error, status_code_conformance, content_type_conformance and
# response_schema_conformance. Destructive calls (DELETE, drains, migrations) are expected; the cluster is torn
# down at the end whatever happens. Bounded: FUZZ_MAX_EXAMPLES per operation (default 30) and FUZZ_MAX_TIME
# seconds overall (default 180). The cluster requires tokens (auth: tokens) and every call carries its admin token,
# so the auth middleware is fuzzed too. Installs schemathesis into .build/fuzz-venv when it is missing.
# usage: scripts/fuzz-api.sh DOZE_BINARY
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: scripts/fuzz-api.sh DOZE_BINARY}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-30}
MAX_TIME=${FUZZ_MAX_TIME:-180}
VENV=$PWD/.build/fuzz-venv
ST=$VENV/bin/schemathesis

if [ ! -x "$ST" ]; then
  echo "fuzz-api: installing schemathesis into $VENV" >&2
  # Debian's python3 needs python3-venv for this; install it only when venv fails.
  python3 -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; scripts/setup.sh python3-venv && python3 -m venv "$VENV"; } \
    || { echo "fuzz-api: python3 -m venv failed" >&2; exit 1; }
  "$VENV/bin/pip" install -q schemathesis || { echo "fuzz-api: pip install schemathesis failed" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/doze-fuzz.XXXXXX)
# The topology with every node moved, by one offset, to a block of free loopback ports (the printed ones may be taken).
bootstrap=$(python3 - "$PWD" "$work" <<'PY'
import os, random, re, socket, sys
root, work = sys.argv[1], sys.argv[2]
def free(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):   # HTTP (TCP) and heartbeats (UDP) share a port
        s = socket.socket(socket.AF_INET, kind)
        try: s.bind(("127.0.0.1", port))
        except OSError: return False
        finally: s.close()
    return True
topology = open(os.path.join(root, "topology", "local.yaml")).read()
printed = sorted(int(p) for p in re.findall(r"listen: 127\.0\.0\.1:(\d+)", topology))
low = printed[0]
for _ in range(1000):
    base = random.randrange(20000, 40000)
    if all(free(base + p - low) for p in printed): break
else: sys.exit("no free block of loopback ports")
topology = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{base + int(m.group(1)) - low}", topology)
topology = re.sub(r"(?m)^run_dir:.*\n", "", topology).replace("host: hosts/", f"host: {root}/topology/hosts/")
# Tokens required, as on a real network: the fuzzing goes through the auth middleware with the admin's token.
topology = re.sub(r"(?m)^(auth|snooze_compat|admin_token_file):.*\n", "", topology)
open(os.path.join(work, "local.yaml"), "w").write(topology + f"\nrun_dir: {work}/run\nauth: tokens\nadmin_token_file: {work}/admin.token\n")
print(f"127.0.0.1:{base}")
PY
) || { rm -rf "$work"; exit 1; }

down() {
  "$BIN" cluster down "$work/local.yaml" >/dev/null 2>&1
  if [ -n "${KEEP_FUZZ_SCRATCH:-}" ]; then echo "fuzz-api: scratch directory kept: $work"; else rm -rf "$work"; fi
}
trap down EXIT

"$BIN" cluster up "$work/local.yaml" --detach >"$work/up.log" 2>&1 || { cat "$work/up.log"; echo "fuzz-api: cannot start the cluster" >&2; exit 1; }
for _ in $(seq 100); do [ -s "$work/admin.token" ] && break; sleep 0.1; done
token=$(cat "$work/admin.token" 2>/dev/null) || { echo "fuzz-api: the cluster made no admin token" >&2; exit 1; }
auth=(-H "Authorization: Bearer $token")
# Wait (bounded) until every controller is under a manager, so the fuzzing meets a settled cluster.
for _ in $(seq 150); do
  [ "$(curl -s -m 1 "${auth[@]}" "http://$bootstrap/bootstrap?getLocalControllerList" | grep -o localControllerId | wc -l)" -ge 4 ] && break
  sleep 0.1
done
curl -sf -m 5 "http://$bootstrap/v1/openapi.json" -o "$work/served.json" || { echo "fuzz-api: the bootstrap serves no /v1/openapi.json" >&2; exit 1; }
# The operations the bootstrap serves (x-doze-served-by), from the document it serves.
python3 - "$work/served.json" "$work/openapi.json" <<'PY' || exit 1
import json, sys
doc = json.load(open(sys.argv[1]))
for path in list(doc["paths"]):
    ops = {m: o for m, o in doc["paths"][path].items() if "bootstrap" in o.get("x-doze-served-by", [])}
    if ops: doc["paths"][path] = ops
    else: del doc["paths"][path]
json.dump(doc, open(sys.argv[2], "w"))
PY
# Real names for path parameters and bodies, drawn most of the time, so calls get past a 404 to the logic behind it:
# the fake hosts' VMs, the controllers' ids, the floating range's first addresses, a few network names.
python3 - "$bootstrap" "$work/schemathesis.toml" "$token" <<'PY' || exit 1
import json, sys, urllib.request
bootstrap, out, token = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(f"http://{bootstrap}/v1/hosts", headers={"Authorization": f"Bearer {token}"})
hosts = json.load(urllib.request.urlopen(request, timeout=10))["hosts"]
vms = sorted({vm for host in hosts for vm in host["vms"]}) or ["web1"]
ids = [host["id"] for host in hosts] or ["none"]
lists = {"vms": vms, "hosts": ids, "addresses": [f"198.51.100.{n}" for n in range(10, 16)], "networks": ["net1", "net2", "gw"]}
toml = [f'[dictionaries.{name}]\nvalues = {json.dumps(values)}\n' for name, values in lists.items()]
def operation(regex, **bindings):
    params = ", ".join(f'"{key}" = {{ dictionary = "{name}", probability = 0.8 }}' for key, name in bindings.items())
    return f'[[operations]]\ninclude-path-regex = "{regex}"\nparameters = {{ {params} }}\n'
toml += [operation("^/v1/vms/", **{"path.id": "vms"}), operation("^/v1/hosts/", **{"path.id": "hosts"}),
         operation("^/v1/migrations$", **{"body.vm": "vms", "body.to": "hosts"}),
         operation("^/v1/floating-ips/", **{"path.address": "addresses", "body.vm": "vms", "body.network": "networks"}),
         operation("^/v1/networks", **{"path.name": "networks", "body.name": "networks"})]
open(out, "w").write("\n".join(toml))
PY

echo "fuzz-api: schemathesis against http://$bootstrap, at most $MAX_EXAMPLES examples per operation and $MAX_TIME s"
start=$SECONDS
# `timeout` is the backstop for a run that would not end by itself; --max-time is the budget.
# From the scratch directory, so schemathesis keeps its cache there.
(cd "$work" && exec timeout --kill-after=10 $((MAX_TIME + 60)) "$ST" --no-color --config-file "$work/schemathesis.toml" run "$work/openapi.json" --url "http://$bootstrap" "${auth[@]}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --request-timeout 75 --workers 2 \
  --phases examples,coverage,fuzzing --suppress-health-check all \
  --report junit --report-dir "$work/report") 2>&1 | tee "$work/schemathesis.log"
rc=${PIPESTATUS[0]}
echo "fuzz-api: schemathesis finished in $((SECONDS - start)) s with exit status $rc"
if [ $rc -ne 0 ]; then
  # What the nodes logged as errors while being fuzzed: the server side of a failure.
  for log in "$work"/run/*.log; do
    grep -E " (error|critical) " "$log" | tail -n 5 | sed "s|^|  $(basename "$log"): |" | cut -c1-300
  done
fi
exit $rc
