package bpf

// The generated detector_bpfel.{go,o} are committed, so a build needs no
// clang; CI fails when they are stale. Rebuild with Debian's clang 14:
//
//	go generate ./bpf/...
//
//go:generate go tool bpf2go -tags linux -target bpfel -type event -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" detector detector.c
