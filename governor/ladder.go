package governor

import (
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// The graduated response's thresholds. The kernel throttles a call over its
// memory.high by itself; the governor freezes, thaws and kills.
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

// ladder is a container's review state: the pressure totals at the last
// review and how many quiet windows passed since.
type ladder struct {
	last            time.Time
	lastC, lastPool cgroupfs.Pressure
	quiet           int
}

// relieve answers a PSI notification: where the scope is contended, it
// freezes the container's youngest running call, unless a container of
// lower priority in the pool still has one running (it goes first) or the
// call is the last one running in the scope (it is left to finish).
func (w *Watcher) relieve(id string, sc scope, now time.Time) {
	c, calls := w.lookup(id)
	if c == nil {
		return
	}
	dir := c.dir
	if sc == scopePool {
		dir = c.pool
	}
	if !w.contended(sc, dir) {
		return
	}
	if sc == scopePool && now.Sub(w.poolFrozen[c.pool]) < psiWindow {
		return // this notification's call is frozen already
	}
	var others []Member
	if sc == scopePool {
		unlock, err := c.members.Lock()
		if err != nil {
			log.G(w.ctx).WithError(err).Warn("lock the pool")
			return
		}
		defer unlock()
		others = c.members.Members()
	}
	running := 0
	var victim *watched
	for _, wc := range calls {
		if st := wc.cl.State(); st == toolcall.Running || st == toolcall.Throttled {
			running++
			if victim == nil || wc.cl.Start().After(victim.cl.Start()) {
				victim = wc
			}
		}
	}
	mine := c.pol.Priority.Rank()
	for _, m := range others {
		if m.Running > 0 && m.Priority.Rank() < mine {
			return
		}
		running += m.Running
	}
	if victim == nil || running < 2 {
		return
	}
	if w.freeze(c, victim, sc, now) && sc == scopePool {
		w.poolFrozen[c.pool] = now
	}
}

// contended reports whether the pressure seen in a scope is contention for
// its memory, which freezing a call relieves, rather than a call stalled on
// its own memory.high. The container is contended near its own limit; the
// pool near the first limit from it up, or, with none, when the host is
// short of memory.
func (w *Watcher) contended(sc scope, dir string) bool {
	for {
		if near, limited := nearLimit(dir); limited || sc == scopeContainer {
			return near
		}
		if dir == w.root || len(dir) <= len(w.root) {
			return w.hostShort()
		}
		dir = filepath.Dir(dir)
	}
}

// nearLimit reports whether dir has a memory limit and is near it.
func nearLimit(dir string) (near, limited bool) {
	limit := cgroupfs.Unlimited
	for _, f := range []string{"memory.high", "memory.max"} {
		if v, err := cgroupfs.ReadLimit(dir, f); err == nil && v != cgroupfs.Unlimited && (limit == cgroupfs.Unlimited || v < limit) {
			limit = v
		}
	}
	if limit == cgroupfs.Unlimited {
		return false, false
	}
	cur, err := cgroupfs.ReadUint(dir, "memory.current")
	return err == nil && float64(cur) >= contended*float64(limit), true
}

// hostShort reports whether the host has less than 1-contended of its
// memory available.
func (w *Watcher) hostShort() bool {
	kv, err := w.meminfo()
	if err != nil || kv["MemTotal"] == 0 {
		return true
	}
	return float64(kv["MemAvailable"]) < (1-contended)*float64(kv["MemTotal"])
}

// freeze freezes a call and reports whether it did.
func (w *Watcher) freeze(c *container, wc *watched, sc scope, now time.Time) bool {
	if err := cgroupfs.SetFrozen(wc.dir, true); err != nil {
		log.G(w.ctx).WithError(err).WithField("call", wc.cl.ID()).Warn("freeze tool call")
		return false
	}
	reason := "memory pressure on the " + string(sc)
	if err := wc.cl.Freeze(now, reason); err != nil {
		// The call ended meanwhile; its cgroup is empty or gone.
		log.G(w.ctx).WithError(err).Debug("freeze tool call")
		return false
	}
	wc.freezeAsked = now
	c.cb(wc.cl, Froze, reason)
	return true
}

func (w *Watcher) thaw(c *container, wc *watched, now time.Time) {
	if err := cgroupfs.SetFrozen(wc.dir, false); err != nil {
		log.G(w.ctx).WithError(err).WithField("call", wc.cl.ID()).Warn("thaw tool call")
		return
	}
	if err := wc.cl.Thaw(now); err != nil {
		log.G(w.ctx).WithError(err).Debug("thaw tool call")
		return
	}
	c.cb(wc.cl, Thawed, "memory pressure subsided")
}

// startReviews begins a review spell: pressure is measured from now on.
func (w *Watcher) startReviews(now time.Time) {
	for _, id := range w.ids() {
		if c, calls := w.lookup(id); c != nil {
			c.lad = ladder{last: now}
			c.lad.lastC, _ = cgroupfs.ReadPressure(c.dir)
			c.lad.lastPool, _ = cgroupfs.ReadPressure(c.pool)
			for _, wc := range calls {
				p, _ := cgroupfs.ReadPressure(wc.dir)
				wc.lastFull = p.Full
			}
		}
	}
}

// review runs every PSI window while a call is frozen or throttled.
func (w *Watcher) review(now time.Time) {
	for _, id := range w.ids() {
		if c, calls := w.lookup(id); c != nil {
			w.reviewContainer(c, calls, now)
		}
	}
}

// reviewContainer ends throttle spells, thaws with hysteresis, and kills a
// call that has made no progress for the stall timeout.
func (w *Watcher) reviewContainer(c *container, calls []*watched, now time.Time) {
	lad := &c.lad
	elapsed := now.Sub(lad.last)
	if elapsed <= 0 {
		return
	}
	pc, _ := cgroupfs.ReadPressure(c.dir)
	pp, _ := cgroupfs.ReadPressure(c.pool)
	share := func(cur, last cgroupfs.Pressure) float64 { return float64(cur.Some-last.Some) / float64(elapsed) }
	if share(pc, lad.lastC) < quietShare && share(pp, lad.lastPool) < quietShare {
		lad.quiet++
	} else {
		lad.quiet = 0
	}
	lad.last, lad.lastC, lad.lastPool = now, pc, pp
	if lad.quiet >= quietWindows && w.thawOne(c, calls, now) {
		lad.quiet = 0
	}

	for _, wc := range calls {
		if wc.cl.Throttling() && now.Sub(wc.lastHigh) >= throttleQuiet {
			if err := wc.cl.Unthrottle(wc.lastHigh); err != nil {
				log.G(w.ctx).WithError(err).Debug("end throttle spell")
			}
		}
		frozenAt := wc.cl.FrozenSince()
		stalled := !frozenAt.IsZero()
		if p, err := cgroupfs.ReadPressure(wc.dir); err == nil {
			if wc.cl.Throttling() && float64(p.Full-wc.lastFull) >= stallShare*float64(elapsed) {
				stalled = true
			}
			wc.lastFull = p.Full
		}
		switch {
		case !stalled:
			wc.stallSince = time.Time{}
		case wc.stallSince.IsZero():
			wc.stallSince = now.Add(-elapsed)
			if !frozenAt.IsZero() {
				wc.stallSince = frozenAt
			}
		}
		if stalled && now.Sub(wc.stallSince) >= c.pol.StallTimeout {
			w.kill(c, wc, !frozenAt.IsZero())
		}
	}
}

// kill kills a call stalled for its stall timeout, once.
func (w *Watcher) kill(c *container, wc *watched, frozen bool) {
	how := "throttled at its memory.high"
	if frozen {
		how = "frozen under memory pressure"
	}
	reason := "no progress for " + c.pol.StallTimeout.String() + " while " + how
	if !wc.cl.Doom(reason) { // before the kill: its end reads why
		return
	}
	m, err := cgroup2.Load(wc.group, cgroup2.WithMountpoint(w.root))
	if err == nil {
		err = m.Kill()
	}
	if err != nil {
		wc.cl.Pardon() // the next review tries again
		log.G(w.ctx).WithError(err).WithField("call", wc.cl.ID()).Warn("kill stalled tool call")
		return
	}
	c.cb(wc.cl, Killing, reason)
}

// thawOne thaws the container's longest-frozen call, unless a container of
// higher priority in the pool still has frozen calls (they thaw first).
func (w *Watcher) thawOne(c *container, calls []*watched, now time.Time) bool {
	unlock, err := c.members.Lock()
	if err != nil {
		log.G(w.ctx).WithError(err).Warn("lock the pool")
		return false
	}
	defer unlock()
	mine := c.pol.Priority.Rank()
	for _, m := range c.members.Members() {
		if m.Frozen > 0 && m.Priority.Rank() > mine {
			return false
		}
	}
	var oldest *watched
	var oldestAt time.Time
	for _, wc := range calls {
		at := wc.cl.FrozenSince()
		if !at.IsZero() && wc.cl.Doomed() == "" && (oldest == nil || at.Before(oldestAt)) {
			oldest, oldestAt = wc, at
		}
	}
	if oldest == nil {
		return false
	}
	w.thaw(c, oldest, now)
	return true
}
