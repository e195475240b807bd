package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// A call's processes found outside its cgroup go back into it: children
// forked before their parent was moved, escapees (clone3 CLONE_INTO_CGROUP)
// and their children, and whatever events lost to a full ring buffer
// reported. The kernel's bookkeeping (Member) says which call each belongs
// to, so none is left in C/agent under the agent's protection.

// errNoCall: the call a process belongs to is not live (any more).
var errNoCall = errors.New("its tool call is not running")

// errNotInContainer: a pid the shim was told of names no process in the
// container's cgroups (any more).
var errNotInContainer = fmt.Errorf("not in the container's cgroup: %w", syscall.ESRCH)

// placeChild moves a process that a call forked before it was moved.
func (c *Container) placeChild(ctx context.Context, ev bpf.Event) {
	err := c.reclaim(proc{pid: ev.Pid, start: ev.Start}, bpf.Member{Leader: ev.Leader, Call: ev.Call})
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, errNoCall) {
		log.G(ctx).WithError(err).WithField("pid", ev.Pid).Warn("move a tool call's child")
	}
}

// escaped moves a process that a tool call's process cloned into another
// cgroup (clone3 CLONE_INTO_CGROUP with an fd on C/agent, another call, a
// spare, or, where the container sees the host's cgroupfs, anywhere) back
// into the call, or kills it where it cannot: it would live outside its
// call's limits, and in C/agent under the agent's protection. With the
// start time the detector gives, the pid names the escapee wherever it is;
// without, only a process in the container's cgroups is acted on.
func (c *Container) escaped(ctx context.Context, ev bpf.Event) {
	l := log.G(ctx).WithFields(log.Fields{"pid": ev.Pid, "parent": ev.Leader})
	who := proc{pid: ev.Pid, start: ev.Start}
	in := func(cg string) bool { return strings.HasPrefix(cg, c.tree.Group+"/") }
	if who.start != 0 {
		in = func(string) bool { return true }
	}
	p, err := who.open(in)
	if err != nil {
		return // gone, or another process by now
	}
	defer p.Close()
	if id, ok := c.callOf(bpf.Member{Call: ev.Call}); ok {
		err := c.tree.Move(id, who.pid)
		if err == nil {
			l.Warn("moved a process that a tool call cloned into another cgroup (clone3 CLONE_INTO_CGROUP) back into the call")
			return
		}
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		l.WithError(err).Warn("move a process that left its tool call's cgroup")
	}
	if err := unix.PidfdSendSignal(int(p.Fd()), unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, syscall.ESRCH) {
		l.WithError(err).Warn("kill a process that left its tool call's cgroup")
		return
	}
	l.Warn("killed a process that a tool call cloned into another cgroup (clone3 CLONE_INTO_CGROUP): its call has ended, and it would have escaped the call's limits")
}

// rescan looks through C/agent once the detector has lost events of the
// container: a call's process there goes into its call, and a leader whose
// exec was not seen is handled as if it had been.
func (c *Container) rescan(ctx context.Context) {
	pids, err := cgroupfs.ProcsBelow(c.tree.AgentDir())
	if err != nil {
		log.G(ctx).WithError(err).Warn("scan the agent's cgroup after lost detector events")
		return
	}
	var moved int
	for _, p := range pids {
		pid := uint32(p)
		m, ok := c.detector.Member(pid, c.agentID)
		if !ok || c.isAgent(pid) {
			continue // the agent's, a session, or a fresh child
		}
		if m.Leader == pid && !c.following(pid) {
			c.unseenExec(ctx, pid)
			moved++
			continue
		}
		if err := c.reclaim(proc{pid: pid}, m); errors.Is(err, errNoCall) {
			c.place(ctx, proc{pid: pid}, bpf.Since(0), toolcall.KindFork) // its call is gone: a call of its own
		}
		moved++
	}
	log.G(ctx).WithField("processes", moved).Warn("scanned the agent's cgroup after lost detector events")
}

// unseenExec handles a tool call's exec whose event was lost.
func (c *Container) unseenExec(ctx context.Context, pid uint32) {
	argv, err := cmdline(pid)
	if err != nil {
		return // gone
	}
	parent, err := parentOf(pid)
	if err != nil {
		return
	}
	c.detected(ctx, bpf.Event{Kind: bpf.Tool, Pid: pid, Args: argv, Parent: parent, Forked: bpf.Since(0), Unplaced: true})
}

// following reports whether pid leads a call the shim follows.
func (c *Container) following(pid uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.forks[pid]
	return ok
}

// reclaim moves who, a process of the container, into the call m names.
func (c *Container) reclaim(who proc, m bpf.Member) error {
	id, ok := c.callOf(m)
	if !ok {
		return errNoCall
	}
	p, err := c.containerPidfd(who)
	if err != nil {
		return err
	}
	defer p.Close()
	return c.tree.Move(id, who.pid)
}

// callOf returns the running call m names, by its leader or its cgroup (a
// spare's is no call's).
func (c *Container) callOf(m bpf.Member) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fc := c.forks[m.Leader]; m.Leader != 0 && fc != nil {
		return fc.ID(), true
	}
	if m.Call == 0 {
		return "", false
	}
	for id, cg := range c.callCgroups {
		_, live := c.live[id]
		_, starting := c.pending[id] // an exec's, running before it is tracked
		if cg == m.Call && (live || starting) {
			return id, true
		}
	}
	return "", false
}

// containerPidfd opens a pidfd on who, a process in one of the container's
// cgroups: a pid reused by a process elsewhere is refused.
func (c *Container) containerPidfd(who proc) (*os.File, error) {
	p, err := who.open(func(cg string) bool { return strings.HasPrefix(cg, c.tree.Group+"/") })
	if errors.Is(err, errElsewhere) {
		return nil, errNotInContainer
	}
	return p, err
}
