//go:build linux

package bpf

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/cgroupfs/cgrouptest"
	"github.com/agentcgroup/agentcgroup/exechold/holdtest"
)

// agentCgroup makes a throwaway cgroup to play the agent cgroup.
func agentCgroup(t *testing.T) (string, uint64) {
	dir, err := os.MkdirTemp(cgrouptest.Mount(t), "agentcgroup-bpftest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	id, err := cgroupfs.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, id
}

// watchedAgent makes a throwaway agent cgroup that d watches until the test
// ends, its events on the returned channel.
func watchedAgent(t *testing.T, d *Detector) (string, uint64, chan Event) {
	t.Helper()
	dir, id := agentCgroup(t)
	ch := make(chan Event, 64)
	if err := d.Watch(id, ch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Unwatch(id) })
	return dir, id, ch
}

// ownCgroupID is the ID of the test process's own cgroup v2.
func ownCgroupID(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var self string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			self = p
		}
	}
	id, err := cgroupfs.ID(cgrouptest.Mount(t) + self)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// runIn runs a shell script as a process created directly in dir.
func runIn(t testing.TB, dir, script string) { runHeld(t, dir, script, "") }

// runHeld runs a shell script in the cgroup dir; with a hold socket, under
// the exec hold's filter.
func runHeld(t testing.TB, dir, script, hold string) {
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("/bin/sh", "-c", script)
	if hold != "" {
		cmd = holdtest.Command(hold, "/bin/sh", "-c", script)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("agent script: %v: %s", err, out)
	}
}

