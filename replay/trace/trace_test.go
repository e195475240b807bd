package trace

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const good = `{"task": "t", "columns": ["t_seconds", "memory_mb", "cpu_percent"],
 "samples": [[0, 12, 90], [1, 185, 50], [2, 185, 40], [3, 900, 99], [4, 185, 30], [5, 186, 10]],
 "tool_calls": [{"start": 2.5, "end": 3.5, "tool": "Bash", "command": "pytest"},
                {"start": 0.5, "end": 0.6, "tool": "Read", "command": null}]}`

func TestParse(t *testing.T) {
	tr, err := Parse("good.json", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Calls[0].Tool != "Read" || tr.Calls[1].Command != "pytest" {
		t.Errorf("calls not in start order: %+v", tr.Calls)
	}
	if b := tr.BaselineMB(); b != 185 {
		t.Errorf("baseline %v, want 185 (samples outside calls, after the first)", b)
	}
	if m := tr.MemoryAt(2.5); m != 542.5 {
		t.Errorf("MemoryAt(2.5) = %v, want 542.5", m)
	}
	p := tr.Profile(tr.Calls[1], 185)
	if len(p) != 2 || p[0] != (Step{0, 357.5}) || p[1] != (Step{0.5, 715}) {
		t.Errorf("profile %+v", p)
	}
	if d := tr.Duration(); d != 5 {
		t.Errorf("duration %v", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ json, field string }{
		{`{"columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]]}`, "task"},
		{`{"task": "t", "columns": ["t", "m"], "samples": [[0, 1]]}`, "columns"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": []}`, "samples"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1], [1, "a"]]}`, "samples[1].memory_mb"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1], [1]]}`, "samples[1]"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[2, 1], [1, 1]]}`, "samples[1].t_seconds"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, -1]]}`, "samples[0].memory_mb"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]], "tool_calls": [{"start": 1, "end": 0.5, "tool": "Bash"}]}`, "tool_calls[0].end"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]], "tool_calls": [{"end": 1, "tool": "Bash"}]}`, "tool_calls[0].start"},
		{`{"task": "t", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]], "tool_calls": [{"start": 0, "end": 1}]}`, "tool_calls[0].tool"},
	} {
		_, err := Parse("broken.json", []byte(tc.json))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), "broken.json") {
			t.Errorf("%s: error %v, want one naming broken.json and field %s", tc.json, err, tc.field)
		}
	}
	if _, err := Parse("x.json", []byte("not json")); err == nil || !strings.Contains(err.Error(), "x.json") {
		t.Errorf("not JSON: %v", err)
	}
	if _, err := Load("/nonexistent/trace.json"); err == nil || !strings.Contains(err.Error(), "/nonexistent/trace.json") {
		t.Errorf("missing file: %v", err)
	}
}

// The shared traces are the benchmark's input: every one must load, with a
// framework baseline near the paper's 185 MB.
func TestSharedTraces(t *testing.T) {
	files, _ := filepath.Glob("../../../shared/traces/*.json")
	if len(files) == 0 {
		t.Fatal("no traces in ../shared/traces (the checkout must have ../shared beside it)")
	}
	calls := 0
	for _, f := range files {
		tr, err := Load(f)
		if err != nil {
			t.Error(err)
			continue
		}
		calls += len(tr.Calls)
		if b := tr.BaselineMB(); b < 50 || b > 1000 {
			t.Errorf("%s: baseline %v MB", f, b)
		}
	}
	if calls != 1151 {
		t.Errorf("%d tool calls in %d traces, want docs/benchmarks.md's 1,151", calls, len(files))
	}
}

// Edges the fuzzer and review found: null read as 0, values that overflow
// the simulator's time.Duration and MiB counts or MemoryAt's arithmetic, a
// task name that breaks its report line, and a top-level error naming no
// field. Each names the field.
func TestParseEdges(t *testing.T) {
	const cols = `"task": "t", "columns": ["t_seconds", "memory_mb", "cpu_percent"], `
	for _, tc := range []struct{ json, field string }{
		{`{` + cols + `"samples": [[0, 1, 0], [1, null, 0]]}`, "samples[1].memory_mb"},
		{`{` + cols + `"samples": [[0, 1, 0], [ null , 1, 0]]}`, "samples[1].t_seconds"},
		{`{` + cols + `"samples": [[1e300, 1, 0]]}`, "samples[0].t_seconds"},
		{`{` + cols + `"samples": [[0, 1e300, 0]]}`, "samples[0].memory_mb"},
		{`{` + cols + `"samples": [[0, 1, 0]], "tool_calls": [{"start": 0, "end": 1e300, "tool": "Bash"}]}`, "tool_calls[0].end"},
		{`{` + cols + `"samples": [[0, 1, 0]], "tool_calls": [{"start": 1e10, "end": 1e10, "tool": "Bash"}]}`, "tool_calls[0].start"},
		{`{"task": "a\nb", "columns": ["t_seconds", "memory_mb"], "samples": [[0, 1]]}`, "task"},
		{`[1]`, "top level"},
		{`"trace"`, "top level"},
	} {
		_, err := Parse("broken.json", []byte(tc.json))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), "broken.json") {
			t.Errorf("%s: error %v, want one naming broken.json and field %s", tc.json, err, tc.field)
		}
	}
	// A null in a column the simulator does not use is no harm.
	if _, err := Parse("ok.json", []byte(`{`+cols+`"samples": [[0, 1, null]]}`)); err != nil {
		t.Errorf("null cpu_percent: %v", err)
	}
	// The bounds themselves are times and sizes.
	if _, err := Parse("ok.json", []byte(`{`+cols+`"samples": [[0, 0, 0], [604800, 1048576, 0]]}`)); err != nil {
		t.Errorf("a week and a TiB: %v", err)
	}
}

// TestGates: a call waits for the calls that had ended when it started,
// then the agent's time after the last of them; a call that ran beside it
// is not waited for.
func TestGates(t *testing.T) {
	tr := &Trace{Calls: []Call{
		{Start: 1, End: 3},  // 0: first, 1 s after the start
		{Start: 2, End: 10}, // 1: parallel to 0 (a background job)
		{Start: 4, End: 5},  // 2: after 0, while 1 runs
		{Start: 5, End: 6},  // 3: right after 2
		{Start: 12, End: 13},
	}}
	got := tr.Gates()
	want := []Gate{{nil, 1}, {nil, 2}, {[]int{0}, 1}, {[]int{0, 2}, 0}, {[]int{0, 1, 2, 3}, 2}}
	for i := range want {
		if !slices.Equal(got[i].After, want[i].After) || got[i].Gap != want[i].Gap {
			t.Errorf("call %d: gate %+v, want %+v", i, got[i], want[i])
		}
	}
}
