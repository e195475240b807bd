package state

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

func TestRoundTrip(t *testing.T) {
	root := t.TempDir()
	dir := Dir(root, "default", "t1")
	c := &Container{Namespace: "default", ID: "t1", Runtime: "/usr/bin/runc", Cgroup: "/default/t1"}
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	if recs, err := LoadRecords(dir); err != nil || recs != nil {
		t.Fatalf("LoadRecords before any = %v, %v", recs, err)
	}
	code := uint32(3)
	end := time.Unix(20, 0).UTC()
	recs := []toolcall.Record{{ID: "e1", Kind: toolcall.KindExec, Command: []string{"sh", "-c", "exit 3"}, Start: time.Unix(10, 0).UTC(), End: &end, State: toolcall.Exited, ExitCode: &code, MemoryPeakBytes: 42}}
	if err := SaveRecords(dir, recs); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadRecords(dir); err != nil || !reflect.DeepEqual(got, recs) {
		t.Fatalf("LoadRecords = %+v, %v", got, err)
	}
	for _, f := range []string{dir, filepath.Join(dir, containerFile), filepath.Join(dir, recordsFile)} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s readable by others than root: %v, %v", f, fi.Mode(), err)
		}
	}
	if got := List(root); !reflect.DeepEqual(got, []string{dir}) {
		t.Errorf("List = %v, want [%s]", got, dir)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "default")); !os.IsNotExist(err) {
		t.Errorf("namespace folder left behind: %v", err)
	}
}

func TestLoadBroken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, containerFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Fatal("Load accepted a broken file")
	}
}
