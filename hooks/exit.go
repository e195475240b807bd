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
// ended and removes its cgroup. It runs once per call, from whichever of the
// call's own watcher and the container's teardown gets there first.
func (c *Container) endCall(ctx context.Context, rec *state.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec.State != state.Running {
		return
	}
	rec.Measure()
	switch {
	case rec.OOMKills > 0:
		rec.State = state.OOMKilled
	case rec.ExitCode == nil || *rec.ExitCode == sigkillStatus:
		rec.State = state.Killed
	default:
		rec.State = state.Exited
	}
	if rec.End == nil {
		now := time.Now().UTC()
		rec.End = &now
	}
	if err := os.Remove(cgroupfs.Path(rec.Cgroup)); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).WithField("cgroup", rec.Cgroup).Warn("remove tool-call cgroup")
	}
	c.calls.markEnded(rec)
	c.calls.save(ctx)
	log.G(ctx).WithFields(log.Fields{"call": rec.ID, "state": rec.State, "memory_peak": rec.MemoryPeakBytes}).Debug("tool call ended")
}

// running returns the calls still running.
func (c *Container) running() []*state.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*state.Record
	for _, rec := range c.calls.order {
		if rec.State == state.Running {
			out = append(out, rec)
		}
	}
	return out
}
