package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// monotonicNow is now on the detector's clock.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// TestCreateAndTeardown: Create moves init into C/agent, saves the state,
// watches C/agent, keeps spare call cgroups registered with the detector and
// hands the container to the governor; Teardown kills init and leaves
// nothing of the tree, the watch or the governor.
func TestCreateAndTeardown(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	if got, want := cgroupOf(t, tc.init.Process.Pid), tc.st.Cgroup+"/agent"; got != want {
		t.Errorf("init in %s, want %s", got, want)
	}
	st, err := state.Load(tc.dir)
	if err != nil || st.Cgroup != tc.st.Cgroup || st.Pool != path.Dir(tc.st.Cgroup) {
		t.Errorf("state %+v, %v; want cgroup %s in its parent's pool", st, err, tc.st.Cgroup)
	}
	agentID, err := cgroupfs.ID(tc.tree.AgentDir())
	tc.det.mu.Lock()
	watched := tc.det.agent
	tc.det.mu.Unlock()
	if err != nil || watched != agentID {
		t.Errorf("detector watches cgroup %d, want C/agent's %d (%v)", watched, agentID, err)
	}
	eventually(t, "two spare cgroups", func() bool {
		n, _, _ := tc.det.snapshot()
		return n == spares && exists(tc.tree.CallDir("fork-1")) && exists(tc.tree.CallDir("fork-2"))
	})
	if tc.gov.scope.Container != tc.st.Cgroup || tc.gov.cb == nil {
		t.Errorf("governor scope %+v", tc.gov.scope)
	}

	if err := tc.Teardown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tc.init.Wait(); err == nil {
		t.Error("init still ran after teardown")
	}
	if exists(tc.tree.AgentDir()) || exists(filepath.Dir(tc.tree.CallDir("x"))) {
		t.Error("agent or tools cgroup left after teardown")
	}
	n, _, _ := tc.det.snapshot()
	tc.det.mu.Lock()
	stillWatched := tc.det.events != nil
	tc.det.mu.Unlock()
	tc.gov.mu.Lock()
	stopped := tc.gov.stopped
	tc.gov.mu.Unlock()
	if n != 0 || stillWatched || !stopped {
		t.Errorf("after teardown: %d call cgroups registered, watched %v, governor stopped %v", n, stillWatched, stopped)
	}
}

// TestCreateWithoutDetection: a detector whose watch fails leaves exec'd
// calls only; a governor that refuses leaves the kernel's limits.
func TestCreateWithoutDetection(t *testing.T) {
	tc := newTestContainer(t, testOptions{noDet: true})
	if tc.detector != nil || len(tc.spare) != 0 {
		t.Errorf("no detector given, yet one watches (%d spares)", len(tc.spare))
	}
	if err := tc.PrepareExec(context.Background(), "e1", []string{"true"}, nil); err != nil {
		t.Fatal(err)
	}
	tc.AbortExec(context.Background(), "e1")
	if exists(tc.tree.CallDir("e1")) {
		t.Error("aborted exec's cgroup left")
	}
}

// TestExecCall: an exec'd call starts in its own cgroup, is watched by the
// governor, and ends with its exit status once its cgroup empties; the
// cgroup is removed.
func TestExecCall(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	ctx := context.Background()
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if err := tc.PrepareExec(ctx, bad, nil, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("exec id %q: %v, want invalid argument", bad, err)
		}
	}
	eventually(t, "a spare", func() bool { return exists(tc.tree.CallDir("fork-1")) })
	if err := tc.PrepareExec(ctx, "fork-1", nil, nil); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("exec id of a spare: %v, want already exists", err)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	if err := tc.PrepareExec(ctx, "e1", []string{"sh", "-c", "exit 3"}, w); err != nil {
		t.Fatal(err)
	}
	cmd := tc.start(tc.tree.CallDir("e1"), nil, "sh", "-c", "exit 3")
	tc.StartedExec(ctx, "e1", uint32(cmd.Process.Pid), waitCmd(cmd))
	if !tc.gov.isWatched("e1") {
		t.Error("exec'd call not handed to the governor")
	}
	eventually(t, "the exec's record ended", func() bool {
		rec, ok := tc.record("e1")
		return ok && rec.State.Ended()
	})
	rec, _ := tc.record("e1")
	if rec.ExitCode == nil || *rec.ExitCode != 3 || rec.Kind != toolcall.KindExec || rec.Reason != "" {
		t.Errorf("record %+v", rec)
	}
	if exists(tc.tree.CallDir("e1")) || tc.gov.isWatched("e1") {
		t.Error("ended call's cgroup or governor watch left")
	}
	if b, _ := io.ReadAll(r); len(b) != 0 { // its stderr was closed, with nothing said
		t.Errorf("the agent was told %q of a call that exited", b)
	}
}

