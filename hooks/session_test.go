package hooks

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestReadsCommands: each shell's own option grammar decides whether it
// reads its commands (a session) or runs a -c command or a script (a tool
// call), in the forms agents use.
func TestReadsCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv []string
		want bool
	}{
		{"bash", []string{"bash"}, true},
		{"bash", []string{"bash", "-i"}, true},
		{"bash", []string{"bash", "--noprofile", "--norc"}, true},
		{"bash", []string{"bash", "--rcfile", "/x", "-i"}, true},
		{"bash", []string{"bash", "--login"}, true},
		{"sh", []string{"sh", "-s"}, true},
		{"sh", []string{"sh", "-s", "arg1"}, true},
		{"bash", []string{"bash", "-"}, true},
		{"bash", []string{"bash", "-lc", "make"}, false},
		{"bash", []string{"bash", "-c", "-l", "make"}, false},
		{"bash", []string{"bash", "--login", "-c", "make"}, false},
		{"bash", []string{"bash", "-euo", "pipefail", "-c", "make"}, false},
		{"bash", []string{"bash", "-eo", "pipefail", "-c", "make"}, false},
		{"bash", []string{"bash", "-eO", "extglob", "-c", "ls"}, false},
		{"bash", []string{"bash", "-o", "pipefail", "-c", "make"}, false},
		{"bash", []string{"bash", "+x", "-c", "make"}, false},
		{"bash", []string{"bash", "--rcfile", "/x", "-c", "make"}, false},
		{"bash", []string{"bash", "script.sh"}, false},
		{"bash", []string{"bash", "-euo", "pipefail", "script.sh"}, false},
		{"bash", []string{"bash", "--", "script.sh"}, false},
		{"dash", []string{"sh", "-ec", "echo"}, false},
		{"zsh", []string{"zsh", "-o", "extendedglob"}, true},
		{"fish", []string{"fish"}, true},
		{"fish", []string{"fish", "-i", "--init-command", "set x 1"}, true},
		{"fish", []string{"fish", "--command", "make"}, false},
		{"fish", []string{"fish", "--command=make"}, false},
		{"fish", []string{"fish", "-c", "make"}, false},
		{"fish", []string{"fish", "script.fish"}, false},
		{"tmux", []string{"tmux", "new-session", "-d"}, true},
		{"tmux", []string{"tmux", "-c", "make"}, false},
		{"screen", []string{"screen", "-S", "main"}, true},
	} {
		if got := readsCommands(tc.name, tc.argv); got != tc.want {
			t.Errorf("readsCommands(%s, %q) = %v, want %v", tc.name, tc.argv, got, tc.want)
		}
	}
}

// TestSessionByFile: a session is told by the file that runs: bash reading
// its commands stays with the agent and stays pending; python3 started as
// `exec -a bash`, a link named sh to another program, and bash with a -c
// command are tool calls.
func TestSessionByFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/bin/sleep", dir+"/sh"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		argv    []string
		session bool
	}{
		{"exec -a bash", []string{"/bin/bash", "-c", "exec -a bash sleep 600"}, false},
		{"a link named sh", []string{dir + "/sh", "600"}, false},
		{"bash -c", []string{"/bin/bash", "-c", "sleep 600; true"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestContainer(t, testOptions{})
			p := c.start(c.tree.AgentDir(), nil, tc.argv...)
			pid := uint32(p.Process.Pid)
			self, _ := os.Readlink("/proc/self/exe")
			eventually(t, "its exec done", func() bool {
				exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
				return exe != "" && exe != self
			})
			argv, _ := cmdline(pid)
			c.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: argv, Forked: monotonicNow()})
			eventually(t, "decided", func() bool {
				_, ok := c.recordOfPid(int(pid))
				c.det.mu.Lock()
				defer c.det.mu.Unlock()
				return ok || slices.Contains(c.det.rearmed, pid)
			})
			if _, placed := c.recordOfPid(int(pid)); placed == tc.session {
				t.Errorf("%q (now %q): placed as a call %v, want session %v", tc.argv, argv, placed, tc.session)
			}
		})
	}
}

