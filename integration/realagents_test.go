//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// The real agent CLIs (Claude Code, Codex CLI, Gemini CLI, installed from
// npm by integration/agents.sh at testdata/agents/versions.env), each
// driven by the scripted model server (testdata/modelserver) through its
// own documented base-URL setting. CI runs Claude Code; `make agents` runs
// all three.
var realAgentsFlag = flag.String("agents", "claude", "the real agent CLIs TestRealAgents runs: claude, codex, gemini (comma-separated)")

// agentScript is what the scripted model asks each CLI to run, one command
// a turn, then it answers; step names a command in the assertions, and
// marker finds it in a record's command line, however the CLI wraps and
// quotes it.
var agentScript = []struct{ step, command, marker string }{
	{"hello", "echo hello; pwd", "echo hello"},
	{"make", `mkdir -p /tmp/proj && cd /tmp/proj && for i in 1 2 3 4 5 6 7 8; do echo "int f$i(void) { return $i; }" > f$i.c; done && printf 'all: $(patsubst %%.c,%%.o,$(wildcard *.c))\n' > Makefile && make -j2`, "make -j2"},
	{"oom", `python3 -c 'a = bytearray(400 << 20); print(len(a))'`, "bytearray(400"},
	// A job left running for 30 s with its output elsewhere, as a dev
	// server is started: not `sleep 30 &`, which Claude Code refuses to run
	// ("Blocked: sleep 30"); a job that keeps the command's output open
	// holds Gemini CLI's answer until it ends.
	{"background", `python3 -c 'import time; time.sleep(30)' >/dev/null 2>&1 & echo started-background`, "time.sleep(30)"},
	{"after", "echo after-background", "after-background"},
	{"cd", "cd /tmp && pwd", "cd /tmp && pwd"},
}

const agentPrompt = "Run the shell commands you are given, one at a time."

// realAgent is how one CLI runs in a container: its argv and environment
// (addr is the model server's), and the files it needs in its output
// folder (mounted at /out).
type realAgent struct {
	argv  []string
	env   func(addr string) []string
	setup func(t testing.TB, out, addr string)
}

