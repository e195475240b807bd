package replay

import (
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/replay/trace"
)

// TestOrderPeak: --order peak puts the largest bursts first.
func TestOrderPeak(t *testing.T) {
	tr := func(peak float64) *trace.Trace {
		return &trace.Trace{Samples: []trace.Sample{{T: 0, MemoryMB: 100}, {T: 1, MemoryMB: peak}}}
	}
	files, traces := []string{"a", "b", "c"}, []*trace.Trace{tr(300), tr(2000), tr(500)}
	if err := OrderTraces(files, traces, OrderPeak); err != nil {
		t.Fatal(err)
	}
	if strings.Join(files, "") != "bca" || peakMB(traces[0]) != 2000 {
		t.Errorf("order %v", files)
	}
	if err := OrderTraces(files, traces, "size"); err == nil {
		t.Error("an unknown order was accepted")
	}
}
