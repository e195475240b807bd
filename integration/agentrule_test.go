//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// relaunchJS is an agent that relaunches itself with a larger heap, as
// Gemini CLI does, and the relaunched process does the agent's work.
const relaunchJS = `const { spawnSync } = require('child_process');
if (!process.env.RELAUNCHED) {
  const r = spawnSync(process.execPath, ['--max-old-space-size=1024', __filename, ...process.argv.slice(2)],
    { stdio: 'inherit', env: { ...process.env, RELAUNCHED: '1' } });
  process.exit(r.status === null ? 1 : r.status);
}
const heap = Buffer.alloc(300 << 20, 1);
for (const cmd of process.argv.slice(2)) spawnSync('/bin/sh', ['-c', cmd], { stdio: 'inherit' });
console.log('agent: all calls done');
setInterval(() => { heap[0]++; }, 1000);
`

// TestAgentRule: the agent is the container's main program however its
// start puts it: behind tini, dumb-init or an entrypoint script without
// exec, relaunched by itself, or named by io.agentcgroup.agent. An agent
// that grows to 300 MB while the tool-call limit is 128 MiB lives, stays in
// C/agent, is listed as the agent with why, and the commands it forks are
// still calls, one of them killed alone at its limit. The control, the same
// agent started by `sh -c` without the annotation, is a tool call, and is
// killed at that limit.
func TestAgentRule(t *testing.T) {
	s := stacks()[0]
	debian := filepath.Join(projectRoot, ".cache/debian-rootfs")
	d := getDaemon(t, s)
	wrap := t.TempDir()
	for name, src := range map[string]string{"tini": "/usr/bin/tini-static", "dumb-init": "/usr/bin/dumb-init", "agentsim": filepath.Join(projectRoot, "bin/agentsim")} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%s (integration/tools.sh installs it): %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(wrap, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	agent := []string{"/wrap/agentsim", "-grow", "300", "-delay", "200ms", "echo first-call", "/wrap/agentsim -alloc 200"}
	quoted := make([]string, len(agent))
	for i, a := range agent {
		quoted[i] = "'" + a + "'"
	}
	files := map[string]string{
		"entrypoint.sh":      "#!/bin/sh\necho entrypoint\n" + strings.Join(quoted, " ") + "\necho agent-ended\n",
		"entrypoint-exec.sh": "#!/bin/sh\necho entrypoint\nexec \"$@\"\n",
		"relaunch.js":        relaunchJS,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(wrap, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		argv  []string
		extra []string
		why   string // "": the agent is a tool call
	}{
		{"tini", append([]string{"/wrap/tini", "--"}, agent...), nil, "wrapper"},
		{"dumb-init", append([]string{"/wrap/dumb-init"}, agent...), nil, "wrapper"},
		{"entrypoint", []string{"/wrap/entrypoint.sh"}, nil, "wrapper"},
		// exec "$@": init becomes the agent, and its calls stay calls.
		{"entrypoint exec", append([]string{"/wrap/entrypoint-exec.sh"}, agent...), nil, "init"},
		{"relaunch", []string{"/usr/bin/node", "/wrap/relaunch.js", "echo first-call", "/wrap/agentsim -alloc 200"}, nil, "relaunch"},
		{"annotation", []string{"/bin/sh", "-c", strings.Join(quoted, " ") + "; echo agent-ended"}, annotations("agent=/wrap/agentsim"), "io.agentcgroup.agent"},
		{"control", []string{"/bin/sh", "-c", strings.Join(quoted, " ") + "; sleep 1000"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newID("agentrule")
			args := append([]string{"run", "-d", "--runtime", "io.containerd.agentcgroup.v1",
				"--env", "PATH=/usr/local/bin:/usr/bin:/bin", "--memory-limit", strconv.Itoa(1 << 30),
				"--mount", "type=bind,src=" + wrap + ",dst=/wrap,options=rbind:ro"},
				annotations("tool.memory.max=128Mi")...)
			args = append(append(args, tc.extra...), "--rootfs", debian, id)
			d.mustCtr(t, append(args, tc.argv...)...)
			t.Cleanup(func() { d.remove(id) })
			if tc.why == "" {
				eventually(t, "the agent killed as a tool call", func() bool {
					return count(ps(t, id), func(r toolcall.Record) bool {
						return len(r.Command) > 0 && strings.HasSuffix(r.Command[0], "agentsim") && r.State == toolcall.OOMKilled
					}) == 1
				})
				return
			}
			var recs []toolcall.Record
			eventually(t, "the agent's two calls ended", func() bool {
				recs = ps(t, id)
				return ended(recs) == 2 && len(recs) == 2
			})
			for _, r := range recs {
				switch cmd := strings.Join(r.Command, " "); {
				case strings.Contains(cmd, "first-call"):
					if r.State != toolcall.Exited {
						t.Errorf("first call %s: %s", r.ID, r.State)
					}
				case strings.Contains(cmd, "-alloc 200"):
					if r.State != toolcall.OOMKilled || !strings.Contains(r.Reason, "the agent was not touched") {
						t.Errorf("the call past its limit: %s (%q)", r.State, r.Reason)
					}
				default:
					t.Errorf("a call that is no command of the agent: %q", r.Command)
				}
			}
			if st := d.status(t, id); st != "RUNNING" {
				t.Fatalf("the container is %s: the agent did not live", st)
			}
			st, err := state.Load(filepath.Join("/run/agentcgroup", namespace, id))
			if err != nil {
				t.Fatal(err)
			}
			if tc.why == "init" {
				if len(st.Agent) != 0 {
					t.Errorf("processes taken for the agent beside init: %+v", st.Agent)
				}
				return
			}
			var listed *state.AgentProcess
			for i, a := range st.Agent {
				if strings.Contains(a.Why, tc.why) {
					listed = &st.Agent[i]
				}
			}
			if listed == nil {
				t.Fatalf("no agent process listed for %s: %+v", tc.why, st.Agent)
			}
			cg := readTrim(t, "/proc/"+strconv.Itoa(int(listed.Pid))+"/cgroup")
			if want := "0::/" + namespace + "/" + id + "/agent"; cg != want {
				t.Errorf("the agent (pid %d) is in %q, want %q", listed.Pid, cg, want)
			}
		})
	}
}
