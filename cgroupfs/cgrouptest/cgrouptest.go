// Package cgrouptest makes throwaway cgroups on the host's real cgroup2
// hierarchy for tests (/sys/fs/cgroup on a cgroup v2 host,
// /sys/fs/cgroup/unified on a hybrid one), and starts processes in them. It
// imports nothing of the project, so that cgroupfs's own tests can use it.
package cgrouptest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Mount returns where the host mounts cgroup2.
func Mount(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ID parent major:minor root mountpoint options... - fstype ...
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if fields := strings.Fields(pre); ok && len(fields) > 4 && strings.HasPrefix(post, "cgroup2 ") {
			return fields[4]
		}
	}
	t.Fatal("no cgroup2 mount on this host")
	return ""
}

// New makes a cgroup named prefix plus a random suffix at the root of the
// hierarchy. Cleanup kills what is left in it and removes it with all below.
// Making cgroups needs root (make test runs as root).
func New(t testing.TB, prefix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root")
	}
	dir, err := os.MkdirTemp(Mount(t), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(t, dir) })
	return dir
}

// Remove kills every process in the cgroup dir and below, waits for them
// to be gone and removes the cgroups, deepest first. A cgroup gone already
// is no error.
func Remove(t testing.TB, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		t.Errorf("kill %s: %v", dir, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || strings.Contains(string(b), "populated 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still populated 10 s after its kill", dir)
			return
		}
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
			t.Errorf("cgroup left behind: %v", err)
		}
	}
}

// Start runs argv with its first instruction in the cgroup dir, with stdin
// and stderr as given (nil: none). Cleanup kills and reaps it.
func Start(t testing.TB, dir string, stdin io.Reader, stderr io.Writer, argv ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	cmd.Stdin, cmd.Stderr = stdin, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q in %s: %v", argv, dir, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}
