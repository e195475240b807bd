#!/usr/bin/env bash
# Runs a command as root on a cgroup v2 host with the memory controller: this
# host if it is one (most distributions), else the lab guest (lab.sh). With
# AGENTCGROUP_LAB_INIT=systemd the host must also have systemd as its init.
#   integration/run.sh command [args...]
set -euo pipefail
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null &&
	{ [ "${AGENTCGROUP_LAB_INIT:-}" != systemd ] || [ "$(cat /proc/1/comm)" = systemd ]; }; then
	exec "$@"
fi
exec "$(dirname "$0")/lab.sh" -- "$@"
