#!/usr/bin/env python3
"""Replays README.md's examples against the real binary and checks every printed answer.

* The "API by example" section runs against a fresh standalone `doze lc` on 127.0.0.1:5020.
* Every section holding the marker `<!-- check-readme: cluster -->` runs against a fresh cluster launched from
  topology/local.yaml (same ports as printed, 5000-5013; state in a temporary directory), where `doze` is the
  binary under test.

Each `$ command` line runs (in one bash session per target, in order); the lines after it, up to the next
command or a blank line, are the expected output. `…` in an expected line stands for any text; UUIDs,
timestamps and the repository path may differ. Every difference is printed (both texts), then the exit status
is 1 if there was any.

Nothing here depends on the day or on the printed ports being free: the nodes listen on free ports of the same
width as the printed ones (so tables keep their columns), commands are rewritten to them and answers rewritten
back before they are compared.
usage: check-readme.py DOZE_BINARY
"""
import datetime, glob, os, random, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize(text):
    text = UUID.sub("<uuid>", text)
    text = re.sub(r"\b[12][0-9]{9}\b", "<unix>", text)                       # unix seconds
    text = re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", "<time>", text)   # ISO 8601
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", "<time>", text)
    text = re.sub(r"snap-\d+", "snap-<ms>", text)
    text = re.sub(r"/tmp/doze-readme-cluster\.\w+", "<root>", text)
    return text.replace(ROOT, "<root>").replace("/work/main", "<root>")


def matches(expected, actual):
    pattern = ".*".join(re.escape(part) for part in normalize(expected).split("…"))
    return re.fullmatch(pattern, normalize(actual), re.S) is not None


CLUSTER_MARKER = "<!-- check-readme: cluster -->"


def cluster_sections(readme):
    return [s for s in re.split(r"\n(?=## )", readme) if CLUSTER_MARKER in s]


def examples(readme):
    return commands(readme.split("## API by example", 1)[1].split("\n## ", 1)[0])


def commands(section):
    cases = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        lines = block.split("\n")
        i = 0
        while i < len(lines):
            if lines[i].startswith("$ "):
                command = lines[i][2:]
                i += 1
                out = []
                while i < len(lines) and lines[i] and not lines[i].startswith("$ "):
                    out.append(lines[i])
                    i += 1
                cases.append((command, "\n".join(out)))
            else:
                i += 1
    return cases


def port_free(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):   # nodes take HTTP (TCP) and heartbeats (UDP) on one port
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def free_ports(printed):
    """Free loopback ports for the printed ones: the same offsets from one base and the same number of digits, so
    order and column widths are kept."""
    low, high = min(printed), max(printed)
    for _ in range(1000):
        base = random.randrange(6000, 9999 - (high - low))
        if all(port_free(base + p - low) for p in printed):
            return {p: base + p - low for p in printed}
    raise RuntimeError("no free block of loopback ports in 6000-9999")


ADDRESS = re.compile(r"(127\.0\.0\.1:)(\d{4})\b")
PORT_FIELD = re.compile(r'("port":)(\d{4})\b')


def to_actual(text, ports):
    return ADDRESS.sub(lambda m: m.group(1) + str(ports.get(int(m.group(2)), m.group(2))), text)


def to_printed(text, ports):
    back = {actual: printed for printed, actual in ports.items()}
    swap = lambda m: m.group(1) + str(back.get(int(m.group(2)), m.group(2)))
    return PORT_FIELD.sub(swap, ADDRESS.sub(swap, text))


def replay(cases, prelude, what, ports, cwd=ROOT, before_each=""):
    """`before_each` runs before every command with N set to its 1-based number, its output not compared."""
    script = "set +e\n" + prelude + "cd " + cwd + "\n"
    for n, (command, _) in enumerate(cases):
        if before_each:
            script += f"N={n + 1}; {before_each}\n"
        script += f"echo '@@{n}@@'\n{to_actual(command, ports)}\necho\n"
    try:
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300).stdout
    except subprocess.TimeoutExpired as timeout:
        out = (timeout.stdout or b"").decode(errors="replace") if isinstance(timeout.stdout, bytes) else (timeout.stdout or "")
        print(f"README {what} examples: the replay did not end within 300 s; what ran is compared below")
    parts = re.split(r"@@(\d+)@@\n", out)
    results = {int(parts[i]): to_printed(parts[i + 1].rstrip("\n"), ports) for i in range(1, len(parts), 2)}
    failed = []
    for n, (command, expected) in enumerate(cases):
        actual = results.get(n, "")
        if not matches(expected, actual):
            failed.append(n + 1)
            print(f"README {what} example {n + 1} differs:\n  $ {command}\n  expected: {expected}\n  actual:   {actual}\n")
    print(f"README {what} examples: {len(cases) - len(failed)} of {len(cases)} work as printed")
    for n in failed:   # again at the end, one line each: CI often shows only the end of the output
        print(f"  differs: {what} example {n}: $ {cases[n - 1][0][:100]}")
    return len(failed)


