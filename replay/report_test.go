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
			{Completed: true, Cost: Cost{Frozen: []float64{1, 2}}, Summary: &trace.Summary{Calls: 4, Failed: 1, Killed: 1, Stretch: []float64{1, 2, 3, 4}}},
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
	if !strings.Contains(b.String(), "| (d) agentcgroup, default policy | 1 / 2 | **1** | 3 / 1 / 2 (+ the calls of 1 agents that died or did not finish) | 1m30s |") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestUnfinished: agents still running at the arm's bound are counted and
// said, with what they were doing; the makespan is the bound, at least.
func TestUnfinished(t *testing.T) {
	r := &ArmResult{
		Arm:      Arms[0],
		Agents:   []AgentResult{{Completed: true, Summary: &trace.Summary{Calls: 1}}, {ID: "replay-a-1", Unfinished: true, Doing: "call 7: pytest"}},
		Makespan: 2 * time.Minute, Bound: 2 * time.Minute,
	}
	if got := r.Totals(); got.Unfinished != 1 || got.Completed != 1 || got.CallsLost != 1 {
		t.Errorf("Totals = %+v", got)
	}
	var b bytes.Buffer
	WriteTable(&b, []*ArmResult{r})
	for _, want := range []string{"| 1 / 2 (1 unfinished) |", "| > 2m0s (bound) |", "replay-a-1 did not finish within 2m0s; it was doing: call 7: pytest"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
