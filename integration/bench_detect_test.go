//go:build integration

package integration

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

var (
	benchCalls    = flag.Int("bench.calls", 10000, "tool calls for the placement latency")
	benchLeak     = flag.Int("bench.leakcalls", 20, "256 MiB tool calls for the charge leak")
	benchForkExec = flag.Int("bench.forkexec", 20000, "fork+execs for the detector overhead")
	benchSpaced   = flag.Int("bench.spacedcalls", 300, "tool calls 200 ms apart for the placement latency within the hold's budget")
)

// waitOutput polls a container's stdout log (ctr run --log-uri) for a line.
func waitOutput(b *testing.B, log string, re *regexp.Regexp, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, _ := os.ReadFile(log)
		if m := re.FindStringSubmatch(string(out)); m != nil {
			return m
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := os.ReadFile(log)
	b.Fatalf("no %q in the container's output within %v: %s", re, timeout, out)
	return nil
}

var allDone = regexp.MustCompile(`agentsim: all calls done`)

// runSim starts the agent simulator in a container and returns its log file.
func runSim(b *testing.B, d *daemon, rt runtime, id string, extra []string, args ...string) string {
	log := filepath.Join(b.TempDir(), id+".log")
	d.mustCtr(b, runArgs(rt, true, id, append([]string{"--log-uri", "file://" + log}, extra...), append([]string{"/bin/agentsim"}, args...)...)...)
	return log
}

func percentile(v []int64, p float64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkDetector measures the fork-detected tool calls in the guest:
// placement latency (fork to in its cgroup), the share of a call's memory
// charged to C/agent, and the agent's fork+exec cost with the detector
// attached against exec-only detection. Run with -test.benchtime 1x.
func BenchmarkDetector(b *testing.B) {
	d := getDaemon(b, stacks()[0])
	rt := d.agentcgroup()

	// Back to back, the calls meet the exec hold's CPU budget (a quarter
	// of a CPU per container): the latency is then the budget's pacing.
	// Spaced as an agent's are, each call is placed within the burst.
	b.Run("placement", func(b *testing.B) { benchPlacement(b, d, rt, *benchCalls, 0) })
	b.Run("placement-spaced", func(b *testing.B) { benchPlacement(b, d, rt, *benchSpaced, 200*time.Millisecond) })

	b.Run("charge-leak", func(b *testing.B) {
		// C/agent's peak grows with the agent's own memory too; a control run
		// whose calls allocate 1 MiB takes that out.
		growth := map[int]uint64{}
		// Seen from the calls: the smallest peak of a 256 MiB call over the
		// largest of a 1 MiB call is what a call surely got charged.
		callPeak := map[int][2]uint64{} // MiB -> smallest, largest
		for _, mib := range []int{1, 256} {
			id := newID("leak")
			log := runSim(b, d, rt, id, nil, "-delay", "2s", "-repeat", strconv.Itoa(*benchLeak), "exec /bin/agentsim -alloc "+strconv.Itoa(mib))
			agent := filepath.Join(containerCgroup(id), "agent")
			base, err := cgroupfs.ReadUint(agent, "memory.peak")
			if err != nil {
				b.Fatal(err)
			}
			waitOutput(b, log, allDone, 30*time.Minute)
			peak, err := cgroupfs.ReadUint(agent, "memory.peak")
			if err != nil {
				b.Fatal(err)
			}
			growth[mib] = peak - base
			var recs []toolcall.Record
			eventually(b, "the calls' records", func() bool {
				recs = ps(b, id)
				return len(recs) == *benchLeak && ended(recs) == len(recs)
			})
			lo, hi := uint64(math.MaxUint64), uint64(0)
			for _, r := range recs {
				lo, hi = min(lo, r.MemoryPeakBytes), max(hi, r.MemoryPeakBytes)
			}
			callPeak[mib] = [2]uint64{lo, hi}
			d.remove(id)
		}
		leak := max(0, float64(growth[256])-float64(growth[1])) / float64(256<<20)
		got := float64(callPeak[256][0]) - float64(callPeak[1][1])
		missing := max(0, 1-got/float64(255<<20))
		fmt.Printf("charge leak: C/agent peak grew %d KiB over %d calls of 256 MiB, %d KiB over as many of 1 MiB: %.2f%% of a call charged to the agent; "+
			"seen from the calls: the smallest 256 MiB call peaked %d KiB over the largest 1 MiB call, %.2f%% short of the 255 MiB difference\n",
			growth[256]>>10, *benchLeak, growth[1]>>10, 100*leak, int64(got)>>10, 100*missing)
		b.ReportMetric(100*leak, "leak-%")
		b.ReportMetric(100*missing, "call-short-%")
	})

	b.Run("overhead", func(b *testing.B) {
		re := regexp.MustCompile(`agentsim: (\d+) fork\+exec in (\d+) us`)
		took := map[string]float64{}
		for _, detect := range []string{"exec", "fork+exec"} {
			id := newID("overhead")
			log := runSim(b, d, rt, id, []string{"--annotation", "io.agentcgroup.detect=" + detect}, "-loop", strconv.Itoa(*benchForkExec), "/bin/true")
			m := waitOutput(b, log, re, 60*time.Minute)
			took[detect], _ = strconv.ParseFloat(m[2], 64)
			d.remove(id)
		}
		ratio := took["fork+exec"] / took["exec"]
		fmt.Printf("overhead: %d fork+exec of /bin/true from C/agent: %.1f s with exec-only detection, %.1f s with the detector (each a tool call): %.3fx\n",
			*benchForkExec, took["exec"]/1e6, took["fork+exec"]/1e6, ratio)
		b.ReportMetric(ratio, "ratio")
	})
}

// benchPlacement runs calls tool calls of /bin/true, delay apart, in
// containers of up to 1,000 calls (the records a container keeps), and
// reports the placement latency (fork to in its cgroup) and the programs
// that started before their call was placed.
func benchPlacement(b *testing.B, d *daemon, rt runtime, calls int, delay time.Duration) {
	var lat []int64
	unplaced := 0
	for done := 0; done < calls; done += 1000 {
		n := min(1000, calls-done)
		id := newID("place")
		log := runSim(b, d, rt, id, nil, "-delay", delay.String(), "-repeat", strconv.Itoa(n), "true")
		waitOutput(b, log, allDone, 30*time.Minute)
		var recs []toolcall.Record
		for i := 0; i < 100; i++ {
			if recs = ps(b, id); len(recs) == n && ended(recs) == n {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		batchUnplaced := 0
		for _, r := range recs {
			if r.Kind == "fork" && r.PlacedAfterUs > 0 {
				lat = append(lat, r.PlacedAfterUs)
			}
			if r.StartedUnplaced {
				batchUnplaced++
			}
		}
		if batchUnplaced > 0 {
			fmt.Printf("batch %s: %d of %d programs started before their call was placed\n", id, batchUnplaced, len(recs))
		}
		unplaced += batchUnplaced
		d.remove(id)
	}
	if len(lat) == 0 {
		b.Fatalf("no placed call among %d", calls)
	}
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	fmt.Printf("placement, fork to in its cgroup, %d calls %v apart: p50 %.2f ms, p99 %.2f ms; %d programs started before their call was placed\n",
		len(lat), delay, float64(p50)/1000, float64(p99)/1000, unplaced)
	b.ReportMetric(float64(unplaced), "unplaced")
	b.ReportMetric(float64(p50)/1000, "p50-ms")
	b.ReportMetric(float64(p99)/1000, "p99-ms")
}
