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
// memory.high by itself; the governor freezes, thaws and kills. A freeze is
// kept for when an OOM kill, or at a memory.high a stall of every call, is
// otherwise imminent, and a frozen call runs again as soon as there is room
// for it. Without swap a frozen call's memory stays charged: at a
// memory.max a freeze then makes no room and only delays the kernel's OOM
// kill, while the frozen call's agent waits, so there is none (see
// freezeHelps).
const (
	// psiWindow is the shortest PSI window the kernel accepts, so that a
	// freeze follows sustained pressure within half a second.
	psiWindow = 500 * time.Millisecond
	// psiStall: a trigger fires when some task of the scope was stalled on
	// memory for 10% of a window: reclaim is not keeping up.
	psiStall = psiWindow / 10
	// freezeShare: with reclaim not keeping up, a scope is about to
	// OOM-kill when what it cannot reclaim (its usage but the file cache)
	// is this close to its limit; below, the pressure is page-cache
	// reclaim or a call's own memory.high, which a freeze would not relieve.
	freezeShare = 0.9
	// thawShare: a frozen call runs again, one a review, once what the
	// scope cannot reclaim is under this share of its limit (the gap to
	// freezeShare is the hysteresis), or at once when no other call of the
	// scope is running (the largest bursts then run one after another).
	thawShare = 0.8
	// quietShare and quietWindows: a frozen call also runs again once
	// stall stayed under 5% for two windows, so that a scope that settles
	// between thawShare and freezeShare without pressure does not keep it
	// frozen until its stall timeout.
	quietShare   = 0.05
	quietWindows = 2
	// stallShare: a throttled call whose tasks were all stalled on memory
	// ("full") for half of a window made no progress in it.
	stallShare = 0.5
	// throttleQuiet ends a throttle spell: the kernel sleeps a throttled
	// task up to 2 s per allocation batch, so a call stuck over its
	// memory.high may report no new "high" event for that long.
	throttleQuiet = 3 * time.Second
)

// ladder is a container's review state: the pressure totals at the last
// review and how many quiet windows passed since.
type ladder struct {
	last            time.Time
	lastC, lastPool cgroupfs.Pressure
	quiet           int
}

