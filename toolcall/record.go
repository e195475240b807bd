// Package toolcall is a tool call as agentcgroup follows it: its record (what
// `agentcgroup ps` shows and the state folder keeps), its state and the one
// transition function that moves it between states.
package toolcall

import "time"

// Kinds of tool call.
const (
	// KindExec is an exec into the container (ctr task exec, docker exec, CRI Exec).
	KindExec = "exec"
	// KindFork is a process the agent forked that executed a program, found
	// by the detector.
	KindFork = "fork"
	// KindSession is a session the agent keeps and feeds commands to (a
	// shell reading them, tmux, screen): bounded in a cgroup of its own, as
	// a call is; each command it runs is a call of its own.
	KindSession = "session"
)

// Record is one tool call, as `agentcgroup ps` shows it.
type Record struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Command []string `json:"command"`
	Pid     uint32   `json:"pid"`
	// Cgroup is the tool call's cgroup, relative to the cgroup2 mount.
	Cgroup           string     `json:"cgroup"`
	Start            time.Time  `json:"start"`
	End              *time.Time `json:"end,omitempty"`
	State            State      `json:"state"`
	ExitCode         *uint32    `json:"exit_code,omitempty"`
	MemoryPeakBytes  uint64     `json:"memory_peak_bytes"`
	MemoryHighEvents uint64     `json:"memory_high_events"`
	MemoryMaxEvents  uint64     `json:"memory_max_events"`
	OOMKills         uint64     `json:"oom_kills"`
	// PidsMaxEvents counts the forks its pids.max refused.
	PidsMaxEvents uint64 `json:"pids_max_events,omitempty"`
	// PlacedAfterUs is, for a fork-detected call, how long after its fork it
	// was in its own cgroup; memory it charged before stays with C/agent.
	PlacedAfterUs int64 `json:"placed_after_us,omitempty"`
	// StartedUnplaced says that a fork-detected call's program started in
	// C/agent (no exec hold), so that what it touched until PlacedAfterUs
	// stays charged there.
	StartedUnplaced  bool    `json:"started_unplaced,omitempty"`
	ThrottledSeconds float64 `json:"throttled_seconds"`
	FrozenSeconds    float64 `json:"frozen_seconds"`
	// ThrottledSince and FrozenSince start the spell in progress, if any
	// (its time is added to the seconds above when it ends); Waiting says
	// why the call is slowed down or stopped, so that an orchestrator can
	// show what the agent is waiting on.
	ThrottledSince *time.Time `json:"throttled_since,omitempty"`
	FrozenSince    *time.Time `json:"frozen_since,omitempty"`
	Waiting        string     `json:"waiting,omitempty"`
	// Freezes counts how often the call was frozen; FreezeLatencyUs is the
	// last one's time from the pressure notification to frozen.
	Freezes         int   `json:"freezes,omitempty"`
	FreezeLatencyUs int64 `json:"freeze_latency_us,omitempty"`
	// Reason says why a killed or oom-killed call died, with its peak and
	// the limit it met, as the agent is told.
	Reason string `json:"reason,omitempty"`
}
