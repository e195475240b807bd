package shim

import (
	"context"
	"os"
	"testing"

	"github.com/agentcgroup/agentcgroup/bpf"
)

// TestDetectorRefcount: the detector stays loaded while any container that
// acquired it has not released it, whether or not it watches anything yet:
// a Create between loading and watching must not find it closed by another
// container's Delete (which failed with "bad file descriptor" when the
// detector was closed as soon as nothing was watched). It closes with the
// last release, and a release of an ID that never acquired it is harmless.
func TestDetectorRefcount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("loading BPF programs needs root (make test runs as root)")
	}
	ctx := context.Background()
	// Not bpffs: a private detector, never the host's shared one.
	s := &service{detectorUsers: map[string]bool{}, stateRoot: t.TempDir(), pinRoot: t.TempDir() + "/agentcgroup"}
	a := s.acquireDetector(ctx, "a")
	if a == nil {
		t.Fatal("no detector loaded")
	}
	if b := s.acquireDetector(ctx, "b"); b != a {
		t.Fatal("a second container loaded a second detector")
	}
	s.releaseDetector(ctx, "b")     // b deleted while a is between Create and Watch
	s.releaseDetector(ctx, "never") // a delete of a container without detection
	events := make(chan bpf.Event, 1)
	if err := a.Watch(1, events); err != nil {
		t.Fatalf("watch after another container's release: %v", err)
	}
	a.Unwatch(1)
	s.releaseDetector(ctx, "a")
	s.releasing.Wait()
	if s.detector != nil {
		t.Error("the detector is still loaded after its last user's release")
	}
	if err := a.Watch(1, events); err == nil {
		t.Error("watch on a closed detector succeeded")
	}
}
