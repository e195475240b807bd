// Package governor is agentcgroup's graduated response to memory pressure:
// above the kernel, which throttles a tool call over its memory.high and
// OOM-kills a call past its memory.max, the governor freezes the youngest,
// lowest-priority calls while an OOM kill in their container or pool is
// imminent, and a new call as it starts there, thaws them once there is
// room (or they would run alone, or pressure has subsided), and kills a
// call that has made no progress for its stall timeout (a call frozen as it
// started starts instead). It never touches the agent.
//
// One Watcher serves every container of a shim: one epoll set (PSI triggers
// on each container and its pool, each call's memory.events and
// cgroup.events) and one goroutine. Between notifications nothing runs;
// while a call is frozen or throttled a review runs every PSI window.
package governor

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// Action is what the governor did to a tool call.
type Action string

const (
	Froze   Action = "froze"
	Thawed  Action = "thawed"
	Killing Action = "killing" // the call's end reports the kill
	// OOMKilled: the kernel's OOM killer took the call (reported at once,
	// ahead of its processes' exit).
	OOMKilled Action = "oom-killed"
)

// Callback reports an action on a call of the container, with its reason.
// It runs on the governor's goroutine (or FreezeAtStart's caller's) and
// must not block.
type Callback func(cl *toolcall.Call, a Action, reason string)

// Scope is where a container's memory pressure is watched: its cgroup C, and
// the pool of agent containers it shares memory with (C's parent unless
// configured). Both are relative to the cgroup2 mount.
type Scope struct {
	Container, Pool string
}

// scope is where pressure was seen.
type scope string

const (
	scopeContainer scope = "container"
	scopePool      scope = "pool"
)

// Poller keys.
type (
	scopeKey struct {
		id string
		sc scope
	}
	memoryEventsKey struct{ w *watched }
	cgroupEventsKey struct{ w *watched }
)

// Watcher governs the tool calls of the containers added to it.
type Watcher struct {
	ctx     context.Context
	root    string // the cgroup2 mount
	meminfo func() (map[string]uint64, error)
	poller  *cgroupfs.Poller // nil: decisions are driven by the caller (tests)

	mu         sync.Mutex
	containers map[string]*container
	// poolFrozen is when a call was last frozen for each pool, so that one
	// notification of a pool's pressure freezes one call, not one in each
	// of the shim's containers there; the governor goroutine's alone.
	poolFrozen map[string]time.Time
	// wake has the loop look at whether reviews are due; done is set once
	// the loop has ended.
	wake chan struct{}
	done atomic.Bool
}

// container is one container as the governor follows it. Its fields but
// calls are set by Add; the ladder is the governor goroutine's alone.
type container struct {
	id        string
	dir, pool string // C and the pool, as directories
	pol       policy.Policy
	members   Pool
	cb        Callback
	calls     map[*toolcall.Call]*watched // guarded by Watcher.mu
	// early are the calls FreezeAtStart froze before they were watched;
	// guarded by Watcher.mu.
	early map[*toolcall.Call]bool
	lad   ladder
	// publishMu orders the tallies published to the pool.
	publishMu sync.Mutex
}

// watched is a call as the governor follows it; only the governor's
// goroutine touches its fields.
type watched struct {
	c           *container // the container the call belongs to
	cl          *toolcall.Call
	group, dir  string
	high        uint64 // memory.events "high" last seen
	oomKills    uint64 // memory.events "oom_kill" last seen
	lastHigh    time.Time
	freezeAsked time.Time
	stallSince  time.Time
	lastFull    time.Duration // memory.pressure "full" at the last review
	// queued: frozen as it started (FreezeAtStart, from any goroutine),
	// not thawed since.
	queued atomic.Bool
}

