package hooks

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

// TestIsWrapper: the programs that start the container's main program and
// wait for it, told from those that are the agent themselves.
func TestIsWrapper(t *testing.T) {
	for _, tc := range []struct {
		argv, shebang []string
		want          bool
	}{
		{[]string{"/sbin/docker-init", "--", "node", "cli.js"}, nil, true},
		{[]string{"tini", "-g", "--", "agent"}, nil, true},
		{[]string{"/usr/bin/dumb-init", "agent"}, nil, true},
		{[]string{"catatonit", "--", "agent"}, nil, true},
		{[]string{"timeout", "3600", "agent"}, nil, true},
		{[]string{"/bin/sh", "/entrypoint.sh"}, nil, true},
		{[]string{"bash", "-e", "/entrypoint.sh", "arg"}, nil, true},
		{[]string{"bash", "-o", "pipefail", "/entrypoint.sh"}, nil, true},
		{[]string{"/entrypoint.sh", "arg"}, []string{"/bin/sh"}, true},
		{[]string{"/entrypoint.sh"}, []string{"/usr/bin/env", "bash"}, true},
		{[]string{"/bin/sh", "-c", "node cli.js"}, nil, false},
		{[]string{"bash", "-lc", "node cli.js"}, nil, false},
		{[]string{"bash"}, nil, false},
		{[]string{"bash", "-s"}, nil, false},
		{[]string{"node", "/usr/local/bin/claude"}, nil, false},
		{[]string{"/usr/local/bin/claude"}, []string{"/usr/bin/env", "node"}, false},
		{nil, nil, false},
	} {
		if got := (program{argv: tc.argv, shebang: tc.shebang}).isWrapper(); got != tc.want {
			t.Errorf("isWrapper(%q, shebang %q) = %v, want %v", tc.argv, tc.shebang, got, tc.want)
		}
	}
}

// TestResolveIn: a path is resolved as the process sees it, symbolic links
// included, and a script's interpreter line is read.
func TestResolveIn(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "agent.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\t-e\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("agent.sh", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	self := uint32(os.Getpid())
	a, err := resolveIn(self, script)
	if err != nil || !a.regular || !slices.Equal(a.shebang, []string{"/bin/sh", "-e"}) {
		t.Fatalf("resolveIn(script) = %+v, %v", a, err)
	}
	if l, err := resolveIn(self, filepath.Join(dir, "link")); err != nil || l.id != a.id {
		t.Errorf("a link resolves to %+v, %v; want the script's file", l, err)
	}
	if _, err := resolveIn(self, filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file resolved")
	}
	if d, err := resolveIn(self, dir); err != nil || d.regular || d.shebang != nil {
		t.Errorf("a directory: %+v, %v", d, err)
	}
	// busybox runs its applets through /proc/self/exe: the process's own.
	exe, _ := exeOf(self)
	if e, err := resolveIn(self, "/proc/self/exe"); err != nil || e.id != exe {
		t.Errorf("/proc/self/exe resolves to %+v, %v; want the process's executable", e, err)
	}
}

// agentChildOf has init (a shell reading commands on its stdin) start cmd
// in the background and returns the child's pid once it runs cmd.
func agentChildOf(t *testing.T, tc *testContainer, cmd string) uint32 {
	t.Helper()
	if _, err := fmt.Fprintln(tc.initIn, cmd); err != nil {
		t.Fatal(err)
	}
	var pid uint32
	eventually(t, "init's child running "+cmd, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tc.init.Process.Pid, tc.init.Process.Pid))
		for _, f := range strings.Fields(string(b)) {
			var p uint32
			fmt.Sscan(f, &p)
			if argv, err := cmdline(p); err == nil && strings.Join(argv, " ") == cmd {
				pid = p
				return true
			}
		}
		return false
	})
	return pid
}

// cmdReader is an init that runs each line of its stdin in the
// background.
var cmdReader = []string{"/bin/sh", "-c", `while read c; do $c & done; sleep 600`}

