#!/usr/bin/env bash
# Issue 17's probe, by hand: deep XML, pools and paths into system trees, 500 held half-sent requests, strict
# numbers, HEAD and a retried create, against one `doze lc` on test:///default. Prints each answer; changes nothing
# outside its own temporary directory.   scripts/probe-hostile.sh [BIN]   (default .build/debug/doze)
BIN=$(realpath "${1:-.build/debug/doze}")
D=$(mktemp -d); cd $D
$BIN lc --hypervisor test:///default --state-dir $D/state --listen 127.0.0.1:0 > lc.log 2>&1 &
LC=$!
for i in $(seq 100); do [ -f state/listen.addr ] && break; sleep 0.1; done
A=$(cat state/listen.addr); echo "lc at $A"
u=http://$A
echo "== A: deep XML"
for n in 16000 100000; do
python3 -c "n=$n;print(\"<domain type='test'><name>d</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><description>\"+'<a>'*n+'</a>'*n+'</description></domain>')" > deep.xml
curl -s -o resp.txt -w "depth $n: POST /vm %{http_code} in %{time_total}s; " -X POST --data-binary @deep.xml $u/vm & CP=$!; sleep .2; curl -s -o /dev/null -w "usages %{http_code} in %{time_total}s\n" $u/hypervisor/usages; wait $CP
head -c 200 resp.txt; echo
done
echo "== B: pools"
ln -sfn /etc $D/etclink
for p in /etc /proc/self $D/state $D/etclink; do
  curl -s -w " -> %{http_code}\n" -X POST -H 'content-type: application/json' -d "{\"pool\":{\"name\":\"p$RANDOM\",\"path\":\"$p\",\"max_gb\":10}}" $u/hypervisor/pools | cut -c1-200
done
curl -s -w " -> %{http_code}\n" -X PUT -H 'content-type: application/json' -d '{"image-pool":{"path":"/etc"}}' $u/hypervisor/image-pool | cut -c1-200
dom() { echo "<domain type='test'><name>$1</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>$2</devices></domain>"; }
dom shadow "<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vda'/></disk>" | curl -s -w " -> %{http_code}\n" -X POST --data-binary @- $u/vm | cut -c1-200
dom cron "<serial type='file'><source path='/etc/cron.d/x'/></serial>" | curl -s -w " -> %{http_code}\n" -X POST --data-binary @- $u/vm | cut -c1-200
dom vol "<disk type='volume' device='disk'><source pool='default' volume='../../etc/passwd'/><target dev='vda'/></disk>" | curl -s -w " -> %{http_code}\n" -X POST --data-binary @- $u/vm | cut -c1-200
echo "== C: 500 held half-sent requests"
python3 - "$A" <<'PY'
import socket, sys, time, urllib.request
host, port = sys.argv[1].split(":"); port = int(port)
held = []
for _ in range(500):
    s = socket.create_connection((host, port)); s.sendall(b"POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\n<dom"); held.append(s)
t = time.monotonic(); urllib.request.urlopen(f"http://{host}:{port}/health", timeout=10).read()
print(f"/health while 500 held: {(time.monotonic()-t)*1000:.1f} ms")
start = time.monotonic(); closed = 0
for s in held:
    s.settimeout(max(0.1, 30 - (time.monotonic() - start)))
    try:
        data = s.recv(200)
        closed += 1
    except Exception: pass
first = data.splitlines()[0] if data else b''
print(f"closed by the server within {time.monotonic()-start:.1f} s: {closed} of 500; first answer line: {first}")
PY
echo "== small ones"
curl -s -w " -> %{http_code}\n" -X PUT -H 'content-type: application/json' -d '{"quota":{"cpu_max": 2.5}}' $u/hypervisor/quota | cut -c1-200
curl -s -w " -> %{http_code}\n" -X PUT -H 'content-type: application/json' -d '{"quota":{"cpu_max": 2,}}' $u/hypervisor/quota | cut -c1-200
curl -s -w " -> %{http_code}\n" -X PUT -H 'content-type: application/json' -d '{"quota":{"cpu_max": 9223372036854775807}}' $u/hypervisor/quota | cut -c1-200
echo "<domain><name>x</name>" | curl -s -w " -> %{http_code}\n" -X POST --data-binary @- $u/vm | cut -c1-200
curl -s -I $u/hypervisor/usages | head -1
dom idem "" > idem.xml
curl -s -o /dev/null -w "create %{http_code}\n" -X POST --data-binary @idem.xml $u/vm
curl -s -o /dev/null -w "retry same create %{http_code}\n" -X POST --data-binary @idem.xml $u/vm
kill $LC; wait $LC 2>/dev/null; rm -rf $D
