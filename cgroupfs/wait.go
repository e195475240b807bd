package cgroupfs

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// WaitEmpty returns once dir's cgroup.events says "populated 0". The kernel
// signals every change of that file through inotify, so this waits without
// polling; a slow poll remains as a backstop for a lost wake-up.
func WaitEmpty(ctx context.Context, dir string) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, filepath.Join(dir, "cgroup.events"), unix.IN_MODIFY); err != nil {
		return fmt.Errorf("watch %s/cgroup.events: %w", dir, err)
	}
	buf := make([]byte, 4096)
	for {
		populated, err := Populated(dir)
		if err != nil {
			return err
		}
		if !populated {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for %s to empty: %w", dir, err)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int((time.Second / time.Millisecond))); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll inotify: %w", err)
		}
		for { // drain
			if n, err := unix.Read(fd, buf); n <= 0 || err != nil {
				break
			}
		}
	}
}
