#!/usr/bin/env bash
# What TLS and API tokens cost: requests per second of GET /v1/vms and of 1-VM submissions, in the same run, on
#   plain-open  plain HTTP, no token (the baseline)
#   plain-token plain HTTP, an admin token from the records on every call (checked by the bootstrap and the leader)
#   tls-token   HTTPS on every node (an openssl-made CA) and the same kind of token
# Two embedded clusters on loopback (test-driver hosts, ports 62xx and 63xx), torn down at the end.
# usage: scripts/bench-auth.sh [DOZE_BIN_DIR] [doze-bench api options, e.g. --seconds 10 --concurrency 32]
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.build/debug}; [ $# -gt 0 ] && shift
[ -x "$BIN/doze" ] && [ -x "$BIN/doze-bench" ] || { echo "bench-auth: build first (swift build; $BIN/doze and $BIN/doze-bench)" >&2; exit 2; }
W=$(mktemp -d /tmp/doze-bench-auth.XXXXXX)
cleanup() {
  for t in plain tls; do "$BIN/doze" cluster down "$W/$t.yaml" --run-dir "$W/run-$t" >/dev/null 2>&1; done
  rm -rf "$W"
}
trap cleanup EXIT
(
  cd "$W"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=doze bench CA' 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout node.key -out node.csr -subj '/CN=127.0.0.1' 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > ext.cnf
  openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 2 -extfile ext.cnf 2>/dev/null
) || { echo "bench-auth: openssl failed" >&2; exit 1; }
topology() {   # NAME PORTBASE EXTRA
  cat > "$W/$1.yaml" <<YAML
name: bench-$1
secret: bench-secret
vm_subnet: 10.90.0.0/16
admin_token_file: $W/$1-admin.token
$3
heartbeat: { interval_ms: 250, controller_timeout_ms: 1200, manager_timeout_ms: 1200, leader_timeout_ms: 2000 }
bootstrap: [ { listen: "127.0.0.1:${2}0" } ]
managers: [ { listen: "127.0.0.1:${2}1" }, { listen: "127.0.0.1:${2}2" }, { listen: "127.0.0.1:${2}3" } ]
controllers:
  - { listen: "127.0.0.1:${2}4", host: $PWD/topology/hosts/host1.xml }
  - { listen: "127.0.0.1:${2}5", host: $PWD/topology/hosts/host2.xml }
YAML
}
topology plain 620 "auth: open"
topology tls 630 "auth: tokens
tls: { cert_file: $W/node.pem, key_file: $W/node.key, ca_file: $W/ca.pem }"
for t in plain tls; do
  "$BIN/doze" cluster up "$W/$t.yaml" --detach --run-dir "$W/run-$t" > "$W/up-$t.out" 2>&1 || { cat "$W/up-$t.out"; exit 1; }
done
sleep 2
"$BIN/doze" token create --admin --name bench --bootstrap 127.0.0.1:6200 --token "$(cat "$W/plain-admin.token")" > "$W/plain.token" 2>/dev/null || { echo "bench-auth: no token (plain)" >&2; exit 1; }
"$BIN/doze" token create --admin --name bench --bootstrap 127.0.0.1:6300 --token "$(cat "$W/tls-admin.token")" --ca-file "$W/ca.pem" > "$W/tls.token" 2>/dev/null || { echo "bench-auth: no token (tls)" >&2; exit 1; }
echo "bench-auth: $(nproc) cores, doze from $BIN"
"$BIN/doze-bench" api --target "plain-open=http://127.0.0.1:6200" \
  --target "plain-token=http://127.0.0.1:6200,token=$W/plain.token" \
  --target "tls-token=https://127.0.0.1:6300,token=$W/tls.token,ca=$W/ca.pem" "$@"
