package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// A call's processes found outside its cgroup go back into it, or die:
// children forked before their parent was moved, escapees (clone3
// CLONE_INTO_CGROUP) and their children, and whatever events lost to a full
// ring buffer reported. The kernel's bookkeeping (Member) says which call
// each belongs to, so none is left in C/agent under the agent's protection.
// An escapee cloned where the agent's processes are (C/agent, a session's
// cgroup) and what it forked there die: what they allocated there stays
// charged there once moved (cgroup v2 moves no charge), and only their end
// gives it back. One cloned elsewhere is moved back.

// errNoCall: the call a process belongs to is not live (any more).
var errNoCall = errors.New("its tool call is not running")

// errNotInContainer: a pid the shim was told of names no process in the
// container's cgroups (any more).
var errNotInContainer = fmt.Errorf("not in the container's cgroup: %w", syscall.ESRCH)

// placeChild moves a process that a call forked before it was moved; an
// escapee's child (Leader 0) dies with it. A child of a call not running
// (any more) is left alone.
func (c *Container) placeChild(ctx context.Context, ev bpf.Event) {
	who := proc{pid: ev.Pid, start: ev.Start}
	if ev.Leader == 0 {
		c.killEscapee(ctx, who, ev.Leader)
		return
	}
	if c.isAgent(ev.Leader) {
		return // forked before its parent was taken for the agent: the agent's
	}
	err := c.reclaim(who, bpf.Member{Leader: ev.Leader, Call: ev.Call})
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, errNoCall) {
		log.G(ctx).WithError(err).WithField("pid", ev.Pid).Warn("move a tool call's child")
	}
}

// escaped handles a process that a tool call's process cloned into another
// cgroup (clone3 CLONE_INTO_CGROUP with an fd on C/agent, a session's,
// another call's or a spare's, or, where the container sees the host's
// cgroupfs, anywhere): it would live outside its call's limits. Cloned where
// the agent's processes are, it is killed; elsewhere it is moved back into
// its call, or killed where its call has ended. The start time the detector
// gives names it wherever it is.
func (c *Container) escaped(ctx context.Context, ev bpf.Event) {
	who := proc{pid: ev.Pid, start: ev.Start}
	p, err := who.open(func(string) bool { return true })
	if err != nil {
		return // gone, or another process by now
	}
	cg, err := who.check(p)
	p.Close()
	if err != nil {
		return
	}
	if c.agentWork(cg) {
		c.killEscapee(ctx, who, ev.Leader)
		return
	}
	l := log.G(ctx).WithFields(log.Fields{"pid": ev.Pid, "parent": ev.Leader})
	if id, ok := c.callOf(bpf.Member{Call: ev.Call}); ok {
		err := c.tree.Move(id, who.pid)
		if err == nil || errors.Is(err, syscall.ESRCH) {
			if err == nil {
				l.Warn("moved a process that a tool call cloned into another cgroup (clone3 CLONE_INTO_CGROUP) back into the call")
			}
			return
		}
		l.WithError(err).Warn("move a process that left its tool call's cgroup")
	}
	c.kill(who, func(string) bool { return true }, l, failedKill, "killed a process that a tool call cloned into another cgroup (clone3 CLONE_INTO_CGROUP): it would have escaped its call's limits")
}

// agentWork reports whether group (relative to the cgroup2 mount) is where
// the agent's processes are: C/agent or a session's cgroup.
func (c *Container) agentWork(group string) bool {
	return group == path.Join(c.tree.Group, layout.Agent) || c.inSession(group)
}

// killEscapee kills who, a call's process cloned where the agent's
// processes are, or a child it forked there.
func (c *Container) killEscapee(ctx context.Context, who proc, parent uint32) {
	l := log.G(ctx).WithFields(log.Fields{"pid": who.pid, "parent": parent})
	c.kill(who, c.agentWork, l, failedKill, "killed a process that a tool call cloned into the agent's cgroup (clone3 CLONE_INTO_CGROUP), or its child: what it holds there would be the agent's")
}

// failedKill is the line of an escapee's kill that failed.
const failedKill = "kill a process that left its tool call's cgroup"

// kill kills who, if in accepts its cgroup, and says so on l: done, or
// failed with the error.
func (c *Container) kill(who proc, in func(string) bool, l *log.Entry, failed, done string) {
	p, err := who.open(in)
	if err != nil {
		return // gone, elsewhere, or another process by now
	}
	defer p.Close()
	if err := unix.PidfdSendSignal(int(p.Fd()), unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, syscall.ESRCH) {
		l.WithError(err).Warn(failed)
		return
	}
	l.Warn(done)
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
		if !ok || c.isAgent(pid) || c.isAgent(m.Leader) {
			continue // the agent's, a session, or a fresh child
		}
		if m.Leader == pid && !c.following(pid) {
			c.unseenExec(ctx, pid)
			moved++
			continue
		}
		who := proc{pid: pid}
		if m.Leader == 0 { // an escapee, or its child
			c.killEscapee(ctx, who, 0)
			moved++
			continue
		}
		switch err := c.reclaim(who, m); {
		case errors.Is(err, errNoCall):
			c.place(ctx, who, bpf.Since(0), toolcall.KindFork) // its call is gone: a call of its own
		case err != nil && !errors.Is(err, syscall.ESRCH):
			log.G(ctx).WithError(err).WithField("pid", pid).Warn("move a tool call's child")
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
	c.detected(ctx, bpf.Event{Kind: bpf.Tool, Pid: pid, Args: clip(argv, maxCommand), Parent: parent, Forked: bpf.Since(0), Unplaced: true})
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
