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
// trigger threshold (some stall of 50 ms within the trailing 500 ms, from the
// pool's memory.pressure sampled every 2 ms outside the shim) to the low
// priority call's cgroup.events saying frozen; and, from the records, the
// shim's own part (PSI notification to frozen). Run with -test.benchtime 1x.
func BenchmarkFreezeReaction(b *testing.B) {
	d := getDaemon(b, stacks()[0])
	pool, hi, lo := newPool(b, d)
	var reactions, inShim []int64
	early, misses := 0, 0
	for round := range *benchFreezes {
		r := fmt.Sprint(round)
		call := filepath.Join(cgroupfs.Path(pool), lo, "tools", "ramp-"+r)
		done := make(chan struct{})
		result := make(chan [2]time.Time, 1)
		go func() { result <- watchReaction(cgroupfs.Path(pool), call, done) }()
		rh, rl := contend(b, d, hi, lo, r)
		close(done)
		if rh.code != 0 || rl.code != 0 {
			b.Fatalf("round %d: calls: high %v, low %v", round, rh, rl)
		}
		switch at := <-result; {
		case at[1].IsZero():
			misses++
		case at[0].IsZero():
			early++ // the kernel's windowed estimate fired before the exact trailing window reached 50 ms
		default:
			reactions = append(reactions, at[1].Sub(at[0]).Microseconds())
		}
		if rec := endedRecord(b, lo, "ramp-"+r); rec.FreezeLatencyUs > 0 {
			inShim = append(inShim, rec.FreezeLatencyUs)
		}
	}
	if len(reactions) == 0 || len(inShim) == 0 {
		b.Fatalf("no measured freeze in %d rounds (%d frozen before the exact crossing, %d never frozen)", *benchFreezes, early, misses)
	}
	ms := func(v []int64, p float64) float64 { return float64(percentile(v, p)) / 1000 }
	b.ReportMetric(ms(reactions, 0.5), "p50-ms")
	b.ReportMetric(ms(reactions, 0.99), "p99-ms")
	b.Logf("threshold crossed -> frozen, %d rounds: p50 %.1f ms, p99 %.1f ms (one PSI window: 500 ms); "+
		"%d rounds froze before the exact 500 ms window reached 50 ms (the kernel's trigger interpolates the previous window), %d never froze",
		len(reactions), ms(reactions, 0.5), ms(reactions, 0.99), early, misses)
	b.Logf("in the shim, PSI notification -> frozen, %d freezes: p50 %.1f ms, p99 %.1f ms", len(inShim), ms(inShim, 0.5), ms(inShim, 0.99))
}

// watchReaction samples the pool's memory.pressure and the call's
// cgroup.events until done and returns when the trigger threshold was first
// crossed and when the call was first frozen (zero: never).
func watchReaction(pool, call string, done <-chan struct{}) (at [2]time.Time) {
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
			return at
		case now := <-tick.C:
			if p, err := cgroupfs.ReadPressure(pool); err == nil && crossed.IsZero() {
				window = append(window, sample{now, p.Some})
				for len(window) > 1 && now.Sub(window[0].at) > 500*time.Millisecond {
					window = window[1:]
				}
				if p.Some-window[0].some >= 50*time.Millisecond {
					crossed, at[0] = now, now
				}
			}
			if frozen, err := cgroupfs.Frozen(call); err == nil && frozen {
				at[1] = now
				return at
			}
		}
	}
}
