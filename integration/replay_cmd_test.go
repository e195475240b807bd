//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/replay"
)

// TestReplayCommand runs `agentcgroup replay` as a user would, small: three
// agents on the two burstiest of three short real traces (--order peak
// --top 2: the third agent replays the first trace again), all four arms, a
// sweep over 2 and 3 agents, against the real containerd and both shims.
// Every arm must run its agents and report, with where its cost came from;
// the files it promises must be there.
func TestReplayCommand(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	traces := t.TempDir()
	for _, name := range []string{"tobymao__sqlglot-4415.json", "cneud__alto-tools-29.json", "pydicom__pydicom-2065.json"} {
		// Copied for the run (a symlink would point outside the containers' mount).
		b, err := os.ReadFile(filepath.Join(projectRoot, "..", "shared", "traces", name))
		if err == nil {
			err = os.WriteFile(filepath.Join(traces, name), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(projectRoot, "bin/agentcgroup"), "replay", "--address", d.sock, "--namespace", namespace+"-replay",
		"--rootfs", rootfs, "--traces", traces, "--sweep", "2,3", "--budget", "768Mi", "--speed", "20", "--scale", "0.5",
		"--pool", "/agentcgroup-test-replay", "--order", "peak", "--top", "2", "--out", out)
	cmd.Env = append(os.Environ(), "PATH="+d.path)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("agentcgroup replay: %v\n%s", err, b)
	}
	t.Logf("%s", b)
	for _, f := range []string{"table.md", "pool.svg", "results.json", "sweep.md", "sweep.svg"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	var res struct {
		Runs  [][]*replay.ArmResult
		Sweep []replay.SweepPoint
	}
	raw, _ := os.ReadFile(filepath.Join(out, "results.json"))
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 || len(res.Runs[1]) != 4 || len(res.Sweep) != 8 {
		t.Fatalf("%d runs, %d sweep points; want 2 of 4 arms and 8", len(res.Runs), len(res.Sweep))
	}
	last := res.Runs[1]
	for _, r := range last {
		if r.Agents[2].Task != r.Agents[0].Task || r.Agents[1].Task == r.Agents[0].Task {
			t.Errorf("arm %s: tasks %s, %s, %s; want the two burstiest, then the first again", r.Arm.Name, r.Agents[0].Task, r.Agents[1].Task, r.Agents[2].Task)
		}
		tot := r.Totals()
		if len(r.Agents) != 3 || len(r.Samples) == 0 || tot.Completed+tot.AgentKills != 3 {
			t.Errorf("arm %s: %d agents, %d samples, totals %+v", r.Arm.Name, len(r.Agents), len(r.Samples), tot)
		}
		for _, a := range r.Agents {
			if a.Completed && (a.Summary == nil || a.Summary.Calls == 0) {
				t.Errorf("arm %s agent %s completed without a summary", r.Arm.Name, a.ID)
			}
		}
	}
	if d := last[3]; d.Totals().AgentKills != 0 {
		t.Errorf("agentcgroup arm lost %d agents at a budget this roomy", d.Totals().AgentKills)
	}
	table, _ := os.ReadFile(filepath.Join(out, "table.md"))
	if !strings.Contains(string(table), "(d) agentcgroup, default policy | 3 / 3") || !strings.Contains(string(table), "| frozen call-seconds |") {
		t.Errorf("table:\n%s", table)
	}
	sweep, _ := os.ReadFile(filepath.Join(out, "sweep.md"))
	if strings.Count(string(sweep), "tool calls killed (pool OOM") != 2 || !strings.Contains(string(sweep), "largest N with zero agent kills") {
		t.Errorf("sweep.md lacks a number's tables or the summary:\n%s", sweep)
	}
	if _, err := os.Stat(cgroupfs.Path("/agentcgroup-test-replay")); !os.IsNotExist(err) {
		t.Errorf("pool cgroup left behind: %v", err)
	}
}
