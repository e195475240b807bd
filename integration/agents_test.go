//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// harnessCommands are what the scripted agents run, in order.
var harnessCommands = []string{
	"echo hello; echo oops >&2",
	// Past tool.memory.max (256Mi): dies alone, and says why.
	`python3 -c 'a = bytearray(400 << 20); print(len(a))'`,
	"echo next-command-ran",
	// A build with many gcc children: one call.
	`mkdir -p /tmp/proj && cd /tmp/proj && for i in $(seq 1 8); do echo "int f$i(void) { return $i; }" > f$i.c; done && printf 'all: $(patsubst %%.c,%%.o,$(wildcard *.c))\n' > Makefile`,
	"make -C /tmp/proj -j2",
	// A dev server started in the background: the harness goes on.
	"sleep 60 >/dev/null 2>&1 & echo started",
}

// harnessResult is one command as the agent recorded it.
type harnessResult struct {
	Command      string  `json:"command"`
	Stdout       string  `json:"stdout"`
	Stderr       string  `json:"stderr"`
	Output       string  `json:"output"` // sessions: stdout and stderr as one stream
	Exit         *int    `json:"exit"`
	Seconds      float64 `json:"seconds"`
	Done         bool    `json:"done"`
	SessionAlive *bool   `json:"session_alive"`
}

// TestAgentHarnesses: three agents that run their tools the way the real
// frameworks do, in a Debian container with bash, python3, node, gcc and
// tmux. A fresh `bash -c` per command (Claude Code) makes each command a
// call; one bash session on a pipe (SWE-agent) and one in tmux (OpenHands)
// make each command the session runs its own call, the session staying with
// the agent. In every one a command past its memory.max dies alone, the
// agent reads why in that command's output, and the next command runs; a
// make with gcc children is one call; a background job does not hang the
// agent and is not in C/agent.
func TestAgentHarnesses(t *testing.T) {
	s := stacks()[0]
	debian := filepath.Join(projectRoot, ".cache/debian-rootfs")
	if _, err := os.Stat(filepath.Join(debian, "harness", "fresh-shell.js")); err != nil {
		t.Fatalf("no Debian rootfs with the harnesses (integration/debian-rootfs.sh): %v", err)
	}
	d := getDaemon(t, s)
	for _, h := range []struct {
		name string
		argv []string
	}{
		{"fresh-shell", []string{"/usr/bin/node", "/harness/fresh-shell.js"}},
		{"pipe-session", []string{"/usr/bin/python3", "/harness/pipe-session.py"}},
		{"tmux-session", []string{"/usr/bin/python3", "/harness/tmux-session.py"}},
	} {
		t.Run(h.name, func(t *testing.T) {
			id, res := runHarness(t, d, h.name, h.argv, harnessCommands, "tool.memory.max=256Mi")
			agent := d.pid(t, id)
			if len(res) != len(harnessCommands)+1 {
				t.Fatalf("the agent recorded %d results, want %d: %+v", len(res), len(harnessCommands)+1, res)
			}
			text := func(r harnessResult) string { return r.Stdout + r.Stderr + r.Output }
			if r := res[0]; r.Exit == nil || *r.Exit != 0 || !strings.Contains(text(r), "hello") || !strings.Contains(text(r), "oops") {
				t.Errorf("first command: %+v", r)
			}
			oom := res[1]
			t.Logf("%s: the command past its limit, as the agent saw it: %+v", h.name, oom)
			if oom.Exit == nil || *oom.Exit != 137 || !strings.Contains(text(oom), "agentcgroup: tool call killed: out of memory at its own limit memory.max=256.0 MiB") {
				t.Errorf("the command past its limit: %+v; want exit 137 and the agentcgroup: line in its output", oom)
			}
			if h.name == "fresh-shell" && !strings.Contains(oom.Stderr, "agentcgroup: ") {
				t.Errorf("the agentcgroup: line is not on the command's stderr: %+v", oom)
			}
			if r := res[2]; r.Exit == nil || *r.Exit != 0 || !strings.Contains(text(r), "next-command-ran") {
				t.Errorf("the command after the kill: %+v", r)
			}
			if r := res[4]; r.Exit == nil || *r.Exit != 0 {
				t.Errorf("make: %+v", r)
			}
			if r := res[5]; r.Exit == nil || *r.Exit != 0 || r.Seconds > 30 {
				t.Errorf("background job: %+v; want the command back at once", r)
			}
			if last := res[len(res)-1]; last.SessionAlive != nil && !*last.SessionAlive {
				t.Errorf("the session died")
			}
			if p := d.pid(t, id); p != agent || d.status(t, id) != "RUNNING" {
				t.Errorf("the agent is %s (pid %d, was %d)", d.status(t, id), p, agent)
			}

			recs := ps(t, id)
			has := func(prefix string) []toolcall.Record {
				var out []toolcall.Record
				for _, r := range recs {
					if strings.HasPrefix(strings.Join(r.Command, " "), prefix) {
						out = append(out, r)
					}
				}
				return out
			}
			killed := has("python3 -c")
			if h.name == "fresh-shell" {
				killed = has("bash -c python3 -c")
			}
			if len(killed) != 1 || killed[0].State != toolcall.OOMKilled {
				t.Errorf("the python3 command's calls: %+v, want one oom-killed", killed)
			}
			makes := has("make -C /tmp/proj")
			if h.name == "fresh-shell" {
				makes = has("bash -c make -C /tmp/proj")
			}
			if len(makes) != 1 {
				t.Errorf("make is %d calls, want 1", len(makes))
			}
			for _, r := range recs {
				if strings.Contains(strings.Join(r.Command, " "), "cc1") || (len(r.Command) > 0 && filepath.Base(r.Command[0]) == "gcc") {
					t.Errorf("a compiler run by make is a call of its own: %+v", r)
				}
				if h.name != "fresh-shell" && r.Kind != toolcall.KindSession && len(r.Command) > 0 && (r.Command[0] == "bash" || r.Command[0] == "-bash" || r.Command[0] == "tmux") {
					t.Errorf("the session is a call: %+v", r)
				}
			}
			if h.name != "fresh-shell" && len(has("sleep 60")) != 1 {
				t.Errorf("the background job of the session is not a call of its own: %+v", recs)
			}
			// The background job is in a call, not in C/agent.
			procs, _ := os.ReadFile(filepath.Join(containerCgroup(id), "agent", "cgroup.procs"))
			for _, p := range strings.Fields(string(procs)) {
				if comm, _ := os.ReadFile("/proc/" + p + "/comm"); strings.TrimSpace(string(comm)) == "sleep" {
					t.Errorf("the background sleep (pid %s) is in C/agent", p)
				}
			}
		})
	}
}