// fakeTini is a program named tini that is the shell cmdReader runs: init
// then runs the file its spec names, as a wrapper does.
func fakeTini(t *testing.T) string {
	tini := filepath.Join(t.TempDir(), "tini")
	if err := os.Symlink("/bin/sh", tini); err != nil {
		t.Fatal(err)
	}
	return tini
}

// TestAgentBehindWrapper: what an init wrapper starts is the agent: it
// stays in C/agent, the detector forgets it, and the state says why. The
// same child of an init that is no wrapper is a tool call, and so it is of
// a wrapper that has exec'd another program (exec "$@"): here init runs
// bash, not the /bin/sh its entrypoint names.
func TestAgentBehindWrapper(t *testing.T) {
	for _, tc := range []struct {
		name  string
		init  []string
		spec  []string
		agent bool
	}{
		{"tini", cmdReader, []string{fakeTini(t), "--", "agent"}, true},
		{"entrypoint", cmdReader, []string{"/bin/sh", "/entrypoint.sh"}, true},
		{"shell -c", cmdReader, []string{"/bin/sh", "-c", "agent"}, false},
		{"wrapper exec'd the agent", append([]string{"/bin/bash"}, cmdReader[1:]...), []string{"/bin/sh", "/entrypoint.sh"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestContainer(t, testOptions{init: tc.init, spec: tc.spec})
			child := agentChildOf(t, c, "sleep 601")
			c.det.send(bpf.Event{Kind: bpf.Tool, Pid: child, Parent: uint32(c.init.Process.Pid), Filename: "/bin/sleep", Args: []string{"sleep", "601"}, Forked: monotonicNow()})
			if !tc.agent {
				eventually(t, "the child placed as a call", func() bool {
					r, ok := c.recordOfPid(int(child))
					return ok && cgroupOf(t, int(child)) == r.Cgroup
				})
				return
			}
			eventually(t, "the child taken for the agent", func() bool {
				_, _, forgot := c.det.snapshot()
				return slices.Contains(forgot, child)
			})
			if got := cgroupOf(t, int(child)); got != c.st.Cgroup+"/agent" {
				t.Errorf("the agent moved to %s", got)
			}
			st, err := state.Load(c.dir)
			if err != nil || len(st.Agent) != 1 || st.Agent[0].Pid != child || !strings.Contains(st.Agent[0].Why, "wrapper") {
				t.Errorf("state's agent list %+v, %v", st.Agent, err)
			}
			if _, ok := c.recordOfPid(int(child)); ok {
				t.Error("the agent has a tool-call record")
			}
		})
	}
}

// TestAgentHeldBehindWrapper: with the hold, the wrapper's child is taken
// for the agent while its execve waits, never placed.
func TestAgentHeldBehindWrapper(t *testing.T) {
	c := newTestContainer(t, testOptions{init: cmdReader, spec: []string{fakeTini(t), "--", "agent"}, hold: true})
	child := agentChildOf(t, c, "sleep 602")
	c.det.mu.Lock()
	c.det.pending[child] = bpf.Fork{At: monotonicNow(), Parent: uint32(c.init.Process.Pid)}
	c.det.mu.Unlock()
	c.hold.held(&exechold.Request{Pid: child})
	if _, _, forgot := c.det.snapshot(); !slices.Contains(forgot, child) {
		t.Error("the held child of a wrapper was not taken for the agent")
	}
	c.mu.Lock()
	placed := c.forks[child] != nil
	c.mu.Unlock()
	if placed || cgroupOf(t, int(child)) != c.st.Cgroup+"/agent" {
		t.Error("the agent was placed as a call")
	}
}

