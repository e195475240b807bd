package exechold

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Listener serves the unix socket to which the OCI runtime sends the seccomp
// listener of every process it starts in the container (init, each exec),
// and answers their notifications: each held execve runs the handler, then
// continues as the kernel would have run it.
type Listener struct {
	ln   *net.UnixListener
	path string

	mu      sync.Mutex
	handler func(pid uint32)
	files   map[*os.File]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// Listen serves the socket at path.
func Listen(path string) (*Listener, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen for seccomp listeners: %w", err)
	}
	l := &Listener{ln: ln, path: path, files: make(map[*os.File]struct{})}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Path is the socket's path, the profile's listenerPath.
func (l *Listener) Path() string { return l.path }

// Handle sets what runs while an execve is held, with the caller's pid in
// the shim's pid namespace. Until it is set, every execve continues at once.
func (l *Listener) Handle(f func(pid uint32)) {
	l.mu.Lock()
	l.handler = f
	l.mu.Unlock()
}

// Close stops serving. A process of the container that calls execve after
// its listener is closed gets ENOSYS: close after the container's processes
// are gone.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	err := l.ln.Close()
	for f := range l.files {
		f.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

func (l *Listener) accept() {
	defer l.wg.Done()
	for {
		conn, err := l.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		fds, _ := receiveFds(conn)
		conn.Close()
		for _, fd := range fds {
			l.serve(fd)
		}
	}
}

// receiveFds reads the runtime's one message: the process state (JSON,
// not needed here: the socket names the container) and the listener, as
// SCM_RIGHTS.
func receiveFds(conn *net.UnixConn) ([]int, error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds, nil
}

// serve answers one seccomp listener until every process using its filter
// has exited, or the Listener closes.
func (l *Listener) serve(fd int) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "seccomp-listener")
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		f.Close()
		return
	}
	l.files[f] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		defer func() {
			l.mu.Lock()
			delete(l.files, f)
			l.mu.Unlock()
			f.Close()
		}()
		rc, err := f.SyscallConn()
		if err != nil {
			return
		}
		for {
			n, err := recv(rc)
			if errors.Is(err, errHangup) || errors.Is(err, os.ErrClosed) {
				return
			}
			if err != nil {
				continue // the task was interrupted before we got it
			}
			l.mu.Lock()
			h := l.handler
			l.mu.Unlock()
			if h != nil {
				h(n.Pid)
			}
			// ENOENT: the task was interrupted or killed meanwhile.
			_ = send(rc, n.ID)
		}
	}()
}

// The kernel's struct seccomp_notif and seccomp_notif_resp.
type notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  struct {
		Nr   int32
		Arch uint32
		IP   uint64
		Args [6]uint64
	}
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

var errHangup = errors.New("no process uses the filter any more")

// recv waits, in Go's poller, for a notification and receives it.
func recv(rc syscall.RawConn) (notif, error) {
	var n notif
	var err error
	rerr := rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, perr := unix.Poll(p, 0); perr != nil {
			return false
		}
		if p[0].Revents&unix.POLLIN == 0 {
			if p[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
				err = errHangup
				return true
			}
			return false
		}
		n = notif{}
		err = ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n))
		return true
	})
	if rerr != nil {
		return n, rerr
	}
	return n, err
}

// send lets the held system call go on as if no filter had been there.
func send(rc syscall.RawConn, id uint64) error {
	r := notifResp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
	}); cerr != nil {
		return cerr
	}
	return err
}

func ioctl(fd uintptr, req uint, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg)); e != 0 {
		return e
	}
	return nil
}