// waitCmd is the WaitFunc of a started command.
func waitCmd(cmd *exec.Cmd) WaitFunc {
	return func(ctx context.Context) (uint32, time.Time, error) {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return uint32(ee.ExitCode()), time.Now(), nil
		}
		return 0, time.Now(), err
	}
}

// TestForkCallUnheld: without the hold, a detected call's leader is moved
// from C/agent into a call cgroup, named, offered to the governor's
// admission, and ended with the status of its exit event.
func TestForkCallUnheld(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	p := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	pid := uint32(p.Process.Pid)
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Filename: "/bin/sleep", Args: []string{"sleep", "600"}, Forked: monotonicNow(), Unplaced: true})
	eventually(t, "the call placed and named", func() bool {
		rec, ok := tc.recordOfPid(int(pid))
		return ok && len(rec.Command) == 2
	})
	rec, _ := tc.recordOfPid(int(pid))
	if got := cgroupOf(t, int(pid)); got != rec.Cgroup || !strings.HasPrefix(rec.ID, forkPrefix) || !rec.StartedUnplaced {
		t.Errorf("leader in %s; record %+v", got, rec)
	}
	tc.gov.mu.Lock()
	atStart := tc.gov.atStart
	tc.gov.mu.Unlock()
	if len(atStart) != 1 {
		t.Errorf("admission asked for %v", atStart)
	}
	// A child it forked before it was moved follows it.
	child := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Child, Pid: uint32(child.Process.Pid), Leader: pid})
	eventually(t, "the child moved", func() bool { return cgroupOf(t, child.Process.Pid) == rec.Cgroup })
	// A Child event of an unknown leader moves nothing.
	other := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Child, Pid: uint32(other.Process.Pid), Leader: 1})

	// The kernel reports the exit before the leader is gone.
	tc.det.send(bpf.Event{Kind: bpf.Exit, Pid: pid, ExitStatus: int32(syscall.SIGKILL)})
	_ = child.Process.Kill()
	_ = child.Wait()
	_ = p.Process.Kill()
	_ = p.Wait()
	eventually(t, "the call ended", func() bool {
		r, _ := tc.record(rec.ID)
		return r.State.Ended()
	})
	rec, _ = tc.record(rec.ID)
	if rec.ExitCode == nil || *rec.ExitCode != 137 {
		t.Errorf("exit code %v, want 137", rec.ExitCode)
	}
	if got := cgroupOf(t, other.Process.Pid); got != tc.st.Cgroup+"/agent" {
		t.Errorf("a child of no call moved to %s", got)
	}
	eventually(t, "the call's cgroup removed", func() bool { return !exists(tc.tree.CallDir(rec.ID)) })
}

// TestForkCallExitFlushed: a leader gone before its exit event was handled
// waits for the detector's flush, which brings the exit and its status.
func TestForkCallExitFlushed(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	p := tc.start(tc.tree.AgentDir(), nil, "sh", "-c", "sleep 0.3; exit 7")
	pid := uint32(p.Process.Pid)
	tc.det.mu.Lock()
	tc.det.onFlush = func(n uint64) {
		tc.det.send(bpf.Event{Kind: bpf.Exit, Pid: pid, ExitStatus: 7 << 8})
		tc.det.send(bpf.Event{Kind: bpf.Flushed, Flushes: n})
	}
	tc.det.mu.Unlock()
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: []string{"sh", "-c", "sleep 0.3; exit 7"}, Forked: monotonicNow()})
	eventually(t, "the call ended", func() bool {
		r, ok := tc.recordOfPid(int(pid))
		return ok && r.State.Ended()
	})
	_ = p.Wait()
	r, _ := tc.recordOfPid(int(pid))
	if r.ExitCode == nil || *r.ExitCode != 7 {
		t.Errorf("exit code %v, want 7", r.ExitCode)
	}
	if _, _, forgot := tc.det.snapshot(); len(forgot) != 0 {
		t.Errorf("a leader whose exit was seen was forgotten: %v", forgot)
	}
}

