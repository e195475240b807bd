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
// keeps the call, never the agent's stream. Writes run in order, off the
// caller's goroutine (a pipe the agent does not drain may block them).
type teller struct {
	w      io.WriteCloser // nil: nothing to tell on
	mu     sync.Mutex
	told   bool
	closed bool
}

// say writes the reason once, if there is one and the stream is open.
func (t *teller) say(ctx context.Context, reason string) {
	t.run(func() { t.write(ctx, reason) })
}

// close says the reason, if not said yet, and ends the stream, once.
func (t *teller) close(ctx context.Context, reason string) {
	t.run(func() {
		t.write(ctx, reason)
		if !t.closed {
			t.closed = true
			t.w.Close()
		}
	})
}

// write runs under mu.
func (t *teller) write(ctx context.Context, reason string) {
	if t.told || t.closed || reason == "" {
		return
	}
	t.told = true
	if _, err := io.WriteString(t.w, TellPrefix+reason+"\n"); err != nil {
		log.G(ctx).WithError(err).Debug("tell the agent")
	}
}

func (t *teller) run(f func()) {
	if t.w == nil {
		return
	}
	go func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		f()
	}()
}
