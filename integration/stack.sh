# Sourced by demo.sh and replay.sh: a throwaway containerd 2.4 (with the
# agentcgroup shim and the runc shim on PATH) and a busybox rootfs with the
# agent simulator, both under $work, removed on exit. Sets $sock.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$root/bin:$root/.cache/tools/bin:$PATH
work=$(mktemp -d /tmp/agentcgroup.XXXXXX)
sock=$work/containerd.sock

# A rootfs with busybox is all the image an agent-like container needs here.
mkdir -p "$work/rootfs/bin" "$work/rootfs"/{proc,sys,dev,tmp,etc}
cp /bin/busybox "$work/rootfs/bin/"
for c in $(busybox --list); do [ "$c" = busybox ] || ln -s busybox "$work/rootfs/bin/$c"; done
cp "$root/bin/agentsim" "$work/rootfs/bin/"

cat >"$work/config.toml" <<TOML
version = 3
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
TOML
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
cpid=$!
trap 'kill $cpid 2>/dev/null; wait $cpid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
