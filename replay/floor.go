package replay

import "github.com/agentcgroup/agentcgroup/replay/trace"

// Unfittable counts, among the tool calls of n agents (agent i replays
// traces[i%len(traces)], memory times scale), those that cannot complete
// under budget while every agent lives: the call's peak above its agent's
// baseline plus every agent's baseline is over the budget. Without swap,
// an arm that keeps all n agents kills at least these; total is the n
// agents' calls.
func Unfittable(traces []*trace.Trace, n int, scale float64, budget int64) (unfit, total int) {
	if len(traces) == 0 {
		return 0, 0
	}
	baselines := 0.0
	for i := range n {
		baselines += traces[i%len(traces)].BaselineMB() * scale
	}
	room := float64(budget)/(1<<20) - baselines
	for i := range n {
		t := traces[i%len(traces)]
		base := t.BaselineMB()
		for _, c := range t.Calls {
			total++
			for _, s := range t.Profile(c, base) {
				if s.MB*scale > room {
					unfit++
					break
				}
			}
		}
	}
	return unfit, total
}
