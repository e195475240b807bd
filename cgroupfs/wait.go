package cgroupfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// waitBackstop bounds each wait for a change: every waited cgroup is read
// again after it, in case a wake-up was lost.
const waitBackstop = time.Second

// EmptyWaiter waits for cgroups to empty ("populated 0" in cgroup.events),
// any number of them with one inotify instance (the kernel allows 128 per
// user by default, and far more watches) read in Go's poller, so that calls
// that linger hold neither an instance nor an OS thread each.
type EmptyWaiter struct {
	f  *os.File
	fd int

	mu     sync.Mutex
	waits  map[int32][]*emptyWait // by watch descriptor
	closed bool
	done   chan struct{}
}

type emptyWait struct {
	dir   string
	empty chan error // receives nil once empty, or why it cannot tell
}

// NewEmptyWaiter starts a waiter; Close ends it.
func NewEmptyWaiter() (*EmptyWaiter, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &EmptyWaiter{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, waits: make(map[int32][]*emptyWait), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// Wait returns once dir is empty (a cgroup already gone counts as empty), or
// with ctx's error.
func (w *EmptyWaiter) Wait(ctx context.Context, dir string) error {
	ew := &emptyWait{dir: dir, empty: make(chan error, 1)}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	wd, err := unix.InotifyAddWatch(w.fd, filepath.Join(dir, "cgroup.events"), unix.IN_MODIFY)
	if errors.Is(err, unix.ENOENT) {
		w.mu.Unlock()
		return nil
	}
	if err != nil {
		w.mu.Unlock()
		return fmt.Errorf("watch %s/cgroup.events: %w", dir, err)
	}
	w.waits[int32(wd)] = append(w.waits[int32(wd)], ew)
	w.mu.Unlock()
	w.check(int32(wd)) // it may have emptied before the watch
	select {
	case err := <-ew.empty:
		return err
	case <-ctx.Done():
		w.drop(int32(wd), ew)
		return fmt.Errorf("wait for %s to empty: %w", dir, ctx.Err())
	}
}

// check ends the waits on wd whose cgroup is empty or gone.
func (w *EmptyWaiter) check(wd int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	waits := w.waits[wd]
	if len(waits) == 0 {
		return
	}
	populated, err := Populated(waits[0].dir)
	if errors.Is(err, os.ErrNotExist) {
		populated, err = false, nil
	}
	if populated && err == nil {
		return
	}
	for _, ew := range waits {
		ew.empty <- err
	}
	delete(w.waits, wd)
	w.rmWatch(wd)
}

// rmWatch removes a watch; callers hold mu. After Close the fd number may be
// another file's.
func (w *EmptyWaiter) rmWatch(wd int32) {
	if !w.closed {
		_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
	}
}

func (w *EmptyWaiter) drop(wd int32, ew *emptyWait) {
	w.mu.Lock()
	defer w.mu.Unlock()
	waits := w.waits[wd]
	for i, e := range waits {
		if e == ew {
			waits = append(waits[:i], waits[i+1:]...)
			break
		}
	}
	if len(waits) > 0 {
		w.waits[wd] = waits
		return
	}
	delete(w.waits, wd)
	w.rmWatch(wd)
}

func (w *EmptyWaiter) watched() []int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Collect(maps.Keys(w.waits))
}

func (w *EmptyWaiter) run() {
	defer close(w.done)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		if err := w.f.SetReadDeadline(time.Now().Add(waitBackstop)); err != nil {
			return
		}
		n, err := w.f.Read(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			for _, wd := range w.watched() {
				w.check(wd)
			}
			continue
		case err != nil:
			return // closed
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			nameLen := binary.NativeEndian.Uint32(buf[off+12:])
			w.check(wd)
			off += unix.SizeofInotifyEvent + int(nameLen)
		}
	}
}

// Close ends the waiter; waits in progress return ErrClosed.
func (w *EmptyWaiter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	for wd, waits := range w.waits {
		for _, ew := range waits {
			ew.empty <- ErrClosed
		}
		delete(w.waits, wd)
	}
	w.mu.Unlock()
	err := w.f.Close()
	<-w.done
	return err
}

// WaitEmpty waits for one cgroup to empty.
func WaitEmpty(ctx context.Context, dir string) error {
	w, err := NewEmptyWaiter()
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Wait(ctx, dir)
}
