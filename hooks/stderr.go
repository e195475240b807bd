package hooks

import (
	"errors"
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
// is opened anew, non-blocking in the shim's own open file description
// (the call's flags are untouched); a socket (Node's child_process) is sent
// to without waiting; a file is written only on a local filesystem, whose
// writes wait on no one. Anything else (another device, a file on FUSE or
// a network filesystem) is errMayBlock: the record alone says why.
func stderrOf(leader *os.File) (io.WriteCloser, error) {
	fd, err := unix.PidfdGetfd(int(leader.Fd()), 2, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := errors.Join(unix.Fstat(fd, &st), unix.Fstatfs(fd, &fs)); err != nil {
		unix.Close(fd)
		return nil, err
	}
	terminal := false
	if st.Mode&unix.S_IFMT == unix.S_IFCHR {
		_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		terminal = err == nil
	}
	switch streamOf(st.Mode, terminal, int64(fs.Type)) {
	case stream:
		return socketWriter{os.NewFile(uintptr(fd), "stderr")}, nil
	case reopened:
		defer unix.Close(fd)
		nfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("reopen the call's stderr: %w", err)
		}
		return rawWriter{nfd}, nil
	case localFile:
		return os.NewFile(uintptr(fd), "stderr"), nil
	}
	unix.Close(fd)
	return nil, errMayBlock
}

// errMayBlock: a write to the call's stderr could wait without bound.
var errMayBlock = errors.New("a write to the call's stderr could block: not told there")

// How a call's stderr is written to.
type stderrKind int

const (
	unwritable stderrKind = iota
	stream                // a socket: sent to without waiting
	reopened              // a pipe or terminal: opened anew, non-blocking
	localFile             // a file on a local filesystem
)

// localFilesystems are the filesystems whose writes wait on no other
// process: tmpfs, ext2/3/4, xfs, btrfs and overlayfs (statfs(2) magics).
var localFilesystems = map[int64]bool{0x01021994: true, 0xef53: true, 0x58465342: true, 0x9123683e: true, 0x794c7630: true}

// streamOf decides how a stderr of the given mode and filesystem is
// written. Of devices only a terminal (a tmux pane) is: opening another
// device can have effects (a privileged container's stderr could be a
// watchdog), and writing to it may block.
func streamOf(mode uint32, terminal bool, fsType int64) stderrKind {
	switch mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return stream
	case unix.S_IFIFO:
		return reopened
	case unix.S_IFCHR:
		if terminal {
			return reopened
		}
	case unix.S_IFREG:
		if localFilesystems[fsType] {
			return localFile
		}
	}
	return unwritable
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
