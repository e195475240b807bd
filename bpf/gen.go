package bpf

// The generated detector_bpfel.{go,o} are committed, so a build needs no
// clang; CI fails when they are stale. Rebuild with Debian's clang 14:
//
//	go generate ./bpf/...
//
// The program builds from headers/ alone (-nostdinc): libbpf's, vendored by
// headers/update.sh, and common.h for the few kernel definitions it uses.
// Nothing comes from the host's kernel headers, so the one bpfel object is
// the same built on amd64 or arm64 and serves both.
//
//go:generate go tool bpf2go -tags linux -target bpfel -type event -type forked -type tool -type call_cgroup -cflags "-O2 -g -Wall -Werror -nostdinc -I./headers" detector detector.c
