#!/usr/bin/env bash
# The replay benchmark, run as root on a cgroup v2 host (make replay runs it
# in the lab guest): containerd 2.4 with both the runc shim and agentcgroup,
# a rootfs with the agent simulator, then `agentcgroup replay` with the
# arguments given (default: 8 agents over ../shared/traces, budget 1536Mi).
# Results go to docs/replay/ unless --out says otherwise.
set -euo pipefail
. "$(dirname "$0")/stack.sh"

cd "$root"
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), cgroup2 $(awk '$3 == "cgroup2" && $2 == "/sys/fs/cgroup" {print $4}' /proc/mounts)" >&2
agentcgroup replay --address "$sock" --rootfs "$work/rootfs" --traces "$root/../shared/traces" --out "$root/docs/replay" "$@"
