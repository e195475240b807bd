package exechold

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/exechold/holdtest"
)

func TestMain(m *testing.M) {
	holdtest.Run() // the held process of these tests
	os.Exit(m.Run())
}

// TestHold runs a shell under the filter that runs two programs: each of
// its three execve calls is held (the program's image is not in place while
// the handler runs) and then goes on as if unfiltered.
func TestHold(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var exes []string
	var last uint32
	var commands []string
	l.Handle(func(r *Request) Payer {
		pid := r.Pid
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
		path, argv, err := r.Command()
		if err != nil {
			t.Errorf("Command of held %s: %v", exe, err)
		}
		if strings.HasSuffix(exe, "sh") {
			// A slow placement: the program still must not run. (Not for
			// the test binary: Go preempts its thread with signals, and a
			// signal restarts a held execve.)
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		// A held execve that a signal interrupts is held again: the Go
		// child executes with RawSyscall, so its runtime preempts it after
		// 10ms. Count it once.
		if pid != last {
			exes = append(exes, exe)
			commands = append(commands, path+": "+strings.Join(argv, " "))
		}
		last = pid
		mu.Unlock()
		return Agent
	})
	self, _ := os.Executable()
	cmd := holdtest.Command(l.Path(), "/bin/sh", "-c", "/bin/echo one; /bin/echo two")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if string(out) != "one\ntwo\n" {
		t.Fatalf("output %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(exes) != 3 {
		t.Fatalf("held %d execve calls (%q), want 3: sh, echo, echo", len(exes), exes)
	}
	// While held, each caller still runs the program it was before execve.
	if exes[0] != self || !strings.HasSuffix(exes[1], "sh") || !strings.HasSuffix(exes[2], "sh") {
		t.Fatalf("held callers ran %q; want the test binary, then the shell twice", exes)
	}
	// What each asked to run, read from its memory while held.
	want := []string{"/bin/sh: /bin/sh -c /bin/echo one; /bin/echo two", "/bin/echo: /bin/echo one", "/bin/echo: /bin/echo two"}
	if strings.Join(commands, "|") != strings.Join(want, "|") {
		t.Errorf("held commands %q, want %q", commands, want)
	}
}

// TestValid: a held execve is valid while its caller waits, and not once
// the caller is killed: its pid may name another process by then.
func TestValid(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type answer struct{ before, after bool }
	answers := make(chan answer, 4)
	l.Handle(func(r *Request) Payer {
		if exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(r.Pid)) + "/exe"); !strings.HasSuffix(exe, "sh") {
			return Agent
		}
		before := r.Valid()
		_ = syscall.Kill(int(r.Pid), syscall.SIGKILL)
		for i := 0; i < 100 && r.Valid(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		answers <- answer{before, r.Valid()}
		if _, _, err := r.Command(); err == nil {
			t.Error("Command read a killed caller's memory")
		}
		return Agent
	})
	cmd := holdtest.Command(l.Path(), "/bin/sh", "-c", "/bin/echo one")
	if err := cmd.Run(); err == nil {
		t.Fatal("the shell ran on, want it killed while held")
	}
	select {
	case a := <-answers:
		if !a.before || a.after {
			t.Errorf("Valid while held %v, after the kill %v; want true, false", a.before, a.after)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no execve held")
	}
}

// TestHangup: once the held process tree is gone its listener is closed,
// and Close leaves nothing running.
func TestHangup(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := holdtest.Command(l.Path(), "/bin/true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.files)
		l.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d listeners still served after their process exited", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.Path()); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// closeWithin fails the test if l.Close does not return within d.
func closeWithin(t *testing.T, l *Listener, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatalf("Close did not return within %v", d)
	}
}

// sendFd sends fd to the socket at path as the runtime does: the state and
// the fd in one message.
func sendFd(path string, fd int) error {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, _, err = conn.WriteMsgUnix([]byte("{}"), unix.UnixRights(fd), nil)
	return err
}

// sendFdAs sends fd from a thread whose effective uid is euid; the thread
// then ends, so no other goroutine runs with that uid. Its file system uid
// stays 0: the socket's mode lets it in, and only SO_PEERCRED (the euid at
// connect) tells it from the shim's runtime.
func sendFdAs(path string, fd int, euid int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		// Raw calls: syscall.Setresuid would change every thread.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(euid), ^uintptr(0)); e != 0 {
			errc <- fmt.Errorf("setresuid: %w", e)
			return
		}
		unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0)
		errc <- sendFd(path, fd)
	}()
	return <-errc
}

// waitCmd fails the test if cmd does not exit successfully within d.
func waitCmd(t *testing.T, cmd *exec.Cmd, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("held process: %v", err)
		}
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("held process did not finish within %v", d)
	}
}