func load(t *testing.T) *Detector {
	if os.Geteuid() != 0 {
		t.Fatal("loading BPF programs needs root (make test runs as root)")
	}
	d, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// collect reads events until none arrives for a while.
func collect(ch <-chan Event) []Event {
	var out []Event
	for {
		select {
		case ev := <-ch:
			out = append(out, ev)
		case <-time.After(500 * time.Millisecond):
			return out
		}
	}
}

func TestDetector(t *testing.T) {
	d := load(t)
	dir, id := agentCgroup(t)
	_, otherID := agentCgroup(t)
	ch, otherCh := make(chan Event, 64), make(chan Event, 64)
	if err := d.Watch(id, ch); err != nil {
		t.Fatal(err)
	}
	if err := d.Watch(otherID, otherCh); err != nil {
		t.Fatal(err)
	}

	// The agent: four tool calls (one forked by a subshell that itself only
	// forks, so is no call), the last forking a child and killed by a signal.
	runIn(t, dir, `/bin/true; /bin/sh -c 'exit 3'; ( /bin/true ); /bin/sh -c '/bin/sleep 0; kill -9 $$'; exit 0`)
	// Outside every watched cgroup: nothing is reported.
	if err := exec.Command("/bin/sh", "-c", "/bin/true; /bin/true").Run(); err != nil {
		t.Fatal(err)
	}
	evs := collect(ch)

	type call struct {
		file string
		code uint32
		exit bool
	}
	calls := map[uint32]*call{}
	var order []uint32
	var children []Event
	for _, ev := range evs {
		if ev.AgentCgroup != id {
			t.Errorf("event for another cgroup: %+v", ev)
		}
		switch ev.Kind {
		case Tool:
			calls[ev.Pid] = &call{file: ev.Filename + " " + strings.Join(ev.Args, " ")}
			order = append(order, ev.Pid)
		case Exit:
			c := calls[ev.Pid]
			if c == nil {
				t.Fatalf("exit of an unknown call: %+v", ev)
			}
			c.code, c.exit = ev.ExitCode(), true
		case Child:
			children = append(children, ev)
		}
	}
	var got []string
	for _, pid := range order {
		c := calls[pid]
		got = append(got, c.file+":"+map[bool]string{true: "exited", false: "running"}[c.exit]+":"+strconv.FormatUint(uint64(c.code), 10))
	}
	want := []string{"/bin/true /bin/true:exited:0", "/bin/sh /bin/sh -c exit 3:exited:3", "/bin/true /bin/true:exited:0",
		"/bin/sh /bin/sh -c /bin/sleep 0; kill -9 $$:exited:137"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tool calls = %v, want %v", got, want)
	}
	// Nothing moves processes here, so the last call's sleep was forked
	// while its parent was still in the agent cgroup: it belongs to that call.
	if len(children) != 1 || len(order) != 4 || children[0].Leader != order[3] || children[0].Pid == order[3] {
		t.Errorf("child events %+v, want one of call %v", children, order)
	}
	if evs := collect(otherCh); len(evs) != 0 {
		t.Errorf("an idle watched cgroup got events: %+v", evs)
	}
	if n, err := d.Dropped(id); err != nil || n != 0 {
		t.Errorf("dropped = %d, %v", n, err)
	}

	// Unwatched: nothing more.
	d.Unwatch(id)
	if n := watched(d); n != 1 {
		t.Errorf("%d cgroups watched after one of two was unwatched", n)
	}
	runIn(t, dir, `/bin/true`)
	if evs := collect(ch); len(evs) != 0 {
		t.Errorf("events after Unwatch: %+v", evs)
	}
	d.Unwatch(otherID)
	if n := watched(d); n != 0 {
		t.Errorf("%d cgroups watched after the last was unwatched", n)
	}
}

// TestFlush: a Flushed event comes after every event the kernel wrote
// before the Flush, also those still in the ring buffer then, and covers
// that Flush's number; an idle watcher sends one too, and Flush calls made
// while one is on its way are covered by a later one.
func TestFlush(t *testing.T) {
	d := load(t)
	dir, id := agentCgroup(t)
	ch := make(chan Event) // not read while the agent runs: its events wait in the ring
	if err := d.Watch(id, ch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Unwatch(id) })
	runIn(t, dir, `/bin/true; /bin/true; /bin/true; exit 0`)
	for round, flushes := range []int{1, 1, 3} {
		var n uint64
		for range flushes {
			var err error
			if n, err = d.Flush(id); err != nil {
				t.Fatal(err)
			}
		}
		exits := 0
	read:
		for {
			select {
			case ev := <-ch:
				if ev.Kind == Flushed && ev.Flushes >= n {
					break read
				}
				if ev.Kind == Exit {
					exits++
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: no Flushed event covering flush %d", round, n)
			}
		}
		if want := []int{3, 0, 0}[round]; exits != want {
			t.Errorf("round %d: %d exit events before Flushed, want %d", round, exits, want)
		}
	}
	if _, err := d.Flush(12345); !errors.Is(err, ErrNotWatched) {
		t.Errorf("Flush of an unwatched cgroup: %v, want ErrNotWatched", err)
	}
}

// TestSlowWatcher: a container that does not take its events fills only its
// own ring buffer: another container's events still arrive, and the lost
// ones are counted for the slow container alone.
func TestSlowWatcher(t *testing.T) {
	d := load(t)
	slowDir, slowID := agentCgroup(t)
	dir, id := agentCgroup(t)
	slow, ch := make(chan Event), make(chan Event, 64) // slow is never read
	for w, c := range map[uint64]chan Event{slowID: slow, id: ch} {
		if err := d.Watch(w, c); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Unwatch(w) })
	}
	// 2,000 events of 432 bytes: more than a 256 KiB ring holds.
	runIn(t, slowDir, `i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done`)
	runIn(t, dir, `/bin/true`)
	if evs := collect(ch); len(evs) != 2 {
		t.Fatalf("a slow watcher's neighbour got %d events, want 2: %+v", len(evs), evs)
	}
	if n, err := d.Dropped(slowID); err != nil || n == 0 {
		t.Errorf("the slow watcher's lost events: %d, %v; want some counted", n, err)
	}
	if n, err := d.Dropped(id); err != nil || n != 0 {
		t.Errorf("its neighbour lost %d events (%v), want none", n, err)
	}
	// Told, once it reads again, so that it can look for what they said.
	deadline := time.After(5 * dropCheck)
	for lost := false; !lost; {
		select {
		case ev := <-slow:
			lost = ev.Kind == Lost && ev.AgentCgroup == slowID && ev.Dropped > 0
		case <-deadline:
			t.Fatal("the slow watcher was not told of its lost events")
		}
	}
	for _, ev := range collect(ch) {
		if ev.Kind == Lost {
			t.Errorf("its neighbour told of lost events: %+v", ev)
		}
	}
}

func watched(d *Detector) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.watches)
}

