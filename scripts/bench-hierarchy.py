#!/usr/bin/env python3
"""Hierarchy benchmark on real `doze` processes (loopback only, bounded in time).

1. Failover: kill -9 a local controller, a group manager, the leader; time until the bootstrap's view shows it
   (controller gone; its controllers re-joined elsewhere; a leader of a higher term with every controller back).
2. Scale: 200 local controllers under 10 group managers (plus the leader): heartbeat CPU per node and RSS per
   role, and getLocalControllerList latency next to the same server's /health (the HTTP floor).

usage: bench-hierarchy.py DOZE_BINARY [--controllers 200] [--managers 10] [--rounds 3]
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

HZ = os.sysconf("SC_CLK_TCK")


def http(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
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


class Cluster:
    def __init__(self, binary, work, base_port, managers, controllers, secret="bench-secret"):
        self.binary, self.work, self.secret = binary, work, secret
        os.makedirs(work, exist_ok=True)
        self.procs = {}
        self.bs = f"127.0.0.1:{base_port}"
        self.gm_ports = [base_port + 1 + i for i in range(managers)]
        self.lc_ports = [base_port + 100 + i for i in range(controllers)]
        self.common = ["--bootstrap", self.bs, "--secret", secret]

    def start(self, name, args):
        log = open(os.path.join(self.work, name + ".log"), "w")
        self.procs[name] = subprocess.Popen([self.binary] + args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def start_bootstrap(self):
        self.start("bs", ["bootstrap", "--listen", self.bs, "--state-dir", f"{self.work}/bs", "--secret", self.secret,
                          "--log-level", "warning"])

    def start_gm(self, i):
        self.start(f"gm{i}", ["gm", "--listen", f"127.0.0.1:{self.gm_ports[i]}", "--state-dir", f"{self.work}/gm{i}",
                              "--election-dir", f"{self.work}/election", "--log-level", "warning"] + self.common)

    def start_lc(self, i):
        host = f"{self.work}/host{i}.xml"
        if not os.path.exists(host):
            with open(host, "w") as f:
                f.write('<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>'
                        '<threads>1</threads><active>8</active></cpu><memory>16777216</memory>'
                        f'<domain type="test"><name>vm{i}</name><memory unit="MiB">64</memory><vcpu>1</vcpu>'
                        '<os><type>hvm</type></os></domain></node>')
        self.start(f"lc{i}", ["lc", "--listen", f"127.0.0.1:{self.lc_ports[i]}", "--hypervisor", f"test://{host}",
                              "--state-dir", f"{self.work}/lc{i}", "--sample-interval", "60", "--log-level", "warning"] + self.common)

    def kill9(self, name):
        p = self.procs.pop(name)
        p.kill()
        p.wait()

    def stop(self):
        for p in self.procs.values():
            p.kill()
        for p in self.procs.values():
            p.wait()
        self.procs = {}

    def node_id(self, name):
        with open(f"{self.work}/{name}/node.json") as f:
            return json.load(f)["id"]

    def hierarchy(self):
        return json.loads(http(f"http://{self.bs}/bootstrap?getCompleteHierarchy", timeout=2))

    def leader(self):
        return json.loads(http(f"http://{self.bs}/bootstrap?getGroupLeaderDescription", timeout=2) or b"null")

    def controllers(self):
        t = self.hierarchy()
        return {lc["controlDataAddress"]["port"]: gm["id"] for gm in t["groupManagerDescriptions"]
                for lc in gm["localControllers"].values()}


def failover(binary, work, rounds):
    c = Cluster(binary, work, 17000, managers=3, controllers=4)
    c.start_bootstrap()
    for i in range(3):
        c.start_gm(i)
    for i in range(4):
        c.start_lc(i)
    wait(lambda: len(c.controllers()) == 4, 30, "cluster formed")
    results = {"controller death noticed": [], "manager death: controllers re-joined": [], "leader death: new leader announced": [],
               "leader death: hierarchy complete again": []}
    try:
        for _ in range(rounds):
            # A controller dies.
            t0 = time.monotonic()
            c.kill9("lc0")
            wait(lambda: c.lc_ports[0] not in c.controllers(), 10, "controller drop")
            results["controller death noticed"].append(time.monotonic() - t0)
            c.start_lc(0)
            wait(lambda: len(c.controllers()) == 4, 15, "controller back")

            # The manager holding the most controllers dies.
            owners = c.controllers()
            victim_id = max(set(owners.values()), key=list(owners.values()).count)
            victim = next(n for n in list(c.procs) if n.startswith("gm") and c.node_id(n) == victim_id)
            t0 = time.monotonic()
            c.kill9(victim)
            wait(lambda: len(c.controllers()) == 4 and victim_id not in c.controllers().values(), 10, "re-home")
            results["manager death: controllers re-joined"].append(time.monotonic() - t0)
            c.start_gm(int(victim[2:]))
            wait(lambda: len({g["id"] for g in c.hierarchy()["groupManagerDescriptions"]}) == 2, 15, "manager back")

            # The leader dies.
            old = c.leader()
            name = next(n for n in list(c.procs) if n.startswith("gm") and c.node_id(n) == old["id"])
            t0 = time.monotonic()
            c.kill9(name)
            wait(lambda: (c.leader() or {}).get("term", 0) > old["term"], 10, "new leader")
            results["leader death: new leader announced"].append(time.monotonic() - t0)
            wait(lambda: len(c.controllers()) == 4, 15, "hierarchy complete")
            results["leader death: hierarchy complete again"].append(time.monotonic() - t0)
            c.start_gm(int(name[2:]))
            wait(lambda: len({g["id"] for g in c.hierarchy()["groupManagerDescriptions"]}) == 2, 15, "manager back")
    finally:
        c.stop()
    return results


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def proc_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def scale(binary, work, controllers, managers):
    c = Cluster(binary, work, 18000, managers=managers + 1, controllers=controllers)
    c.start_bootstrap()
    for i in range(managers + 1):
        c.start_gm(i)
    t0 = time.monotonic()
    for i in range(controllers):
        c.start_lc(i)
    try:
        wait(lambda: len(c.controllers()) == controllers, 240, f"{controllers} controllers joined", step=0.5)
        formed = time.monotonic() - t0
        time.sleep(3)  # settle
        leader = c.leader()
        window = 10.0
        before = {n: proc_cpu_ticks(p.pid) for n, p in c.procs.items()}
        time.sleep(window)
        after = {n: proc_cpu_ticks(p.pid) for n, p in c.procs.items()}
        leader_name = next(n for n in c.procs if n.startswith("gm") and c.node_id(n) == leader["id"])

        def role(n):
            return "leader" if n == leader_name else "bootstrap" if n == "bs" else "group manager" if n.startswith("gm") else "local controller"
        cpu, rss = {}, {}
        for n, p in c.procs.items():
            cpu.setdefault(role(n), []).append((after[n] - before[n]) / HZ / window * 100)
            rss.setdefault(role(n), []).append(proc_rss_mib(p.pid))
        leader_url = f"http://{leader['listenSettings']['controlDataAddress']['address']}:{leader['listenSettings']['controlDataAddress']['port']}"
        lat = {}
        for label, url in [("GET /health on the leader (HTTP floor)", leader_url + "/health"),
                           ("getLocalControllerList on the leader", leader_url + "/groupmanager?getLocalControllerList"),
                           ("getLocalControllerList via the bootstrap", f"http://{c.bs}/bootstrap?getLocalControllerList")]:
            samples, complete = [], 0
            for _ in range(100):
                s = time.monotonic()
                body = http(url)
                samples.append((time.monotonic() - s) * 1000)
                if "List" in label and len(json.loads(body)["localControllers"]) == controllers:
                    complete += 1
            samples.sort()
            lat[label] = (statistics.median(samples), samples[98], complete if "List" in label else None)
        drops = 0
        for name in os.listdir(work):
            if name.startswith("gm") and name.endswith(".log"):
                with open(os.path.join(work, name)) as f:
                    drops += f.read().count("local controller down")
        return formed, cpu, rss, lat, drops
    finally:
        c.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--controllers", type=int, default=200)
    ap.add_argument("--managers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--skip-failover", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="doze-bench-hierarchy.")
    try:
        print(f"machine: {os.cpu_count()} cores; defaults: heartbeat 250 ms, controller timeout 1.2 s, manager timeout 1.2 s")
        print("\n== failover (1 bootstrap, 3 group managers, 4 local controllers), median and max of", a.rounds, "rounds")
        print("   Snooze defaults for comparison: heartbeats every 3 s, detection after 10-20 s")
        if not a.skip_failover:
            for label, xs in failover(a.binary, work + "/failover", a.rounds).items():
                print(f"   {label:42s} median {statistics.median(xs):.2f} s   max {max(xs):.2f} s")
        if not a.skip_scale:
            print(f"\n== scale: {a.controllers} local controllers under {a.managers} group managers (+1 leader), one process each")
            formed, cpu, rss, lat, drops = scale(a.binary, work + "/scale", a.controllers, a.managers)
            print(f"   all {a.controllers} controllers joined {formed:.1f} s after the first was started")
            for r in ["local controller", "group manager", "leader", "bootstrap"]:
                print(f"   {r:18s} heartbeat CPU {statistics.mean(cpu[r]):5.2f} % of a core (max {max(cpu[r]):.2f})   "
                      f"RSS {statistics.mean(rss[r]):6.1f} MiB (max {max(rss[r]):.1f})")
            for label, (p50, p99, complete) in lat.items():
                extra = f"   (listed all {a.controllers} in {complete} of 100 reads)" if complete is not None else ""
                print(f"   {label:42s} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms{extra}")
            print(f"   controllers dropped by a manager during the run (none died): {drops}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
