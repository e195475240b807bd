package hooks

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/state"
)

// TestRecordsBounded: an agent running many calls keeps at most maxEnded
// ended records, the newest, plus the running ones; writes are coalesced.
func TestRecordsBounded(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	r := newRecords(&mu, dir)
	ctx := context.Background()
	running := &state.Record{ID: "long", State: state.Running}
	mu.Lock()
	r.add(running)
	const calls = 3 * maxEnded
	for i := range calls {
		now := time.Now()
		rec := &state.Record{ID: fmt.Sprint("call-", i), State: state.Exited, End: &now}
		r.add(rec)
		r.markEnded(rec)
		r.save(ctx)
	}
	mu.Unlock()
	if len(r.order) != maxEnded+1 || r.order[0] != running {
		t.Fatalf("kept %d records, want %d ended + the running one first", len(r.order), maxEnded)
	}
	if first := r.order[1].ID; first != fmt.Sprint("call-", calls-maxEnded) {
		t.Errorf("oldest kept ended record is %s", first)
	}
	time.Sleep(3 * saveDelay)
	saved, err := state.LoadRecords(dir)
	if err != nil || len(saved) != maxEnded+1 {
		t.Fatalf("saved %d records, %v", len(saved), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if r.timer != nil {
		t.Error("a write is still pending after the delay")
	}
}
