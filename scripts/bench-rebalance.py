#!/usr/bin/env python3
"""Rebalancing benchmark (issue 12) on real `doze` processes: loopback only, free ports, every wait bounded.

A cluster of 1 bootstrap, 4 group managers (one becomes the leader) and 20 local controllers, each on its own
test-driver host (8 CPUs, 16 GiB), with declared synthetic load (`POST /v1/vms/{id}/load`):

1. Overload relief time: a host is made to cross the CPU threshold; time from the declaration being accepted to
   the host's shares being back under the thresholds, broken down, next to the target "2 usage windows +
   migration time" computed from the settings the managers were started with. Several rounds, other hosts.
2. Moves vs the optimum: a few overloaded hosts with several VMs each; the rebalancer's moves against the
   fewest moves that relieve every host, found by exhaustive search over VM -> host assignments.
3. Hosts freed by consolidation (a second cluster, started with --consolidation-interval): light VMs spread over
   every host; hosts emptied and migrations spent, next to the fewest hosts the same VMs fit on (exhaustive
   search, first-fit decreasing as a cross-check).

usage: bench-rebalance.py DOZE_BINARY [--rounds 5] [--skip-relief] [--skip-optimum] [--skip-consolidation]
"""
import argparse, itertools, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.error, urllib.request

HOST_CPUS, HOST_MIB = 8, 16384


class Timeout(Exception):
    pass


