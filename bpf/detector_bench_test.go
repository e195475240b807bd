//go:build linux

package bpf

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// memlock is the kernel memory the detector's maps and programs hold, as
// their fdinfo reports it.
func (d *Detector) memlock(b *testing.B) uint64 {
	var total uint64
	fds := []int{}
	for _, m := range []*ebpf.Map{d.objs.Agents, d.objs.Pending, d.objs.Tools, d.objs.Events, d.objs.Dropped} {
		fds = append(fds, m.FD())
	}
	for _, p := range []*ebpf.Program{d.objs.OnFork, d.objs.OnExec, d.objs.OnExit} {
		fds = append(fds, p.FD())
	}
	for _, fd := range fds {
		f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
		if err != nil {
			b.Fatal(err)
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "memlock:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
		f.Close()
	}
	return total
}

// forkExecs times n fork+execs of /bin/true from this process, which is in
// no watched cgroup.
func forkExecs(b *testing.B, n int) time.Duration {
	start := time.Now()
	for range n {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkDetectors loads one detector per container, as one shim per
// container does, for 1, 10 and 50 containers, and reports the load time and
// locked kernel memory per container and the cost, for a process outside
// every watched container, of fork+exec with all of them attached.
func BenchmarkDetectors(b *testing.B) {
	const forks = 2000
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			if os.Geteuid() != 0 {
				b.Fatal("loading BPF programs needs root")
			}
			base := forkExecs(b, forks)
			var ds []*Detector
			start := time.Now()
			for i := range n {
				d, err := Load()
				if err != nil {
					b.Fatal(err)
				}
				ds = append(ds, d)
				if err := d.Watch(uint64(1<<40+i), make(chan Event, 1)); err != nil {
					b.Fatal(err)
				}
			}
			load := time.Since(start) / time.Duration(n)
			with := forkExecs(b, forks)
			mem := ds[0].memlock(b)
			for _, d := range ds {
				d.Close()
			}
			b.ReportMetric(float64(load.Microseconds())/1000, "load-ms/container")
			b.ReportMetric(float64(mem)/1024, "memlock-KiB/container")
			b.ReportMetric(float64(with)/float64(base), "outside-forkexec-ratio")
			fmt.Printf("detectors=%d: load %.1f ms each, %d KiB locked each, fork+exec outside watched containers %.3fx (%d runs: %v -> %v)\n",
				n, float64(load.Microseconds())/1000, mem/1024, float64(with)/float64(base), forks, base.Round(time.Millisecond), with.Round(time.Millisecond))
		})
	}
}
