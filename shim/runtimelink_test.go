package shim

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentcgroup/agentcgroup/state"
)

// TestRuntimeLinks: the runtime link points at the real runtime but while a
// wrapped call runs, overlapping calls included, and is never missing.
func TestRuntimeLinks(t *testing.T) {
	dir := t.TempDir()
	l := newRuntimeLinks("/usr/bin/agentcgroup-oci-runtime")
	if err := l.add("c", dir, "/usr/bin/runc"); err != nil {
		t.Fatal(err)
	}
	target := func() string {
		s, err := os.Readlink(filepath.Join(dir, state.RuntimeLink))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := target(); got != "/usr/bin/runc" {
		t.Fatalf("link = %s, want the runtime", got)
	}
	ctx := context.Background()
	_ = l.wrap(ctx, "c", func() {
		if got := target(); got != "/usr/bin/agentcgroup-oci-runtime" {
			t.Errorf("during a wrapped call: %s, want the wrapper", got)
		}
		_ = l.wrap(ctx, "c", func() {})
		if got := target(); got != "/usr/bin/agentcgroup-oci-runtime" {
			t.Errorf("after an overlapping call ended: %s, want the wrapper still", got)
		}
	})
	if got := target(); got != "/usr/bin/runc" {
		t.Errorf("after the wrapped calls: %s, want the runtime", got)
	}
	if l.runtime("c") != "/usr/bin/runc" || l.runtime("other") != "" {
		t.Error("runtime of a container")
	}
	ran := false
	if err := l.wrap(ctx, "other", func() { ran = true }); err != nil { // not carved: runs as is
		t.Fatal(err)
	}
	if !ran {
		t.Error("a call of a container that is not carved did not run")
	}
	// A link that cannot be made: the call does not run.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // dir is a file now
		t.Fatal(err)
	}
	ran = false
	if err := l.wrap(ctx, "c", func() { ran = true }); err == nil || ran {
		t.Errorf("wrap with no link possible: err %v, ran %v; want an error and no call", err, ran)
	}
	os.Remove(dir)
	if left, _ := filepath.Glob(filepath.Join(dir, "*.new")); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}
