//go:build linux

package bpf

import (
	"os"
	"testing"

	"github.com/agentcgroup/agentcgroup/exechold/holdtest"
)

func TestMain(m *testing.M) {
	holdtest.Run() // the held agent of BenchmarkPlacement
	os.Exit(m.Run())
}
