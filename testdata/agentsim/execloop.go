package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// missingExecs calls execve on a program that does not exist n times, as
// a hostile container's tight loop would: each call fails at once in the
// kernel, after the exec hold (if any) has served it.
func missingExecs(n int) {
	start := time.Now()
	for range n {
		if err := syscall.Exec("/nonexistent", []string{"/nonexistent"}, nil); err != syscall.ENOENT {
			fmt.Fprintln(os.Stderr, "agentsim: execve /nonexistent:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("agentsim: %d execve in %d us\n", n, time.Since(start).Microseconds())
}