def request(method, url, body=None, timeout=10.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw.strip() else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def wait(cond, limit, what, step=0.05):
    end = time.monotonic() + limit
    last = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # a node not up yet, a 503 while a VM has no estimate
            last = e
        time.sleep(step)
    raise Timeout(f"timed out after {limit} s: {what}" + (f" (last error: {last})" if last else ""))


def free_ports(n):
    """n loopback ports free for TCP and UDP alike (nodes take HTTP and heartbeats on one port): bind to port 0,
    keep every probe socket open until all are found so no port is handed out twice."""
    held, ports = [], []
    try:
        while len(ports) < n:
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                t.close()
                u.close()
                continue
            held += [t, u]
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


class Cluster:
    def __init__(self, binary, work, managers, controllers, gm_flags, lc_flags, secret="bench-rebalance-secret"):
        self.binary, self.work, self.secret = binary, work, secret
        os.makedirs(work, exist_ok=True)
        self.procs = {}
        ports = free_ports(1 + managers + controllers)
        self.bs = f"127.0.0.1:{ports[0]}"
        self.gm_ports, self.lc_ports = ports[1:1 + managers], ports[1 + managers:]
        self.common = ["--bootstrap", self.bs, "--secret", secret]
        self.gm_flags, self.lc_flags = gm_flags, lc_flags
        self.url = f"http://{self.bs}"

    def start(self, name, args):
        log = open(os.path.join(self.work, name + ".log"), "w")
        self.procs[name] = subprocess.Popen([self.binary] + args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    def up(self):
        self.start("bs", ["bootstrap", "--listen", self.bs, "--state-dir", f"{self.work}/bs", "--secret", self.secret,
                          "--log-level", "notice"])
        for i, port in enumerate(self.gm_ports):
            self.start(f"gm{i}", ["gm", "--listen", f"127.0.0.1:{port}", "--state-dir", f"{self.work}/gm{i}",
                                  "--election-dir", f"{self.work}/election", "--log-level", "notice"]
                       + self.gm_flags + self.common)
        for i, port in enumerate(self.lc_ports):
            host = f"{self.work}/host{i}.xml"
            with open(host, "w") as f:   # a fake hypervisor host: 8 CPUs, 16 GiB, no VM of its own
                f.write('<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>'
                        f'<cores>{HOST_CPUS}</cores><threads>1</threads><active>{HOST_CPUS}</active></cpu>'
                        f'<memory>{HOST_MIB * 1024}</memory></node>')
            self.start(f"lc{i}", ["lc", "--listen", f"127.0.0.1:{port}", "--hypervisor", f"test://{host}",
                                  "--state-dir", f"{self.work}/lc{i}", "--log-level", "notice"]
                       + self.lc_flags + self.common)
        n = len(self.lc_ports)
        wait(lambda: len(self.hosts()) == n, 60, f"{n} controllers listed by the leader", step=0.25)
        # Every host's usage is answered (the managers' windows exist) before anything is measured.
        wait(lambda: len(self.get("/v1/rebalancing")["hosts"]) == n, 30, "every host in the rebalancer's view", step=0.25)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        end = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = {}

    # HTTP on the bootstrap
    def get(self, path, timeout=10.0):
        status, body = request("GET", self.url + path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status} {body}")
        return body

    def post(self, path, body, ok=(200, 202), timeout=10.0):
        status, answer = request("POST", self.url + path, body, timeout=timeout)
        if status not in ok:
            raise RuntimeError(f"POST {path}: HTTP {status} {answer}")
        return answer

    def hosts(self):
        body = self.get("/v1/hosts")
        return body["hosts"] if isinstance(body, dict) else body

    # VMs
    def submit(self, specs):
        """specs: [(name, vcpus, memory MiB)]; one virtual cluster; answers {name: controller id}."""
        templates = [{"libVirtTemplate": f"<domain type='test'><name>{n}</name><memory unit='MiB'>{mib}</memory>"
                                         f"<vcpu>{vc}</vcpu><os><type>hvm</type></os></domain>",
                      "networkCapacityDemand": {"rxBytes": 0, "txBytes": 0}} for n, vc, mib in specs]
        task = self.post("/v1/virtual-clusters", {"virtualMachineTemplates": templates})["taskId"]
        doc = wait(lambda: (lambda d: d if d.get("state") == "done" else None)(
            self.get(f"/v1/virtual-clusters/{task}?wait=10", timeout=20)), 60, "virtual cluster started")
        vms = doc["response"]["virtualMachineMetaData"]
        bad = [v for v in vms if v["status"] != "RUNNING"]
        if bad:
            raise RuntimeError(f"{len(bad)} VMs did not start: {bad[0]}")
        return {v["virtualMachineLocation"]["virtualMachineId"]: v["virtualMachineLocation"]["localControllerId"] for v in vms}

    def where(self, vm):
        return self.get(f"/v1/vms/{vm}")["virtualMachineLocation"]["localControllerId"]

    def load(self, vm, vcpus, mib):
        # A VM that has just started may not be listed by the heartbeats yet (404): retried, bounded.
        return wait(lambda: self.post(f"/v1/vms/{vm}/load", {"vcpus": vcpus, "memoryMiB": mib}), 15, f"load on {vm}")

    def migrate(self, vm, to):
        """A manual migration, waited for (retried while a per-host migration limit refuses it)."""
        if self.where(vm) == to:
            return None
        refusal = []

        def start():
            status, body = request("POST", self.url + "/v1/migrations", {"vm": vm, "to": to})
            if status in (200, 202):
                return body
            if status in (409, 503, 429):
                refusal[:] = [f"HTTP {status} {body}"]
                return None
            raise RuntimeError(f"migrate {vm}: HTTP {status} {body}")
        try:
            rec = wait(start, 20, f"migration of {vm} started", step=0.1)
        except Timeout as e:
            books = next((h for h in self.hosts() if h["id"] == to), None)
            raise Timeout(f"{e}; last refusal: {refusal}; the destination in GET /v1/hosts: {books}") from None
        done = wait(lambda: (lambda r: r if r["state"] in ("completed", "failed", "aborted") else None)(
            self.get(f"/v1/migrations/{rec['id']}?wait=5", timeout=10)), 30, f"migration of {vm}")
        if done["state"] != "completed":
            raise RuntimeError(f"migration of {vm} {done['state']}: {done.get('error')}")
        return done

    def usage(self, host):
        return self.get(f"/v1/hosts/{host}/usage", timeout=5)

    def rebalancing(self):
        return self.get("/v1/rebalancing")

    def moves_since(self, wall_ms):
        return [m for m in self.rebalancing()["moves"] if m["startedAt"] >= wall_ms]

    def controller_ids(self):
        """Controller ids in the order of self.lc_ports (lc0, lc1, ...)."""
        by_port = {h["address"]["port"]: h["id"] for h in self.hosts()}
        return [by_port[p] for p in self.lc_ports]

    def log_lines(self, needle, names=None):
        out = []
        for name in sorted(names or self.procs):
            path = os.path.join(self.work, name + ".log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    out += [f"{name}: {line.rstrip()}" for line in f if needle in line]
        return out


# ---------------------------------------------------------------------------------------------------------------
# Settings both clusters are started with (seconds). Target of part 1: 2 usage windows + the migration's time.
USAGE_INTERVAL, WINDOW, ROUND, DWELL, COOLDOWN = 1.0, 3.0, 1.0, 2.0, 5.0
HIGH, HYSTERESIS = 0.8, 0.05


def gm_flags(extra=()):
    return ["--rebalance", "on", "--rebalance-interval", str(ROUND), "--rebalance-dwell", str(DWELL),
            "--rebalance-cooldown", str(COOLDOWN), "--usage-estimator", f"average:{WINDOW:g}",
            "--cpu-high", str(HIGH), "--memory-high", str(HIGH), "--rebalance-hysteresis", str(HYSTERESIS)] + list(extra)


LC_FLAGS = ["--usage-interval", str(USAGE_INTERVAL)]


def shares(u):
    return u["cpuFraction"], u["memoryFraction"]


def under(u):
    c, m = shares(u)
    return c <= HIGH and m <= HIGH


def settle(c, host, cpu, mib, what, limit=20.0):
    """Wait until the host's window estimates sum to the given figures (within 2 %)."""
    def ok():
        u = c.usage(host)
        return u if abs(u["vcpusInUse"] - cpu) <= 0.02 * HOST_CPUS and abs(u["memoryUsedMiB"] - mib) <= 0.02 * HOST_MIB else None
    return wait(ok, limit, what, step=0.2)


# ---------------------------------------------------------------------------------------------------------------
# 1. Overload relief time

BASE = (2, 2048, 1.0, 1024)     # per host: vcpus, MiB asked; declared vCPUs in use, MiB in use
HOT = (3, 3072)                 # two hot VMs, cold at (0.2, 512), hot at (3.0, 512)
COLD_LOAD, HOT_LOAD = (0.2, 512), (3.0, 512)


def relief(c, ids, rounds):
    print(f"\n== 1. overload relief: {rounds} rounds, one host each (2 hot VMs of 3 vCPUs join a host's 2-vCPU VM; "
          f"declared {HOT_LOAD[0]:g}+{HOT_LOAD[0]:g}+{BASE[2]:g} of {HOST_CPUS} vCPUs = "
          f"{(2 * HOT_LOAD[0] + BASE[2]) / HOST_CPUS:.1%} > {HIGH:.0%})")
    for vm in ("hot-a", "hot-b"):
        c.load(vm, *COLD_LOAD)
    results = []
    for r in range(rounds):
        host = ids[r % len(ids)]
        for vm in ("hot-a", "hot-b"):
            c.migrate(vm, host)
        cold = BASE[2] + 2 * COLD_LOAD[0], BASE[3] + 2 * COLD_LOAD[1]
        settle(c, host, *cold, f"round {r + 1}: host {host[:8]} settled cold")
        time.sleep(0.5)
        # The declaration: both hot VMs busy. t0 is when the second one is accepted.
        c.load("hot-a", *HOT_LOAD)
        c.load("hot-b", *HOT_LOAD)
        t0 = time.time()
        crossed = back = None
        peak = 0.0
        end = time.monotonic() + 40
        while time.monotonic() < end:
            try:
                u = c.usage(host)
            except Exception:
                time.sleep(0.05)
                continue
            now = time.time()
            peak = max(peak, u["cpuFraction"])
            if crossed is None and not under(u):
                crossed = now
            if crossed is not None and under(u) and len(u["virtualMachines"]) < 3:
                back = now
                break
            time.sleep(0.1)
        if back is None:
            raise Timeout(f"round {r + 1}: host {host} not back under {HIGH:.0%} within 40 s (peak {peak:.1%})")
        moves = c.moves_since(int(t0 * 1000) - 1)
        mine = [m for m in moves if m["from"] == host]
        mig = None
        if mine and mine[0].get("migrationId"):
            mig = wait(lambda: (lambda x: x if x.get("durationMs") is not None else None)(
                c.get(f"/v1/migrations/{mine[0]['migrationId']}")), 10, "migration record complete")
        planned = mine[0]["startedAt"] / 1000 if mine else None
        # Does the VM's own record (GET /v1/vms/ID) already name the host the move went to?
        where_lag = None
        if mine:
            seen_at = time.time()
            first = c.where(mine[0]["vm"])
            if first != mine[0]["to"]:
                wait(lambda: c.where(mine[0]["vm"]) == mine[0]["to"], 10, f"{mine[0]['vm']} listed on its new host")
                where_lag = time.time() - seen_at
        dur = (mig or {}).get("durationMs", 0) / 1000
        results.append(dict(host=host, total=back - t0, crossing=crossed - t0,
                            to_plan=(planned - crossed) if planned else None,
                            migration=dur, after=(back - planned - dur) if planned else None,
                            moves=len(mine), reasons=sorted({m["reason"] for m in mine}), vm=mine[0]["vm"] if mine else None,
                            target=WINDOW * 2 + dur, peak=peak, where_lag=where_lag))
        x = results[-1]
        print(f"   round {r + 1}: host {host[:8]}  back under after {x['total']:.2f} s  (target {x['target']:.2f} s)  "
              f"= crossing {x['crossing']:.2f} + dwell and round {x['to_plan'] or 0:.2f} + migration {x['migration']:.3f} "
              f"+ seen {x['after'] or 0:.2f}; {x['moves']} move(s) {x['reasons']} ({x['vm']}), peak cpu {peak:.1%}"
              + (f"; GET /v1/vms/{x['vm']} named the old host for {where_lag:.2f} s more" if where_lag else ""))
        # Cool the hot VMs down before the next round.
        for vm in ("hot-a", "hot-b"):
            c.load(vm, *COLD_LOAD)
    return results


# ---------------------------------------------------------------------------------------------------------------
# 2. Moves vs the optimum

# Three overloaded hosts: (vm, vcpus, MiB asked, declared vCPUs, declared MiB). P is relieved by any one VM; Q needs
# two (a 1-vCPU and a 2-vCPU VM) but no single one; R needs two because every VM is fully busy.
INSTANCE = {
    "P": [("p1", 2, 2048, 2.0, 1024), ("p2", 2, 4096, 1.5, 3000), ("p3", 2, 2048, 2.0, 2000), ("p4", 1, 1024, 1.0, 512)],
    "Q": [("q1", 1, 512, 1.0, 512), ("q2", 2, 3072, 2.0, 3072), ("q3", 2, 4096, 2.0, 4096), ("q4", 1, 3072, 1.0, 3072),
          ("q5", 1, 2048, 1.0, 1024), ("q6", 1, 2048, 1.0, 1536)],
    "R": [("r1", 2, 4096, 2.0, 2048), ("r2", 2, 512, 2.0, 460), ("r3", 2, 2048, 2.0, 1843), ("r4", 1, 4096, 1.0, 3072),
          ("r5", 1, 3072, 1.0, 1536)],
}


def fits_target(h):
    """A host after the moves, as the rebalancer's own rule wants a target: at most `high` on both shares, the
    memory its VMs asked for within its size; and, as the destination's quota admits a migration, their vCPUs too."""
    return (h["cpu"] <= HIGH * HOST_CPUS + 1e-9 and h["mem"] <= HIGH * HOST_MIB + 1e-9
            and h["req_mib"] <= HOST_MIB and h["req_vcpus"] <= HOST_CPUS)


def relieved(h):
    return h["cpu"] / HOST_CPUS < HIGH - HYSTERESIS and h["mem"] / HOST_MIB < HIGH - HYSTERESIS


def fewest_moves(hosts, vms, overloaded, limit=8):
    """Exhaustive search: the fewest VMs moved (from the overloaded hosts; any target) after which every overloaded
    host is below high - hysteresis and every host fits; of those, the set that moves the least memory in use. hosts: {id: load dict}; vms: {vm: (host, vcpus, mib, cpu, mem)}.
    Tries every subset of size k = 1, 2, ... and every assignment of it (hosts in the same state tried once)."""
    movable = sorted(v for v, x in vms.items() if x[0] in overloaded)

    def apply(state, vm, src, dst):
        _, vc, mib, cpu, mem = vms[vm]
        for hid, sign in ((src, -1), (dst, +1)):
            h = state[hid]
            h["cpu"] += sign * cpu; h["mem"] += sign * mem; h["req_vcpus"] += sign * vc; h["req_mib"] += sign * mib

    def assign(state, todo, touched=frozenset()):
        if not todo:
            return all(relieved(state[o]) for o in overloaded) and all(fits_target(state[h]) for h in touched)
        vm, rest = todo[0], todo[1:]
        src = vms[vm][0]
        seen = set()
        for hid in sorted(state):
            if hid == src:
                continue
            h = state[hid]
            key = (round(h["cpu"], 6), round(h["mem"], 3), h["req_vcpus"], h["req_mib"], hid in overloaded)
            if key in seen:
                continue
            seen.add(key)
            apply(state, vm, src, hid)
            if fits_target(state[hid]) or hid in overloaded:   # an overloaded host may still shed later VMs
                if assign(state, rest, touched | {hid}):
                    return True
            apply(state, vm, hid, src)
        return False

    for k in range(0, min(limit, len(movable)) + 1):
        # Of the subsets of this size that work, the one that moves the least memory in use.
        for subset in sorted(itertools.combinations(movable, k), key=lambda sub: (sum(vms[v][4] for v in sub), sub)):
            state = {h: dict(x) for h, x in hosts.items()}
            # Quick test: the sources relieved once the subset leaves.
            for vm in subset:
                src, vc, mib, cpu, mem = vms[vm]
                state[src]["cpu"] -= cpu; state[src]["mem"] -= mem
            if not all(relieved(state[o]) for o in overloaded):
                continue
            state = {h: dict(x) for h, x in hosts.items()}
            if assign(state, list(subset)):
                return k, subset
    return None, None


def optimum_instance(c, ids, loads):
    """loads: {vm: (host, vcpus, mib, cpu, mem)} of every VM in the cluster."""
    print("\n== 2. moves vs the optimum: 3 overloaded hosts (P, Q, R), 15 VMs with varied declared loads, "
          f"{len(ids) - 3} other hosts")
    c.post("/v1/rebalancing/pause", None, ok=(200,))
    # P, Q, R are hosts 6-8; their base VMs go elsewhere, and the two (cold) hot VMs to the last host.
    pqr = dict(zip(INSTANCE, ids[5:8]))
    spare = [h for h in ids if h not in pqr.values() and h != ids[-1]]
    for vm in ("hot-a", "hot-b"):
        c.migrate(vm, ids[-1])
        loads[vm] = (ids[-1],) + loads[vm][1:]
    for i, (vm, x) in enumerate(sorted(loads.items())):
        if x[0] in pqr.values():
            to = spare[i % len(spare)]
            c.migrate(vm, to)
            loads[vm] = (to,) + x[1:]
    specs = [(vm, vc, mib) for name in INSTANCE for vm, vc, mib, _, _ in INSTANCE[name]]
    placed = c.submit(specs)
    for vm, vc, mib in specs:
        c.load(vm, 0.1, 100)
    # Placement may have put some of them on P, Q or R (they were the emptiest hosts): those that belong on another
    # go to a spare host with room first.
    home = {vm: pqr[name] for name in INSTANCE for vm, *_ in INSTANCE[name]}
    size = {vm: (vc, mib) for vm, vc, mib in specs}
    for vm, host in sorted(placed.items()):
        if host in pqr.values() and home[vm] != host:
            room = {h["id"]: (HOST_CPUS - h["vcpusRequested"], HOST_MIB - h["memoryMiBRequested"]) for h in c.hosts()}
            to = next(h for h in spare if room[h][0] >= size[vm][0] and room[h][1] >= size[vm][1])
            c.migrate(vm, to)
    for name, vms in INSTANCE.items():
        for vm, vc, mib, cpu, mem in vms:
            c.migrate(vm, pqr[name])
            c.load(vm, cpu, mem)
            loads[vm] = (pqr[name], vc, mib, cpu, mem)
    for name, vms in INSTANCE.items():
        settle(c, pqr[name], sum(v[3] for v in vms), sum(v[4] for v in vms), f"host {name} settled at its declared load")
    hosts = {h: dict(cpu=0.0, mem=0.0, req_vcpus=0, req_mib=0) for h in ids}
    for vm, (h, vc, mib, cpu, mem) in loads.items():
        hosts[h]["cpu"] += cpu; hosts[h]["mem"] += mem; hosts[h]["req_vcpus"] += vc; hosts[h]["req_mib"] += mib
    overloaded = [h for h, x in hosts.items() if x["cpu"] / HOST_CPUS > HIGH or x["mem"] / HOST_MIB > HIGH]
    assert sorted(overloaded) == sorted(pqr.values()), "the instance is not as built"
    for name in INSTANCE:
        x = hosts[pqr[name]]
        print(f"   host {name} ({pqr[name][:8]}): cpu {x['cpu'] / HOST_CPUS:.1%}, memory {x['mem'] / HOST_MIB:.1%}, "
              f"{len(INSTANCE[name])} VMs")
    s = time.monotonic()
    k_all, best = fewest_moves(hosts, loads, overloaded)
    per_host = {name: fewest_moves(hosts, loads, [pqr[name]])[0] for name in INSTANCE}
    search_s = time.monotonic() - s
    t0 = time.time()
    c.post("/v1/rebalancing/resume", None, ok=(200,))

    def quiet():
        bad = [h for h in pqr.values() if not under(c.usage(h))]
        st = c.rebalancing()
        mine = [m for m in st["moves"] if m["startedAt"] >= t0 * 1000]
        running = [m for m in mine if m["state"] not in ("completed", "failed", "aborted", "refused")]
        last = max([m["startedAt"] for m in mine] or [t0 * 1000]) / 1000
        return mine if not bad and not running and mine and time.time() - last > DWELL + 2 * ROUND else None
    mine = wait(quiet, 45, "P, Q and R back under the thresholds and no move for a while", step=0.25)
    relieved_after = max(m.get("finishedAt") or m["startedAt"] for m in mine) / 1000 - t0
    starts = sorted(m["startedAt"] for m in mine)   # moves of one round start within a few ms of each other
    rounds_used = 1 + sum(1 for a, b in zip(starts, starts[1:]) if b - a > 500)
    name_of = {v: k for k, v in pqr.items()}
    done = [m for m in mine if m["state"] == "completed"]
    print(f"   optimum (exhaustive search over VM -> host assignments, {search_s:.2f} s): {k_all} moves "
          f"({', '.join(best)}); per host: " + ", ".join(f"{n} {k}" for n, k in per_host.items()))
    by_host = {}
    for m in mine:
        by_host.setdefault(name_of.get(m["from"], m["from"][:8]), []).append(m)
    for name in INSTANCE:
        ms = by_host.get(name, [])
        print(f"   rebalancer on {name}: {len(ms)} moves ({', '.join(m['vm'] + ' ' + m['state'] for m in ms)}) vs optimum {per_host[name]}")
    for m in mine:
        if m["state"] != "completed":
            print(f"     {m['vm']} ({name_of.get(m['from'], '?')} -> {m['to'][:8]}) {m['state']}: {m.get('error')}")
    others = [m for m in mine if m["from"] not in name_of]
    if others:
        print(f"   moves from other hosts: {[(m['vm'], m['reason']) for m in others]}")
    mib = lambda names: sum(loads[v][4] for v in names)
    print(f"   memory in use moved: rebalancer {mib([m['vm'] for m in mine]):.0f} MiB; the optimum's moves (the cheapest "
          f"set of {k_all}) {mib(best):.0f} MiB")
    print(f"   rebalancer: {len(mine)} moves ({len(done)} completed) in {rounds_used} round(s), last ended "
          f"{relieved_after:.2f} s after resume; optimum {k_all}; ratio {len(mine) / k_all:.2f}")
    return dict(moves=len(mine), completed=len(done), optimum=k_all, per_host=per_host,
                by_host={n: len(v) for n, v in by_host.items()}, ratio=len(mine) / k_all, rounds=rounds_used,
                vms=sorted(m["vm"] for m in mine), best=list(best))


# ---------------------------------------------------------------------------------------------------------------
# 3. Hosts freed by consolidation

CONSOLIDATION_MIN, BUDGET3 = 0.15, 8


def light_vms(prefix, two_vcpus):
    """20 light VMs, one per host: vCPUs 1 (or alternately 1 and 2), 1-3 GiB asked, 10-30 % of a vCPU, 30-70 % of memory."""
    out = []
    for i in range(20):
        vc = 1 + (i % 2) if two_vcpus else 1
        mib = (1024, 2048, 3072)[i % 3]
        out.append((f"{prefix}{i:02d}", vc, mib, round((0.1, 0.2, 0.3, 0.15, 0.25)[i % 5] * vc, 3),
                    int(mib * (0.3, 0.5, 0.7)[(i // 2) % 3])))
    return out


def fits_bin(b, vm, quota):
    _, vc, mib, cpu, mem = vm
    return (b[0] + cpu <= HIGH * HOST_CPUS + 1e-9 and b[1] + mem <= HIGH * HOST_MIB + 1e-9
            and b[3] + mib <= HOST_MIB and (not quota or b[2] + vc <= HOST_CPUS))


def ffd(vms, quota):
    bins = []
    for vm in sorted(vms, key=lambda v: max(v[3] / HOST_CPUS, v[4] / HOST_MIB, v[2] / HOST_MIB,
                                            v[1] / HOST_CPUS if quota else 0), reverse=True):
        for b in bins:
            if fits_bin(b, vm, quota):
                b[0] += vm[3]; b[1] += vm[4]; b[2] += vm[1]; b[3] += vm[2]
                break
        else:
            bins.append([vm[3], vm[4], vm[1], vm[2]])
    return len(bins)


def lower_bound(vms, quota):
    import math
    lb = max(math.ceil(sum(v[3] for v in vms) / (HIGH * HOST_CPUS) - 1e-9), math.ceil(sum(v[4] for v in vms) / (HIGH * HOST_MIB) - 1e-9),
             math.ceil(sum(v[2] for v in vms) / HOST_MIB - 1e-9))
    return max(lb, math.ceil(sum(v[1] for v in vms) / HOST_CPUS - 1e-9)) if quota else lb


def min_hosts(vms, quota, limit_s=20.0):
    """The fewest hosts the VMs fit on: first-fit decreasing, proved optimal when it meets the lower bound, else
    a depth-first search over every VM -> host assignment (bins in the same state tried once), time-limited."""
    lb, best = lower_bound(vms, quota), ffd(vms, quota)
    if best == lb:
        return best, lb, best, "FFD meets the lower bound"
    order = sorted(vms, key=lambda v: (v[2], v[4]), reverse=True)
    end = time.monotonic() + limit_s
    found = [best]

    def dfs(i, bins):
        if time.monotonic() > end or len(bins) >= found[0]:
            return
        if i == len(order):
            found[0] = len(bins)
            return
        vm, seen = order[i], set()
        for b in bins:
            key = tuple(round(x, 6) for x in b)
            if key in seen or not fits_bin(b, vm, quota):
                continue
            seen.add(key)
            b[0] += vm[3]; b[1] += vm[4]; b[2] += vm[1]; b[3] += vm[2]
            dfs(i + 1, bins)
            b[0] -= vm[3]; b[1] -= vm[4]; b[2] -= vm[1]; b[3] -= vm[2]
        if len(bins) + 1 < found[0]:
            bins.append([vm[3], vm[4], vm[1], vm[2]])
            dfs(i + 1, bins)
            bins.pop()
    dfs(0, [])
    exact = time.monotonic() <= end
    return found[0], lb, best, "exhaustive search" if exact else f"search stopped after {limit_s:.0f} s (upper bound)"


def consolidation(c, ids, prefix, two_vcpus, limit):
    vms = light_vms(prefix, two_vcpus)
    label = "1 vCPU each" if not two_vcpus else "1 or 2 vCPUs: the hosts' vCPU quota binds before the thresholds"
    print(f"\n== 3. consolidation ({prefix}*): 20 light VMs ({label}), one per host; "
          f"--consolidation-interval {CONSOLIDATION_MIN:g} (= {CONSOLIDATION_MIN * 60:g} s), --migration-budget {BUDGET3}")
    c.post("/v1/rebalancing/pause", None, ok=(200,))
    c.submit([(n, vc, mib) for n, vc, mib, _, _ in vms])
    for n, vc, mib, cpu, mem in vms:
        c.load(n, cpu, mem)
    for (n, *_), host in zip(vms, ids):
        c.migrate(n, host)
    for (n, vc, mib, cpu, mem), host in zip(vms, ids):
        settle(c, host, cpu, mem, f"{n} settled on its host")
    opt_rule = min_hosts(vms, quota=False)
    opt_quota = min_hosts(vms, quota=True)
    t0 = time.time()
    c.post("/v1/rebalancing/resume", None, ok=(200,))
    interval = CONSOLIDATION_MIN * 60

    def occupied():
        return [h for h in c.hosts() if h["id"] in ids and h["vms"]]

    last_change, last_count = time.time(), None
    end = time.monotonic() + limit
    stopped = "the time limit"
    while time.monotonic() < end:
        moves = c.moves_since(int(t0 * 1000))
        count = sum(1 for m in moves if m["state"] == "completed")
        if count != last_count:
            last_count, last_change = count, time.time()
        running = [m for m in moves if m["state"] not in ("completed", "failed", "aborted", "refused")]
        # Done when two consolidation rounds passed without a completed move (refused ones may go on being planned).
        if not running and count and time.time() - last_change > 2 * interval + 2:
            stopped = "two rounds without a completed move"
            break
        time.sleep(0.5)
    moves = c.moves_since(int(t0 * 1000))
    used = occupied()
    freed = len(ids) - len(used)
    states = {}
    for m in moves:
        states[m["state"]] = states.get(m["state"], 0) + 1
    reasons = sorted({m["reason"] for m in moves})
    errors = sorted({(m.get("error") or "")[:160] for m in moves if m["state"] != "completed"})
    pairs = {}
    for m in moves:
        if m["state"] != "completed":
            pairs[(m["vm"], m["to"])] = pairs.get((m["vm"], m["to"]), 0) + 1
    repeated = sum(1 for n in pairs.values() if n > 1)
    ended = [m["finishedAt"] for m in moves if m["state"] == "completed" and m.get("finishedAt")]
    last_done = (max(ended) / 1000 - t0) if ended else None
    rounds = 1 + sum(1 for a, b in zip(sorted(m["startedAt"] for m in moves), sorted(m["startedAt"] for m in moves)[1:]) if b - a > 2000) if moves else 0
    print(f"   optimum under the rebalancer's own fit rule (thresholds, memory asked): {opt_rule[0]} hosts "
          f"(lower bound {opt_rule[1]}, FFD {opt_rule[2]}; {opt_rule[3]})")
    print(f"   optimum with the vCPU quota a migration's destination enforces too: {opt_quota[0]} hosts "
          f"(lower bound {opt_quota[1]}, FFD {opt_quota[2]}; {opt_quota[3]})")
    print(f"   consolidation: {len(used)} hosts still used, {freed} freed (best possible {len(ids) - opt_quota[0]}), "
          f"{len(moves)} migrations planned {states} {reasons} in {rounds} consolidation rounds over {time.time() - t0:.1f} s"
          + (f"; the last completed one ended {last_done:.1f} s after resume" if last_done is not None else "")
          + f"; stopped after {stopped}")
    if pairs:
        print(f"   moves not completed: {sum(pairs.values())} ({len(pairs)} distinct VM -> host pairs, {repeated} planned again "
              f"in a later round); e.g.:")
        for e in errors[:3]:
            print(f"     {e}")
    return dict(used=len(used), freed=freed, best_freed=len(ids) - opt_quota[0], opt_rule=opt_rule, opt_quota=opt_quota,
                moves=len(moves), states=states, reasons=reasons, errors=errors, rounds=rounds, last_done=last_done,
                completed=states.get("completed", 0))


def destroy(c, names):
    for n in names:
        c.post(f"/v1/vms/{n}/destroy", None, ok=(200, 202, 204))


# ---------------------------------------------------------------------------------------------------------------

def summary_relief(results):
    tot = [r["total"] for r in results]
    tgt = [r["target"] for r in results]
    print(f"   back under: median {statistics.median(tot):.2f} s, max {max(tot):.2f} s over {len(tot)} rounds; target "
          f"2 x {WINDOW:g} s window + migration: median {statistics.median(tgt):.2f} s; within target in "
          f"{sum(t <= g for t, g in zip(tot, tgt))} of {len(tot)}")
    for key, label in (("crossing", "declaration -> estimate over the threshold"), ("to_plan", "-> move started (dwell, round)"),
                       ("migration", "migration durationMs"), ("after", "migration end -> shares seen under")):
        xs = [r[key] for r in results if r[key] is not None]
        if xs:
            print(f"     {label:44s} median {statistics.median(xs):.3f} s  max {max(xs):.3f} s")
    print(f"   moves per relief: {[r['moves'] for r in results]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-relief", action="store_true")
    ap.add_argument("--skip-optimum", action="store_true")
    ap.add_argument("--skip-consolidation", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) for a look afterwards")
    a = ap.parse_args()

    def on_signal(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    work = tempfile.mkdtemp(prefix="doze-bench-rebalance.")
    clusters = []
    started = time.monotonic()
    try:
        print(f"machine: {os.cpu_count()} cores; 1 bootstrap, 4 group managers (1 leader), 20 local controllers on "
              f"test-driver hosts of {HOST_CPUS} CPUs and {HOST_MIB // 1024} GiB")
        print(f"settings: lc --usage-interval {USAGE_INTERVAL:g}; gm --usage-estimator average:{WINDOW:g} "
              f"--rebalance-interval {ROUND:g} --rebalance-dwell {DWELL:g} --rebalance-cooldown {COOLDOWN:g} "
              f"--cpu-high {HIGH} --memory-high {HIGH} --rebalance-hysteresis {HYSTERESIS} (--migration-budget 4)")
        if not (a.skip_relief and a.skip_optimum):
            c = Cluster(a.binary, work + "/c1", 4, 20, gm_flags(["--migration-budget", "4"]), LC_FLAGS)
            clusters.append(c)
            c.up()
            print(f"   cluster up in {time.monotonic() - started:.1f} s")
            ids = c.controller_ids()
            base = [(f"base-{i:02d}", BASE[0], BASE[1]) for i in range(20)]
            c.submit(base + [("hot-a",) + HOT, ("hot-b",) + HOT])
            for (n, *_), host in zip(base, ids):
                c.load(n, BASE[2], BASE[3])
                c.migrate(n, host)
            for vm in ("hot-a", "hot-b"):
                c.load(vm, *COLD_LOAD)
            relief_results = None
            if not a.skip_relief:
                relief_results = relief(c, ids, a.rounds)
                summary_relief(relief_results)
            if not a.skip_optimum:
                loads = {}
                for (n, *_), host in zip(base, ids):
                    loads[n] = (c.where(n), BASE[0], BASE[1], BASE[2], BASE[3])
                # Moves still under way end first (the VMs' records name their hosts once they have).
                wait(lambda: all(m["state"] in ("completed", "failed", "aborted", "refused")
                                 for m in c.rebalancing()["moves"]), 20, "rebalancing moves ended")
                for vm in ("hot-a", "hot-b"):
                    c.load(vm, *COLD_LOAD)
                    loads[vm] = (c.where(vm), HOT[0], HOT[1]) + COLD_LOAD
                # The hot VMs' windows forget their busy samples before the instance is built.
                time.sleep(WINDOW + 1)
                optimum_instance(c, ids, loads)
            for line in c.log_lines("refused")[-5:] + c.log_lines("error")[-5:]:
                print("   log:", line[:300])
            c.stop()
        if not a.skip_consolidation:
            c = Cluster(a.binary, work + "/c2", 4, 20,
                        gm_flags(["--migration-budget", str(BUDGET3), "--consolidation-interval", str(CONSOLIDATION_MIN)]),
                        LC_FLAGS)
            clusters.append(c)
            c.up()
            ids = c.controller_ids()
            interval = CONSOLIDATION_MIN * 60
            r1 = consolidation(c, ids, "light-", False, limit=10 * interval)
            destroy(c, [v[0] for v in light_vms("light-", False)])
            wait(lambda: not any(h["vms"] for h in c.hosts()), 20, "every light VM destroyed", step=0.25)
            r2 = consolidation(c, ids, "wide-", True, limit=10 * interval)
            for line in (c.log_lines("refused") + c.log_lines("error"))[-8:]:
                print("   log:", line[:300])
            c.stop()
        print(f"\nwhole run: {time.monotonic() - started:.1f} s")
    finally:
        for c in clusters:
            c.stop()
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
