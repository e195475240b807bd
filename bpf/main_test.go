//go:build linux

package bpf

import (
	"os"
	"testing"

	"github.com/agentcgroup/agentcgroup/exechold/holdtest"
)

func TestMain(m *testing.M) {
	holdtest.Run() // the held agent of BenchmarkPlacement
	if os.Getenv("BPFTEST_PIN") != "" {
		killedShim() // TestSweep's
	}
	os.Exit(m.Run())
}
