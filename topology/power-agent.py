#!/usr/bin/env python3
"""Power agent for clusters started by `doze cluster up` (energy saving, README "Energy saving").

    power-agent.py off|on LAYOUT HOST_ID HOST:PORT

The leader runs it with the host's controller id and control address appended; LAYOUT is the run directory's
layout.json (a topology's `energy:` map writes `{layout}` for it). The host is the local controller listening on
HOST:PORT.

* off: stops the controller and, on a network-namespace topology, the host's libvirtd and any QEMU left in it
  (the leader only powers off hosts that hold no VM). Exit 0 once they are gone.
* on: starts the host's libvirtd again (same private tree, definitions kept), waits for its socket, then the
  controller, with the commands layout.json records, and waits until the controller answers /health.

On real hosts, use IPMI or Wake-on-LAN instead, e.g. `ipmitool -H BMC -U USER -f PASSFILE chassis power soft` and
`ipmitool … chassis power on`, or `wakeonlan MAC` (README "Energy saving").
"""
import json, os, signal, subprocess, sys, time, urllib.request


def fail(message):
    print(f"power-agent: {message}", file=sys.stderr)
    sys.exit(1)


def pid_in(path):
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie is gone for our purpose
        return open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop(pid, what, grace=10.0):
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
    if alive(pid):
        fail(f"{what} (pid {pid}) did not stop")


def wait(condition, seconds, what):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    fail(f"timed out after {seconds:.0f} s waiting for {what}")


def healthy(address):
    try:
        return urllib.request.urlopen(f"http://{address}/health", timeout=1).status == 200
    except Exception:
        return False


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("off", "on"):
        fail("usage: power-agent.py off|on LAYOUT HOST_ID HOST:PORT")
    action, layout_path, host_id, address = sys.argv[1:]
    try:
        layout = json.load(open(layout_path))
    except (OSError, ValueError) as error:
        fail(f"cannot read {layout_path}: {error}")
    node = next((n for n in layout["nodes"] if n["listen"] == address and n["role"] in ("lc", "localController")), None)
    if node is None:
        fail(f"no local controller listens on {address} in {layout_path} (host {host_id})")
    daemon = next((d for d in layout.get("daemons") or [] if d["name"] == node["name"]), None)

    if action == "off":
        stop(pid_in(node["pid_file"]), f"controller {node['name']}")
        if daemon:
            qemu = os.path.join(daemon["directory"], "run", "qemu")
            for name in os.listdir(qemu) if os.path.isdir(qemu) else []:
                if name.endswith(".pid"):
                    stop(pid_in(os.path.join(qemu, name)), f"QEMU {name}", grace=2)
            stop(pid_in(daemon["pid_file"]), f"libvirtd of {node['name']}")
        print(f"{node['name']} ({host_id}) is off")
        return

    if daemon and not alive(pid_in(daemon["pid_file"])):
        for stale in (daemon["socket"], daemon["pid_file"]):
            if os.path.exists(stale):
                os.remove(stale)
        subprocess.run(["/bin/sh", "-c", daemon["restart"]], check=True)
        wait(lambda: os.path.exists(daemon["socket"]) and alive(pid_in(daemon["pid_file"])), 30, f"libvirtd of {node['name']}")
        if layout.get("records_file"):   # so that `doze cluster down` stops it
            with open(layout["records_file"], "a") as records:
                records.write(f"daemon {node['name']} {pid_in(daemon['pid_file'])}\n")
    if not alive(pid_in(node["pid_file"])):
        subprocess.run(["/bin/sh", "-c", node["restart"]], check=True)
    wait(lambda: healthy(address), 30, f"controller {node['name']} to answer on {address}")
    print(f"{node['name']} ({host_id}) is on")


if __name__ == "__main__":
    main()
