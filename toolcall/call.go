package toolcall

import (
	"sync"
	"time"
)

// Call is a live tool call. Its methods are the events of its life; each
// takes the call's own lock briefly and does no I/O, so the placement path,
// the governor and the call's end never wait on each other's cgroup files.
type Call struct {
	mu  sync.Mutex
	rec Record
	// The spells in progress (zero when none): their time is added to the
	// record when they end.
	throttledSince, frozenSince time.Time
	frozenWhy                   string
	killReason                  string
}

// Why a throttled call waits.
const throttledWhy = "throttled by the kernel: over its memory.high"

// spells mirrors the spells in progress into the record.
func (c *Call) spells() {
	c.rec.ThrottledSince, c.rec.FrozenSince, c.rec.Waiting = nil, nil, ""
	if !c.throttledSince.IsZero() {
		t := c.throttledSince.UTC()
		c.rec.ThrottledSince, c.rec.Waiting = &t, throttledWhy
	}
	if !c.frozenSince.IsZero() {
		t := c.frozenSince.UTC()
		c.rec.FrozenSince, c.rec.Waiting = &t, "frozen: "+c.frozenWhy
	}
}

// New starts following a call from its record; the call is Running.
func New(rec Record) *Call {
	rec.State = Running
	return &Call{rec: rec}
}

// ID is the call's ID, also its cgroup's name.
func (c *Call) ID() string { return c.rec.ID } // immutable

// Cgroup is the call's cgroup, relative to the cgroup2 mount.
func (c *Call) Cgroup() string { return c.rec.Cgroup } // immutable

// Start is when the call started.
func (c *Call) Start() time.Time { return c.rec.Start } // immutable

// Record returns a copy of the call's record.
func (c *Call) Record() Record { return locked(c, func() Record { return c.rec }) }

// State returns the call's state.
func (c *Call) State() State { return locked(c, func() State { return c.rec.State }) }

// FrozenSince returns when the call's freeze began; zero if not frozen.
func (c *Call) FrozenSince() time.Time { return locked(c, func() time.Time { return c.frozenSince }) }

// Throttling reports whether a throttle spell is in progress.
func (c *Call) Throttling() bool { return locked(c, func() bool { return !c.throttledSince.IsZero() }) }

// locked returns what get reads of c under c's lock.
func locked[T any](c *Call, get func() T) T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return get()
}

// Named sets what the detector saw the call execute.
func (c *Call) Named(command []string, startedUnplaced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec.Command, c.rec.StartedUnplaced = command, startedUnplaced
}

// Became says that the call's leader is now another kind of call, running
// command: a session replaced by a program (exec CMD) is a forked call.
func (c *Call) Became(kind string, command []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec.Kind, c.rec.Command = kind, command
}

// Kind is the call's kind.
func (c *Call) Kind() string { return locked(c, func() string { return c.rec.Kind }) }

// Throttle begins a throttle spell: the kernel reported new memory.high
// events. A frozen call stays Frozen and is Throttled again on thaw.
func (c *Call) Throttle(now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.throttledSince.IsZero() || c.rec.State.Ended() {
		return nil
	}
	c.throttledSince = now
	c.spells()
	if c.rec.State == Running {
		return c.transition(Throttled)
	}
	return nil
}

// Unthrottle ends a throttle spell at last, the last memory.high event seen.
func (c *Call) Unthrottle(last time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.throttledSince.IsZero() {
		return nil
	}
	c.rec.ThrottledSeconds += last.Sub(c.throttledSince).Seconds()
	c.throttledSince = time.Time{}
	c.spells()
	if c.rec.State == Throttled {
		return c.transition(Running)
	}
	return nil
}

// Freeze records a freeze the governor made, and why.
func (c *Call) Freeze(now time.Time, why string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.transition(Frozen); err != nil {
		return err
	}
	c.frozenSince, c.frozenWhy = now, why
	c.rec.Freezes++
	c.spells()
	return nil
}

// FreezeComplete records how long the kernel took to freeze the call.
func (c *Call) FreezeComplete(latency time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec.FreezeLatencyUs = latency.Microseconds()
}

// Thaw records a thaw: the call returns to Throttled if its throttle spell
// goes on, else to Running.
func (c *Call) Thaw(now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.thaw(now)
}

func (c *Call) thaw(now time.Time) error {
	to := Running
	if !c.throttledSince.IsZero() {
		to = Throttled
	}
	if err := c.transition(to); err != nil {
		return err
	}
	c.rec.FrozenSeconds += now.Sub(c.frozenSince).Seconds()
	c.frozenSince = time.Time{}
	c.spells()
	return nil
}

// Doom records why the shim is killing the call; the first reason stays.
// It reports whether this was the first.
func (c *Call) Doom(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.killReason != "" || c.rec.State.Ended() {
		return false
	}
	c.killReason = reason
	return true
}

// Pardon withdraws a Doom whose kill failed.
func (c *Call) Pardon() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killReason = ""
}

// Doomed returns why the shim killed the call, "" if it did not.
func (c *Call) Doomed() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killReason
}

// Exit records the exit of the call's first process. The call lives on
// until its cgroup is empty.
func (c *Call) Exit(status uint32, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at = at.UTC()
	c.rec.ExitCode, c.rec.End = &status, &at
}

// Measures are a call's memory figures at its end.
type Measures struct {
	Peak, High, Max, OOMKills uint64
	// OOM counts the OOMs at the call's own memory.max (memory.events "oom"),
	// against OOMKills, which also counts kills for a limit above it.
	OOM uint64
	// PidsMax counts the forks its pids.max refused (pids.events "max").
	PidsMax uint64
}

// SigkillStatus is the exit status of a process killed by SIGKILL.
const SigkillStatus = 128 + 9

// End ends the call once its cgroup is empty: spells are closed, the
// figures and the reason (why it was killed, "" if it was not) recorded,
// and the final state follows from how it died. It returns the record.
func (c *Call) End(now time.Time, m Measures, reason string) (Record, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.State == Frozen {
		if err := c.thaw(now); err != nil {
			return c.rec, err
		}
	}
	if !c.throttledSince.IsZero() {
		c.rec.ThrottledSeconds += now.Sub(c.throttledSince).Seconds()
		c.throttledSince = time.Time{}
	}
	c.spells()
	c.rec.MemoryPeakBytes, c.rec.MemoryHighEvents, c.rec.MemoryMaxEvents, c.rec.OOMKills = m.Peak, m.High, m.Max, m.OOMKills
	c.rec.PidsMaxEvents = m.PidsMax
	c.rec.Reason = reason
	to := Exited
	switch {
	case m.OOMKills > 0:
		to = OOMKilled
	case c.rec.ExitCode == nil || *c.rec.ExitCode == SigkillStatus:
		to = Killed
	}
	if err := c.transition(to); err != nil {
		return c.rec, err
	}
	if c.rec.End == nil {
		end := now.UTC()
		c.rec.End = &end
	}
	return c.rec, nil
}
