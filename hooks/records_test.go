package hooks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestRecordsBounded: an agent running many calls keeps at most maxEnded
// ended records, the newest, plus the running ones; writes are coalesced.
func TestRecordsBounded(t *testing.T) {
	dir := t.TempDir()
	r := newRecords(context.Background(), dir)
	running := toolcall.New(toolcall.Record{ID: "long"})
	r.add(running)
	const calls = 3 * maxEnded
	for i := range calls {
		cl := toolcall.New(toolcall.Record{ID: fmt.Sprint("call-", i)})
		r.add(cl)
		cl.Exit(0, time.Now())
		if _, err := cl.End(time.Now(), toolcall.Measures{}, ""); err != nil {
			t.Fatal(err)
		}
		r.markEnded(cl)
	}
	r.mu.Lock()
	if len(r.order) != maxEnded+1 || r.order[0] != running {
		t.Fatalf("kept %d records, want %d ended + the running one first", len(r.order), maxEnded)
	}
	if first := r.order[1].ID(); first != fmt.Sprint("call-", calls-maxEnded) {
		t.Errorf("oldest kept ended record is %s", first)
	}
	r.mu.Unlock()
	time.Sleep(saveInterval(maxEnded+1) + 2*saveDelay)
	saved, err := state.LoadRecords(dir)
	if err != nil || len(saved) != maxEnded+1 {
		t.Fatalf("saved %d records, %v", len(saved), err)
	}
	if saved[0].State != toolcall.Running || saved[1].State != toolcall.Exited {
		t.Errorf("saved states %s, %s", saved[0].State, saved[1].State)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		t.Error("a write is still pending after the delay")
	}
}

// TestSaveInterval: however many records a container holds, the shim
// writes at most about saveBatch of them per saveDelay.
func TestSaveInterval(t *testing.T) {
	for _, n := range []int{0, 1, saveBatch - 1, saveBatch, maxEnded + 1024, 100000} {
		iv := saveInterval(n)
		if iv < saveDelay {
			t.Errorf("%d records: written every %v, want at least %v apart", n, iv, saveDelay)
		}
		if rate := float64(n) * float64(saveDelay) / float64(iv); rate > saveBatch {
			t.Errorf("%d records every %v: %.0f records per %v, want at most %d", n, iv, rate, saveDelay, saveBatch)
		}
	}
}
