package hooks

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/bpf"
)

// handleEvents handles the detector's events for the container, in order,
// until the container ends.
func (c *Container) handleEvents(ctx context.Context, events <-chan bpf.Event) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case ev := <-events:
			switch ev.Kind {
			case bpf.Tool:
				c.detected(ctx, ev)
			case bpf.Child:
				c.placeChild(ctx, ev)
			case bpf.Exit:
				c.callExited(ev.Pid, ev.ExitCode())
			case bpf.Escape:
				c.escaped(ctx, ev)
			case bpf.Flushed:
				c.flushed(ev.Flushes)
			case bpf.Full:
				c.detectorFull(ctx)
			}
		}
	}
}

// detected handles a new tool call's exec: it names a call placed while
// held, or places one now (no hold: the program has started in C/agent),
// and has the governor hold it back where there is no room for it.
func (c *Container) detected(ctx context.Context, ev bpf.Event) {
	c.mu.Lock()
	fc := c.forks[ev.Pid]
	c.mu.Unlock()
	if fc == nil { // no hold: seen after its exec
		prog := program{argv: ev.Args}
		prog.exe, _ = exeOf(ev.Pid)
		if !ev.Session { // what a session is replaced by is never the agent
			if why, ok := c.agentChild(ev.Pid, ev.Parent, prog); ok {
				c.joinAgent(ctx, ev.Pid, prog, why)
				return
			}
		}
		if c.isSession(prog) {
			c.keepSession(ctx, ev.Pid, prog)
			return
		}
		if fc = c.place(ctx, ev.Pid, ev.Forked, false); fc == nil {
			return
		}
	}
	fc.Named(ev.Args, ev.Unplaced)
	c.calls.save()
	if c.governor != nil {
		// Its program has just started: where it would start into an OOM
		// kill, it waits for room instead.
		c.governor.FreezeAtStart(c.st.ID, fc.Call, time.Now())
	}
}

// placeChild moves a process that a call forked before it was moved.
func (c *Container) placeChild(ctx context.Context, ev bpf.Event) {
	c.mu.Lock()
	fc := c.forks[ev.Leader]
	c.mu.Unlock()
	if fc == nil {
		return
	}
	p, err := c.agentPidfd(ev.Pid)
	if err != nil {
		return // gone, or moved already
	}
	defer p.Close()
	if err := c.tree.Move(fc.ID(), ev.Pid); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.G(ctx).WithError(err).WithField("call", fc.ID()).Warn("move a tool call's child")
	}
}

// escaped kills a process that a tool call's process cloned into another
// cgroup (clone3 CLONE_INTO_CGROUP with an fd on C/agent, another call or a
// spare): it would live outside its call's limits, and in C/agent under the
// agent's protection.
func (c *Container) escaped(ctx context.Context, ev bpf.Event) {
	l := log.G(ctx).WithFields(log.Fields{"pid": ev.Pid, "parent": ev.Leader})
	p, err := pidfd(ev.Pid)
	if errors.Is(err, syscall.ESRCH) {
		return
	}
	if err == nil {
		// Only a process of this container: the pid may name another by now.
		if cg, cerr := cgroupOfPidfd(p, ev.Pid); cerr != nil || !strings.HasPrefix(cg, c.tree.Group+"/") {
			p.Close()
			return
		}
		err = unix.PidfdSendSignal(int(p.Fd()), unix.SIGKILL, nil, 0)
		p.Close()
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		l.WithError(err).Warn("kill a process that left its tool call's cgroup")
		return
	}
	l.Warn("killed a process that a tool call cloned into another cgroup (clone3 CLONE_INTO_CGROUP): it would have escaped the call's limits")
}

// detectorFull says that the container's share of the detector is full: a
// fresh child past it is not tracked. With the hold, it is placed anyway
// when it executes a program; without, it runs in C/agent. Logged at the
// 1st, 10th, 100th... time.
func (c *Container) detectorFull(ctx context.Context) {
	if n := c.fullCount.Add(1); n == 1 || isPowerOf10(n) {
		log.G(ctx).WithFields(log.Fields{"untracked": n, "quota": bpf.Quota}).Warn("the container's share of the tool-call detector is full: its agent has that many fresh children that did not execute a program")
	}
}

func isPowerOf10(n uint64) bool {
	for n%10 == 0 && n > 1 {
		n /= 10
	}
	return n == 1
}
