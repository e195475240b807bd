//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShimKilled: a shim killed with SIGKILL while the agent and a tool call
// run is cleaned up by containerd through `containerd-shim-agentcgroup-v1
// delete`; nothing of the container stays.
func TestShimKilled(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("crash")
		d.start(t, d.agentcgroup(), id, nil, agentInit...)
		init := d.pid(t, id)
		tool := exec.Command(d.ctrBin, "--address", d.sock, "--namespace", namespace, "task", "exec", "--exec-id", "long-call", id, "/bin/sleep", "1000")
		if err := tool.Start(); err != nil {
			t.Fatal(err)
		}
		defer tool.Wait()
		eventually(t, "long-call running in its cgroup", func() bool {
			b, _ := os.ReadFile(filepath.Join(containerCgroup(id), "tools", "long-call", "cgroup.procs"))
			return len(strings.TrimSpace(string(b))) > 0
		})
		shims := shimPids(id)
		if len(shims) != 1 {
			t.Fatalf("shim processes for %s: %v", id, shims)
		}
		if err := syscall.Kill(shims[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, "container processes killed", func() bool {
			return syscall.Kill(init, 0) == syscall.ESRCH
		})
		d.remove(id)
		assertGone(t, id)
		eventually(t, "no detector program of the killed shim loaded", func() bool { return detectorPrograms(t) == 0 })
		for i := 0; i < 100 && len(shimSockets(d)) > 0; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if left := shimSockets(d); len(left) > 0 {
			t.Errorf("sockets left: %v", left)
			for _, l := range strings.Split(d.log(), "\n") {
				if strings.Contains(l, id) || strings.Contains(l, "agentcgroup") {
					t.Log(l)
				}
			}
		}
	})
}

// shimSockets lists the shim sockets left in the daemon's and the default socket folders.
func shimSockets(d *daemon) []string {
	var out []string
	for _, dir := range []string{"/run/containerd/s", filepath.Join(d.dir, "state", "s")} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// TestBadInput: a bad annotation or config fails creation with an error
// naming the key, the value and what is allowed; nothing is left behind.
func TestBadInput(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		config := func(name, body string) string {
			path := filepath.Join(d.dir, name)
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return path
		}
		badCfg := config("bad.toml", "BinaryNmae = \"crun\"\n")
		badPolicy := config("bad-policy.toml", "[Policy]\ntool.pids.max = 2\n")
		strict := config("strict.toml", "AllowedAnnotations = [\"io.agentcgroup.detect\"]\n")
		for _, tc := range []struct {
			extra []string
			want  []string
		}{
			{[]string{"--annotation", "io.agentcgroup.tool.memory.max=12X"}, []string{"io.agentcgroup.tool.memory.max", `"12X"`, "allowed", "512Mi"}},
			{[]string{"--annotation", "io.agentcgroup.priority=urgent"}, []string{"io.agentcgroup.priority", `"urgent"`, "high, normal, low"}},
			{[]string{"--annotation", "io.agentcgroup.tool.stall-timeout=soon"}, []string{"io.agentcgroup.tool.stall-timeout", `"soon"`, "Go duration"}},
			{[]string{"--annotation", "io.agentcgroup.tools.memory.max=1G"}, []string{"io.agentcgroup.tools.memory.max", "known keys"}},
			{[]string{"--annotation", "io.agentcgroup.agent.memory.low=some"}, []string{"io.agentcgroup.agent.memory.low", `"some"`, "Mi"}},
			{[]string{"--annotation", "io.agentcgroup.tool.pids.max=0"}, []string{"io.agentcgroup.tool.pids.max", `"0"`, "at least 8"}},
			{[]string{"--runtime-config-path", badCfg}, []string{"BinaryNmae", "unknown key"}},
			{[]string{"--runtime-config-path", badPolicy}, []string{"config Policy key io.agentcgroup.tool.pids.max", `"2"`, "at least 8"}},
			{[]string{"--runtime-config-path", strict, "--annotation", "io.agentcgroup.priority=high"},
				[]string{"io.agentcgroup.priority", "not honoured", "AllowedAnnotations: io.agentcgroup.detect"}},
		} {
			id := newID("bad")
			args := append([]string{"run", "--runtime", "io.containerd.agentcgroup.v1", "--env", "PATH=/bin"}, tc.extra...)
			r := d.ctr(t, append(args, "--rootfs", rootfs, id, "/bin/true")...)
			if r.code == 0 {
				t.Errorf("%v: create succeeded", tc.extra)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%v: error %q does not name %q", tc.extra, r.stderr, w)
				}
			}
			d.run(nil, "container", "rm", id)
			assertGone(t, id)
		}
	})
}

// TestDeleteRunningRefused: deleting a running task is refused as under the
// runc shim, and the tree stays whole until the task is stopped.
func TestDeleteRunningRefused(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("busy")
		d.start(t, d.agentcgroup(), id, nil, agentInit...)
		if r := d.ctr(t, "task", "rm", id); r.code == 0 {
			t.Fatalf("deleting a running task succeeded: %v", r)
		}
		if _, err := os.Stat(filepath.Join(containerCgroup(id), "agent")); err != nil {
			t.Errorf("C/agent gone after a refused delete: %v", err)
		}
		if s := d.status(t, id); s != "RUNNING" {
			t.Errorf("task %s after a refused delete", s)
		}
		d.remove(id)
		assertGone(t, id)
	})
}

// detectorPrograms counts the detector's programs loaded in the kernel.
func detectorPrograms(t testing.TB) int {
	out, err := exec.Command("bpftool", "prog", "show").Output()
	if err != nil {
		t.Fatalf("bpftool prog show: %v", err)
	}
	n := 0
	for _, name := range []string{"on_fork", "on_exec", "on_exit"} {
		n += strings.Count(string(out), " name "+name+" ")
	}
	return n
}
