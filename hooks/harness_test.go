package hooks

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs/cgrouptest"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree"
)

// The container tests run on the host's real cgroup2 hierarchy (on a v1/v2
// hybrid host, its unified mount, which has no memory controller) with
// fakes for the detector, the governor, the hold and containerd's events:
// processes, cgroups, pidfds and inotify are real.

// testContainers numbers the test containers, for their cgroups' names.
var testContainers atomic.Uint64

// testContainer is a container under test and what it was given.
type testContainer struct {
	*Container
	t      *testing.T
	mount  string
	det    *fakeDetector
	gov    *fakeGovernor
	hold   *fakeHold
	pub    *fakePublisher
	init   *exec.Cmd
	initIn io.WriteCloser
}

type testOptions struct {
	policy policy.Policy
	hold   bool
	noDet  bool
	// init is the command init runs (default: sleep), with its stdin
	// from initIn; spec is init's argv as the OCI spec gives it.
	init, spec []string
}

// newTestContainer makes a cgroup C for a container under a pool cgroup of
// its own, starts its init (sleep) in C and creates the container.
func newTestContainer(t *testing.T, o testOptions) *testContainer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root")
	}
	mount := cgrouptest.Mount(t)
	pool := fmt.Sprintf("/agentcgroup-unit-%d-%d-%s", os.Getpid(), testContainers.Add(1), strings.NewReplacer("/", "-").Replace(t.Name()))
	group := pool + "/c"
	for _, d := range []string{pool, group} {
		if err := os.Mkdir(filepath.Join(mount, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := tree.At(mount, pool).Kill(context.Background()); err != nil {
			t.Errorf("kill what the test left: %v", err)
		}
		for _, d := range []string{group, pool} {
			if err := os.Remove(filepath.Join(mount, d)); err != nil && !os.IsNotExist(err) {
				t.Errorf("cgroup left behind: %v", err)
			}
		}
	})
	tc := &testContainer{t: t, mount: mount, gov: &fakeGovernor{}, pub: &fakePublisher{topics: make(chan string, 16)}}
	if o.policy.Priority == "" {
		o.policy = policy.Default()
	}
	env := Env{Governor: tc.gov, Publisher: tc.pub, StateRoot: t.TempDir(), CgroupMount: mount}
	if !o.noDet {
		tc.det = newFakeDetector()
		env.Detector = tc.det
	}
	if o.hold {
		tc.hold = &fakeHold{}
		env.Hold = tc.hold
	}
	if o.init == nil {
		o.init = []string{"sleep", "600"}
	}
	tc.init, tc.initIn = tc.startWithStdin(filepath.Join(mount, group), o.init...)
	dir := filepath.Join(env.StateRoot, "default", "c1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Create(context.Background(), dir, state.Container{ID: "c1", Init: o.spec}, uint32(tc.init.Process.Pid), o.policy, env)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	tc.Container = c
	t.Cleanup(func() {
		if err := c.Teardown(context.Background()); err != nil {
			t.Errorf("Teardown: %v", err)
		}
	})
	c.waitWatch()
	return tc
}

// start runs argv with its first instruction in the cgroup dir; its stderr
// is stderr (nil: none). The process is killed at the test's end.
func (tc *testContainer) start(dir string, stderr *os.File, argv ...string) *exec.Cmd {
	tc.t.Helper()
	var w io.Writer
	if stderr != nil {
		w = stderr
	}
	return cgrouptest.Start(tc.t, dir, nil, w, argv...)
}

// startWithStdin is start with a pipe to the process's stdin.
func (tc *testContainer) startWithStdin(dir string, argv ...string) (*exec.Cmd, io.WriteCloser) {
	tc.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tc.t.Fatal(err)
	}
	cmd := cgrouptest.Start(tc.t, dir, r, nil, argv...)
	r.Close()
	tc.t.Cleanup(func() { w.Close() })
	return cmd, w
}

// cgroupOf returns pid's cgroup relative to the cgroup2 mount.
// forkedCall starts argv in C/agent and has the detector report it as a
// call the agent forked; it returns the process once its call is placed,
// and the call's record.
func (tc *testContainer) forkedCall(t *testing.T, argv ...string) (*exec.Cmd, toolcall.Record) {
	t.Helper()
	p := tc.start(tc.tree.AgentDir(), nil, argv...)
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: uint32(p.Process.Pid), Args: argv, Forked: monotonicNow()})
	var rec toolcall.Record
	eventually(t, "the call placed", func() (ok bool) {
		rec, ok = tc.recordOfPid(p.Process.Pid)
		return ok
	})
	return p, rec
}

// startedNs is when p started, as the detector gives it (boot time, ns, to
// /proc's resolution).
func startedNs(t *testing.T, p *exec.Cmd) uint64 {
	t.Helper()
	ticks, err := startTime(uint32(p.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return ticks * (1e9 / userHZ)
}

func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "0::"); ok {
			return g
		}
	}
	t.Fatalf("pid %d has no cgroup2 line", pid)
	return ""
}

// record returns the record of call id.
func (tc *testContainer) record(id string) (toolcall.Record, bool) {
	tc.calls.mu.Lock()
	defer tc.calls.mu.Unlock()
	for _, cl := range tc.calls.order {
		if cl.ID() == id {
			return cl.Record(), true
		}
	}
	return toolcall.Record{}, false
}

// recordOfPid returns the record of the call whose leader is pid.
func (tc *testContainer) recordOfPid(pid int) (toolcall.Record, bool) {
	tc.calls.mu.Lock()
	defer tc.calls.mu.Unlock()
	for _, cl := range tc.calls.order {
		if r := cl.Record(); r.Pid == uint32(pid) {
			return r, true
		}
	}
	return toolcall.Record{}, false
}

// eventually fails the test unless cond holds within 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
