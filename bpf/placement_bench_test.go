//go:build linux

package bpf

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// BenchmarkPlacement measures natively, on this host, the path a detected
// tool call takes from its fork to being in its own cgroup: the kernel
// event, the ring buffer wake-up, and one cgroup.procs write into a ready
// cgroup, as the shim does it. A shell agent in a cgroup of the unified
// hierarchy runs 10,000 /bin/true. It also times that loop with no detector,
// with the detector attached but nothing moved, and with every call moved.
func BenchmarkPlacement(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("loading BPF programs needs root")
	}
	const calls = 10000
	script := "i=0; while [ $i -lt " + strconv.Itoa(calls) + " ]; do /bin/true; i=$((i+1)); done"
	parent, err := os.MkdirTemp(cgroup2Mount(b), "agentcgroup-placement-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(parent)
	agent := filepath.Join(parent, "agent")
	must(b, os.Mkdir(agent, 0o755))
	defer os.Remove(agent)

	timeLoop := func() time.Duration {
		start := time.Now()
		runIn(b, agent, script)
		return time.Since(start)
	}
	none := timeLoop()

	d, err := Load()
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	id, err := cgroupfs.ID(agent)
	if err != nil {
		b.Fatal(err)
	}
	events := make(chan Event, 4096)
	must(b, d.Watch(id, events))
	attached := timeLoop() // events are dropped on the floor: nothing is moved
	for len(events) > 0 {
		<-events
	}

	// The mover: one ready cgroup per call, made ahead as the shim does.
	var lat []int64
	var phase atomic.Int64
	phase.Store(math.MaxInt64)
	done := make(chan struct{})
	ready := make(chan string, calls)
	go func() {
		for i := range calls {
			dir := filepath.Join(parent, "call-"+strconv.Itoa(i))
			must(b, os.Mkdir(dir, 0o755))
			ready <- dir
		}
	}()
	go func() {
		defer close(done)
		for ev := range events {
			if ev.Kind != Tool || int64(ev.Forked) < phase.Load() {
				continue // an exit, or a call of the attached-only loop
			}
			_ = os.WriteFile(filepath.Join(<-ready, "cgroup.procs"), []byte(strconv.FormatUint(uint64(ev.Pid), 10)), 0)
			lat = append(lat, ev.SinceFork().Microseconds())
			if len(lat) == calls {
				return
			}
		}
	}()
	time.Sleep(time.Second) // the cgroups are ahead of the calls
	phase.Store(int64(monotonic()))
	moved := timeLoop()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("placed %d of %d calls", len(lat), calls)
	}
	for i := range calls {
		os.Remove(filepath.Join(parent, "call-"+strconv.Itoa(i)))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	fmt.Printf("native placement, fork to in its cgroup, %d calls: p50 %d us, p99 %d us; agent loop %v with no detector, %.3fx attached, %.3fx with every call moved\n",
		calls, p50, p99, none.Round(time.Millisecond), float64(attached)/float64(none), float64(moved)/float64(none))
	b.ReportMetric(float64(p50), "p50-us")
	b.ReportMetric(float64(p99), "p99-us")
	b.ReportMetric(float64(attached)/float64(none), "attached-ratio")
	b.ReportMetric(float64(moved)/float64(none), "moved-ratio")
}

func monotonic() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

func must(b testing.TB, err error) {
	if err != nil {
		b.Fatal(err)
	}
}
