//go:build integration

package integration

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	benchChurn      = flag.Int("bench.churn", 500, "containers created and deleted for the churn benchmark")
	benchChurnAlive = flag.Int("bench.churnalive", 10, "containers alive at once in the churn benchmark")
)

// BenchmarkChurn creates bench.churn containers under agentcgroup, at most
// bench.churnalive alive at once, each with two tool calls its agent forks
// and one exec'd, and deletes them; then checks that nothing leaked (shim,
// cgroup, state folder, socket, BPF program) and reports containerd's memory
// and open files, and the shims', early in the run and at its end. Run with
// -test.benchtime 1x.
func BenchmarkChurn(b *testing.B) {
	d := getDaemon(b, stacks()[0])
	daemonPid := d.cmd.Process.Pid
	n, alive := *benchChurn, *benchChurnAlive
	type sample struct{ daemonRSS, daemonFds, shimRSS, shimFds, shims int }
	take := func() sample {
		s := sample{daemonRSS: rssKiB(daemonPid), daemonFds: openFds(daemonPid)}
		for _, pid := range allShims() {
			s.shimRSS += rssKiB(pid)
			s.shimFds += openFds(pid)
			s.shims++
		}
		return s
	}
	var mu sync.Mutex
	var early, late sample
	ids := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range alive {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := fmt.Sprintf("churn-%d", i)
				// Not mustCtr: Fatal belongs to the benchmark's goroutine.
				if r, err := d.run(nil, runArgs(d.agentcgroup(), true, id, nil, "/bin/agentsim", "-delay", "0", "true", "true")...); err != nil || r.code != 0 {
					b.Errorf("run %s: %v %v", id, r, err)
				} else if r, err := d.run(nil, "task", "exec", "--exec-id", "call", id, "/bin/true"); err != nil || r.code != 0 {
					b.Errorf("exec in %s: %v %v", id, r, err)
				}
				if i == n/10 || i == n-alive {
					s := take()
					mu.Lock()
					if i == n/10 {
						early = s
					} else {
						late = s
					}
					mu.Unlock()
				}
				d.remove(id)
			}
		}()
	}
	for i := range n {
		if i%(max(1, n/10)) == 0 {
			fmt.Fprintf(os.Stderr, "churn: %d of %d containers after %s\n", i, n, time.Since(start).Round(time.Second))
		}
		ids <- i
	}
	close(ids)
	wg.Wait()
	took := time.Since(start)

	eventually(b, "no shim left", func() bool { return len(allShims()) == 0 })
	if left, _ := filepath.Glob(filepath.Join(containerCgroup("churn-*"))); len(left) > 0 {
		b.Errorf("cgroups left: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join("/run/agentcgroup", namespace, "churn-*")); len(left) > 0 {
		b.Errorf("state folders left: %v", left)
	}
	if left := shimSockets(d); len(left) > 0 {
		b.Errorf("sockets left: %v", left)
	}
	eventually(b, "no detector program left", func() bool { return detectorPrograms(b) == 0 })
	if sets := pinnedDetectors(b); len(sets) != 0 {
		b.Errorf("detector sets still pinned: %v", sets)
	}
	end := take()
	fmt.Printf("\n%d containers, %d alive at once, in %s (each: two forked calls, one exec'd):\n", n, alive, took.Round(time.Second))
	fmt.Printf("%-28s %12s %12s %12s\n", "", fmt.Sprintf("at %d", n/10), fmt.Sprintf("at %d", n-alive), "after")
	fmt.Printf("%-28s %12d %12d %12d\n", "containerd RSS (KiB)", early.daemonRSS, late.daemonRSS, end.daemonRSS)
	fmt.Printf("%-28s %12d %12d %12d\n", "containerd open files", early.daemonFds, late.daemonFds, end.daemonFds)
	fmt.Printf("%-28s %12d %12d %12s\n", "mean shim RSS (KiB)", early.shimRSS/max(1, early.shims), late.shimRSS/max(1, late.shims), "-")
	fmt.Printf("%-28s %12d %12d %12s\n", "mean shim open files", early.shimFds/max(1, early.shims), late.shimFds/max(1, late.shims), "-")
	b.ReportMetric(float64(late.daemonRSS-early.daemonRSS), "containerd-rss-growth-KiB")
	b.ReportMetric(float64(late.daemonFds-early.daemonFds), "containerd-fd-growth")
}

// allShims lists every agentcgroup shim process.
func allShims() []int { return shimProcs(func([]string) bool { return true }) }

// rssKiB is a process's resident memory, 0 if it is gone.
func rssKiB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// openFds counts a process's open files.
func openFds(pid int) int {
	e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(e)
}
