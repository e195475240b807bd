//go:build integration

package integration

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestContainerdRestart: containerd restarted while a container runs an
// exec'd and a forked tool call: the same shim carries on with its policy,
// containerd reconnects to it, and no record is lost.
func TestContainerdRestart(t *testing.T) {
	for _, s := range stacks() {
		t.Run(s.name, func(t *testing.T) {
			d, err := startDaemon(s)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(d.stop) // after the container's removal
			id := newID("restart")
			d.start(t, d.agentcgroup(), id, []string{"--annotation", "io.agentcgroup.tool.memory.max=64Mi"},
				"/bin/agentsim", "-delay", "0", "sleep 30")
			long := exec.Command(d.ctrBin, "--address", d.sock, "--namespace", namespace, "task", "exec", "--exec-id", "long", id, "/bin/sleep", "30")
			if err := long.Start(); err != nil {
				t.Fatal(err)
			}
			defer long.Wait() // its client loses containerd; the call goes on
			running := func(r toolcall.Record) bool { return r.State == toolcall.Running }
			var before []toolcall.Record
			eventually(t, "an exec'd and a forked call running", func() bool {
				before = ps(t, id)
				return count(before, running) == 2
			})
			shims := shimPids(id)
			if len(shims) != 1 {
				t.Fatalf("shims of %s: %v", id, shims)
			}

			d.restart(t)

			if st := d.status(t, id); st != "RUNNING" {
				t.Fatalf("container %s after containerd's restart", st)
			}
			if now := shimPids(id); !slices.Equal(now, shims) {
				t.Errorf("shims %v after the restart, were %v", now, shims)
			}
			after := ps(t, id)
			for _, r := range before {
				if find(after, r.ID) == nil {
					t.Errorf("record of %s (%v) lost in the restart", r.ID, r.Command)
				}
			}
			if r := d.ctr(t, "task", "exec", "--exec-id", "next", id, "/bin/cat", "/proc/self/cgroup"); !strings.Contains(r.stdout, "/tools/next") {
				t.Errorf("an exec after the restart: %v; want a tool call", r)
			}
			r := d.ctr(t, "task", "exec", "--exec-id", "big", id, "/bin/agentsim", "-alloc", "128")
			if r.code != 137 || !strings.Contains(r.stderr, "agentcgroup: tool call killed: out of memory at its own limit") {
				t.Errorf("a tool call past its limit after the restart: %v", r)
			}
			d.remove(id)
			assertGone(t, id)
		})
	}
}
