package hooks

import (
	"context"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
)

// maxEnded bounds how many ended tool calls a container keeps; the oldest go
// first, so that an agent running many calls does not grow the shim.
const maxEnded = 1000

// records holds a container's tool calls in start order and mirrors them to
// its state folder for `agentcgroup ps`. Callers hold Container.mu.
type records struct {
	dir   string
	order []*state.Record
	byID  map[string]*state.Record
	ended int
}

func newRecords(dir string) *records {
	return &records{dir: dir, byID: make(map[string]*state.Record)}
}

func (r *records) add(rec *state.Record) {
	r.order = append(r.order, rec)
	r.byID[rec.ID] = rec
}

func (r *records) get(id string) *state.Record { return r.byID[id] }

// ended marks a record as ended and drops the oldest ended ones past the bound.
func (r *records) markEnded(rec *state.Record) {
	r.ended++
	for i := 0; r.ended > maxEnded && i < len(r.order); {
		if old := r.order[i]; old.End != nil {
			r.order = append(r.order[:i], r.order[i+1:]...)
			if r.byID[old.ID] == old {
				delete(r.byID, old.ID)
			}
			r.ended--
			continue
		}
		i++
	}
}

func (r *records) save(ctx context.Context) {
	out := make([]state.Record, len(r.order))
	for i, rec := range r.order {
		out[i] = *rec
	}
	if err := state.SaveRecords(r.dir, out); err != nil {
		log.G(ctx).WithError(err).Warn("save tool-call records")
	}
}
