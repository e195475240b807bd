package hooks

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

// The graduated response's thresholds. The kernel throttles a call over its
// memory.high by itself; the shim freezes, thaws and kills.
const (
	// psiWindow is the shortest PSI window the kernel accepts, so that a
	// freeze follows sustained pressure within half a second.
	psiWindow = 500 * time.Millisecond
	// psiStall: a trigger fires when some task of the scope was stalled on
	// memory for 10% of a window.
	psiStall = psiWindow / 10
	// quietShare and quietWindows are the thaw hysteresis: a frozen call is
	// thawed, one per quietWindows, once stall stays under 5%.
	quietShare   = 0.05
	quietWindows = 2
	// stallShare: a throttled call whose tasks were all stalled on memory
	// ("full") for half of a window made no progress in it.
	stallShare = 0.5
	// throttleQuiet ends a throttle spell: the kernel sleeps a throttled
	// task up to 2 s per allocation batch, so a call stuck over its
	// memory.high may report no new "high" event for that long.
	throttleQuiet = 3 * time.Second
	// contended: a scope's pressure is contention (and worth a freeze) when
	// its usage is this close to its limit; below, the pressure comes from a
	// call's own memory.high, which freezing another call would not relieve.
	contended = 0.9
)

// scope is where pressure was seen: the container C, or the pool of agent
// containers it belongs to.
type scope string

const (
	scopeContainer scope = "container"
	scopePool      scope = "pool"
)

// Poller keys of a tool call's files.
type (
	memoryEventsKey struct{ cl *call }
	cgroupEventsKey struct{ cl *call }
)

// ladder is the governor's own state; only its goroutine touches it.
type ladder struct {
	last            time.Time
	lastC, lastPool cgroupfs.Pressure
	quiet           int
}

// govern starts the graduated response for the container: PSI triggers on C
// and on its pool, and the events of each tool call, in one epoll set
// watched by one goroutine. Between events nothing runs; while a call is
// frozen or throttled, a review every PSI window thaws and times out.
func (c *Container) govern(ctx context.Context) error {
	p, err := cgroupfs.NewPoller()
	if err != nil {
		return err
	}
	if err := p.AddTrigger(scopeContainer, c.path, psiStall, psiWindow); err != nil {
		p.Close()
		return err
	}
	if err := p.AddTrigger(scopePool, cgroupfs.Path(c.st.Pool), psiStall, psiWindow); err != nil {
		log.G(ctx).WithError(err).WithField("pool", c.st.Pool).Warn("pool memory pressure is not watched")
	}
	c.poller = p
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
			case <-c.ctx.Done():
				return
			}
		}
	}()
	go c.governLoop(ctx, keys)
	return nil
}

func (c *Container) governLoop(ctx context.Context, keys <-chan []any) {
	var (
		lad    ladder
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
		case <-c.ctx.Done():
			return
		case ks, ok := <-keys:
			if !ok {
				return
			}
			now := time.Now()
			for _, k := range ks {
				switch k := k.(type) {
				case scope:
					c.relieve(ctx, k, now)
				case memoryEventsKey:
					c.memoryEvents(k.cl, now)
				case cgroupEventsKey:
					c.frozenSeen(k.cl, now)
				}
			}
		case now := <-tick:
			c.review(ctx, &lad, now)
		}
		if busy := c.busy(); busy && ticker == nil {
			ticker = time.NewTicker(psiWindow)
			tick = ticker.C
			lad = ladder{last: time.Now()}
			lad.lastC, _ = cgroupfs.ReadPressure(c.path)
			lad.lastPool, _ = cgroupfs.ReadPressure(cgroupfs.Path(c.st.Pool))
		} else if !busy && ticker != nil {
			ticker.Stop()
			ticker, tick = nil, nil
		}
	}
}

// busy reports whether a call is frozen or throttled.
func (c *Container) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.live {
		if !cl.frozenAt.IsZero() || !cl.throttledAt.IsZero() {
			return true
		}
	}
	return false
}

