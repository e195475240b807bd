package toolcall

import (
	"errors"
	"fmt"
	"slices"
)

// State is where a tool call is in its life. A call starts Running; the
// kernel's throttling (memory.high) and the governor's freeze move it between
// the three live states; it ends in one of the other three, once its process
// has exited and its cgroup is empty.
type State string

const (
	Running   State = "running"
	Throttled State = "throttled" // over its memory.high: the kernel slows its allocations
	Frozen    State = "frozen"    // frozen by the governor under memory pressure
	Exited    State = "exited"
	OOMKilled State = "oom-killed" // by the kernel's OOM killer (memory.oom.group: the whole call)
	Killed    State = "killed"     // by a signal: the governor's stall timeout, the agent, teardown
)

// Ended reports whether s is a final state.
func (s State) Ended() bool { return s == Exited || s == OOMKilled || s == Killed }

// ErrTransition is a move the state machine does not allow.
var ErrTransition = errors.New("impossible tool-call state transition")

var ends = []State{Exited, OOMKilled, Killed}

// next lists the states each live state may move to; an ended call moves
// nowhere. Frozen wins over Throttled: a frozen call allocates nothing, and
// returns to Throttled on thaw if its throttle spell has not ended.
var next = map[State][]State{
	Running:   append([]State{Throttled, Frozen}, ends...),
	Throttled: append([]State{Running, Frozen}, ends...),
	Frozen:    append([]State{Running, Throttled}, ends...),
}

// transition is the only place a call's state changes.
func (c *Call) transition(to State) error {
	from := c.rec.State
	if !slices.Contains(next[from], to) {
		return fmt.Errorf("tool call %s: %s to %s: %w", c.rec.ID, from, to, ErrTransition)
	}
	c.rec.State = to
	return nil
}
