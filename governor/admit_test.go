package governor

import (
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestFreezeAtStart: a new call is frozen before its program runs where an
// OOM kill is imminent, or where calls already wait for room that is not
// there yet, and only while another call runs to make that room.
func TestFreezeAtStart(t *testing.T) {
	for _, tc := range []struct {
		name        string
		used        int64 // of C's 1 GiB, MiB
		poolUsed    int64 // of the pool's 1 GiB, MiB (0: the pool has room)
		others      int   // running calls of C
		frozenOther bool  // one of them frozen while running
		pool        []Member
		want        string // the scope it waits on; "" not frozen
	}{
		{name: "room", used: 500, others: 1},
		{name: "imminent", used: 950, others: 1, want: "container"},
		{name: "imminent, alone", used: 950},
		{name: "near, none waiting", used: 850, others: 1},
		{name: "near, a call waiting", used: 850, others: 2, frozenOther: true, want: "container"},
		{name: "imminent in C, a lower-priority member running", used: 950, poolUsed: 950, others: 1,
			pool: []Member{{Priority: policy.PriorityLow, Running: 1}}, want: "container"},
		{name: "pool imminent, a member running", used: 500, poolUsed: 950,
			pool: []Member{{Priority: policy.PriorityNormal, Running: 1}}, want: "pool"},
		{name: "pool imminent, a lower-priority member running", used: 500, poolUsed: 950,
			pool: []Member{{Priority: policy.PriorityLow, Running: 1}}},
		{name: "C imminent with none of its own running, pool near", used: 970, poolUsed: 850,
			pool: []Member{{Priority: policy.PriorityNormal, Running: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, policy.Default())
			f.pool.members = tc.pool
			if tc.poolUsed > 0 {
				f.usage(poolGroup, tc.poolUsed<<20, 1<<30)
			}
			for i := range tc.others {
				f.call(string(rune('a'+i)), 30-i)
			}
			if tc.frozenOther {
				f.usage(cGroup, 950<<20, 1<<30)
				f.w.relieve("c1", scopeContainer, f.at(0))
			}
			f.usage(cGroup, tc.used<<20, 1<<30)
			f.took()
			n := f.call("new", 0)
			want := tc.want != ""
			if got := f.w.FreezeAtStart("c1", n, f.at(0.5)); got != want || f.frozen("new") != want {
				t.Fatalf("FreezeAtStart = %v, cgroup frozen %v; want %v", got, f.frozen("new"), want)
			}
			if !want {
				return
			}
			if got := f.took(); len(got) != 1 || got[0] != (action{"new", Froze}) {
				t.Fatalf("actions %v, want new frozen", got)
			}
			if w := n.Record().Waiting; w != "frozen: memory pressure on the "+tc.want+", before it started" {
				t.Errorf("waiting %q", w)
			}
			if !f.w.containers["c1"].calls[n].queued.Load() {
				t.Error("not marked as waiting to start")
			}
		})
	}
}

// TestQueuedAfterFrozen: a call frozen while running holds memory and goes
// first when there is room; the call waiting to start follows, though it
// waited longer. It was frozen before it was watched.
func TestQueuedAfterFrozen(t *testing.T) {
	f := newFixture(t, policy.Default())
	f.call("a", 30)
	b := f.call("b", 20)
	f.usage(cGroup, 950<<20, 1<<30)
	q := f.placed("q", 0)
	if !f.w.FreezeAtStart("c1", q, f.at(0)) {
		t.Fatal("q not frozen at its start")
	}
	f.w.Watch("c1", q)
	f.w.relieve("c1", scopeContainer, f.at(1))
	if !f.frozen("b") || b.State() != toolcall.Frozen {
		t.Fatal("b not frozen")
	}
	f.took()
	f.usage(cGroup, 500<<20, 1<<30)
	f.w.startReviews(f.at(2))
	f.w.review(f.at(2.5))
	f.w.review(f.at(3))
	if got := f.took(); len(got) != 2 || got[0] != (action{"b", Thawed}) || got[1] != (action{"q", Thawed}) {
		t.Fatalf("actions %v, want b thawed, then q", got)
	}
}

// TestQueuedStartsAtStallTimeout: a call that waited to start for its stall
// timeout starts: it holds little a kill would free. Its stall counts anew
// from then on.
func TestQueuedStartsAtStallTimeout(t *testing.T) {
	pol := policy.Default()
	pol.StallTimeout = 2 * time.Second
	f := newFixture(t, pol)
	f.call("a", 20)
	f.usage(cGroup, 950<<20, 1<<30)
	q := f.call("q", 0)
	if !f.w.FreezeAtStart("c1", q, f.at(0)) {
		t.Fatal("q not frozen at its start")
	}
	f.took()
	f.w.startReviews(f.at(0))
	for i := 1; i <= 4; i++ { // pressure every window: no thaw for room
		f.pressure(cGroup, time.Duration(i)*400*time.Millisecond, 0)
		f.w.review(f.at(float64(i) / 2))
	}
	if got := f.took(); len(got) != 1 || got[0] != (action{"q", Thawed}) {
		t.Fatalf("actions %v, want q thawed at 2s", got)
	}
	if q.Doomed() != "" || f.read(cGroup+"/tools/q", "cgroup.kill") != "" {
		t.Fatal("q killed")
	}
	// Throttled and stalled from its first window on: killed only once
	// stalled for the stall timeout since it started, at 4s.
	if err := q.Throttle(f.at(2)); err != nil {
		t.Fatal(err)
	}
	f.w.containers["c1"].calls[q].lastHigh = f.at(100) // a throttle spell that does not end
	for i := 5; i <= 8; i++ {
		f.pressure(cGroup, time.Duration(i)*400*time.Millisecond, 0)
		f.pressure(cGroup+"/tools/q", 0, time.Duration(i-4)*400*time.Millisecond)
		f.w.review(f.at(float64(i) / 2))
		if i < 8 && q.Doomed() != "" {
			t.Fatalf("q killed %.1fs after it started", float64(i-4)/2)
		}
	}
	if q.Doomed() == "" {
		t.Error("q not killed after stalling for its stall timeout")
	}
}
