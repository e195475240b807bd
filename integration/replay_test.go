//go:build integration

package integration

import (
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/replay/trace"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestReplay: the simulator replays a real agent run as a container's init
// under the shim: every tool call of the trace becomes one fork-detected call
// (Bash calls through `sh -c`), each ends exited, and the agent completes.
func TestReplay(t *testing.T) {
	traces := filepath.Join(projectRoot, "..", "shared", "traces")
	const name = "RDFLib__rdflib-1117.json"
	tr, err := trace.Load(filepath.Join(traces, name))
	if err != nil {
		t.Fatal(err)
	}
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("replay")
		log := filepath.Join(t.TempDir(), "out.log")
		d.start(t, d.agentcgroup(), id, []string{"--log-uri", "file://" + log,
			"--mount", "type=bind,src=" + traces + ",dst=/traces,options=rbind:ro"},
			"/bin/agentsim", "-trace", "/traces/"+name, "-speed", "8")
		deadline := time.Now().Add(2 * time.Minute)
		for d.status(t, id) != "STOPPED" && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		// The last call's exit reaches the records (within their save delay)
		// independently of the agent's own exit right after it.
		exited := func(recs []toolcall.Record) int {
			return count(recs, func(r toolcall.Record) bool { return r.Kind == "fork" && r.State == toolcall.Exited })
		}
		var recs []toolcall.Record // kept until the task is deleted
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if recs = ps(t, id); exited(recs) >= len(tr.Calls) || time.Now().After(deadline) {
				break
			}
		}
		if code := d.deleteExitCode(t, id); code != 0 {
			t.Errorf("agent exit %d, want a completed run", code)
		}
		out := readTrim(t, log)
		if !regexp.MustCompile(`replay done: task=RDFLib__rdflib-1117 calls=17 failed=0 killed=0`).MatchString(out) {
			t.Errorf("simulator output: %s", out)
		}
		if forks := exited(recs); forks != len(tr.Calls) {
			t.Errorf("%d exited fork calls, want the trace's %d: %+v", forks, len(tr.Calls), recs)
		}
		bash := count(recs, func(r toolcall.Record) bool { return len(r.Command) > 0 && r.Command[0] == "/bin/sh" })
		if want := bashCalls(tr); bash != want {
			t.Errorf("%d calls through sh -c, want the trace's %d Bash calls", bash, want)
		}
	})
}

func bashCalls(tr *trace.Trace) int {
	n := 0
	for _, c := range tr.Calls {
		if c.Tool == "Bash" {
			n++
		}
	}
	return n
}
