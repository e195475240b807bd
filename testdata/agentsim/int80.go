package main

import (
	"fmt"
	"os"
)

func int80Getpid() int32

// compat32 makes one 32-bit system call (int 0x80) and says what it
// returned: a seccomp filter that lists no 32-bit architecture kills the
// process with SIGSYS instead.
func compat32() {
	if got := int(int80Getpid()); got != os.Getpid() {
		fmt.Fprintf(os.Stderr, "agentsim: int 0x80 getpid returned %d, want %d\n", got, os.Getpid())
		os.Exit(1)
	}
	fmt.Println("int 0x80 getpid: ok")
}
