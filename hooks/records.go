package hooks

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
)

// maxEnded bounds how many ended tool calls a container keeps; the oldest go
// first, so that an agent running many calls does not grow the shim.
const maxEnded = 1000

// saveDelay coalesces record writes: an agent running many short calls
// costs one write of the records file per interval, not one per change.
const saveDelay = 100 * time.Millisecond

// records holds a container's tool calls in start order and mirrors them to
// its state folder for `agentcgroup ps`. Callers hold mu.
type records struct {
	mu    *sync.Mutex
	dir   string
	order []*state.Record
	ended int
	timer *time.Timer // a pending write, nil if none
}

func newRecords(mu *sync.Mutex, dir string) *records {
	return &records{mu: mu, dir: dir}
}

func (r *records) add(rec *state.Record) { r.order = append(r.order, rec) }

// markEnded marks a record as ended and drops the oldest ended ones past the bound.
func (r *records) markEnded(rec *state.Record) {
	r.ended++
	for i := 0; r.ended > maxEnded && i < len(r.order); {
		if r.order[i].End != nil {
			r.order = append(r.order[:i], r.order[i+1:]...)
			r.ended--
			continue
		}
		i++
	}
}

// save writes the records within saveDelay.
func (r *records) save(ctx context.Context) {
	if r.timer == nil {
		r.timer = time.AfterFunc(saveDelay, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.flush(ctx)
		})
	}
}

// flush writes the records now.
func (r *records) flush(ctx context.Context) {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	out := make([]state.Record, len(r.order))
	for i, rec := range r.order {
		out[i] = *rec
	}
	if err := state.SaveRecords(r.dir, out); err != nil {
		log.G(ctx).WithError(err).Warn("save tool-call records")
	}
}
