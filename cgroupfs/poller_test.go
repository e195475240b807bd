package cgroupfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs/cgrouptest"
)

// The Poller watches kernfs files, which only a real cgroup2 hierarchy has:
// these tests make throwaway cgroups in it, as root.

// A trigger any root may arm: windows under 2s need CAP_SYS_RESOURCE,
// which root in a container may lack.
const trigStall, trigWindow = 100 * time.Millisecond, 2 * time.Second

// realCgroup makes a throwaway cgroup; Cleanup kills what is left in it and
// removes it, unless the test has.
func realCgroup(t *testing.T) string {
	t.Helper()
	return cgrouptest.New(t, "agentcgroup-pollertest-")
}

// stop kills and reaps a process started by runIn.
func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// openFDs counts the test process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// reports runs Wait until it fails, on a goroutine of its own: each report
// goes to the first channel, then Wait's error to the second.
func reports(p *Poller) (<-chan []any, <-chan error) {
	keys, done := make(chan []any), make(chan error, 1)
	go func() {
		for {
			k, err := p.Wait()
			if err != nil {
				done <- err
				return
			}
			keys <- k
		}
	}()
	return keys, done
}

// expect waits for reports until every key of want came, failing on any
// other key.
func expect(t *testing.T, keys <-chan []any, want ...any) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case got := <-keys:
			for _, k := range got {
				i := slices.Index(want, k)
				if i < 0 {
					t.Errorf("reported %v, want %v", k, want)
					continue
				}
				want = slices.Delete(want, i, i+1)
			}
		case <-timeout:
			t.Fatalf("%v not reported", want)
		}
	}
}

// quiet fails on any report within d.
func quiet(t *testing.T, keys <-chan []any, d time.Duration) {
	t.Helper()
	select {
	case got := <-keys:
		t.Errorf("unexpected report of %v", got)
	case <-time.After(d):
	}
}

// closePoller closes p and checks that the Wait running in reports ends;
// reports not taken yet are dropped.
func closePoller(t *testing.T, p *Poller, keys <-chan []any, done <-chan error) {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case <-keys:
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Wait after Close: %v", err)
			}
			return
		case <-timeout:
			t.Fatal("Wait did not return after Close")
		}
	}
}

// TestPollerFile: a file is reported each time the kernel notifies its
// change, and only its key; nothing is reported without a change.
func TestPollerFile(t *testing.T) {
	a, b := realCgroup(t), realCgroup(t)
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	for key, dir := range map[string]string{"a": a, "b": b} {
		if err := p.AddFile(key, dir, "cgroup.events"); err != nil {
			t.Fatal(err)
		}
	}
	keys, done := reports(p)
	quiet(t, keys, 100*time.Millisecond)

	cmd := cgrouptest.Start(t, b, nil, nil, "sleep", "600")
	expect(t, keys, "b")
	if populated, err := Populated(b); err != nil || !populated {
		t.Errorf("reported b, whose cgroup.events says populated %v, %v", populated, err)
	}
	// Re-armed: the next change is reported too.
	stop(t, cmd)
	expect(t, keys, "b")
	quiet(t, keys, 100*time.Millisecond)

	closePoller(t, p, keys, done)
}

// TestPollerRemove: a key removed is no longer reported, and its file is
// closed; removing a key not watched does nothing.
func TestPollerRemove(t *testing.T) {
	dir := realCgroup(t)
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)
	if err := p.AddFile("events", dir, "cgroup.events"); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); got != fds+1 {
		t.Errorf("AddFile opened %d files, want 1", got-fds)
	}
	p.Remove("events")
	p.Remove("events")
	p.Remove("never added")
	if got := openFDs(t); got != fds {
		t.Errorf("%d files left open after Remove", got-fds)
	}
	if len(p.entries) != 0 || len(p.keys) != 0 {
		t.Errorf("entries %v, keys %v left after Remove", p.entries, p.keys)
	}
	keys, done := reports(p)
	cgrouptest.Start(t, dir, nil, nil, "sleep", "600")
	quiet(t, keys, 200*time.Millisecond)
	// The key may be added again.
	if err := p.AddFile("events", dir, "cgroup.events"); err != nil {
		t.Fatal(err)
	}
	closePoller(t, p, keys, done)
}

