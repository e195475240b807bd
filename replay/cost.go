package replay

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// Why a tool call or an agent framework was killed.
const (
	KillPool      = "pool OOM"             // the kernel, at the pool's memory.max
	KillContainer = "container memory.max" // the kernel, at the container's own limit (arm b)
	KillOwn       = "call memory.max"      // the kernel, at the tool call's own limit (arm d)
	KillStall     = "stall timeout"        // agentcgroup, a call frozen or throttled too long
)

// killReasons are the reasons in the order the tables show them.
var killReasons = []string{KillPool, KillContainer, KillOwn, KillStall}

// Cost is where an agent's losses and waiting came from.
type Cost struct {
	// CallKills counts the agent's tool calls killed, by reason.
	CallKills map[string]int `json:",omitempty"`
	// AgentKill is why the agent framework was killed; "" if it was not.
	AgentKill string `json:",omitempty"`
	// Frozen is, per call frozen at least once, its time frozen in seconds.
	Frozen []float64 `json:",omitempty"`
	// FrozenSeconds sums the time its calls were frozen (calls that ran at
	// once count each).
	FrozenSeconds float64
	// Stalled is the seconds in which some task of the container was
	// stalled on memory (its memory.pressure "some" total): reclaim, and
	// throttling at a memory.high, in any arm.
	Stalled float64
}

// containerKill says which limit a kill in a container came from, from the
// container cgroup's memory.events.local: "oom" counts the times its own
// memory.max was met (not its sub-cgroups'); kills without it came from a
// limit above (the pool).
func containerKill(events map[string]uint64) string {
	if events["oom"] > 0 {
		return KillContainer
	}
	return KillPool
}

// recordKill says why agentcgroup's record of a call says it was killed,
// from the reason the agent was told; "" for a call that was not killed.
func recordKill(r toolcall.Record) string {
	if r.State != toolcall.Killed && r.State != toolcall.OOMKilled {
		return ""
	}
	switch {
	case strings.Contains(r.Reason, "no progress for"):
		return KillStall
	case strings.Contains(r.Reason, "its own limit"):
		return KillOwn
	case strings.Contains(r.Reason, "the container's limit"):
		return KillContainer
	case r.State == toolcall.OOMKilled || strings.Contains(r.Reason, "out of memory"):
		return KillPool
	}
	return "" // killed by the agent or at teardown: not the memory policy's
}

// measureCost fills an agent's cost at now: from agentcgroup's records of
// its calls where the arm keeps them, else from the kernel's count of OOM
// kills in its container (the runc arms, where every killed call was the
// OOM killer's).
func measureCost(ar *AgentResult, fromRecords bool, events map[string]uint64, stalled time.Duration, records []toolcall.Record, now time.Time) {
	c := Cost{CallKills: map[string]int{}, Stalled: stalled.Seconds()}
	if ar.AgentKilled {
		c.AgentKill = containerKill(events)
	}
	if !fromRecords && ar.Summary != nil && ar.Summary.Killed > 0 {
		c.CallKills[containerKill(events)] = ar.Summary.Killed
	}
	for _, r := range records {
		if why := recordKill(r); why != "" {
			c.CallKills[why]++
		}
		frozen := r.FrozenSeconds
		if r.FrozenSince != nil { // still frozen (an unfinished agent)
			frozen += now.Sub(*r.FrozenSince).Seconds()
		}
		if r.Freezes > 0 {
			c.Frozen = append(c.Frozen, frozen)
		}
		c.FrozenSeconds += frozen
	}
	ar.Cost = c
}

// CostTotals are where an arm's cost came from, summed over its agents.
type CostTotals struct {
	CallKills, AgentKills map[string]int
	FrozenCalls           int
	// FrozenP50 and FrozenMax are over the calls frozen at least once.
	FrozenP50, FrozenMax   float64
	FrozenSeconds, Stalled float64
}

// Costs sums up where an arm's cost came from.
func (r *ArmResult) Costs() CostTotals {
	t := CostTotals{CallKills: map[string]int{}, AgentKills: map[string]int{}}
	var frozen []float64
	for _, a := range r.Agents {
		for why, n := range a.Cost.CallKills {
			t.CallKills[why] += n
		}
		if a.Cost.AgentKill != "" {
			t.AgentKills[a.Cost.AgentKill]++
		}
		frozen = append(frozen, a.Cost.Frozen...)
		t.FrozenSeconds += a.Cost.FrozenSeconds
		t.Stalled += a.Cost.Stalled
	}
	slices.Sort(frozen)
	if t.FrozenCalls = len(frozen); t.FrozenCalls > 0 {
		t.FrozenP50, t.FrozenMax = frozen[len(frozen)/2], frozen[len(frozen)-1]
	}
	return t
}

// WriteCosts writes where each arm's cost came from as a Markdown table.
func WriteCosts(w io.Writer, results []*ArmResult) {
	fmt.Fprintf(w, "| arm | tool calls killed (%s) | agents killed (%s) | calls frozen, time frozen p50 / max | frozen call-seconds | memory stall (PSI some, summed) |\n",
		strings.Join(killReasons, " / "), strings.Join(killReasons, " / "))
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	counts := func(m map[string]int) string {
		out := make([]string, len(killReasons))
		for i, why := range killReasons {
			out[i] = strconv.Itoa(m[why])
		}
		return strings.Join(out, " / ")
	}
	for _, r := range results {
		c := r.Costs()
		fmt.Fprintf(w, "| (%s) %s | %s | %s | %d, %.1fs / %.1fs | %.1fs | %.1fs |\n", r.Arm.Name, r.Arm.Label,
			counts(c.CallKills), counts(c.AgentKills), c.FrozenCalls, c.FrozenP50, c.FrozenMax, c.FrozenSeconds, c.Stalled)
	}
}
