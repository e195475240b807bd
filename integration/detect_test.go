//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestForkDetection: an agent framework (the simulator, multi-threaded) runs
// its tools as `sh -c` children, as Claude Code does. Each becomes a tool call
// in its own C/tools/<id>, placed while its execve is held, so that its
// first instruction already runs there, with the tool calls' oom_score_adj; nested children stay in their call;
// threads make no call; the agent, waiting as a job-control shell does,
// sees no call stop; another container's calls stay in its own records;
// exec'd calls are not counted twice; a call forked as the agent starts is
// placed; the containers share one detector;
// and when the containers are gone no detector program stays loaded or pinned.
func TestForkDetection(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		rt := d.agentcgroup()
		a, b := newID("agent"), newID("other")
		out := func(id, name string) string { return "/tmp/" + id + "-" + name }
		d.start(t, rt, a, nil, "/bin/agentsim", "-delay", "300ms", "-log", out(a, "log"),
			"read adj < /proc/self/oom_score_adj; cat /proc/self/cgroup > "+out(a, "own")+"; echo $adj >> "+out(a, "own"),
			"sh -c 'cat /proc/self/cgroup' > "+out(a, "nested"),
			"exit 3",
			"exec /bin/agentsim -alloc 48 -hold 200ms")
		d.start(t, rt, b, nil, "/bin/agentsim", "-delay", "0s", "echo other-container-call")
		// A shell as the agent forks its first call within milliseconds of
		// its start: the detector's watch, which finishes in the background,
		// must be in place before the agent's first instruction.
		first := newID("first")
		d.start(t, rt, first, nil, "/bin/sh", "-c", "cat /proc/self/cgroup > "+out(first, "cgroup")+"; exec sleep 1000")
		d.mustCtr(t, "task", "exec", "--exec-id", "from-outside", a, "/bin/sh", "-c", "exit 0")
		// Three shims, one program set: the host's shared detector.
		if n := detectorPrograms(t); n != 3 {
			t.Errorf("%d detector programs loaded for three containers, want one set of 3", n)
		}
		if sets := pinnedDetectors(t); len(sets) != 1 {
			t.Errorf("pinned detector sets %v, want one", sets)
		}

		var recs []toolcall.Record
		eventually(t, "five ended calls in "+a, func() bool {
			recs = ps(t, a)
			return len(recs) >= 5 && ended(recs) == len(recs)
		})
		sort.Slice(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
		var forks []toolcall.Record
		for _, r := range recs {
			if r.Kind == "fork" {
				forks = append(forks, r)
			} else if r.ID != "from-outside" {
				t.Errorf("unexpected exec record %+v", r)
			}
		}
		if len(forks) != 4 {
			t.Fatalf("fork-detected calls = %d, want 4 (threads and exec'd calls are no fork calls): %+v", len(forks), recs)
		}
		wantCodes := []uint32{0, 0, 3, 0}
		cgroups := map[string]bool{}
		for i, r := range forks {
			if r.ExitCode == nil || *r.ExitCode != wantCodes[i] || r.State != toolcall.Exited {
				t.Errorf("call %d %s: state %s exit %v (%q), want exited %d", i+1, r.ID, r.State, r.ExitCode, r.Reason, wantCodes[i])
			}
			if len(r.Command) < 3 || r.Command[0] != "/bin/sh" || r.Command[1] != "-c" {
				if !(i == 3 && len(r.Command) > 0 && strings.HasSuffix(r.Command[0], "agentsim")) {
					t.Errorf("call %d %s: command %q", i+1, r.ID, r.Command)
				}
			}
			if !strings.HasPrefix(r.Cgroup, "/"+namespace+"/"+a+"/tools/") || cgroups[r.Cgroup] {
				t.Errorf("call %d %s: cgroup %s not its own under C/tools", i+1, r.ID, r.Cgroup)
			}
			cgroups[r.Cgroup] = true
			if r.StartedUnplaced {
				t.Errorf("call %d %s: its program started in C/agent; want it held until placed", i+1, r.ID)
			}
		}
		for i, name := range []string{"own", "nested"} {
			got := strings.Split(strings.TrimSpace(readTrim(t, filepath.Join(rootfs, out(a, name)))), "\n")
			if want := "0::" + forks[i].Cgroup; got[0] != want {
				t.Errorf("%s: the call saw itself in %q, want %q", name, got[0], want)
			}
			os.Remove(filepath.Join(rootfs, out(a, name)))
			// Raised before its program ran (the shell reads it first): an
			// OOM above the call picks it before the agent from its start.
			if name == "own" && (len(got) != 2 || got[1] != "500") {
				t.Errorf("the call's first process saw oom_score_adj %q, want 500", got[1:])
			}
		}
		// Placed before its program ran, the call is charged all it touched.
		if peak := forks[3].MemoryPeakBytes; peak < 48<<20 {
			t.Errorf("allocating call's peak = %d, want all of its 48 MiB charged to the call", peak)
		}
		log := readTrim(t, filepath.Join(rootfs, out(a, "log")))
		if !strings.Contains(log, "all calls done") || strings.Contains(log, "stopped") {
			t.Errorf("agent's log: %q, want all calls done and none stopped", log)
		}
		os.Remove(filepath.Join(rootfs, out(a, "log")))

		var other []toolcall.Record
		eventually(t, "the other container's call", func() bool {
			other = ps(t, b)
			return len(other) == 1 && ended(other) == 1
		})
		if strings.Join(other[0].Command, " ") != "/bin/sh -c echo other-container-call" ||
			!strings.HasPrefix(other[0].Cgroup, "/"+namespace+"/"+b+"/tools/") || other[0].StartedUnplaced {
			t.Errorf("other container's record: %+v, want its first call placed under its C/tools before it ran", other[0])
		}

		var got string
		eventually(t, "the first call's cgroup", func() bool {
			data, err := os.ReadFile(filepath.Join(rootfs, out(first, "cgroup")))
			got = strings.TrimSpace(string(data))
			return err == nil && got != ""
		})
		os.Remove(filepath.Join(rootfs, out(first, "cgroup")))
		if !strings.HasPrefix(got, "0::/"+namespace+"/"+first+"/tools/") {
			t.Errorf("the agent's first call ran in %q, want its own cgroup under C/tools", got)
		}

		d.remove(a)
		d.remove(b)
		d.remove(first)
		assertGone(t, a)
		assertGone(t, b)
		assertGone(t, first)
	})
	eventually(t, "no detector program loaded", func() bool { return detectorPrograms(t) == 0 })
	if sets := pinnedDetectors(t); len(sets) != 0 {
		t.Errorf("detector sets still pinned: %v", sets)
	}
}

