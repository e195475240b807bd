package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestTableQuotes: a command cannot forge table rows or reach the
// operator's terminal with escape sequences.
func TestTableQuotes(t *testing.T) {
	recs := []toolcall.Record{{ID: "fork-1", State: toolcall.Running, Start: time.Now(),
		Command: []string{"sh", "-c", "echo x\nfork-9  666  exited", "\x1b]0;owned\x07", "caf\xe9"}}}
	var b bytes.Buffer
	if err := printTable(&b, recs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if lines := strings.Count(out, "\n"); lines != 2 {
		t.Errorf("%d lines for one record:\n%s", lines, out)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("an escape sequence reached the table: %q", out)
	}
	if !strings.Contains(out, `sh -c "echo x\nfork-9`) {
		t.Errorf("the command is not quoted: %q", out)
	}
}

// TestTableWaiting: a frozen call's spell counts while it lasts, and the
// table says what the call waits on.
func TestTableWaiting(t *testing.T) {
	since := time.Now().Add(-3 * time.Second)
	recs := []toolcall.Record{{ID: "fork-2", State: toolcall.Frozen, Start: since, FrozenSeconds: 1, FrozenSince: &since,
		Waiting: "frozen: memory pressure on the pool", Command: []string{"pytest"}}}
	var b bytes.Buffer
	if err := printTable(&b, recs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), " 4.0s ") || !strings.Contains(b.String(), "fork-2: frozen: memory pressure on the pool") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestPrintAgent: ps names init and every process taken for the agent, with
// why, quoted like a command so that it cannot forge lines.
func TestPrintAgent(t *testing.T) {
	var b strings.Builder
	printAgent(&b, &state.Container{
		Init:  []string{"/sbin/docker-init", "--", "node", "cli.js"},
		Agent: []state.AgentProcess{{Pid: 7, Command: []string{"node", "x\ny"}, Why: "started by the agent's wrapper (pid 1)"}},
	})
	want := "agent: init: /sbin/docker-init -- node cli.js\nagent: pid 7: node \"x\\ny\" (started by the agent's wrapper (pid 1))\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