// TestForkCallExitUnseen: a leader gone whose exit the flush does not bring
// (killed while held) ends its call as killed, tells its stderr's end, and
// is dropped from the detector.
func TestForkCallExitUnseen(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	p := tc.start(tc.tree.AgentDir(), nil, "sleep", "0.3")
	pid := uint32(p.Process.Pid)
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: []string{"sleep"}, Forked: monotonicNow()})
	eventually(t, "the call ended", func() bool {
		r, ok := tc.recordOfPid(int(pid))
		return ok && r.State.Ended()
	})
	_ = p.Wait()
	eventually(t, "the leader forgotten", func() bool {
		_, _, forgot := tc.det.snapshot()
		return len(forgot) == 1 && forgot[0] == pid
	})
}

// TestHeldPlacement: a held execve of a fresh child of C/agent is placed
// before it runs and claimed; the same call's next execve, an exec's
// process and the agent's own execve are left alone; a process in C/agent
// the detector does not have is placed too (fail closed); the Tool event
// that follows names the placed call rather than placing again.
func TestHeldPlacement(t *testing.T) {
	tc := newTestContainer(t, testOptions{hold: true})
	p := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	pid := uint32(p.Process.Pid)
	tc.det.mu.Lock()
	tc.det.pending[pid] = bpf.Fork{At: monotonicNow()}
	tc.det.mu.Unlock()

	if payer := tc.hold.held(&exechold.Request{Pid: pid, Exec: true}); payer != exechold.Call {
		t.Errorf("an exec's held execve charged to %v, want the calls' budget", payer)
	}
	if _, ok := tc.recordOfPid(int(pid)); ok {
		t.Fatal("an exec's held execve was placed")
	}
	if payer := tc.hold.held(&exechold.Request{Pid: pid}); payer != exechold.Agent {
		t.Errorf("the agent's spawn charged to %v, want the agent's budget", payer)
	}
	tc.mu.Lock()
	fc := tc.forks[pid]
	tc.mu.Unlock()
	if fc == nil || cgroupOf(t, int(pid)) != fc.Cgroup() {
		t.Fatal("held call not placed before its execve went on")
	}
	rec := fc.Record()
	if _, claimed, _ := tc.det.snapshot(); len(claimed) != 1 || claimed[0] != pid {
		t.Errorf("claimed %v, want [%d]", claimed, pid)
	}
	tc.det.mu.Lock()
	tc.det.pending[pid] = bpf.Fork{At: monotonicNow()} // as if pending again: still the same call
	tc.det.mu.Unlock()
	if payer := tc.hold.held(&exechold.Request{Pid: pid}); payer != exechold.Call {
		t.Errorf("a placed call's next execve charged to %v, want the calls' budget", payer)
	}
	tc.hold.held(&exechold.Request{Pid: uint32(tc.init.Process.Pid)})
	if got := cgroupOf(t, tc.init.Process.Pid); got != tc.st.Cgroup+"/agent" {
		t.Errorf("the agent's own execve moved it to %s", got)
	}
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: []string{"sleep", "600"}, Forked: monotonicNow()})
	eventually(t, "the placed call named", func() bool {
		r, _ := tc.record(rec.ID)
		return len(r.Command) == 2
	})
	tc.calls.mu.Lock()
	n := len(tc.calls.order)
	tc.calls.mu.Unlock()
	if n != 1 {
		t.Errorf("%d calls recorded, want 1", n)
	}
	stranger := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.hold.held(&exechold.Request{Pid: uint32(stranger.Process.Pid)})
	eventually(t, "a process the detector missed placed as a call", func() bool {
		r, ok := tc.recordOfPid(stranger.Process.Pid)
		return ok && cgroupOf(t, stranger.Process.Pid) == r.Cgroup
	})
}