// TestCloseWhileServing: Close returns while a process still uses its
// listener, instead of waiting for a serve loop that spins on the closed
// file.
func TestCloseWhileServing(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := holdtest.Command(l.Path(), "/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.files)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d listeners served, want 1", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	closeWithin(t, l, 5*time.Second)
}

// TestNotAListener: a received fd that is not a seccomp listener is closed
// at once, not served (where each ioctl fails and the loop would spin).
func TestNotAListener(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("x")) // readable, as a listener with a notification
	if err := sendFd(l.Path(), int(r.Fd())); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// Once the Listener has closed its copy, the pipe has no reader left.
	p := []unix.PollFd{{Fd: int32(w.Fd()), Events: unix.POLLOUT}}
	deadline := time.Now().Add(5 * time.Second)
	for p[0].Revents&unix.POLLERR == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a received pipe is still open after 5s: it is served as a seccomp listener")
		}
		if _, err := unix.Poll(p, 10); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
	}
	closeWithin(t, l, 5*time.Second)
}

// TestSilentPeer: a peer that connects and sends nothing holds up neither
// the processes that start meanwhile nor Close.
func TestSilentPeer(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("unix", l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cmd := holdtest.Command(l.Path(), "/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitCmd(t, cmd, 5*time.Second)
	closeWithin(t, l, 5*time.Second)
}

// TestSilentPeerDropped: a silent peer is dropped after readTimeout.
func TestSilentPeerDropped(t *testing.T) {
	defer func(d time.Duration) { readTimeout = d }(readTimeout)
	readTimeout = 100 * time.Millisecond
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	silent, err := net.Dial("unix", l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read on a silent connection: %v, want EOF (dropped by the Listener)", err)
	}
}

// TestSocketMode: only the socket's owner may connect, whatever the umask.
func TestSocketMode(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestPeerCredentials: a listener sent by a peer of another user is not
// served; the same listener sent by the shim's own user is.
func TestPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to connect as another user")
	}
	dir := t.TempDir()
	l, err := Listen(filepath.Join(dir, "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held atomic.Int32
	l.Handle(func(*Request) Payer { held.Add(1); return Agent })

	// Get a held process's listener, the process waiting in execve.
	relay, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "relay.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	cmd := holdtest.Command(relay.Addr().String(), "/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	conn, err := relay.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v: %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("fds %v: %v", fds, err)
	}
	defer unix.Close(fds[0])

	// Dropped at once, the peer may find the connection closed already.
	if err := sendFdAs(l.Path(), fds[0], 65534); err != nil && !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := held.Load(); n != 0 {
		t.Fatalf("a listener sent by uid 65534 was served (%d execve held)", n)
	}
	if err := sendFd(l.Path(), fds[0]); err != nil {
		t.Fatal(err)
	}
	waitCmd(t, cmd, 5*time.Second)
	if n := held.Load(); n < 1 { // more where a signal restarted it
		t.Fatalf("%d execve held, want 1", n)
	}
}

// TestHeldBudget: the time spent serving held execve is bounded: with a
// handler that takes 2 ms, a budget of 10% of a CPU and a burst of 20 ms,
// 100 execve take at least (200 - 20) / 0.1 ms, 1.8 s, where they take
// 0.2 s unbounded; every one is still served.
func TestHeldBudget(t *testing.T) {
	defer func(s float64, b time.Duration) { heldShare, heldBurst = s, b }(heldShare, heldBurst)
	heldShare, heldBurst = 0.1, 20*time.Millisecond
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held atomic.Int64
	l.Handle(func(*Request) Payer { held.Add(1); time.Sleep(2 * time.Millisecond); return Agent })
	const n = 100
	if took := execMissing(t, l, n); took < 1500*time.Millisecond {
		t.Errorf("%d held execve of 2 ms in %v under a budget of %.0f%% of a CPU", n, took, 100*heldShare)
	}
	if h := held.Load(); h < n {
		t.Errorf("%d held execve served, want at least %d", h, n)
	}
}

// TestHeldBudgetCountsCPU: the budget charges what serving costs the shim
// in CPU, not only the handler's time: with an instant handler and a meter
// that sees 2 ms of CPU per execve, 100 execve under 10% of a CPU and a
// burst of 20 ms take at least 1.5 s.
func TestHeldBudgetCountsCPU(t *testing.T) {
	defer func(s float64, b, w time.Duration, m *meter) {
		heldShare, heldBurst, meterWindow, cpu = s, b, w, m
	}(heldShare, heldBurst, meterWindow, cpu)
	var held atomic.Int64
	heldShare, heldBurst, meterWindow = 0.1, 20*time.Millisecond, time.Millisecond
	cpu = &meter{cpuTime: func() time.Duration { return time.Duration(held.Load()) * 2 * time.Millisecond }}
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Handle(func(*Request) Payer { held.Add(1); return Agent })
	const n = 100
	if took := execMissing(t, l, n); took < 1500*time.Millisecond {
		t.Errorf("%d held execve of 2 ms of CPU in %v under a budget of %.0f%% of a CPU", n, took, 100*heldShare)
	}
}

// execMissing runs a held shell that execs a missing program n times, and
// returns how long it took.
func execMissing(t *testing.T, l *Listener, n int) time.Duration {
	t.Helper()
	cmd := holdtest.Command(l.Path(), "/bin/sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do /nonexistent 2>/dev/null; i=$((i+1)); done", n))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return time.Since(start)
}

// TestExecListener: the handler is told whether the listener came with the
// state of a process exec'd into the running container or not.
func TestExecListener(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var execs, inits atomic.Int64
	l.Handle(func(r *Request) Payer {
		if r.Exec {
			execs.Add(1)
		} else {
			inits.Add(1)
		}
		return Agent
	})
	for _, cmd := range []*exec.Cmd{holdtest.Command(l.Path(), "/bin/true"), holdtest.ExecCommand(l.Path(), "/bin/true")} {
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	// At least one each: a signal can restart a held execve.
	if execs.Load() < 1 || inits.Load() < 1 {
		t.Fatalf("%d execve held as an exec's, %d as init's; want at least 1 each", execs.Load(), inits.Load())
	}
}

type fakeCloser struct{ closed bool }

func (f *fakeCloser) Close() error { f.closed = true; return nil }

// TestTrack: a tracked closer is counted until untracked, which closes it;
// once the Listener is closed a new one is closed at once, never counted.
func TestTrack(t *testing.T) {
	l := &Listener{}
	set := map[*fakeCloser]struct{}{}
	c := &fakeCloser{}
	if !track(l, set, c) || len(set) != 1 || c.closed {
		t.Fatalf("track on an open Listener: set %v, closed %v", set, c.closed)
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	untrack(l, set, c)
	<-done // hangs if untrack does not end the count
	if len(set) != 0 || !c.closed {
		t.Fatalf("untrack: set %v, closed %v", set, c.closed)
	}
	l.closed = true
	late := &fakeCloser{}
	if track(l, set, late) || len(set) != 0 || !late.closed {
		t.Fatalf("track on a closed Listener: set %v, closed %v", set, late.closed)
	}
}

// TestCallBudgetApart: a tool call's exec loop is charged to the calls'
// budget, so that the agent's own spawns, charged to the agent's, do not
// wait behind it though both use the same listener (the call inherited the
// agent's filter): while the call's execve are held back to 10% of a CPU,
// the agent's 20 spawns see fewer than 10 of them go by, where one budget
// would have them alternate.
func TestCallBudgetApart(t *testing.T) {
	defer func(s float64, b time.Duration) { heldShare, heldBurst = s, b }(heldShare, heldBurst)
	heldShare, heldBurst = 0.1, 20*time.Millisecond
	l, err := Listen(filepath.Join(t.TempDir(), "hold.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var calls, agents atomic.Int64
	var first, last atomic.Int64 // calls seen at the agent's first and 20th spawn
	l.Handle(func(r *Request) Payer {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.Pid)); strings.Contains(string(b), "call-loop") {
			time.Sleep(2 * time.Millisecond)
			calls.Add(1)
			return Call
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.Pid)); strings.Contains(string(b), "agent-loop") {
			switch agents.Add(1) {
			case 1:
				first.Store(calls.Load())
			case 20:
				last.Store(calls.Load())
			}
		}
		return Agent
	})
	script := `sh -c 'i=0; while [ $i -lt 100 ]; do /nonexistent 2>/dev/null; i=$((i+1)); done' call-loop &
		sleep 0.3
		sh -c 'i=0; while [ $i -lt 20 ]; do /nonexistent 2>/dev/null; i=$((i+1)); done' agent-loop
		wait`
	if out, err := holdtest.Command(l.Path(), "/bin/sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if agents.Load() < 20 || calls.Load() < 100 {
		t.Fatalf("held %d of the agent's execve and %d of the call's, want 20 and 100", agents.Load(), calls.Load())
	}
	if n := last.Load() - first.Load(); n >= 10 {
		t.Errorf("the call's exec loop went %d execve ahead while the agent spawned 20: its spawns waited behind the call", n)
	}
}
