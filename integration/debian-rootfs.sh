#!/usr/bin/env bash
# Builds the Debian root filesystem of the agent harness containers once per
# machine, into .cache/debian-rootfs: bash, coreutils, python3, nodejs, git,
# gcc, make and tmux from Debian's packages (debootstrap, minbase), with the
# harnesses of testdata/harness copied in at each run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGENTCGROUP_CACHE:-$root/.cache}
dir=$cache/debian-rootfs
pkgs=bash,coreutils,procps,python3,nodejs,git,gcc,libc6-dev,make,tmux
stamp="bookworm $pkgs"
if [ "$(cat "$dir.stamp" 2>/dev/null)" != "$stamp" ]; then
	command -v debootstrap >/dev/null || {
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	}
	echo "[debian-rootfs] debootstrap bookworm with $pkgs (a few minutes, once)" >&2
	# An interrupted debootstrap leaves its /proc mounted in the target.
	{ grep -o " $dir.tmp/[^ ]*" /proc/mounts || true; } | sort -r | xargs -r -n1 umount -l
	rm -rf --one-file-system "$dir" "$dir.tmp"
	debootstrap --variant=minbase --include="$pkgs" bookworm "$dir.tmp" http://deb.debian.org/debian >"$cache/debian-rootfs.log" 2>&1 ||
		{ tail -20 "$cache/debian-rootfs.log" >&2; exit 1; }
	rm -rf "$dir.tmp"/var/cache/apt/archives/*.deb
	mv "$dir.tmp" "$dir"
	echo "$stamp" >"$dir.stamp"
fi
mkdir -p "$dir/harness"
cp "$root"/testdata/harness/* "$dir/harness/"