// TestEscape: a process reported as cloned out of its call's cgroup into
// C/agent is killed (what it holds there stays charged there once moved);
// one elsewhere (here out of the container, named by its start time) goes
// back into its call; one of no running call is killed.
func TestEscape(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	leader, rec := tc.forkedCall(t, "sleep", "600")
	cg, err := cgroupfs.ID(tc.tree.CallDir(rec.ID))
	if err != nil {
		t.Fatal(err)
	}
	inAgent := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Escape, Pid: uint32(inAgent.Process.Pid), Start: startedNs(t, inAgent), Leader: uint32(leader.Process.Pid), Call: cg})
	wantKilled(t, inAgent, "the escapee into C/agent")
	child := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Child, Pid: uint32(child.Process.Pid), Start: startedNs(t, child), Leader: 0, Call: cg})
	wantKilled(t, child, "the escapee's child in C/agent")

	// Out of the container (a host cgroupfs mounted inside).
	far := tc.start(filepath.Join(tc.mount, path.Dir(tc.st.Cgroup)), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Escape, Pid: uint32(far.Process.Pid), Start: startedNs(t, far), Leader: uint32(leader.Process.Pid), Call: cg})
	eventually(t, "the escapee out of the container back in its call", func() bool { return cgroupOf(t, far.Process.Pid) == rec.Cgroup })

	orphan := tc.start(filepath.Join(tc.mount, path.Dir(tc.st.Cgroup)), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Escape, Pid: uint32(orphan.Process.Pid), Start: startedNs(t, orphan), Leader: 1, Call: cg + 1000})
	wantKilled(t, orphan, "the escapee of no running call")
}

// TestPidReused: an event whose pid names another process by the time it
// is handled (the start time differs) is not acted on: no call placed,
// nothing moved or killed. The reuse is simulated by the event's start.
func TestPidReused(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	other := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	pid := uint32(other.Process.Pid)
	earlier := startedNs(t, other) - 1e9/userHZ
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Start: earlier, Args: []string{"sleep", "600"}, Forked: monotonicNow()})
	tc.det.send(bpf.Event{Kind: bpf.Escape, Pid: pid, Start: earlier, Leader: 1, Call: 1})
	leader := tc.start(tc.tree.AgentDir(), nil, "sleep", "601")
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: uint32(leader.Process.Pid), Start: startedNs(t, leader), Args: []string{"sleep", "601"}, Forked: monotonicNow()})
	eventually(t, "the call whose start matches placed", func() bool {
		_, ok := tc.recordOfPid(leader.Process.Pid)
		return ok
	})
	if _, ok := tc.recordOfPid(int(pid)); ok {
		t.Error("a reused pid placed as a call")
	}
	if got, want := cgroupOf(t, int(pid)), path.Join(tc.st.Cgroup, "agent"); got != want {
		t.Errorf("the process behind a reused pid moved to %s", got)
	}
	if err := unix.Kill(int(pid), 0); err != nil {
		t.Errorf("the process behind a reused pid: %v", err)
	}
}

// TestRescan: once the detector has lost events, what they would have
// reported is found in C/agent: a call's process not moved goes into its
// call, a leader whose exec was not seen is placed, an escapee dies, and
// the agent's own processes stay.
func TestRescan(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	leader, rec := tc.forkedCall(t, "sleep", "600")
	child := tc.start(tc.tree.AgentDir(), nil, "sleep", "601")
	unseen := tc.start(tc.tree.AgentDir(), nil, "sleep", "602")
	fresh := tc.start(tc.tree.AgentDir(), nil, "sleep", "603")
	tc.det.mu.Lock()
	tc.det.members[uint32(child.Process.Pid)] = bpf.Member{Leader: uint32(leader.Process.Pid)}
	tc.det.members[uint32(unseen.Process.Pid)] = bpf.Member{Leader: uint32(unseen.Process.Pid)}
	escapee := tc.start(tc.tree.AgentDir(), nil, "sleep", "604")
	tc.det.members[uint32(escapee.Process.Pid)] = bpf.Member{Call: 12345}
	tc.det.mu.Unlock()
	tc.det.send(bpf.Event{Kind: bpf.Lost, Dropped: 3})
	wantKilled(t, escapee, "an escapee found in C/agent")
	eventually(t, "the call's child in its call", func() bool { return cgroupOf(t, child.Process.Pid) == rec.Cgroup })
	eventually(t, "the unseen call placed", func() bool {
		r, ok := tc.recordOfPid(unseen.Process.Pid)
		return ok && cgroupOf(t, unseen.Process.Pid) == r.Cgroup && strings.Join(r.Command, " ") == "sleep 602"
	})
	if got, want := cgroupOf(t, fresh.Process.Pid), path.Join(tc.st.Cgroup, "agent"); got != want {
		t.Errorf("a fresh child of the agent moved to %s, want it left in %s", got, want)
	}
}

