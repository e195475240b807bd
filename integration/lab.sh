#!/usr/bin/env bash
# Runs a command as root inside the cgroup v2 lab guest: qemu (TCG), Debian's 6.12 kernel,
# the host's own root shared read-only over 9p under a tmpfs overlay. The command runs in
# the current directory; its exit code is this script's. A guest kernel that dies before
# the command has finished (a known oops while the kernel patches its own text under
# multi-threaded TCG) is booted again and the command rerun, so that only real failures
# fail; the command must therefore be safe to rerun from the start.
#   integration/lab.sh [-m MEM_MB] [-c CPUS] [-k KERNEL_ARGS] [-o HOST_DIR] [-i systemd] -- command [args...]
# -i systemd (or $AGENTCGROUP_LAB_INIT) boots systemd as the guest's init and runs the
# command in a unit of its own: the host most Docker and Kubernetes nodes are.
# -o (or $AGENTCGROUP_LAB_RESULTS) makes HOST_DIR writable in the guest at the same path, for
# results the command must leave on the host (the rest of the host is read-only there).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGENTCGROUP_CACHE:-$root/.cache}
mem=4096 cpus=2 kargs=${AGENTCGROUP_LAB_KERNEL_ARGS:-} results=${AGENTCGROUP_LAB_RESULTS:-} init=${AGENTCGROUP_LAB_INIT:-}
while [ $# -gt 0 ]; do
	case $1 in
	-m) mem=$2; shift 2 ;;
	-c) cpus=$2; shift 2 ;;
	-k) kargs=$2; shift 2 ;;
	-o) results=$2; shift 2 ;;
	-i) init=$2; shift 2 ;;
	--) shift; break ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: $0 [-m MEM_MB] [-c CPUS] [-k KERNEL_ARGS] [-o HOST_DIR] [-i systemd] -- command..." >&2; exit 2; }
case $init in
'') ;;
systemd) kargs="$kargs agentcgroup.init=systemd" ;;
*) echo "lab: -i $init: the guest's init can only be systemd (or the default)" >&2; exit 2 ;;
esac

kernel=$(ls "$cache"/kernel/boot/vmlinuz-* 2>/dev/null | head -1)
[ -n "$kernel" ] || { echo "lab: no guest kernel in $cache/kernel; run integration/tools.sh" >&2; exit 1; }
kver=${kernel##*/vmlinuz-}
mods=$cache/kernel/lib/modules/$kver/kernel

# initramfs: busybox, the five modules, /init. Rebuilt when init changes.
initrd=$cache/lab/initramfs.cpio.gz
stamp=$(sha256sum "$root/integration/guest/init" "$kernel" | sha256sum | cut -c1-16)
if [ "$(cat "$cache/lab/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
	tmp=$(mktemp -d)
	mkdir -p "$tmp"/{bin,proc,sys,dev,modules} "$cache/lab"
	cp /bin/busybox "$tmp/bin/busybox"
	cp "$root/integration/guest/init" "$tmp/init"
	for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay; do
		xz -dc "$mods/$m.ko.xz" >"$tmp/modules/$(basename "$m").ko"
	done
	(cd "$tmp" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$initrd")
	rm -rf "$tmp"
	echo "$stamp" >"$cache/lab/initramfs.stamp"
fi

out=$(mktemp -d /tmp/agentcgroup-lab.XXXXXX)
trap 'rm -rf "$out"' EXIT
printf '%q ' "$@" >"$out/cmd"
pwd >"$out/cwd"
results_fs=()
if [ -n "$results" ]; then
	mkdir -p "$results"
	results=$(cd "$results" && pwd)
	echo "$results" >"$out/results"
	results_fs=(-virtfs "local,path=$results,mount_tag=results,security_model=none")
fi

for attempt in 1 2 3; do
	rm -f "$out/started" "$out/rc"
	qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem" \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 oops=panic agentcgroup.dir=$root $kargs" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs local,path="$out",mount_tag=out,security_model=none "${results_fs[@]}" \
		-display none -monitor none -serial stdio -no-reboot </dev/null || true
	[ -f "$out/rc" ] && exit "$(cat "$out/rc")"
	echo "lab: the guest kernel died before the command finished (attempt $attempt); booting again" >&2
done
echo "lab: the guest kernel died 3 times; giving up" >&2
exit 1
