#!/usr/bin/env python3
"""Events-stream benchmark on real `doze` processes (loopback only, bounded in time), default timing (heartbeat
250 ms: the leader compares its view every other heartbeat).

1. Latency: with a long-poll parked on the bootstrap (`GET /v1/events?since=LATEST&wait=30`), suspend or resume a
   VM through the bootstrap; time from the operation's answer to the long-poll's answer carrying its event.
2. Submission: from `POST /v1/virtual-clusters` to the VM's `vm.running` event on a parked long-poll.
3. Failover: kill -9 the leader (one-host backend); time until the new leader's `leader.elected` is readable,
   and check that `since=` across it has no gap or duplicate.
4. Reading: `GET /v1/events` of 1000 kept events, whole (two pages), against the same bootstrap's `/health`.

usage: bench-events.py DOZE_BINARY [--rounds 20]
"""
import argparse, json, os, random, shutil, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request


def http(method, url, body=None, timeout=40.0):
    request = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return r.read()


def wait(cond, limit, what, step=0.02):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(step)
    raise SystemExit(f"timed out: {what}")


def free_base():
    for _ in range(200):
        base = random.randrange(20000, 40000, 100)
        ok = True
        for port in [base + p for p in (0, 1, 2, 3, 10, 11)]:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return base
    raise SystemExit("no free ports")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="doze-bench-events-")
    base = free_base()
    bs = f"127.0.0.1:{base}"
    secret = "bench-secret"
    procs = {}

    def start(name, argv):
        log = open(os.path.join(work, name + ".log"), "w")
        procs[name] = subprocess.Popen([args.binary] + argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def events(since=None, wait_s=0):
        query = f"?wait={wait_s}" + (f"&since={since}" if since is not None else "")
        return json.loads(http("GET", f"http://{bs}/v1/events{query}", timeout=wait_s + 30))

    def all_events(since=None):
        out = []
        while True:
            page = events(since)
            out += page["events"]
            since = page["events"][-1]["revision"] if page["events"] else since
            if not page["events"] or since >= page["latestRevision"]:
                return out, page

    try:
        start("bs", ["bootstrap", "--listen", bs, "--state-dir", f"{work}/bs", "--secret", secret, "--log-level", "warning"])
        for i in (1, 2, 3):
            start(f"gm{i}", ["gm", "--listen", f"127.0.0.1:{base + i}", "--state-dir", f"{work}/gm{i}", "--election-dir", f"{work}/election",
                             "--vm-subnet", "10.86.0.0/16", "--log-level", "warning", "--bootstrap", bs, "--secret", secret])
        for i in (0, 1):
            host = f"{work}/host{i}.xml"
            with open(host, "w") as f:
                f.write('<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>512</cores>'
                        '<threads>1</threads><active>512</active></cpu><memory>536870912</memory></node>')
            start(f"lc{i}", ["lc", "--listen", f"127.0.0.1:{base + 10 + i}", "--hypervisor", f"test://{host}", "--state-dir", f"{work}/lc{i}",
                             "--log-level", "warning", "--bootstrap", bs, "--secret", secret])
        wait(lambda: http("GET", f"http://{bs}/bootstrap?getLocalControllerList").count(b'"localControllerId"') >= 2, 30, "cluster formed")
        wait(lambda: events().get("watching"), 15, "the leader's first view")

        def parked(since, predicate, result):
            # Long-polls from `since` until an event satisfies `predicate`; records when it arrived.
            while True:
                page = events(since, 30)
                for event in page["events"]:
                    if predicate(event):
                        result["at"] = time.monotonic()
                        result["event"] = event
                        return
                if page["events"]:
                    since = page["events"][-1]["revision"]

        def template(name):
            return json.dumps({"virtualMachineTemplates": [{"libVirtTemplate":
                f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"}]})

        # 2. Submission to vm.running.
        submit = []
        for n in range(args.rounds):
            latest = events()["latestRevision"]
            result = {}
            name = f"bench{n}"
            t = threading.Thread(target=parked, args=(latest, lambda e, name=name: e["kind"] == "vm.running" and e.get("vm") == name, result))
            t.start()
            time.sleep(0.05)
            t0 = time.monotonic()
            http("POST", f"http://{bs}/v1/virtual-clusters", template(name))
            t.join(40)
            submit.append(result["at"] - t0)

        # 1. A state change to its event.
        latency = []
        for n in range(args.rounds):
            operation, kind = ("suspend", "vm.suspended") if n % 2 == 0 else ("resume", "vm.running")
            latest = events()["latestRevision"]
            result = {}
            t = threading.Thread(target=parked, args=(latest, lambda e, kind=kind: e["kind"] == kind and e.get("vm") == "bench0", result))
            t.start()
            time.sleep(0.05)
            http("POST", f"http://{bs}/v1/vms/bench0/{operation}", "")
            t0 = time.monotonic()
            t.join(40)
            latency.append(result["at"] - t0)

        # 4. Reading 1000 kept events: fill up with submissions of 50 VMs (a placement and a RUNNING each).
        n = 0
        while events()["latestRevision"] < 1100:
            names = [f"fill{n}-{i}" for i in range(50)]
            body = json.dumps({"virtualMachineTemplates": [json.loads(template(name))["virtualMachineTemplates"][0] for name in names]})
            task = json.loads(http("POST", f"http://{bs}/v1/virtual-clusters", body))["taskId"]
            http("GET", f"http://{bs}/v1/virtual-clusters/{task}?wait=60", timeout=90)
            wait(lambda: events()["latestRevision"] >= 100 * (n + 1), 20, "the fill's events")
            n += 1
        reads, health = [], []
        for _ in range(10):
            t0 = time.monotonic(); kept, _ = all_events(); reads.append(time.monotonic() - t0)
            t0 = time.monotonic(); http("GET", f"http://{bs}/health"); health.append(time.monotonic() - t0)

        # 3. Failover.
        before, _ = all_events()
        leader = json.loads(http("GET", f"http://{bs}/bootstrap?getGroupLeaderDescription"))
        victim = next(name for name in ("gm1", "gm2", "gm3") if json.load(open(f"{work}/{name}/node.json"))["id"] == leader["id"])
        t0 = time.monotonic()
        procs[victim].kill(); procs[victim].wait(); del procs[victim]
        wait(lambda: any(e["kind"] == "leader.elected" and e.get("leader") != leader["id"]
                         for e in events(before[-1]["revision"])["events"]), 20, "the new leader's election event", step=0.01)
        elected = time.monotonic() - t0
        after, _ = all_events(before[-1]["revision"])
        revisions = [e["revision"] for e in before + after]
        continuous = all(b == a + 1 for a, b in zip(revisions, revisions[1:]))

        def row(label, values):
            print(f"| {label} | {statistics.median(values) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |")
        print(f"rounds: {args.rounds}, events kept: {len(kept)}")
        print("| measure | median | max |\n|---|---|---|")
        row("submission to its `vm.running` event", submit)
        row("suspend/resume answered to its event", latency)
        row(f"`GET /v1/events` of {len(kept)} kept events (2 pages)", reads)
        row("same bootstrap's `/health`", health)
        print(f"| kill -9 of the leader to the new `leader.elected` readable | {elected * 1000:.0f} ms | (one run) |")
        print(f"revisions across the failover contiguous, none twice: {continuous}")
    finally:
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