var realAgents = map[string]realAgent{
	"claude": {
		argv: []string{"/opt/agents/claude/claude", "-p", agentPrompt, "--dangerously-skip-permissions"},
		env: func(addr string) []string {
			return []string{"ANTHROPIC_BASE_URL=http://" + addr, "ANTHROPIC_API_KEY=test", "IS_SANDBOX=1",
				"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1"}
		},
	},
	"codex": {
		argv: []string{"/opt/agents/codex/codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", agentPrompt},
		env:  func(string) []string { return []string{"CODEX_HOME=/out/codex", "LOCAL_API_KEY=test"} },
		setup: func(t testing.TB, out, addr string) {
			config := fmt.Sprintf(`model = "gpt-5"
model_provider = "local"

[model_providers.local]
name = "local"
base_url = "http://%s/v1"
env_key = "LOCAL_API_KEY"
wire_api = "responses"
`, addr)
			writeFile(t, filepath.Join(out, "codex", "config.toml"), config)
		},
	},
	"gemini": {
		argv: []string{"/opt/agents/node/bin/node", "/opt/agents/gemini/node_modules/@google/gemini-cli/bundle/gemini.js", "-p", agentPrompt, "--yolo"},
		env: func(addr string) []string {
			return []string{"GEMINI_API_KEY=test", "GOOGLE_GEMINI_BASE_URL=http://" + addr}
		},
		setup: func(t testing.TB, out, _ string) {
			writeFile(t, filepath.Join(out, "home", ".gemini", "settings.json"), `{
  "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}},
  "telemetry": {"enabled": false}, "privacy": {"usageStatisticsEnabled": false},
  "general": {"disableAutoUpdate": true, "disableUpdateNag": true}
}`)
		},
	},
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRealAgents: each CLI runs the script in a container under the shim
// on containerd 2.4 (ctr), started by an entrypoint script as images do.
// Every command the model asked for is its own tool call, with its command
// line; the one past tool.memory.max is killed alone and the agentcgroup:
// line is in the tool result the CLI sends back; make -j2 is one call; a
// background job delays nothing and stays in its call; the CLI is taken for
// the agent, stays in C/agent and exits 0; teardown leaves nothing.
func TestRealAgents(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	for _, name := range strings.Split(*realAgentsFlag, ",") {
		a, ok := realAgents[name]
		if !ok {
			t.Fatalf("-agents: unknown CLI %q", name)
		}
		t.Run(name, func(t *testing.T) {
			out, addr := startModelServer(t)
			if a.setup != nil {
				a.setup(t, out, addr)
			}
			id := newID("real-" + name)
			run := realAgentRun(t, d, d.agentcgroup(), id, out, addr, a)
			checkRealAgentRun(t, run, namespace, id, containerCgroup(id))
			d.remove(id)
			assertGone(t, id)
		})
	}
}

// startModelServer runs the scripted model server on agentScript, logging
// into a new output folder; it returns the folder and the server's address.
func startModelServer(t testing.TB) (out, addr string) {
	t.Helper()
	out = t.TempDir()
	var commands []string
	for _, s := range agentScript {
		commands = append(commands, s.command)
	}
	script, _ := json.Marshal(map[string]any{"commands": commands, "answer": "All commands ran."})
	writeFile(t, filepath.Join(out, "script.json"), string(script))
	cmd := exec.Command(filepath.Join(projectRoot, "bin/modelserver"), "-script", filepath.Join(out, "script.json"),
		"-log", filepath.Join(out, "requests.jsonl"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("model server: %q, %v", line, err)
	}
	return out, addr
}

// agentRun is what a CLI's run left: its exit code, the tool results it
// sent the model, in order, and when the n-th result first reached the
// model (answered[n-1]).
type agentRun struct {
	exit     int
	results  []string
	answered []time.Time
	output   string
}

// writeEntrypoint writes an image's entrypoint into out: it runs the CLI as
// its child, records its exit code and output, then stays, so that the
// records can be read. The CLI's stdin is closed: `codex exec` reads its
// stdin to the end where it is no terminal (a container's is a FIFO that
// never ends), under any runtime.
func writeEntrypoint(t testing.TB, out string) {
	writeFile(t, filepath.Join(out, "entrypoint.sh"), `#!/bin/sh
mkdir -p /out/work /out/home && cd /out/work
"$@" </dev/null >/out/output 2>&1
echo $? >/out/exit
exec sleep 1000000
`)
}

// realAgentRun runs CLI a in container id under the entrypoint, until it
// exits.
func realAgentRun(t testing.TB, d *daemon, rt runtime, id, out, addr string, a realAgent) agentRun {
	t.Helper()
	writeEntrypoint(t, out)
	args := append([]string{"run", "-d", "--net-host"}, rt.args...)
	args = append(args,
		"--rootfs", filepath.Join(projectRoot, ".cache/debian-rootfs"), "--memory-limit", strconv.Itoa(2<<30),
		"--mount", "type=bind,src="+filepath.Join(projectRoot, ".cache/agents")+",dst=/opt/agents,options=rbind:ro",
		"--mount", "type=bind,src="+out+",dst=/out,options=rbind:rw",
		"--env", "PATH=/opt/agents/node/bin:/usr/local/bin:/usr/bin:/bin", "--env", "HOME=/out/home")
	for _, e := range a.env(addr) {
		args = append(args, "--env", e)
	}
	args = append(args, annotations("tool.memory.max=256Mi")...)
	args = append(args, id, "/bin/sh", "/out/entrypoint.sh")
	d.mustCtr(t, append(args, a.argv...)...)
	t.Cleanup(func() { d.remove(id) })
	return waitAgentRun(t, out)
}

// waitAgentRun waits for the CLI's exit and reads what its run left.
func waitAgentRun(t testing.TB, out string) agentRun {
	t.Helper()
	var exit []byte
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var err error
		if exit, err = os.ReadFile(filepath.Join(out, "exit")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			output, _ := os.ReadFile(filepath.Join(out, "output"))
			t.Fatalf("the CLI did not exit within 10 minutes; its output:\n%s", output)
		}
		time.Sleep(time.Second)
	}
	run := agentRun{exit: -1}
	run.exit, _ = strconv.Atoi(strings.TrimSpace(string(exit)))
	output, _ := os.ReadFile(filepath.Join(out, "output"))
	run.output = string(output)
	run.results, run.answered = toolResults(t, filepath.Join(out, "requests.jsonl"))
	return run
}

// toolResults reads the server's request log: the tool results of the
// longest conversation, in order, and when each first reached the server.
func toolResults(t testing.TB, path string) ([]string, []time.Time) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var best []string
	var times []time.Time
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 64<<20)
	for s.Scan() {
		var req struct {
			Time time.Time       `json:"time"`
			API  string          `json:"api"`
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(s.Bytes(), &req); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r := resultsOf(req.API, req.Body)
		for len(times) < len(r) {
			times = append(times, req.Time)
		}
		if len(r) > len(best) {
			best = r
		}
	}
	return best, times
}

