//go:build integration

package integration

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestHostileSession: what an agent's bash session (on a pipe, as SWE-agent
// keeps one) runs is bounded, whatever it calls itself. Programs dressed as
// shells (exec -a bash, a link named sh, a copy named ./bash) are calls,
// killed alone at the tool limit; subshells that never execute a program
// stay in the session's own cgroup, and its pids.max refuses the one too
// many; a 600 MB command substitution grows the session shell itself,
// which dies at its own limit and is told why; `exec CMD` makes the session
// a call running CMD. The agent lives through all of it, and C/agent never
// holds more than the agent.
func TestHostileSession(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	harness := []string{"/usr/bin/python3", "/harness/pipe-session.py"}
	hog := `'a = bytearray(400 << 20)'`
	commands := []string{
		// 1 session shell + 15 subshells fill pids.max=16; the 16th fork
		// is refused (after bash's retries, 15 s). Killed with builtins
		// alone: no fork is left to the session until they end.
		`mkfifo /tmp/f; for i in {1..16}; do ( read -t 300 x <> /tmp/f ) & done; echo spawned; kill %{1..15}; wait`,
		`(exec -a bash python3 -c ` + hog + `); echo status=$?`,
		`ln -sf /usr/bin/python3 /tmp/sh && /tmp/sh -c ` + hog + `; echo status=$?`,
		`cp /usr/bin/python3 /tmp/bash && cd /tmp && ./bash -c ` + hog + `; echo status=$?`,
		`x=$(head -c 600M /dev/zero | tr '\0' a); echo ${#x}`,
		`echo unreachable`,
	}
	id, res := runHarness(t, d, "hostile-session", harness, commands, "tool.memory.max=256Mi", "tool.pids.max=16")
	agent := strconv.Itoa(d.pid(t, id))
	if len(res) != 6 || !res[len(res)-1].Done {
		t.Fatalf("the agent recorded %+v; want 5 commands, the session dead at the fifth, and done", res)
	}
	if out := res[0].Output; !strings.Contains(out, "spawned") || !strings.Contains(out, "fork: ") {
		t.Errorf("subshells past the session's pids.max: %q; want the refused fork reported", out)
	}
	for i, what := range []string{"exec -a bash", "a link named sh", "./bash"} {
		r := res[1+i]
		if !strings.Contains(r.Output, "status=137") || !strings.Contains(r.Output, "agentcgroup: tool call killed: out of memory at its own limit memory.max=256.0 MiB") {
			t.Errorf("%s past the tool limit: %+v; want a call killed alone, and told", what, r)
		}
	}
	sub := res[4]
	if sub.Exit != nil || !strings.Contains(sub.Output, "agentcgroup: session shell killed: out of memory at its own limit memory.max=256.0 MiB") {
		t.Errorf("a 600 MB command substitution: %+v; want the session shell killed at its own limit, and told", sub)
	}
	if st := d.status(t, id); st != "RUNNING" || strconv.Itoa(d.pid(t, id)) != agent {
		t.Errorf("the agent is %s after its session died", st)
	}
	if procs := readTrim(t, filepath.Join(containerCgroup(id), "agent", "cgroup.procs")); procs != agent {
		t.Errorf("C/agent holds %q, want the agent (%s) alone", strings.Fields(procs), agent)
	}
	var session toolcall.Record
	deadline := time.Now().Add(60 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(time.Second) {
		for _, r := range ps(t, id) {
			if r.Kind == toolcall.KindSession {
				session = r
			}
		}
		if session.State.Ended() {
			break
		}
	}
	if session.State != toolcall.OOMKilled || session.PidsMaxEvents == 0 || !strings.HasPrefix(session.Reason, "session shell killed") {
		t.Errorf("the session's record %+v; want oom-killed, with its refused forks counted", session)
	}

	// exec CMD: the session becomes a call running CMD, bounded as one.
	id, res = runHarness(t, d, "exec-session", harness, []string{"echo hi", "exec python3 -c " + hog}, "tool.memory.max=256Mi")
	if len(res) != 3 || !strings.Contains(res[1].Output, "agentcgroup: tool call killed: out of memory at its own limit memory.max=256.0 MiB") {
		t.Errorf("exec CMD in a session: %+v; want CMD killed as a call, and told", res)
	}
	var replaced []toolcall.Record
	for _, r := range ps(t, id) {
		if strings.HasPrefix(strings.Join(r.Command, " "), "python3 -c") {
			replaced = append(replaced, r)
		}
	}
	if len(replaced) != 1 || replaced[0].Kind != toolcall.KindFork || replaced[0].State != toolcall.OOMKilled {
		t.Errorf("the replaced session's records %+v; want one fork call, oom-killed", replaced)
	}
	if procs := readTrim(t, filepath.Join(containerCgroup(id), "agent", "cgroup.procs")); procs != strconv.Itoa(d.pid(t, id)) {
		t.Errorf("C/agent holds %q, want the agent alone", strings.Fields(procs))
	}
}
