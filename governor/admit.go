package governor

import (
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// FreezeAtStart freezes a tool call of container id that is in its cgroup
// but has not run its program yet (held at its first execve), where it
// would start into an OOM kill: its container or pool is at freezeShare,
// or calls there are frozen waiting for room that a thaw would not give
// yet (thawShare), while another call runs there to make that room. Frozen
// before it has allocated anything, the call takes nothing from the calls
// that run: the largest bursts run one after another instead of meeting at
// the limit, where the kernel kills one of them. It then waits as a frozen
// call does, after the calls frozen while running (they hold memory), and
// starts anyway at its stall timeout rather than being killed. It reports
// whether it froze the call (at now); it may be called from any goroutine,
// before the call is watched.
func (w *Watcher) FreezeAtStart(id string, cl *toolcall.Call, now time.Time) bool {
	c, calls := w.lookup(id)
	if c == nil {
		return false
	}
	cUsed, poolUsed := w.used(scopeContainer, c.dir), w.used(scopePool, c.pool)
	if cUsed < thawShare && poolUsed < thawShare {
		return false
	}
	running, frozen := 0, 0
	for _, wc := range calls {
		switch st := wc.cl.State(); st {
		case toolcall.Running, toolcall.Throttled:
			running++
		case toolcall.Frozen:
			frozen++
		}
	}
	sc := scopeContainer
	if poolUsed >= thawShare {
		unlock, err := c.members.Lock()
		if err != nil {
			log.G(w.ctx).WithError(err).Warn("lock the pool")
			return false
		}
		defer unlock()
		mine := c.pol.Priority.Rank()
		for _, m := range c.members.Members() {
			if m.Running > 0 && m.Priority.Rank() < mine {
				return false // a call of lower priority is frozen first
			}
			running += m.Running
			frozen += m.Frozen
		}
		if cUsed < freezeShare {
			sc = scopePool
		}
	}
	if running == 0 || (cUsed < freezeShare && poolUsed < freezeShare && frozen == 0) {
		return false
	}
	dir := w.dir(cl)
	if err := cgroupfs.SetFrozen(dir, true); err != nil {
		log.G(w.ctx).WithError(err).WithField("call", cl.ID()).Warn("freeze tool call at its start")
		return false
	}
	reason := "memory pressure on the " + string(sc) + ", before it started"
	if err := cl.Freeze(now, reason); err != nil {
		_ = cgroupfs.SetFrozen(dir, false)
		return false
	}
	c.cb(cl, Froze, reason)
	return true
}