// TestPollerGone: a trigger whose cgroup is removed is reported once more,
// then dropped. A file is not reported (kernfs does not notify a removal):
// it stays open until its key is removed.
func TestPollerGone(t *testing.T) {
	dir := realCgroup(t)
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)
	if err := p.AddFile("events", dir, "cgroup.events"); err != nil {
		t.Fatal(err)
	}
	if err := p.AddTrigger("pressure", dir, trigStall, trigWindow); err != nil {
		t.Fatal(err)
	}
	keys, done := reports(p)
	quiet(t, keys, 100*time.Millisecond)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	expect(t, keys, "pressure")
	quiet(t, keys, 200*time.Millisecond)
	p.mu.Lock()
	_, trigger := p.keys["pressure"]
	_, file := p.keys["events"]
	p.mu.Unlock()
	if trigger {
		t.Error("the trigger of a cgroup removed is still watched")
	}
	if !file {
		t.Error("the file of a cgroup removed was dropped unreported")
	}
	p.Remove("events")
	if got := openFDs(t); got != fds {
		t.Errorf("%d files left open", got-fds)
	}
	closePoller(t, p, keys, done)
}

func TestPollerErrors(t *testing.T) {
	dir := realCgroup(t)
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fds := openFDs(t)
	if err := p.AddFile("x", dir, "no.such.file"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("AddFile of a missing file: %v", err)
	}
	if err := p.AddTrigger("x", dir+"/gone", trigStall, trigWindow); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("AddTrigger on a missing cgroup: %v", err)
	}
	// The kernel takes windows from 500ms to 10s.
	if err := p.AddTrigger("x", dir, time.Millisecond, time.Millisecond); err == nil {
		t.Error("AddTrigger with a 1ms window succeeded")
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d files left open by failed adds", got-fds)
	}

	if err := p.AddFile("k", dir, "cgroup.events"); err != nil {
		t.Fatal(err)
	}
	for _, add := range []func() error{
		func() error { return p.AddFile("k", dir, "cgroup.events") },
		func() error { return p.AddTrigger("k", dir, trigStall, trigWindow) },
	} {
		if err := add(); err == nil || !strings.Contains(err.Error(), "added twice") {
			t.Errorf("a key added twice: %v", err)
		}
	}
	if got := openFDs(t); got != fds+1 {
		t.Errorf("%d files open, want the first k's only", got-fds)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.AddFile("y", dir, "cgroup.events"); !errors.Is(err, ErrClosed) {
		t.Errorf("AddFile after Close: %v", err)
	}
	if err := p.AddTrigger("y", dir, trigStall, trigWindow); !errors.Is(err, ErrClosed) {
		t.Errorf("AddTrigger after Close: %v", err)
	}
	if got := openFDs(t); got != fds-2 { // the epoll and the eventfd too
		t.Errorf("%d files open after Close, want %d", got-fds, -2)
	}
}

// TestPollerRelease: Close releases every descriptor and goroutine, whether
// a Wait is blocked or not, and a second Close does nothing.
func TestPollerRelease(t *testing.T) {
	dir := realCgroup(t)
	for _, blocked := range []bool{false, true} {
		t.Run(fmt.Sprintf("blocked=%v", blocked), func(t *testing.T) {
			goroutines, fds := runtime.NumGoroutine(), openFDs(t)
			p, err := NewPoller()
			if err != nil {
				t.Fatal(err)
			}
			if err := p.AddFile("events", dir, "cgroup.events"); err != nil {
				t.Fatal(err)
			}
			if err := p.AddTrigger("pressure", dir, trigStall, trigWindow); err != nil {
				t.Fatal(err)
			}
			if got := openFDs(t); got != fds+4 {
				t.Errorf("%d files open, want 4", got-fds)
			}
			if blocked {
				keys, done := reports(p)
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
					p.mu.Lock()
					waiting := p.waiting
					p.mu.Unlock()
					if waiting {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("Wait did not start")
					}
				}
				closePoller(t, p, keys, done)
			} else if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if got := openFDs(t); got != fds {
				t.Errorf("%d files left open after Close", got-fds)
			}
			// The goroutine that ran Wait may take a moment to exit.
			for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > goroutines {
				t.Errorf("%d goroutines after Close, %d before", n, goroutines)
			}
		})
	}
}