// ended counts the calls that have ended.
func ended(recs []toolcall.Record) int {
	return count(recs, func(r toolcall.Record) bool { return r.End != nil && r.State != toolcall.Running })
}

// TestDetectorFallback: on a kernel without BTF (an empty file bound over
// /sys/kernel/btf/vmlinux stands in for one) the detector cannot load. The
// shim says so in its log and goes on with exec'd tool calls: an exec gets
// its own cgroup, the agent's forked children stay in C/agent, no program is
// loaded, and delete leaves nothing.
func TestDetectorFallback(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	// A set an earlier test's shim still holds would be opened without BTF.
	eventually(t, "no detector loaded", func() bool { return detectorPrograms(t) == 0 && len(pinnedDetectors(t)) == 0 })
	const btf = "/sys/kernel/btf/vmlinux"
	if err := unix.Mount("/dev/null", btf, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("hide %s: %v", btf, err)
	}
	defer unix.Unmount(btf, 0)
	id := newID("nobtf")
	forked := "/tmp/" + id + "-forked"
	d.start(t, d.agentcgroup(), id, nil, "/bin/agentsim", "-delay", "100ms", "cat /proc/self/cgroup > "+forked)
	eventually(t, "the forked call's output", func() bool {
		b, _ := os.ReadFile(filepath.Join(rootfs, forked))
		return strings.HasSuffix(string(b), "\n")
	})
	defer os.Remove(filepath.Join(rootfs, forked))
	if got, want := readTrim(t, filepath.Join(rootfs, forked)), "0::/"+namespace+"/"+id+"/agent"; got != want {
		t.Errorf("forked child ran in %q, want %q (no detector: it stays with the agent)", got, want)
	}
	out := d.mustCtr(t, "task", "exec", "--exec-id", "exec1", id, "/bin/cat", "/proc/self/cgroup")
	if want := "0::/" + namespace + "/" + id + "/tools/exec1"; strings.TrimSpace(out) != want {
		t.Errorf("exec'd call ran in %q, want %q", strings.TrimSpace(out), want)
	}
	if n := detectorPrograms(t); n != 0 {
		t.Errorf("%d detector programs loaded without BTF", n)
	}
	recs := ps(t, id)
	if len(recs) != 1 || recs[0].ID != "exec1" {
		t.Errorf("records %+v, want the exec'd call only", recs)
	}
	if !strings.Contains(d.log(), "no eBPF tool-call detector: only exec'd tool calls get their own cgroup") {
		t.Error("the shim's log does not say that the detector is missing")
	}
	d.remove(id)
	assertGone(t, id)
}

