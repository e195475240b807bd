//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// A scenario drives one container through task API operations and returns
// what a user observes, free of pids and times. Each runs under the runc shim
// and under agentcgroup on the same daemon; the transcripts must be equal
// and must contain want.
type scenario struct {
	name string
	run  func(t *testing.T, d *daemon, rt runtime) []string
	want []string
}

// agentInit is a container init like an agent framework: long-lived, with a
// child, and ending on SIGTERM with its own status.
var agentInit = []string{"/bin/sh", "-c", `trap "exit 42" TERM; sleep 1000 & wait`}

var scenarios = []scenario{
	{
		name: "run: output and exit code",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			r := d.ctr(t, runArgs(rt, false, newID("run"), []string{"--rm"}, "/bin/sh", "-c", "echo out; echo err >&2; exit 7")...)
			return []string{fmt.Sprintf("exit=%d stdout=%q stderr=%q", r.code, r.stdout, r.stderr)}
		},
		want: []string{`exit=7 stdout="out\n" stderr="err\n"`},
	},
	{
		name: "exec: stdio, stdin, tty, exit codes",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			id := newID("exec")
			d.start(t, rt, id, nil, agentInit...)
			var out []string
			r := d.ctr(t, "task", "exec", "--exec-id", "e1", id, "/bin/sh", "-c", "echo out; echo err >&2; exit 5")
			out = append(out, fmt.Sprintf("exec exit=%d stdout=%q stderr=%q", r.code, r.stdout, r.stderr))
			ri, err := d.run([]byte("line1\nline2\n"), "task", "exec", "--exec-id", "e2", id, "/bin/cat")
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("stdin exit=%d stdout=%q", ri.code, ri.stdout))
			out = append(out, "tty "+ttyExec(t, d, id))
			return out
		},
		want: []string{`exec exit=5 stdout="out\n" stderr="err\n"`, `stdin exit=0 stdout="line1\nline2\n"`, `tty exit=4 out="/dev/pts/0\nin-tty\n"`},
	},
	{
		name: "pause, resume, pids, metrics, update",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			id := newID("ops")
			d.start(t, rt, id, []string{"--memory-limit", "536870912"}, agentInit...)
			var out []string
			d.mustCtr(t, "task", "pause", id)
			out = append(out, "after pause: "+d.status(t, id)+" frozen="+frozen(t, id))
			d.mustCtr(t, "task", "resume", id)
			out = append(out, "after resume: "+d.status(t, id)+" frozen="+frozen(t, id))
			ps := strings.Split(strings.TrimSpace(d.mustCtr(t, "task", "ps", id)), "\n")
			out = append(out, fmt.Sprintf("task ps: %d processes", len(ps)-1))
			out = append(out, "metrics: "+metricNames(d.mustCtr(t, "task", "metrics", id), id))
			d.updateMemory(t, id, 268435456)
			out = append(out, "memory.max after update: "+readTrim(t, filepath.Join(containerCgroup(id), "memory.max")))
			return out
		},
		want: []string{"after pause: PAUSED frozen=1", "after resume: RUNNING frozen=0", "task ps: 2 processes", "memory.max after update: 268435456", "memory"},
	},
	{
		name: "kill with a signal, kill --all, delete",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			var out []string
			id := newID("kill")
			d.start(t, rt, id, nil, agentInit...)
			d.mustCtr(t, "task", "kill", "-s", "SIGTERM", id)
			d.waitStatus(t, id, "STOPPED")
			out = append(out, fmt.Sprintf("SIGTERM: exit code %d", d.deleteExitCode(t, id)))
			id2 := newID("killall")
			d.start(t, rt, id2, nil, agentInit...)
			d.mustCtr(t, "task", "kill", "--all", "-s", "SIGKILL", id2)
			d.waitStatus(t, id2, "STOPPED")
			out = append(out, fmt.Sprintf("kill --all SIGKILL: exit code %d", d.deleteExitCode(t, id2)))
			out = append(out, "after delete: "+d.status(t, id2))
			return out
		},
		want: []string{"SIGTERM: exit code 42", "kill --all SIGKILL: exit code 137", "after delete: NONE"},
	},
	{
		name: "over its own memory.max: OOM kill and event",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			id := newID("oom")
			events := watchEvents(t, d)
			r := d.ctr(t, runArgs(rt, false, id, []string{"--rm", "--memory-limit", "33554432"},
				"/bin/sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1")...)
			return []string{fmt.Sprintf("exit=%d", r.code), fmt.Sprintf("oom event: %v", events.saw(t, "/tasks/oom", id))}
		},
		want: []string{"exit=137", "oom event: true"},
	},
}

