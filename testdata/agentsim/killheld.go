package main

import (
	"fmt"
	"os"
	"os/exec"
)

// killHeld starts n tool calls and kills each right after its fork, while
// its first execve is likely still held for placement, as an agent that
// cancels a tool call at once would.
func killHeld(n int) {
	for range n {
		cmd := exec.Command("/bin/true")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "agentsim:", err)
			os.Exit(2)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	fmt.Printf("killed %d calls at their start\n", n)
	_ = os.WriteFile("/tmp/killheld.done", nil, 0o644) // for the test to see
}
