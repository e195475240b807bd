package tree

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/cgroupfs/cgrouptest"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

func TestPaths(t *testing.T) {
	tr := Of("/default/t1")
	at := At("/mnt/unified", "/default/t1")
	for _, c := range []struct{ name, got, want string }{
		{"Mount", tr.Mount, cgroupfs.Root},
		{"Group", tr.Group, "/default/t1"},
		{"Dir", tr.Dir, cgroupfs.Root + "/default/t1"},
		{"AgentDir", tr.AgentDir(), cgroupfs.Root + "/default/t1/agent"},
		{"CallGroup", tr.CallGroup("c1"), "/default/t1/tools/c1"},
		{"CallDir", tr.CallDir("c1"), cgroupfs.Root + "/default/t1/tools/c1"},
		{"At: Dir", at.Dir, "/mnt/unified/default/t1"},
		{"At: AgentDir", at.AgentDir(), "/mnt/unified/default/t1/agent"},
		{"At: CallGroup", at.CallGroup("c1"), "/default/t1/tools/c1"},
		{"At: CallDir", at.CallDir("c1"), "/mnt/unified/default/t1/tools/c1"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}

	// A call's group, its directory and the cgroup the OCI runtime wrapper
	// names (layout.CallCgroup, relative to C) are one cgroup.
	for _, group := range []string{"/default/t1", "/kubepods/burstable/pod1/c1", "/system.slice/cri-containerd-abc.scope"} {
		for _, tr := range []Tree{Of(group), At("/mnt/unified", group)} {
			for _, id := range []string{"c1", "exec-0123abcd"} {
				g := tr.CallGroup(id)
				if dir := filepath.Join(tr.Mount, g); tr.CallDir(id) != dir {
					t.Errorf("%s: CallDir(%q) = %q, the directory of CallGroup is %q", tr.Dir, id, tr.CallDir(id), dir)
				}
				if rel := path.Join(tr.Group, layout.CallCgroup(id)); g != rel {
					t.Errorf("%s: CallGroup(%q) = %q, layout.CallCgroup names %q", tr.Dir, id, g, rel)
				}
				if filepath.Dir(tr.CallDir(id)) != filepath.Join(tr.Dir, layout.Tools) {
					t.Errorf("%s: CallDir(%q) = %q is not in C/%s", tr.Dir, id, tr.CallDir(id), layout.Tools)
				}
			}
		}
	}
}

// newTree makes a throwaway cgroup C at the root of the cgroup2 hierarchy
// and returns its tree. Cleanup kills what is left in C and removes C and
// everything below it.
func newTree(t *testing.T) Tree {
	t.Helper()
	mount, dir := cgrouptest.Mount(t), cgrouptest.New(t, "agentcgroup-treetest-")
	tr := At(mount, "/"+filepath.Base(dir))
	if tr.Dir != dir {
		t.Fatalf("At(%q, %q).Dir = %q, want %q", mount, tr.Group, tr.Dir, dir)
	}
	return tr
}

func pid(cmd *exec.Cmd) uint32 { return uint32(cmd.Process.Pid) }

// procs reads the cgroup.procs of the cgroup at dir.
func procs(t *testing.T, dir string) []uint32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, uint32(n))
	}
	return out
}

// fields reads a cgroup file holding a space-separated list, sorted.
func fields(t *testing.T, dir, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	slices.Sort(f)
	return f
}

func TestCarve(t *testing.T) {
	tr := newTree(t)
	init := cgrouptest.Start(t, tr.Dir, nil, nil, "sleep", "600")
	if err := tr.Carve(pid(init)); err != nil {
		t.Fatal(err)
	}
	if got := procs(t, tr.Dir); len(got) != 0 {
		t.Errorf("C still holds %v", got)
	}
	if got := procs(t, tr.AgentDir()); !slices.Equal(got, []uint32{pid(init)}) {
		t.Errorf("C/agent holds %v, want init %d", got, pid(init))
	}
	tools := filepath.Join(tr.Dir, layout.Tools)
	if fi, err := os.Stat(tools); err != nil || !fi.IsDir() {
		t.Fatalf("C/tools: %v", err)
	}
	if got := procs(t, tools); len(got) != 0 {
		t.Errorf("C/tools holds %v", got)
	}

	// What C has of the delegated controllers is enabled in C and in
	// C/tools, so that every tool call has it; nothing else is.
	var want []string
	for _, c := range fields(t, tr.Dir, "cgroup.controllers") {
		if slices.Contains(delegated, c) {
			want = append(want, c)
		}
	}
	for _, dir := range []string{tr.Dir, tools} {
		if got := fields(t, dir, "cgroup.subtree_control"); !slices.Equal(got, want) {
			t.Errorf("%s/cgroup.subtree_control = %v, want %v", dir, got, want)
		}
	}
	for _, c := range want {
		if !tr.Has(c) {
			t.Errorf("Has(%q) = false, C has it", c)
		}
	}
	if tr.Has("no-such-controller") {
		t.Error(`Has("no-such-controller") = true`)
	}
}

func TestCarveNoSuchProcess(t *testing.T) {
	tr := newTree(t)
	err := tr.Carve(math.MaxInt32)
	if err == nil || !strings.Contains(err.Error(), "move init") {
		t.Errorf("Carve of no process: %v", err)
	}
}

// bogus are resources a cgroup cannot take: no page size is called so.
var bogus = &cgroup2.Resources{HugeTlb: &cgroup2.HugeTlb{{HugePageSize: "bogus", Limit: 1}}}

