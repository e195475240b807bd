//go:build linux

package bpf

import (
	"os"
	"testing"

	"github.com/agentcgroup/agentcgroup/exechold/holdtest"
)

// TestMain lets the test binary be a held agent: with HOLDTEST_SOCKET set it
// installs the exec hold's filter, as an OCI runtime does, and executes its
// arguments.
func TestMain(m *testing.M) {
	if socket := os.Getenv("HOLDTEST_SOCKET"); socket != "" {
		err := holdtest.Exec(socket, os.Args[1:], os.Environ())
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(111)
	}
	os.Exit(m.Run())
}
