//go:build integration

package integration

import (
	"flag"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

var benchFreezes = flag.Int("bench.freezes", 20, "pool contention rounds for the freeze reaction time")

// BenchmarkFreezeReaction measures, in the pool scenario of TestPoolFreeze,
// the time from the moment the pool's memory pressure crosses the shim's
// trigger threshold (some stall of 50 ms within 500 ms, computed from the
// pool's memory.pressure sampled every 2 ms, outside the shim) to the low
// priority call's cgroup.events saying frozen. Run with -test.benchtime 1x.
func BenchmarkFreezeReaction(b *testing.B) {
	d := getDaemon(b, stacks()[0])
	pool, hi, lo := newPool(b, d)
	var reactions []int64
	misses := 0
	for round := range *benchFreezes {
		r := fmt.Sprint(round)
		call := filepath.Join(cgroupfs.Path(pool), lo, "tools", "ramp-"+r)
		done := make(chan struct{})
		result := make(chan time.Duration, 1)
		go func() { result <- watchReaction(cgroupfs.Path(pool), call, done) }()
		rh, rl := contend(b, d, hi, lo, r)
		close(done)
		if rh.code != 0 || rl.code != 0 {
			b.Fatalf("round %d: calls: high %v, low %v", round, rh, rl)
		}
		if took := <-result; took >= 0 {
			reactions = append(reactions, took.Microseconds())
		} else {
			misses++
		}
	}
	if len(reactions) == 0 {
		b.Fatalf("no freeze in %d rounds", *benchFreezes)
	}
	p50, p99 := percentile(reactions, 0.5), percentile(reactions, 0.99)
	b.ReportMetric(float64(p50)/1000, "p50-ms")
	b.ReportMetric(float64(p99)/1000, "p99-ms")
	b.Logf("freeze reaction over %d rounds (%d without a crossing or a freeze): p50 %.1f ms, p99 %.1f ms; one PSI window is 500 ms",
		len(reactions), misses, float64(p50)/1000, float64(p99)/1000)
}

// watchReaction samples the pool's memory.pressure and the call's
// cgroup.events until done and returns the time from the first crossing of
// the trigger threshold to the first frozen, or -1.
func watchReaction(pool, call string, done <-chan struct{}) time.Duration {
	type sample struct {
		at   time.Time
		some time.Duration
	}
	var window []sample
	var crossed time.Time
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return -1
		case now := <-tick.C:
			if p, err := cgroupfs.ReadPressure(pool); err == nil && crossed.IsZero() {
				window = append(window, sample{now, p.Some})
				for len(window) > 1 && now.Sub(window[0].at) > 500*time.Millisecond {
					window = window[1:]
				}
				if p.Some-window[0].some >= 50*time.Millisecond {
					crossed = now
				}
			}
			if frozen, err := cgroupfs.Frozen(call); err == nil && frozen {
				if crossed.IsZero() {
					return -1
				}
				return now.Sub(crossed)
			}
		}
	}
}
