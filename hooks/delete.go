package hooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/state"
)

// killTimeout bounds the wait for a killed tree to empty.
const killTimeout = 10 * time.Second

// Teardown runs before the runtime deletes the container: stop detecting its
// tool calls, kill everything in C (cgroup.kill), wait until C is empty, end
// the tool calls still recorded as running, and remove C's sub-cgroups. C
// itself is left to the runtime.
func (c *Container) Teardown(ctx context.Context) error {
	defer c.cancel()
	defer func() { // no call publishes after teardown; queued events still go
		c.mu.Lock()
		c.closeEvents()
		c.mu.Unlock()
	}()
	c.unwatch()
	c.placeMu.Lock()
	c.closing = true
	c.placeMu.Unlock()
	c.placing.Wait()
	if c.poller != nil {
		c.poller.Close()
	}
	if err := killTree(ctx, c.path); err != nil {
		return err
	}
	if c.hold != nil {
		c.hold.Close()
	}
	for _, cl := range c.running() {
		c.endCall(ctx, cl)
	}
	c.mu.Lock()
	c.calls.flush(ctx) // the last records, and no write pending after teardown
	c.mu.Unlock()
	return removeSubtree(c.path)
}

// killTree kills every process in dir and below and waits until it is empty.
func killTree(ctx context.Context, dir string) error {
	populated, err := cgroupfs.Populated(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || !populated {
		return err
	}
	if err := cgroupfs.Kill(dir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	return cgroupfs.WaitEmpty(ctx, dir)
}

func removeSubtree(dir string) error {
	for _, sub := range []string{toolsDir, agentDir} {
		if err := cgroupfs.RemoveTree(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	return nil
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
		path := cgroupfs.Path(st.Cgroup)
		if err := killTree(ctx, path); err != nil {
			return err
		}
		if err := removeSubtree(path); err != nil {
			return err
		}
		log.G(ctx).WithField("cgroup", st.Cgroup).Info("cleaned up agent/tools cgroups after the shim exited")
	}
	return nil
}
