#!/usr/bin/env python3
# subreaper.py CMD... -- run CMD as a child subreaper: every orphan in its subtree (a daemonized libvirtd, the QEMUs
# it double-forks) is re-parented here and reaped at once. Some machines' PID 1 reaps orphans only every 1-2 s, and
# libvirt polls kill(pid, 0) for a death, which an unreaped zombie passes: destroy, stop and migration then crawl.
# Exits once nothing is left. See ../shared/reference/kvm.md §5 (in the docs: docs/ARCHITECTURE.md, launcher).
import ctypes, os, signal, sys

if len(sys.argv) < 2:
    sys.exit("usage: subreaper.py CMD [ARG...]")
# A parent's blocked signals are inherited (a Swift launcher's threads block SIGTERM); the daemon and its QEMUs
# inherit ours: start them with none blocked.
signal.pthread_sigmask(signal.SIG_SETMASK, [])
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # 36 = PR_SET_CHILD_SUBREAPER
if os.fork() == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
try:
    while True:
        os.wait()                    # the child, then every orphan re-parented to us
except ChildProcessError:            # ECHILD: nothing left
    pass