// TestHoldSeccompProfile: a container with containerd's default seccomp
// profile (an allow list naming execve, as Docker's) gets the hold merged
// into that profile: one filter, not two; what the profile denies stays
// denied; forked calls are still held until placed.
func TestHoldSeccompProfile(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("seccomp")
		status, denied := "/tmp/"+id+"-status", "/tmp/"+id+"-denied"
		d.start(t, d.agentcgroup(), id, []string{"--seccomp"}, "/bin/agentsim", "-delay", "100ms",
			"grep Seccomp /proc/self/status > "+status,
			// swapoff is outside the default profile's allow list without CAP_SYS_ADMIN.
			"swapoff /nonexistent 2> "+denied+"; true")
		var recs []toolcall.Record
		eventually(t, "two ended calls", func() bool {
			recs = ps(t, id)
			return len(recs) == 2 && ended(recs) == 2
		})
		defer os.Remove(filepath.Join(rootfs, status))
		defer os.Remove(filepath.Join(rootfs, denied))
		for _, r := range recs {
			if r.StartedUnplaced {
				t.Errorf("call %s started in C/agent; want it held until placed", r.ID)
			}
		}
		st := readTrim(t, filepath.Join(rootfs, status))
		if !strings.Contains(st, "Seccomp:\t2") || !strings.Contains(st, "Seccomp_filters:\t1") {
			t.Errorf("a call's seccomp status %q, want mode 2 with one filter (the hold merged into the profile)", st)
		}
		if msg := readTrim(t, filepath.Join(rootfs, denied)); !strings.Contains(msg, "Operation not permitted") {
			t.Errorf("swapoff under the default profile said %q, want EPERM", msg)
		}
		d.remove(id)
		assertGone(t, id)
	})
}

