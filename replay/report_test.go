package replay

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/replay/trace"
)

func TestTotals(t *testing.T) {
	r := &ArmResult{
		Arm: Arms[3],
		Agents: []AgentResult{
			{Completed: true, Frozen: 2, Summary: &trace.Summary{Calls: 4, Failed: 1, Killed: 1, Stretch: []float64{1, 2, 3, 4}}},
			{AgentKilled: true},
		},
		Samples:  []PoolSample{{Bytes: 100 << 20}, {Bytes: 300 << 20}, {Bytes: 200 << 20}},
		Makespan: 90 * time.Second,
	}
	got := r.Totals()
	want := Totals{Agents: 2, Completed: 1, AgentKills: 1, CallsDone: 3, CallsKilled: 1, CallsFrozen: 2, CallsLost: 1,
		StretchP50: 3, StretchP95: 4, Makespan: 90 * time.Second, MeanBytes: 200 << 20, PeakBytes: 300 << 20}
	if got != want {
		t.Errorf("Totals = %+v, want %+v", got, want)
	}
	var b bytes.Buffer
	WriteTable(&b, []*ArmResult{r})
	if !strings.Contains(b.String(), "| (d) agentcgroup, default policy | 1 / 2 | **1** | 3 / 1 / 2 (+ the calls of 1 agents that died) | 1m30s |") {
		t.Errorf("table:\n%s", b.String())
	}
}
