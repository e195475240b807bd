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
		others      int   // running calls
		frozenOther bool  // one of them frozen while running
		pool        []Member
		want        bool
	}{
		{name: "room", used: 500, others: 1},
		{name: "imminent", used: 950, others: 1, want: true},
		{name: "imminent, alone", used: 950},
		{name: "near, none waiting", used: 850, others: 1},
		{name: "near, a call waiting", used: 850, others: 2, frozenOther: true, want: true},
		{name: "imminent, a lower-priority member running", used: 950, others: 1,
			pool: []Member{{Priority: policy.PriorityLow, Running: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, policy.Default())
			f.pool.members = tc.pool
			if tc.pool != nil {
				f.usage(poolGroup, 950<<20, 1<<30)
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
			n := f.placed("new", 0)
			if got := f.w.FreezeAtStart("c1", n, f.at(0.5)); got != tc.want || f.frozen("new") != tc.want {
				t.Fatalf("FreezeAtStart = %v, cgroup frozen %v; want %v", got, f.frozen("new"), tc.want)
			}
			if got := f.took(); tc.want && (len(got) != 1 || got[0] != (action{"new", Froze})) {
				t.Fatalf("actions %v, want new frozen", got)
			}
			if tc.want && n.Record().Waiting != "frozen: memory pressure on the container, before it started" {
				t.Errorf("waiting %q", n.Record().Waiting)
			}
		})
	}
}

// TestQueuedAfterFrozen: a call frozen while running holds memory and goes
// first when there is room; the call waiting to start follows, though it
// waited longer.
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
// timeout starts: it holds nothing a kill would free.
func TestQueuedStartsAtStallTimeout(t *testing.T) {
	pol := policy.Default()
	pol.StallTimeout = 2 * time.Second
	f := newFixture(t, pol)
	f.call("a", 20)
	f.usage(cGroup, 950<<20, 1<<30)
	q := f.placed("q", 0)
	if !f.w.FreezeAtStart("c1", q, f.at(0)) {
		t.Fatal("q not frozen at its start")
	}
	f.w.Watch("c1", q)
	f.took()
	f.w.startReviews(f.at(0))
	for i := 1; i <= 6; i++ { // pressure every window: no thaw for room
		f.pressure(cGroup, time.Duration(i)*400*time.Millisecond, 0)
		f.w.review(f.at(float64(i) / 2))
	}
	if got := f.took(); len(got) != 1 || got[0] != (action{"q", Thawed}) {
		t.Fatalf("actions %v, want q thawed", got)
	}
	if q.Doomed() != "" || f.read(cGroup+"/tools/q", "cgroup.kill") != "" {
		t.Error("q killed")
	}
}