def check_cluster(binary, readme):
    """Runs the marked sections in a scratch directory that looks like a checkout right after scripts/run.sh:
    `topology/` linked in, the cluster's state in `.state/cluster-local`, `.build/debug/doze` standing for the
    binary under test. A `$ cat FILE` of a file the scratch directory lacks creates it from the printed text."""
    cases = [c for section in cluster_sections(readme) for c in commands(section)]
    if not cases:
        return 0
    printed = sorted(int(p) for p in re.findall(r"listen: 127\.0\.0\.1:(\d+)", open(os.path.join(ROOT, "topology", "local.yaml")).read()))
    ports = free_ports(printed)
    work = tempfile.mkdtemp(prefix="doze-readme-cluster.")
    os.symlink(os.path.join(ROOT, "topology"), os.path.join(work, "topology"))
    with open(os.path.join(ROOT, "topology", "local.yaml")) as f:
        topology = f.read()
    topology = to_actual(re.sub(r"(?m)^run_dir:.*\n", "", topology), ports)
    topology = topology.replace("host: hosts/", f"host: {ROOT}/topology/hosts/") + f"\nrun_dir: {work}/.state/cluster-local\n"
    path = os.path.join(work, "local.yaml")
    with open(path, "w") as f:
        f.write(topology)
    for command, expected in cases:
        m = re.fullmatch(r"cat (\S+)", command.strip())
        if m and not os.path.exists(os.path.join(work, m.group(1))):
            with open(os.path.join(work, m.group(1)), "w") as f:
                f.write(expected + "\n")
    up = subprocess.run([binary, "cluster", "up", path, "--detach"], capture_output=True, text=True, timeout=120)
    if up.returncode != 0:
        print("cannot start the cluster for the README's cluster examples:\n" + up.stdout + up.stderr)
        return 1
    try:
        listed = lambda: urllib.request.urlopen(f"http://127.0.0.1:{ports[5000]}/bootstrap?getLocalControllerList", timeout=1).read()
        if not wait_for(lambda: listed().count(b'"localControllerId"') >= 4, 15):   # every controller under a manager
            print("README cluster examples: not every controller joined within 15 s (the replay goes on)")
        cases = [(c.replace(".build/debug/doze", binary).replace(".build/release/doze", binary), e) for c, e in cases]
        prelude = f"doze() {{ {binary} \"$@\"; }}\nexport DOZE_BOOTSTRAP=127.0.0.1:{ports[5000]}\n"
        # The examples print a settled cluster: all four controllers under a manager. No example stops one, so one
        # missing means a controller is re-joining after its manager missed its heartbeats (a stall of the
        # machine); wait for it (bounded) and say so, rather than compare a moment the README does not describe.
        notes = os.path.join(work, "settle-notes")
        settle = (f"s=0; until [ $(curl -s -m 1 'http://127.0.0.1:{ports[5000]}/bootstrap?getLocalControllerList' | "
                  f"grep -o localControllerId | wc -l) -ge 4 ] || [ $s -ge 100 ]; do s=$((s+1)); sleep 0.1; done; "
                  f"[ $s -gt 0 ] && echo \"before example $N: waited $s x 0.1 s for every controller to be listed\" >> {notes}")
        failed = replay(cases, prelude, "cluster", ports, cwd=work, before_each=settle)
        if os.path.exists(notes):
            print("README cluster examples: " + open(notes).read().strip().replace("\n", "\nREADME cluster examples: "))
        if failed:
            # What the nodes warned of while the examples ran: a controller down, a manager lost, a failed call.
            for log in sorted(glob.glob(os.path.join(work, ".state", "cluster-local", "*.log"))):
                warnings = [l.rstrip() for l in open(log, errors="replace") if re.search(r" (warning|error|critical) ", l)]
                for line in warnings[-10:]:
                    print(f"  {os.path.basename(log)}: {line[:300]}")
        return failed
    finally:
        subprocess.run([binary, "cluster", "down", path], capture_output=True, timeout=60)
        if os.environ.get("KEEP_README_SCRATCH"):   # the cluster's logs, to see why an example differed
            print(f"README cluster examples: scratch directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def wait_for(condition, seconds):
    """Polls `condition` every 50 ms for at most `seconds`; an exception counts as not yet."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


def avoid_midnight(margin=90):
    """The API examples ask for today's and last week's metrics, so the replay (well under `margin` seconds) must
    not see the day or the week change: a run starting close to local midnight waits until it has passed."""
    now = datetime.datetime.now()
    midnight = datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time())
    left = (midnight - now).total_seconds()
    if left < margin:
        print(f"check-readme: waiting {left:.0f} s for local midnight to pass (today's metrics)")
        time.sleep(left + 2)


def main():
    binary = os.path.abspath(sys.argv[1])
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    cases = examples(readme)
    assert cases, "no examples found"
    state = "/tmp/doze-demo"
    for path in [state, "/tmp/doze-demo-images", "/tmp/doze-demo-pools"]:
        shutil.rmtree(path, ignore_errors=True)
    avoid_midnight()
    ports = free_ports([5020])
    lc = subprocess.Popen([binary, "lc", "--listen", f"127.0.0.1:{ports[5020]}", "--hypervisor", f"test://{ROOT}/topology/hosts/host1.xml",
                           "--state-dir", state, "--xml-dir", f"{ROOT}/topology/xml", "--disk-dir", f"{ROOT}/topology/images",
                           "--sample-interval", "1", "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{ports[5020]}"
    try:
        # Up, and two metrics samples taken, so today's metrics have a bucket (bounded waits).
        if not wait_for(lambda: urllib.request.urlopen(base + "/health", timeout=1).status == 200 or lc.poll() is not None, 20) or lc.poll() is not None:
            lc.kill()
            print("README API examples: the standalone doze lc did not start:\n" + (lc.communicate(timeout=5)[1] or "")[-2000:])
            failed = 1
        else:
            if not wait_for(lambda: b'"memory":{"datas":{}' not in urllib.request.urlopen(base + "/hypervisor/metrics?q=today", timeout=1).read(), 10):
                print("README API examples: no metrics sample within 10 s (the replay goes on)")
            failed = replay(cases, f"LC={base}\n", "API", ports)
    finally:
        lc.kill()
        lc.wait()
    failed += check_cluster(binary, readme)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