// relieve answers a PSI notification: where an OOM kill in the scope is
// imminent and a freeze helps, it freezes the container's youngest running
// call, unless a container of lower priority in the pool still has one
// running (it goes first) or the call is the last one running in the scope
// (it is left to finish).
func (w *Watcher) relieve(id string, sc scope, now time.Time) {
	c, calls := w.lookup(id)
	if c == nil {
		return
	}
	dir := c.dir
	if sc == scopePool {
		dir = c.pool
	}
	if used, soft := w.used(sc, dir); used < freezeShare || !w.freezeHelps(soft, c.dir) {
		return
	}
	if sc == scopePool && now.Sub(w.poolFrozen[c.pool]) < psiWindow {
		return // this notification's call is frozen already
	}
	var others tally
	if sc == scopePool {
		t, unlock, ok := w.lockPool(c)
		if !ok {
			return
		}
		defer unlock()
		others = t
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
	if others.lowerRunning {
		return
	}
	running += others.running
	if victim == nil || running < 2 {
		return
	}
	if w.freeze(c, victim, sc, now) && sc == scopePool {
		w.poolFrozen[c.pool] = now
	}
}

// used is the share of the first memory limit from a scope up (the
// container: its own) that what the scope cannot reclaim takes, or, with
// no limit, the share of the host's memory that is not available. soft
// says that limit is a memory.high, where the kernel throttles and kills
// nothing.
func (w *Watcher) used(sc scope, dir string) (share float64, soft bool) {
	for {
		if used, limit := usedShare(dir); limit != "" || sc == scopeContainer {
			return used, limit == "memory.high"
		}
		if dir == w.root || len(dir) <= len(w.root) {
			return w.hostUsed(), false
		}
		dir = filepath.Dir(dir)
	}
}

// usedShare returns the share of dir's memory limit (the lower of
// memory.high and memory.max, named by limit; "" where dir has none) that
// its memory but the page cache takes: anonymous, shared (tmpfs, memfd) and
// kernel memory, which without swap only an exit or a kill gives back.
func usedShare(dir string) (used float64, limit string) {
	bound := cgroupfs.Unlimited
	for _, f := range []string{"memory.max", "memory.high"} { // a tie is a hard limit
		if v, err := cgroupfs.ReadLimit(dir, f); err == nil && v != cgroupfs.Unlimited && (bound == cgroupfs.Unlimited || v < bound) {
			bound, limit = v, f
		}
	}
	if limit == "" {
		return 0, ""
	}
	cur, err := cgroupfs.ReadUint(dir, "memory.current")
	if err != nil {
		return 0, limit
	}
	if st, err := cgroupfs.ReadKV(dir, "memory.stat"); err == nil {
		cur -= min(cur, st["active_file"]+st["inactive_file"])
	}
	return float64(cur) / float64(max(bound, 1)), limit
}

// freezeHelps reports whether freezing a call of the container dir can
// spare a kill: at a soft limit (memory.high) the alternative is every call
// stalled, and with swap a frozen call's pages go out to make room. Without
// swap, at a memory.max, the frozen call keeps what it has charged, the
// kernel OOM-kills when the others grow all the same, and the frozen
// call's agent only waits: in the bursty replays such freezes spared no
// kill and only made the agents slower (docs/configuration.md, "The graduated response").
func (w *Watcher) freezeHelps(soft bool, dir string) bool {
	return soft || w.canSwap(dir)
}

// canSwap reports whether the tool calls of the container dir can swap:
// the host has swap left and no cgroup from C up sets memory.swap.max to 0
// (the shim sets none on calls: they inherit C's).
func (w *Watcher) canSwap(dir string) bool {
	kv, err := w.meminfo()
	if err != nil || kv["SwapFree"] == 0 {
		return false
	}
	for ; len(dir) > len(w.root); dir = filepath.Dir(dir) {
		if v, err := cgroupfs.ReadLimit(dir, "memory.swap.max"); err == nil && v == 0 {
			return false
		}
	}
	return true
}

// hostUsed is the share of the host's memory that is not available.
func (w *Watcher) hostUsed() float64 {
	kv, err := w.meminfo()
	if err != nil || kv["MemTotal"] == 0 {
		return 1
	}
	return 1 - float64(kv["MemAvailable"])/float64(kv["MemTotal"])
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
	c.lad.quiet = 0 // quiet windows count from this freeze on
	c.cb(wc.cl, Froze, reason)
	w.publish(c)
	return true
}

func (w *Watcher) thaw(c *container, wc *watched, now time.Time, reason string) {
	if err := cgroupfs.SetFrozen(wc.dir, false); err != nil {
		log.G(w.ctx).WithError(err).WithField("call", wc.cl.ID()).Warn("thaw tool call")
		return
	}
	if err := wc.cl.Thaw(now); err != nil {
		log.G(w.ctx).WithError(err).Debug("thaw tool call")
		return
	}
	wc.queued.Store(false)
	wc.stallSince = time.Time{} // a stall counts from now on, not from the freeze
	c.cb(wc.cl, Thawed, reason)
	w.publish(c)
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

// reviewContainer thaws a call where there is room or pressure stayed
// quiet, ends throttle spells, and kills a call that has made no progress
// for the stall timeout (one frozen as it started is thawed instead).
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
	if w.thawOne(c, calls, nil, lad.quiet >= quietWindows, now) {
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
		switch {
		case !stalled || now.Sub(wc.stallSince) < c.pol.StallTimeout:
		case wc.queued.Load():
			// It has taken little yet: a kill would free little.
			w.thaw(c, wc, now, "waited "+c.pol.StallTimeout.String()+" for room: starts anyway")
		default:
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

// thawOne thaws the container's longest-frozen call (those frozen while
// running first, then those waiting to start) where there is room
// for it in C and its pool (see thawShare), where it would run alone, or
// where pressure stayed quiet; while the pool is near its limit, a
// container of higher priority there with frozen calls thaws first. ended
// is a call that has just ended (nil: none), not counted as running.
func (w *Watcher) thawOne(c *container, calls []*watched, ended *watched, quiet bool, now time.Time) bool {
	var oldest *watched
	var oldestAt time.Time
	running := 0
	for _, wc := range calls {
		at := wc.cl.FrozenSince()
		switch {
		case at.IsZero():
			if st := wc.cl.State(); wc != ended && (st == toolcall.Running || st == toolcall.Throttled) {
				running++
			}
		case wc.cl.Doomed() != "":
		case oldest == nil || (oldest.queued.Load() && !wc.queued.Load()) || (oldest.queued.Load() == wc.queued.Load() && at.Before(oldestAt)):
			// A call frozen while running holds memory that its end
			// gives back: it goes before the calls that wait to start.
			oldest, oldestAt = wc, at
		}
	}
	if oldest == nil {
		return false
	}
	cUsed, _ := w.used(scopeContainer, c.dir)
	poolUsed, _ := w.used(scopePool, c.pool)
	others := 0
	if poolUsed >= thawShare {
		t, unlock, ok := w.lockPool(c)
		if !ok {
			return false
		}
		defer unlock()
		if t.higherFrozen {
			return false
		}
		others = t.running
	}
	var reason string
	switch {
	case cUsed < thawShare && poolUsed < thawShare:
		reason = "room in the container and its pool"
	case running == 0 && others == 0:
		reason = "no other tool call running"
	case quiet && cUsed < freezeShare && poolUsed < freezeShare:
		reason = "memory pressure subsided"
	default:
		return false
	}
	w.thaw(c, oldest, now, reason)
	return true
}

// lockPool takes the lock of c's pool and returns what its other members
// add to c's decisions as they are now; ok is false, and it said why in the
// log, where the lock failed.
func (w *Watcher) lockPool(c *container) (t tally, unlock func(), ok bool) {
	unlock, err := c.members.Lock()
	if err != nil {
		log.G(w.ctx).WithError(err).Warn("lock the pool")
		return tally{}, nil, false
	}
	mine := c.pol.Priority.Rank()
	for _, m := range c.members.Members() {
		t.running += m.Running
		t.frozen += m.Frozen
		t.lowerRunning = t.lowerRunning || (m.Running > 0 && m.Priority.Rank() < mine)
		t.higherFrozen = t.higherFrozen || (m.Frozen > 0 && m.Priority.Rank() > mine)
	}
	return t, unlock, true
}

// tally is the other members of a container's pool, seen from it: their
// running and frozen tool calls, whether one of lower priority has a call
// running (its calls are frozen first) and whether one of higher priority
// has a call frozen (its calls thaw first).
type tally struct {
	running, frozen            int
	lowerRunning, higherFrozen bool
}
