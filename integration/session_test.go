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
// keeps one) runs is bounded, whatever it calls itself. Subshells that never
// execute a program stay in the session's own cgroup, whose pids.max
// refuses the one too many (bash, refused a fork, ends the session);
// programs dressed as shells (exec -a bash, a link named sh, a copy named
// ./bash) are calls, killed alone at the tool limit; a 600 MB command
// substitution grows the session shell itself, which dies at its own limit
// and is told why; `exec CMD` makes the session a call running CMD. The
// agent lives through all of it, and C/agent never holds more than the
// agent.
func TestHostileSession(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	harness := []string{"/usr/bin/python3", "/harness/pipe-session.py"}
	hog := `'a = bytearray(400 << 20)'`
	agentAlone := func(t *testing.T, id string) {
		t.Helper()
		agent := strconv.Itoa(d.pid(t, id))
		if st := d.status(t, id); st != "RUNNING" {
			t.Errorf("the agent is %s", st)
		}
		if procs := readTrim(t, filepath.Join(containerCgroup(id), "agent", "cgroup.procs")); procs != agent {
			t.Errorf("C/agent holds %q, want the agent (%s) alone", strings.Fields(procs), agent)
		}
	}
	// session waits for the container's session record to end.
	session := func(t *testing.T, id string) toolcall.Record {
		t.Helper()
		var rec toolcall.Record
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
			for _, r := range ps(t, id) {
				if r.Kind == toolcall.KindSession {
					rec = r
				}
			}
			if rec.State.Ended() {
				break
			}
		}
		return rec
	}

	t.Run("subshells", func(t *testing.T) {
		// 1 session shell + 15 subshells fill pids.max=16; the 16th fork
		// is refused (after bash's retries, 15 s).
		id, res := runHarness(t, d, "pids-session", harness,
			[]string{`mkfifo /tmp/f; for i in {1..16}; do ( read -t 20 x <> /tmp/f ) & done; echo spawned`}, "tool.pids.max=16")
		if len(res) != 2 || !strings.Contains(res[0].Output, "bash: fork: ") || res[0].Exit != nil {
			t.Errorf("subshells past the session's pids.max: %+v; want the refused fork reported, and the session ended", res)
		}
		agentAlone(t, id)
		if rec := session(t, id); !rec.State.Ended() || rec.PidsMaxEvents == 0 {
			t.Errorf("the session's record %+v; want it ended, with its refused forks counted", rec)
		}
	})

	t.Run("memory", func(t *testing.T) {
		id, res := runHarness(t, d, "memory-session", harness, []string{
			`(exec -a bash python3 -c ` + hog + `); echo status=$?`,
			`ln -sf /usr/bin/python3 /tmp/sh && /tmp/sh -c ` + hog + `; echo status=$?`,
			`cp /usr/bin/python3 /tmp/bash && cd /tmp && ./bash -c ` + hog + `; echo status=$?`,
			`x=$(head -c 600M /dev/zero | tr '\0' a); echo ${#x}`,
			`echo unreachable`,
		}, "tool.memory.max=256Mi")
		if len(res) != 5 || !res[len(res)-1].Done {
			t.Fatalf("the agent recorded %+v; want 4 commands, the session dead at the fourth, and done", res)
		}
		for i, what := range []string{"exec -a bash", "a link named sh", "./bash"} {
			if r := res[i]; !strings.Contains(r.Output, "status=137") || !strings.Contains(r.Output, "agentcgroup: tool call killed: out of memory at its own limit memory.max=256.0 MiB") {
				t.Errorf("%s past the tool limit: %+v; want a call killed alone, and told", what, r)
			}
		}
		if r := res[3]; r.Exit != nil || !strings.Contains(r.Output, "agentcgroup: session shell killed: out of memory at its own limit memory.max=256.0 MiB") {
			t.Errorf("a 600 MB command substitution: %+v; want the session shell killed at its own limit, and told", r)
		}
		agentAlone(t, id)
		if rec := session(t, id); rec.State != toolcall.OOMKilled || !strings.HasPrefix(rec.Reason, "session shell killed") {
			t.Errorf("the session's record %+v; want it oom-killed, and why", rec)
		}
	})

	t.Run("exec", func(t *testing.T) {
		id, res := runHarness(t, d, "exec-session", harness, []string{"echo hi", "exec python3 -c " + hog}, "tool.memory.max=256Mi")
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
		agentAlone(t, id)
	})
}
