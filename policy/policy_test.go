package policy

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]Limit{
		"max":        Max,
		"1073741824": {Bytes: 1 << 30},
		"1048576":    {Bytes: MinLimitBytes},
		"1Mi":        {Bytes: MinLimitBytes},
		"512Mi":      {Bytes: 512 << 20},
		"2G":         {Bytes: 2e9},
		"1.5Gi":      {Bytes: 3 << 29},
		"2048K":      {Bytes: 2048e3},
		"4194303Ti":  {Bytes: 4194303 << 40},
		"80%":        {Percent: 80},
		"12.5%":      {Percent: 12.5},
		"0.01%":      {Percent: 0.01},
		"100.00%":    {Percent: 100},
	} {
		got, err := ParseLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12X", "-1", "0", "0%", "101%", "abc%", "1e400", "Mi", "NaN", "512mb", "0.5",
		" 4Mi ", "MAX", "+5Mi", "0x100000", "1_048_576", ".5Gi", "5.Gi", "Inf", "NaN%", "Inf%", "-0%", "100.01%"} {
		if got, err := ParseLimit(in); err == nil {
			t.Errorf("ParseLimit(%q) = %+v; want an error", in, got)
		}
	}
}

// A limit no process fits in, and a percentage no one means, are refused
// with a reason; before, 1 byte and 1e-300% were taken.
func TestParseLimitBounds(t *testing.T) {
	for in, reason := range map[string]string{
		"1":                  "below the minimum of 1Mi",
		"1536":               "write 1536Mi or 1536M",
		"1K":                 "below the minimum of 1Mi",
		"1048575":            "below the minimum of 1Mi",
		"1e9":                "plain decimal",
		"1e-300%":            "plain decimal",
		"1E2%":               "plain decimal",
		"0.001%":             "at most 2 decimals",
		"0.00%":              "above 0",
		"1000%":              "plain decimal",
		"4194304Ti":          "above the maximum",
		"99999999999999999G": "above the maximum",
		"Max":                "lower case",
	} {
		_, err := ParseLimit(in)
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("ParseLimit(%q): err %v, want one saying %q", in, err, reason)
		}
	}
}
func TestResolve(t *testing.T) {
	if got := (Limit{Percent: 50}).Resolve(1 << 30); got != 1<<29 {
		t.Errorf("50%% of 1Gi = %d", got)
	}
	if got := (Limit{Percent: 50}).Resolve(cgroupfs.Unlimited); got != cgroupfs.Unlimited {
		t.Errorf("50%% of no limit = %d, want Unlimited", got)
	}
	if got := Max.Resolve(1 << 30); got != cgroupfs.Unlimited {
		t.Errorf("max = %d", got)
	}
	if got := (Limit{Bytes: 5}).Resolve(cgroupfs.Unlimited); got != 5 {
		t.Errorf("5 bytes = %d", got)
	}
}

// A percentage resolves within [MinLimitBytes, containerMax]: a small share
// of a small container is not a limit nothing runs in, and 100% of the
// largest memory.max does not overflow into a negative limit.
func TestResolveBounds(t *testing.T) {
	for _, tc := range []struct {
		l            Limit
		containerMax int64
		want         int64
	}{
		{Limit{Percent: 1}, 10 << 20, MinLimitBytes},
		{Limit{Percent: 0.01}, 1 << 30, MinLimitBytes},
		{Limit{Percent: 50}, 0, MinLimitBytes},
		{Limit{Percent: 100}, math.MaxInt64, math.MaxInt64},
		{Limit{Percent: 100}, math.MaxInt64 &^ 4095, math.MaxInt64 &^ 4095},
		{Limit{Percent: 100}, 1<<53 + 1, 1<<53 + 1},
		{Limit{Percent: 100}, 9007199254740912, 9007199254740912},
		{Limit{Percent: 50}, -2, cgroupfs.Unlimited},
	} {
		if got := tc.l.Resolve(tc.containerMax); got != tc.want {
			t.Errorf("%v of %d = %d, want %d", tc.l, tc.containerMax, got, tc.want)
		}
	}
}