// New starts a Watcher; it runs until ctx ends.
func New(ctx context.Context) (*Watcher, error) {
	p, err := cgroupfs.NewPoller()
	if err != nil {
		return nil, err
	}
	w := newWatcher(ctx, cgroupfs.Root, cgroupfs.ReadMeminfo)
	w.poller = p
	keys := make(chan []any)
	go func() {
		defer close(keys)
		for {
			k, err := p.Wait()
			if err != nil {
				if !errors.Is(err, cgroupfs.ErrClosed) {
					log.G(ctx).WithError(err).Warn("memory pressure watch ended")
				}
				return
			}
			select {
			case keys <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		<-ctx.Done()
		p.Close()
	}()
	go w.loop(keys)
	return w, nil
}

func newWatcher(ctx context.Context, root string, meminfo func() (map[string]uint64, error)) *Watcher {
	return &Watcher{ctx: ctx, root: root, meminfo: meminfo, containers: make(map[string]*container), poolFrozen: make(map[string]time.Time), wake: make(chan struct{}, 1)}
}

// Add starts governing container id: pressure on its cgroup and its pool,
// with its policy; members are the other containers of its pool. Without a
// PSI trigger on C (a kernel without PSI) it fails, and the kernel's limits
// are all that holds.
func (w *Watcher) Add(id string, sc Scope, pol policy.Policy, members Pool, cb Callback) error {
	c := &container{
		id: id, dir: filepath.Join(w.root, sc.Container), pool: filepath.Join(w.root, sc.Pool),
		pol: pol, members: members, cb: cb, calls: make(map[*toolcall.Call]*watched),
		early: make(map[*toolcall.Call]bool),
	}
	if w.poller != nil {
		if err := w.poller.AddTrigger(scopeKey{id, scopeContainer}, c.dir, psiStall, psiWindow); err != nil {
			return err
		}
		if err := w.poller.AddTrigger(scopeKey{id, scopePool}, c.pool, psiStall, psiWindow); err != nil {
			log.G(w.ctx).WithError(err).WithField("pool", sc.Pool).Warn("pool memory pressure is not watched")
		}
	}
	w.mu.Lock()
	w.containers[id] = c
	w.mu.Unlock()
	w.publish(c)
	return nil
}

// publish tells the pool's other shims what c's calls do now.
func (w *Watcher) publish(c *container) {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	m := Member{Priority: c.pol.Priority}
	w.mu.Lock()
	for cl := range c.early {
		if cl.State() == toolcall.Frozen {
			m.Frozen++
		}
	}
	for _, wc := range c.calls {
		switch wc.cl.State() {
		case toolcall.Running, toolcall.Throttled:
			m.Running++
		case toolcall.Frozen:
			m.Frozen++
		}
	}
	w.mu.Unlock()
	if err := c.members.Publish(m); err != nil {
		log.G(w.ctx).WithError(err).WithField("container", c.id).Warn("publish the container's tool calls to its pool")
	}
}

// Watch governs a tool call of container id, placed in its cgroup.
func (w *Watcher) Watch(id string, cl *toolcall.Call) {
	w.mu.Lock()
	c := w.containers[id]
	wc := &watched{c: c, cl: cl, group: cl.Cgroup(), dir: w.dir(cl)}
	if c != nil {
		c.calls[cl] = wc
		wc.queued.Store(c.early[cl]) // FreezeAtStart came first
		delete(c.early, cl)
	}
	w.mu.Unlock()
	if c == nil {
		return
	}
	w.publish(c)
	if w.poller == nil {
		return
	}
	// A call too short to be watched has nothing to report.
	_ = w.poller.AddFile(memoryEventsKey{wc}, wc.dir, "memory.events")
	_ = w.poller.AddFile(cgroupEventsKey{wc}, wc.dir, "cgroup.events")
	w.mu.Lock()
	stopped := w.containers[id] != c
	w.mu.Unlock()
	if stopped { // Stop ran meanwhile and could not remove these
		w.forget(wc)
	}
}

// dir is a call's cgroup directory.
func (w *Watcher) dir(cl *toolcall.Call) string { return filepath.Join(w.root, cl.Cgroup()) }

// wakeLoop has the governor's goroutine look again at whether a review is
// due.
func (w *Watcher) wakeLoop() {
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is pending
	}
}

// Unwatch stops governing a call, once it has ended.
func (w *Watcher) Unwatch(id string, cl *toolcall.Call) {
	w.mu.Lock()
	var wc *watched
	c := w.containers[id]
	if c != nil {
		wc = c.calls[cl]
		delete(c.calls, cl)
		delete(c.early, cl)
	}
	w.mu.Unlock()
	if wc != nil {
		w.forget(wc)
	}
	if c != nil {
		w.publish(c)
	}
}

func (w *Watcher) forget(wc *watched) {
	if w.poller != nil {
		w.poller.Remove(memoryEventsKey{wc})
		w.poller.Remove(cgroupEventsKey{wc})
	}
}

// Stop stops governing container id and its calls.
func (w *Watcher) Stop(id string) {
	w.mu.Lock()
	c := w.containers[id]
	delete(w.containers, id)
	w.mu.Unlock()
	if c == nil {
		return
	}
	// Its calls end with it: the pool counts them no more.
	if err := c.members.Publish(Member{Priority: c.pol.Priority}); err != nil {
		log.G(w.ctx).WithError(err).WithField("container", id).Warn("publish the container's tool calls to its pool")
	}
	if w.poller != nil {
		w.poller.Remove(scopeKey{id, scopeContainer})
		w.poller.Remove(scopeKey{id, scopePool})
	}
	for _, wc := range c.calls {
		w.forget(wc)
	}
}

// lookup returns container id and a snapshot of its calls.
func (w *Watcher) lookup(id string) (*container, []*watched) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.containers[id]
	if c == nil {
		return nil, nil
	}
	return c, slices.Collect(maps.Values(c.calls))
}

