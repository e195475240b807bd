package hooks

import (
	"context"
	"testing"

	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestEventArgvNotUTF8: argv is bytes, cut at 255 of them by the detector,
// often inside a character; the event still goes out.
func TestEventArgvNotUTF8(t *testing.T) {
	c := &Container{ctx: context.Background(), st: state.Container{ID: "c1"}, policy: policy.Default()}
	ev := c.event(toolcall.Record{ID: "fork-1", Command: []string{"echo", "caf\xc3"}, State: toolcall.Frozen, MemoryPeakBytes: 1}, "memory pressure on the pool")
	if ev == nil {
		t.Fatal("no event for a command that is not valid UTF-8")
	}
	if got := ev.Fields["command"].GetListValue().Values[1].GetStringValue(); got != "caf\uFFFD" {
		t.Errorf("command argument %q", got)
	}
}
