package cgroupfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Wait once the Poller is closed.
var ErrClosed = errors.New("poller closed")

// Poller waits, in one epoll set, on PSI triggers and on cgroup files the
// kernel notifies (memory.events, cgroup.events). Both report through
// POLLPRI, which Go's runtime poller never asks for, hence a private epoll.
// Wait and the Add/Remove methods may run on different goroutines.
type Poller struct {
	epfd int
	wake int // eventfd that Close writes to end a blocked Wait

	mu      sync.Mutex
	entries map[int32]*pollEntry
	keys    map[any]*pollEntry
	closed  bool
	waiting bool // a Wait is in epoll_wait: it releases the fds after Close
}

type pollEntry struct {
	f       *os.File
	key     any
	trigger bool // a PSI trigger; else a file that is re-read to re-arm
}

// NewPoller creates an empty Poller.
func NewPoller() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll add eventfd: %w", err)
	}
	return &Poller{epfd: epfd, wake: wake, entries: make(map[int32]*pollEntry), keys: make(map[any]*pollEntry)}, nil
}

// AddTrigger arms a PSI trigger on dir's memory.pressure: Wait reports key
// whenever tasks in dir were stalled on memory ("some") for at least stall
// within a window. Windows under 2 s need CAP_SYS_RESOURCE; the kernel
// reports at most once per window.
func (p *Poller) AddTrigger(key any, dir string, stall, window time.Duration) error {
	name := filepath.Join(dir, "memory.pressure")
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open PSI trigger: %w", err)
	}
	spec := fmt.Sprintf("some %d %d", stall.Microseconds(), window.Microseconds())
	if _, err := f.Write(append([]byte(spec), 0)); err != nil {
		f.Close()
		return fmt.Errorf("arm PSI trigger %q on %s: %w", spec, name, err)
	}
	return p.add(&pollEntry{f: f, key: key, trigger: true})
}

// AddFile reports key whenever the kernel notifies a change of dir/name.
func (p *Poller) AddFile(key any, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	e := &pollEntry{f: f, key: key}
	if err := e.rearm(); err != nil {
		f.Close()
		return err
	}
	return p.add(e)
}

func (p *Poller) add(e *pollEntry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		e.f.Close()
		return ErrClosed
	}
	if _, ok := p.keys[e.key]; ok {
		e.f.Close()
		return fmt.Errorf("poller: key %v added twice", e.key)
	}
	fd := int32(e.f.Fd())
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLPRI, Fd: fd}); err != nil {
		e.f.Close()
		return fmt.Errorf("epoll add %s: %w", e.f.Name(), err)
	}
	p.entries[fd] = e
	p.keys[e.key] = e
	return nil
}

// rearm reads the file from the start: kernfs reports a change until then.
func (e *pollEntry) rearm() error {
	var buf [512]byte
	if _, err := e.f.ReadAt(buf[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Remove stops watching key; removing a key not watched does nothing.
func (p *Poller) Remove(key any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.keys[key]; ok {
		p.drop(e)
	}
}

func (p *Poller) drop(e *pollEntry) {
	fd := int32(e.f.Fd())
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	delete(p.entries, fd)
	delete(p.keys, e.key)
	e.f.Close()
}

// Wait blocks until something is reported and returns the keys. A trigger
// whose cgroup is gone is reported once more and then dropped; a file is not
// reported (kernfs does not notify a removal), so its key must be removed.
func (p *Poller) Wait() ([]any, error) {
	events := make([]unix.EpollEvent, 16)
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		p.waiting = true
		p.mu.Unlock()

		n, err := unix.EpollWait(p.epfd, events, -1)

		p.mu.Lock()
		p.waiting = false
		if p.closed {
			p.release()
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if errors.Is(err, unix.EINTR) {
			p.mu.Unlock()
			continue
		}
		if err != nil {
			p.mu.Unlock()
			return nil, fmt.Errorf("epoll wait: %w", err)
		}
		var keys []any
		for _, ev := range events[:n] {
			e, ok := p.entries[ev.Fd]
			if !ok {
				continue
			}
			keys = append(keys, e.key)
			switch {
			case e.trigger && ev.Events&unix.EPOLLERR != 0:
				p.drop(e) // the cgroup is gone
			case !e.trigger:
				if e.rearm() != nil {
					p.drop(e)
				}
			}
		}
		p.mu.Unlock()
		if len(keys) > 0 {
			return keys, nil
		}
	}
}

// Close drops every trigger and file and ends a blocked Wait with ErrClosed.
func (p *Poller) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	for _, e := range p.entries {
		p.drop(e)
	}
	if p.waiting {
		// The eventfd stays readable: the Wait wakes and releases.
		_, err := unix.Write(p.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		return err
	}
	p.release()
	return nil
}

func (p *Poller) release() {
	unix.Close(p.epfd)
	unix.Close(p.wake)
}