// relieve answers a PSI notification: where the scope is contended, it
// freezes this container's youngest running call, unless a container of
// lower priority in the pool still has one running (it goes first) or the
// call is the last one running in the scope (it is left to finish).
func (c *Container) relieve(ctx context.Context, sc scope, now time.Time) {
	dir := c.path
	if sc == scopePool {
		dir = cgroupfs.Path(c.st.Pool)
	}
	if !isContended(sc, dir) {
		return
	}
	var others []member
	if sc == scopePool {
		unlock, err := lockPool(c.stateRoot())
		if err != nil {
			log.G(ctx).WithError(err).Warn("lock the pool")
			return
		}
		defer unlock()
		others = c.poolMembers()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	running := 0
	var victim *call
	for _, cl := range c.live {
		if cl.frozenAt.IsZero() {
			running++
			if victim == nil || cl.rec.Start.After(victim.rec.Start) {
				victim = cl
			}
		}
	}
	mine := rank(c.policy.Priority)
	for _, m := range others {
		if m.running > 0 && m.rank < mine {
			return
		}
		running += m.running
	}
	if victim == nil || running < 2 {
		return
	}
	c.freeze(ctx, victim, sc, now)
}

// isContended reports whether the pressure seen in a scope is contention
// for its memory, which freezing a call relieves, rather than a call stalled
// on its own memory.high. The container is contended near its own limit; the
// pool near the first limit from it up, or, with none, when the host is
// short of memory.
func isContended(sc scope, dir string) bool {
	for {
		if near, limited := nearLimit(dir); limited || sc == scopeContainer {
			return near
		}
		if dir == cgroupfs.Root || dir == "/" || dir == "." {
			return hostShort()
		}
		dir = filepath.Dir(dir)
	}
}

// nearLimit reports whether dir has a memory limit and is near it.
func nearLimit(dir string) (near, limited bool) {
	limit := policy.Unlimited
	for _, f := range []string{"memory.high", "memory.max"} {
		if v, err := cgroupfs.ReadLimit(dir, f); err == nil && v != policy.Unlimited && (limit == policy.Unlimited || v < limit) {
			limit = v
		}
	}
	if limit == policy.Unlimited {
		return false, false
	}
	cur, err := cgroupfs.ReadUint(dir, "memory.current")
	return err == nil && float64(cur) >= contended*float64(limit), true
}

// hostShort reports whether the host has less than 1-contended of its
// memory available.
func hostShort() bool {
	kv, err := cgroupfs.ReadMeminfo()
	if err != nil || kv["MemTotal"] == 0 {
		return true
	}
	return float64(kv["MemAvailable"]) < (1-contended)*float64(kv["MemTotal"])
}

func (c *Container) freeze(ctx context.Context, cl *call, sc scope, now time.Time) {
	if err := cgroupfs.SetFrozen(cl.dir, true); err != nil {
		log.G(ctx).WithError(err).WithField("call", cl.rec.ID).Warn("freeze tool call")
		return
	}
	cl.frozenAt, cl.freezeAsked = now, now
	cl.rec.State = state.Frozen
	cl.rec.Freezes++
	c.calls.save(ctx)
	log.G(ctx).WithFields(log.Fields{"call": cl.rec.ID, "scope": sc}).Info("froze tool call under memory pressure")
	c.publish(ctx, topicFrozen, cl, "memory pressure on the "+string(sc))
}

func (c *Container) thaw(ctx context.Context, cl *call, now time.Time) {
	if err := cgroupfs.SetFrozen(cl.dir, false); err != nil {
		log.G(ctx).WithError(err).WithField("call", cl.rec.ID).Warn("thaw tool call")
		return
	}
	cl.settle(now)
	c.calls.save(ctx)
	log.G(ctx).WithField("call", cl.rec.ID).Info("thawed tool call")
	c.publish(ctx, topicThawed, cl, "memory pressure subsided")
}

// memoryEvents notes a change of a call's memory.events: new "high" events
// mean the kernel is throttling it.
func (c *Container) memoryEvents(cl *call, now time.Time) {
	ev, err := cgroupfs.ReadMemoryEvents(cl.dir)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.High > cl.high {
		cl.high, cl.lastHigh = ev.High, now
		if cl.throttledAt.IsZero() {
			cl.throttledAt = now
			if cl.rec.State == state.Running {
				cl.rec.State = state.Throttled
			}
		}
	}
}

// frozenSeen measures a freeze once the kernel reports it complete.
func (c *Container) frozenSeen(cl *call, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.freezeAsked.IsZero() {
		return
	}
	if frozen, err := cgroupfs.Frozen(cl.dir); err == nil && frozen {
		cl.rec.FreezeLatencyUs = now.Sub(cl.freezeAsked).Microseconds()
		cl.freezeAsked = time.Time{}
	}
}

// review runs every PSI window while a call is frozen or throttled: it ends
// throttle spells, thaws with hysteresis, and kills a call that has made no
// progress for the stall timeout.
func (c *Container) review(ctx context.Context, lad *ladder, now time.Time) {
	elapsed := now.Sub(lad.last)
	if elapsed <= 0 {
		return
	}
	pc, _ := cgroupfs.ReadPressure(c.path)
	pp, _ := cgroupfs.ReadPressure(cgroupfs.Path(c.st.Pool))
	share := func(cur, last cgroupfs.Pressure) float64 { return float64(cur.Some-last.Some) / float64(elapsed) }
	if share(pc, lad.lastC) < quietShare && share(pp, lad.lastPool) < quietShare {
		lad.quiet++
	} else {
		lad.quiet = 0
	}
	lad.last, lad.lastC, lad.lastPool = now, pc, pp
	if lad.quiet >= quietWindows && c.thawOne(ctx, now) {
		lad.quiet = 0
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.live {
		if !cl.throttledAt.IsZero() && now.Sub(cl.lastHigh) >= throttleQuiet {
			cl.rec.ThrottledSeconds += cl.lastHigh.Sub(cl.throttledAt).Seconds()
			cl.throttledAt = time.Time{}
			if cl.rec.State == state.Throttled {
				cl.rec.State = state.Running
			}
		}
		stalled := !cl.frozenAt.IsZero()
		if p, err := cgroupfs.ReadPressure(cl.dir); err == nil {
			if !cl.throttledAt.IsZero() && float64(p.Full-cl.lastFull) >= stallShare*float64(elapsed) {
				stalled = true
			}
			cl.lastFull = p.Full
		}
		switch {
		case !stalled:
			cl.stallSince = time.Time{}
		case cl.stallSince.IsZero():
			cl.stallSince = now.Add(-elapsed)
			if !cl.frozenAt.IsZero() {
				cl.stallSince = cl.frozenAt
			}
		}
		if stalled && now.Sub(cl.stallSince) >= c.policy.StallTimeout && cl.killReason == "" {
			how := "throttled at its memory.high"
			if !cl.frozenAt.IsZero() {
				how = "frozen under memory pressure"
			}
			cl.killReason = "no progress for " + c.policy.StallTimeout.String() + " while " + how
			log.G(ctx).WithFields(log.Fields{"call": cl.rec.ID, "reason": cl.killReason}).Warn("killing stalled tool call")
			if err := cgroupfs.Kill(cl.dir); err != nil {
				log.G(ctx).WithError(err).WithField("call", cl.rec.ID).Warn("kill stalled tool call")
			}
		}
	}
}

// thawOne thaws this container's longest-frozen call, unless a container of
// higher priority in the pool still has frozen calls (they thaw first).
func (c *Container) thawOne(ctx context.Context, now time.Time) bool {
	unlock, err := lockPool(c.stateRoot())
	if err != nil {
		log.G(ctx).WithError(err).Warn("lock the pool")
		return false
	}
	defer unlock()
	mine := rank(c.policy.Priority)
	for _, m := range c.poolMembers() {
		if m.frozen > 0 && m.rank > mine {
			return false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var oldest *call
	for _, cl := range c.live {
		if !cl.frozenAt.IsZero() && cl.killReason == "" && (oldest == nil || cl.frozenAt.Before(oldest.frozenAt)) {
			oldest = cl
		}
	}
	if oldest == nil {
		return false
	}
	c.thaw(ctx, oldest, now)
	return true
}
