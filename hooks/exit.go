package hooks

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/state"
)

// waitEmpty waits for a tool call's cgroup to empty; a cgroup already gone
// counts as empty.
func waitEmpty(ctx context.Context, dir string) error {
	err := cgroupfs.WaitEmpty(ctx, dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

const sigkillStatus = 128 + 9

// endCall reads the ended call's memory figures into its record, says how it
// ended (and tells the agent and containerd why it was killed) and removes
// its cgroup. It runs once per call, from whichever of the call's own
// watcher and the container's teardown gets there first.
func (c *Container) endCall(ctx context.Context, cl *call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := cl.rec
	if _, live := c.live[rec.ID]; !live {
		return
	}
	delete(c.live, rec.ID)
	if c.poller != nil {
		c.poller.Remove(memoryEventsKey{cl})
		c.poller.Remove(cgroupEventsKey{cl})
	}
	now := time.Now()
	cl.settle(now)
	if !cl.throttledAt.IsZero() {
		rec.ThrottledSeconds += now.Sub(cl.throttledAt).Seconds()
	}
	ev := rec.Measure()
	rec.Reason = c.killReason(cl, ev.OOM > 0)
	switch {
	case rec.OOMKills > 0:
		rec.State = state.OOMKilled
	case rec.ExitCode == nil || *rec.ExitCode == sigkillStatus:
		rec.State = state.Killed
	default:
		rec.State = state.Exited
	}
	if rec.End == nil {
		end := now.UTC()
		rec.End = &end
	}
	if err := os.Remove(cl.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).WithField("cgroup", rec.Cgroup).Warn("remove tool-call cgroup")
	}
	c.calls.markEnded(rec)
	c.calls.save(ctx)
	fields := log.Fields{"call": rec.ID, "state": rec.State, "memory_peak": rec.MemoryPeakBytes}
	if rec.Reason != "" {
		log.G(ctx).WithFields(fields).Warn(rec.Reason)
		c.publish(ctx, topicKilled, cl, rec.Reason)
	} else {
		log.G(ctx).WithFields(fields).Debug("tool call ended")
	}
	if cl.tell != nil {
		go tell(ctx, cl.tell, rec.Reason)
	}
}

// running returns the calls still running.
func (c *Container) running() []*call {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*call, 0, len(c.live))
	for _, cl := range c.live {
		out = append(out, cl)
	}
	return out
}