// resultsOf extracts the tool results a request carries, as text.
func resultsOf(api string, body json.RawMessage) []string {
	var out []string
	text := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return string(raw)
	}
	switch api {
	case "anthropic":
		var req struct {
			Messages []struct {
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		_ = json.Unmarshal(body, &req)
		for _, m := range req.Messages {
			var blocks []struct {
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			}
			_ = json.Unmarshal(m.Content, &blocks)
			for _, b := range blocks {
				if b.Type == "tool_result" {
					out = append(out, text(b.Content))
				}
			}
		}
	case "openai":
		var req struct {
			Input []struct {
				Type   string          `json:"type"`
				Output json.RawMessage `json:"output"`
			} `json:"input"`
		}
		_ = json.Unmarshal(body, &req)
		for _, it := range req.Input {
			if strings.HasSuffix(it.Type, "_call_output") {
				out = append(out, text(it.Output))
			}
		}
	case "gemini":
		var req struct {
			Contents []struct {
				Parts []struct {
					FunctionResponse *struct {
						Response json.RawMessage `json:"response"`
					} `json:"functionResponse"`
				} `json:"parts"`
			} `json:"contents"`
		}
		_ = json.Unmarshal(body, &req)
		for _, c := range req.Contents {
			for _, p := range c.Parts {
				if p.FunctionResponse != nil {
					out = append(out, string(p.FunctionResponse.Response))
				}
			}
		}
	}
	return out
}

// checkRealAgentRun checks a CLI's run against the script; the container
// is id of containerd namespace ns, its cgroup C at cgroup.
func checkRealAgentRun(t *testing.T, run agentRun, ns, id, cgroup string) {
	t.Helper()
	if run.exit != 0 {
		t.Errorf("the CLI exited %d; its output:\n%s", run.exit, run.output)
	}
	if len(run.results) != len(agentScript) {
		t.Fatalf("the CLI sent %d tool results, want %d: %q\nits output:\n%s", len(run.results), len(agentScript), run.results, run.output)
	}
	result := map[string]string{}
	for i, s := range agentScript {
		result[s.step] = run.results[i]
	}
	t.Logf("the tool result of the command past its limit, as the model read it: %q", result["oom"])
	if !strings.Contains(result["hello"], "hello") || !strings.Contains(result["cd"], "/tmp") || !strings.Contains(result["after"], "after-background") {
		t.Errorf("tool results %q", run.results)
	}
	if !strings.Contains(result["oom"], "agentcgroup: tool call killed: out of memory at its own limit memory.max=256.0 MiB") {
		t.Errorf("the command past its limit: the model read %q; want the agentcgroup: line", result["oom"])
	}

	recs := psIn(t, ns, id)
	calls := map[string][]toolcall.Record{}
	var helpers []string
	for _, r := range recs {
		line := strings.Join(r.Command, " ")
		step := ""
		for _, s := range agentScript {
			if strings.Contains(line, s.marker) {
				step = s.step
			}
		}
		if step == "" {
			helpers = append(helpers, line)
			continue
		}
		calls[step] = append(calls[step], r)
	}
	for _, s := range agentScript {
		if n := len(calls[s.step]); n != 1 {
			t.Errorf("command %q is %d tool calls, want 1: %+v", s.command, n, calls[s.step])
		}
	}
	if c := calls["oom"]; len(c) == 1 && c[0].State != toolcall.OOMKilled {
		t.Errorf("the command past its limit: %+v, want oom-killed", c[0])
	}
	for _, r := range recs {
		if len(r.Command) > 0 && (strings.HasSuffix(r.Command[0], "cc1") || filepath.Base(r.Command[0]) == "gcc") {
			t.Errorf("a compiler make ran is a call of its own: %+v", r)
		}
	}
	t.Logf("%d tool calls, %d of them the CLI's own:", len(recs), len(helpers))
	for _, r := range recs {
		t.Logf("  %s %s %s: %s", r.ID, r.Kind, r.State, shorten(strings.Join(r.Command, " ")))
	}
	for i, r := range run.results {
		t.Logf("  result %d: %s", i, shorten(r))
	}

	// sleep 30 & delayed neither its command nor the next.
	for i, s := range agentScript {
		if s.step != "background" || i+1 >= len(run.answered) || i == 0 {
			continue
		}
		if took := run.answered[i].Sub(run.answered[i-1]); took > 20*time.Second {
			t.Errorf("the command with a background job took %v to answer, want it back before its job ends (30 s)", took)
		}
		if took := run.answered[i+1].Sub(run.answered[i]); took > 20*time.Second {
			t.Errorf("the command after a background job took %v to answer", took)
		}
	}
	// The CLI is the agent, taken for it through the entrypoint.
	st, err := state.Load(state.Dir(state.DefaultRoot, ns, id))
	if err != nil {
		t.Fatal(err)
	}
	var taken bool
	for _, a := range st.Agent {
		taken = taken || strings.Contains(strings.Join(a.Command, " "), "/opt/agents/")
	}
	if !taken {
		t.Errorf("the CLI is not among the processes taken for the agent: %+v", st.Agent)
	}
	for _, r := range recs {
		if strings.Contains(strings.Join(r.Command, " "), agentPrompt) {
			t.Errorf("the CLI itself is a tool call: %+v", r)
		}
	}
	// The background job is in its call, not in C/agent.
	procs, _ := os.ReadFile(filepath.Join(cgroup, "agent", "cgroup.procs"))
	for _, p := range strings.Fields(string(procs)) {
		if args, _ := os.ReadFile("/proc/" + p + "/cmdline"); strings.Contains(string(args), "time.sleep(30)") {
			t.Errorf("the background job (pid %s) is in C/agent", p)
		}
	}
}

// shorten keeps a long command line's start and end, where CLIs put their
// preamble and the model's command.
func shorten(s string) string {
	if len(s) <= 240 {
		return s
	}
	return s[:80] + " ... " + s[len(s)-160:]
}
