package replay

import (
	"testing"

	"github.com/agentcgroup/agentcgroup/replay/trace"
)

// TestUnfittable: a call fits while its peak above the baseline fits
// beside every agent's baseline; scale applies to both.
func TestUnfittable(t *testing.T) {
	// Baseline 100 MB; a call of +300 MB and one of +900 MB.
	tr := &trace.Trace{
		Samples: []trace.Sample{{T: 0, MemoryMB: 100}, {T: 1, MemoryMB: 100}, {T: 2, MemoryMB: 400}, {T: 3, MemoryMB: 100}, {T: 4, MemoryMB: 1000}, {T: 5, MemoryMB: 100}, {T: 6, MemoryMB: 100}},
		Calls:   []trace.Call{{Start: 1.5, End: 2.5}, {Start: 3.5, End: 4.5}},
	}
	for _, tc := range []struct {
		n           int
		scale       float64
		budget      int64
		unfit, want int
	}{
		{n: 1, scale: 1, budget: 1 << 30, unfit: 0, want: 2},      // 100 + 900 fits in 1024
		{n: 2, scale: 1, budget: 1 << 30, unfit: 2, want: 4},      // 200 + 900 does not; 200 + 300 does
		{n: 8, scale: 1, budget: 1 << 30, unfit: 2 * 8, want: 16}, // 800 + 300 does not either
		{n: 8, scale: 0.5, budget: 1 << 30, unfit: 0, want: 16},   // 400 + 450 fits
		{n: 12, scale: 0.5, budget: 1 << 30, unfit: 12, want: 24}, // 600 + 450 does not, 600 + 150 does
	} {
		unfit, total := Unfittable([]*trace.Trace{tr}, tc.n, tc.scale, tc.budget)
		if total != tc.want || unfit != tc.unfit {
			t.Errorf("%d agents at scale %g: %d of %d calls cannot fit, want %d of %d", tc.n, tc.scale, unfit, total, tc.unfit, tc.want)
		}
	}
}
