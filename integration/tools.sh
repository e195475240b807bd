#!/usr/bin/env bash
# Installs everything the demo, the tests and the benchmark need, once per machine.
# Debian packages through apt-get; containerd 2.4, its runc shim, ctr and runc 1.5 built
# from the Go module proxy into .cache/tools/bin, containerd 1.7 with its runc shim and ctr
# into .cache/tools/containerd-1.7/bin; Debian's 6.12 kernel for the cgroup v2 guest
# unpacked into .cache/kernel; a Debian root for the agent harnesses (debian-rootfs.sh). Re-running it is cheap: finished steps are skipped.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGENTCGROUP_CACHE:-$root/.cache}
bin=$cache/tools/bin
mkdir -p "$bin" "$cache/kernel"

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CONTAINERD17_VERSION=${CONTAINERD17_VERSION:-v1.7.35}
RUNC_VERSION=${RUNC_VERSION:-v1.5.2}

log() { printf '[tools] %s\n' "$*" >&2; }

apt_pkgs=(qemu-system-x86 gcc containerd runc crun busybox-static libseccomp-dev clang llvm libbpf-dev bpftool debootstrap tini dumb-init)
missing=()
for p in "${apt_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

gobuild() { # name module-path version tags [bindir]
	local name=$1 pkg=$2 ver=$3 tags=$4 dir=${5:-$bin}
	if [ -x "$dir/$name" ] && [ "$(cat "$dir/.$name.version" 2>/dev/null)" = "$ver" ]; then return; fi
	log "go install $pkg@$ver"
	mkdir -p "$dir"
	GOBIN=$dir CGO_ENABLED=${CGO:-0} go install -tags "$tags" "$pkg@$ver"
	echo "$ver" >"$dir/.$name.version"
}
gobuild containerd github.com/containerd/containerd/v2/cmd/containerd "$CONTAINERD_VERSION" "no_btrfs no_devmapper no_zfs"
gobuild ctr github.com/containerd/containerd/v2/cmd/ctr "$CONTAINERD_VERSION" ""
gobuild containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 "$CONTAINERD_VERSION" "no_grpc"
CGO=1 gobuild runc github.com/opencontainers/runc "$RUNC_VERSION" "seccomp"
gobuild crictl sigs.k8s.io/cri-tools/cmd/crictl "${CRICTL_VERSION:-v1.37.0}" ""
# Docker's daemon; the docker CLI is the machine image's (28.2), else Debian's docker.io (20.10).
gobuild dockerd github.com/moby/moby/v2/cmd/dockerd "${DOCKERD_VERSION:-v2.0.0-beta.24}" ""
if ! command -v docker >/dev/null; then
	log "apt-get install docker.io (for its docker CLI)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
# containerd 1.7's go.mod has exclude directives, which `go install pkg@version` refuses:
# build it from a scratch module that requires it.
c17=$cache/tools/containerd-1.7/bin
if [ "$(cat "$c17/.version" 2>/dev/null)" != "$CONTAINERD17_VERSION" ]; then
	log "go build containerd, ctr, containerd-shim-runc-v2 $CONTAINERD17_VERSION"
	mod=$cache/tools/containerd-1.7/mod
	mkdir -p "$mod" "$c17"
	(
		cd "$mod"
		[ -f go.mod ] || go mod init agentcgroup-tools/containerd17 >/dev/null 2>&1
		go get "github.com/containerd/containerd@$CONTAINERD17_VERSION" >/dev/null 2>&1
		for cmd in containerd:"no_btrfs no_devmapper no_zfs" ctr:"" containerd-shim-runc-v2:"no_grpc"; do
			CGO_ENABLED=0 go build -mod=mod -tags "${cmd#*:}" -o "$c17/${cmd%%:*}" "github.com/containerd/containerd/cmd/${cmd%%:*}"
		done
	)
	echo "$CONTAINERD17_VERSION" >"$c17/.version"
fi

if ! ls "$cache"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
	log "downloading the guest kernel"
	tmp=$(mktemp -d)
	# the plain amd64 flavour (not -rt, -cloud): it has MEMCG, BTF and the 9p/overlay modules
	pick() { apt-cache pkgnames linux-image-6.12 | grep -E -- '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | sort -V | tail -1; }
	pkg=$(pick)
	[ -n "$pkg" ] || { apt-get update -qq; pkg=$(pick); }
	[ -n "$pkg" ] || { log "no linux-image-6.12 *-amd64-unsigned package in apt sources"; exit 1; }
	(cd "$tmp" && apt-get download "$pkg" >/dev/null)
	dpkg -x "$tmp"/*.deb "$cache/kernel"
	rm -rf "$tmp"
fi
# The agent harness containers' Debian root (bash, python3, node, gcc, tmux),
# and the real agent CLI the suite runs (make agents installs all three).
"$root/integration/debian-rootfs.sh"
"$root/integration/agents.sh" claude
log "ready: $(ls "$cache"/kernel/boot/vmlinuz-*), $("$bin/containerd" --version | awk '{print $3}'), runc $("$bin/runc" --version | awk 'NR==1{print $3}')"
