package hooks

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// isLeader reports whether tid leads its thread group (is a process), in
// one system call: pidfd_open refuses other threads (EINVAL, or ENOENT on
// newer kernels). The common case of every held execve, so no /proc file
// is read for it. A task gone (ESRCH) counts as a leader: nothing to place.
func isLeader(tid uint32) bool {
	fd, err := unix.PidfdOpen(int(tid), 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	unix.Close(fd)
	return true
}

// threadGroup returns the process (thread group) of thread tid.
func threadGroup(tid uint32) (uint32, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(n), err
		}
	}
	return 0, fmt.Errorf("no Tgid in /proc/%d/status", tid)
}

// pidfd opens a non-blocking pidfd, which Go's poller can wait on.
func pidfd(pid uint32) (*os.File, error) {
	fd, err := unix.PidfdOpen(int(pid), unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	return os.NewFile(uintptr(fd), "pidfd"), nil
}
