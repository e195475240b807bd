package exechold

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	l.Handle(func(pid uint32) {
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
		if strings.HasSuffix(exe, "sh") {
			// A slow placement: the program still must not run. (Not for
			// the test binary: Go preempts its thread with signals, and a
			// signal restarts a held execve.)
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		exes = append(exes, exe)
		mu.Unlock()
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
