package hooks

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/events"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// fakeDetector stands in for the host's BPF detector: the test plays the
// kernel's part, sending the events the programs would.
type fakeDetector struct {
	mu       sync.Mutex
	events   chan<- bpf.Event
	agent    uint64
	watchErr error
	calls    map[uint64]uint64 // call cgroup ID -> agent cgroup ID
	pending  map[uint32]bpf.Fork
	members  map[uint32]bpf.Member
	sessions map[uint64]bool // the calls' cgroups watched as sessions'
	claimed  []uint32
	forgot   []uint32
	rearmed  []uint32
	flushes  uint64
	// onFlush runs in place of the detector's Flushed event, with the
	// flush's number (nil: the event is sent).
	onFlush func(n uint64)
}

func newFakeDetector() *fakeDetector {
	return &fakeDetector{calls: map[uint64]uint64{}, pending: map[uint32]bpf.Fork{}, members: map[uint32]bpf.Member{}, sessions: map[uint64]bool{}}
}

func (d *fakeDetector) Watch(agent uint64, events chan<- bpf.Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watchErr != nil {
		return d.watchErr
	}
	d.agent, d.events = agent, events
	return nil
}

func (d *fakeDetector) Unwatch(agent uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if agent == d.agent {
		d.events = nil
	}
}

func (d *fakeDetector) Flush(agent uint64) (uint64, error) {
	d.mu.Lock()
	if d.events == nil || agent != d.agent {
		d.mu.Unlock()
		return 0, bpf.ErrNotWatched
	}
	d.flushes++
	n, events, on := d.flushes, d.events, d.onFlush
	d.mu.Unlock()
	if on != nil {
		go on(n)
	} else {
		go func() { events <- bpf.Event{Kind: bpf.Flushed, Flushes: n} }()
	}
	return n, nil
}

func (d *fakeDetector) AddCall(call, agent uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if agent != d.agent {
		return errors.New("agent cgroup not watched")
	}
	d.calls[call] = agent
	delete(d.sessions, call)
	return nil
}

func (d *fakeDetector) AddSession(session, agent uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if agent != d.agent {
		return errors.New("agent cgroup not watched")
	}
	d.calls[session] = agent
	d.sessions[session] = true
	return nil
}

func (d *fakeDetector) RemoveCall(call uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.calls, call)
	delete(d.sessions, call)
}

func (d *fakeDetector) Pending(pid uint32, agent uint64) (bpf.Fork, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.pending[pid]
	return f, ok && agent == d.agent
}

func (d *fakeDetector) Claim(pid uint32, agent uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, pid)
	d.claimed = append(d.claimed, pid)
	return nil
}

func (d *fakeDetector) Member(pid uint32, agent uint64) (bpf.Member, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.members[pid]
	return m, ok && agent == d.agent
}

func (d *fakeDetector) Rearm(pid uint32, agent uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending[pid] = bpf.Fork{At: monotonicNow(), Session: true}
	d.rearmed = append(d.rearmed, pid)
	return nil
}

func (d *fakeDetector) Forget(pid uint32, agent uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, pid)
	d.forgot = append(d.forgot, pid)
}

// send delivers an event as the detector's reader would.
func (d *fakeDetector) send(ev bpf.Event) {
	d.mu.Lock()
	events := d.events
	d.mu.Unlock()
	events <- ev
}

func (d *fakeDetector) snapshot() (calls int, claimed, forgot []uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.calls), append([]uint32(nil), d.claimed...), append([]uint32(nil), d.forgot...)
}

// fakeGovernor records what the container asks of the governor.
type fakeGovernor struct {
	mu      sync.Mutex
	addErr  error
	cb      governor.Callback
	scope   governor.Scope
	watched map[string]bool
	atStart []string
	stopped bool
}

func (g *fakeGovernor) Add(id string, sc governor.Scope, p policy.Policy, pool governor.Pool, cb governor.Callback) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.addErr != nil {
		return g.addErr
	}
	g.cb, g.scope, g.watched = cb, sc, map[string]bool{}
	return nil
}

func (g *fakeGovernor) Stop(id string) { g.mu.Lock(); g.stopped = true; g.mu.Unlock() }

func (g *fakeGovernor) Watch(id string, cl *toolcall.Call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.watched[cl.ID()] = true
}

func (g *fakeGovernor) Unwatch(id string, cl *toolcall.Call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.watched, cl.ID())
}

func (g *fakeGovernor) FreezeAtStart(id string, cl *toolcall.Call, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.atStart = append(g.atStart, cl.ID())
	return false
}

func (g *fakeGovernor) isWatched(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.watched[id]
}

// fakeHold hands the test the handler of held execve calls.
type fakeHold struct {
	mu      sync.Mutex
	handler func(*exechold.Request) exechold.Payer
	closed  int
}

func (h *fakeHold) Handle(f func(*exechold.Request) exechold.Payer) {
	h.mu.Lock()
	h.handler = f
	h.mu.Unlock()
}
func (h *fakeHold) Close() error { h.mu.Lock(); h.closed++; h.mu.Unlock(); return nil }

func (h *fakeHold) held(r *exechold.Request) exechold.Payer {
	h.mu.Lock()
	f := h.handler
	h.mu.Unlock()
	return f(r)
}

// fakePublisher passes the published topics on.
type fakePublisher struct{ topics chan string }

func (p *fakePublisher) Publish(ctx context.Context, topic string, event events.Event) error {
	p.topics <- topic
	return nil
}
