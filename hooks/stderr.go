package hooks

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// stderrOf returns a writer on the stderr of the process behind pidfd
// leader (a forked call's fd 2, as the agent gave it) that never waits: the
// container owns the stream's other end, and an agent that does not drain
// it must not hold a shim goroutine and fd for good. A pipe or a terminal
// (no other device) is opened anew, non-blocking in the shim's own open file description (the
// call's flags are untouched); a socket (Node's child_process) is sent to
// without waiting; a file does not block on a reader.
func stderrOf(leader *os.File) (io.WriteCloser, error) {
	fd, err := unix.PidfdGetfd(int(leader.Fd()), 2, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return socketWriter{os.NewFile(uintptr(fd), "stderr")}, nil
	case unix.S_IFIFO, unix.S_IFCHR:
		// Of devices only a terminal (a tmux pane), whose output can be
		// stopped: opening another device can have effects (a privileged
		// container's stderr could be a watchdog), and the dup does not
		// block on a reader.
		if st.Mode&unix.S_IFMT == unix.S_IFCHR {
			if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
				return os.NewFile(uintptr(fd), "stderr"), nil
			}
		}
		defer unix.Close(fd)
		nfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("reopen the call's stderr: %w", err)
		}
		return rawWriter{nfd}, nil
	}
	return os.NewFile(uintptr(fd), "stderr"), nil
}

// rawWriter writes to a non-blocking fd once: a full pipe is an error
// (EAGAIN), never a wait. Not through os.File, whose poller would wait.
type rawWriter struct{ fd int }

func (w rawWriter) Write(b []byte) (int, error) { return unix.Write(w.fd, b) }
func (w rawWriter) Close() error                { return unix.Close(w.fd) }

// socketWriter sends without waiting and without SIGPIPE.
type socketWriter struct{ f *os.File }

func (w socketWriter) Write(b []byte) (int, error) {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		n, serr = unix.SendmsgN(int(fd), b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	}); err != nil {
		return 0, err
	}
	return n, serr
}

func (w socketWriter) Close() error { return w.f.Close() }
