// Package trace reads agent workload traces (the format of
// ../shared/traces: memory every second and every tool call of a real agent
// run) and turns them into what the agent simulator replays: the agent
// framework's own memory level and, for each tool call, the memory above
// that level during the call's window.
package trace

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"unicode"
)

// Trace is one agent run.
type Trace struct {
	Task    string
	Samples []Sample
	Calls   []Call
}

// Sample is the container's memory at T seconds after its start.
type Sample struct {
	T        float64
	MemoryMB float64
}

// Call is one tool call of the agent; Command is set for Bash calls.
type Call struct {
	Start, End float64
	Tool       string
	Command    string
}

// file is the JSON form; pointers tell a missing field from a zero.
type file struct {
	Task      *string             `json:"task"`
	Columns   []string            `json:"columns"`
	Samples   [][]json.RawMessage `json:"samples"`
	ToolCalls []struct {
		Start   *float64 `json:"start"`
		End     *float64 `json:"end"`
		Tool    *string  `json:"tool"`
		Command *string  `json:"command"`
	} `json:"tool_calls"`
}

// Bounds of a trace's values. The simulator turns seconds into
// time.Duration (at most 292 years, divided by its speed) and megabytes into
// a count of MiB to touch: a week and a TiB are far beyond any agent run and
// keep both, and MemoryAt's arithmetic, clear of overflow.
const (
	MaxSeconds  = 7 * 24 * 3600
	MaxMemoryMB = 1 << 20
)

// FieldError names the file and the field of a broken trace.
type FieldError struct {
	File, Field, Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("trace %s: %s: %s", e.File, e.Field, e.Problem)
}

// Load reads and checks a trace file.
func Load(path string) (*Trace, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", path, err)
	}
	return Parse(path, b)
}

// Parse checks and converts a trace; name is used in errors.
func Parse(name string, b []byte) (*Trace, error) {
	bad := func(field, format string, args ...any) error {
		return &FieldError{File: name, Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return nil, bad("top level", "is %s, want an object", te.Value)
			}
			return nil, bad(te.Field, "is %s, want %s", te.Value, te.Type)
		}
		return nil, fmt.Errorf("trace %s: not JSON: %w", name, err)
	}
	if f.Task == nil || *f.Task == "" {
		return nil, bad("task", "missing")
	}
	// The task names the run in reports, one line and one table cell each.
	if strings.IndexFunc(*f.Task, unicode.IsControl) >= 0 {
		return nil, bad("task", "%q has a control character", *f.Task)
	}
	ti, mi := slices.Index(f.Columns, "t_seconds"), slices.Index(f.Columns, "memory_mb")
	if ti < 0 || mi < 0 {
		return nil, bad("columns", "%q lacks t_seconds or memory_mb", f.Columns)
	}
	if len(f.Samples) == 0 {
		return nil, bad("samples", "empty")
	}
	t := &Trace{Task: *f.Task, Samples: make([]Sample, len(f.Samples))}
	for i, row := range f.Samples {
		if len(row) != len(f.Columns) {
			return nil, bad(fmt.Sprintf("samples[%d]", i), "has %d values for %d columns", len(row), len(f.Columns))
		}
		var s Sample
		for _, v := range []struct {
			col int
			dst *float64
		}{{ti, &s.T}, {mi, &s.MemoryMB}} {
			// null unmarshals into a float64 without error, as nothing.
			if err := json.Unmarshal(row[v.col], v.dst); err != nil || string(row[v.col]) == "null" {
				return nil, bad(fmt.Sprintf("samples[%d].%s", i, f.Columns[v.col]), "%s is not a number", row[v.col])
			}
		}
		switch {
		case !finite(s.T) || s.T < 0 || s.T > MaxSeconds:
			return nil, bad(fmt.Sprintf("samples[%d].t_seconds", i), "%v is not a time from 0 to %d", s.T, MaxSeconds)
		case i > 0 && s.T < t.Samples[i-1].T:
			return nil, bad(fmt.Sprintf("samples[%d].t_seconds", i), "%v goes back in time (previous %v)", s.T, t.Samples[i-1].T)
		case !finite(s.MemoryMB) || s.MemoryMB < 0 || s.MemoryMB > MaxMemoryMB:
			return nil, bad(fmt.Sprintf("samples[%d].memory_mb", i), "%v is not a memory size from 0 to %d", s.MemoryMB, MaxMemoryMB)
		}
		t.Samples[i] = s
	}
	for i, c := range f.ToolCalls {
		field := func(n string) string { return fmt.Sprintf("tool_calls[%d].%s", i, n) }
		switch {
		case c.Start == nil || !finite(*c.Start) || *c.Start < 0 || *c.Start > MaxSeconds:
			return nil, bad(field("start"), "missing or not a time from 0 to %d", MaxSeconds)
		case c.End == nil || !finite(*c.End) || *c.End < *c.Start || *c.End > MaxSeconds:
			return nil, bad(field("end"), "missing, not a time up to %d, or before start", MaxSeconds)
		case c.Tool == nil || *c.Tool == "":
			return nil, bad(field("tool"), "missing")
		}
		call := Call{Start: *c.Start, End: *c.End, Tool: *c.Tool}
		if c.Command != nil {
			call.Command = *c.Command
		}
		t.Calls = append(t.Calls, call)
	}
	slices.SortStableFunc(t.Calls, func(a, b Call) int { return cmpFloat(a.Start, b.Start) })
	return t, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Duration is the run's length in seconds.