// TestEscape: a process in a watched tool call's cgroup that clones a child
// into another cgroup (clone3 CLONE_INTO_CGROUP) is reported; its plain
// forks are not. One cloned into the agent cgroup is the call's for the
// kernel: what it forks there is the call's Child. The test process plays
// the tool call.
func TestEscape(t *testing.T) {
	d := load(t)
	dir, agentID, ch := watchedAgent(t, d)
	selfID := ownCgroupID(t)
	if err := d.AddCall(selfID, agentID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.RemoveCall(selfID) })

	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Fatal(err)
	}
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	// The escapee forks at once, before user space could move it.
	cmd := exec.Command("/bin/sh", "-c", "/bin/sleep 0.5 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	escapee := uint32(cmd.Process.Pid)
	m, ok := d.Member(escapee, agentID)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if want := (Member{Call: selfID}); !ok || m != want {
		t.Errorf("the escapee is the detector's member %+v (%v), want %+v", m, ok, want)
	}
	// This process's cgroup is shared: other test binaries that clone
	// children into cgroups of their own (go test runs packages side by
	// side) are reported too. Only this process's forks count, and the
	// escapee's, the only process in the agent cgroup.
	var escapes, children []Event
	for _, ev := range collect(ch) {
		switch {
		case ev.Kind == Escape && ev.Leader == uint32(os.Getpid()):
			escapes = append(escapes, ev)
		case ev.Kind == Child:
			children = append(children, ev)
		}
	}
	if len(escapes) != 1 || escapes[0].Pid != escapee || escapes[0].AgentCgroup != agentID || escapes[0].Call != selfID {
		t.Errorf("escapes %+v, want one of %d by %d from call %d", escapes, escapee, os.Getpid(), selfID)
	}
	if len(children) != 1 || children[0].Leader != 0 || children[0].Call != selfID {
		t.Errorf("children %+v, want the escapee's one, of call %d", children, selfID)
	}
}

// TestRearmedSession: a process user space keeps with the agent as a session
// is no call's: what it forks is pending (each a call of its own, not its
// CHILD), and the program it is replaced by is reported again.
func TestRearmedSession(t *testing.T) {
	d := load(t)
	dir, id := agentCgroup(t)
	ch := make(chan Event, 64)
	if err := d.Watch(id, ch); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runIn(t, dir, `/bin/sh -c 'read x <`+fifo+`; /bin/true; exec /bin/echo replaced' >/dev/null`)
	}()
	var session uint32
	select {
	case ev := <-ch:
		if ev.Kind != Tool {
			t.Fatalf("first event %+v, want the session's exec", ev)
		}
		session = ev.Pid
	case <-time.After(10 * time.Second):
		t.Fatal("no event for the session's exec")
	}
	if err := d.Rearm(session, id); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fifo, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	<-done
	var child, replaced bool
	for _, ev := range collect(ch) {
		switch {
		case ev.Kind == Child && ev.Leader == session:
			t.Errorf("a session's fork reported as its call's child: %+v", ev)
		case ev.Kind == Tool && ev.Pid != session && strings.HasSuffix(ev.Filename, "true"):
			child = ev.Parent == session && !ev.Session
		case ev.Kind == Tool && ev.Pid == session && strings.HasSuffix(ev.Filename, "echo"):
			replaced = ev.Session
		case ev.Kind == Exit && ev.Pid == session:
			t.Errorf("a session's exit reported as a call's: %+v", ev)
		}
	}
	if !child || !replaced {
		t.Errorf("the session's command seen as a call forked by it: %v; the program replacing it seen as the session's: %v", child, replaced)
	}
}

// TestQuota: a container whose agent forks more idle children than its
// share of the detector's maps holds loses only its own detection, and is
// told (Full); another container's calls are all detected meanwhile, and
// the first's again once its children are gone.
func TestQuota(t *testing.T) {
	quota := Quota
	Quota = 16
	t.Cleanup(func() { Quota = quota })
	d := load(t)
	dirA, idA := agentCgroup(t)
	dirB, idB := agentCgroup(t)
	chA, chB := make(chan Event, 256), make(chan Event, 64)
	for id, ch := range map[uint64]chan Event{idA: chA, idB: chB} {
		if err := d.Watch(id, ch); err != nil {
			t.Fatal(err)
		}
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// 40 subshells that wait on the fifo and never execute a program.
		runIn(t, dirA, `i=0; while [ $i -lt 40 ]; do (read x <`+fifo+`) & i=$((i+1)); done; wait`)
	}()
	var full int
	for deadline := time.After(10 * time.Second); full < 40-16; {
		select {
		case ev := <-chA:
			if ev.Kind == Full {
				full++
			}
		case <-deadline:
			t.Fatalf("%d Full events for 40 idle children over a quota of 16, want 24", full)
		}
	}
	runIn(t, dirB, `/bin/true; /bin/true; exit 0`)
	if n := countTools(collect(chB)); n != 2 {
		t.Errorf("the other container's calls: %d of 2 detected while the first was over its quota", n)
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	<-done
	collect(chA)
	runIn(t, dirA, `/bin/true; exit 0`)
	if n := countTools(collect(chA)); n != 1 {
		t.Errorf("once its children are gone, the first container's call: %d of 1 detected", n)
	}
}

func countTools(evs []Event) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == Tool {
			n++
		}
	}
	return n
}