func (w *Watcher) ids() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Collect(maps.Keys(w.containers))
}

// loop handles the poller's notifications, and reviews every PSI window
// while a call is frozen or throttled.
func (w *Watcher) loop(keys <-chan []any) {
	defer w.done.Store(true)
	var (
		ticker *time.Ticker
		tick   <-chan time.Time
	)
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		select {
		case <-w.ctx.Done():
			return
		case ks, ok := <-keys:
			if !ok {
				return
			}
			now := time.Now()
			for _, k := range ks {
				switch k := k.(type) {
				case scopeKey:
					w.relieve(k.id, k.sc, now)
				case memoryEventsKey:
					w.memoryEvents(k.w, now)
				case cgroupEventsKey:
					w.frozenSeen(k.w, now)
					w.ended(k.w, now)
				}
			}
		case now := <-tick:
			w.review(now)
		case <-w.wake:
		}
		if busy := w.busy(); busy && ticker == nil {
			ticker = time.NewTicker(psiWindow)
			tick = ticker.C
			w.startReviews(time.Now())
		} else if !busy && ticker != nil {
			ticker.Stop()
			ticker, tick = nil, nil
		}
	}
}

// busy reports whether a call is frozen or throttled.
func (w *Watcher) busy() bool {
	for _, id := range w.ids() {
		_, calls := w.lookup(id)
		for _, wc := range calls {
			if wc.cl.State() == toolcall.Frozen || wc.cl.Throttling() {
				return true
			}
		}
	}
	return false
}

// memoryEvents notes a change of a call's memory.events: new "high" events
// mean the kernel is throttling it.
func (w *Watcher) memoryEvents(wc *watched, now time.Time) {
	m, err := cgroup2.Load(wc.group, cgroup2.WithMountpoint(w.root))
	if err != nil {
		return
	}
	st, err := m.StatFiltered(cgroup2.StatMemoryEvents)
	if err != nil || st.GetMemoryEvents() == nil {
		return // the call has ended
	}
	if kills := st.GetMemoryEvents().OomKill; kills > wc.oomKills {
		wc.oomKills = kills
		w.report(wc, OOMKilled, "")
	}
	if high := st.GetMemoryEvents().High; high > wc.high {
		wc.high, wc.lastHigh = high, now
		if err := wc.cl.Throttle(now); err != nil {
			log.G(w.ctx).WithError(err).Warn("throttled tool call")
		}
	}
}

// report calls the callback of a watched call's container, unless the call
// or its container is no longer watched.
func (w *Watcher) report(wc *watched, a Action, reason string) {
	w.mu.Lock()
	watched := w.containers[wc.c.id] == wc.c && wc.c.calls[wc.cl] == wc
	w.mu.Unlock()
	if watched {
		wc.c.cb(wc.cl, a, reason)
	}
}

// ended gives the room of a call that has ended to a frozen call of its
// container at once, rather than at the next review.
func (w *Watcher) ended(wc *watched, now time.Time) {
	if populated, err := cgroupfs.Populated(wc.dir); err == nil && populated {
		return
	}
	if c, calls := w.lookup(wc.c.id); c == wc.c {
		w.thawOne(c, calls, wc, false, now)
	}
}

// frozenSeen measures a freeze once the kernel reports it complete.
func (w *Watcher) frozenSeen(wc *watched, now time.Time) {
	if wc.freezeAsked.IsZero() {
		return
	}
	if frozen, err := cgroupfs.Frozen(wc.dir); err == nil && frozen {
		wc.cl.FreezeComplete(now.Sub(wc.freezeAsked))
		wc.freezeAsked = time.Time{}
	}
}