// TestSessionKept: bash reading its commands, held or not, is a session:
// in a cgroup of its own, watched by the detector as C/agent is, pending;
// with sessions=none it is a call.
func TestSessionKept(t *testing.T) {
	c := newTestContainer(t, testOptions{hold: true})
	p, _ := c.startWithStdin(c.tree.AgentDir(), "/bin/bash", "--norc", "-s")
	pid := uint32(p.Process.Pid)
	eventually(t, "bash running", func() bool { argv, _ := cmdline(pid); return len(argv) > 0 && argv[0] == "/bin/bash" })
	c.det.mu.Lock()
	c.det.pending[pid] = bpf.Fork{At: monotonicNow()}
	c.det.mu.Unlock()
	// Held: its execve path cannot be read from this fake request, so the
	// decision waits for the exec event, which reads the running file.
	c.hold.held(&exechold.Request{Pid: pid})
	c.mu.Lock()
	fc := c.forks[pid]
	c.mu.Unlock()
	if fc == nil {
		t.Fatal("a held execve whose program cannot be read was not placed (fail closed)")
	}

	p2 := policy.Default()
	p2.Sessions = ""
	c2 := newTestContainer(t, testOptions{policy: p2})
	q, _ := c2.startWithStdin(c2.tree.AgentDir(), "/bin/bash", "--norc", "-s")
	qpid := uint32(q.Process.Pid)
	eventually(t, "bash running", func() bool { argv, _ := cmdline(qpid); return len(argv) > 0 && argv[0] == "/bin/bash" })
	c2.det.send(bpf.Event{Kind: bpf.Tool, Pid: qpid, Args: []string{"/bin/bash", "--norc", "-s"}, Forked: monotonicNow()})
	eventually(t, "with sessions=none, bash placed as a call", func() bool {
		_, ok := c2.recordOfPid(int(qpid))
		return ok
	})

	c3 := newTestContainer(t, testOptions{})
	r, _ := c3.startWithStdin(c3.tree.AgentDir(), "/bin/bash", "--norc", "-s")
	rpid := uint32(r.Process.Pid)
	eventually(t, "bash running", func() bool { argv, _ := cmdline(rpid); return len(argv) > 0 && argv[0] == "/bin/bash" })
	c3.det.send(bpf.Event{Kind: bpf.Tool, Pid: rpid, Args: []string{"/bin/bash", "--norc", "-s"}, Forked: monotonicNow()})
	var rec toolcall.Record
	eventually(t, "bash kept as a session, pending", func() (ok bool) {
		c3.det.mu.Lock()
		rearmed := slices.Contains(c3.det.rearmed, rpid)
		c3.det.mu.Unlock()
		rec, ok = c3.recordOfPid(int(rpid))
		return rearmed && ok
	})
	if rec.Kind != toolcall.KindSession || cgroupOf(t, int(rpid)) != rec.Cgroup {
		t.Errorf("the session: %+v in %s; want a session record, in its cgroup", rec, cgroupOf(t, int(rpid)))
	}
	cg, err := cgroupfs.ID(c3.tree.CallDir(rec.ID))
	if err != nil {
		t.Fatal(err)
	}
	c3.det.mu.Lock()
	watched := c3.det.sessions[cg]
	c3.det.mu.Unlock()
	if !watched {
		t.Error("the session's cgroup is not watched as a session's")
	}
}

// TestSessionBounded: a session's own work is held to its cgroup's limits,
// and each command it runs is still a tool call of its own; a session
// replaced by another program (exec CMD) is a call running it, whose forks
// are its own.
func TestSessionBounded(t *testing.T) {
	c := newTestContainer(t, testOptions{})
	sh, _ := c.startWithStdin(c.tree.AgentDir(), "/bin/bash", "--norc", "-s")
	pid := uint32(sh.Process.Pid)
	eventually(t, "bash running", func() bool { argv, _ := cmdline(pid); return len(argv) > 0 && argv[0] == "/bin/bash" })
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: []string{"/bin/bash", "--norc", "-s"}, Forked: monotonicNow()})
	var session toolcall.Record
	eventually(t, "the session placed", func() (ok bool) {
		session, ok = c.recordOfPid(int(pid))
		return ok
	})
	dir := c.tree.CallDir(session.ID)
	// A command the session forked, in the session's cgroup.
	cmd := c.start(dir, nil, "sleep", "600")
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: uint32(cmd.Process.Pid), Args: []string{"sleep", "600"}, Forked: monotonicNow(), Unplaced: true})
	eventually(t, "the session's command placed as a call of its own", func() bool {
		r, ok := c.recordOfPid(cmd.Process.Pid)
		return ok && r.Kind == toolcall.KindFork && r.ID != session.ID && cgroupOf(t, cmd.Process.Pid) == r.Cgroup
	})
	cg, err := cgroupfs.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	watched := func() bool {
		c.det.mu.Lock()
		defer c.det.mu.Unlock()
		return c.det.sessions[cg]
	}
	// Its own program again (the exec event of a session placed while
	// held): still the session.
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: []string{"/bin/bash", "--norc", "-s"}, Session: true, Forked: monotonicNow()})
	time.Sleep(100 * time.Millisecond) // the handler is in order
	if rec, _ := c.record(session.ID); rec.Kind != toolcall.KindSession || !watched() {
		t.Errorf("a session whose program is still bash became %+v (watched as a session: %v)", rec, watched())
	}
	// exec sleep 600: seen as a program that is no session.
	c.det.send(bpf.Event{Kind: bpf.Tool, Pid: pid, Args: []string{"sleep", "600"}, Session: true, Forked: monotonicNow()})
	eventually(t, "the replaced session a call running its program", func() bool {
		rec, _ := c.record(session.ID)
		return rec.Kind == toolcall.KindFork && strings.Join(rec.Command, " ") == "sleep 600" && !watched()
	})
	if _, claimed, _ := c.det.snapshot(); !slices.Contains(claimed, pid) {
		t.Errorf("the replaced session not claimed as a call's leader: %v", claimed)
	}
}

// TestSessionMultiCall: a file that serves many programs (busybox) is a
// session only as the session program its argv[0] names.
func TestSessionMultiCall(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/bin/sleep", dir+"/sh"); err != nil {
		t.Fatal(err)
	}
	p := policy.Default()
	p.Sessions = dir + "/sh"
	c := newTestContainer(t, testOptions{policy: p})
	exe, err := exeOf(uint32(c.init.Process.Pid)) // init runs sleep
	if err != nil {
		t.Fatal(err)
	}
	if c.isSession(program{argv: []string{"sleep"}, exe: exe}) {
		t.Error("the multi-call file as another program is a session")
	}
	if !c.isSession(program{argv: []string{"sh"}, exe: exe}) {
		t.Error("the multi-call file as sh, reading commands, is no session")
	}
	if c.isSession(program{argv: []string{"sh", "-c", "x"}, exe: exe}) {
		t.Error("sh -c is a session")
	}
}
