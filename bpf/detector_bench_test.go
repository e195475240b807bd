//go:build linux

package bpf

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// memlock is the kernel memory that maps and programs hold, as their
// fdinfo reports it.
func memlock(b *testing.B, fds ...int) uint64 {
	var total uint64
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

// kernelMemory is what the shared set holds in the kernel (maps, programs)
// plus the ring buffers of the watched containers.
func kernelMemory(b *testing.B, pinRoot string, ds []*Detector) uint64 {
	var fds []int
	m := ds[0].maps
	for _, m := range []*ebpf.Map{m.Calls, m.Dropped, m.Pending, m.Rings, m.Tools} {
		fds = append(fds, m.FD())
	}
	for _, p := range pinnedPrograms(b, pinRoot) {
		defer p.Close()
		fds = append(fds, p.FD())
	}
	for _, d := range ds {
		for _, w := range d.watches {
			fds = append(fds, w.ring.FD())
		}
	}
	return memlock(b, fds...)
}

// pinnedPrograms are the programs of the shared set's pinned links.
func pinnedPrograms(b *testing.B, pinRoot string) []*ebpf.Program {
	var progs []*ebpf.Program
	for _, name := range pinnedLinks {
		l, err := link.LoadPinnedLink(filepath.Join(pinRoot, version, name), nil)
		if err != nil {
			b.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			b.Fatal(err)
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			b.Fatal(err)
		}
		progs = append(progs, p)
	}
	return progs
}

// programTime is the run time the kernel counted for the shared set's
// programs (with BPF_STATS_RUN_TIME on), and how many times they ran.
func programTime(b *testing.B, pinRoot string) (time.Duration, uint64) {
	var total time.Duration
	var runs uint64
	for _, p := range pinnedPrograms(b, pinRoot) {
		st, err := p.Stats()
		p.Close()
		if err != nil {
			b.Fatal(err)
		}
		total += st.Runtime
		runs += st.RunCount
	}
	return total, runs
}

// run is one timed loop: its wall time and the CPU time (user and system)
// of the shell and its children.
type run struct{ wall, cpu time.Duration }

// forkExecs times n fork+execs of /bin/true by a shell, a process in no
// watched cgroup (and not this one, whose threads would weigh on its forks).
// The CPU time is what the detector's programs add to (they run in the
// forking and exec'ing tasks); the VM's stolen time is not in it.
func forkExecs(b *testing.B, n int) run {
	start := time.Now()
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", n)
	cmd := exec.Command("/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	return run{wall: time.Since(start), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// BenchmarkDetectors opens the host's shared detector once per container,
// as one shim per container does, each watching its container, for 1, 10,
// 50 and 100 containers, and reports the open time per container, the
// kernel memory of the detector in all, and the cost, for a process outside
// every watched container, of fork+exec with all of them watched: the
// median of the ratios of adjacent runs without and with, against this
// VM's drift, in wall time and in CPU time.
func BenchmarkDetectors(b *testing.B) {
	const forks, alternations = 2000, 9
	for _, n := range []int{1, 10, 50, 100} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			if os.Geteuid() != 0 {
				b.Fatal("loading BPF programs needs root")
			}
			mnt := b.TempDir()
			if err := unix.Mount("bpf", mnt, "bpf", 0, ""); err != nil {
				b.Fatal(err)
			}
			defer unix.Unmount(mnt, unix.MNT_DETACH)
			pinRoot, lockDir := filepath.Join(mnt, "agentcgroup"), b.TempDir()
			var wallRatios, cpuRatios []float64
			var opens, progTimes, bases []time.Duration
			var mem, progRuns uint64
			for range alternations {
				without := forkExecs(b, forks)
				var ds []*Detector
				start := time.Now()
				for i := range n {
					d, err := Open(pinRoot, lockDir)
					if err != nil {
						b.Fatal(err)
					}
					ds = append(ds, d)
					if err := d.Watch(uint64(1<<40+i), make(chan Event, 1)); err != nil {
						b.Fatal(err)
					}
				}
				opens = append(opens, time.Since(start)/time.Duration(n))
				stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
				if err != nil {
					b.Fatal(err)
				}
				before, beforeRuns := programTime(b, pinRoot)
				with := forkExecs(b, forks)
				after, afterRuns := programTime(b, pinRoot)
				stats.Close()
				progTimes = append(progTimes, (after-before)/forks)
				progRuns = afterRuns - beforeRuns
				bases = append(bases, without.wall/forks)
				wallRatios = append(wallRatios, float64(with.wall)/float64(without.wall))
				cpuRatios = append(cpuRatios, float64(with.cpu)/float64(without.cpu))
				mem = kernelMemory(b, pinRoot, ds)
				for _, d := range ds {
					d.Close()
				}
			}
			open, wall, cpu := median(opens), median(wallRatios), median(cpuRatios)
			prog, base := median(progTimes), median(bases)
			b.ReportMetric(float64(open.Microseconds())/1000, "open-ms/container")
			b.ReportMetric(float64(mem)/1024, "kernel-KiB")
			b.ReportMetric(wall, "outside-forkexec-ratio")
			b.ReportMetric(cpu, "outside-forkexec-cpu-ratio")
			b.ReportMetric(float64(prog.Nanoseconds()), "program-ns/forkexec")
			slices.Sort(cpuRatios)
			fmt.Printf("containers=%d: open %.1f ms each, %d KiB of kernel memory in all, fork+exec outside watched containers %.3fx wall, %.3fx CPU (medians of %d pairs of %d; CPU ratios %.3f-%.3f); "+
				"the programs ran %d times a loop, %v per fork+exec of %v: %.4fx\n",
				n, float64(open.Microseconds())/1000, mem/1024, wall, cpu, alternations, forks, cpuRatios[0], cpuRatios[len(cpuRatios)-1],
				progRuns, prog, base.Round(time.Microsecond), 1+float64(prog)/float64(base))
		})
	}
}

func median[T time.Duration | float64](ds []T) T {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
