package hooks

import (
	"context"
	"errors"
	"os"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/sys"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/policy"
)

// toolOOMScoreAdj is given to a tool call's first process (its children
// inherit it): where an OOM above the call's own limit must pick a victim in
// C, the pool or on the host, the kernel picks a tool call before the agent
// (500 adds half the OOM scope's memory to the call's score), of a
// low-priority container before a normal one before a high one (200 apart:
// a fifth of the scope), and among equals the largest, whose kill frees the
// most memory and so kills the fewest calls.
func toolOOMScoreAdj(p policy.Priority) int {
	return 700 - 200*p.Rank()
}

// raiseCallOOMScore gives a new call's first process the tool calls'
// oom_score_adj.
func (c *Container) raiseCallOOMScore(ctx context.Context, id string, pid uint32) {
	if err := raiseOOMScore(pid, toolOOMScoreAdj(c.policy.Priority)); err != nil {
		log.G(ctx).WithError(err).WithField("call", id).Warn("raise oom_score_adj of tool call")
	}
}

// raiseOOMScore gives a tool call's process adj unless it has a higher one
// already.
func raiseOOMScore(pid uint32, adj int) error {
	cur, err := sys.GetOOMScoreAdj(int(pid))
	if err == nil && cur < adj {
		err = sys.SetOOMScore(int(pid), adj)
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return nil // exited already
	}
	return err
}
