package main

import (
	"fmt"
	"os"
	"syscall"
)

// idleDone is the file idleChildren creates once its children are forked.
const idleDone = "/tmp/idle.done"

// idleStack and idleMask are cloneIdle's: a stack its children never use,
// and the signal mask they block (SIGKILL and SIGSTOP stay).
var (
	idleStack [64]byte
	idleMask  = ^uint64(0)
)

func cloneIdle() int64

// idleChildren forks n children that never execute a program and wait
// until killed, as an agent's idle helpers or a fork bomb typed into its
// own process would, then creates idleDone. Each is a bare clone that
// shares this process's memory (cloneIdle), about 50 KiB of the kernel's.
func idleChildren(n int) {
	for i := range n {
		if pid := cloneIdle(); pid < 0 {
			fmt.Fprintf(os.Stderr, "agentsim: fork %d: %v\n", i, syscall.Errno(-pid))
			os.Exit(2)
		}
	}
	if err := os.WriteFile(idleDone, nil, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "agentsim:", err)
		os.Exit(2)
	}
	fmt.Printf("agentsim: %d idle children\n", n)
}
