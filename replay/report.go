package replay

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Totals are an arm's figures as the table shows them.
type Totals struct {
	Agents, Completed, AgentKills       int
	Unfinished                          int // still running at the arm's bound
	CallsDone, CallsKilled, CallsFrozen int
	CallsLost                           int // calls of agents that died before reporting
	StretchP50, StretchP95              float64
	Makespan                            time.Duration
	MeanBytes, PeakBytes                uint64
}

// Totals sums up an arm.
func (r *ArmResult) Totals() Totals {
	t := Totals{Agents: len(r.Agents), Makespan: r.Makespan}
	var stretch []float64
	for _, a := range r.Agents {
		if a.Completed {
			t.Completed++
		}
		if a.AgentKilled {
			t.AgentKills++
		}
		if a.Unfinished {
			t.Unfinished++
		}
		t.CallsFrozen += len(a.Cost.Frozen)
		if a.Summary == nil {
			t.CallsLost++
			continue
		}
		t.CallsDone += a.Summary.Calls - a.Summary.Failed
		t.CallsKilled += a.Summary.Killed
		stretch = append(stretch, a.Summary.Stretch...)
	}
	slices.Sort(stretch)
	if len(stretch) > 0 {
		t.StretchP50 = stretch[len(stretch)/2]
		t.StretchP95 = stretch[min(len(stretch)-1, len(stretch)*95/100)]
	}
	var sum float64
	for _, s := range r.Samples {
		sum += float64(s.Bytes)
		t.PeakBytes = max(t.PeakBytes, s.Bytes)
	}
	if len(r.Samples) > 0 {
		t.MeanBytes = uint64(sum / float64(len(r.Samples)))
	}
	return t
}

// WriteTable writes the arms' results as a Markdown table.
func WriteTable(w io.Writer, results []*ArmResult) {
	fmt.Fprintln(w, "| arm | agents completed | agent-framework kills | tool calls completed / killed / frozen | makespan | tool-call stretch p50 / p95 | pool memory mean / peak |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		t := r.Totals()
		lost, unfinished, makespan := "", "", t.Makespan.Round(100*time.Millisecond).String()
		if t.CallsLost > 0 {
			lost = fmt.Sprintf(" (+ the calls of %d agents that died or did not finish)", t.CallsLost)
		}
		if t.Unfinished > 0 {
			unfinished = fmt.Sprintf(" (%d unfinished)", t.Unfinished)
			makespan = "> " + r.Bound.Round(time.Second).String() + " (bound)"
		}
		fmt.Fprintf(w, "| (%s) %s | %d / %d%s | **%d** | %d / %d / %d%s | %s | %.2f / %.2f | %s / %s |\n",
			r.Arm.Name, r.Arm.Label, t.Completed, t.Agents, unfinished, t.AgentKills, t.CallsDone, t.CallsKilled, t.CallsFrozen, lost,
			makespan, t.StretchP50, t.StretchP95, mib(t.MeanBytes), mib(t.PeakBytes))
	}
	for _, r := range results {
		for _, a := range r.Agents {
			if a.Unfinished {
				fmt.Fprintf(w, "\n(%s) %s did not finish within %s; it was doing: %s\n", r.Arm.Name, a.ID, r.Bound.Round(time.Second), a.Doing)
			}
		}
	}
}

// SweepPoint is one arm at one number of agents.
type SweepPoint struct {
	Arm    string
	Agents int
	Totals Totals
}

// WriteSweep writes, per arm, the largest number of agents that finished
// with no agent-framework kill, and the agents per GiB of budget.
func WriteSweep(w io.Writer, points []SweepPoint, budget int64) {
	fmt.Fprintln(w, "| arm | largest N with zero agent kills | agents per GiB | p95 stretch there |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, arm := range Arms {
		best, stretch := 0, 0.0
		for _, p := range points {
			if p.Arm == arm.Name && p.Totals.AgentKills == 0 && p.Totals.Completed == p.Agents && p.Agents > best {
				best, stretch = p.Agents, p.Totals.StretchP95
			}
		}
		seen := slices.ContainsFunc(points, func(p SweepPoint) bool { return p.Arm == arm.Name })
		if !seen {
			continue
		}
		fmt.Fprintf(w, "| (%s) %s | %d | %.2f | %.2f |\n", arm.Name, arm.Label, best, float64(best)/(float64(budget)/(1<<30)), stretch)
	}
}
