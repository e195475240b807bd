package cgroupfs

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeCgroup writes a fake cgroup directory with the given files.
func fakeCgroup(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReaders(t *testing.T) {
	dir := fakeCgroup(t, map[string]string{
		"memory.peak":        "268435456\n",
		"memory.max":         "max\n",
		"memory.high":        "1073741824\n",
		"memory.events":      "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
		"cgroup.events":      "populated 1\nfrozen 0\n",
		"cgroup.controllers": "cpu io memory pids\n",
	})
	if v, err := ReadUint(dir, "memory.peak"); err != nil || v != 256<<20 {
		t.Errorf("memory.peak = %d, %v", v, err)
	}
	if v, err := ReadLimit(dir, "memory.max"); err != nil || v != Unlimited {
		t.Errorf("memory.max = %d, %v", v, err)
	}
	if v, err := ReadLimit(dir, "memory.high"); err != nil || v != 1<<30 {
		t.Errorf("memory.high = %d, %v", v, err)
	}
	if p, err := Populated(dir); err != nil || !p {
		t.Errorf("populated = %v, %v", p, err)
	}
	if !HasController(dir, "memory") || HasController(dir, "hugetlb") {
		t.Error("HasController wrong")
	}
	if err := WriteLimit(dir, "memory.high", Unlimited); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "memory.high")); string(b) != "max" {
		t.Errorf("WriteLimit(Unlimited) wrote %q", b)
	}
	if _, err := ReadUint(fakeCgroup(t, map[string]string{"memory.peak": "lots"}), "memory.peak"); err == nil {
		t.Error("ReadUint accepted garbage")
	}
}

func TestRemoveTree(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "c")
	for _, d := range []string{"agent", "tools/a", "tools/b/nested"} {
		if err := os.MkdirAll(filepath.Join(c, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTree(c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c); !os.IsNotExist(err) {
		t.Errorf("%s still exists", c)
	}
	if err := RemoveTree(c); err != nil {
		t.Errorf("RemoveTree of a missing dir: %v", err)
	}
}
