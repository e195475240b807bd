#!/usr/bin/env bash
# Refreshes the libbpf headers in bpf/ from the libbpf-dev package named
# below, with its copyright file. The versions are pinned, so that a rerun
# changes nothing; to move to another libbpf, change LIBBPF_DEB (a version
# the configured apt sources still have: apt-cache policy libbpf-dev),
# rerun, then go generate ./bpf/... and commit both. common.h is written
# by hand.
set -euo pipefail

LIBBPF_DEB=1:1.1.2-0+deb12u1 # Debian 12: libbpf 1.1.2

headers=(
	bpf_core_read.h
	bpf_helper_defs.h
	bpf_helpers.h
	bpf_tracing.h
)

cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# As root, apt downloads as _apt, which cannot write to the private $tmp.
(cd "$tmp" && apt-get -q -o APT::Sandbox::User="$(id -un)" download "libbpf-dev=$LIBBPF_DEB")
dpkg-deb -x "$tmp"/libbpf-dev_*.deb "$tmp/root"
for h in "${headers[@]}"; do
	install -m 0644 "$tmp/root/usr/include/bpf/$h" bpf/
done
install -m 0644 "$tmp/root/usr/share/doc/libbpf-dev/copyright" bpf/copyright
