package state

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
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
	recs := []Record{{ID: "e1", Kind: "exec", Command: []string{"sh", "-c", "exit 3"}, Start: time.Unix(10, 0).UTC(), End: &end, State: Exited, ExitCode: &code, MemoryPeakBytes: 42}}
	if err := SaveRecords(dir, recs); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadRecords(dir); err != nil || !reflect.DeepEqual(got, recs) {
		t.Fatalf("LoadRecords = %+v, %v", got, err)
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