// TestHeldEscapeeChild: a held execve by an escapee's child, still in
// C/agent, is not let run there: the child dies.
func TestHeldEscapeeChild(t *testing.T) {
	tc := newTestContainer(t, testOptions{hold: true})
	child := tc.start(tc.tree.AgentDir(), nil, "sleep", "601")
	tc.det.mu.Lock()
	tc.det.members[uint32(child.Process.Pid)] = bpf.Member{Call: 12345}
	tc.det.mu.Unlock()
	if payer := tc.hold.held(&exechold.Request{Pid: uint32(child.Process.Pid)}); payer != exechold.Call {
		t.Errorf("the escapee's child's execve charged to %v, want the calls' budget", payer)
	}
	wantKilled(t, child, "the escapee's child")
	if r, ok := tc.recordOfPid(child.Process.Pid); ok {
		t.Errorf("the escapee's child made a call of its own: %+v", r)
	}
}

// wantKilled fails the test unless p ends by SIGKILL within 10 s.
func wantKilled(t *testing.T, p *exec.Cmd, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("%s ended with %v, want SIGKILL", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not killed within 10 s", what)
	}
}

// TestGoverned: what the governor does to a call is published as an event
// and, for an OOM kill, told on the call's stderr.
func TestGoverned(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	ctx := context.Background()
	r, w, _ := os.Pipe()
	defer r.Close()
	if err := tc.PrepareExec(ctx, "e1", []string{"sleep"}, w); err != nil {
		t.Fatal(err)
	}
	cmd := tc.start(tc.tree.CallDir("e1"), nil, "sleep", "600")
	tc.StartedExec(ctx, "e1", uint32(cmd.Process.Pid), waitCmd(cmd))
	tc.mu.Lock()
	cl := tc.live["e1"].Call
	tc.mu.Unlock()
	for a, topic := range map[governor.Action]string{governor.Froze: topicFrozen, governor.Thawed: topicThawed} {
		tc.gov.cb(cl, a, "memory pressure on the pool")
		select {
		case got := <-tc.pub.topics:
			if got != topic {
				t.Errorf("action %v published %s, want %s", a, got, topic)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("action %v published nothing", a)
		}
	}
	tc.gov.cb(cl, governor.Killing, "stalled")
	_ = cmd.Process.Kill()
	eventually(t, "the call ended", func() bool {
		rec, _ := tc.record("e1")
		return rec.State.Ended()
	})
	if b, _ := io.ReadAll(r); len(b) != 0 {
		t.Errorf("told %q of a call killed with no reason", b)
	}
}

// TestPlaceAfterTeardown: no call is placed once the teardown has begun.
func TestPlaceAfterTeardown(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	p := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.placeMu.Lock()
	tc.closing = true
	tc.placeMu.Unlock()
	if fc := tc.place(context.Background(), proc{pid: uint32(p.Process.Pid)}, monotonicNow(), toolcall.KindFork); fc != nil {
		t.Errorf("placed %s after teardown began", fc.ID())
	}
	tc.placeMu.Lock()
	tc.closing = false
	tc.placeMu.Unlock()
	// A process already gone returns its cgroup to the spares.
	_ = p.Process.Kill()
	_ = p.Wait()
	if fc := tc.place(context.Background(), proc{pid: uint32(p.Process.Pid)}, monotonicNow(), toolcall.KindFork); fc != nil {
		t.Errorf("placed a process that is gone as %s", fc.ID())
	}
	tc.placeMu.Lock()
	n := len(tc.spare)
	tc.placeMu.Unlock()
	if n != spares {
		t.Errorf("%d spares after a placement of a gone process, want %d", n, spares)
	}
}

// TestContainerOOMUnreadable: where C's memory.events cannot be read, an
// OOM the runc shim saw is the container's, as under the runc shim.
func TestContainerOOMUnreadable(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	if !tc.ContainerOOM(context.Background()) {
		t.Error("an unreadable memory.events hid the container's OOM")
	}
	if err := tc.Resize(context.Background()); err == nil || !strings.Contains(err.Error(), "memory.max") {
		t.Errorf("Resize without memory.max: %v", err)
	}
}

// TestCleanup: after a shim is gone, Cleanup kills and removes what its
// state folder names; a container with no state folder has nothing.
func TestCleanup(t *testing.T) {
	if err := Cleanup(context.Background(), filepath.Join(t.TempDir(), "none")); err != nil {
		t.Errorf("no state folder: %v", err)
	}
}

// TestKillReason: the line a killed call's agent reads names what was
// killed (a tool call, a session shell), the limit it met and its peak, and
// says the agent was not touched.
func TestKillReason(t *testing.T) {
	c := &Container{policy: testPolicy(t)}
	c.limits.Store(&limits{containerMax: 1 << 30})
	called := func(kind, doomed string) *call {
		cl := &call{Call: toolcall.New(toolcall.Record{ID: "c", Kind: kind})}
		if doomed != "" {
			cl.Doom(doomed)
		}
		return cl
	}
	for _, tc := range []struct {
		kind, doomed string
		m            toolcall.Measures
		want         string
	}{
		{toolcall.KindFork, "", toolcall.Measures{}, ""},
		{toolcall.KindFork, "", toolcall.Measures{OOM: 1, OOMKills: 1, Peak: 512 << 20}, "tool call killed: out of memory at its own limit memory.max=512.0 MiB (peak 512.0 MiB)"},
		{toolcall.KindExec, "", toolcall.Measures{OOMKills: 1, Peak: 100 << 20}, "out of memory at the container's limit memory.max=1024.0 MiB (peak 100.0 MiB)"},
		{toolcall.KindFork, "stalled frozen for 30s", toolcall.Measures{Peak: 1 << 20}, "tool call killed: stalled frozen for 30s (peak 1.0 MiB)"},
		{toolcall.KindSession, "", toolcall.Measures{OOM: 1, OOMKills: 1, Peak: 512 << 20}, "session shell killed: out of memory at its own limit memory.max=512.0 MiB"},
	} {
		got := c.killReason(called(tc.kind, tc.doomed), tc.m)
		if !strings.Contains(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("killReason(%s %q, %+v) = %q, want it to say %q", tc.kind, tc.doomed, tc.m, got, tc.want)
		}
		if got != "" && !strings.HasSuffix(got, "the agent was not touched") {
			t.Errorf("%q does not say the agent was not touched", got)
		}
	}
	c.limits.Store(&limits{containerMax: cgroupfs.Unlimited})
	if got := c.killReason(called(toolcall.KindFork, ""), toolcall.Measures{OOMKills: 1}); !strings.Contains(got, "above the container") {
		t.Errorf("OOM above an unlimited container: %q", got)
	}
}

// testPolicy is the default policy with a tool-call memory.max of 512 MiB.
func testPolicy(t *testing.T) policy.Policy {
	t.Helper()
	p := policy.Default()
	p.ToolMemoryMax = policy.Limit{Bytes: 512 << 20}
	return p
}

// TestPidOutsideContainer: a pid from an event that names a process outside
// the container (reused, or never the container's) is neither placed,
// moved nor killed.
func TestPidOutsideContainer(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	pool := path.Dir(tc.st.Cgroup)
	outside := tc.start(filepath.Join(tc.mount, pool), nil, "sleep", "600")
	pid := uint32(outside.Process.Pid)
	tc.det.send(bpf.Event{Kind: bpf.Escape, Pid: pid, Leader: 1})
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: []string{"sleep", "600"}, Forked: monotonicNow()})
	leader := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: uint32(leader.Process.Pid), Args: []string{"sleep", "600"}, Forked: monotonicNow()})
	eventually(t, "the container's own call placed", func() bool {
		_, ok := tc.recordOfPid(leader.Process.Pid)
		return ok
	})
	tc.det.send(bpf.Event{Kind: bpf.Child, Pid: pid, Leader: uint32(leader.Process.Pid)})
	time.Sleep(100 * time.Millisecond) // the handler is in order: the events above are handled
	if _, ok := tc.recordOfPid(int(pid)); ok {
		t.Error("a process outside the container placed as its call")
	}
	if got := cgroupOf(t, int(pid)); got != pool {
		t.Errorf("a process outside the container moved to %s", got)
	}
	if err := unix.Kill(int(pid), 0); err != nil {
		t.Errorf("a process outside the container was killed: %v", err)
	}
}

