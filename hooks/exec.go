package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/state"
)

// ExecCgroup is the cgroup, relative to the container's, in which an exec
// starts: the OCI runtime wrapper passes it as `exec --cgroup`.
func ExecCgroup(execID string) string { return path.Join(toolsDir, execID) }

// PrepareExec creates C/tools/<execID> with the tool-call limits before the
// exec's first instruction runs in it.
func (c *Container) PrepareExec(ctx context.Context, execID string, argv []string) error {
	if execID == "" || execID != filepath.Base(execID) || execID == "." || execID == ".." {
		return fmt.Errorf("exec id %q cannot name a cgroup: %w", execID, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Join(c.path, toolsDir, execID)
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		return fmt.Errorf("exec id %q is taken by a tool call the agent forked (their ids are %s<n>): %w", execID, forkPrefix, errdefs.ErrAlreadyExists)
	} else if err != nil {
		return fmt.Errorf("create tool-call cgroup %s: %w", dir, err)
	}
	if err := c.setMemory(dir, c.policy.ToolMemoryHigh, c.policy.ToolMemoryMax); err != nil {
		os.Remove(dir)
		return err
	}
	c.mu.Lock()
	c.pending[execID] = argv
	c.mu.Unlock()
	return nil
}

// WaitFunc waits for a process to exit and returns its exit status.
type WaitFunc func(ctx context.Context) (status uint32, exitedAt time.Time, err error)

// StartedExec records a started exec as a running tool call.
func (c *Container) StartedExec(ctx context.Context, execID string, pid uint32, wait WaitFunc) {
	c.mu.Lock()
	argv := c.pending[execID]
	delete(c.pending, execID)
	rec := &state.Record{
		ID: execID, Kind: "exec", Command: argv, Pid: pid,
		Cgroup: path.Join(c.st.Cgroup, toolsDir, execID),
		Start:  time.Now().UTC(), State: state.Running,
	}
	c.mu.Unlock()
	c.track(ctx, rec, wait)
}

// track records a started tool call. The call ends when its process has
// exited (wait returns) and its cgroup is empty: then its memory figures are
// read into the record and its cgroup is removed.
func (c *Container) track(ctx context.Context, rec *state.Record, wait WaitFunc) {
	c.mu.Lock()
	c.calls.add(rec)
	c.calls.save(ctx)
	c.mu.Unlock()

	go func() {
		status, at, err := wait(c.ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.G(ctx).WithError(err).WithField("call", rec.ID).Warn("wait for tool call")
		}
		c.mu.Lock()
		if err == nil {
			rec.ExitCode = &status
			at := at.UTC()
			rec.End = &at
		}
		c.mu.Unlock()
		if err := waitEmpty(c.ctx, cgroupfs.Path(rec.Cgroup)); err != nil {
			return // the container's teardown ends the call
		}
		c.endCall(ctx, rec)
	}()
}

// AbortExec removes the cgroup of an exec that never started.
func (c *Container) AbortExec(ctx context.Context, execID string) {
	c.mu.Lock()
	_, ok := c.pending[execID]
	delete(c.pending, execID)
	c.mu.Unlock()
	if ok {
		if err := os.Remove(filepath.Join(c.path, toolsDir, execID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.G(ctx).WithError(err).WithField("exec", execID).Warn("remove cgroup of an exec that did not start")
		}
	}
}
