//go:build integration

package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestAllocationSurvivals: 100 tool calls, one after another, each
// allocating without end: each dies alone at its own limit, told, and the
// agent survives all 100 (the same init, still running).
func TestAllocationSurvivals(t *testing.T) {
	const n = 100
	d := getDaemon(t, stacks()[0])
	id := newID("survive")
	d.start(t, d.agentcgroup(), id, []string{"--annotation", "io.agentcgroup.tool.memory.max=32Mi", "--memory-limit", strconv.Itoa(256 << 20)}, agentInit...)
	init := d.pid(t, id)
	told := 0
	for i := range n {
		r := d.ctr(t, "task", "exec", "--exec-id", fmt.Sprintf("hog-%d", i), id, "/bin/agentsim", "-alloc", "100000")
		if r.code != 137 || !strings.Contains(r.stderr, "agentcgroup: tool call killed: out of memory at its own limit memory.max=32.0 MiB") {
			t.Fatalf("allocation %d: %v; want 137 and the line", i, r)
		}
		told++
	}
	if st := d.status(t, id); st != "RUNNING" || d.pid(t, id) != init {
		t.Errorf("the agent after %d unbounded allocations: %s, init %d (was %d)", n, st, d.pid(t, id), init)
	}
	recs := ps(t, id)
	if k := count(recs, func(r toolcall.Record) bool { return r.State == toolcall.OOMKilled }); k != n {
		t.Errorf("%d records oom-killed, want %d", k, n)
	}
	t.Logf("%d of %d unbounded allocations killed alone and told; the agent survived all", told, n)
}
