package main

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// idleDone is the file idleChildren creates once its children are forked.
const idleDone = "/tmp/idle.done"

// idleChildren forks n children that never execute a program and wait
// until killed, as an agent's idle helpers or a fork bomb typed into its
// own process would, then creates idleDone. Each child is a bare clone of
// this process that blocks in ppoll with raw system calls alone: no Go
// runtime runs in it, so each costs the kernel's task and a few pages.
func idleChildren(n int) {
	for i := range n {
		pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
		if errno != 0 {
			fmt.Fprintf(os.Stderr, "agentsim: fork %d: %v\n", i, errno)
			os.Exit(2)
		}
		if pid == 0 {
			for {
				syscall.RawSyscall6(unix.SYS_PPOLL, 0, 0, 0, 0, 0, 0)
			}
		}
	}
	if err := os.WriteFile(idleDone, nil, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "agentsim:", err)
		os.Exit(2)
	}
	fmt.Printf("agentsim: %d idle children\n", n)
}
