package cgroupfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"
)

// TestWaitEmpty: a wait ends when cgroup.events says "populated 0" (here a
// plain file, whose rewrite inotify reports like kernfs does), or when its
// context ends; many waits hold no OS thread each.
func TestWaitEmpty(t *testing.T) {
	const waiters = 200
	dirs := make([]string, waiters)
	for i := range dirs {
		dirs[i] = fakeCgroup(t, map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	}
	w, err := NewEmptyWaiter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	threads := pprof.Lookup("threadcreate").Count()
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for _, d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.Wait(context.Background(), d)
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if grown := pprof.Lookup("threadcreate").Count() - threads; grown > 20 {
		t.Errorf("%d waits created %d OS threads", waiters, grown)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.events"), []byte("populated 0\nfrozen 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waits did not end when the cgroups emptied")
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	busy := fakeCgroup(t, map[string]string{"cgroup.events": "populated 1\n"})
	if err := w.Wait(ctx, busy); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its context: %v", err)
	}
	if err := WaitEmpty(context.Background(), filepath.Join(busy, "gone")); err != nil {
		t.Errorf("WaitEmpty of a cgroup gone: %v", err)
	}
	w.mu.Lock()
	if len(w.waits) != 0 {
		t.Errorf("%d watches left", len(w.waits))
	}
	w.mu.Unlock()
}