func TestApply(t *testing.T) {
	p, err := Apply(Default(), "annotation", map[string]string{
		AnnotationToolHigh:     "1Gi",
		AnnotationAgentLow:     "200Mi",
		AnnotationToolPidsMax:  "64",
		AnnotationToolMax:      "90%",
		AnnotationAgentMax:     "512Mi",
		AnnotationPriority:     "low",
		AnnotationStallTimeout: "90s",
		AnnotationDetect:       "exec",
		"org.example.other":    "ignored",
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.ToolMemoryHigh.Bytes != 1<<30 || p.ToolMemoryMax.Percent != 90 || p.AgentMemoryMax.Bytes != 512<<20 ||
		!p.AgentMemoryHigh.IsMax() || p.Priority != PriorityLow || p.StallTimeout != 90*time.Second || p.Detect != DetectExec ||
		p.AgentMemoryLow.Bytes != 200<<20 || p.ToolPidsMax != 64 {
		t.Errorf("unexpected policy %+v", p)
	}
}

func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct{ key, value, allowed string }{
		{AnnotationToolMax, "12X", "Ki, Mi"},
		{AnnotationAgentHigh, "150%", "percentage"},
		{AnnotationPriority, "urgent", "high, normal, low"},
		{AnnotationDetect, "ebpf", "fork+exec, exec, off"},
		{AnnotationStallTimeout, "5", "Go duration"},
		{AnnotationStallTimeout, "10ms", "at least 1s"},
		{AnnotationToolPidsMax, "3", "at least 8"},
		{AnnotationToolPidsMax, "-1", "at least 8"},
		{AnnotationAgentLow, "lots", "Ki, Mi"},
		{AnnotationAgent, "claude", "absolute path"},
		{AnnotationAgent, "/usr/bin/../bin/claude", "absolute path"},
		{"io.agentcgroup.tool.memory.hihg", "1G", "known keys are io.agentcgroup.agent, io.agentcgroup.agent.memory.high"},
	} {
		_, err := Apply(Default(), "annotation", map[string]string{tc.key: tc.value})
		var ie *InvalidError
		if !errors.As(err, &ie) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("%s=%s: err %v, want an InvalidError that is ErrInvalidArgument", tc.key, tc.value, err)
		}
		msg := err.Error()
		for _, want := range []string{tc.key, `"` + tc.value + `"`, tc.allowed} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s=%s: error %q does not name %q", tc.key, tc.value, msg, want)
			}
		}
	}
}

// Edges found in review: each is refused with an InvalidError that names the
// key, the value (quoted, so a NUL or newline shows) and why.
func TestApplyEdges(t *testing.T) {
	for _, tc := range []struct{ key, value, reason string }{
		// The kernel's pids.max holds at most PID_MAX_LIMIT; more was taken
		// here and failed every exec.
		{AnnotationToolPidsMax, "4194305", "above 4194304"},
		{AnnotationToolPidsMax, "5000000", "above 4194304"},
		{AnnotationToolPidsMax, "99999999999999999999", "above 4194304"},
		{AnnotationToolPidsMax, "+64", "not a whole number"},
		{AnnotationToolPidsMax, "1e3", "not a whole number"},
		{AnnotationToolPidsMax, "max\n", `control character '\n'`},
		{AnnotationToolMax, "1", "below the minimum of 1Mi"},
		{AnnotationToolHigh, "1e-300%", "plain decimal"},
		{AnnotationAgentLow, "1536", "write 1536Mi or 1536M"},
		{AnnotationStallTimeout, "-5s", "below 1s"},
		{AnnotationStallTimeout, "0", "below 1s"},
		{AnnotationStallTimeout, "1e9h", "not a Go duration"},
		{AnnotationStallTimeout, "9999999h", "not a Go duration"},
		{AnnotationStallTimeout, "25h", "above 24h0m0s"},
		{AnnotationPriority, "LOW", "lower case (low)"},
		{AnnotationPriority, "High", "lower case (high)"},
		{AnnotationPriority, " low", "white space"},
		{AnnotationDetect, "Fork+Exec", "lower case (fork+exec)"},
		{AnnotationDetect, "exec ", "white space"},
		{AnnotationDetect, "exec\n", `control character '\n'`},
		{AnnotationToolMax, "1Gi\x00", `control character '\x00'`},
		{AnnotationStallTimeout, "5m\r\n", `control character '\r'`},
		{AnnotationPriority, "\xfflow", "UTF-8"},
	} {
		_, err := Apply(Default(), "annotation", map[string]string{tc.key: tc.value})
		var ie *InvalidError
		if !errors.As(err, &ie) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s=%q: err %v, want an InvalidError", tc.key, tc.value, err)
			continue
		}
		msg := err.Error()
		for _, want := range []string{tc.key, strconv.Quote(tc.value), tc.reason, "allowed: "} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s=%q: error %q does not say %q", tc.key, tc.value, msg, want)
			}
		}
		if strings.ContainsAny(msg, "\x00\n\r") {
			t.Errorf("%s=%q: error %q carries the control character", tc.key, tc.value, msg)
		}
	}
	p, err := Apply(Default(), "annotation", map[string]string{AnnotationToolPidsMax: "4194304", AnnotationStallTimeout: "24h", AnnotationToolMax: "1Mi"})
	if err != nil || p.ToolPidsMax != MaxToolPids || p.StallTimeout != 24*time.Hour || p.ToolMemoryMax.Bytes != MinLimitBytes {
		t.Errorf("the bounds themselves: %+v, %v", p, err)
	}
	// An unknown key with a newline is quoted, not printed raw.
	_, err = Apply(Default(), "annotation", map[string]string{"io.agentcgroup.x\ny": "1"})
	if err == nil || !strings.Contains(err.Error(), `"io.agentcgroup.x\ny"`) {
		t.Errorf("unknown key with a newline: %v", err)
	}
}

