//go:build linux

package bpf

import (
	"bufio"
	"cmp"
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
// plus each watched container's ring buffer and share of the maps.
func kernelMemory(b *testing.B, pinRoot string, ds []*Detector) uint64 {
	var fds []int
	m := ds[0].maps
	for _, m := range []*ebpf.Map{m.Calls, m.Dropped, m.PendingOf, m.Rings, m.ToolsOf} {
		fds = append(fds, m.FD())
	}
	for _, p := range pinnedPrograms(b, pinRoot) {
		defer p.Close()
		fds = append(fds, p.FD())
	}
	for _, d := range ds {
		for _, w := range d.watches {
			fds = append(fds, w.ring.FD(), w.pending.FD(), w.tools.FD())
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

// programStats are the kernel's counts for the shared set's programs (with
// BPF_STATS_RUN_TIME on): their run time, how often they ran, and how
// often they did not run because a program was already running on the CPU.
type programStats struct {
	runtime      time.Duration
	runs, misses uint64
}

func readProgramStats(b *testing.B, pinRoot string) programStats {
	var ps programStats
	for _, p := range pinnedPrograms(b, pinRoot) {
		st, err := p.Stats()
		p.Close()
		if err != nil {
			b.Fatal(err)
		}
		ps.runtime += st.Runtime
		ps.runs += st.RunCount
		ps.misses += st.RecursionMisses
	}
	return ps
}

// loop is one timed loop: its wall time and the CPU time (user and system)
// of the shell and its children.
type loop struct{ wall, cpu time.Duration }

// forkExecs times n fork+execs of /bin/true by a shell, a process in no
// watched cgroup (and not this one, whose threads would weigh on its forks).
// The detector's programs run in the forking and exec'ing tasks, so their
// cost is in the CPU time as well as in the wall time.
func forkExecs(b *testing.B, n int) loop {
	start := time.Now()
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", n)
	cmd := exec.Command("/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	return loop{wall: time.Since(start), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// watchedLoop is one loop run with n containers watched.
type watchedLoop struct {
	loop
	open  time.Duration // per container
	stats programStats  // of the programs, during the loop
	mem   uint64        // kernel memory of the detector
}

// forkExecsWatched opens the shared detector n times, each watching a
// container of its own, times the loop, and closes them all: the last
// close unpins the set, as on a host whose last agent container ends.
func forkExecsWatched(b *testing.B, pinRoot, lockDir string, n, forks int) watchedLoop {
	var w watchedLoop
	ds := make([]*Detector, 0, n)
	defer func() {
		for _, d := range ds {
			if err := d.Close(); err != nil {
				b.Error(err)
			}
		}
	}()
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
	w.open = time.Since(start) / time.Duration(n)
	// The statistics cost two clock reads a program run: on during this
	// loop only, they weigh on its ratios, not on the programs' time.
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	before := readProgramStats(b, pinRoot)
	w.loop = forkExecs(b, forks)
	after := readProgramStats(b, pinRoot)
	w.stats = programStats{runtime: after.runtime - before.runtime, runs: after.runs - before.runs, misses: after.misses - before.misses}
	w.mem = kernelMemory(b, pinRoot, ds)
	return w
}

// BenchmarkDetectors opens the host's shared detector once per container,
// as one shim per container does, each watching its container, for 1, 10,
// 50 and 100 containers, and reports the open time per container, the
// kernel memory of the detector in all, and the cost, for a process outside
// every watched container, of fork+exec with all of them watched: the
// programs' own run time as the kernel counts it, over the loop's time
// without them, and the loop's own ratio in wall and CPU time. Each is the
// median over pairs of loops without and with, in alternating order,
// against this VM's drift.
func BenchmarkDetectors(b *testing.B) {
	const forks, pairs = 2000, 9
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
			var shares, wallRatios, cpuRatios []float64
			var opens, progTimes []time.Duration
			var last watchedLoop
			for i := range pairs {
				var without loop
				if i%2 == 0 {
					without = forkExecs(b, forks)
					last = forkExecsWatched(b, pinRoot, lockDir, n, forks)
				} else {
					last = forkExecsWatched(b, pinRoot, lockDir, n, forks)
					without = forkExecs(b, forks)
				}
				if last.stats.misses != 0 {
					b.Fatalf("the programs missed %d runs: their time is not all counted", last.stats.misses)
				}
				opens = append(opens, last.open)
				progTimes = append(progTimes, last.stats.runtime/forks)
				shares = append(shares, 1+float64(last.stats.runtime)/float64(without.wall))
				wallRatios = append(wallRatios, float64(last.wall)/float64(without.wall))
				cpuRatios = append(cpuRatios, float64(last.cpu)/float64(without.cpu))
			}
			open, prog, share := median(opens), median(progTimes), median(shares)
			wall, cpu := median(wallRatios), median(cpuRatios)
			b.ReportMetric(float64(open.Microseconds())/1000, "open-ms/container")
			b.ReportMetric(float64(last.mem)/1024, "kernel-KiB")
			b.ReportMetric(float64(prog.Nanoseconds()), "program-ns/forkexec")
			b.ReportMetric(share, "outside-program-share")
			b.ReportMetric(wall, "outside-forkexec-ratio")
			b.ReportMetric(cpu, "outside-forkexec-cpu-ratio")
			fmt.Printf("containers=%d: open %.1f ms each, %d KiB of kernel memory in all; fork+exec outside watched containers, medians of %d pairs of %d: "+
				"the programs ran %.1f times and %v per fork+exec, %.4fx the loop without them; the loop %.3fx wall (pairs %.3f-%.3f), %.3fx CPU (pairs %.3f-%.3f)\n",
				n, float64(open.Microseconds())/1000, last.mem/1024, pairs, forks,
				float64(last.stats.runs)/forks, prog, share,
				wall, slices.Min(wallRatios), slices.Max(wallRatios), cpu, slices.Min(cpuRatios), slices.Max(cpuRatios))
		})
	}
}

func median[T cmp.Ordered](ds []T) T {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
