#!/usr/bin/env python3
"""Replays README.md's examples against the real binary and checks every printed answer.

* The "API by example" section runs against a fresh standalone `doze lc` on 127.0.0.1:5020.
* Every section holding the marker `<!-- check-readme: cluster -->` runs against a fresh cluster launched from
  topology/local.yaml (same ports as printed, 5000-5013; state in a temporary directory), where `doze` is the
  binary under test.

Each `$ command` line runs (in one bash session per target, in order); the lines after it, up to the next
command or a blank line, are the expected output. `…` in an expected line stands for any text; UUIDs,
timestamps and the repository path may differ. Exit status 1 on a mismatch, with both texts.
usage: check-readme.py DOZE_BINARY
"""
import os, re, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize(text):
    text = UUID.sub("<uuid>", text)
    text = re.sub(r"\b1[0-9]{9}\b", "<unix>", text)                       # unix seconds
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


def replay(cases, prelude, what, cwd=ROOT):
    script = "set +e\n" + prelude + "cd " + cwd + "\n"
    for n, (command, _) in enumerate(cases):
        script += f"echo '@@{n}@@'\n{command}\necho\n"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300).stdout
    parts = re.split(r"@@(\d+)@@\n", out)
    results = {int(parts[i]): parts[i + 1].rstrip("\n") for i in range(1, len(parts), 2)}
    failed = 0
    for n, (command, expected) in enumerate(cases):
        actual = results.get(n, "")
        if not matches(expected, actual):
            failed += 1
            print(f"README {what} example {n + 1} differs:\n  $ {command}\n  expected: {expected}\n  actual:   {actual}\n")
    print(f"README {what} examples: {len(cases) - failed} of {len(cases)} work as printed")
    return failed


def check_cluster(binary, readme):
    """Runs the marked sections in a scratch directory that looks like a checkout right after scripts/run.sh:
    `topology/` linked in, the cluster's state in `.state/cluster-local`, `.build/release/doze` standing for the
    binary under test. A `$ cat FILE` of a file the scratch directory lacks creates it from the printed text."""
    cases = [c for section in cluster_sections(readme) for c in commands(section)]
    if not cases:
        return 0
    for port in range(5000, 5014):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5)
            print(f"port {port} is taken (a cluster from scripts/run.sh?): stop it with scripts/run.sh --stop, then rerun")
            return 1
        except Exception:
            pass
    work = tempfile.mkdtemp(prefix="doze-readme-cluster.")
    os.symlink(os.path.join(ROOT, "topology"), os.path.join(work, "topology"))
    with open(os.path.join(ROOT, "topology", "local.yaml")) as f:
        topology = f.read()
    topology = re.sub(r"(?m)^run_dir:.*\n", "", topology)
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
        for _ in range(100):   # every controller under a manager (bounded)
            try:
                body = urllib.request.urlopen("http://127.0.0.1:5000/bootstrap?getLocalControllerList", timeout=1).read()
                if body.count(b'"localControllerId"') >= 4:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        cases = [(c.replace(".build/release/doze", binary), e) for c, e in cases]
        prelude = f"doze() {{ {binary} \"$@\"; }}\n"
        return replay(cases, prelude, "cluster", cwd=work)
    finally:
        subprocess.run([binary, "cluster", "down", path], capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def main():
    binary = os.path.abspath(sys.argv[1])
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    cases = examples(readme)
    assert cases, "no examples found"
    state = "/tmp/doze-demo"
    for path in [state, "/tmp/doze-demo-images", "/tmp/doze-demo-pools"]:
        shutil.rmtree(path, ignore_errors=True)
    lc = subprocess.Popen([binary, "lc", "--listen", "127.0.0.1:5020", "--hypervisor", f"test://{ROOT}/topology/hosts/host1.xml",
                           "--state-dir", state, "--xml-dir", f"{ROOT}/topology/xml", "--disk-dir", f"{ROOT}/topology/images",
                           "--sample-interval", "1", "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen("http://127.0.0.1:5020/health", timeout=1)
                break
            except Exception:
                time.sleep(0.05)
        time.sleep(2.2)   # two metrics samples, so today's metrics have a bucket
        failed = replay(cases, "LC=http://127.0.0.1:5020\n", "API")
    finally:
        lc.kill()
        lc.wait()
    failed += check_cluster(binary, readme)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
