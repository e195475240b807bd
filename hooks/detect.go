package hooks

import (
	"context"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/toolcall"
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
			case bpf.Lost:
				c.rescan(ctx)
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
	if fc != nil && ev.Session && fc.Kind() == toolcall.KindSession {
		// Placed while held, or replaced since: decided again from the
		// file that runs now.
		prog := program{argv: ev.Args}
		prog.exe, _ = exeOf(ev.Pid)
		if !c.isSession(prog) {
			c.sessionReplaced(ctx, fc, ev)
		} else if err := c.detector.Rearm(ev.Pid, c.agentID); err != nil {
			log.G(ctx).WithError(err).WithField("pid", ev.Pid).Warn("a session's next program will not be seen")
		}
		return
	}
	if fc == nil { // no hold: seen after its exec
		prog := program{argv: ev.Args}
		prog.exe, _ = exeOf(ev.Pid)
		if !ev.Session { // what a session is replaced by is never the agent
			if why, ok := c.agentChild(ev.Pid, ev.Parent, prog); ok {
				c.joinAgent(ctx, ev.Pid, prog, why)
				return
			}
		}
		who := proc{pid: ev.Pid, start: ev.Start}
		if c.isSession(prog) {
			c.keepSession(ctx, who, prog, ev.Forked)
			return
		}
		if fc = c.place(ctx, who, ev.Forked, toolcall.KindFork); fc == nil {
			return
		}
	}
	fc.Named(fc.command(ev), ev.Unplaced)
	c.calls.save()
	if c.governor != nil {
		// Its program has just started: where it would start into an OOM
		// kill, it waits for room instead. Off the event loop: the
		// decision may wait for the pool's lock, which other shims hold.
		go c.governor.FreezeAtStart(c.st.ID, fc.Call, time.Now())
	}
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
