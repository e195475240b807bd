package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree/layout"
	"github.com/containerd/log"
)

// TellPrefix starts the line a killed tool call leaves on its stderr.
const TellPrefix = "agentcgroup: "

// teller tells the agent why a tool call was killed, on the call's stderr
// (an exec's FIFO, or a forked call's fd 2 as the agent gave it), and closes
// it when the call's first process ends: the agent reads the line before
// the end of the stream, and a background job that outlives the process
// keeps the call, never the agent's stream. One goroutine writes, in order:
// the first reason given, then the close; callers never wait for it. A
// forked call's stream never makes it wait (stderr.go); an exec's FIFO is
// drained by containerd's client.
type teller struct {
	w io.WriteCloser // nil: nothing to tell on

	mu      sync.Mutex
	reason  string
	closing bool
	wake    chan struct{}
}

// say has the reason written, unless one was given before.
func (t *teller) say(ctx context.Context, reason string) { t.update(ctx, reason, false) }

// close has the reason written, unless one was given before, and the
// stream closed.
func (t *teller) close(ctx context.Context, reason string) { t.update(ctx, reason, true) }

func (t *teller) update(ctx context.Context, reason string, closing bool) {
	if t.w == nil {
		return
	}
	t.mu.Lock()
	if t.reason == "" && !t.closing { // nothing is said after the close
		t.reason = reason
	}
	t.closing = t.closing || closing
	if t.wake == nil {
		t.wake = make(chan struct{}, 1)
		go t.run(ctx)
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (t *teller) run(ctx context.Context) {
	told := false
	for range t.wake {
		t.mu.Lock()
		reason, closing := t.reason, t.closing
		t.mu.Unlock()
		if !told && reason != "" {
			told = true
			if _, err := io.WriteString(t.w, TellPrefix+reason+"\n"); err != nil {
				// A forked call's stream the agent does not drain fails at
				// once (stderr.go); the record still says why.
				log.G(ctx).WithError(err).WithField("reason", reason).Info("the agent was not told on the call's stderr")
			}
		}
		if closing {
			t.w.Close()
			return
		}
	}
}

// tellExit ends the call's stream when its first process ends, as under the
// runc shim: a background job it started keeps the call (its cgroup, limits
// and record) alive, never the agent's stream. A process killed by the
// call's OOM or by the governor leaves its reason first; both are counted
// before the kernel sends the SIGKILL.
func (c *Container) tellExit(ctx context.Context, cl *call, status uint32) {
	var reason string
	if status == toolcall.SigkillStatus {
		m, err := c.tree.Measure(layout.CallCgroup(cl.ID()))
		if err == nil || errors.Is(err, os.ErrNotExist) {
			reason = c.killReason(cl, m)
		}
	}
	cl.tell.close(ctx, reason)
}

// tellKilled says why a call was killed as soon as the kernel reports its
// OOM kill, ahead of its processes' exit.
func (c *Container) tellKilled(ctx context.Context, cl *call) {
	if m, err := c.tree.Measure(layout.CallCgroup(cl.ID())); err == nil {
		cl.tell.say(ctx, c.killReason(cl, m))
	}
}

// killReason says why an ended call died, for its record, its event and the
// agent; "" for a call agentcgroup and the kernel's OOM killer left alone.
func (c *Container) killReason(cl *call, m toolcall.Measures) string {
	what, doomed := "tool call", cl.Doomed()
	if cl.Kind() == toolcall.KindSession {
		what = "session shell"
	}
	containerMax := c.limits.Load().containerMax
	switch {
	case m.OOMKills > 0:
		limit := "a memory limit above the container (host or pool)"
		if m.OOM > 0 { // its own memory.max, not a limit above
			limit = "its own limit memory.max=" + size(c.policy.ToolMemoryMax.Resolve(containerMax))
		} else if containerMax != cgroupfs.Unlimited {
			limit = "the container's limit memory.max=" + size(containerMax)
		}
		return fmt.Sprintf("%s killed: out of memory at %s (peak %s); the agent was not touched", what, limit, size(int64(m.Peak)))
	case doomed != "":
		return fmt.Sprintf("%s killed: %s (peak %s); the agent was not touched", what, doomed, size(int64(m.Peak)))
	}
	return ""
}

func size(b int64) string {
	if b == cgroupfs.Unlimited {
		return "max"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
