package exechold

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// Listener serves the unix socket to which the OCI runtime sends the seccomp
// listener of every process it starts in the container (init, each exec),
// and answers their notifications: each held execve runs the handler, then
// continues as the kernel would have run it.
type Listener struct {
	ln   *net.UnixListener
	path string
	euid uint32

	// budgets are the time the shim may spend serving the container's
	// held execve, across all of its seccomp listeners, in microseconds:
	// one for the agent's own spawns, one for its tool calls' processes, so
	// that a call's exec loop delays only the container's calls, never the
	// agent's spawns. stop ends a wait at Close.
	budgets [2]*rate.Limiter
	stop    context.CancelFunc
	ctx     context.Context

	mu      sync.Mutex
	handler func(*Request) Payer
	files   map[*os.File]struct{}      // the seccomp listeners served
	conns   map[*net.UnixConn]struct{} // the connections not yet read
	closed  bool
	wg      sync.WaitGroup
}

// readTimeout bounds the wait for a peer's message. The runtime sends it
// as soon as it has connected; a peer that sends nothing is dropped rather
// than kept until Close.
var readTimeout = 5 * time.Second

// heldShare and heldBurst bound the shim's CPU spent serving one
// container's held execve: each costs the shim a wake-up, a round trip and
// a few system calls outside the container's CPU limit, so a container that
// execs in a tight loop (of a missing binary, say) could otherwise keep a
// shim CPU busy. Past a quarter of a CPU on average, after a second's
// burst, the next execve waits in the kernel until the budget is back, at
// no cost to anyone but the looping container. Natively one costs so little
// that the budget allows far more execve a second than a build or a
// configure script runs (docs/benchmarks.md).
var (
	heldShare = 0.25
	heldBurst = time.Second
)

// Listen serves the socket at path. Only its owner may connect: the socket
// is created with mode 0600, and each peer must run as root (as the OCI
// runtime does) or as the shim's own user.
func Listen(path string) (*Listener, error) {
	_ = os.Remove(path)
	// bind(2) gives the socket file the socket's own mode less the umask:
	// set to 0600 before bind, no one else can connect even for a moment,
	// and no process-wide umask is changed under other goroutines.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = unix.Fchmod(int(fd), 0o600) }); cerr != nil {
			return cerr
		}
		return err
	}}
	nl, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen for seccomp listeners: %w", err)
	}
	ln := nl.(*net.UnixListener)
	// The umask can only have taken bits away; make it exactly 0600.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen for seccomp listeners: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &Listener{
		ln:   ln,
		path: path,
		euid: uint32(os.Geteuid()),
		budgets: [2]*rate.Limiter{
			rate.NewLimiter(rate.Limit(heldShare*1e6), int(heldBurst.Microseconds())),
			rate.NewLimiter(rate.Limit(heldShare*1e6), int(heldBurst.Microseconds())),
		},
		ctx:   ctx,
		stop:  stop,
		files: make(map[*os.File]struct{}),
		conns: make(map[*net.UnixConn]struct{}),
	}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Path is the socket's path, the profile's listenerPath.
func (l *Listener) Path() string { return l.path }

// Handle sets what runs while an execve is held, with the request (the
// caller's pid in the shim's pid namespace, and what it asks to run). Until
// it is set, every execve continues at once. It says whose budget the
// execve is charged to.
func (l *Listener) Handle(f func(*Request) Payer) {
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
	l.stop()
	err := l.ln.Close()
	for c := range l.conns {
		c.Close()
	}
	for f := range l.files {
		f.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// accept hands each connection to a goroutine of its own: a slow or silent
// peer must not keep the next process's runtime waiting.
func (l *Listener) accept() {
	defer l.wg.Done()
	for {
		conn, err := l.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// EMFILE and the like: try again, without spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !track(l, l.conns, conn) {
			return
		}
		go l.receive(conn)
	}
}

// closer is what the Listener closes at Close: a connection not yet read, a
// seccomp listener being served.
type closer interface {
	comparable
	io.Closer
}

// track adds c to set, which Close closes, and counts the goroutine that is
// to serve it; once the Listener is closed it closes c and returns false.
func track[C closer](l *Listener, set map[C]struct{}, c C) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return false
	}
	set[c] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	return true
}

// untrack ends what track began: c leaves set and is closed, and its
// goroutine is done.
func untrack[C closer](l *Listener, set map[C]struct{}, c C) {
	l.mu.Lock()
	delete(set, c)
	l.mu.Unlock()
	c.Close()
	l.wg.Done()
}

// receive serves the listeners one connection sends, if its peer may send
// them.
func (l *Listener) receive(conn *net.UnixConn) {
	defer untrack(l, l.conns, conn)
	if err := l.checkPeer(conn); err != nil {
		return // nothing to log to: the peer just gets no service
	}
	if err := conn.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		return
	}
	fds, exec, err := receiveFds(conn)
	if err != nil {
		return
	}
	for _, fd := range fds {
		l.serve(fd, exec)
	}
}

