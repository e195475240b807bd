package governor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// fakeHost is a cgroup2 mount made of plain files: the tests write the
// pressure and usage the kernel would report and read what the governor
// wrote (cgroup.freeze, cgroup.kill).
type fakeHost struct {
	t    *testing.T
	root string
}

func (h fakeHost) write(group, file, content string) {
	h.t.Helper()
	dir := filepath.Join(h.root, group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h fakeHost) read(group, file string) string {
	b, _ := os.ReadFile(filepath.Join(h.root, group, file))
	return string(b)
}

// pressure sets a cgroup's memory.pressure totals.
func (h fakeHost) pressure(group string, some, full time.Duration) {
	h.write(group, "memory.pressure", fmt.Sprintf("some avg10=0.00 avg60=0.00 avg300=0.00 total=%d\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=%d\n",
		some.Microseconds(), full.Microseconds()))
}

// usage sets a cgroup's memory.max and memory.current, none of it file
// cache.
func (h fakeHost) usage(group string, current, max int64) {
	h.write(group, "memory.max", fmt.Sprint(max))
	h.write(group, "memory.current", fmt.Sprint(current))
	h.write(group, "memory.high", "max")
	h.write(group, "memory.stat", "anon "+fmt.Sprint(current)+"\nfile 0\nactive_file 0\ninactive_file 0\nshmem 0\n")
}

// fakePool is the other containers of the pool.
type fakePool struct {
	mu      sync.Mutex
	members []Member
	locked  int
	// published are the tallies the container published, in order.
	pubMu     sync.Mutex
	published []Member
}

func (p *fakePool) Lock() (func(), error) {
	p.mu.Lock()
	p.locked++
	return p.mu.Unlock, nil
}

func (p *fakePool) Members() []Member { return p.members }

func (p *fakePool) Publish(m Member) error {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	p.published = append(p.published, m)
	return nil
}

type action struct {
	call string
	a    Action
}

type fixture struct {
	fakeHost
	// swapFree is the host's free swap in /proc/meminfo's kB; the tests
	// have swap unless they say otherwise (freezeHelps).
	swapFree uint64
	w        *Watcher
	pool     *fakePool
	mu       sync.Mutex
	actions  []action
	t0       time.Time
}

const (
	poolGroup = "/pool"
	cGroup    = "/pool/c1"
)

func newFixture(t *testing.T, pol policy.Policy) *fixture {
	f := &fixture{fakeHost: fakeHost{t, t.TempDir()}, swapFree: 1 << 20, pool: &fakePool{}, t0: time.Unix(10000, 0)}
	f.usage(poolGroup, 0, 8<<30)
	f.pressure(poolGroup, 0, 0)
	f.usage(cGroup, 0, 1<<30)
	f.pressure(cGroup, 0, 0)
	f.w = newWatcher(context.Background(), f.root, func() (map[string]uint64, error) {
		return map[string]uint64{"MemTotal": 100, "MemAvailable": 50, "SwapFree": f.swapFree}, nil
	})
	cb := func(cl *toolcall.Call, a Action, reason string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.actions = append(f.actions, action{cl.ID(), a})
	}
	if err := f.w.Add("c1", Scope{Container: cGroup, Pool: poolGroup}, pol, f.pool, cb); err != nil {
		t.Fatal(err)
	}
	return f
}

// call starts a tool call that began age seconds before t0.
func (f *fixture) call(id string, age int) *toolcall.Call {
	cl := f.placed(id, age)
	f.w.Watch("c1", cl)
	return cl
}

// placed is a tool call in its cgroup, not watched yet.
func (f *fixture) placed(id string, age int) *toolcall.Call {
	group := cGroup + "/tools/" + id
	f.write(group, "cgroup.freeze", "0")
	f.write(group, "cgroup.events", "populated 1\nfrozen 0\n")
	f.write(group, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
	f.pressure(group, 0, 0)
	return toolcall.New(toolcall.Record{ID: id, Cgroup: group, Start: f.t0.Add(-time.Duration(age) * time.Second)})
}

func (f *fixture) at(s float64) time.Time { return f.t0.Add(time.Duration(s * float64(time.Second))) }

func (f *fixture) took() []action {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.actions
	f.actions = nil
	return out
}

func (f *fixture) frozen(id string) bool {
	return f.read(cGroup+"/tools/"+id, "cgroup.freeze") == "1"
}

// TestFreezeYoungestNotLast: a contended container freezes its youngest
// running call, then the next youngest, and never the last running one.
func TestFreezeYoungestNotLast(t *testing.T) {
	f := newFixture(t, policy.Default())
	old, mid, young := f.call("old", 30), f.call("mid", 20), f.call("young", 10)
	f.usage(cGroup, 950<<20, 1<<30) // 93% of C's limit
	for i := range 4 {
		f.w.relieve("c1", scopeContainer, f.at(float64(i)))
	}
	if got := f.took(); len(got) != 2 || got[0] != (action{"young", Froze}) || got[1] != (action{"mid", Froze}) {
		t.Fatalf("actions %v, want young then mid frozen", got)
	}
	if young.State() != toolcall.Frozen || mid.State() != toolcall.Frozen || old.State() != toolcall.Running {
		t.Errorf("states young %s, mid %s, old %s", young.State(), mid.State(), old.State())
	}
	if !f.frozen("young") || !f.frozen("mid") || f.frozen("old") {
		t.Error("cgroup.freeze files do not match the states")
	}
}

// TestNoSwapNoFreeze: without swap, at a memory.max, a freeze would make
// no room, so neither a running call nor a starting one is frozen; at a
// memory.high it spares every call a stall, and a container whose
// memory.swap.max is 0 has no swap whatever the host has.
func TestNoSwapNoFreeze(t *testing.T) {
	for _, tc := range []struct {
		name     string
		swapFree uint64
		pool     bool // the pool is near its limit, not C
		soft     bool // that limit is a memory.high
		tie      bool // memory.high and memory.max the same
		swapMax  string
		want     bool
	}{
		{name: "swap", swapFree: 1 << 20, want: true},
		{name: "no swap", want: false},
		{name: "no swap, memory.high", soft: true, want: true},
		{name: "no swap, memory.high as memory.max", soft: true, tie: true, want: false},
		{name: "swap, memory.swap.max 0", swapFree: 1 << 20, swapMax: "0", want: false},
		{name: "pool, no swap", pool: true, want: false},
		{name: "pool, no swap, memory.high", pool: true, soft: true, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, policy.Default())
			f.swapFree = tc.swapFree
			f.call("old", 30)
			f.call("young", 10)
			group, sc := cGroup, scopeContainer
			if tc.pool {
				group, sc = poolGroup, scopePool
			}
			f.usage(group, 950<<20, 1<<30)
			if tc.soft {
				f.write(group, "memory.high", fmt.Sprint(1<<30))
				f.write(group, "memory.max", fmt.Sprint(map[bool]int{false: 2 << 30, true: 1 << 30}[tc.tie]))
			}
			if tc.swapMax != "" {
				f.write(cGroup, "memory.swap.max", tc.swapMax)
			}
			f.w.relieve("c1", sc, f.t0)
			if got := f.frozen("young"); got != tc.want {
				t.Errorf("running call frozen: %v, want %v", got, tc.want)
			}
			if got := f.w.FreezeAtStart("c1", f.call("new", 0), f.at(0.5)); got != tc.want {
				t.Errorf("starting call frozen: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestUncontendedNoFreeze: pressure below the freeze threshold comes from
// a call's own memory.high or from reclaiming the page cache; freezing
// another call would not help.
func TestUncontendedNoFreeze(t *testing.T) {
	f := newFixture(t, policy.Default())
	f.call("a", 20)
	f.call("b", 10)
	f.usage(cGroup, 500<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.t0)
	f.usage(cGroup, 1000<<20, 1<<30)
	f.write(cGroup, "memory.stat", "anon 700000000\nfile 300000000\nactive_file 100000000\ninactive_file 200000000\nshmem 0\n")
	f.w.relieve("c1", scopeContainer, f.t0)
	if got := f.took(); len(got) != 0 {
		t.Errorf("froze with no OOM kill imminent: %v", got)
	}
	// tmpfs and shared memory are "file" too, but no reclaim frees them.
	f.write(cGroup, "memory.stat", "anon 500000000\nfile 500000000\nactive_file 0\ninactive_file 0\nshmem 500000000\n")
	f.w.relieve("c1", scopeContainer, f.t0)
	if got := f.took(); len(got) != 1 || got[0] != (action{"b", Froze}) {
		t.Errorf("actions %v, want b frozen with shared memory at the limit", got)
	}
}

// TestPoolPriority: under pool pressure a lower-priority member with running
// calls goes first; with only higher-priority members running, this
// container freezes, and their running calls count against "the last one".
func TestPoolPriority(t *testing.T) {
	f := newFixture(t, policy.Default())
	f.call("only", 10)
	f.usage(poolGroup, 7900<<20, 8<<30)

	f.pool.members = []Member{{Priority: policy.PriorityLow, Running: 1}}
	f.w.relieve("c1", scopePool, f.t0)
	if got := f.took(); len(got) != 0 {
		t.Fatalf("froze before a low-priority member: %v", got)
	}
	f.pool.members = []Member{{Priority: policy.PriorityHigh, Running: 1}}
	f.w.relieve("c1", scopePool, f.t0)
	if got := f.took(); len(got) != 1 || got[0] != (action{"only", Froze}) {
		t.Fatalf("actions %v, want the only call frozen for a high-priority member", got)
	}
	if f.pool.locked != 2 {
		t.Errorf("pool locked %d times, want 2", f.pool.locked)
	}
}

// TestThawOnRoom: under pressure, frozen calls thaw one a review once C and
// the pool are under thawShare of their limits, the longest-frozen first;
// while the pool is near its limit, a higher-priority member's frozen
// calls thaw first; without room, a frozen call thaws when no other call
// of the pool runs.
func TestThawOnRoom(t *testing.T) {
	pol := policy.Default()
	pol.StallTimeout = time.Hour
	f := newFixture(t, pol)
	a, b := f.call("a", 40), f.call("b", 30)
	f.call("c", 20)
	f.usage(cGroup, 950<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.at(0)) // c
	f.w.relieve("c1", scopeContainer, f.at(1)) // b
	f.took()
	f.w.startReviews(f.at(1))
	stalled := 0
	review := func(at float64) { // with pressure in every window: never quiet
		stalled++
		f.pressure(cGroup, time.Duration(stalled)*400*time.Millisecond, 0)
		f.w.review(f.at(at))
	}

	f.usage(cGroup, 850<<20, 1<<30) // 83%: no room yet
	review(1.5)
	if got := f.took(); len(got) != 0 {
		t.Fatalf("thawed without room: %v", got)
	}
	f.usage(cGroup, 700<<20, 1<<30)
	review(2)
	if got := f.took(); len(got) != 1 || got[0] != (action{"c", Thawed}) {
		t.Fatalf("actions %v, want c (frozen first) thawed", got)
	}
	f.usage(poolGroup, 7000<<20, 8<<30) // the pool at 85%
	f.pool.members = []Member{{Priority: policy.PriorityHigh, Frozen: 1}}
	review(2.5)
	if got := f.took(); len(got) != 0 {
		t.Fatalf("thawed before a high-priority member: %v", got)
	}
	f.usage(poolGroup, 0, 8<<30)
	review(3)
	if got := f.took(); len(got) != 1 || got[0] != (action{"b", Thawed}) {
		t.Fatalf("actions %v, want b thawed once the pool has room", got)
	}

	// No room, but nothing else runs: the frozen call runs alone.
	f.usage(cGroup, 950<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.at(4)) // c again
	f.took()
	for _, cl := range []*toolcall.Call{a, b} {
		if _, err := cl.End(f.at(4), toolcall.Measures{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	f.usage(poolGroup, 7900<<20, 8<<30)
	f.pool.members = []Member{{Priority: policy.PriorityNormal, Running: 1}}
	review(4.5)
	if got := f.took(); len(got) != 0 {
		t.Fatalf("thawed without room while a pool member runs a call: %v", got)
	}
	f.pool.members = nil
	review(5)
	if got := f.took(); len(got) != 1 || got[0] != (action{"c", Thawed}) {
		t.Fatalf("actions %v, want c thawed to run alone", got)
	}
}

// TestThawWhenQuiet: a frozen call thaws after two quiet windows even where
// the scope stays between thawShare and freezeShare, rather than waiting
// for its stall timeout.
func TestThawWhenQuiet(t *testing.T) {
	f := newFixture(t, policy.Default())
	f.call("a", 20)
	f.call("b", 10)
	f.usage(cGroup, 950<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.at(0))
	f.took()
	f.w.startReviews(f.at(0))
	f.usage(cGroup, 870<<20, 1<<30) // 85%, and no stall from now on
	f.w.review(f.at(0.5))
	if got := f.took(); len(got) != 0 {
		t.Fatalf("thawed after one quiet window: %v", got)
	}
	f.w.review(f.at(1))
	if got := f.took(); len(got) != 1 || got[0] != (action{"b", Thawed}) {
		t.Fatalf("actions %v, want b thawed after two quiet windows", got)
	}
	// Quiet at the freeze threshold is the freeze working, not room.
	f.usage(cGroup, 980<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.at(2))
	f.took()
	for i := range 4 {
		f.w.review(f.at(2.5 + float64(i)/2))
	}
	if got := f.took(); len(got) != 0 {
		t.Fatalf("thawed at 95%% of the limit after quiet windows: %v", got)
	}
}

// TestThawOnEnd: the end of the last other running call thaws a frozen
// call at once, although its record has not ended yet.
func TestThawOnEnd(t *testing.T) {
	f := newFixture(t, policy.Default())
	a := f.call("a", 20)
	f.call("b", 10)
	f.usage(cGroup, 950<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.at(0))
	f.took()
	f.write(cGroup+"/tools/a", "cgroup.events", "populated 0\nfrozen 0\n")
	f.w.ended(f.w.containers["c1"].calls[a], f.at(0.1))
	if got := f.took(); len(got) != 1 || got[0] != (action{"b", Thawed}) {
		t.Fatalf("actions %v, want b thawed as a ended", got)
	}
}

// TestStallTimeout: a call frozen for its stall timeout is killed once, with
// the reason; the kill reaches its cgroup.kill.
func TestStallTimeout(t *testing.T) {
	pol := policy.Default()
	pol.StallTimeout = 2 * time.Second
	f := newFixture(t, pol)
	f.call("a", 20)
	b := f.call("b", 10)
	f.usage(cGroup, 950<<20, 1<<30)
	f.w.relieve("c1", scopeContainer, f.at(0))
	f.took()
	f.w.startReviews(f.at(0))
	for i := 1; i <= 6; i++ { // pressure every window: no thaw
		f.pressure(cGroup, time.Duration(i)*400*time.Millisecond, 0)
		f.w.review(f.at(float64(i) / 2))
	}
	if got := f.took(); len(got) != 1 || got[0] != (action{"b", Killing}) {
		t.Fatalf("actions %v, want b killed", got)
	}
	if f.read(cGroup+"/tools/b", "cgroup.kill") != "1" {
		t.Error("cgroup.kill not written")
	}
	if r := b.Doomed(); r != "no progress for 2s while frozen under memory pressure" {
		t.Errorf("reason %q", r)
	}
}

// TestThrottleSpell: new memory.high events throttle a call; a throttled
// call whose tasks are all stalled is killed at its stall timeout; a spell
// ends after throttleQuiet without events.
func TestThrottleSpell(t *testing.T) {
	pol := policy.Default()
	pol.StallTimeout = 2 * time.Second
	f := newFixture(t, pol)
	cl := f.call("a", 10)
	wc := f.w.containers["c1"].calls[cl]
	f.write(cGroup+"/tools/a", "memory.events", "low 0\nhigh 5\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
	f.w.memoryEvents(wc, f.at(0))
	if cl.State() != toolcall.Throttled || !f.w.busy() {
		t.Fatalf("state %s after high events", cl.State())
	}
	f.w.startReviews(f.at(0))
	f.w.review(f.at(0.5)) // making progress: no full stall
	f.w.review(f.at(3.5)) // no new event for throttleQuiet
	if cl.State() != toolcall.Running || cl.Record().ThrottledSeconds != 0 {
		t.Fatalf("state %s, throttled %v s after a quiet spell", cl.State(), cl.Record().ThrottledSeconds)
	}

	f.write(cGroup+"/tools/a", "memory.events", "low 0\nhigh 9\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
	f.w.memoryEvents(wc, f.at(4))
	for i := 1; i <= 6; i++ { // all tasks stalled, events keep coming
		f.pressure(cGroup+"/tools/a", 0, time.Duration(i)*400*time.Millisecond)
		f.write(cGroup+"/tools/a", "memory.events", fmt.Sprintf("high %d\n", 9+i))
		f.w.memoryEvents(wc, f.at(4+float64(i)/2))
		f.w.review(f.at(4 + float64(i)/2))
	}
	if got := f.took(); len(got) != 1 || got[0] != (action{"a", Killing}) {
		t.Fatalf("actions %v, want a killed", got)
	}
	if r := cl.Doomed(); r != "no progress for 2s while throttled at its memory.high" {
		t.Errorf("reason %q", r)
	}
}

// TestStop: a stopped container's calls are no longer governed.
func TestStop(t *testing.T) {
	f := newFixture(t, policy.Default())
	f.call("a", 20)
	f.call("b", 10)
	f.usage(cGroup, 950<<20, 1<<30)
	f.w.Stop("c1")
	f.w.relieve("c1", scopeContainer, f.t0)
	if got := f.took(); len(got) != 0 || f.w.busy() {
		t.Errorf("a stopped container was governed: %v", got)
	}
}

// TestOOMKillReported: a call's OOM kill is reported once, to its
// container's callback, and not after the container is stopped.
func TestOOMKillReported(t *testing.T) {
	f := newFixture(t, policy.Default())
	cl := f.call("a", 10)
	wc := f.w.containers["c1"].calls[cl]
	f.write(cGroup+"/tools/a", "memory.events", "low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\noom_group_kill 1\n")
	f.w.memoryEvents(wc, f.at(0))
	f.w.memoryEvents(wc, f.at(1)) // no new kill
	if got := f.took(); len(got) != 1 || got[0] != (action{"a", OOMKilled}) {
		t.Fatalf("actions %v, want one oom-killed", got)
	}
	f.w.Stop("c1")
	f.write(cGroup+"/tools/a", "memory.events", "low 0\nhigh 0\nmax 2\noom 2\noom_kill 2\noom_group_kill 2\n")
	f.w.memoryEvents(wc, f.at(2))
	if got := f.took(); len(got) != 0 {
		t.Errorf("reported after Stop: %v", got)
	}
}
