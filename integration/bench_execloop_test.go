//go:build integration

package integration

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var benchExecLoop = flag.Int("bench.execloop", 50000, "execve of a missing binary for the exec-loop bound")

// BenchmarkExecLoop: a hostile container whose tool call execs a missing
// binary in a tight loop, under a CPU limit of half a CPU: how long the loop
// takes and how much CPU its shim spends meanwhile (outside the container's
// limit), under the runc shim and under agentcgroup, whose exec hold spends
// at most a quarter of a CPU on a container after a second's burst. Run
// with -test.benchtime 1x.
func BenchmarkExecLoop(b *testing.B) {
	d := getDaemon(b, stacks()[0])
	done := regexp.MustCompile(`agentsim: (\d+) execve in (\d+) us`)
	var report strings.Builder
	fmt.Fprintf(&report, "\n%d execve of a missing binary in one tool call, container at --cpus 0.5:\n%-12s %10s %14s %14s\n",
		*benchExecLoop, "shim", "loop", "shim CPU", "shim CPU/loop")
	for _, rt := range []runtime{d.runc(), d.agentcgroup()} {
		id := newID("execloop")
		d.start(b, rt, id, []string{"--cpus", "0.5"}, agentInit...)
		shim := shimOf(b, d, rt, id)
		before := cpuTime(b, shim)
		// The hold's budget stretches the loop (a quarter of a CPU for
		// the shim's part of every execve): far beyond run's bound.
		r, err := d.runFor(30*time.Minute, nil, "task", "exec", "--exec-id", "loop", id, "/bin/agentsim", "-execloop", strconv.Itoa(*benchExecLoop))
		if err != nil {
			b.Fatalf("%s: exec-loop: %v", rt.name, err)
		}
		m := done.FindStringSubmatch(r.stdout)
		if m == nil {
			b.Fatalf("%s: exec-loop: %v", rt.name, r)
		}
		spent := cpuTime(b, shim) - before
		us, _ := strconv.ParseInt(m[2], 10, 64)
		loop := time.Duration(us) * time.Microsecond
		fmt.Fprintf(&report, "%-12s %10s %14s %13.1f%%\n", rt.name, loop.Round(time.Millisecond), spent.Round(time.Millisecond), 100*float64(spent)/float64(loop))
		b.ReportMetric(loop.Seconds(), rt.name+"-loop-s")
		b.ReportMetric(spent.Seconds(), rt.name+"-shim-cpu-s")
		d.remove(id)
	}
	fmt.Fprint(os.Stdout, report.String())
}

// shimOf finds the pid of the shim serving container id: agentcgroup's by
// its -id, the runc shim's (one per container under ctr) as the parent of
// the container's init.
func shimOf(b *testing.B, d *daemon, rt runtime, id string) int {
	if rt.name == "agentcgroup" {
		pids := shimPids(id)
		if len(pids) != 1 {
			b.Fatalf("shims of %s: %v", id, pids)
		}
		return pids[0]
	}
	ppid, _ := strconv.Atoi(procStat(b, d.pid(b, id))[1])
	return ppid
}

// procStat is /proc/<pid>/stat from its state field on (field 3: comm,
// before it, may hold spaces, not ')').
func procStat(b *testing.B, pid int) []string {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	return strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
}

// cpuTime is the user and system CPU a process has used, all its threads.
func cpuTime(b *testing.B, pid int) time.Duration {
	f := procStat(b, pid)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}