// TestEscape: a tool call that clones children straight into C/agent
// (clone3 CLONE_INTO_CGROUP with an fd on C/agent from the read-only
// /sys/fs/cgroup, which needs no write access) and has them fork at once
// does not get a process out of its limits: the escapees and their children
// die (100 rounds on the first stack, 20 on the others), none is left in
// C/agent, and the agent goes on.
func TestEscape(t *testing.T) {
	rounds := 100
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("escape")
		// ctr mounts no cgroupfs: bind the tree read-only, as the attack needs.
		d.start(t, d.agentcgroup(), id, []string{"--mount", "type=bind,src=/sys/fs/cgroup,dst=/sys/fs/cgroup,options=rbind:ro"}, agentInit...)
		agentDir := filepath.Join(containerCgroup(id), "agent")
		// The agent is init alone: the sleep it forks is a call.
		before := strconv.Itoa(d.pid(t, id))
		// Each escapee forks a child that never executes a program, then
		// replaces itself.
		script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do
			/bin/agentsim -escape agent /bin/sh -c '( while :; do sleep 1; done ) & exec sleep 600' >/dev/null 2>&1 &
			i=$((i+1)); done; sleep 1; echo started`, rounds)
		r := d.ctr(t, "task", "exec", "--exec-id", "escape", id, "/bin/sh", "-c", script)
		if strings.TrimSpace(r.stdout) != "started" {
			t.Fatalf("escape attempts: %v", r)
		}
		var left string
		deadline := time.Now().Add(30 * time.Second)
		for {
			left = readTrim(t, filepath.Join(agentDir, "cgroup.procs"))
			if left == before || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if left != before {
			t.Errorf("C/agent holds %q after %d escapes, want only the agent's %q", strings.Fields(left), rounds, strings.Fields(before))
		}
		if st := d.status(t, id); st != "RUNNING" {
			t.Errorf("container %s after the escape attempts", st)
		}
		if r := d.ctr(t, "task", "exec", "--exec-id", "next", id, "/bin/sh", "-c", "echo alive"); strings.TrimSpace(r.stdout) != "alive" {
			t.Errorf("next call: %v", r)
		}
		rounds = 20
	})
}

// TestHeldChildrenKilled: an agent that kills its tool calls right after
// forking them (while their execve is held for placement, before they are
// claimed) leaves no call running and no empty cgroup but the spares: 1,000
// on the first stack, 100 on the others.
func TestHeldChildrenKilled(t *testing.T) {
	first := true
	forEachStack(t, func(t *testing.T, d *daemon) {
		n := 100
		if first {
			n, first = 1000, false
		}
		id := newID("killheld")
		d.start(t, d.agentcgroup(), id, nil, "/bin/agentsim", "-killheld", strconv.Itoa(n))
		// Each child is placed before it is killed, and back to back the
		// placements meet the hold's CPU budget (about 0.2 s each in the
		// guest): the bound is on correctness, not speed.
		deadline := time.Now().Add(time.Duration(n)*500*time.Millisecond + 2*time.Minute)
		for d.ctr(t, "task", "exec", "--exec-id", newID("probe"), id, "/bin/test", "-e", "/tmp/killheld.done").code != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the agent did not finish killing its calls")
			}
			time.Sleep(time.Second)
		}
		// Records end and cgroups go asynchronously (the last probe's cgroup
		// is removed once the kernel reports it empty): wait for both.
		var recs []toolcall.Record
		var live, empty int
		deadline = time.Now().Add(60 * time.Second)
		for {
			recs = ps(t, id)
			live = count(recs, func(r toolcall.Record) bool { return !r.State.Ended() })
			empty = emptyCallCgroups(id)
			if (live == 0 && empty <= 2) || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if live != 0 {
			t.Errorf("%d of %d calls still live after their processes were killed", live, len(recs))
		}
		if empty > 2 { // the two spares
			t.Errorf("%d empty tool-call cgroups, want at most the 2 spares", empty)
		}
		t.Logf("%d calls recorded for %d killed at their start", len(recs), n)
	})
}

// emptyCallCgroups counts the unpopulated cgroups under the container's tools/.
func emptyCallCgroups(id string) int {
	calls, _ := filepath.Glob(filepath.Join(containerCgroup(id), "tools", "*"))
	var empty int
	for _, c := range calls {
		// A spare may be taken and removed meanwhile: not read, not counted.
		if ev, err := os.ReadFile(filepath.Join(c, "cgroup.events")); err == nil && strings.Contains(string(ev), "populated 0") {
			empty++
		}
	}
	return empty
}

// TestIdleChildrenNeighbour: one container's agent holding 20,000 forked
// children that never execute a program (five times its share of the
// host's detector) leaves another container's detection whole: each of the
// neighbour's forked calls is detected (its exec event names it) and
// placed.
func TestIdleChildrenNeighbour(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	rt := d.agentcgroup()
	a, b := newID("idle"), newID("neighbour")
	const children = 20000
	// Memory-limited, so that a runaway stays in the container.
	d.start(t, rt, a, []string{"--memory-limit", strconv.Itoa(2 << 30)}, "/bin/agentsim", "-idle", strconv.Itoa(children))
	deadline := time.Now().Add(10 * time.Minute)
	for d.ctr(t, "task", "exec", "--exec-id", newID("probe"), a, "/bin/test", "-e", "/tmp/idle.done").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not fork its children")
		}
		time.Sleep(2 * time.Second)
	}
	procs, err := cgroupfs.ProcsBelow(filepath.Join(containerCgroup(a), "agent"))
	if err != nil || len(procs) < children {
		t.Fatalf("C/agent of %s holds %d processes (%v), want at least %d", a, len(procs), err, children)
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("echo neighbour-%d", i))
	}
	d.start(t, rt, b, nil, append([]string{"/bin/agentsim", "-delay", "0s"}, want...)...)
	var recs []toolcall.Record
	eventually(t, "the neighbour's ten calls ended", func() bool {
		recs = ps(t, b)
		return len(recs) >= len(want) && ended(recs) == len(recs)
	})
	var named int
	for _, r := range recs {
		for _, w := range want {
			if strings.Join(r.Command, " ") == "/bin/sh -c "+w && r.Kind == toolcall.KindFork && strings.HasPrefix(r.Cgroup, "/"+namespace+"/"+b+"/tools/") {
				named++
			}
		}
	}
	if named != len(want) {
		t.Errorf("%d of the neighbour's %d calls detected and placed: %+v", named, len(want), recs)
	}
	d.remove(a)
	assertGone(t, a)
}
