package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
)

// ExecCgroup is the cgroup, relative to the container's, in which an exec
// starts: the OCI runtime wrapper passes it as `exec --cgroup`.
func ExecCgroup(execID string) string { return path.Join(toolsDir, execID) }

// PrepareExec creates C/tools/<execID> with the tool-call limits before the
// exec's first instruction runs in it. stderr, if not nil, is the exec's
// stderr, on which a killed call's reason is written at its end.
func (c *Container) PrepareExec(ctx context.Context, execID string, argv []string, stderr io.WriteCloser) error {
	if execID == "" || execID != filepath.Base(execID) || execID == "." || execID == ".." {
		return fmt.Errorf("exec id %q cannot name a cgroup: %w", execID, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Join(c.path, toolsDir, execID)
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		return fmt.Errorf("exec id %q is taken by a tool call the agent forked (their ids are %s<n>): %w", execID, forkPrefix, errdefs.ErrAlreadyExists)
	} else if err != nil {
		return fmt.Errorf("create tool-call cgroup %s: %w", dir, err)
	}
	if err := c.setToolLimits(dir); err != nil {
		os.Remove(dir)
		return err
	}
	c.mu.Lock()
	c.pending[execID] = pendingExec{argv, stderr}
	c.mu.Unlock()
	return nil
}

// pendingExec is an exec between Exec and Start.
type pendingExec struct {
	argv   []string
	stderr io.WriteCloser
}

// WaitFunc waits for a process to exit and returns its exit status.
type WaitFunc func(ctx context.Context) (status uint32, exitedAt time.Time, err error)

// StartedExec records a started exec as a running tool call.
func (c *Container) StartedExec(ctx context.Context, execID string, pid uint32, wait WaitFunc) {
	c.mu.Lock()
	pe := c.pending[execID]
	delete(c.pending, execID)
	c.mu.Unlock()
	c.track(ctx, &call{
		rec: &state.Record{
			ID: execID, Kind: "exec", Command: pe.argv, Pid: pid,
			Cgroup: path.Join(c.st.Cgroup, toolsDir, execID),
			Start:  time.Now().UTC(), State: state.Running,
		},
		dir:  filepath.Join(c.path, toolsDir, execID),
		tell: pe.stderr,
	}, wait)
}

// AbortExec removes the cgroup of an exec that never started.
func (c *Container) AbortExec(ctx context.Context, execID string) {
	c.mu.Lock()
	pe, ok := c.pending[execID]
	delete(c.pending, execID)
	c.mu.Unlock()
	if ok {
		if pe.stderr != nil {
			pe.stderr.Close()
		}
		if err := os.Remove(filepath.Join(c.path, toolsDir, execID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.G(ctx).WithError(err).WithField("exec", execID).Warn("remove cgroup of an exec that did not start")
		}
	}
}
