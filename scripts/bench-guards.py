#!/usr/bin/env python3
"""Issue 17's two figures, against one real `doze lc` on libvirt's test driver, with a baseline in the same run.

A. Time to answer POST /vm of a domain nested N levels deep (refused past 64) against a flat domain of the same size
   (the same bytes as siblings): both should grow with size only, not with depth.
B. /health latency (median, p99 of 300 requests) with no other connection open, then with HELD half-sent requests
   held open; the controller's RSS before, while held, and after the read timeout closed them.

   python3 scripts/bench-guards.py [BIN] [HELD]      default BIN .build/debug/doze, HELD 1000
"""
import os, socket, subprocess, sys, tempfile, time, urllib.request, statistics

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/debug/doze"
HELD = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
state = tempfile.mkdtemp(prefix="doze-bench-guards.")
lc = subprocess.Popen([BIN, "lc", "--hypervisor", "test:///default", "--state-dir", state + "/state", "--listen", "127.0.0.1:0",
                       "--read-timeout", "3"], stdout=subprocess.DEVNULL, stderr=open(state + "/lc.log", "w"))
try:
    for _ in range(200):
        if os.path.exists(state + "/state/listen.addr"): break
        time.sleep(0.1)
    host, port = open(state + "/state/listen.addr").read().strip().split(":")
    port = int(port)
    base = f"http://{host}:{port}"

    def post(body):
        t = time.monotonic()
        req = urllib.request.Request(base + "/vm", data=body.encode(), method="POST")
        try: urllib.request.urlopen(req, timeout=60).read()
        except urllib.error.HTTPError as e: e.read()
        return (time.monotonic() - t) * 1000

    head = "<domain type='test'><name>d</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><description>"
    print("A. POST /vm, nested vs flat of the same size (ms, median of 5)")
    print(f"{'depth':>8} {'bytes':>9} {'nested':>8} {'flat':>8}")
    for n in [100, 1000, 10000, 50000, 100000]:
        nested = head + "<a>" * n + "</a>" * n + "</description></domain>"
        flat = head + "<a></a>" * n + "</description></domain>"
        a = statistics.median(post(nested) for _ in range(5))
        b = statistics.median(post(flat) for _ in range(5))   # refused by the test driver's name check or accepted once: both parsed
        print(f"{n:>8} {len(nested):>9} {a:>8.1f} {b:>8.1f}")

    def rss():
        for line in open(f"/proc/{lc.pid}/status"):
            if line.startswith("VmRSS:"): return int(line.split()[1]) // 1024
    def health_latency():
        samples = []
        for _ in range(300):
            t = time.monotonic()
            urllib.request.urlopen(base + "/health", timeout=10).read()
            samples.append((time.monotonic() - t) * 1000)
        samples.sort()
        return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]

    print(f"\nB. /health latency (ms) and RSS (MB), read timeout 3 s")
    m, p = health_latency(); r0 = rss()
    print(f"  no connection held:        median {m:.2f}  p99 {p:.2f}  RSS {r0}")
    held = []
    for _ in range(HELD):
        s = socket.create_connection((host, port)); s.sendall(b"POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\n<dom"); held.append(s)
    m, p = health_latency(); r1 = rss()
    print(f"  {HELD} half-sent held:     median {m:.2f}  p99 {p:.2f}  RSS {r1}")
    deadline = time.monotonic() + 20
    closed = 0
    for s in held:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while s.recv(4096): pass
            closed += 1
        except OSError: pass
    time.sleep(0.5)
    m, p = health_latency(); r2 = rss()
    print(f"  after the timeout ({closed} of {HELD} closed by the server): median {m:.2f}  p99 {p:.2f}  RSS {r2}")
finally:
    lc.kill(); lc.wait()
    subprocess.run(["rm", "-rf", state])
