package hooks

import (
	"context"
	"errors"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
)

// The flush protocol: a forked call whose leader is gone waits until the
// event handler has handled every event the detector had for the container
// at that moment, its exit among them. Flush returns a number; the
// detector's Flushed event carries the highest number it covers.

// flushEvents returns once the event handler has handled every event the
// detector had for the container when it was called, or after exitGrace.
// In the container's teardown (the watch is gone) it waits for the exit
// event already on its way, for up to a second.
func (c *Container) flushEvents(ctx context.Context, fc *forkCall) {
	n, err := c.detector.Flush(c.agentID)
	if err != nil {
		if !errors.Is(err, bpf.ErrNotWatched) {
			log.G(ctx).WithError(err).Warn("flush the tool-call detector's events")
		}
		select {
		case <-fc.exited:
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		return
	}
	done := make(chan struct{})
	c.mu.Lock()
	if n <= c.flushedUpTo { // its Flushed was handled before this waiter came
		c.mu.Unlock()
		return
	}
	c.flushes[n] = append(c.flushes[n], done)
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(exitGrace):
		log.G(ctx).Warn("the tool-call detector's events were not flushed in time")
	}
}

// flushed releases the calls waiting for the flushes up to n.
func (c *Container) flushed(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushedUpTo = max(c.flushedUpTo, n)
	for k, waiters := range c.flushes {
		if k <= n {
			for _, w := range waiters {
				close(w)
			}
			delete(c.flushes, k)
		}
	}
}