func (t *Trace) Duration() float64 {
	end := t.Samples[len(t.Samples)-1].T
	for _, c := range t.Calls {
		end = max(end, c.End)
	}
	return end
}

// inCall reports whether second s lies in a tool call's window.
func (t *Trace) inCall(s float64) bool {
	for _, c := range t.Calls {
		if s >= c.Start && s <= c.End {
			return true
		}
	}
	return false
}

// BaselineMB is the agent framework's own memory: the median of the samples
// outside every tool call, after the first (the container starting up).
func (t *Trace) BaselineMB() float64 {
	var v []float64
	for i, s := range t.Samples {
		if i > 0 && !t.inCall(s.T) {
			v = append(v, s.MemoryMB)
		}
	}
	if len(v) == 0 {
		for _, s := range t.Samples {
			v = append(v, s.MemoryMB)
		}
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// MemoryAt is the container's memory at second s, linear between samples.
func (t *Trace) MemoryAt(s float64) float64 {
	i, _ := slices.BinarySearchFunc(t.Samples, s, func(x Sample, s float64) int { return cmpFloat(x.T, s) })
	switch {
	case i == 0:
		return t.Samples[0].MemoryMB
	case i == len(t.Samples):
		return t.Samples[i-1].MemoryMB
	}
	a, b := t.Samples[i-1], t.Samples[i]
	if b.T == a.T {
		return b.MemoryMB
	}
	return a.MemoryMB + (b.MemoryMB-a.MemoryMB)*(s-a.T)/(b.T-a.T)
}

// Step is a memory level a tool call holds from At seconds into the call.
type Step struct {
	At float64
	MB float64
}

// Profile is the memory a call adds above the baseline during its window:
// the level at its start, then at each sample inside the window.
func (t *Trace) Profile(c Call, baseline float64) []Step {
	above := func(s float64) float64 { return max(0, t.MemoryAt(s)-baseline) }
	steps := []Step{{0, above(c.Start)}}
	for _, s := range t.Samples {
		if s.T > c.Start && s.T <= c.End {
			steps = append(steps, Step{s.T - c.Start, above(s.T)})
		}
	}
	return steps
}

// SummaryPrefix starts the line on which the simulator reports a replayed
// run, followed by a Summary in JSON.
const SummaryPrefix = "agentsim-summary: "

// Summary is what the simulator reports of a replayed run.
type Summary struct {
	Task   string `json:"task"`
	Calls  int    `json:"calls"`
	Failed int    `json:"failed"`
	Killed int    `json:"killed"`
	// Stretch is, per call, its wall time over the trace's (compressed).
	Stretch []float64 `json:"stretch"`
}

// Gate is what a replayed call waits for before it starts, as the agent
// did: the calls that had ended when it started in the trace (the agent
// had their results), then Gap seconds, the agent's own time after the last
// of them (the model's turn). Calls still running when it started (parallel
// tool calls, background jobs) are not waited for.
type Gate struct {
	After []int   // indexes into Calls, all before this call's
	Gap   float64 // seconds after the last of After ended (none: after the run's start)
}

// Gates returns each call's Gate. A replay that starts calls at their
// trace times whatever happened before would have one agent's calls pile
// up once they run slower than in the trace, which no agent does.
func (t *Trace) Gates() []Gate {
	gates := make([]Gate, len(t.Calls))
	for i, c := range t.Calls {
		last, ended := 0.0, false
		for j, p := range t.Calls[:i] {
			if p.End <= c.Start {
				gates[i].After = append(gates[i].After, j)
				last, ended = max(last, p.End), true
			}
		}
		gates[i].Gap = c.Start
		if ended {
			gates[i].Gap = c.Start - last
		}
	}
	return gates
}
