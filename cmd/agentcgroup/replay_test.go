package main

import (
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/policy"
)

func TestParsePolicy(t *testing.T) {
	got, err := parsePolicy("agent.memory.low=64Mi, tool.memory.high=max")
	if err != nil {
		t.Fatal(err)
	}
	if got[policy.AnnotationAgentLow] != "64Mi" || got[policy.AnnotationToolHigh] != "max" || len(got) != 2 {
		t.Errorf("parsePolicy: %v", got)
	}
	for in, want := range map[string]string{
		"agent.memory.low":      "not key=value",
		"agent.memory.lo=0":     "agent.memory.lo",
		"agent.memory.low=lots": "lots",
		"priority=high":         "AllowedAnnotations",
	} {
		if _, err := parsePolicy(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parsePolicy(%q): %v, want an error naming %q", in, err, want)
		}
	}
}
