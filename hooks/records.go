package hooks

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// maxEnded bounds how many ended tool calls a container keeps; the oldest go
// first, so that an agent running many calls does not grow the shim.
const maxEnded = 1000

// saveDelay coalesces record writes: an agent running many short calls
// costs one write of the records file per interval, not one per change.
// The interval grows by saveDelay for every saveBatch records in the file,
// so that the shim writes at most about saveBatch records per saveDelay
// however many a container holds (at most maxEnded ended, and the live
// calls, which bpf.MaxCalls bounds).
const (
	saveDelay = 100 * time.Millisecond
	saveBatch = 250
)

// saveInterval is how long a write waits for more changes, with n records.
func saveInterval(n int) time.Duration { return saveDelay * time.Duration(1+n/saveBatch) }

// records holds a container's tool calls in start order and mirrors them to
// its state folder for `agentcgroup ps`.
type records struct {
	ctx context.Context // for the log
	dir string
	// write serializes writes, so that an older copy never replaces a
	// newer one; mu is not held while the file is written.
	write  sync.Mutex
	mu     sync.Mutex
	order  []*toolcall.Call
	ended  int
	timer  *time.Timer // a pending write, nil if none
	closed bool        // no more saves: the last write is under way or done
	done   bool        // the last write is done
}

func newRecords(ctx context.Context, dir string) *records { return &records{ctx: ctx, dir: dir} }

// add appends a started call.
func (r *records) add(cl *toolcall.Call) {
	r.mu.Lock()
	r.order = append(r.order, cl)
	r.mu.Unlock()
	r.save()
}

// markEnded counts an ended call and drops the oldest ended ones past the bound.
func (r *records) markEnded(cl *toolcall.Call) {
	r.mu.Lock()
	r.ended++
	if r.ended > maxEnded {
		r.order = slices.DeleteFunc(r.order, func(c *toolcall.Call) bool {
			if r.ended > maxEnded && c.State().Ended() {
				r.ended--
				return true
			}
			return false
		})
	}
	r.mu.Unlock()
	r.save()
}

// save writes the records within saveDelay.
func (r *records) save() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil && !r.closed {
		r.timer = time.AfterFunc(saveInterval(len(r.order)), r.flush)
	}
}

// close writes the records for the last time.
func (r *records) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.flush()
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
}

// flush writes the records now.
func (r *records) flush() {
	r.write.Lock()
	defer r.write.Unlock()
	r.mu.Lock()
	if r.done { // a timer that fired during the last write
		r.mu.Unlock()
		return
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	calls := slices.Clone(r.order)
	r.mu.Unlock()
	out := make([]toolcall.Record, len(calls))
	for i, cl := range calls {
		out[i] = cl.Record()
	}
	if err := state.SaveRecords(r.dir, out); err != nil {
		log.G(r.ctx).WithError(err).Warn("save tool-call records")
	}
}
