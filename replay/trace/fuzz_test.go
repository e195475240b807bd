package trace

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// short is the head of ../shared/traces/RDFLib__rdflib-1117.json: its first
// samples and calls, in the file's own form (extra keys, a third column).
const short = `{"task":"RDFLib__rdflib-1117","model":"claude-haiku-4.5","source":"eunomia-bpf/agentcgroup experiments/all_images_haiku/RDFLib__rdflib-1117/attempt_1",
"columns":["t_seconds","memory_mb","cpu_percent"],
"samples":[[0.0,11.8,99.4],[1.033,185.3,62.2],[2.069,195.8,47.8],[3.104,196.0,32.6],[4.139,196.1,24.7],[5.176,196.2,20.1],[6.213,196.2,17.0],[7.241,193.3,15.9],[8.277,193.4,14.1]],
"tool_calls":[{"start":6.64,"end":6.72,"tool":"TodoWrite","command":null},{"start":8.305,"end":8.4,"tool":"Bash","command":"cd /testbed && python -m pytest test/ -x -q 2>&1 | tail -20"}]}`

// encode writes t in the trace format, as Parse reads it.
func encode(t *Trace) []byte {
	type call struct {
		Start   float64 `json:"start"`
		End     float64 `json:"end"`
		Tool    string  `json:"tool"`
		Command string  `json:"command"`
	}
	out := struct {
		Task      string       `json:"task"`
		Columns   []string     `json:"columns"`
		Samples   [][2]float64 `json:"samples"`
		ToolCalls []call       `json:"tool_calls"`
	}{Task: t.Task, Columns: []string{"t_seconds", "memory_mb"}}
	for _, s := range t.Samples {
		out.Samples = append(out.Samples, [2]float64{s.T, s.MemoryMB})
	}
	for _, c := range t.Calls {
		out.ToolCalls = append(out.ToolCalls, call{c.Start, c.End, c.Tool, c.Command})
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		short, good,
		// Broken the ways TestParseErrors and TestParseEdges break them.
		`{"columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]]}`,
		`{"task": "t", "columns": ["t", "m"], "samples": [[0, 1]]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": []}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1], [1, "a"]]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1], [1]]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[2, 1], [1, 1]]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, -1]]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]], "tool_calls": [{"start": 1, "end": 0.5, "tool": "Bash"}]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]], "tool_calls": [{"end": 1, "tool": "Bash"}]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]], "tool_calls": [{"start": 0, "end": 1}]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1], [1, null]]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[1e300, 1]]}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1e300]]}`,
		`{"task": "a\nb", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]]}`,
		`{"task": "t", "columns": ["memory_mb", "t_seconds", "memory_mb"], "samples": [[1, 0, 2]], "tool_calls": null}`,
		`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]], "tool_calls": [null, {"start": 0}]}`,
		`[1]`, `"trace"`, `null`, `{}`, `not json`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Parse("fuzz.json", b)
		if err != nil {
			var fe *FieldError
			if !strings.HasPrefix(err.Error(), "trace fuzz.json: ") || (errors.As(err, &fe) && (fe.Field == "" || fe.Problem == "")) {
				t.Fatalf("error %q names no file or no field", err)
			}
			return
		}
		if len(tr.Samples) == 0 || tr.Task == "" {
			t.Fatalf("accepted without samples or task: %+v", tr)
		}
		for i, s := range tr.Samples {
			if !finite(s.T) || s.T < 0 || s.T > MaxSeconds || !finite(s.MemoryMB) || s.MemoryMB < 0 || s.MemoryMB > MaxMemoryMB ||
				(i > 0 && s.T < tr.Samples[i-1].T) {
				t.Fatalf("sample %d out of bounds or order: %+v", i, s)
			}
		}
		for i, c := range tr.Calls {
			if !(c.Start >= 0 && c.Start <= c.End && c.End <= MaxSeconds) || c.Tool == "" || (i > 0 && c.Start < tr.Calls[i-1].Start) {
				t.Fatalf("call %d out of bounds or order: %+v", i, c)
			}
		}
		// What the simulator computes stays finite and within the trace.
		if d := tr.Duration(); !(d >= 0 && d <= MaxSeconds) {
			t.Fatalf("duration %v", d)
		}
		base := tr.BaselineMB()
		if !(base >= 0 && base <= MaxMemoryMB) {
			t.Fatalf("baseline %v", base)
		}
		inRange := func(v float64) bool { return finite(v) && v >= -1e-6 && v <= MaxMemoryMB*(1+1e-9) }
		for _, c := range tr.Calls {
			if m := tr.MemoryAt(c.Start); !inRange(m) {
				t.Fatalf("MemoryAt(%v) = %v", c.Start, m)
			}
			for _, st := range tr.Profile(c, base) {
				if !(st.At >= 0 && st.At <= c.End-c.Start) || !(st.MB >= 0 && st.MB <= MaxMemoryMB) {
					t.Fatalf("profile of %+v: step %+v", c, st)
				}
			}
		}
		for _, s := range []float64{0, tr.Samples[0].T / 2, tr.Duration(), MaxSeconds} {
			if m := tr.MemoryAt(s); !inRange(m) {
				t.Fatalf("MemoryAt(%v) = %v", s, m)
			}
		}
		// Written back in the trace format, it reads as the same trace.
		back, err := Parse("again.json", encode(tr))
		if err != nil || !reflect.DeepEqual(back, tr) {
			t.Fatalf("%+v written as %s reads back as %+v, %v", tr, encode(tr), back, err)
		}
	})
}