func TestResolvePolicy(t *testing.T) {
	p, err := Resolve(map[string]string{"tool.memory.max": "1Gi", "priority": "high"}, nil,
		map[string]string{AnnotationPriority: "low"})
	if err != nil {
		t.Fatal(err)
	}
	if p.ToolMemoryMax.Bytes != 1<<30 || p.Priority != PriorityLow || p.ToolMemoryHigh.Percent != 75 {
		t.Errorf("config then annotations: %+v", p)
	}

	// The config's value is checked like an annotation and named as config.
	_, err = Resolve(map[string]string{"tool.memory.max": "huge"}, nil, nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "config Policy key io.agentcgroup.tool.memory.max") {
		t.Errorf("bad config value: %v", err)
	}

	// An untrusted container cannot raise its priority where the config
	// allows only detect.
	allowed := []string{AnnotationDetect}
	if _, err := Resolve(nil, allowed, map[string]string{AnnotationDetect: "exec"}); err != nil {
		t.Errorf("allowed key refused: %v", err)
	}
	_, err = Resolve(nil, allowed, map[string]string{AnnotationPriority: "high"})
	var de *DeniedError
	if !errors.As(err, &de) || !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), AnnotationPriority) {
		t.Errorf("denied key: %v", err)
	}
	if _, err := Resolve(nil, []string{}, map[string]string{AnnotationToolMax: "max"}); err == nil {
		t.Error("an empty allow-list honoured an annotation")
	}
	if err := CheckAllowed([]string{"io.agentcgroup.priorty"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("CheckAllowed of a typo: %v", err)
	}
}

// TestPriorityNeedsOperator: without an allow-list a container may lower
// its priority but not raise it above the config's; listed, it may.
func TestPriorityNeedsOperator(t *testing.T) {
	for _, tc := range []struct {
		prio    string
		allowed []string
		config  map[string]string
		ok      bool
	}{
		{"low", nil, nil, true},
		{"normal", nil, nil, true},
		{"high", nil, nil, false},
		{"high", []string{AnnotationPriority}, nil, true},
		{"high", nil, map[string]string{"priority": "high"}, true},
	} {
		p, err := Resolve(tc.config, tc.allowed, map[string]string{AnnotationPriority: tc.prio})
		if tc.ok != (err == nil) || (err == nil && string(p.Priority) != tc.prio) {
			t.Errorf("priority=%s allowed %v config %v: %+v, %v", tc.prio, tc.allowed, tc.config, p.Priority, err)
		}
		var de *DeniedError
		if err != nil && (!errors.As(err, &de) || !strings.Contains(err.Error(), "AllowedAnnotations")) {
			t.Errorf("priority=%s: %v, want a DeniedError that says how to allow it", tc.prio, err)
		}
	}
}

// TestParseSessions: program names, comma separated, or none; a name is
// letters, digits and "._+-", at most 64 of them.
func TestParseSessions(t *testing.T) {
	for _, tc := range []struct {
		v, want, err string
	}{
		{v: "bash,tmux", want: "bash,tmux"},
		{v: "python3.12,g++,my_sh", want: "python3.12,g++,my_sh"},
		{v: "none", want: ""},
		{v: "bash,,sh", err: `"" is no program name`},
		{v: "ba sh", err: `"ba sh" is no program name`},
		{v: "/bin/bash,tmux", want: "/bin/bash,tmux"},
		{v: "/bin/../bash", err: `"/bin/../bash" is no clean absolute path`},
		{v: "bin/bash", err: `"bin/bash" is no program name`},
		{v: strings.Repeat("a", 65), err: "is no program name"},
	} {
		p := Policy{Sessions: DefaultSessions}
		err := parseSessions(&p, tc.v)
		switch {
		case tc.err == "" && (err != nil || p.Sessions != tc.want):
			t.Errorf("%q: sessions %q, %v; want %q", tc.v, p.Sessions, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || p.Sessions != DefaultSessions):
			t.Errorf("%q: sessions %q, error %v; want unchanged, error %q", tc.v, p.Sessions, err, tc.err)
		}
	}
}

// TestAgentAnnotation: the agent's program is taken as an absolute, clean
// path; the reason a refused one gives says what is wrong with it.
func TestAgentAnnotation(t *testing.T) {
	p, err := Apply(Default(), "annotation", map[string]string{AnnotationAgent: "/usr/local/bin/claude"})
	if err != nil || p.Agent != "/usr/local/bin/claude" {
		t.Fatalf("Agent %q, %v", p.Agent, err)
	}
	for v, reason := range map[string]string{
		"claude":                        "not an absolute path",
		"/usr/bin/../bin/claude":        "not a clean path (/usr/bin/claude)",
		"/" + strings.Repeat("a", 4096): "longer than a path can be",
	} {
		if _, err := Apply(Default(), "annotation", map[string]string{AnnotationAgent: v}); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("%.20q: %v, want %q", v, err, reason)
		}
	}
}
