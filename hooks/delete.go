package hooks

import (
	"context"
	"errors"
	"os"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/tree"
)

// Teardown runs before the runtime deletes the container: stop detecting its
// tool calls, kill everything in C (cgroup.kill), wait until C is empty, end
// the tool calls still recorded as running, and remove C's sub-cgroups. C
// itself is left to the runtime.
func (c *Container) Teardown(ctx context.Context) error {
	defer c.empty.Close()
	defer c.cancel()
	defer c.events.close() // no call publishes after teardown; queued events still go
	if c.governor != nil {
		c.governor.Stop(c.st.ID)
	}
	c.placeMu.Lock()
	c.closing = true
	c.placeMu.Unlock()
	c.placing.Wait() // no spare or call is made from here on
	c.unwatch()
	if c.hold != nil {
		// After the kill: a process of the container that calls execve
		// once its listener is gone gets ENOSYS.
		defer c.hold.Close()
	}
	killErr := c.tree.Kill(ctx)
	for _, cl := range c.running() {
		c.endCall(ctx, cl)
	}
	c.mu.Lock()
	for id, pe := range c.pending { // created, never started
		if pe.stderr != nil {
			pe.stderr.Close()
		}
		delete(c.pending, id)
	}
	c.mu.Unlock()
	c.calls.close() // the last records, and no write after teardown
	if killErr != nil {
		return killErr // the tree cannot go while processes are in it
	}
	return c.tree.Remove()
}

// RemoveState removes the container's state folder, once the runtime (which
// runs through the wrapper linked there) has deleted the container.
func (c *Container) RemoveState() error { return state.Remove(c.dir) }

// Cleanup is Teardown for a container whose shim is gone (containerd's
// `delete` action after a shim crash), from what the state folder says. A
// container that never got a state folder has nothing to clean up.
func Cleanup(ctx context.Context, dir string) error {
	st, err := state.Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Cgroup != "" {
		t := tree.Of(st.Cgroup)
		if err := t.Kill(ctx); err != nil {
			return err
		}
		if err := t.Remove(); err != nil {
			return err
		}
		log.G(ctx).WithField("cgroup", st.Cgroup).Info("cleaned up agent/tools cgroups after the shim exited")
	}
	return nil
}
