package hooks

import (
	"context"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/exechold"
)

// eventBuffer is how many detector events wait for the handler: a burst of
// calls waits here rather than in the kernel's ring buffer.
const eventBuffer = 1024

// watch starts detecting the tool calls that processes in C/agent fork.
// With a hold, their first execve waits until they are placed.
func (c *Container) watch(ctx context.Context, d Detector) error {
	id, err := cgroupfs.ID(c.tree.AgentDir())
	if err != nil {
		return err
	}
	events := make(chan bpf.Event, eventBuffer)
	if err := d.Watch(id, events); err != nil {
		return err
	}
	c.detector, c.agentID = d, id
	c.refill(ctx)
	go c.handleEvents(ctx, events)
	return nil
}

// startWatch has the detector watch the container. With the hold, the watch
// runs in the background: every held execve waits for it, init's into the
// agent's program first, so no agent code runs unwatched; the watch's cost,
// an RCU grace period per map-of-maps update in the kernel, then overlaps
// the container's start instead of adding to its create. A watch that fails
// there leaves the container with its exec'd calls detected only, said in
// the log.
func (c *Container) startWatch(ctx context.Context, d Detector) error {
	if c.hold == nil {
		return c.watch(ctx, d)
	}
	ctx = context.WithoutCancel(ctx) // the create's request ends first
	done := make(chan struct{})
	c.watching = done
	c.hold.Handle(func(r *exechold.Request) exechold.Payer {
		<-done
		if c.detector == nil {
			return exechold.Agent
		}
		return c.placeHeld(ctx, r)
	})
	go func() {
		defer close(done)
		if err := c.watch(ctx, d); err != nil {
			log.G(ctx).WithError(err).Warn("no tool-call detection for this container: only exec'd tool calls get their own cgroup")
		}
	}()
	return nil
}

// waitWatch waits for a watch started in the background; detector and
// agentID are then final.
func (c *Container) waitWatch() {
	if c.watching != nil {
		<-c.watching
	}
}

// unwatch stops detection for the container.
func (c *Container) unwatch() {
	c.waitWatch()
	if c.detector == nil {
		return
	}
	c.detector.Unwatch(c.agentID)
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, cg := range c.callCgroups {
		c.detector.RemoveCall(cg)
		delete(c.callCgroups, id)
	}
}
