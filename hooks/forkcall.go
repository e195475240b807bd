package hooks

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf"
	"golang.org/x/sys/unix"
)

// forkCall is a tool call the detector found: the agent forked it and it
// executed a new program.
type forkCall struct {
	*call
	pid    uint32
	status uint32
	exited chan struct{} // closed with the leader's exit, as the detector saw it
	// leader is the leader's pidfd: it says the leader is gone even when
	// the detector cannot (killed while held, before it was claimed; an
	// exit event lost), and it names this process, not a later one that
	// reuses its pid.
	leader *os.File
}

// exitGrace bounds the wait for the detector's events once a leader is
// gone: the kernel wrote its exit event before the leader was gone, so only
// a detector that stopped reading leaves the wait to end here.
const exitGrace = 10 * time.Second

// errExitUnseen: the leader is gone and its exit status is unknown.
var errExitUnseen = errors.New("the leader's exit was not seen")

// wait waits for the leader's exit. Its pidfd can say it is gone before the
// event handler has reached its exit event, on a busy host by seconds;
// flush waits until the handler has.
func (fc *forkCall) wait(ctx context.Context, flush func(context.Context, *forkCall)) (uint32, time.Time, error) {
	defer fc.leader.Close()
	select {
	case <-fc.exited:
		return fc.status, time.Now(), nil
	case <-ctx.Done():
		return 0, time.Time{}, ctx.Err()
	case <-pidfdGone(fc.leader):
	}
	flush(ctx, fc)
	select {
	case <-fc.exited:
		return fc.status, time.Now(), nil
	default:
		return 0, time.Time{}, errExitUnseen
	}
}

// pidfdGone returns a channel closed once the process behind pidfd has
// exited, or the pidfd is closed.
func pidfdGone(pidfd *os.File) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		if rc, err := pidfd.SyscallConn(); err == nil {
			_ = rc.Read(func(fd uintptr) bool { // in Go's poller: no thread waits
				p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, err := unix.Poll(p, 0)
				return err != nil || n > 0
			})
		}
	}()
	return gone
}

// callExited records the leader's exit, which the detector saw.
func (c *Container) callExited(pid, status uint32) {
	c.mu.Lock()
	fc := c.forks[pid]
	delete(c.forks, pid)
	c.mu.Unlock()
	if fc != nil {
		fc.status = status
		close(fc.exited)
	}
}

// forget drops a call's leader from the calls by pid, so that a later
// process with the same pid is a call of its own; a leader gone unseen (killed
// while held, as it was claimed) is dropped from the detector's calls too.
func (c *Container) forget(fc *forkCall, unseen bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forks[fc.pid] == fc {
		delete(c.forks, fc.pid)
		if unseen {
			c.detector.Forget(fc.pid, c.agentID)
		}
	}
}

// maxCommand bounds a record's command line: agents wrap a command in long
// shell preambles (and Codex in its own helper's argv), and a record is
// rewritten with every save.
const maxCommand = 4096

// command is the leader's argv for its record: the exec event's, or, where
// the event cut it, the whole of it from /proc (clipped), read while the
// leader's pidfd says the pid is still its own.
func (fc *forkCall) command(ev bpf.Event) []string {
	if !ev.ArgsCut {
		return ev.Args
	}
	argv, err := cmdline(fc.pid)
	if err != nil || unix.PidfdSendSignal(int(fc.leader.Fd()), 0, nil, 0) != nil {
		return ev.Args // gone: the file may be a later process's
	}
	return clip(argv, maxCommand)
}

// clip keeps an argv within max bytes: its first quarter and its last
// three, where agents put the model's command, with "..." between.
func clip(argv []string, max int) []string {
	n := 0
	for _, a := range argv {
		n += len(a) + 1
	}
	if n <= max {
		return argv
	}
	var head, tail []string
	for room, i := max/4, 0; i < len(argv) && room > 0; i++ {
		a := argv[i][:min(len(argv[i]), room)]
		head, room = append(head, a), room-len(a)-1
	}
	for room, i := max-max/4, len(argv)-1; i >= 0 && room > 0; i-- {
		a := argv[i][len(argv[i])-min(len(argv[i]), room):]
		tail, room = append([]string{a}, tail...), room-len(a)-1
	}
	return append(append(head, "..."), tail...)
}
