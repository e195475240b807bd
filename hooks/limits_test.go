package hooks

import (
	"testing"

	"github.com/agentcgroup/agentcgroup/policy"
)

// TestToolOOMScoreAdj: at an OOM above its calls, the kernel takes a tool
// call before the agent (adj 0), and a lower priority's call first.
func TestToolOOMScoreAdj(t *testing.T) {
	low, normal, high := toolOOMScoreAdj(policy.PriorityLow), toolOOMScoreAdj(policy.PriorityNormal), toolOOMScoreAdj(policy.PriorityHigh)
	if !(1000 >= low && low > normal && normal > high && high > 0) {
		t.Errorf("oom_score_adj low %d, normal %d, high %d: want 1000 >= low > normal > high > 0", low, normal, high)
	}
}
