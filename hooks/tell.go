package hooks

import (
	"context"
	"io"
	"sync"

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
