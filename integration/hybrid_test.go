//go:build integration

package integration

import (
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// TestHybridHost runs on a host without cgroup v2 controllers (a v1 or
// hybrid host, like this project's dev and CI machines; `make integration`
// runs it there, outside the guest): the container runs exactly as under the
// runc shim, and the shim says why once in the log.
func TestHybridHost(t *testing.T) {
	if cgroupfs.HasController(cgroupfs.Root, "memory") {
		t.Fatal("this host has the cgroup v2 memory controller; TestHybridHost needs a v1 or hybrid host (make integration runs it only there)")
	}
	s := stacks()[1] // Debian's containerd 1.6 and runc 1.1, as packaged for such hosts
	d := getDaemon(t, s)
	var got []string
	for _, rt := range []runtime{d.runc(), d.agentcgroup()} {
		for i := 0; i < 2; i++ {
			r := d.ctr(t, runArgs(rt, false, newID("hybrid"), []string{"--rm"}, "/bin/sh", "-c", "echo out; exit 7")...)
			got = append(got, r.String())
		}
	}
	for _, g := range got[1:] {
		if g != got[0] {
			t.Errorf("runs differ: %q", got)
		}
	}
	if !strings.Contains(got[0], `exit 7, stdout "out\n"`) {
		t.Errorf("run under the runc shim: %s", got[0])
	}
	if n := strings.Count(d.log(), "agentcgroup features are off on this host"); n != 2 {
		t.Errorf("warning logged %d times for two containers (one shim each), want once per shim", n)
	}
}
