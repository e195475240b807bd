#!/usr/bin/env bash
# Runs a command as root on a cgroup v2 host with the memory controller: this
# host if it is one (most distributions), else the lab guest (lab.sh).
#   integration/run.sh command [args...]
set -euo pipefail
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	exec "$@"
fi
exec "$(dirname "$0")/lab.sh" -- "$@"
