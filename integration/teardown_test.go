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

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestShimKilled: a shim killed with SIGKILL at each of several points is
// cleaned up by containerd through `containerd-shim-agentcgroup-v1 delete`:
// nothing of the container stays (process, cgroup, state folder, socket,
// BPF program). Five points on each of the four stacks: during create,
// with an exec'd call running, while the agent forks calls as fast as it
// can (most kills land while an execve is held), with a forked call
// running, and during delete.
func TestShimKilled(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		// killShim kills the shim's server (not a start or delete action);
		// gone already is fine where the point may have ended it.
		killShim := func(t *testing.T, id string, mayBeGone bool) {
			t.Helper()
			var shims []int
			eventually(t, "the shim of "+id, func() bool { shims = shimServers(id); return len(shims) == 1 || mayBeGone })
			for _, pid := range shims {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !(mayBeGone && err == syscall.ESRCH) {
					t.Fatal(err)
				}
			}
		}
		points := []struct {
			name string
			// start starts the container and brings it to the point; the
			// shim is killed when it returns; after runs then.
			start     func(t *testing.T, id string)
			mayBeGone bool
		}{
			{name: "during create", start: func(t *testing.T, id string) {
				t.Cleanup(func() { d.remove(id) })
				run := exec.Command(d.ctrBin, append([]string{"--address", d.sock, "--namespace", namespace}, runArgs(d.agentcgroup(), true, id, nil, agentInit...)...)...)
				if err := run.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { run.Process.Kill(); run.Wait() })
				// The shim's Create has begun once its state folder exists.
				eventually(t, "the shim creating "+id, func() bool { return !isGone(filepath.Join("/run/agentcgroup", namespace, id)) })
			}},
			{name: "with an exec'd call running", start: func(t *testing.T, id string) {
				d.start(t, d.agentcgroup(), id, nil, agentInit...)
				tool := exec.Command(d.ctrBin, "--address", d.sock, "--namespace", namespace, "task", "exec", "--exec-id", "long-call", id, "/bin/sleep", "1000")
				if err := tool.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tool.Process.Kill(); tool.Wait() })
				eventually(t, "long-call running in its cgroup", func() bool {
					b, _ := os.ReadFile(filepath.Join(containerCgroup(id), "tools", "long-call", "cgroup.procs"))
					return len(strings.TrimSpace(string(b))) > 0
				})
			}},
			{name: "while execs are held", start: func(t *testing.T, id string) {
				d.start(t, d.agentcgroup(), id, nil, "/bin/agentsim", "-loop", "100000", "/bin/true")
				eventually(t, "calls being forked", func() bool {
					calls, _ := filepath.Glob(filepath.Join(containerCgroup(id), "tools", "fork-*"))
					return len(calls) > 2
				})
			}},
			{name: "with a forked call running", start: func(t *testing.T, id string) {
				d.start(t, d.agentcgroup(), id, nil, "/bin/agentsim", "-delay", "0", "sleep 1000")
				eventually(t, "the forked call running", func() bool {
					recs := ps(t, id)
					return count(recs, func(r toolcall.Record) bool { return r.Kind == toolcall.KindFork && r.State == toolcall.Running }) == 1
				})
			}},
			{name: "during delete", mayBeGone: true, start: func(t *testing.T, id string) {
				d.start(t, d.agentcgroup(), id, nil, agentInit...)
				init := d.pid(t, id)
				rm := exec.Command(d.ctrBin, "--address", d.sock, "--namespace", namespace, "task", "rm", "-f", id)
				if err := rm.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rm.Process.Kill(); rm.Wait() })
				// rm -f kills first, then deletes.
				eventually(t, "the container's init killed", func() bool { return syscall.Kill(init, 0) == syscall.ESRCH })
			}},
		}
		for _, p := range points {
			t.Run(p.name, func(t *testing.T) {
				id := newID("crash")
				p.start(t, id)
				killShim(t, id, p.mayBeGone)
				eventually(t, "no process of the container left", func() bool { return cgroupEmpty(containerCgroup(id)) })
				d.remove(id)
				assertGone(t, id)
				eventually(t, "no detector program of the killed shim loaded", func() bool { return detectorPrograms(t) == 0 })
				if sets := pinnedDetectors(t); len(sets) != 0 {
					t.Errorf("detector sets still pinned: %v", sets)
				}
				for i := 0; len(shimSockets(d)) != 0; i++ {
					if i == 200 {
						t.Fatalf("shim sockets left: %v; the daemon's log about %s:\n%s", shimSockets(d), id, logAbout(d.log(), id))
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
	})
}

// logAbout is the lines of a daemon's log that name id, or a shim.
func logAbout(log, id string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, id) || strings.Contains(l, "shim") {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-40):], "\n")
}

// shimServers are the shim server processes of container id: shimPids but
// the short-lived start and delete actions.
func shimServers(id string) []int {
	return shimProcs(func(args []string) bool {
		a := args[len(args)-1]
		return servesID(args, id) && a != "start" && a != "delete"
	})
}

// cgroupEmpty: the cgroup has no process below it, or is gone.
func cgroupEmpty(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	return err != nil || strings.Contains(string(b), "populated 0")
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

// pinnedDetectors lists the shared detector's pinned sets.
func pinnedDetectors(t testing.TB) []string {
	entries, err := os.ReadDir(bpf.PinRoot)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
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
