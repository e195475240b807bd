package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// PrepareExec creates C/tools/<execID> with the tool-call limits before the
// exec's first instruction runs in it. stderr, if not nil, is the exec's
// stderr, on which a killed call's reason is written at its end.
func (c *Container) PrepareExec(ctx context.Context, execID string, argv []string, stderr io.WriteCloser) error {
	if execID == "" || execID != filepath.Base(execID) || execID == "." || execID == ".." {
		return fmt.Errorf("exec id %q cannot name a cgroup: %w", execID, errdefs.ErrInvalidArgument)
	}
	c.waitWatch() // the call's cgroup is watched for escapes from the start
	if err := c.newCall(execID); errors.Is(err, os.ErrExist) {
		return fmt.Errorf("exec id %q is taken by a tool call the agent forked (their ids are %s<n>): %w", execID, forkPrefix, errdefs.ErrAlreadyExists)
	} else if err != nil {
		return fmt.Errorf("create tool-call cgroup for exec %q: %w", execID, err)
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

// StartedExec records a started exec as a running tool call.
func (c *Container) StartedExec(ctx context.Context, execID string, pid uint32, wait WaitFunc) {
	c.mu.Lock()
	pe := c.pending[execID]
	delete(c.pending, execID)
	c.mu.Unlock()
	c.raiseCallOOMScore(ctx, execID, pid)
	c.track(ctx, &call{
		Call: toolcall.New(toolcall.Record{
			ID: execID, Kind: toolcall.KindExec, Command: pe.argv, Pid: pid,
			Cgroup: c.tree.CallGroup(execID), Start: time.Now().UTC(),
		}),
		dir:  c.tree.CallDir(execID),
		tell: &teller{w: pe.stderr},
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
		if err := c.removeCall(execID); err != nil {
			log.G(ctx).WithError(err).WithField("exec", execID).Warn("remove cgroup of an exec that did not start")
		}
	}
}
