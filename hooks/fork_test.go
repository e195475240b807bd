package hooks

import (
	"os"
	"runtime"
	"testing"

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