// checkPeer lets in root, as which the OCI runtime runs, and the shim's own
// user, as containerd's ttrpc does for the shim's socket: the socket's mode
// keeps others out, this keeps them out too should they be able to open it
// (a process with CAP_DAC_OVERRIDE as another user, a mode changed later).
func (l *Listener) checkPeer(conn *net.UnixConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred.Uid != 0 && cred.Uid != l.euid {
		return fmt.Errorf("peer of uid %d: %w", cred.Uid, unix.EPERM)
	}
	return nil
}

// receiveFds reads the runtime's one message: the process state (JSON)
// and the listener, as SCM_RIGHTS. exec says whether the listener is that
// of a process exec'd into the running container: runc and crun send the
// container's status "running" for those and "creating" for its init.
func receiveFds(conn *net.UnixConn) (fds []int, exec bool, err error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, false, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, false, err
	}
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	// A state that does not parse is taken for init's: its execve then get
	// the handler, which is never wrong, only slower.
	var st specs.ContainerProcessState
	exec = json.Unmarshal(buf[:n], &st) == nil && st.State.Status == specs.StateRunning
	return fds, exec, nil
}

// serve answers one seccomp listener until every process using its filter
// has exited, or the Listener closes. exec is the runtime's word that the
// listener's processes descend from an exec, not from the container's init.
func (l *Listener) serve(fd int, exec bool) {
	if !isSeccompListener(fd) {
		unix.Close(fd)
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "seccomp-listener")
	if !track(l, l.files, f) {
		return
	}
	go func() {
		defer untrack(l, l.files, f)
		rc, err := f.SyscallConn()
		if err != nil {
			return
		}
		for {
			n, err := recv(rc)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINTR) {
				// ENOENT: the task was interrupted or killed before we got
				// it. EINTR: a signal, not an answer. The next may be ours.
				continue
			}
			if err != nil {
				// Hangup; the file closed by Close (the raw conn reports
				// internal/poll's "use of closed file", which is not
				// os.ErrClosed); or an ioctl the fd does not know: nothing
				// more will come, and trying again would spin.
				return
			}
			start := time.Now()
			l.mu.Lock()
			h := l.handler
			l.mu.Unlock()
			payer := Agent
			if h != nil {
				payer = h(&Request{Pid: n.Pid, Exec: exec, n: n, rc: rc})
			}
			spent := max(time.Since(start), cpu.served(time.Now()))
			if payer == Call {
				// A call over its budget waits alone: this loop goes on
				// serving the agent's spawns.
				l.answer(rc, n.ID, l.charge(Call, spent))
				continue
			}
			// ENOENT: the task was interrupted or killed meanwhile.
			_ = send(rc, n.ID)
			if !l.wait(l.charge(Agent, spent)) {
				return // closed
			}
		}
	}()
}

// Payer is whose budget a held execve is charged to.
type Payer int

const (
	// Agent: the container's own spawns (its new tool calls, and anything
	// the handler cannot tell).
	Agent Payer = iota
	// Call: a process of a tool call already placed, or of an exec.
	Call
)

// charge charges spent, what one held execve cost to serve (the handler's
// time, or the shim's CPU per execve where that is more), to payer's
// budget, and returns how long the execve waits for the budget to be back.
func (l *Listener) charge(payer Payer, spent time.Duration) time.Duration {
	return l.budgets[payer].ReserveN(time.Now(), int(min(spent, heldBurst).Microseconds())).Delay()
}

// wait waits d; false if the Listener closed meanwhile.
func (l *Listener) wait(d time.Duration) bool {
	if d == 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// answer lets held execve id go on after d, without holding up the
// listener's other execve.
func (l *Listener) answer(rc syscall.RawConn, id uint64, d time.Duration) {
	if d == 0 {
		_ = send(rc, id)
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if l.wait(d) {
			_ = send(rc, id)
		}
	}()
}

// isSeccompListener says whether fd is a seccomp listener, by the name the
// kernel gives its anonymous inode. Where /proc cannot tell, it says yes:
// serve then ends at the first ioctl a listener would not fail.
func isSeccompListener(fd int) bool {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err != nil || target == "anon_inode:seccomp notify"
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

// seccompIoctlNotifIDValid is SECCOMP_IOCTL_NOTIF_ID_VALID, _IOW('!', 2,
// __u64), which x/sys/unix lacks.
const seccompIoctlNotifIDValid = 0x40082102

// valid reports whether notification id still waits: its task has not
// been killed or interrupted, so the pid it gave names that task still.
func valid(rc syscall.RawConn, id uint64) bool {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = ioctl(fd, seccompIoctlNotifIDValid, unsafe.Pointer(&id))
	}); cerr != nil {
		return false
	}
	return err == nil
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
