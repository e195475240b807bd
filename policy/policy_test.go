package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]Limit{
		"max":        Max,
		"1073741824": {Bytes: 1 << 30},
		"512Mi":      {Bytes: 512 << 20},
		"2G":         {Bytes: 2e9},
		"1.5Gi":      {Bytes: 3 << 29},
		"100K":       {Bytes: 1e5},
		"80%":        {Percent: 80},
		"12.5%":      {Percent: 12.5},
		" 4Ki ":      {Bytes: 4096},
	} {
		got, err := ParseLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12X", "-1", "0", "0%", "101%", "abc%", "1e400", "Mi", "NaN", "512mb", "0.5"} {
		if got, err := ParseLimit(in); err == nil {
			t.Errorf("ParseLimit(%q) = %+v; want an error", in, got)
		}
	}
}

func TestResolve(t *testing.T) {
	if got := (Limit{Percent: 50}).Resolve(1 << 30); got != 1<<29 {
		t.Errorf("50%% of 1Gi = %d", got)
	}
	if got := (Limit{Percent: 50}).Resolve(Unlimited); got != Unlimited {
		t.Errorf("50%% of no limit = %d, want Unlimited", got)
	}
	if got := Max.Resolve(1 << 30); got != Unlimited {
		t.Errorf("max = %d", got)
	}
	if got := (Limit{Bytes: 5}).Resolve(Unlimited); got != 5 {
		t.Errorf("5 bytes = %d", got)
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
		{"io.agentcgroup.tool.memory.hihg", "1G", "known keys are io.agentcgroup.agent.memory.high"},
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

func TestResolvePolicy(t *testing.T) {
	p, err := Resolve(map[string]string{"tool.memory.max": "1Gi", "priority": "low"}, nil,
		map[string]string{AnnotationPriority: "high"})
	if err != nil {
		t.Fatal(err)
	}
	if p.ToolMemoryMax.Bytes != 1<<30 || p.Priority != PriorityHigh || p.ToolMemoryHigh.Percent != 75 {
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