// runHarness runs an agent harness (argv, in the Debian rootfs) on
// commands, with the given io.agentcgroup annotations, until it has
// recorded them all or its session died; it returns the container and the
// results.
func runHarness(t *testing.T, d *daemon, name string, argv, commands []string, annots ...string) (string, []harnessResult) {
	t.Helper()
	debian := filepath.Join(projectRoot, ".cache/debian-rootfs")
	out := t.TempDir()
	cmds, _ := json.Marshal(commands)
	if err := os.WriteFile(filepath.Join(out, "commands.json"), cmds, 0o644); err != nil {
		t.Fatal(err)
	}
	id := newID(name)
	args := append([]string{"run", "-d", "--runtime", "io.containerd.agentcgroup.v1",
		"--env", "PATH=/usr/local/bin:/usr/bin:/bin", "--env", "HOME=/root", "--memory-limit", strconv.Itoa(1 << 30),
		"--mount", "type=bind,src=" + out + ",dst=/out,options=rbind:rw"},
		annotations(annots...)...)
	args = append(args, "--rootfs", debian, id)
	d.mustCtr(t, append(append(args, argv...), "/out/commands.json", "/out/results.jsonl")...)
	t.Cleanup(func() { d.remove(id) })
	var res []harnessResult
	deadline := time.Now().Add(8 * time.Minute)
	for time.Now().Before(deadline) {
		res = readResults(t, filepath.Join(out, "results.jsonl"))
		if len(res) > 0 && res[len(res)-1].Done {
			break
		}
		time.Sleep(time.Second)
	}
	return id, res
}

func readResults(t *testing.T, path string) []harnessResult {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []harnessResult
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<24)
	for s.Scan() {
		var r harnessResult
		if err := json.Unmarshal(s.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	return out
}
