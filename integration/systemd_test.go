//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdDriver: the systemd cgroup driver under a real systemd as init,
// which most Kubernetes nodes and Docker hosts use (`make integration` runs
// it in a second lab guest booted with systemd). ctr with a
// slice:prefix:name cgroups path and no option (the shim infers the
// driver), as against the runc shim with --runc-systemd-cgroup; Docker with
// native.cgroupdriver=systemd; the CRI with SystemdCgroup = true on
// containerd 2.4 and 1.7. Each container's tree is carved inside the scope
// runc had systemd make (Delegate=yes), systemd leaves it alone across a
// daemon-reload, and teardown leaves no unit and no cgroup.
func TestSystemdDriver(t *testing.T) {
	if b, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(b)) != "systemd" {
		t.Fatalf("init here is %q, not systemd: `make integration` runs this test in the lab guest booted with systemd (AGENTCGROUP_LAB_INIT=systemd integration/run.sh)", strings.TrimSpace(string(b)))
	}
	t.Run("ctr", func(t *testing.T) { testSystemdCtr(t, getDaemon(t, stacks()[0])) })
	t.Run("Docker", func(t *testing.T) { testDocker(t, true) })
	for _, s := range stacks() {
		if s.name == "containerd-2.4+runc-1.5" || s.name == "containerd-1.7+runc-1.5" {
			t.Run("CRI/"+s.name, func(t *testing.T) { testCRI(t, s, true) })
		}
	}
}

func testSystemdCtr(t *testing.T, d *daemon) {
	// The same cases under both runtimes: ctr lets only the runc shim be
	// told the driver; agentcgroup infers it from the path.
	transcript := func(rt runtime, prefix string) (string, []string) {
		id := newID(prefix)
		extra := []string{"--cgroup", "system.slice:" + prefix + ":" + id,
			"--annotation", "io.agentcgroup.tool.memory.max=64Mi", "--memory-limit", "536870912"}
		d.start(t, rt, id, extra, agentInit...)
		var out []string
		for _, c := range [][]string{
			{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"},
			{"/bin/sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo started"},
			{"/bin/sh", "-c", "kill -9 $$"},
		} {
			r := d.ctr(t, append([]string{"task", "exec", "--exec-id", newID("call"), id}, c...)...)
			out = append(out, r.String())
		}
		return id, out
	}
	runc := d.runc()
	runc.args = append(runc.args, "--runc-systemd-cgroup")
	_, want := transcript(runc, "runc")
	id, got := transcript(d.agentcgroup(), "agentcgroup")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("agentcgroup differs from the runc shim under the systemd driver:\n got  %q\n want %q", got, want)
	}

	unit := "agentcgroup-" + id + ".scope"
	scope := filepath.Join("/sys/fs/cgroup/system.slice", unit)
	if _, err := os.Stat(filepath.Join(scope, "agent")); err != nil {
		t.Fatalf("C/agent in the container's scope: %v", err)
	}
	if v := systemctl(t, "show", "-p", "Delegate", "--value", unit); v != "yes" {
		t.Errorf("%s Delegate=%s, want yes", unit, v)
	}
	// systemd re-applies what it owns on a reload; the delegated tree it
	// leaves alone: calls are still placed, and still bounded (below).
	systemctl(t, "daemon-reload")
	r := d.ctr(t, "task", "exec", "--exec-id", "after-reload", id, "/bin/cat", "/proc/self/cgroup")
	if !strings.Contains(r.stdout, "/tools/after-reload") {
		t.Errorf("a tool call after daemon-reload: %v; want its own cgroup", r)
	}
	if ctrls := readTrim(t, filepath.Join(scope, "cgroup.subtree_control")); !strings.Contains(ctrls, "memory") {
		t.Errorf("the scope's subtree_control after daemon-reload: %q", ctrls)
	}
	r = d.ctr(t, "task", "exec", "--exec-id", "big", id, "/bin/agentsim", "-alloc", "128")
	if r.code != 137 || !strings.Contains(r.stderr, "agentcgroup: tool call killed: out of memory at its own limit memory.max=64.0 MiB") {
		t.Errorf("a tool call past its limit: %v", r)
	}
	if st := d.status(t, id); st != "RUNNING" {
		t.Errorf("container %s after its tool call's OOM", st)
	}
	d.remove(id)
	assertGone(t, id)
	if !isGone(scope) {
		t.Errorf("%s left behind", scope)
	}
	assertNoUnit(t, unit)
}

// systemctl runs systemctl and returns its trimmed output.
func systemctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("systemctl", args...).Output()
	if err != nil {
		t.Fatalf("systemctl %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// assertNoUnit: systemd knows no unit of that name any more, failed or not.
func assertNoUnit(t *testing.T, unit string) {
	t.Helper()
	eventually(t, "no unit "+unit, func() bool {
		out, _ := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", unit).Output()
		return strings.TrimSpace(string(out)) == ""
	})
}

// isGone reports whether path does not exist.
func isGone(path string) bool {
	_, err := os.Stat(path)
	return os.IsNotExist(err)
}
