package hooks

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/tree"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// TestToolOOMScoreAdj: at an OOM above its calls, the kernel takes a tool
// call before the agent (adj 0), and a lower priority's call first.
func TestToolOOMScoreAdj(t *testing.T) {
	low, normal, high := toolOOMScoreAdj(policy.PriorityLow), toolOOMScoreAdj(policy.PriorityNormal), toolOOMScoreAdj(policy.PriorityHigh)
	if !(1000 >= low && low > normal && normal > high && high > 0) {
		t.Errorf("oom_score_adj low %d, normal %d, high %d: want 1000 >= low > normal > high > 0", low, normal, high)
	}
}

// TestResolveLimitsLowMax: agent.memory.low=max protects the whole agent from
// create on, not only after a resize (a new cgroup's memory.low is 0).
func TestResolveLimitsLowMax(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, layout.Tools), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, layout.Tools, "cgroup.controllers"), []byte("memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := policy.Default()
	p.AgentMemoryLow = policy.Max
	c := &Container{policy: p, tree: tree.Tree{Dir: dir}}
	for _, resize := range []bool{false, true} {
		l := c.resolveLimits(cgroupfs.Unlimited, resize)
		if low := l.agent.Memory.Low; low == nil || *low != math.MaxInt64 {
			t.Errorf("resize %v: agent memory.low %v, want max written", resize, low)
		}
		if high := l.agent.Memory.High; (high == nil) == resize {
			t.Errorf("resize %v: agent memory.high %v, want it written only on resize", resize, high)
		}
	}
}
