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
	for _, name := range pinnedLinks {
		l, err := link.LoadPinnedLink(filepath.Join(pinRoot, version, name), nil)
		if err != nil {
			b.Fatal(err)
		}
		info, err := l.Info()
		if err != nil {
			b.Fatal(err)
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
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

// forkExecs times n fork+execs of /bin/true by a shell, a process in no
// watched cgroup (and not this one, whose threads would weigh on its forks).
func forkExecs(b *testing.B, n int) time.Duration {
	start := time.Now()
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", n)
	if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	return time.Since(start)
}

// BenchmarkDetectors opens the host's shared detector once per container,
// as one shim per container does, each watching its container, for 1, 10,
// 50 and 100 containers, and reports the open time per container, the
// kernel memory of the detector in all, and the cost, for a process outside
// every watched container, of fork+exec with all of them watched: medians
// of alternating runs without and with, against this VM's drift.
func BenchmarkDetectors(b *testing.B) {
	const forks, alternations = 2000, 5
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
			var without, with, opens []time.Duration
			var mem uint64
			for range alternations {
				without = append(without, forkExecs(b, forks))
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
				with = append(with, forkExecs(b, forks))
				mem = kernelMemory(b, pinRoot, ds)
				for _, d := range ds {
					d.Close()
				}
			}
			open, base, w := median(opens), median(without), median(with)
			b.ReportMetric(float64(open.Microseconds())/1000, "open-ms/container")
			b.ReportMetric(float64(mem)/1024, "kernel-KiB")
			b.ReportMetric(float64(w)/float64(base), "outside-forkexec-ratio")
			fmt.Printf("containers=%d: open %.1f ms each, %d KiB of kernel memory in all, fork+exec outside watched containers %.3fx (medians of %d x %d runs: %v -> %v)\n",
				n, float64(open.Microseconds())/1000, mem/1024, float64(w)/float64(base), alternations, forks, base.Round(time.Millisecond), w.Round(time.Millisecond))
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
