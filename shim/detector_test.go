package shim

import (
	"context"
	"os"
	"testing"
	"time"

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
	d := newSharedDetector(t.TempDir()+"/agentcgroup", t.TempDir())
	a := d.acquire(ctx, "a")
	if a == nil {
		t.Fatal("no detector loaded")
	}
	if b := d.acquire(ctx, "b"); b != a {
		t.Fatal("a second container loaded a second detector")
	}
	d.release(ctx, "b")     // b deleted while a is between Create and Watch
	d.release(ctx, "never") // a delete of a container without detection
	events := make(chan bpf.Event, 1)
	if err := a.Watch(1, events); err != nil {
		t.Fatalf("watch after another container's release: %v", err)
	}
	a.Unwatch(1)
	d.release(ctx, "a")
	d.closing.Wait()
	if d.detector != nil {
		t.Error("the detector is still loaded after its last user's release")
	}
	if err := a.Watch(1, events); err == nil {
		t.Error("watch on a closed detector succeeded")
	}
}

// TestDetectorMayLoad: a load is tried until one fails, then again after
// detectorRetry; a load noted in the state root counts as one before.
func TestDetectorMayLoad(t *testing.T) {
	d := newSharedDetector(t.TempDir(), t.TempDir())
	if mayLoad, before := d.mayLoad(); !mayLoad || before {
		t.Errorf("fresh host: mayLoad %v, before %v; want true, false", mayLoad, before)
	}
	d.failed = time.Now()
	if mayLoad, _ := d.mayLoad(); mayLoad {
		t.Error("tried again right after a failed load")
	}
	d.failed = time.Now().Add(-detectorRetry)
	bpf.MarkLoaded(d.stateRoot)
	if mayLoad, before := d.mayLoad(); !mayLoad || !before {
		t.Errorf("after detectorRetry, loaded before: mayLoad %v, before %v; want true, true", mayLoad, before)
	}
}