// TestAgentRelaunch: an agent process that starts its own main script again
// starts the agent; the same agent starting another program starts a call.
func TestAgentRelaunch(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "agent.sh")
	if err := os.WriteFile(script, []byte(`while read c; do $c & done; sleep 600`+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newTestContainer(t, testOptions{init: []string{"/bin/sh", script}, spec: []string{"node", "cli.js"}})
	relaunch := agentChildOf(t, c, "/bin/sh "+script)
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: relaunch, Parent: uint32(c.init.Process.Pid), Args: []string{"/bin/sh", script}, Forked: monotonicNow()})
	eventually(t, "the relaunch taken for the agent", func() bool {
		_, _, forgot := c.det.snapshot()
		return slices.Contains(forgot, relaunch)
	})
	other := agentChildOf(t, c, "sleep 603")
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: other, Parent: uint32(c.init.Process.Pid), Args: []string{"sleep", "603"}, Forked: monotonicNow()})
	eventually(t, "the other program placed as a call", func() bool {
		_, ok := c.recordOfPid(int(other))
		return ok
	})
	st, _ := state.Load(c.dir)
	if len(st.Agent) != 1 || !strings.Contains(st.Agent[0].Why, "relaunch") {
		t.Errorf("state's agent list %+v", st.Agent)
	}
}

// TestAgentNamed: the program io.agentcgroup.agent names, started by an
// agent process, is the agent; a reused parent pid starts nothing of it.
func TestAgentNamed(t *testing.T) {
	p := policy.Default()
	p.Agent = "/bin/sleep"
	c := newTestContainer(t, testOptions{init: cmdReader, spec: []string{"/bin/sh", "-c", "agent"}, policy: p})
	named := agentChildOf(t, c, "sleep 604")
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: named, Parent: uint32(c.init.Process.Pid), Args: []string{"sleep", "604"}, Forked: monotonicNow()})
	eventually(t, "the named program taken for the agent", func() bool {
		_, _, forgot := c.det.snapshot()
		return slices.Contains(forgot, named)
	})
	// As if init's pid named another process now.
	init := uint32(c.init.Process.Pid)
	c.agentMu.Lock()
	c.agents[init] = agentProc{start: c.agents[init].start + 1}
	c.agentMu.Unlock()
	next := agentChildOf(t, c, "sleep 605")
	if why, ok := c.agentChild(next, init, program{argv: []string{"sleep", "605"}}); ok {
		t.Errorf("a child of a reused pid taken for the agent: %s", why)
	}
}

// TestAgentNotByAdoption: a process is judged by the process that forked
// it: one an agent process adopted (an orphaned subshell of a session,
// reparented to init) or one that was a session (exec CMD) is a call, even
// under a wrapper.
func TestAgentNotByAdoption(t *testing.T) {
	c := newTestContainer(t, testOptions{init: cmdReader, spec: []string{fakeTini(t), "--", "agent"}})
	orphan := agentChildOf(t, c, "sleep 606")
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: orphan, Parent: uint32(os.Getpid()), Args: []string{"sleep", "606"}, Forked: monotonicNow()})
	session := agentChildOf(t, c, "sleep 607")
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: session, Parent: uint32(c.init.Process.Pid), Session: true, Args: []string{"sleep", "607"}, Forked: monotonicNow()})
	for _, pid := range []uint32{orphan, session} {
		eventually(t, "placed as a call", func() bool {
			r, ok := c.recordOfPid(int(pid))
			return ok && cgroupOf(t, int(pid)) == r.Cgroup
		})
	}
}

// TestOwnFile: only the exact paths of a process's own files are taken from
// procfs; anything else under /proc/self is resolved in its root, where
// `..` cannot leave it.
func TestOwnFile(t *testing.T) {
	self := uint32(os.Getpid())
	for p, want := range map[string]string{
		"/proc/self/exe":                 fmt.Sprintf("/proc/%d/exe", self),
		"/proc/self/fd/3":                fmt.Sprintf("/proc/%d/fd/3", self),
		"/proc/self/root/../etc/passwd":  "",
		"/proc/self/fd/../../1/environ":  "",
		"/proc/self/cwd/x":               "",
		"/proc/thread-self/exe":          "",
		"/dev/fd/../../proc/1/root/etc/": "",
	} {
		if got, ok := ownFile(self, p); got != want || ok != (want != "") {
			t.Errorf("ownFile(%q) = %q, %v; want %q", p, got, ok, want)
		}
	}
}
