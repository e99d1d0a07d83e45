#!/usr/bin/env bash
# The fence agent of the network-namespace topologies (netns.yaml: fence_command). A group leader runs it as
#   fence-netns.sh HOST_ID         with DOZE_FENCE_HOST_ADDRESS (the dead controller's address, e.g. 10.77.0.11)
# It finds the network namespace that holds that address (one per host: doze-<topology>-<host>), kills -9 every
# process in it (the host's `doze lc`, its libvirtd, the libvirtd subreaper, every QEMU), and exits 0 once none is
# left: the host is off, so its HA VMs may start elsewhere. Any doubt is a non-zero exit, and then nothing restarts:
# no address, no namespace or several holding it, the caller's own namespace, or processes that will not die.
# Needs root (the group managers of these topologies run as root).
set -uo pipefail
HOST_ID=${1:?usage: fence-netns.sh HOST_ID (with DOZE_FENCE_HOST_ADDRESS set)}
ADDR=${DOZE_FENCE_HOST_ADDRESS:-}
[ -n "$ADDR" ] || { echo "fence-netns: DOZE_FENCE_HOST_ADDRESS is not set for host $HOST_ID" >&2; exit 2; }
IP=$(command -v ip) || { echo "fence-netns: ip (iproute2) not found" >&2; exit 2; }

found=()
for ns in $("$IP" netns list | awk '{print $1}'); do
  "$IP" -n "$ns" -o -4 addr show 2>/dev/null | grep -q " inet $ADDR/" && found+=("$ns")
done
[ ${#found[@]} -eq 1 ] || { echo "fence-netns: ${#found[@]} namespaces hold $ADDR (${found[*]:-none}); not fencing host $HOST_ID" >&2; exit 3; }
NS=${found[0]}
mine=$("$IP" netns identify $$ 2>/dev/null || true)
[ "$NS" != "$mine" ] || { echo "fence-netns: $ADDR is in this process's own namespace $NS; refusing to fence it" >&2; exit 3; }

for attempt in $(seq 50); do
  pids=$("$IP" netns pids "$NS" 2>/dev/null | tr '\n' ' ')
  if [ -z "${pids// /}" ]; then
    echo "fence-netns: host $HOST_ID ($ADDR, netns $NS) is off: no process left in its namespace"
    exit 0
  fi
  [ "$attempt" -eq 1 ] && echo "fence-netns: killing $(echo $pids | wc -w) processes of host $HOST_ID in netns $NS: $pids"
  kill -9 $pids 2>/dev/null
  sleep 0.1
done
echo "fence-netns: processes of $NS survive kill -9 after 5 s: $("$IP" netns pids "$NS" | tr '\n' ' ')" >&2
exit 1
