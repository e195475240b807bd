package cgroupfs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestProcsBelow(t *testing.T) {
	dir := t.TempDir()
	for p, procs := range map[string]string{"": "", "agent": "10\n", "tools/e1": "11\n12\n", "tools": ""} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p, "cgroup.procs"), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ProcsBelow(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []uint64{10, 11, 12}; !slices.Equal(got, want) {
		t.Errorf("ProcsBelow = %v, want %v", got, want)
	}
	if _, err := ProcsBelow(filepath.Join(dir, "gone")); err == nil {
		t.Error("ProcsBelow of a missing cgroup: no error")
	}
}
