#!/usr/bin/env python3
# netns-forward.py LISTEN_HOST:PORT NETNS TARGET_HOST:PORT -- relay TCP from this network namespace into another.
#
# `doze cluster up` runs it in the root namespace for a network-namespace topology, so that clients there reach the
# bootstrap, whose address exists only inside the cluster's namespaces. It binds its listening socket here first,
# then joins NETNS (/run/netns/NETNS) before any thread exists: every outgoing connection is made inside. Nothing is
# added to the root namespace but this listening socket. Stdlib only; SIGTERM stops it.
import ctypes, os, signal, socket, sys, threading

CLONE_NEWNET = 0x40000000


def split(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(client, target):
    try:
        upstream = socket.create_connection(target, timeout=5)
        upstream.settimeout(None)
    except OSError as e:
        print(f"netns-forward: cannot reach {target[0]}:{target[1]}: {e}", file=sys.stderr, flush=True)
        client.close()
        return
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main():
    # A parent's blocked signals are inherited (a Swift launcher's threads block SIGTERM): take them back.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if len(sys.argv) != 4:
        sys.exit("usage: netns-forward.py LISTEN_HOST:PORT NETNS TARGET_HOST:PORT")
    listen, netns, target = split(sys.argv[1]), sys.argv[2], split(sys.argv[3])
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(listen)
    except OSError as e:
        sys.exit(f"netns-forward: cannot listen on {sys.argv[1]}: {e.strerror}")
    server.listen(128)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"netns-forward: setns({netns}): {os.strerror(ctypes.get_errno())}")
    os.close(fd)
    print(f"netns-forward: {sys.argv[1]} -> {sys.argv[3]} in {netns}", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    main()
