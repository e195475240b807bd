package governor

import (
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// FreezeAtStart freezes a tool call of container id that has just executed
// its program (found by the detector), where it would run into an OOM
// kill: its container or pool is at freezeShare, or calls there are frozen
// waiting for room that a thaw would not give yet (thawShare), while another
// call runs in that scope to make the room. Frozen before it has allocated
// much, the call takes nothing from the calls that run: the largest bursts
// run one after another instead of meeting at the limit, where the kernel
// kills one of them. Frozen after its execve, not while held in it, so that
// the agent's spawn (vfork, or a pipe closed on exec) has returned. It then
// waits as a frozen call does, after the container's calls frozen while
// running (they hold memory), and starts anyway at its stall timeout rather
// than being killed. Only where a freeze helps (freezeHelps): without swap,
// at a memory.max, a crowded pool seldom has the room the call waits for
// while every agent's calls keep coming: in the bursty replays the wait
// spared no kill and made the run much longer (docs/configuration.md, "The graduated response"). It
// reports whether it froze the call (at now); it may be called from any
// goroutine, before or after the call is watched.
func (w *Watcher) FreezeAtStart(id string, cl *toolcall.Call, now time.Time) bool {
	if w.done.Load() || cl.State() != toolcall.Running {
		return false // nothing would thaw it; or it ended, or is frozen already
	}
	c, calls := w.lookup(id)
	if c == nil {
		return false
	}
	running, frozen := 0, 0
	for _, wc := range calls {
		switch st := wc.cl.State(); {
		case wc.cl == cl:
		case st == toolcall.Running || st == toolcall.Throttled:
			running++
		case st == toolcall.Frozen:
			frozen++
		}
	}
	// crowded: a start there would meet an OOM kill, or jump the calls
	// waiting for room; with a call running that would make room.
	crowded := func(used float64, running, frozen int) bool {
		return running > 0 && (used >= freezeShare || (used >= thawShare && frozen > 0))
	}
	sc, soft, crowdedC := scopeContainer, false, false
	// C's usage is read only where another of its calls runs: a call the
	// agent runs alone, the common case, reads no file of C.
	if running > 0 {
		var used float64
		used, soft = w.used(scopeContainer, c.dir)
		crowdedC = crowded(used, running, frozen)
	}
	if !crowdedC {
		poolUsed, poolSoft := w.used(scopePool, c.pool)
		if poolUsed < thawShare || !w.freezeHelps(poolSoft, c.dir) {
			return false
		}
		t, unlock, ok := w.lockPool(c)
		if !ok {
			return false
		}
		defer unlock()
		if t.lowerRunning {
			return false // a call of lower priority is frozen first
		}
		if !crowded(poolUsed, running+t.running, frozen+t.frozen) {
			return false
		}
		sc = scopePool
	} else if !w.freezeHelps(soft, c.dir) {
		return false
	}
	dir := w.dir(cl)
	if err := cgroupfs.SetFrozen(dir, true); err != nil {
		log.G(w.ctx).WithError(err).WithField("call", cl.ID()).Warn("freeze tool call at its start")
		return false
	}
	reason := "memory pressure on the " + string(sc) + ", before it started"
	if err := cl.Freeze(now, reason); err != nil {
		_ = cgroupfs.SetFrozen(dir, false) // it ended meanwhile
		return false
	}
	w.mu.Lock()
	if wc := c.calls[cl]; wc != nil {
		wc.queued.Store(true)
	} else {
		c.early[cl] = true
	}
	w.mu.Unlock()
	c.cb(cl, Froze, reason)
	w.publish(c)
	w.wakeLoop() // its reviews start now, not at the next notification
	return true
}
