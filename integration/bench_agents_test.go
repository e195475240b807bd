//go:build integration

package integration

import (
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkRealAgents runs each CLI of -agents through its whole script
// (agentScript) under the runc shim and under agentcgroup, interleaved
// round by round on one daemon, and reports the median wall time of each,
// their ratio (target: at most 1.05x) and the tool calls the CLI starts per
// command the model asked for (its own helpers included). The wall time is
// from `ctr run` to the CLI's exit. Run with -test.benchtime 1x.
func BenchmarkRealAgents(b *testing.B) {
	d := getDaemon(b, stacks()[0])
	const rounds = 3
	for _, name := range strings.Split(*realAgentsFlag, ",") {
		a, ok := realAgents[name]
		if !ok {
			b.Fatalf("-agents: unknown CLI %q", name)
		}
		b.Run(name, func(b *testing.B) {
			took := map[string][]time.Duration{}
			var calls int
			for i := 0; i < rounds; i++ {
				for _, rt := range []runtime{d.runc(), d.agentcgroup()} {
					out, addr := startModelServer(b)
					if a.setup != nil {
						a.setup(b, out, addr)
					}
					id := newID("bench-" + name)
					start := time.Now()
					run := realAgentRun(b, d, rt, id, out, addr, a)
					took[rt.name] = append(took[rt.name], time.Since(start))
					if run.exit != 0 || len(run.results) != len(agentScript) {
						b.Fatalf("%s under %s: exit %d, %d tool results; its output:\n%s", name, rt.name, run.exit, len(run.results), run.output)
					}
					if rt.name == "agentcgroup" {
						calls = len(ps(b, id))
					}
					d.remove(id)
				}
			}
			median := func(ds []time.Duration) time.Duration {
				sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
				return ds[len(ds)/2]
			}
			runc, ours := median(took["runc"]), median(took["agentcgroup"])
			b.ReportMetric(runc.Seconds(), "runc-s")
			b.ReportMetric(ours.Seconds(), "agentcgroup-s")
			b.ReportMetric(ours.Seconds()/runc.Seconds(), "ratio")
			b.ReportMetric(float64(calls)/float64(len(agentScript)), "calls/command")
		})
	}
}