// TestDetectorFull: a Full event is counted, and logged at powers of ten.
func TestDetectorFull(t *testing.T) {
	for n, want := range map[uint64]bool{1: true, 2: false, 10: true, 11: false, 100: true, 1000: true, 1001: false} {
		if got := n == 1 || isPowerOf10(n); got != want {
			t.Errorf("logged at %d: %v, want %v", n, got, want)
		}
	}
	tc := newTestContainer(t, testOptions{})
	for range 3 {
		tc.det.send(bpf.Event{Kind: bpf.Full, Pid: 1})
	}
	eventually(t, "three Full events counted", func() bool { return tc.fullCount.Load() == 3 })
}

// TestMaxCalls: a container at its bound of watched call cgroups gets no
// more (the detector's calls map is the host's), and says so.
func TestMaxCalls(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	tc.mu.Lock()
	for i := len(tc.callCgroups); i < bpf.MaxCalls; i++ {
		tc.callCgroups[fmt.Sprint("fake-", i)] = uint64(1<<40 + i)
	}
	tc.mu.Unlock()
	if err := tc.PrepareExec(context.Background(), "e1", nil, nil); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("exec past the bound: %v, want resource exhausted", err)
	}
	if exists(tc.tree.CallDir("e1")) {
		t.Error("a refused exec left its cgroup")
	}
	// A forked call that no cgroup can hold is killed, not left in C/agent.
	eventually(t, "the spares made", func() bool { tc.placeMu.Lock(); defer tc.placeMu.Unlock(); return len(tc.spare) == spares })
	tc.placeMu.Lock()
	tc.spare = nil // used up
	tc.placeMu.Unlock()
	p := tc.start(tc.tree.AgentDir(), nil, "sleep", "600")
	tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: uint32(p.Process.Pid), Args: []string{"sleep", "600"}, Forked: monotonicNow()})
	wantKilled(t, p, "the call that no cgroup could hold")
}

