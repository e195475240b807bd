package governor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

// TestPublish: the container's tally follows its calls as they start,
// freeze and end.
func TestPublish(t *testing.T) {
	f := newFixture(t, policy.Default())
	f.call("old", 30)
	young := f.call("young", 10)
	f.usage(cGroup, 950<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.at(0))
	f.w.Unwatch("c1", young)
	f.pool.pubMu.Lock()
	defer f.pool.pubMu.Unlock()
	want := []Member{{}, {Running: 1}, {Running: 2}, {Running: 1, Frozen: 1}, {Running: 1}}
	for i := range want {
		want[i].Priority = policy.Default().Priority
	}
	if len(f.pool.published) != len(want) {
		t.Fatalf("published %+v, want %+v", f.pool.published, want)
	}
	for i, m := range f.pool.published {
		if m != want[i] {
			t.Errorf("tally %d %+v, want %+v", i, m, want[i])
		}
	}
}

// TestStatePool: members read one another's tallies, only their own
// pool's; each pool has a lock of its own, so that a shim holding one
// pool's lock delays no other pool's.
func TestStatePool(t *testing.T) {
	root := t.TempDir()
	member := func(ns, id, group string) StatePool {
		dir := state.Dir(root, ns, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return StatePool{Root: root, Self: dir, Group: group}
	}
	a, b, other := member("default", "a", "/pool"), member("k8s.io", "b", "/pool"), member("default", "c", "/other")
	for p, m := range map[StatePool]Member{a: {Priority: "high", Running: 3}, b: {Priority: "low", Frozen: 2}, other: {Running: 9}} {
		if err := p.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Members(); len(got) != 1 || got[0] != (Member{Priority: "low", Frozen: 2}) {
		t.Errorf("a's pool members %+v, want b's tally alone", got)
	}
	unlock, err := a.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	done := make(chan error, 1)
	go func() {
		u, err := other.Lock()
		if err == nil {
			u()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("another pool's lock waits for this pool's")
	}
	if locks, _ := filepath.Glob(filepath.Join(root, "pool-*.lock")); len(locks) != 2 {
		t.Errorf("lock files %q, want one per pool", locks)
	}
}
