package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// call is a started tool call and what the shim tells its agent.
type call struct {
	*toolcall.Call
	dir  string
	tell *teller
}

// WaitFunc waits for a process to exit and returns its exit status.
type WaitFunc func(ctx context.Context) (status uint32, exitedAt time.Time, err error)

// track follows a started tool call, whose first process has the tool
// calls' oom_score_adj: it hands it to the governor, and ends the call when
// its process has exited (wait returns) and its cgroup is empty.
func (c *Container) track(ctx context.Context, cl *call, wait WaitFunc) {
	c.mu.Lock()
	c.live[cl.ID()] = cl
	c.mu.Unlock()
	c.calls.add(cl.Call)
	// A session is no burst to freeze: the commands it runs are.
	if c.governor != nil && cl.Kind() != toolcall.KindSession {
		c.governor.Watch(c.st.ID, cl.Call)
	}
	go func() {
		status, at, err := wait(c.ctx)
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, errExitUnseen) {
			log.G(ctx).WithError(err).WithField("call", cl.ID()).Warn("wait for tool call")
		}
		switch {
		case err == nil:
			cl.Exit(status, at)
			c.calls.save()
			c.tellExit(ctx, cl, status)
		case errors.Is(err, errExitUnseen): // gone, by a signal the detector did not see
			c.tellExit(ctx, cl, toolcall.SigkillStatus)
		}
		if err := c.empty.Wait(c.ctx, cl.dir); err != nil {
			if c.ctx.Err() != nil {
				return // the container's teardown ends the call
			}
			log.G(ctx).WithError(err).WithField("call", cl.ID()).Warn("watch tool-call cgroup; polling it instead")
			if !pollEmpty(c.ctx, cl.dir) {
				return
			}
		}
		c.endCall(ctx, cl)
	}()
}

// pollEmpty waits, once a second, for dir to be empty or gone; false when
// ctx ends first.
func pollEmpty(ctx context.Context, dir string) bool {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if populated, err := cgroupfs.Populated(dir); err != nil || !populated {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// endCall reads the ended call's memory figures into its record, says how it
// ended (and tells the agent and containerd why it was killed) and removes
// its cgroup. It runs once per call, from whichever of the call's own
// watcher and the container's teardown gets there first.
func (c *Container) endCall(ctx context.Context, cl *call) {
	c.mu.Lock()
	_, live := c.live[cl.ID()]
	delete(c.live, cl.ID())
	c.mu.Unlock()
	if !live {
		return
	}
	if c.governor != nil {
		c.governor.Unwatch(c.st.ID, cl.Call)
	}
	m, err := c.tree.Measure(layout.CallCgroup(cl.ID()))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).WithField("call", cl.ID()).Warn("measure tool call")
	}
	if m.OOM > 0 {
		c.toolOOM(cl.dir, m.OOMKills)
	}
	rec, err := cl.End(time.Now(), m, c.killReason(cl, m))
	if err != nil {
		log.G(ctx).WithError(err).Warn("end tool call")
	}
	if err := c.removeCall(cl.ID()); err != nil {
		log.G(ctx).WithError(err).WithField("cgroup", rec.Cgroup).Warn("remove tool-call cgroup")
	}
	c.calls.markEnded(cl.Call)
	fields := log.Fields{"call": rec.ID, "state": rec.State, "memory_peak": rec.MemoryPeakBytes}
	if rec.PidsMaxEvents > 0 {
		log.G(ctx).WithFields(fields).WithField("refused_forks", rec.PidsMaxEvents).Warn("tool call met its pids.max: forks failed")
	}
	if rec.Reason != "" {
		log.G(ctx).WithFields(fields).Warn(rec.Reason)
		c.events.publish(ctx, topicKilled, c.event(rec, rec.Reason))
	} else {
		log.G(ctx).WithFields(fields).Debug("tool call ended")
	}
	cl.tell.close(ctx, rec.Reason) // the container's teardown, before the exit was seen
}

// newCall creates tool call id's cgroup with the tool-call limits and, with
// a detector, has its forks watched for escapes, before any process runs
// there.
func (c *Container) newCall(id string) error {
	if c.detector != nil {
		c.mu.Lock()
		n := len(c.callCgroups)
		c.mu.Unlock()
		if n >= bpf.MaxCalls {
			return fmt.Errorf("the container has %d tool-call cgroups, the most one container may have: %w", n, errdefs.ErrResourceExhausted)
		}
	}
	l := c.limits.Load()
	if err := c.tree.NewCall(id, l.tool); err != nil {
		return err
	}
	if now := c.limits.Load(); now != l { // resized meanwhile
		if err := c.tree.Update(layout.CallCgroup(id), now.tool); err != nil {
			_ = c.tree.RemoveCall(id)
			return err
		}
	}
	if c.detector == nil {
		return nil
	}
	cg, err := cgroupfs.ID(c.tree.CallDir(id))
	if err == nil {
		err = c.detector.AddCall(cg, c.agentID)
	}
	if err != nil {
		_ = c.tree.RemoveCall(id)
		return err
	}
	c.mu.Lock()
	c.callCgroups[id] = cg
	c.mu.Unlock()
	return nil
}

// removeCall removes an ended call's cgroup.
func (c *Container) removeCall(id string) error {
	c.mu.Lock()
	cg, ok := c.callCgroups[id]
	delete(c.callCgroups, id)
	delete(c.sessionCalls, id)
	c.mu.Unlock()
	if ok {
		c.detector.RemoveCall(cg)
	}
	return c.tree.RemoveCall(id)
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
