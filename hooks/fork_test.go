package hooks

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestThreadGroup: a held execve from a thread other than the leader is
// mapped to its process, which the detector knows.
func TestThreadGroup(t *testing.T) {
	done := make(chan uint32)
	go func() {
		runtime.LockOSThread() // a thread of its own, never the leader
		defer runtime.UnlockOSThread()
		done <- uint32(unix.Gettid())
	}()
	tid := <-done
	for _, id := range []uint32{tid, uint32(os.Getpid())} {
		if got, err := threadGroup(id); err != nil || got != uint32(os.Getpid()) {
			t.Errorf("threadGroup(%d) = %d, %v; want %d", id, got, err, os.Getpid())
		}
	}
	if !isLeader(uint32(os.Getpid())) || (tid != uint32(os.Getpid()) && isLeader(tid)) {
		t.Errorf("isLeader: the process %d, the thread %d", os.Getpid(), tid)
	}
}

// TestFlushed: a Flushed event releases the calls waiting for the flushes
// it covers, and only those: a later flush's waiter goes on waiting.
func TestFlushed(t *testing.T) {
	c := &Container{flushes: map[uint64][]chan struct{}{}}
	ch := map[uint64]chan struct{}{}
	for _, n := range []uint64{1, 2, 3} {
		ch[n] = make(chan struct{})
		c.flushes[n] = append(c.flushes[n], ch[n])
	}
	c.flushed(2)
	for n, want := range map[uint64]bool{1: true, 2: true, 3: false} {
		select {
		case <-ch[n]:
			if !want {
				t.Errorf("flush %d released by a Flushed covering 2", n)
			}
		default:
			if want {
				t.Errorf("flush %d not released by a Flushed covering 2", n)
			}
		}
	}
	if len(c.flushes) != 1 {
		t.Errorf("%d flushes still waited for, want 1", len(c.flushes))
	}
}

// TestFlushedBeforeWait: a Flushed event the handler reaches before the call
// that asked for the flush waits for it releases that call at once, not
// after exitGrace.
func TestFlushedBeforeWait(t *testing.T) {
	tc := newTestContainer(t, testOptions{})
	tc.det.mu.Lock()
	tc.det.onFlush = func(n uint64) {} // the Flushed event is sent below, first
	tc.det.mu.Unlock()
	tc.flushed(1) // as the handler would for the flush about to be asked for
	fc := &forkCall{exited: make(chan struct{})}
	start := time.Now()
	tc.flushEvents(context.Background(), fc)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a flush handled before its waiter came held it %v", d)
	}
}
