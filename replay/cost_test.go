package replay

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/replay/trace"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestCost: kills are told apart by where they came from, from the records
// in arm d and from the container's memory.events in the runc arms.
func TestCost(t *testing.T) {
	recs := []toolcall.Record{
		{State: toolcall.OOMKilled, Reason: "tool call killed: out of memory at a memory limit above the container (host or pool) (peak 1.0 MiB); the agent was not touched"},
		{State: toolcall.OOMKilled, Reason: "tool call killed: out of memory at its own limit memory.max=64.0 MiB (peak 64.0 MiB); the agent was not touched"},
		{State: toolcall.Killed, Reason: "tool call killed: no progress for 5m0s while frozen under memory pressure (peak 1.0 MiB); the agent was not touched", Freezes: 1, FrozenSeconds: 300},
		{State: toolcall.Exited, Freezes: 2, FrozenSeconds: 1.5},
		{State: toolcall.Killed}, // the agent's own signal: not the policy's
	}
	var d AgentResult
	now := time.Unix(1000, 0)
	still := now.Add(-2 * time.Second)
	recs = append(recs, toolcall.Record{State: toolcall.Frozen, Freezes: 1, FrozenSince: &still}) // an unfinished agent's
	measureCost(&d, true, map[string]uint64{"oom_kill": 2}, 3*time.Second, recs, now)
	want := map[string]int{KillPool: 1, KillOwn: 1, KillStall: 1}
	if len(d.Cost.CallKills) != len(want) || d.Cost.CallKills[KillPool] != 1 || d.Cost.CallKills[KillOwn] != 1 || d.Cost.CallKills[KillStall] != 1 {
		t.Errorf("arm d kills %v, want %v", d.Cost.CallKills, want)
	}
	if d.Cost.FrozenSeconds != 303.5 || len(d.Cost.Frozen) != 3 || d.Cost.Stalled != 3 || d.Cost.AgentKill != "" {
		t.Errorf("arm d cost %+v", d.Cost)
	}

	b := AgentResult{AgentKilled: true, Summary: &trace.Summary{Killed: 2}}
	measureCost(&b, false, map[string]uint64{"oom": 3, "oom_kill": 3}, 0, nil, now)
	a := AgentResult{AgentKilled: true}
	measureCost(&a, false, map[string]uint64{"oom_kill": 1}, 0, nil, now)
	if b.Cost.CallKills[KillContainer] != 2 || b.Cost.AgentKill != KillContainer || a.Cost.AgentKill != KillPool {
		t.Errorf("runc arms: b %+v, a %+v", b.Cost, a.Cost)
	}

	var out bytes.Buffer
	WriteCosts(&out, []*ArmResult{{Arm: Arms[3], Agents: []AgentResult{d}}, {Arm: Arms[1], Agents: []AgentResult{b, a}}})
	for _, line := range []string{
		"| (d) agentcgroup, default policy | 1 / 0 / 1 / 1 | 0 / 0 / 0 / 0 | 3, 2.0s / 300.0s | 303.5s | 3.0s |",
		"| (b) runc, memory.max = budget/N | 0 / 2 / 0 / 0 | 1 / 1 / 0 / 0 | 0, 0.0s / 0.0s | 0.0s | 0.0s |",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("costs table lacks %q:\n%s", line, out.String())
		}
	}
}
