#!/usr/bin/env python3
"""Replays README.md's "API by example" section against a fresh `doze lc` and checks every printed answer.

Each `$ command` line runs (in one bash session, in order); the lines after it, up to the next command or a
blank line, are the expected output. `…` in an expected line stands for any text; UUIDs, timestamps and the
repository path may differ. Exit status 1 on the first mismatch, with both texts.
usage: check-readme.py DOZE_BINARY
"""
import os, re, shutil, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize(text):
    text = UUID.sub("<uuid>", text)
    text = re.sub(r"\b1[0-9]{9}\b", "<unix>", text)                       # unix seconds
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", "<time>", text)
    text = re.sub(r"snap-\d+", "snap-<ms>", text)
    return text.replace(ROOT, "<root>").replace("/work/main", "<root>")


def matches(expected, actual):
    pattern = ".*".join(re.escape(part) for part in normalize(expected).split("…"))
    return re.fullmatch(pattern, normalize(actual), re.S) is not None


def examples(readme):
    section = readme.split("## API by example", 1)[1].split("\n## ", 1)[0]
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


def main():
    binary = sys.argv[1]
    with open(os.path.join(ROOT, "README.md")) as f:
        cases = examples(f.read())
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
        script = "set +e\nLC=http://127.0.0.1:5020\ncd " + ROOT + "\n"
        for n, (command, _) in enumerate(cases):
            script += f"echo '@@{n}@@'\n{command}\necho\n"
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120).stdout
        parts = re.split(r"@@(\d+)@@\n", out)
        results = {int(parts[i]): parts[i + 1].rstrip("\n") for i in range(1, len(parts), 2)}
        failed = 0
        for n, (command, expected) in enumerate(cases):
            actual = results.get(n, "")
            if not matches(expected, actual):
                failed += 1
                print(f"README example {n + 1} differs:\n  $ {command}\n  expected: {expected}\n  actual:   {actual}\n")
        print(f"README examples: {len(cases) - failed} of {len(cases)} work as printed")
        sys.exit(1 if failed else 0)
    finally:
        lc.kill()
        lc.wait()


if __name__ == "__main__":
    main()