// Scenarios of what agents do that are not about the tree (issue: drop-in
// where users run it).
var agentScenarios = []scenario{
	{
		// An exec that starts a dev server or a watcher ends with its own
		// process, as under the runc shim; the job lives on in its call.
		name: "exec starting a background job returns when its process ends",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			id := newID("bg")
			d.start(t, rt, id, nil, agentInit...)
			start := time.Now()
			r := d.ctr(t, "task", "exec", "--exec-id", "bg", id, "/bin/sh", "-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo started")
			took := time.Since(start)
			return []string{fmt.Sprintf("exit=%d stdout=%q stderr=%q returned before the job ended: %v", r.code, r.stdout, r.stderr, took < 20*time.Second)}
		},
		want: []string{`exit=0 stdout="started\n" stderr="" returned before the job ended: true`},
	},
	{
		// i386 programs, -m32 test suites: a container without a seccomp
		// profile runs 32-bit system calls; so does one with containerd's.
		name: "32-bit system call with and without a seccomp profile",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			var out []string
			for _, extra := range [][]string{{"--rm"}, {"--rm", "--seccomp"}} {
				r := d.ctr(t, runArgs(rt, false, newID("int80"), extra, "/bin/agentsim", "-int80")...)
				out = append(out, fmt.Sprintf("%v: exit=%d stdout=%q", extra, r.code, r.stdout))
			}
			return out
		},
		want: []string{`[--rm]: exit=0 stdout="int 0x80 getpid: ok\n"`, `[--rm --seccomp]: exit=0 stdout="int 0x80 getpid: ok\n"`},
	},
	{
		// What else agents do through execs: daemonise, call a missing
		// program, print a lot, stop reading stdin, fork many children.
		name: "exec: setsid daemon, missing binary, large stdout, stdin closed early, many children",
		run: func(t *testing.T, d *daemon, rt runtime) []string {
			id := newID("agentexec")
			d.start(t, rt, id, nil, agentInit...)
			var out []string
			start := time.Now()
			r := d.ctr(t, "task", "exec", "--exec-id", "daemon", id, "/bin/sh", "-c", "setsid sh -c 'sleep 30' </dev/null >/dev/null 2>&1 & echo daemonised")
			out = append(out, fmt.Sprintf("setsid: exit=%d stdout=%q back before it ended: %v", r.code, r.stdout, time.Since(start) < 20*time.Second))
			r = d.ctr(t, "task", "exec", "--exec-id", "missing", id, "/bin/no-such-program")
			out = append(out, fmt.Sprintf("missing binary: failed=%v", r.code != 0))
			r = d.ctr(t, "task", "exec", "--exec-id", "large", id, "/bin/sh", "-c", "yes 0123456789abcdef | head -c 4000000")
			out = append(out, fmt.Sprintf("large stdout: exit=%d bytes=%d", r.code, len(r.stdout)))
			ri, err := d.run([]byte(strings.Repeat("a line\n", 100000)), "task", "exec", "--exec-id", "stdin", id, "/bin/sh", "-c", "head -n 1; exec <&-; sleep 1; echo done")
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("stdin closed early: exit=%d stdout=%q", ri.code, ri.stdout))
			r = d.ctr(t, "task", "exec", "--exec-id", "children", id, "/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true & i=$((i+1)); done; wait; echo forked")
			out = append(out, fmt.Sprintf("1000 children: exit=%d stdout=%q", r.code, r.stdout))
			return out
		},
		want: []string{"back before it ended: true", "missing binary: failed=true", "large stdout: exit=0 bytes=4000000",
			`stdin closed early: exit=0 stdout="a line\ndone\n"`, `1000 children: exit=0 stdout="forked\n"`},
	},
}

func TestDifferential(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		for _, sc := range append(scenarios, agentScenarios...) {
			t.Run(sc.name, func(t *testing.T) {
				want := sc.run(t, d, d.runc())
				got := sc.run(t, d, d.agentcgroup())
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("agentcgroup differs from the runc shim:\n got  %q\n want %q", got, want)
				}
				for _, w := range sc.want {
					if !strings.Contains(strings.Join(want, "\n"), w) {
						t.Errorf("runc shim transcript %q lacks %q", want, w)
					}
				}
			})
		}
	})
}

// ttyExec runs an exec with a terminal (and so ResizePty): ctr needs one on
// its own stdin, which script(1) provides.
func ttyExec(t *testing.T, d *daemon, id string) string {
	ctrCmd := fmt.Sprintf("%s --address %s --namespace %s task exec -t --exec-id e3 %s /bin/sh -c 'tty; echo in-tty; exit 4'",
		d.ctrBin, d.sock, namespace, id)
	cmd := exec.Command("script", "-qec", ctrCmd, "/dev/null")
	cmd.Env = append(os.Environ(), "PATH="+d.path)
	b, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	// ctr may log a failed resize after the exec ended, and the pty may echo
	// a NUL (^@) that ctr writes; both races are ctr's, under either shim.
	var lines []string
	for _, l := range strings.Split(strings.NewReplacer("\r", "", "\x00", "", "^@", "").Replace(string(b)), "\n") {
		if !strings.Contains(l, "resize pty") {
			lines = append(lines, l)
		}
	}
	return fmt.Sprintf("exit=%d out=%q", code, strings.Join(lines, "\n"))
}

func frozen(t *testing.T, id string) string {
	for _, line := range strings.Split(readTrim(t, filepath.Join(containerCgroup(id), "cgroup.events")), "\n") {
		if v, ok := strings.CutPrefix(line, "frozen "); ok {
			return v
		}
	}
	return "?"
}

// metricNames is the sorted set of metric names in `ctr task metrics`.
func metricNames(out, id string) string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] != "METRIC" && f[0] != "ID" && f[0] != id && !strings.HasPrefix(f[0], "-") {
			names = append(names, f[0])
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// eventWatch records `ctr events` while a test runs.
type eventWatch struct {
	lines chan string
	seen  []string
}

func watchEvents(t *testing.T, d *daemon) *eventWatch {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, d.ctrBin, "--address", d.sock, "events")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &eventWatch{lines: make(chan string, 1024)}
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			w.lines <- s.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() { cancel(); cmd.Wait() })
	// Subscribed before the test acts: ctr events prints nothing to tell, so
	// wait; 200 ms lost the runc shim's /tasks/oom under emulation.
	time.Sleep(2 * time.Second)
	return w
}

// saw reports whether an event of topic for container id arrived (waiting up
// to 5 s for it).
func (w *eventWatch) saw(t *testing.T, topic, id string) bool {
	const timeout = 5 * time.Second
	match := func(l string) bool { return strings.Contains(l, topic) && strings.Contains(l, id) }
	for _, l := range w.seen {
		if match(l) {
			return true
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				return false
			}
			w.seen = append(w.seen, l)
			if match(l) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