func TestCalls(t *testing.T) {
	tr := newTree(t)
	if _, err := tr.Calls(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Calls before Carve: %v", err)
	}
	if err := tr.Carve(pid(cgrouptest.Start(t, tr.Dir, nil, nil, "sleep", "600"))); err != nil {
		t.Fatal(err)
	}
	if calls, err := tr.Calls(); err != nil || len(calls) != 0 {
		t.Errorf("Calls of a new tree = %v, %v", calls, err)
	}
	for _, id := range []string{"b", "a"} {
		if err := tr.NewCall(id, &cgroup2.Resources{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.NewCall("a", &cgroup2.Resources{}); !errors.Is(err, os.ErrExist) {
		t.Errorf("NewCall of an id taken: %v, want os.ErrExist", err)
	}
	err := tr.NewCall("c", bogus)
	if err == nil || !strings.Contains(err.Error(), tr.CallDir("c")) {
		t.Errorf("NewCall with resources the cgroup cannot take: %v", err)
	}
	if _, err := os.Stat(tr.CallDir("c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed NewCall left %s: %v", tr.CallDir("c"), err)
	}
	// C/tools' own files (cgroup.procs...) are no calls.
	if calls, err := tr.Calls(); err != nil || !slices.Equal(calls, []string{"a", "b"}) {
		t.Errorf("Calls = %v, %v, want [a b]", calls, err)
	}

	if err := tr.Update(layout.Agent, &cgroup2.Resources{}); err != nil {
		t.Errorf("Update of C/agent: %v", err)
	}
	err = tr.Update(layout.CallCgroup("a"), bogus)
	if err == nil || !strings.Contains(err.Error(), tr.CallDir("a")) {
		t.Errorf("Update with resources the cgroup cannot take: %v", err)
	}

	tool := cgrouptest.Start(t, tr.AgentDir(), nil, nil, "sleep", "600")
	if err := tr.Move("a", pid(tool)); err != nil {
		t.Fatal(err)
	}
	if got := procs(t, tr.CallDir("a")); !slices.Equal(got, []uint32{pid(tool)}) {
		t.Errorf("call a holds %v, want %d", got, pid(tool))
	}
	if slices.Contains(procs(t, tr.AgentDir()), pid(tool)) {
		t.Errorf("%d is still in C/agent", pid(tool))
	}
	err = tr.Move("gone", pid(tool))
	if err == nil || !strings.Contains(err.Error(), tr.CallDir("gone")) {
		t.Errorf("Move into no call: %v", err)
	}

	if err := tr.RemoveCall("a"); err == nil {
		t.Error("RemoveCall of a call with a process succeeded")
	}
	for range 2 { // the second time, b is already gone
		if err := tr.RemoveCall("b"); err != nil {
			t.Errorf("RemoveCall(b): %v", err)
		}
	}
	if calls, err := tr.Calls(); err != nil || !slices.Equal(calls, []string{"a"}) {
		t.Errorf("Calls after RemoveCall(b) = %v, %v, want [a]", calls, err)
	}
}

func TestKillRemove(t *testing.T) {
	tr := newTree(t)
	init := cgrouptest.Start(t, tr.Dir, nil, nil, "sleep", "600")
	if err := tr.Carve(pid(init)); err != nil {
		t.Fatal(err)
	}
	if err := tr.NewCall("a", &cgroup2.Resources{}); err != nil {
		t.Fatal(err)
	}
	if err := tr.NewCall("b", &cgroup2.Resources{}); err != nil {
		t.Fatal(err)
	}
	tool := cgrouptest.Start(t, tr.CallDir("a"), nil, nil, "sleep", "600")
	if err := tr.Remove(); err == nil {
		t.Error("Remove of a tree with processes succeeded")
	}
	if _, err := os.Stat(tr.AgentDir()); err != nil {
		t.Errorf("a failed Remove removed C/agent: %v", err)
	}

	if err := tr.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, err := cgroupfs.Populated(tr.Dir); err != nil || p {
		t.Errorf("C populated after Kill: %v, %v", p, err)
	}
	for _, cmd := range []*exec.Cmd{init, tool} {
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("%s: %v, want killed", cmd, err)
		}
	}
	if err := tr.Kill(context.Background()); err != nil {
		t.Errorf("Kill of an empty tree: %v", err)
	}

	for range 2 { // the second time, there is nothing to remove
		if err := tr.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{layout.Agent, layout.Tools} {
		if _, err := os.Stat(filepath.Join(tr.Dir, sub)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("C/%s after Remove: %v", sub, err)
		}
	}
	if _, err := os.Stat(tr.Dir); err != nil {
		t.Errorf("Remove removed C, the runtime's: %v", err)
	}

	if err := At(tr.Mount, tr.Group+"/gone").Kill(context.Background()); err != nil {
		t.Errorf("Kill of a tree gone: %v", err)
	}
}

func TestMeasure(t *testing.T) {
	tr := newTree(t)
	if err := tr.Carve(pid(cgrouptest.Start(t, tr.Dir, nil, nil, "sleep", "600"))); err != nil {
		t.Fatal(err)
	}
	if err := tr.NewCall("a", &cgroup2.Resources{}); err != nil {
		t.Fatal(err)
	}
	m, err := tr.Measure(layout.CallCgroup("a"))
	if !tr.Has("memory") {
		// A hybrid host's unified hierarchy: no memory figures to read.
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Measure without the memory controller = %+v, %v", m, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if m.High != 0 || m.Max != 0 || m.OOM != 0 || m.OOMKills != 0 {
		t.Errorf("Measure of a call that ran nothing = %+v", m)
	}
}
