//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestTree checks the cgroup tree of docs/contract.md on every stack: init in
// C/agent, C and C/tools empty with controllers enabled, annotations applied,
// each exec in C/tools/<execID> from inside the exec itself, records, and
// nothing left after delete.
func TestTree(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		rt := d.agentcgroup()
		id := newID("tree")
		d.start(t, rt, id, []string{"--memory-limit", "1073741824",
			"--annotation", "io.agentcgroup.tool.memory.max=100Mi",
			"--annotation", "io.agentcgroup.tool.memory.high=50%",
			"--annotation", "io.agentcgroup.agent.memory.high=600Mi",
			"--annotation", "io.agentcgroup.agent.memory.low=max"}, agentInit...)
		c := containerCgroup(id)

		if procs := readTrim(t, filepath.Join(c, "cgroup.procs")); procs != "" {
			t.Errorf("C holds processes: %q", procs)
		}
		if procs := readTrim(t, filepath.Join(c, "tools", "cgroup.procs")); procs != "" {
			t.Errorf("C/tools holds processes: %q", procs)
		}
		agentProcs := strings.Fields(readTrim(t, filepath.Join(c, "agent", "cgroup.procs")))
		if init := strconv.Itoa(d.pid(t, id)); !slices.Contains(agentProcs, init) {
			t.Errorf("init %s not in C/agent (%v)", init, agentProcs)
		}
		for _, dir := range []string{c, filepath.Join(c, "tools")} {
			ctrls := strings.Fields(readTrim(t, filepath.Join(dir, "cgroup.subtree_control")))
			for _, want := range []string{"cpu", "memory", "pids"} {
				if !slices.Contains(ctrls, want) {
					t.Errorf("%s/cgroup.subtree_control = %v, lacks %s", dir, ctrls, want)
				}
			}
		}
		if got := readTrim(t, filepath.Join(c, "agent", "memory.high")); got != strconv.Itoa(600<<20) {
			t.Errorf("C/agent memory.high = %s", got)
		}
		if got := readTrim(t, filepath.Join(c, "agent", "memory.low")); got != "max" {
			t.Errorf("C/agent memory.low = %s, want max", got)
		}
		if got := readTrim(t, filepath.Join(c, "agent", "memory.max")); got != "max" {
			t.Errorf("C/agent memory.max = %s", got)
		}
		if got := readTrim(t, filepath.Join(c, "memory.max")); got != "1073741824" {
			t.Errorf("C memory.max (the outer bound) = %s", got)
		}

		// The exec and a child of it see their own cgroup from inside (ctr
		// gives the container no cgroup namespace, so the path is the host's);
		// while it waits on stdin, its cgroup's limits are read on the host.
		call := exec.Command(d.ctrBin, "--address", d.sock, "--namespace", namespace, "task", "exec", "--exec-id", "call-1", id,
			"/bin/sh", "-c", "cat /proc/self/cgroup; sh -c 'cat /proc/self/cgroup'; read x || true")
		stdin, err := call.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stdout strings.Builder
		call.Stdout = &stdout
		if err := call.Start(); err != nil {
			t.Fatal(err)
		}
		callDir := filepath.Join(c, "tools", "call-1")
		eventually(t, "call-1 running in C/tools/call-1", func() bool {
			b, _ := os.ReadFile(filepath.Join(callDir, "cgroup.procs"))
			return len(strings.TrimSpace(string(b))) > 0
		})
		if got := readTrim(t, filepath.Join(callDir, "memory.max")); got != "104857600" {
			t.Errorf("C/tools/call-1 memory.max = %s, want 100Mi", got)
		}
		if got := readTrim(t, filepath.Join(callDir, "memory.high")); got != "536870912" {
			t.Errorf("C/tools/call-1 memory.high = %s, want 50%% of 1Gi", got)
		}
		stdin.Close()
		if err := call.Wait(); err != nil {
			t.Fatalf("exec call-1: %v", err)
		}
		if line := "0::/" + namespace + "/" + id + "/tools/call-1\n"; stdout.String() != line+line {
			t.Errorf("inside exec call-1: got %q, want %q twice", stdout.String(), line)
		}
		eventually(t, "C/tools/call-1 removed after the call ended", func() bool {
			_, err := os.Stat(filepath.Join(c, "tools", "call-1"))
			return os.IsNotExist(err)
		})
		d.ctr(t, "task", "exec", "--exec-id", "call-2", id, "/bin/sh", "-c", "exit 3")
		d.ctr(t, "task", "exec", "--exec-id", "call-3", id, "/bin/sh", "-c", "kill -9 $$")
		// Over the tool limit: only the call dies, the agent keeps running.
		d.ctr(t, "task", "exec", "--exec-id", "call-4", id, "/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=150M count=1")
		if s := d.status(t, id); s != "RUNNING" {
			t.Errorf("agent is %s after a tool call went over its memory.max", s)
		}

		// The exec'd calls; init's `sleep 1000 &` is a call the agent forked.
		var recs []toolcall.Record
		eventually(t, "four ended exec records", func() bool {
			recs = recs[:0]
			for _, r := range ps(t, id) {
				if r.Kind == "exec" {
					recs = append(recs, r)
				}
			}
			return len(recs) == 4 && ended(recs) == 4
		})
		want := map[string]struct {
			state toolcall.State
			code  uint32
		}{"call-1": {toolcall.Exited, 0}, "call-2": {toolcall.Exited, 3}, "call-3": {toolcall.Killed, 137}, "call-4": {toolcall.OOMKilled, 137}}
		for _, r := range recs {
			w, ok := want[r.ID]
			if !ok {
				t.Errorf("unexpected record %+v", r)
				continue
			}
			if r.State != w.state || r.ExitCode == nil || *r.ExitCode != w.code {
				t.Errorf("record %s: state %s exit %v, want %s %d", r.ID, r.State, r.ExitCode, w.state, w.code)
			}
			if r.Kind != "exec" || len(r.Command) != 3 || r.Command[0] != "/bin/sh" || r.Pid == 0 || r.MemoryPeakBytes == 0 {
				t.Errorf("record %s incomplete: %+v", r.ID, r)
			}
		}
		if r := find(recs, "call-4"); r == nil || r.MemoryPeakBytes < 90<<20 || r.OOMKills == 0 {
			t.Errorf("call-4 (150M under a 100Mi max) record: %+v", r)
		}

		d.remove(id)
		assertGone(t, id)
	})
}

func find(recs []toolcall.Record, id string) *toolcall.Record {
	for i := range recs {
		if recs[i].ID == id {
			return &recs[i]
		}
	}
	return nil
}

// ps runs `agentcgroup ps --json`.
func ps(t testing.TB, id string) []toolcall.Record { t.Helper(); return psIn(t, namespace, id) }

// psIn is ps of a container of containerd namespace ns.
func psIn(t testing.TB, ns, id string) []toolcall.Record {
	t.Helper()
	out, err := exec.Command(filepath.Join(projectRoot, "bin/agentcgroup"), "ps", "--namespace", ns, "--json", id).Output()
	if err != nil {
		t.Fatalf("agentcgroup ps %s: %v", id, err)
	}
	var recs []toolcall.Record
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("agentcgroup ps --json: %v: %s", err, out)
	}
	return recs
}