// TestFullCommand: a call whose argv the exec event cut (agents wrap
// commands in long preambles) is recorded with the whole of it, read from
// /proc, clipped to maxCommand bytes: its start and its end, where the
// model's command is.
func TestFullCommand(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	long, last := strings.Repeat("x", 300), strings.Repeat("y", 2*maxCommand)+"the command"
	for _, tt := range []struct {
		name string
		argv []string
		want func([]string) bool
	}{
		{"long", []string{"sh", "-c", "sleep 600; :", long}, func(got []string) bool {
			return len(got) == 4 && got[3] == long
		}},
		{"too long", []string{"sh", "-c", "sleep 600; :", last}, func(got []string) bool {
			n := 0
			for _, a := range got {
				n += len(a) + 1
			}
			return n <= maxCommand+8 && got[0] == "sh" && strings.HasSuffix(got[len(got)-1], "the command")
		}},
	} {
		p := tc.start(tc.tree.AgentDir(), nil, tt.argv...) // sh stays: its argv does
		cut := append(append([]string{}, tt.argv[:3]...), tt.argv[3][:200])
		tc.det.send(bpf.Event{Kind: bpf.Tool, Pid: uint32(p.Process.Pid), Args: cut, ArgsCut: true, Forked: monotonicNow()})
		var rec toolcall.Record
		eventually(t, tt.name+": the call recorded", func() (ok bool) {
			rec, ok = tc.recordOfPid(p.Process.Pid)
			return ok && len(rec.Command) > 0 && len(rec.Command[len(rec.Command)-1]) > 200
		})
		if !tt.want(rec.Command) {
			t.Errorf("%s: recorded %d words, %q ... %q", tt.name, len(rec.Command), shortWord(rec.Command[0]), shortWord(rec.Command[len(rec.Command)-1]))
		}
	}
}

func shortWord(s string) string {
	if len(s) > 40 {
		return s[:20] + "..." + s[len(s)-20:]
	}
	return s
}
