package hooks

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
)

// call is a running tool call as the shim follows it.
type call struct {
	rec  *state.Record
	dir  string
	tell io.WriteCloser // an exec's stderr; nil for fork calls

	high                  uint64 // memory.events "high" last seen
	lastHigh, throttledAt time.Time
	frozenAt, freezeAsked time.Time
	stallSince            time.Time
	lastFull              time.Duration // memory.pressure "full" at the last review
	killReason            string
}

// settle ends a frozen spell.
func (cl *call) settle(now time.Time) {
	if cl.frozenAt.IsZero() {
		return
	}
	cl.rec.FrozenSeconds += now.Sub(cl.frozenAt).Seconds()
	cl.frozenAt, cl.freezeAsked = time.Time{}, time.Time{}
	cl.rec.State = state.Running
	if !cl.throttledAt.IsZero() {
		cl.rec.State = state.Throttled
	}
}

// track follows a started tool call: it raises the oom_score_adj of its
// first process, hands its memory.events and cgroup.events to the governor,
// and ends the call when its process has exited (wait returns) and its cgroup
// is empty.
func (c *Container) track(ctx context.Context, cl *call, wait WaitFunc) {
	if err := raiseOOMScore(cl.rec.Pid); err != nil {
		log.G(ctx).WithError(err).WithField("call", cl.rec.ID).Warn("raise oom_score_adj of tool call")
	}
	c.mu.Lock()
	c.calls.add(cl.rec)
	c.live[cl.rec.ID] = cl
	c.calls.save(ctx)
	c.mu.Unlock()
	if c.poller != nil {
		// A call too short to be watched has nothing to report.
		_ = c.poller.AddFile(memoryEventsKey{cl}, cl.dir, "memory.events")
		_ = c.poller.AddFile(cgroupEventsKey{cl}, cl.dir, "cgroup.events")
	}

	go func() {
		status, at, err := wait(c.ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.G(ctx).WithError(err).WithField("call", cl.rec.ID).Warn("wait for tool call")
		}
		c.mu.Lock()
		if err == nil {
			cl.rec.ExitCode = &status
			at := at.UTC()
			cl.rec.End = &at
		}
		c.mu.Unlock()
		if err := waitEmpty(c.ctx, cl.dir); err != nil {
			return // the container's teardown ends the call
		}
		c.endCall(ctx, cl)
	}()
}