// TestLeaderExitsFirst: a tool call whose main thread ends before its other
// threads (pthread_exit) has not exited: its Exit comes with its last
// thread, with the status that thread's exit_group gave.
func TestLeaderExitsFirst(t *testing.T) {
	d := load(t)
	dir, _, ch := watchedAgent(t, d)
	src := filepath.Join(t.TempDir(), "leader.c")
	bin := strings.TrimSuffix(src, ".c")
	prog := `#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *run(void *arg) { usleep(500000); exit(3); }
int main(void) { pthread_t t; pthread_create(&t, 0, run, 0); pthread_exit(0); }
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-pthread", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v: %s", err, out)
	}
	start := time.Now()
	runIn(t, dir, bin+"; echo $? >/dev/null")
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Fatalf("the program ended in %v, before its thread's exit", took)
	}
	var tools, exits []Event
	for _, ev := range collect(ch) {
		switch ev.Kind {
		case Tool:
			tools = append(tools, ev)
		case Exit:
			exits = append(exits, ev)
		}
	}
	if len(tools) != 1 || len(exits) != 1 || exits[0].Pid != tools[0].Pid || exits[0].ExitCode() != 3 {
		t.Errorf("tools %+v, exits %+v; want one call that exited 3", tools, exits)
	}
}

// TestSessionCgroup: a session's cgroup is watched as the agent cgroup is:
// what the session forks and executes is a tool call of the agent's
// container, started unplaced; the session's own end is reported.
func TestSessionCgroup(t *testing.T) {
	d := load(t)
	_, agentID, ch := watchedAgent(t, d)
	sessionDir, sessionID := agentCgroup(t)
	if err := d.AddSession(sessionID, agentID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.RemoveCall(sessionID) })
	fd, err := os.Open(sessionDir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	session := exec.Command("/bin/sh", "-c", "read go; /bin/true; exit 5")
	session.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	in, err := session.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(session.Process.Pid)
	if err := d.Rearm(pid, agentID); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("go\n"))
	in.Close()
	if err := session.Wait(); err == nil {
		t.Fatal("the session exited 0, want 5")
	}
	var tools, exits []Event
	for _, ev := range collect(ch) {
		switch ev.Kind {
		case Tool:
			tools = append(tools, ev)
		case Exit:
			exits = append(exits, ev)
		}
	}
	if len(tools) != 1 || tools[0].Filename != "/bin/true" || tools[0].AgentCgroup != agentID || !tools[0].Unplaced {
		t.Errorf("tools %+v, want /bin/true of the agent's container, unplaced", tools)
	}
	var sessionExit bool
	for _, ev := range exits {
		sessionExit = sessionExit || ev.Pid == pid && ev.ExitCode() == 5
	}
	if !sessionExit {
		t.Errorf("exits %+v, want the session's, 5", exits)
	}
}

// TestSessionEscape: a process in a session's cgroup that clones a child
// into another cgroup is reported as an escape of the session's, as a
// call's process would be. The test process plays the session.
func TestSessionEscape(t *testing.T) {
	d := load(t)
	dir, agentID, ch := watchedAgent(t, d)
	selfID := ownCgroupID(t)
	if err := d.AddSession(selfID, agentID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.RemoveCall(selfID) })
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	var escapes []Event
	for _, ev := range collect(ch) {
		if ev.Kind == Escape && ev.Leader == uint32(os.Getpid()) {
			escapes = append(escapes, ev)
		}
	}
	if len(escapes) != 1 || escapes[0].Pid != uint32(cmd.Process.Pid) || escapes[0].Call != selfID {
		t.Errorf("escapes %+v, want one of %d from the session's cgroup %d", escapes, cmd.Process.Pid, selfID)
	}
}
