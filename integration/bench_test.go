//go:build integration

package integration

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchRounds is the number of lifecycles per shim; odd, for a plain median.
const benchRounds = 21

// benchWarm keeps another agent container running through the rounds: the
// detector then stays pinned and each create opens it instead of loading
// it, as on a host that already runs agents.
var benchWarm = flag.Bool("bench.warm", false, "keep an agent container running through BenchmarkShimOverhead's rounds")

// BenchmarkShimOverhead times, through ctr as a user runs them, create+start
// (`ctr run -d`), one exec (`ctr task exec`), delete (`ctr task rm -f`,
// `ctr container rm`) and a whole `ctr run --rm` of /bin/true under the runc shim and under agentcgroup, interleaved
// round by round on the same daemon, and reports the medians and the ratio.
// Run it with -test.benchtime 1x: each run does benchRounds rounds.
func BenchmarkShimOverhead(b *testing.B) {
	for _, s := range stacks() {
		if s.crun {
			continue
		}
		b.Run(s.name, func(b *testing.B) {
			d := getDaemon(b, s)
			phases := []string{"create+start", "exec", "delete", "run --rm"}
			// detect=off runs the same shim without carving or the runtime
			// wrapper: what the decorated shim costs by itself.
			plain := d.agentcgroup()
			plain.name, plain.args = "agentcgroup-off", append(plain.args, "--annotation", "io.agentcgroup.detect=off")
			runtimes := []runtime{d.runc(), d.agentcgroup(), plain}
			samples := map[string]map[string][]time.Duration{}
			for _, rt := range runtimes {
				samples[rt.name] = map[string][]time.Duration{}
			}
			timed := func(rt runtime, phase string, args ...string) {
				start := time.Now()
				d.mustCtr(b, args...)
				samples[rt.name][phase] = append(samples[rt.name][phase], time.Since(start))
			}
			if *benchWarm {
				warm := newID("warm")
				d.start(b, d.agentcgroup(), warm, nil, agentInit...)
				defer d.remove(warm)
			}
			for i := 0; i < benchRounds; i++ {
				for _, rt := range runtimes {
					id := newID("bench")
					timed(rt, "create+start", runArgs(rt, true, id, nil, agentInit...)...)
					timed(rt, "exec", "task", "exec", "--exec-id", "call", id, "/bin/true")
					start := time.Now()
					d.mustCtr(b, "task", "rm", "-f", id)
					d.mustCtr(b, "container", "rm", id)
					samples[rt.name]["delete"] = append(samples[rt.name]["delete"], time.Since(start))
					timed(rt, "run --rm", runArgs(rt, false, newID("bench"), []string{"--rm"}, "/bin/true")...)
				}
			}
			var report strings.Builder
			host := "cold host: each create loads the detector"
			if *benchWarm {
				host = "warm host: another agent container keeps the detector pinned"
			}
			fmt.Fprintf(&report, "\n%s, %s, median of %d rounds:\n%-14s %10s %12s %7s %16s %7s\n", s.name, host, benchRounds, "operation", "runc shim", "agentcgroup", "ratio", "detect=off", "ratio")
			for _, p := range phases {
				runc, ours, off := median(samples["runc"][p]), median(samples["agentcgroup"][p]), median(samples["agentcgroup-off"][p])
				ratio := float64(ours) / float64(runc)
				fmt.Fprintf(&report, "%-14s %10s %12s %6.3fx %16s %6.3fx\n", p, runc.Round(time.Millisecond/10), ours.Round(time.Millisecond/10), ratio,
					off.Round(time.Millisecond/10), float64(off)/float64(runc))
				key := strings.NewReplacer("+", "-", " --", "-").Replace(p)
				b.ReportMetric(float64(runc.Microseconds())/1000, key+"-runc-ms")
				b.ReportMetric(float64(ours.Microseconds())/1000, key+"-agentcgroup-ms")
				b.ReportMetric(ratio, key+"-ratio")
			}
			fmt.Fprint(os.Stdout, report.String())
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
